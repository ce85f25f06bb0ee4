import { describe, expect, it } from "@effect/vitest"
import * as Association from "../src/Association.ts"
import {
  clientHost,
  established,
  Loopback,
  messages,
  serverHosts,
  serverUdp,
} from "./associationHarness.ts"

const config = (localPort: number): Association.Config => ({
  ...Association.defaultConfig,
  localPort,
})

/** A numbered message: stream, ordered or not, and a size that sometimes fragments. */
const payload = (index: number): { stream: number; unordered: boolean; data: Uint8Array } => {
  const size = 8 + ((index * 7919) % 2600)
  const data = new Uint8Array(size).fill(index & 0xff)
  new DataView(data.buffer).setUint32(0, index)
  return { stream: index % 3, unordered: index % 7 === 0, data }
}

const numberOf = (data: Uint8Array): number =>
  new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0)

/** The peer (the harness's server) sends messages `from` … `to − 1`. */
const peerSends = (lb: Loopback, from: number, to: number): void => {
  for (let index = from; index < to; index++) {
    const { stream, unordered, data } = payload(index)
    lb.send(false, { _tag: "Send", stream, ppid: 7, data, unordered })
  }
}

/** Packets on their way to the dead primary are lost with it. */
const loseInFlightToClient = (lb: Loopback): void => {
  lb.loseInFlight(false)
}

/** Replaces the client (the cluster side) by a replica of `snapshot`, taken over. */
const failOver = (
  lb: Loopback,
  snapshot: Association.Snapshot,
  options?: Association.TakeOverOptions,
): void => {
  loseInFlightToClient(lb)
  const replica = Association.restore(lb.clientConfig, structuredClone(snapshot))
  lb.client = replica
  lb.clientTimers.clear()
  lb.perform(true, Association.takeOver(replica, lb.nowMs, options))
}

/** Per stream, ordered messages must come in increasing number. */
const expectOrderedPerStream = (numbers: ReadonlyArray<number>): void => {
  const last = new Map<number, number>()
  for (const n of numbers) {
    const { stream, unordered } = payload(n)
    if (unordered) continue
    const previous = last.get(stream)
    if (previous !== undefined) expect(n).toBeGreaterThan(previous)
    last.set(stream, n)
  }
}

