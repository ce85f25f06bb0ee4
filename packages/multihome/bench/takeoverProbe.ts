/**
 * What the takeover probe costs (issue 20): after a takeover the copy of each association
 * sends an on-demand HEARTBEAT every `takeoverProbeMs` (10 ms) while its hole may be open,
 * backing off after 5 quiet probes, so that a peer that bundles sends what it holds and the
 * DATA lost at the dead node is fast-retransmitted. For N associations taken over at once
 * (1, 100, 1,000), a peer that goes on streaming (a line every 20 ms, one lost at the dead
 * node) and an idle one (nothing after the kill), and a pace of 10, 20 and 40 ms (the probe
 * timer's wait scaled by 1, 2 and 4, back-off included): the HEARTBEATs the copies send
 * until the hole closes or the RTO passed, the time spent stepping the copies (the shipped
 * association code alone, not the endpoint around it: wall clock, so noisy on a loaded
 * machine), and for the streaming peer the longest time from the lost line's first send to
 * its resend (and whether any waited for the T3-rtx). The streaming peer's step time is
 * mostly its stream's DATA; the idle peer's is the probes'.
 *
 * The peer and the association run on a simulated clock (`test/support/usrsctpPeer.ts`);
 * each association is one run (the copies share nothing, so N runs are N associations'
 * cost). Prints a table, then one JSON line.
 *
 * Run: `npm exec -- node bench/takeoverProbe.ts` (in packages/multihome).
 */
import { runTakeover } from "../test/support/usrsctpPeer.ts"

const lineEveryMs = 20
const lines = 60
const counts = [1, 100, 1_000]
/** The shipped pace and slower ones (a timer fired before it is due is ignored: no faster). */
const paces = [10, 20, 40]
const peers = ["busy", "idle"] as const

interface Row {
  readonly paceMs: number
  readonly peer: (typeof peers)[number]
  readonly associations: number
  readonly heartbeats: number
  readonly heartbeatsPerAssociation: number
  readonly copyStepMs: number
  readonly resendAfterMsMax: number | undefined
  readonly t3: number
}

const measure = (paceMs: number, peer: Row["peer"], associations: number): Row => {
  let heartbeats = 0
  let copyStepMs = 0
  let resendAfterMsMax: number | undefined
  let t3 = 0
  for (let seed = 1; seed <= associations; seed++) {
    // The node dies 2 ms before line 20 is written, its copy takes over 18 ms later.
    const result = runTakeover({
      lineEveryMs,
      lines,
      killAtMs: lineEveryMs * 21 - 2,
      takeoverAtMs: lineEveryMs * 21 + 16,
      seed,
      probeScale: paceMs / 10,
      idleAfterKill: peer === "idle",
    })
    heartbeats += result.heartbeats
    copyStepMs += result.copyStepMs
    const first = new Map<number, number>()
    for (const send of result.sends) {
      const sentAt = first.get(send.tsn)
      if (sentAt === undefined) first.set(send.tsn, send.atMs)
      else resendAfterMsMax = Math.max(resendAfterMsMax ?? 0, send.atMs - sentAt)
      if (send.why === "t3") t3++
    }
  }
  return {
    paceMs,
    peer,
    associations,
    heartbeats,
    heartbeatsPerAssociation: heartbeats / associations,
    copyStepMs: Math.round(copyStepMs * 10) / 10,
    resendAfterMsMax,
    t3,
  }
}

// Warm-up, not reported: the first runs pay for the JIT.
for (const peer of peers) measure(10, peer, 100)
const rows: Array<Row> = []
for (const associations of counts) {
  for (const peer of peers) {
    for (const paceMs of paces) rows.push(measure(paceMs, peer, associations))
  }
}
console.log(
  "pace ms | peer | associations | HEARTBEATs | per assoc. | copy steps ms | resend after ms (max) | T3-rtx",
)
for (const row of rows) {
  console.log(
    [
      row.paceMs,
      row.peer,
      row.associations,
      row.heartbeats,
      row.heartbeatsPerAssociation.toFixed(1),
      row.copyStepMs,
      row.resendAfterMsMax ?? "-",
      row.t3,
    ].join(" | "),
  )
}
console.log(JSON.stringify({ bench: "multihome-takeover-probe", rows }))
