/**
 * After a takeover (`takeOver`) what the peer sent to the dead node may be lost, and a peer
 * that bundles (Nagle) holds what it writes next behind it: until the hole is filled (a SACK
 * with no gap for DATA since) or the path's RTO passed, a HEARTBEAT goes to the peer every
 * `takeoverProbeMs`, so that the peer sends what it holds and each of our SACKs — one per
 * packet, RFC 9260 §6.2 — is one more miss indication for it. `Association.takeoverProbe`
 * drives the whole of it under a usrsctp-like peer.
 */
import { describe, expect, it } from "@effect/vitest"
import { Address, SimNet } from "@understudy/transport"
import { Duration, Effect, Fiber, Stream } from "effect"
import * as Association from "../src/Association.ts"
import type * as Chunk from "../src/Chunk.ts"
import type * as Cluster from "../src/Cluster.ts"
import * as Endpoint from "../src/Endpoint.ts"
import { takeoverProbeMs } from "../src/internal/association/paths.ts"
import { type Loopback, serverHosts } from "./associationHarness.ts"
import * as Pair from "./support/clusterPair.ts"
import { advance, connectPeer, within } from "./support/endpoint-support.ts"
import { dataChunk, establishedPair, fromPeer } from "./support/peerPackets.ts"
import { dataTsns, repeated, type Seen, tapped } from "./support/wireTap.ts"

/** The peer's DATA chunks `offsets` above the replica's cumulative TSN, in one packet. */
const dataAbove = (state: Association.State, offsets: ReadonlyArray<number>, nowMs: number) => {
  const cumulative = state.tracker!.cumulative
  return fromPeer(
    state,
    offsets.map((offset) =>
      dataChunk(cumulative + offset, new Uint8Array([offset]), { unordered: true }),
    ),
    nowMs,
  )
}

/** The gap blocks of every SACK the outputs send, in order. */
const sacks = (outputs: ReadonlyArray<Association.Output>) =>
  outputs.flatMap((output) =>
    output._tag === "Send"
      ? output.message.chunks.flatMap((chunk) =>
          chunk._tag === "Sack" ? [chunk.gapAckBlocks.map((b) => [b.start, b.end])] : [],
        )
      : [],
  )

/** The HEARTBEAT chunks the outputs send. */
const heartbeats = (outputs: ReadonlyArray<Association.Output>) =>
  outputs.flatMap((output) =>
    output._tag === "Send"
      ? output.message.chunks.filter((chunk: Chunk.Chunk) => chunk._tag === "Heartbeat")
      : [],
  )

const replicaOf = (lb: Loopback, options?: Association.TakeOverOptions) => {
  const replica = Association.restore(lb.clientConfig, Association.snapshot(lb.client))
  const outputs = Association.takeOver(replica, lb.nowMs, options)
  return { replica, outputs }
}

/** The replica's takeover probe timer fired at `nowMs`. */
const probe = (replica: Association.State, nowMs: number) =>
  Association.step(replica, { _tag: "TimerFired", timer: "Takeover-probe", nowMs }).outputs

/** The HEARTBEAT the replica sent, answered. */
const answer = (replica: Association.State, sent: ReadonlyArray<Chunk.Chunk>, nowMs: number) =>
  fromPeer(
    replica,
    sent.map((chunk) => ({ _tag: "HeartbeatAck", info: (chunk as Chunk.Heartbeat).info })),
    nowMs,
  )

describe("takeOver: one SACK per packet above the hole (RFC 9260 §6.2)", () => {
  it("a packet with several TSNs above the hole gets one SACK, whole", () => {
    const lb = establishedPair(7)
    const { replica } = replicaOf(lb)
    expect(sacks(dataAbove(replica, [2, 3, 4, 5], lb.nowMs))).toEqual([[[2, 5]]])
    expect(sacks(dataAbove(replica, [7, 8], lb.nowMs))).toEqual([
      [
        [2, 5],
        [7, 8],
      ],
    ])
  })
})

