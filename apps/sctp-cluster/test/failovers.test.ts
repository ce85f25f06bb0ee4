/**
 * Failovers in a row with real processes (see `support/alternating.ts`): the serving node is
 * taken out, the standby takes over, the node taken out is restarted as the new standby (the
 * failback) and receives the association's state; then the other node is taken out, and so
 * on.
 *
 * - usrsctp's `client`, 20 SIGKILLs: every message echoed exactly once and in order, and the
 *   peer never reports the association lost.
 * - `tsctp`, one stream per round across each SIGKILL: every stream ends with its graceful
 *   SHUTDOWN (every message acknowledged), part of it served by each node, and the node
 *   that took over skipped nothing of it. Each stream sends for 3 s (a fixed count ended in
 *   well under a second on a quiet machine). 1 round here (a SIGKILL and the failback);
 *   `UNDERSTUDY_SCTP_CLUSTER_TSCTP_ROUNDS=20` runs the issue's 20 by hand.
 * - Fenced, each round a SIGSTOP past the link's time-out and the lease, then SIGCONT: the
 *   client's echoes once and in order, and a capture of the loopback shows that no two
 *   nodes ever serve the association at once (one run of sending addresses per serving
 *   period; nothing from a stopped node, and once resumed at most the one datagram it was
 *   sending when stopped). 1 round here, then the failback;
 *   `UNDERSTUDY_SCTP_CLUSTER_FENCED_ROUNDS=20` runs 20 by hand (each node stopped ten
 *   times), and `UNDERSTUDY_SCTP_CLUSTER_FENCED_TSCTP_ROUNDS=20` the same with a tsctp
 *   stream across each. Both nodes' status shows none of the tags and TSNs the capture
 *   saw, nor any secret.
 */
import { readFileSync } from "node:fs"
import { afterEach, describe, expect, it } from "@effect/vitest"
import * as Alternating from "./support/alternating.ts"
import * as Capture from "./support/capture.ts"
import * as App from "./support.ts"

afterEach(App.killAll)

const failureNotice = /SCTP_COMM_LOST|SCTP_SHUTDOWN|SCTP_CANT_STR_ASSOC|ABORT|Connection refused/

