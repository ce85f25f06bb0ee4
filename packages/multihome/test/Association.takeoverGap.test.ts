/**
 * After a takeover, the first SACK that reports a hole goes out split (`takeOver`): what the
 * peer sent to the dead node is lost, and a peer that bundles (Nagle) sends nothing new while
 * it is unacknowledged, so only its T3-rtx (1 s) would resend it — unless three SACKs, each
 * newly acknowledging a higher TSN above the hole, give it three miss indications at once.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Association from "../src/Association.ts"
import type * as Chunk from "../src/Chunk.ts"
import { established, Loopback, serverHosts, serverUdp } from "./associationHarness.ts"

const config = (localPort: number): Association.Config => ({
  ...Association.defaultConfig,
  localPort,
})

/** The peer's DATA chunks `offsets` above the replica's cumulative TSN, in one packet. */
const dataAbove = (state: Association.State, offsets: ReadonlyArray<number>, nowMs: number) => {
  const cumulative = state.tracker!.cumulative
  const chunks: Array<Chunk.Chunk> = offsets.map((offset) => ({
    _tag: "Data",
    immediate: false,
    unordered: true,
    beginning: true,
    ending: true,
    tsn: (cumulative + offset) >>> 0,
    streamIdentifier: 0,
    streamSequenceNumber: 0,
    payloadProtocolIdentifier: 7,
    userData: new Uint8Array([offset]),
  }))
  return Association.step(state, {
    _tag: "Receive",
    from: { host: serverHosts[0], udpPort: serverUdp },
    packet: {
      sourcePort: Association.peerPort(state),
      destinationPort: 4000,
      verificationTag: Association.myTag(state),
      chunks,
    },
    nowMs,
  })
}

/** The gap blocks of every SACK the outputs send, in order. */
const sacks = (outputs: ReadonlyArray<Association.Output>) =>
  outputs.flatMap((output) =>
    output._tag === "Transmit"
      ? output.packet.chunks.flatMap((chunk) =>
          chunk._tag === "Sack" ? [chunk.gapAckBlocks.map((b) => [b.start, b.end])] : [],
        )
      : [],
  )

const replicaOf = (lb: Loopback, options?: Association.TakeOverOptions) => {
  const replica = Association.restore(lb.clientConfig, Association.snapshot(lb.client))
  Association.takeOver(replica, lb.nowMs, options)
  return replica
}

describe("takeOver: the first SACK with a hole is split", () => {
  const setUp = () => {
    const lb = new Loopback({ seed: 7 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    return lb
  }

  it("three SACKs, each in its own packet, newly acknowledging one more TSN above the hole", () => {
    const lb = setUp()
    const replica = replicaOf(lb)
    const outputs = dataAbove(replica, [2, 3, 4, 5], lb.nowMs)
    expect(sacks(outputs)).toEqual([[[2, 2]], [[2, 3]], [[2, 5]]])
    // One SACK per packet.
    const packets = outputs.filter(
      (output) =>
        output._tag === "Transmit" && output.packet.chunks.some((chunk) => chunk._tag === "Sack"),
    )
    expect(packets).toHaveLength(3)
    // Only the first hole after the takeover: the next SACK is whole.
    expect(sacks(dataAbove(replica, [7, 8, 9], lb.nowMs))).toEqual([
      [
        [2, 5],
        [7, 9],
      ],
    ])
  })

  it("across blocks; not with fewer than three TSNs above the hole; not on a handover or without a takeover", () => {
    const lb = setUp()
    expect(sacks(dataAbove(replicaOf(lb), [2, 4, 5], lb.nowMs))).toEqual([
      [[2, 2]],
      [
        [2, 2],
        [4, 4],
      ],
      [
        [2, 2],
        [4, 5],
      ],
    ])
    expect(sacks(dataAbove(replicaOf(lb), [2, 3], lb.nowMs))).toEqual([[[2, 3]]])
    expect(sacks(dataAbove(replicaOf(lb, { handover: true }), [2, 3, 4], lb.nowMs))).toEqual([
      [[2, 4]],
    ])
    expect(sacks(dataAbove(lb.client, [2, 3, 4], lb.nowMs))).toEqual([[[2, 4]]])
  })
})

describe("takeOver with setPrimary: the SACK the dead node owed goes out at once", () => {
  it("a delayed SACK due on the copy is sent with the takeover's ASCONF request, not at its timer", () => {
    const lb = new Loopback({ seed: 9 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    // One DATA to the primary: its SACK waits for the delayed-SACK timer.
    dataAbove(lb.client, [1], lb.nowMs)
    expect(lb.client.timers.SACK).toBeDefined()
    const replica = Association.restore(lb.clientConfig, Association.snapshot(lb.client))
    const asked = Association.takeOver(replica, lb.nowMs, { setPrimary: serverHosts[1] })
    expect(sacks(asked)).toHaveLength(1)
    const other = Association.restore(lb.clientConfig, Association.snapshot(lb.client))
    expect(sacks(Association.takeOver(other, lb.nowMs))).toHaveLength(0)
  })
})