describe("takeOver: HEARTBEATs from takeoverProbeMs apart while the hole may be open", () => {
  /** The probe timer's next firing, stepped; returns its HEARTBEATs and when it fired. */
  const nextProbe = (replica: Association.State) => {
    const atMs = replica.timers["Takeover-probe"]!
    return { atMs, sent: heartbeats(probe(replica, atMs)) }
  }

  it("one outstanding at a time, at full pace after DATA, until a SACK with no gap acknowledges DATA since the takeover", () => {
    const lb = establishedPair(8)
    const { replica, outputs } = replicaOf(lb)
    const first = heartbeats(outputs)
    expect(first.length).toBeGreaterThan(0)
    expect(replica.timers["Takeover-probe"]).toBe(lb.nowMs + takeoverProbeMs)
    // The takeover's own HEARTBEAT is not answered yet: none more, the probe re-armed.
    const unanswered = nextProbe(replica)
    expect(unanswered.sent).toHaveLength(0)
    expect(replica.timers["Takeover-probe"]).toBe(unanswered.atMs + takeoverProbeMs)
    answer(replica, first, unanswered.atMs + 1)
    const second = nextProbe(replica)
    expect(second.sent).toHaveLength(1)
    expect(replica.timers["Takeover-probe"]).toBe(second.atMs + takeoverProbeMs)
    answer(replica, second.sent, second.atMs + 1)
    // Above the hole: still open; DATA came, so the next probe is at full pace.
    dataAbove(replica, [2, 3], second.atMs + 2)
    const third = nextProbe(replica)
    expect(third.sent).toHaveLength(1)
    expect(replica.timers["Takeover-probe"]).toBe(third.atMs + takeoverProbeMs)
    answer(replica, third.sent, third.atMs + 1)
    // The lost chunk comes (the peer's fast retransmit): no gap, and once its SACK leaves
    // (delayed: one packet, in order) the probing ends.
    dataAbove(replica, [1], third.atMs + 2)
    const sackAtMs = replica.timers.SACK!
    expect(
      sacks(
        Association.step(replica, { _tag: "TimerFired", timer: "SACK", nowMs: sackAtMs }).outputs,
      ),
    ).toEqual([[]])
    expect(replica.takeoverHole).toBeUndefined()
    expect(nextProbe(replica).sent).toHaveLength(0)
    expect(replica.timers["Takeover-probe"]).toBeUndefined()
  })

  it("a peer that sends nothing: after 5 quiet probes the wait doubles up to 16 × takeoverProbeMs, none past the path's RTO (its T3-rtx resends by then); none on a handover", () => {
    const lb = establishedPair(10)
    const { replica, outputs } = replicaOf(lb)
    const untilMs = lb.nowMs + replica.paths[0]!.rto.rto
    let sent = heartbeats(outputs)
    const probedAtMs: Array<number> = []
    for (
      let atMs = replica.timers["Takeover-probe"];
      atMs !== undefined && probedAtMs.length < 1_000;
      atMs = replica.timers["Takeover-probe"]
    ) {
      answer(replica, sent, atMs - 1)
      const next = nextProbe(replica)
      sent = next.sent
      if (sent.length > 0) probedAtMs.push(next.atMs)
    }
    const waits = probedAtMs.map((atMs, at) => atMs - (probedAtMs[at - 1] ?? lb.nowMs))
    // Full pace for 5 quiet probes, then doubling.
    expect(waits.slice(0, 11)).toEqual(
      [1, 1, 1, 1, 1, 1, 2, 4, 8, 16, 16].map((k) => k * takeoverProbeMs),
    )
    expect(new Set(waits.slice(10))).toEqual(new Set([16 * takeoverProbeMs]))
    // ~13 HEARTBEATs in an RTO of 1 s, not ~100.
    expect(probedAtMs.length).toBeLessThan(15)
    expect(probedAtMs.at(-1)!).toBeLessThan(untilMs)
    expect(probedAtMs.at(-1)! + 16 * takeoverProbeMs).toBeGreaterThanOrEqual(untilMs)
    const handedOver = replicaOf(lb, { handover: true })
    expect(handedOver.replica.takeoverHole).toBeUndefined()
    expect(handedOver.replica.timers["Takeover-probe"]).toBeUndefined()
  })
})

describe("takeOver with setPrimary: the SACK the dead node owed goes out at once", () => {
  it("a delayed SACK due on the copy is sent with the takeover's ASCONF request, not at its timer", () => {
    const lb = establishedPair(9)
    // One DATA to the primary: its SACK waits for the delayed-SACK timer.
    dataAbove(lb.client, [1], lb.nowMs)
    expect(lb.client.timers.SACK).toBeDefined()
    expect(sacks(replicaOf(lb, { setPrimary: serverHosts[1] }).outputs)).toHaveLength(1)
    expect(sacks(replicaOf(lb).outputs)).toHaveLength(0)
  })
})