const roundsFrom = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? fallback)
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a whole number`)
  return value
}

const tsctpRounds = roundsFrom("UNDERSTUDY_SCTP_CLUSTER_TSCTP_ROUNDS", 1)
const fencedRounds = roundsFrom("UNDERSTUDY_SCTP_CLUSTER_FENCED_ROUNDS", 1)
/** tsctp: how long each round's stream sends. */
const tsctpSeconds = 3
const fencedTsctpRounds =
  process.env.UNDERSTUDY_SCTP_CLUSTER_FENCED_TSCTP_ROUNDS === undefined
    ? undefined
    : roundsFrom("UNDERSTUDY_SCTP_CLUSTER_FENCED_TSCTP_ROUNDS", 20)

/**
 * Who sent the association's packets as its serving node, in order: the source address of
 * each datagram of the pair's port to the peer that carries anything but a HEARTBEAT ACK
 * (and its AUTH), the only thing a standby sends; consecutive repeats merged.
 */
export const servingRuns = (
  datagrams: ReadonlyArray<Capture.Datagram>,
  udpPort: number,
  peerPort: number,
): Array<string> => {
  const runs: Array<string> = []
  for (const datagram of datagrams) {
    if (datagram.srcPort !== udpPort || datagram.dstPort !== peerPort) continue
    const serving = datagram.chunks.some(
      (chunk) =>
        chunk.type !== Capture.chunkType.heartbeatAck && chunk.type !== Capture.chunkType.auth,
    )
    if (serving && runs.at(-1) !== datagram.src) runs.push(datagram.src)
  }
  return runs
}

describe("alternating failovers under usrsctp's client", () => {
  it("20 failovers and failbacks: every message echoed once and in order", async () => {
    const outcome = await Alternating.run({ rounds: 20 })
    expect(outcome.failoverMs).toHaveLength(20)
    expect(outcome.echoed).toEqual(Array.from({ length: outcome.sent }, (_, i) => i + 1))
    expect(outcome.sent).toBe(20 * 4 + 3)
    expect(outcome.peerOutput).not.toMatch(failureNotice)
    const sorted = [...outcome.failoverMs].sort((a, b) => a - b)
    console.log(
      `[failovers] 20 rounds: failover p50 ${sorted[9]!.toFixed(0)} ms, max ${sorted[19]!.toFixed(0)} ms`,
    )
  }, 600_000)

  it(`tsctp: ${tsctpRounds} stream(s), each across a SIGKILL and the failback after it`, async () => {
    const outcome = await Alternating.run({
      rounds: tsctpRounds,
      peer: "tsctp",
      tsctpSeconds,
      log: (line) => console.log(`[tsctp] ${line}`),
    })
    expectStreams(outcome, tsctpRounds)
  }, 600_000)
})

const captureUnavailable = Capture.unavailableReason()
if (captureUnavailable !== undefined) {
  console.warn(`[failovers] the fenced SIGSTOP rounds are skipped: ${captureUnavailable}`)
}

describe.skipIf(captureUnavailable !== undefined)("fenced failovers by SIGSTOP", () => {
  it(
    `${fencedRounds} SIGSTOP(s) past the lease: one serving node at a time, every echo once and in order`,
    () => fencedRun("client", fencedRounds),
    600_000,
  )

  // By hand only (UNDERSTUDY_SCTP_CLUSTER_FENCED_TSCTP_ROUNDS=20): the same under tsctp streams.
  if (fencedTsctpRounds !== undefined) {
    it(
      `tsctp: ${fencedTsctpRounds} SIGSTOP(s) past the lease, one stream across each`,
      () => fencedRun("tsctp", fencedTsctpRounds),
      1_800_000,
    )
  }
})

/**
 * `rounds` fenced SIGSTOP rounds under `peer`, captured: see the describe above for what is
 * checked.
 */
const fencedRun = async (peer: "client" | "tsctp", rounds: number): Promise<void> => {
  const outcome = await Alternating.run({
    rounds,
    peer,
    tsctpSeconds,
    // Long enough that a busy machine does not cost the serving node its own lease.
    fenceLeaseMs: 2_000,
    failure: () => "stop",
    capture: true,
    log: (line) => console.log(`[fenced ${peer}] ${line}`),
  })
  const capture = outcome.capture!
  await capture.mark("end")
  const datagrams = capture.datagrams()
  const marks = capture.marks()
  const why = `marks ${JSON.stringify([...marks])}\ncaptured:\n${datagrams
    .slice(-60)
    .map((d) => `${d.src}:${d.srcPort} > ${d.dst}:${d.dstPort} ${d.chunks.map((c) => c.type)}`)
    .join("\n")}\nclient:\n${outcome.peerOutput.slice(-3_000)}`

  if (peer === "client") {
    expect(outcome.echoed, why).toEqual(Array.from({ length: outcome.sent }, (_, i) => i + 1))
    expect(outcome.peerOutput, why).not.toMatch(failureNotice)
  } else expectStreams(outcome, rounds)
  // From the moment a node is stopped until it is restarted as the standby — its pause,
  // its SIGCONT, its finding it lost the role, and the traffic the peer had meanwhile with
  // the node that took over — its address sends nothing, but for at most the one datagram
  // it was handing to its socket when SIGSTOP came: the fence is asked right before each
  // datagram, and a process can be paused between that answer and the system call (only
  // the peer, checking an epoch, could close that; usrsctp does not). Without the fence's
  // gate a resumed node sends a dozen.
  for (const round of outcome.rounds) {
    const at = (label: string) => marks.get(`r${round.round}-${label}`)
    const from = (list: ReadonlyArray<Capture.Datagram>) =>
      list.filter((d) => d.src === round.from && d.srcPort === outcome.udpPort)
    const whileStopped = from(datagrams.slice(at("down"), at("cont")))
    const resumed = from(datagrams.slice(at("cont"), at("rejoin")))
    const detail = `round ${round.round}: ${JSON.stringify({ whileStopped, resumed })}`
    if (resumed.length > 0) console.log(`[fenced ${peer}] ${detail}`)
    expect(whileStopped, `${detail} ${why}`).toEqual([])
    expect(resumed.length, `${detail} ${why}`).toBeLessThanOrEqual(1)
    const window = datagrams.slice(at("down"), at("rejoin"))
    // And the peer did talk to the node that took over meanwhile.
    expect(
      window.some((d) => d.src === round.to && d.dstPort === outcome.peerEncapsPort),
      `round ${round.round}: ${why}`,
    ).toBe(true)
  }
  // Each takeover acquired the next epoch; the node serving at the end holds the role.
  const fence = (await App.statusOf(outcome.servingStatus))?.fence
  expect(fence?.epoch, why).toBe(rounds + 1)
  expect(fence?.holding, why).toBe(true)
  // The status of both nodes (the serving one runs the association, the standby holds its
  // copy) shows none of the tags and TSNs the capture saw, no key, no secret.
  const key = readFileSync(outcome.keyFile, "utf8").trim()
  const wire = wireSecrets(datagrams)
  expect(wire.size, why).toBeGreaterThan(4)
  for (const address of [outcome.servingStatus, outcome.standbyStatus]) {
    const report = await App.statusOf(address)
    expect(report?.associations.length ?? 0, why).toBeLessThanOrEqual(1)
    expect(statusLeaks(report, wire, key), JSON.stringify(report)).toEqual([])
  }
  // The client's association lives on (each tsctp stream ended with its SHUTDOWN).
  expect((await App.statusOf(outcome.servingStatus))?.associations, why).toHaveLength(
    peer === "client" ? 1 : 0,
  )
  // One serving node at a time, from the capture: the sources of the serving packets form
  // one run per serving period, in the order of the takeovers.
  expect(servingRuns(datagrams, outcome.udpPort, outcome.peerEncapsPort), why).toEqual([
    "127.0.0.2",
    ...outcome.rounds.map((round) => round.to),
  ])
}

/** What every tsctp stream of a run must show. */
const expectStreams = (outcome: Alternating.Outcome, rounds: number) => {
  const why = `tsctp: ${outcome.peerOutput.slice(-4_000)}\nstreams: ${JSON.stringify(outcome.streams)}`
  expect(outcome.streams, why).toHaveLength(rounds)
  for (const stream of outcome.streams) {
    // The sender's graceful end: every message acknowledged, the SHUTDOWN completed.
    expect(stream.exitCode, why).toBe(0)
    const sent = stream.sentMessages ?? 0
    expect(sent, why).toBeGreaterThan(0)
    // The stream was cut by the failure and went on through the other node.
    expect(stream.beforeFailure, why).toBeGreaterThan(0)
    expect(stream.afterFailure, why).toBeGreaterThan(0)
    // (Not their sum: a batch the dead node had delivered but the standby not yet
    // acknowledged is delivered again by the survivor, as every-update allows: the peer
    // never had it acknowledged.)
    expect(stream.beforeFailure, why).toBeLessThan(sent)
    expect(stream.afterFailure, why).toBeLessThanOrEqual(sent)
    // The node that took over had every message the dead one acknowledged: it skipped no
    // TSN or SSN to catch up (`Association.takeOver`'s resynchronisation).
    expect(
      Object.keys(stream.survivorDropped).filter((reason) => reason.startsWith("Resync")),
      why,
    ).toEqual([])
  }
  expect(outcome.peerOutput, why).not.toMatch(/abort|COMM_LOST/i)
}

/**
 * What of a status report could help forge or hijack the association, as a list of findings
 * (empty: nothing): a number the capture saw as a verification tag or TSN on the wire (tags
 * and TSNs are random 32-bit numbers: a counter does not meet one by chance), a field named
 * after a secret, the cluster key (hex or base64), a long hex or base64 string, or a run of
 * bytes (an array of 8 or more numbers 0–255). `endpoint.dropped` is exempt from the names:
 * its keys are reasons, its values counts.
 */
export const statusLeaks = (
  report: unknown,
  wire: ReadonlySet<number>,
  clusterKeyHex: string,
): Array<string> => {
  const findings: Array<string> = []
  const text = JSON.stringify(report)
  const keyBytes = Buffer.from(clusterKeyHex, "hex")
  for (const form of [clusterKeyHex, keyBytes.toString("base64"), keyBytes.toString("base64url")])
    if (text.toLowerCase().includes(form.toLowerCase())) findings.push("the cluster key")
  const secretName = /tag|tsn|secret|cookie|nonce|hmac|random|key|auth|shared/i
  const walk = (value: unknown, path: string): void => {
    if (typeof value === "number") {
      if (wire.has(value)) findings.push(`${path} = ${value}, a tag or TSN on the wire`)
    } else if (typeof value === "string") {
      if (/^[0-9a-f]{16,}$/i.test(value) || /^[A-Za-z0-9+/_-]{22,}={0,2}$/.test(value))
        findings.push(`${path} looks like key material`)
    } else if (Array.isArray(value)) {
      if (
        value.length >= 8 &&
        value.every((item) => Number.isInteger(item) && item >= 0 && item <= 255)
      )
        findings.push(`${path} is a run of bytes`)
      for (const [index, item] of value.entries()) walk(item, `${path}[${index}]`)
    } else if (typeof value === "object" && value !== null) {
      for (const [name, item] of Object.entries(value)) {
        if (path !== ".endpoint.dropped" && secretName.test(name))
          findings.push(`${path}.${name} is named after a secret`)
        walk(item, `${path}.${name}`)
      }
    }
  }
  walk(report, "")
  return findings
}

/** Every verification tag and TSN the capture saw (tags 0 aside: INIT's). */
export const wireSecrets = (datagrams: ReadonlyArray<Capture.Datagram>): Set<number> => {
  const numbers = new Set<number>()
  for (const datagram of datagrams) {
    if (datagram.vtag !== 0) numbers.add(datagram.vtag)
    for (const chunk of datagram.chunks) if (chunk.value !== undefined) numbers.add(chunk.value)
  }
  return numbers
}