describe("Association inbound resynchronisation (takeOver with resync)", () => {
  it("a stale replica skips what the primary acknowledged and delivers every later message once, in order", () => {
    const lb = new Loopback({ seed: 41 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    peerSends(lb, 0, 30)
    expect(lb.run(() => messages(lb.clientEvents).length >= 30, 600_000)).toBe(true)
    const stale = Association.snapshot(lb.client)
    // The primary goes on alone: 40 more messages (some left in flight when it dies).
    peerSends(lb, 30, 70)
    expect(lb.run(() => messages(lb.clientEvents).length >= 55, 600_000)).toBe(true)
    const deliveredByPrimary = messages(lb.clientEvents).map((m) => numberOf(m.data))
    const mark = lb.clientEvents.length
    // What the replication made known: the primary acknowledged up to its cumulative TSN.
    const cumulativeTsnAck = lb.client.tracker!.cumulative
    // The peer keeps sending to the dead primary's address (black-holed here: the harness has
    // one client address) until its T3-rtx fires; its retransmissions reach the replica.
    lb.blackHoles.add(clientHost)
    failOver(lb, stale, { resync: true, cumulativeTsnAck })
    peerSends(lb, 70, 120)
    const t3 = lb.serverTimers.dueOf(`T3-rtx:${clientHost}`)!
    expect(t3).toBeGreaterThan(lb.nowMs)
    lb.run(() => lb.nowMs >= t3 - 1, 60_000)
    lb.blackHoles.delete(clientHost)
    const replicaNumbers = () => messages(lb.clientEvents.slice(mark)).map((m) => numberOf(m.data))
    expect(
      lb.run(() => replicaNumbers().includes(119) && lb.server!.outstanding.length === 0, 600_000),
    ).toBe(true)
    const all = [...deliveredByPrimary, ...replicaNumbers()]
    // Nothing lost, nothing twice: the network lost nothing, so no message was gap-acked.
    expect([...all].sort((a, b) => a - b)).toEqual(Array.from({ length: 120 }, (_, i) => i))
    expectOrderedPerStream(replicaNumbers())
    expect(lb.server!.name).toBe("Established")
    expect(lb.client.name).toBe("Established")
    expect(lb.clientEvents.slice(mark)).toContainEqual({
      _tag: "Dropped",
      reason: "ResyncSkippedTsns",
    })
    // The mode stays on for streams not seen yet (10 inbound streams, 3 used).
    expect([...(lb.client.inboundResync?.seenStreams ?? [])].sort()).toEqual([0, 1, 2])
  })

  it("without resync the same stale replica stalls: the peer's data is never acknowledged", () => {
    const lb = new Loopback({ seed: 41 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    peerSends(lb, 0, 30)
    expect(lb.run(() => messages(lb.clientEvents).length >= 30, 600_000)).toBe(true)
    const stale = Association.snapshot(lb.client)
    peerSends(lb, 30, 70)
    expect(lb.run(() => messages(lb.clientEvents).length >= 70, 600_000)).toBe(true)
    const mark = lb.clientEvents.length
    failOver(lb, stale)
    peerSends(lb, 70, 80)
    lb.run(() => false, 30_000)
    // Unordered messages get through; the ordered ones wait for SSNs the primary consumed.
    expect(messages(lb.clientEvents.slice(mark)).every((m) => m.unordered)).toBe(true)
    expect(Association.info(lb.server!).outstandingChunks).toBeGreaterThan(0)
  })

  it("an up-to-date replica taken over with resync stays in step (no mode at all)", () => {
    const lb = new Loopback({ seed: 43 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    peerSends(lb, 0, 20)
    expect(lb.run(() => messages(lb.clientEvents).length >= 20, 600_000)).toBe(true)
    lb.run(() => lb.server!.outstanding.length === 0, 60_000)
    const mark = lb.clientEvents.length
    failOver(lb, Association.snapshot(lb.client), {
      resync: true,
      cumulativeTsnAck: lb.client.tracker!.cumulative,
    })
    peerSends(lb, 20, 40)
    expect(lb.run(() => messages(lb.clientEvents).length >= 40, 600_000)).toBe(true)
    const events = lb.clientEvents.slice(mark)
    expect(
      messages(events)
        .map((m) => numberOf(m.data))
        .sort((a, b) => a - b),
    ).toEqual(Array.from({ length: 20 }, (_, i) => 20 + i))
    expect(events.filter((e) => e._tag === "Dropped" && e.reason.startsWith("Resync"))).toEqual([])
    expect(lb.client.inboundResync).toBeUndefined()
  })

  it("the resynchronisation state survives a snapshot (replicated like the rest)", () => {
    const lb = new Loopback({ seed: 44 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    const stale = Association.snapshot(lb.client)
    peerSends(lb, 0, 6)
    expect(lb.run(() => messages(lb.clientEvents).length >= 6, 600_000)).toBe(true)
    const cumulativeTsnAck = lb.client.tracker!.cumulative
    failOver(lb, stale, { resync: true, cumulativeTsnAck })
    expect(lb.client.tracker!.cumulative).toBe(cumulativeTsnAck)
    const copy = Association.restore(
      lb.clientConfig,
      structuredClone(Association.snapshot(lb.client)),
    )
    expect(copy.inboundResync).toEqual({
      candidates: [],
      seenStreams: [],
      untilTsn: (cumulativeTsnAck + 65536) >>> 0,
    })
    expect(Association.snapshot(copy)).toEqual(Association.snapshot(lb.client))
  })
})

/** The cluster side (the harness's client) sends `from` … `to − 1`, small enough to not fragment much. */
const clusterSends = (lb: Loopback, from: number, to: number): void => {
  for (let index = from; index < to; index++) {
    const data = new Uint8Array(8 + ((index * 131) % 900)).fill(index & 0xff)
    new DataView(data.buffer).setUint32(0, index)
    lb.send(true, { _tag: "Send", stream: index % 3, ppid: 9, data, unordered: false })
  }
}

/** Packets the dead primary had not put on the wire yet die with it. */
const loseInFlightToServer = (lb: Loopback): void => {
  lb.loseInFlight(true)
}

describe("Association outbound resynchronisation (takeOver with a reserve, RFC 3758 FORWARD TSN)", () => {
  it("negotiates PR-SCTP on both ends", () => {
    const lb = new Loopback({ seed: 51 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    expect(lb.client.forwardTsnSupported).toBe(true)
    expect(lb.server!.forwardTsnSupported).toBe(true)
  })

  for (const seed of [52, 53, 54]) {
    it(`the peer skips what the dead primary may have sent and delivers every later message in order (seed ${seed})`, () => {
      const lb = new Loopback({ seed }, config(4000), config(5000))
      expect(lb.run(() => established(lb), 60_000)).toBe(true)
      clusterSends(lb, 0, 30)
      expect(
        lb.run(
          () => messages(lb.serverEvents).length >= 30 && lb.client.outstanding.length === 0,
          600_000,
        ),
      ).toBe(true)
      const stale = Association.snapshot(lb.client)
      // The primary goes on: 20 more messages, part of them still unsent or in flight when it dies.
      clusterSends(lb, 30, 50)
      lb.run(() => messages(lb.serverEvents).length >= 30 + (seed % 3) * 5 + 3, 600_000)
      loseInFlightToServer(lb)
      const sentByPrimary = Association.info(lb.client).nextTsn - stale.nextTsn
      expect(sentByPrimary).toBeLessThanOrEqual(64)
      const replica = Association.restore(lb.clientConfig, structuredClone(stale))
      lb.client = replica
      lb.clientTimers.clear()
      const outputs = Association.takeOver(replica, lb.nowMs, {
        resync: true,
        reserve: { tsn: 64, ssn: 32 },
      })
      // Nothing was outstanding in the snapshot: the FORWARD TSN goes out at once.
      const forward = outputs
        .flatMap((o) => (o._tag === "Send" ? [...o.message.chunks] : []))
        .find((c) => c._tag === "ForwardTsn")
      expect(forward).toEqual({
        _tag: "ForwardTsn",
        newCumulativeTsn: (stale.nextTsn + 63) >>> 0,
        streams: stale.ssnOut.map((ssn, stream) => ({ stream, ssn: (ssn + 31) & 0xffff })),
      })
      lb.perform(true, outputs)
      const mark = messages(lb.serverEvents).length
      clusterSends(lb, 100, 140)
      expect(
        lb.run(() => messages(lb.serverEvents).some((m) => numberOf(m.data) === 139), 600_000),
      ).toBe(true)
      lb.run(() => replica.outstanding.length === 0 && replica.forwardTsn === undefined, 60_000)
      const delivered = messages(lb.serverEvents).map((m) => numberOf(m.data))
      // Every message the replica sent arrives once, after everything the primary got through.
      expect(delivered.slice(mark)).toEqual(Array.from({ length: 40 }, (_, i) => 100 + i))
      const beforeTakeover = delivered.slice(0, mark)
      expect(new Set(beforeTakeover).size).toBe(beforeTakeover.length)
      expect(beforeTakeover.slice(0, 30)).toEqual(Array.from({ length: 30 }, (_, i) => i))
      // The primary's last messages that never reached the peer are the loss; counted.
      const lost = Array.from({ length: 20 }, (_, i) => 30 + i).filter(
        (n) => !beforeTakeover.includes(n),
      )
      expect(lost.length + beforeTakeover.length).toBe(50)
      expect(lb.server!.name).toBe("Established")
      expect(replica.name).toBe("Established")
      expect(replica.forwardTsn).toBeUndefined()
      expect(Association.info(lb.server!).peerCumulativeTsn).toBe(
        (Association.info(replica).nextTsn - 1) >>> 0,
      )
    })
  }

  it("retransmits a lost FORWARD TSN on T3 until the peer acknowledges it", () => {
    const lb = new Loopback({ seed: 55 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    clusterSends(lb, 0, 6)
    expect(
      lb.run(
        () => messages(lb.serverEvents).length >= 6 && lb.client.outstanding.length === 0,
        600_000,
      ),
    ).toBe(true)
    const stale = Association.snapshot(lb.client)
    clusterSends(lb, 6, 10)
    lb.run(() => messages(lb.serverEvents).length >= 10, 600_000)
    const replica = Association.restore(lb.clientConfig, structuredClone(stale))
    lb.client = replica
    lb.clientTimers.clear()
    // The takeover's packets (FORWARD TSN, HEARTBEATs) are lost.
    const outputs = Association.takeOver(replica, lb.nowMs, {
      resync: true,
      reserve: { tsn: 16, ssn: 8 },
    })
    lb.perform(
      true,
      outputs.filter((o) => o._tag !== "Send"),
    )
    expect(replica.forwardTsn?.sent).toBe(true)
    // The pending FORWARD TSN is part of the replicated state.
    const copy = Association.restore(
      lb.clientConfig,
      structuredClone(Association.snapshot(replica)),
    )
    expect(copy.forwardTsn).toEqual(replica.forwardTsn)
    expect(Association.snapshot(copy)).toEqual(Association.snapshot(replica))
    expect(lb.clientTimers.dueOf(`T3-rtx:${lb.client.paths[0]!.host}`)).toBeDefined()
    clusterSends(lb, 20, 25)
    expect(
      lb.run(
        () => messages(lb.serverEvents).length >= 15 && replica.forwardTsn === undefined,
        600_000,
      ),
    ).toBe(true)
    const after = messages(lb.serverEvents)
      .slice(10)
      .map((m) => numberOf(m.data))
    // Held above the gap until the FORWARD TSN came, then delivered stream by stream, each in order.
    expect([...after].sort((a, b) => a - b)).toEqual([20, 21, 22, 23, 24])
    for (const stream of [0, 1, 2]) {
      const own = after.filter((n) => n % 3 === stream)
      expect(own).toEqual([...own].sort((a, b) => a - b))
    }
  })

  it("without PR-SCTP on the peer the reserve is not used", () => {
    const lb = new Loopback({ seed: 56 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    const replica = Association.restore(
      lb.clientConfig,
      structuredClone(Association.snapshot(lb.client)),
    )
    replica.forwardTsnSupported = false
    const before = Association.info(replica).nextTsn
    Association.takeOver(replica, lb.nowMs, { resync: true, reserve: { tsn: 16, ssn: 8 } })
    expect(Association.info(replica).nextTsn).toBe(before)
    expect(replica.forwardTsn).toBeUndefined()
  })
})

describe("Association outbound reneging (§6.2.1 D iv)", () => {
  it("chunks a SACK no longer gap-acknowledges are retransmitted, not held for ever", () => {
    const lb = new Loopback({ seed: 61 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    // The peer's node that gap-acknowledged them dies: the DATA never reaches the survivor.
    for (const host of serverHosts) lb.blackHoles.add(host)
    for (let index = 0; index < 3; index++) {
      const data = new Uint8Array(16).fill(index)
      new DataView(data.buffer).setUint32(0, index)
      lb.send(true, { _tag: "Send", stream: 0, ppid: 7, data, unordered: false })
    }
    const first = lb.client.outstanding[lb.client.outstandingHead]!.tsn
    const sack = (gapAckBlocks: ReadonlyArray<{ start: number; end: number }>) =>
      lb.stepClient({
        _tag: "Receive",
        from: { host: serverHosts[0], udpPort: serverUdp },
        message: {
          sourcePort: Association.peerPort(lb.client),
          destinationPort: 4000,
          verificationTag: Association.myTag(lb.client),
          chunks: [
            {
              _tag: "Sack",
              cumulativeTsnAck: (first - 1) >>> 0,
              advertisedReceiverWindowCredit: 131072,
              gapAckBlocks,
              duplicateTsns: [],
            },
          ],
        },
        nowMs: lb.nowMs,
      })
    sack([{ start: 2, end: 3 }])
    const acked = () =>
      lb.client.outstanding.slice(lb.client.outstandingHead).map((chunk) => chunk.acked)
    expect(acked()).toEqual([false, true, true])
    // The survivor holds only what came before: its SACK lists no Gap Ack Block.
    sack([])
    expect(acked()).toEqual([false, false, false])
    for (const host of serverHosts) lb.blackHoles.delete(host)
    expect(lb.run(() => messages(lb.serverEvents).length >= 3, 120_000)).toBe(true)
    expect(messages(lb.serverEvents).map((m) => numberOf(m.data))).toEqual([0, 1, 2])
  })
})
