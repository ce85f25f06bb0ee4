/**
 * After a takeover, the SACKs that report a hole go out split (`takeOver`): what the peer sent
 * to the dead node is lost, and a peer that bundles (Nagle) sends little while it is
 * unacknowledged, so only its T3-rtx (1 s) would resend it — unless three SACKs, each newly
 * acknowledging a higher TSN above the hole, give it three miss indications, from one packet
 * or from the next ones.
 */
import { describe, expect, it } from "@effect/vitest"
import { Address, Datagram, SimNet } from "@understudy/transport"
import { Deferred, Duration, Effect, Fiber, Redacted, Stream } from "effect"
import * as Association from "../src/Association.ts"
import type * as Chunk from "../src/Chunk.ts"
import * as Cluster from "../src/Cluster.ts"
import * as Endpoint from "../src/Endpoint.ts"
import { established, Loopback, serverHosts, serverUdp } from "./associationHarness.ts"
import { advance, connectPeer, within } from "./support/endpoint-support.ts"
import { dataTsns, repeated, type Seen, tapped } from "./support/wireTap.ts"

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
    message: {
      sourcePort: Association.peerPort(state),
      destinationPort: 4000,
      verificationTag: Association.myTag(state),
      chunks,
    },
    nowMs,
  }).outputs
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

const replicaOf = (lb: Loopback, options?: Association.TakeOverOptions) => {
  const replica = Association.restore(lb.clientConfig, Association.snapshot(lb.client))
  Association.takeOver(replica, lb.nowMs, options)
  return replica
}