describe("takeOver with setPrimaryOnceFilled (`both`): Set Primary once the hole is filled", () => {
  const asconfs = (outputs: ReadonlyArray<Association.Output>) =>
    outputs.flatMap((output) =>
      output._tag === "Send"
        ? output.message.chunks.filter((chunk) => chunk._tag === "Asconf")
        : [],
    )
  const setUp = () => {
    const lb = establishedPair(11)
    expect(lb.client.asconf).toBeDefined()
    return lb
  }
  const replicaAsking = (lb: Loopback, onceFilled: boolean) =>
    replicaOf(lb, {
      setPrimary: serverHosts[1],
      ...(onceFilled ? { setPrimaryOnceFilled: true } : {}),
    })

  it("not in the takeover's first packet: the peer's held DATA still goes to the address it lost a chunk on", () => {
    const lb = setUp()
    expect(asconfs(replicaAsking(lb, false).outputs)).toHaveLength(1)
    const { replica, outputs } = replicaAsking(lb, true)
    expect(asconfs(outputs)).toHaveLength(0)
    // Above the hole: one SACK, no request yet.
    const above = dataAbove(replica, [2, 3], lb.nowMs)
    expect(sacks(above)).toEqual([[[2, 3]]])
    expect(asconfs(above)).toHaveLength(0)
    // The fast retransmit fills it: its SACK (delayed, or with the answer's DATA, §6.1) has no
    // gap, and the request goes with it.
    expect(asconfs(dataAbove(replica, [1], lb.nowMs))).toHaveLength(0)
    const filled = Association.step(replica, {
      _tag: "TimerFired",
      timer: "SACK",
      nowMs: lb.nowMs + 200,
    }).outputs
    expect(sacks(filled)).toEqual([[]])
    expect(asconfs(filled)).toHaveLength(1)
    // Once only.
    expect(asconfs(dataAbove(replica, [1, 2], lb.nowMs))).toHaveLength(0)
  })

  it("no hole: the first SACK for DATA after the takeover brings it", () => {
    const lb = setUp()
    const { replica } = replicaAsking(lb, true)
    expect(asconfs(dataAbove(replica, [1], lb.nowMs))).toHaveLength(0)
    // One packet, no gap: its SACK waits for the delayed-SACK timer, and the request with it.
    const timed = Association.step(replica, {
      _tag: "TimerFired",
      timer: "SACK",
      nowMs: lb.nowMs + 200,
    }).outputs
    expect(sacks(timed)).toEqual([[]])
    expect(asconfs(timed)).toHaveLength(1)
  })
})

/**
 * `takeover` on SimNet: the secondary binds the dead primary's address before the takeover's
 * first packet. That packet (a HEARTBEAT, the SACK the dead node owed) is what makes a peer
 * that bundles send the DATA it held back, to its primary address: bound only after, that
 * DATA was lost and the peer resent it at its T3-rtx (a loopback capture under usrsctp's
 * client showed it: one RTO, 1 s, without an echo). The primary's process dies, its host
 * stays (the address is free, as on one host once the socket is gone); the claim of the
 * address takes 50 ms (as `ip addr add` + gratuitous ARP would across hosts), which is when
 * a bind after the first packet loses what the peer sends.
 */