describe("takeOver: SACKs that report the takeover's hole are split until the peer has three miss indications", () => {
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
        output._tag === "Send" && output.message.chunks.some((chunk) => chunk._tag === "Sack"),
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

  it("across blocks; not on a handover or without a takeover", () => {
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
    expect(sacks(dataAbove(replicaOf(lb, { handover: true }), [2, 3, 4], lb.nowMs))).toEqual([
      [[2, 4]],
    ])
    expect(sacks(dataAbove(lb.client, [2, 3, 4], lb.nowMs))).toEqual([[[2, 4]]])
  })

  it("fewer than three TSNs above the hole in a packet: the next packet's TSNs give the rest, then no more", () => {
    const lb = setUp()
    const replica = replicaOf(lb)
    // Two lines in the packet after the takeover (usrsctp's client, from a capture): two
    // miss indications.
    expect(sacks(dataAbove(replica, [2, 3], lb.nowMs))).toEqual([[[2, 2]], [[2, 3]]])
    // Its next packet: the third, from one SACK (one per packet, as always).
    expect(sacks(dataAbove(replica, [4], lb.nowMs))).toEqual([[[2, 4]]])
    // Three given: whole SACKs from now on.
    expect(sacks(dataAbove(replica, [5, 6], lb.nowMs))).toEqual([[[2, 6]]])
  })

  it("a packet that brings nothing new above the hole (a duplicate) adds no split SACK", () => {
    const lb = setUp()
    const replica = replicaOf(lb)
    expect(sacks(dataAbove(replica, [2], lb.nowMs))).toEqual([[[2, 2]]])
    expect(sacks(dataAbove(replica, [2], lb.nowMs))).toEqual([[[2, 2]]])
    expect(sacks(dataAbove(replica, [3, 4], lb.nowMs))).toEqual([[[2, 3]], [[2, 4]]])
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

describe("takeOver with setPrimaryOnceFilled (`both`): Set Primary once the hole is filled", () => {
  const asconfs = (outputs: ReadonlyArray<Association.Output>) =>
    outputs.flatMap((output) =>
      output._tag === "Send"
        ? output.message.chunks.filter((chunk) => chunk._tag === "Asconf")
        : [],
    )
  const setUp = () => {
    const lb = new Loopback({ seed: 11 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    expect(lb.client.asconf).toBeDefined()
    return lb
  }
  const replicaAsking = (lb: Loopback, onceFilled: boolean) => {
    const replica = Association.restore(lb.clientConfig, Association.snapshot(lb.client))
    const outputs = Association.takeOver(replica, lb.nowMs, {
      setPrimary: serverHosts[1],
      ...(onceFilled ? { setPrimaryOnceFilled: true } : {}),
    })
    return { replica, outputs }
  }

  it("not in the takeover's first packet: the peer's held DATA still goes to the address it lost a chunk on", () => {
    const lb = setUp()
    expect(asconfs(replicaAsking(lb, false).outputs)).toHaveLength(1)
    const { replica, outputs } = replicaAsking(lb, true)
    expect(asconfs(outputs)).toHaveLength(0)
    // Above the hole: split SACKs, no request yet.
    const above = dataAbove(replica, [2, 3], lb.nowMs)
    expect(sacks(above)).toEqual([[[2, 2]], [[2, 3]]])
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
  const primaryHost = "10.0.0.2"
  const secondaryHost = "10.0.0.3"
  const peerHost = "10.0.0.9"
  const udpPort = 9899
  const quick: Endpoint.AssociationOptions = {
    rtoInitial: 300,
    rtoMin: 100,
    rtoMax: 400,
    pathMaxRetrans: 2,
    heartbeatInterval: 1_000,
  }
  const node = (
    net: SimNet.SimNet,
    role: Cluster.Role,
    host: string,
    failover: Cluster.Failover = "takeover",
  ) =>
    Effect.gen(function* () {
      // The secondary binds the primary's address through that host (its IP, now free).
      const own = yield* Datagram.Datagram
      const primarys = yield* Effect.provide(
        Effect.service(Datagram.Datagram),
        net.layer(primaryHost),
      )
      const datagram = Datagram.Datagram.of({
        bind: (address) =>
          address.host === primaryHost && role === "secondary"
            ? primarys.bind(address)
            : own.bind(address),
      })
      return yield* Cluster.make({
        role,
        bind: Address.udp(host, udpPort),
        port: 7,
        addresses: [primaryHost, secondaryHost],
        link: Address.tcp(secondaryHost, 7000),
        policy: { _tag: "EveryUpdate" },
        config: quick,
        seed: role === "primary" ? 11 : 12,
        clusterKey: Redacted.make(new Uint8Array(32).fill(7)),
        failover,
        addressClaim: {
          claim: () => Effect.sleep(Duration.millis(50)),
          release: () => Effect.void,
        },
      }).pipe(Effect.provideService(Datagram.Datagram, datagram))
    })

  it.effect("no DATA the peer sends after the takeover's first packet is lost", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
      const secondary = yield* Deferred.make<Cluster.Node>()
      yield* net.run(
        secondaryHost,
        Effect.gen(function* () {
          yield* Deferred.succeed(secondary, yield* node(net, "secondary", secondaryHost))
          return yield* Effect.never
        }),
      )
      // The primary runs outside `net.run`: its host comes back empty after the crash.
      const primary = yield* Effect.forkScoped(
        Effect.scoped(Effect.andThen(node(net, "primary", primaryHost), Effect.never)).pipe(
          Effect.provide(net.layer(primaryHost)),
        ),
      )
      yield* advance(200)
      const secondaryNode = yield* Deferred.await(secondary)
      const association = yield* connectPeer(net, peerHost, quick, {
        host: primaryHost,
        udpPort,
        port: 7,
      })
      yield* advance(1_500)
      const tookOver = yield* Effect.forkScoped(
        secondaryNode.events.pipe(
          Stream.filter((event) => event._tag === "TookOver"),
          Stream.runHead,
        ),
      )
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
        const secondary = yield* Deferred.make<Cluster.Node>()
        yield* net.run(
          secondaryHost,
          Effect.gen(function* () {
            yield* Deferred.succeed(secondary, yield* node(net, "secondary", secondaryHost, "both"))
            return yield* Effect.never
          }),
        )
        const primary = yield* Effect.forkScoped(
          Effect.scoped(
            Effect.andThen(node(net, "primary", primaryHost, "both"), Effect.never),
          ).pipe(Effect.provide(net.layer(primaryHost))),
        )
        yield* advance(200)
        yield* Deferred.await(secondary)
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
          peer.connect({ host: primaryHost, udpPort, port: 7 }),
        )
        yield* advance(1_500)
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