describe("Cluster takeover: the dead node's address is bound before the first packet", () => {
  const { primaryHost, peerHost, udpPort, sctpPort, quick } = Pair
  /** The pair, the claim of the dead node's address taking 50 ms. */
  const startPair = (net: SimNet.SimNet, failover: Cluster.Failover) =>
    Pair.startPair(net, {
      failover,
      addressClaim: { claim: () => Effect.sleep(Duration.millis(50)), release: () => Effect.void },
    })

  /** `total` numbered lines, one every 10 ms, the primary crashed before the 50th; echoed whole and in order. */
  const streamThroughCrash = (
    net: SimNet.SimNet,
    association: Endpoint.AssociationHandle,
    primary: Fiber.Fiber<unknown, unknown>,
  ) =>
    Effect.gen(function* () {
      const total = 200
      const echoes = yield* Effect.forkScoped(
        association.messages.pipe(Stream.take(total), Stream.runCollect),
      )
      for (let index = 0; index < total; index++) {
        if (index === 50) {
          yield* net.crash(primaryHost)
          yield* Effect.forkScoped(Fiber.interrupt(primary))
          yield* net.restart(primaryHost)
        }
        yield* association.send(0, 1, new TextEncoder().encode(`${index}`))
        yield* advance(10)
      }
      const echoed = yield* within(60_000, Fiber.join(echoes))
      expect(echoed.map((message) => Number(new TextDecoder().decode(message.data)))).toEqual(
        Array.from({ length: total }, (_, index) => index),
      )
    })

  it.effect("no DATA the peer sends after the takeover's first packet is lost", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
      const { secondary: secondaryNode, primary } = yield* startPair(net, "takeover")
      const association = yield* connectPeer(net, peerHost, quick, {
        host: primaryHost,
        udpPort,
        port: sctpPort,
      })
      yield* advance(1_500)
      const tookOver = yield* Effect.forkScoped(
        secondaryNode.events.pipe(
          Stream.filter((event) => event._tag === "TookOver"),
          Stream.runHead,
        ),
      )
      yield* streamThroughCrash(net, association, primary)
      const event = yield* Fiber.join(tookOver)
      const tookOverAtMs =
        event._tag === "Some" && event.value._tag === "TookOver" ? event.value.atMs : Infinity
      const status = yield* secondaryNode.status
      expect(status.addressTakeover?.state).toBe("bound")
      expect(status.addressTakeover?.packets).toBeGreaterThan(0)
      // What the peer sent to the dead address before the takeover is lost (and resent);
      // nothing after its first packet.
      const lost = (yield* net.trace).filter(
        (line) =>
          line.kind === "drop" && line.from.includes(peerHost) && line.to.includes(primaryHost),
      )
      expect(lost.filter((line) => line.atMs >= tookOverAtMs)).toEqual([])
      expect(lost.filter((line) => line.atMs < tookOverAtMs).length).toBeGreaterThan(0)
    }),
  )

  // `both`: the node binds the dead node's address and asks the peer (ASCONF) to move to its
  // own, but only once the peer resent what it lost on the old address: a peer like usrsctp
  // fast-retransmits only on SACKs for chunks sent to the same address.
  it.effect(
    "both: the Set Primary request reaches the peer only after it resent what it lost",
    () =>
      Effect.gen(function* () {
        const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
        const { primary } = yield* startPair(net, "both")
        const seen: Array<Seen> = []
        // A slow T3-rtx (3 s, usrsctp's initial RTO), past this simulation's takeover (~1 s): a
        // resend before it is a fast retransmit.
        const peer = yield* Endpoint.make({
          bind: Address.udp(peerHost, udpPort),
          port: 5000,
          config: { ...quick, rtoInitial: 3_000, rtoMin: 3_000, rtoMax: 6_000 },
          seed: 99,
        }).pipe(Effect.provide(tapped(net, peerHost, seen)))
        const association = yield* within(
          10_000,
          peer.connect({ host: primaryHost, udpPort, port: sctpPort }),
        )
        yield* advance(1_500)
        yield* streamThroughCrash(net, association, primary)
        const sent = dataTsns(seen, "out")
        const resent = repeated(sent)
        // Something was lost on the dead node's address and resent.
        expect(resent.length).toBeGreaterThan(0)
        const askedAtMs = seen.find(
          (entry) =>
            entry.direction === "in" &&
            entry.packet.chunks.some((chunk) => chunk._tag === "Asconf"),
        )?.atMs
        expect(askedAtMs).toBeDefined()
        // The first chunk lost on the dead node's address (the hole the peer's SACKs name).
        const first = sent.find((entry) => resent.includes(entry.tsn))!
        const times = sent.filter((entry) => entry.tsn === first.tsn).map((entry) => entry.atMs)
        // Resent (fast) before the request came, and before a T3-rtx would have. Strictly:
        // this peer, unlike usrsctp, resends at once what it had sent to the old primary when
        // told of a new one, so a request in the takeover's first packet would see the resend
        // in the same instant.
        expect(times[1]!).toBeLessThan(askedAtMs!)
        expect(times[1]! - times[0]!).toBeLessThan(3_000)
      }),
  )
})
