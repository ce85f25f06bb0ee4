/**
 * The cluster on SimNet (TestClock, seeded): a peer endpoint talks to the echo service of a
 * two-node cluster (primary 10.0.0.2, secondary 10.0.0.3); the primary crashes mid-stream
 * and the secondary carries the association on. Hosts are named by IP so the INIT ACK's
 * address parameters carry them.
 */
import { describe, expect, it } from "@effect/vitest"
import { MemoryStore, type Store, StoreError } from "@understudy/store"
import { Address, Datagram, SimNet, Transport } from "@understudy/transport"
import { Deferred, Duration, Effect, Fiber, Metric, type Scope, Stream } from "effect"
import type * as Association from "../src/Association.ts"
import * as Cluster from "../src/Cluster.ts"
import * as Endpoint from "../src/Endpoint.ts"
import * as Metrics from "../src/Metrics.ts"
import * as Replication from "../src/Replication.ts"
import * as Pair from "./support/clusterPair.ts"
import { advance, connectPeer, within } from "./support/endpoint-support.ts"
import { dataTsns, repeated, type Seen, tapped } from "./support/wireTap.ts"

const { primaryHost, secondaryHost, peerHost, udpPort, sctpPort, clusterKey } = Pair
const linkPort = 7000

/** Short timers, as a tuned peer would have them: a dead path is left within seconds. */
const quick: Endpoint.AssociationOptions = {
  rtoInitial: 300,
  rtoMin: 100,
  rtoMax: 400,
  associationMaxRetrans: 10,
  pathMaxRetrans: 2,
  initRetransmitsMax: 4,
  heartbeatInterval: 1_000,
}

const policyOf = (text: string): Replication.Policy => {
  const policy = Replication.parsePolicy(text)
  if (policy instanceof Replication.PolicyError) throw policy
  return policy
}

interface Setup {
  readonly net: SimNet.SimNet
  /** The nodes as first started. */
  readonly nodes: Map<Cluster.Role, Cluster.Node>
  /** The node each host runs now (a restarted host runs a new one). */
  readonly byHost: Map<string, Cluster.Node>
  /** How each host starts (read again at its restart). */
  readonly plans: Map<string, Plan>
  /** The state-node store, if any. */
  readonly store: Store.Store["Service"] | undefined
}

/** A node's part: its role, the link it listens on or connects to, its standby's link. */
interface Plan {
  readonly role: Cluster.Role
  readonly link: string
  readonly standbyLink?: string
}

const startCluster = (
  policyText: string,
  options: {
    readonly store?: boolean
    readonly storeDown?: boolean
    readonly linkKeepAlive?: Cluster.Options["linkKeepAlive"]
    /** Fence the role in a store; a role in `cut` can not reach it. */
    readonly fence?: { readonly lease: Duration.Input; readonly cut: Set<Cluster.Role> }
    /** After a takeover, the secondary keeps a node restarted on the primary's host in sync. */
    readonly failback?: boolean
    /** The nodes' association timers (default `quick`). */
    readonly config?: Partial<Association.Config>
  } = {},
) =>
  Effect.gen(function* () {
    const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
    const memory = options.store === true ? yield* MemoryStore.make() : undefined
    // A store whose writes all fail, as one that is down.
    const store =
      memory !== undefined && options.storeDown === true
        ? {
            ...memory,
            put: () => Effect.fail(new StoreError.Unavailable({ detail: "down in this test" })),
          }
        : memory
    const fenceStore = options.fence === undefined ? undefined : yield* MemoryStore.make()
    /** The fence store as `role` sees it: down while the role is cut off. */
    const fenceView = (role: Cluster.Role, fence: NonNullable<typeof options.fence>) => {
      const memory = fenceStore!
      const down = new StoreError.Unavailable({ detail: "cut off in this test" })
      const gated =
        <A extends Array<unknown>, R, E>(call: (...args: A) => Effect.Effect<R, E>) =>
        (...args: A) =>
          fence.cut.has(role) ? Effect.fail(down) : call(...args)
      return {
        ...memory,
        get: gated(memory.get),
        put: gated(memory.put),
        grantLease: gated(memory.grantLease),
        keepAlive: gated(memory.keepAlive),
        revokeLease: gated(memory.revokeLease),
      }
    }
    const nodes = new Map<Cluster.Role, Cluster.Node>()
    const byHost = new Map<string, Cluster.Node>()
    const plans = new Map<string, Plan>([
      [primaryHost, { role: "primary", link: secondaryHost }],
      [
        secondaryHost,
        {
          role: "secondary",
          link: secondaryHost,
          ...(options.failback === true ? { standbyLink: primaryHost } : {}),
        },
      ],
    ])
    for (const host of [secondaryHost, primaryHost]) {
      yield* net.run(
        host,
        Effect.gen(function* () {
          const plan = plans.get(host)!
          const role = plan.role
          const node = yield* Cluster.make({
            role,
            bind: Address.udp(host, udpPort),
            port: sctpPort,
            addresses: [primaryHost, secondaryHost],
            link: Address.tcp(plan.link, linkPort),
            ...(plan.standbyLink !== undefined
              ? { standbyLink: Address.tcp(plan.standbyLink, linkPort) }
              : {}),
            policy: policyOf(policyText),
            config: options.config ?? quick,
            seed: role === "primary" ? 11 : 12,
            clusterKey,
            ...(store !== undefined ? { store } : {}),
            ...(options.linkKeepAlive !== undefined
              ? { linkKeepAlive: options.linkKeepAlive }
              : {}),
            ...(options.fence !== undefined
              ? {
                  fence: {
                    store: fenceView(role, options.fence),
                    lease: options.fence.lease,
                  },
                }
              : {}),
          })
          if (!nodes.has(role)) nodes.set(role, node)
          byHost.set(host, node)
          return yield* Effect.never
        }),
      )
    }
    yield* advance(200)
    return { net, nodes, byHost, plans, store: memory } satisfies Setup
  })

const startPeer = (net: SimNet.SimNet) =>
  connectPeer(net, peerHost, quick, { host: primaryHost, udpPort, port: sctpPort })

const numbered = (index: number) => new TextEncoder().encode(`message ${index}`)
const numberOf = (data: Uint8Array) => Number(new TextDecoder().decode(data).split(" ")[1])

/**
 * Sends `count` numbered messages on `streams` streams, crashing the primary after
 * `crashAfter` of them (and calling `beforeCrash` first), and collects every echo.
 */
const echoRun = (
  setup: Setup,
  association: Endpoint.AssociationHandle,
  options: {
    readonly count: number
    readonly streams: number
    readonly crashAfter: number
    readonly beforeCrash?: Effect.Effect<void, never, Scope.Scope>
    /** The host crashed (default the primary's). */
    readonly victim?: string
  },
) =>
  Effect.gen(function* () {
    const echoes = yield* Effect.forkScoped(
      association.messages.pipe(Stream.take(options.count), Stream.runCollect),
    )
    for (let index = 0; index < options.count; index++) {
      if (index === options.crashAfter) {
        if (options.beforeCrash !== undefined) yield* options.beforeCrash
        yield* setup.net.crash(options.victim ?? primaryHost)
      }
      yield* association.send(index % options.streams, 42, numbered(index))
      yield* advance(5)
    }
    return yield* within(120_000, Fiber.join(echoes))
  })

const expectExactlyOnceInOrder = (
  echoes: ReadonlyArray<Endpoint.Message>,
  count: number,
  streams: number,
) => {
  const numbers = echoes.map((message) => numberOf(message.data))
  expect(new Set(numbers).size).toBe(numbers.length)
  expect([...numbers].sort((a, b) => a - b)).toEqual(Array.from({ length: count }, (_, i) => i))
  for (let stream = 0; stream < streams; stream++) {
    const onStream = echoes.filter((m) => m.stream === stream).map((m) => numberOf(m.data))
    expect(onStream).toEqual([...onStream].sort((a, b) => a - b))
  }
}

/** Ten lines sent on `association` (stream 0) come back within 30 s of simulated time. */
const echoesTen = (association: Endpoint.AssociationHandle) =>
  Effect.gen(function* () {
    const echoes = yield* Effect.forkScoped(
      association.messages.pipe(Stream.take(10), Stream.runCollect),
    )
    for (let index = 0; index < 10; index++) yield* association.send(0, 1, numbered(index))
    expect(yield* within(30_000, Fiber.join(echoes))).toHaveLength(10)
  })

/** The refusals counted for `reason` so far (metrics are the process's: compare deltas). */
const refusalsOf = (reason: string) =>
  Effect.map(
    Metric.value(Metric.withAttributes(Metrics.refusals, { reason })),
    (state) => state.count,
  )

describe("Cluster on SimNet", () => {
  it.effect("both addresses are confirmed: the secondary answers HEARTBEATs from its copy", () =>
    Effect.gen(function* () {
      const setup = yield* startCluster("every-update")
      const association = yield* startPeer(setup.net)
      yield* advance(3_000)
      const status = yield* association.status
      expect(status.paths.map((path) => path.host).sort()).toEqual([primaryHost, secondaryHost])
      expect(status.paths.every((path) => path.confirmed)).toBe(true)
      const secondary = yield* setup.nodes.get("secondary")!.status
      expect(secondary.role).toBe("secondary")
      expect(secondary.link).toBe("up")
      expect(secondary.replicas).toBe(1)
    }),
  )

  for (const policy of ["every-update", "state-node"] as const) {
    it.effect(`${policy}: the primary crashes mid-stream; every echo arrives exactly once`, () =>
      Effect.gen(function* () {
        const setup = yield* startCluster(policy, { store: policy === "state-node" })
        const association = yield* startPeer(setup.net)
        yield* advance(2_000)
        const echoes = yield* echoRun(setup, association, {
          count: 200,
          streams: 3,
          crashAfter: 100,
        })
        expectExactlyOnceInOrder(echoes, 200, 3)
        const status = yield* association.status
        expect(status.state).toBe("Established")
        const secondary = yield* setup.nodes.get("secondary")!.status
        expect(secondary.role).toBe("active-secondary")
        expect(secondary.associations).toHaveLength(1)
      }),
    )
  }

  it.effect(
    "a failover's detection time is measured: from the last word heard from a hung primary to the link's end",
    () =>
      Effect.gen(function* () {
        const detection = Metric.value(Metrics.failoverDetectionMs)
        const before = yield* detection
        const setup = yield* startCluster("every-update")
        const association = yield* startPeer(setup.net)
        yield* advance(1_000)
        // A primary that hangs (its connections stay open): only the keep-alive notices.
        yield* setup.net.partition([primaryHost], [secondaryHost])
        yield* advance(3_000)
        expect((yield* setup.nodes.get("secondary")!.status).role).toBe("active-secondary")
        const after = yield* detection
        expect(after.count - before.count).toBe(1)
        // The link's keep-alive (100 / 500 ms) noticed it: its time-out after the last
        // ping, give or take one interval.
        const detectedMs = after.sum - before.sum
        expect(detectedMs).toBeGreaterThanOrEqual(400)
        expect(detectedMs).toBeLessThanOrEqual(600)
        expect((yield* association.status).state).toBe("Established")
      }),
  )

  it.effect("on-impending-failure: one sync before the crash carries the association", () =>
    Effect.gen(function* () {
      const setup = yield* startCluster("on-impending-failure")
      const association = yield* startPeer(setup.net)
      yield* advance(2_000)
      const primary = setup.nodes.get("primary")!
      const echoes = yield* echoRun(setup, association, {
        count: 100,
        streams: 2,
        crashAfter: 50,
        beforeCrash: Effect.andThen(advance(500), within(5_000, primary.impendingFailure)),
      })
      expectExactlyOnceInOrder(echoes, 100, 2)
    }),
  )

  // A delayed SACK (200 ms) shorter than the smallest RTO, as RFC 9260 §6.2 asks (with
  // `quick`'s 100 ms RTO.min the last odd DATA of a run waits for its SACK longer than T3).
  const handOverTimers: Endpoint.AssociationOptions = { ...quick, rtoMin: 300, rtoInitial: 300 }

  for (const policy of ["every-update", "interval:100"] as const) {
    it.effect(
      `${policy}: a planned handover mid-stream: every echo once and in order, no DATA resent, the peer moved to the new primary`,
      () =>
        Effect.gen(function* () {
          const setup = yield* startCluster(policy, { config: handOverTimers })
          // Echoes are still in flight when the secondary takes over (none may be resent).
          for (const host of [primaryHost, secondaryHost]) {
            yield* setup.net.setLink(host, peerHost, { latency: SimNet.fixed(30) })
            yield* setup.net.setLink(peerHost, host, { latency: SimNet.fixed(30) })
          }
          const seen: Array<Seen> = []
          const peer = yield* Endpoint.make({
            bind: Address.udp(peerHost, udpPort),
            port: 5000,
            config: handOverTimers,
            seed: 99,
          }).pipe(Effect.provide(tapped(setup.net, peerHost, seen)))
          const association = yield* within(
            10_000,
            peer.connect({ host: primaryHost, udpPort, port: sctpPort }),
          )
          yield* advance(2_000)
          const primary = setup.nodes.get("primary")!
          const echoes = yield* Effect.forkScoped(
            association.messages.pipe(Stream.take(200), Stream.runCollect),
          )
          let handOver: Fiber.Fiber<Cluster.HandOverReport, Cluster.ClusterError> | undefined
          for (let index = 0; index < 200; index++) {
            // Mid-stream: messages keep coming while the primary hands over.
            if (index === 100) handOver = yield* Effect.forkScoped(primary.handOver)
            yield* association.send(index % 3, 42, numbered(index))
            yield* advance(5)
          }
          const report = yield* within(30_000, Fiber.join(handOver!))
          expectExactlyOnceInOrder(yield* within(30_000, Fiber.join(echoes)), 200, 3)
          expect(report.confirmed).toBe(true)
          expect(report.forwarded).toBeGreaterThan(0)
          // The cluster never sent a DATA chunk twice.
          expect(repeated(dataTsns(seen, "in"))).toEqual([])
          // Nor did the peer, but for its own fast handoff: our endpoint, told a new primary,
          // resends at once what it had in flight to the old one (usrsctp does not, by
          // default: its interop test checks both sides). Nothing waited for a timer.
          const asconfAckAt = seen
            .filter((entry) => entry.packet.chunks.some((chunk) => chunk._tag === "AsconfAck"))
            .map((entry) => entry.atMs)
          expect(asconfAckAt.length).toBeGreaterThan(0)
          const sent = dataTsns(seen, "out")
          for (const tsn of repeated(sent)) {
            const copies = sent.filter((entry) => entry.tsn === tsn)
            expect(asconfAckAt).toContain(copies.at(-1)!.atMs)
          }
          const status = yield* association.status
          expect(status.state).toBe("Established")
          expect(status.primary).toBe(secondaryHost)
          expect((yield* primary.status).role).toBe("handed-over")
          const secondary = yield* setup.nodes.get("secondary")!.status
          expect(secondary.role).toBe("active-secondary")
          expect(secondary.associations).toHaveLength(1)
        }),
    )
  }

  // A peer without ASCONF (Linux's SCTP by default) never answers the new primary's Set
  // Primary Address: the old primary forwards what reaches it until its 10 s bound, then
  // falls silent and reports the handover unconfirmed; the peer moves by its own timers.
  it.effect(
    "a planned handover with a peer without ASCONF: unconfirmed after the old primary's 10 s bound, every echo once and in order",
    () =>
      Effect.gen(function* () {
        const setup = yield* startCluster("every-update", { config: handOverTimers })
        const association = yield* connectPeer(
          setup.net,
          peerHost,
          { ...handOverTimers, asconf: false },
          { host: primaryHost, udpPort, port: sctpPort },
        )
        yield* advance(2_000)
        const primary = setup.nodes.get("primary")!
        const echoes = yield* Effect.forkScoped(
          association.messages.pipe(Stream.take(200), Stream.runCollect),
        )
        let handOver: Fiber.Fiber<Cluster.HandOverReport, Cluster.ClusterError> | undefined
        for (let index = 0; index < 200; index++) {
          if (index === 100) handOver = yield* Effect.forkScoped(primary.handOver)
          yield* association.send(index % 3, 42, numbered(index))
          yield* advance(5)
        }
        const report = yield* within(30_000, Fiber.join(handOver!))
        expectExactlyOnceInOrder(yield* within(30_000, Fiber.join(echoes)), 200, 3)
        expect(report.confirmed).toBe(false)
        // It forwarded what the peer kept sending to it, until its bound.
        expect(report.forwarded).toBeGreaterThan(0)
        expect(report.durationMs).toBeGreaterThanOrEqual(10_000)
        expect((yield* primary.status).role).toBe("handed-over")
        const secondary = yield* setup.nodes.get("secondary")!.status
        expect(secondary.role).toBe("active-secondary")
        expect(secondary.associations).toHaveLength(1)
        // The peer's traffic reaches the new primary once the old one is silent.
        for (let index = 0; index < 20; index++) {
          yield* association.send(0, 42, numbered(200 + index))
          yield* advance(5)
        }
        const after = yield* within(
          30_000,
          association.messages.pipe(Stream.take(20), Stream.runCollect),
        )
        expect(after.map((message) => numberOf(message.data))).toEqual(
          Array.from({ length: 20 }, (_, index) => 200 + index),
        )
        expect((yield* association.status).state).toBe("Established")
      }),
  )

  it.effect("a handover is refused without a linked secondary, and by a secondary", () =>
    Effect.gen(function* () {
      const setup = yield* startCluster("every-update")
      const secondary = yield* Effect.flip(setup.nodes.get("secondary")!.handOver)
      expect(secondary.detail).toContain("secondary")
      yield* setup.net.crash(secondaryHost)
      yield* advance(2_000)
      const alone = yield* Effect.flip(setup.nodes.get("primary")!.handOver)
      expect(alone.detail).toContain("no secondary is linked")
      expect((yield* setup.nodes.get("primary")!.status).role).toBe("primary")
    }),
  )

  it.effect("packets the peer sends to the secondary's address reach the primary", () =>
    Effect.gen(function* () {
      const setup = yield* startCluster("every-update")
      const association = yield* startPeer(setup.net)
      yield* advance(3_000)
      yield* association.setPrimary(secondaryHost)
      const echoes = yield* Effect.forkScoped(
        association.messages.pipe(Stream.take(20), Stream.runCollect),
      )
      for (let index = 0; index < 20; index++) {
        yield* association.send(0, 1, numbered(index))
        yield* advance(5)
      }
      const collected = yield* within(30_000, Fiber.join(echoes))
      expect(collected).toHaveLength(20)
      const primary = yield* setup.nodes.get("primary")!.received
      expect(primary.messages).toBe(20)
      const secondary = yield* setup.nodes.get("secondary")!.status
      expect(secondary.role).toBe("secondary")
    }),
  )

  it.effect("the secondary crashes: the primary goes on alone without waiting for acks", () =>
    Effect.gen(function* () {
      const setup = yield* startCluster("every-update")
      const association = yield* startPeer(setup.net)
      yield* advance(1_000)
      yield* setup.net.crash(secondaryHost)
      yield* advance(2_000)
      const echoes = yield* Effect.forkScoped(
        association.messages.pipe(Stream.take(50), Stream.runCollect),
      )
      for (let index = 0; index < 50; index++) yield* association.send(0, 1, numbered(index))
      const collected = yield* within(30_000, Fiber.join(echoes))
      expect(collected).toHaveLength(50)
      const primary = yield* setup.nodes.get("primary")!.status
      expect(primary.link).toBe("down")
    }),
  )

  it.effect("a primary cut off from the secondary is deposed when the link comes back", () =>
    Effect.gen(function* () {
      const setup = yield* startCluster("every-update")
      const association = yield* startPeer(setup.net)
      yield* advance(1_000)
      // The nodes lose each other (the peer still reaches both): the link's keep-alive
      // times out and the secondary takes over; when the link heals, the primary learns it.
      yield* setup.net.partition([primaryHost], [secondaryHost])
      yield* advance(2_000)
      const secondary = yield* setup.nodes.get("secondary")!.status
      expect(secondary.role).toBe("active-secondary")
      yield* setup.net.heal
      yield* advance(2_000)
      const primary = yield* setup.nodes.get("primary")!.status
      expect(primary.role).toBe("deposed")
      // The association lives on with the secondary.
      yield* echoesTen(association)
    }),
  )

  it.effect(
    "a live primary slow to link again answers the secondary's probe: the secondary waits past the relink grace and never takes over",
    () =>
      Effect.gen(function* () {
        const setup = yield* startCluster("every-update")
        const association = yield* startPeer(setup.net)
        yield* advance(1_000)
        const secondaryNode = setup.nodes.get("secondary")!
        const seen: Array<string> = []
        yield* Effect.forkScoped(
          Stream.runForEach(secondaryNode.events, (event) =>
            Effect.sync(() => seen.push(event._tag)),
          ),
        )
        yield* advance(10)
        // All the primary sends the secondary takes 700 ms: the secondary's keep-alive
        // (500 ms) ends the link, and the primary's new link needs several such trips, well
        // past the relink grace (1 s). The probe's INIT reaches the primary in 2 ms and its
        // INIT ACK comes back in 700: every answer starts the grace again.
        yield* setup.net.setLink(primaryHost, secondaryHost, { latency: SimNet.fixed(700) })
        yield* advance(4_000)
        yield* setup.net.setLink(primaryHost, secondaryHost, { latency: SimNet.fixed(2) })
        yield* advance(1_000)
        // The link did end (the case the grace is for), and nobody took over.
        expect(seen).toContain("LinkDown")
        expect(seen).not.toContain("TookOver")
        expect((yield* secondaryNode.status).role).toBe("secondary")
        expect((yield* setup.nodes.get("primary")!.status).role).toBe("primary")
        yield* echoesTen(association)
      }),
  )

  it.effect(
    "fence, failover 'takeover': a node that took the primary's address over and is then fenced out gives the address back",
    () =>
      Effect.gen(function* () {
        const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
        const memory = yield* MemoryStore.make()
        // The store as the secondary sees it: down once `cut`.
        let cut = false
        const down = new StoreError.Unavailable({ detail: "cut off in this test" })
        const gated =
          <A extends Array<unknown>, R, E>(call: (...args: A) => Effect.Effect<R, E>) =>
          (...args: A) =>
            cut ? Effect.fail(down) : call(...args)
        const secondaryStore = {
          ...memory,
          get: gated(memory.get),
          put: gated(memory.put),
          grantLease: gated(memory.grantLease),
          keepAlive: gated(memory.keepAlive),
          revokeLease: gated(memory.revokeLease),
        }
        const fenced = (store: Store.Store["Service"]) =>
          ({ failover: "takeover", fence: { store, lease: "1 second" } }) as const
        const secondary = yield* Deferred.make<Cluster.Node>()
        yield* net.run(
          secondaryHost,
          Effect.gen(function* () {
            const node = yield* Pair.pairNode(net, "secondary", fenced(secondaryStore))
            yield* Deferred.succeed(secondary, node)
            return yield* Effect.never
          }),
        )
        // The primary outside `net.run`: its host comes back empty after the crash.
        const primary = yield* Effect.forkScoped(
          Effect.scoped(
            Effect.andThen(Pair.pairNode(net, "primary", fenced(memory)), Effect.never),
          ).pipe(Effect.provide(net.layer(primaryHost))),
        )
        yield* advance(2_000)
        const node = yield* Deferred.await(secondary)
        const seen: Array<string> = []
        yield* Effect.forkScoped(
          Stream.runForEach(node.events, (event) =>
            Effect.sync(() => {
              if (event._tag.startsWith("Address") || event._tag === "TookOver") {
                seen.push(event._tag)
              }
            }),
          ),
        )
        yield* advance(10)
        yield* net.crash(primaryHost)
        yield* Effect.forkScoped(Fiber.interrupt(primary))
        yield* net.restart(primaryHost)
        // The lease (1 s) runs out, the secondary takes over and binds 10.0.0.2.
        yield* advance(3_000)
        expect(seen).toEqual(["TookOver", "AddressTaken"])
        const bindPrimarys = Effect.scoped(
          Effect.provide(
            Effect.flatMap(Effect.service(Datagram.Datagram), (datagram) =>
              datagram.bind(Address.udp(primaryHost, udpPort)),
            ),
            net.layer(primaryHost),
          ),
        )
        // Held: a node restarted on 10.0.0.2 could not bind its own address.
        expect((yield* Effect.exit(bindPrimarys))._tag).toBe("Failure")
        // Cut from the store, its lease lost: it falls silent and gives the address back.
        cut = true
        yield* advance(3_000)
        expect((yield* node.status).role).toBe("deposed")
        expect(seen).toEqual(["TookOver", "AddressTaken", "AddressReleased"])
        expect((yield* Effect.exit(bindPrimarys))._tag).toBe("Success")
      }),
  )

  it.effect(
    "fence: a primary cut off from the secondary and the store never transmits after the takeover",
    () =>
      Effect.gen(function* () {
        const cut = new Set<Cluster.Role>()
        const setup = yield* startCluster("every-update", { fence: { lease: "1 second", cut } })
        const association = yield* startPeer(setup.net)
        yield* advance(2_000)
        const primaryNode = setup.nodes.get("primary")!
        const secondaryNode = setup.nodes.get("secondary")!
        const before = yield* primaryNode.status
        expect(before.fence?.epoch).toBe(1)
        expect(before.fence?.holding).toBe(true)
        const tookOver = yield* Effect.forkScoped(
          secondaryNode.events.pipe(
            Stream.filter((event) => event._tag === "TookOver"),
            Stream.take(1),
            Stream.runHead,
          ),
        )
        // The primary loses the secondary and the store; the peer still reaches both nodes
        // and keeps its primary path to the primary: the worst case for a split brain.
        yield* setup.net.partition([primaryHost], [secondaryHost])
        cut.add("primary")
        const event = yield* within(30_000, Fiber.join(tookOver))
        expect(event._tag === "Some" && event.value._tag === "TookOver").toBe(true)
        const tookOverAtMs =
          event._tag === "Some" && event.value._tag === "TookOver" ? event.value.atMs : 0
        const echoes = yield* Effect.forkScoped(
          association.messages.pipe(Stream.take(20), Stream.runCollect),
        )
        for (let index = 0; index < 20; index++) {
          yield* association.send(0, 1, numbered(index))
          yield* advance(100)
        }
        const collected = yield* within(60_000, Fiber.join(echoes))
        expectExactlyOnceInOrder(collected, 20, 1)
        const secondary = yield* secondaryNode.status
        expect(secondary.role).toBe("active-secondary")
        expect(secondary.fence?.epoch).toBe(2)
        const primary = yield* primaryNode.status
        expect(primary.role).toBe("deposed")
        // Not one datagram from the old primary once the new one serves.
        const fromPrimary = (yield* setup.net.trace).filter(
          (line) =>
            line.kind === "send" &&
            line.from === Address.format(Address.udp(primaryHost, udpPort)) &&
            line.atMs >= tookOverAtMs,
        )
        expect(fromPrimary).toEqual([])
        // Healed, the old primary of epoch 1 stays silent; the peer still has one sender.
        cut.clear()
        yield* setup.net.heal
        yield* advance(3_000)
        expect((yield* primaryNode.status).role).toBe("deposed")
        const after = (yield* setup.net.trace).filter(
          (line) =>
            line.kind === "send" && line.from === Address.format(Address.udp(primaryHost, udpPort)),
        )
        expect(after.filter((line) => line.atMs >= tookOverAtMs)).toEqual([])
      }),
  )

  for (const fenced of [false, true]) {
    it.effect(
      `failback${fenced ? ", fenced" : ""}: the crashed node rejoins as the secondary; three failovers in a row carry the association`,
      () =>
        Effect.gen(function* () {
          const setup = yield* startCluster("every-update", {
            failback: true,
            ...(fenced ? { fence: { lease: "1 second", cut: new Set<Cluster.Role>() } } : {}),
          })
          const association = yield* startPeer(setup.net)
          yield* advance(2_000)
          let serving = primaryHost
          let standby = secondaryHost
          for (let round = 0; round < 3; round++) {
            const echoes = yield* echoRun(setup, association, {
              count: 40,
              streams: 2,
              crashAfter: 20,
              victim: serving,
            })
            expectExactlyOnceInOrder(echoes, 40, 2)
            const survivor = yield* setup.byHost.get(standby)!.status
            expect(survivor.role).toBe("active-secondary")
            // Each takeover is the next epoch (the first primary held epoch 1).
            if (fenced) expect(survivor.fence?.epoch).toBe(round + 2)
            // The crashed node comes back as the standby of the one that took over.
            setup.plans.set(serving, { role: "secondary", link: serving, standbyLink: standby })
            yield* setup.net.restart(serving)
            const rejoined = serving
            yield* within(
              30_000,
              Effect.gen(function* () {
                for (;;) {
                  const status = yield* setup.byHost.get(rejoined)!.status
                  const peerView = yield* association.status
                  const path = peerView.paths.find((candidate) => candidate.host === rejoined)
                  if (status.link === "up" && status.replicas === 1 && path?.active === true) return
                  yield* Effect.sleep("50 millis")
                }
              }),
            )
            const standbyStatus = yield* setup.byHost.get(rejoined)!.status
            expect(standbyStatus.role).toBe("secondary")
            expect((yield* setup.byHost.get(standby)!.status).unprotected).toBe(false)
            ;[serving, standby] = [standby, rejoined]
          }
          expect((yield* association.status).state).toBe("Established")
        }),
    )
  }

  it.effect(
    "state-node, fenced: a snapshot a fenced-out primary writes late is refused at the next takeover; the association goes on from the newer one",
    () =>
      Effect.gen(function* () {
        const setup = yield* startCluster("state-node", {
          store: true,
          failback: true,
          fence: { lease: "1 second", cut: new Set<Cluster.Role>() },
        })
        const store = setup.store!
        const association = yield* startPeer(setup.net)
        yield* advance(2_000)
        const staleBefore = yield* refusalsOf("stale-snapshot")
        const takeoversBefore = yield* Metric.value(Metrics.takeovers)
        const durationsBefore = yield* Metric.value(Metrics.takeoverMs)

        // The first primary (epoch 1) echoes a few messages; what it wrote is kept, to be
        // written again late, as by that primary resumed after a pause past its lease.
        const early = yield* echoRun(setup, association, { count: 10, streams: 2, crashAfter: 10 })
        expectExactlyOnceInOrder(early, 10, 2)
        const written = (yield* store.range("/understudy/multihome/association/")).items
        expect(written.length).toBe(1)

        // It dies; the secondary takes over (epoch 2) and serves on.
        const second = yield* echoRun(setup, association, { count: 40, streams: 2, crashAfter: 20 })
        expectExactlyOnceInOrder(second, 40, 2)
        // The first node rejoins as the standby.
        setup.plans.set(primaryHost, {
          role: "secondary",
          link: primaryHost,
          standbyLink: secondaryHost,
        })
        yield* setup.net.restart(primaryHost)
        yield* within(
          30_000,
          Effect.gen(function* () {
            for (;;) {
              const status = yield* setup.byHost.get(primaryHost)!.status
              const path = (yield* association.status).paths.find((p) => p.host === primaryHost)
              if (status.link === "up" && path?.active === true) return
              yield* Effect.sleep("50 millis")
            }
          }),
        )
        const third = yield* echoRun(setup, association, { count: 20, streams: 2, crashAfter: 20 })
        expectExactlyOnceInOrder(third, 20, 2)

        // The late write lands: the epoch-1 snapshot, far behind the association.
        for (const item of written) yield* store.put(item.key, item.value)
        const rejoined = setup.byHost.get(primaryHost)!
        const rejected = yield* Effect.forkScoped(
          rejoined.events.pipe(
            Stream.filter((event) => event._tag === "ReplicaRejected"),
            Stream.take(1),
            Stream.runHead,
          ),
        )
        // The second node dies: the rejoined one takes over (epoch 3) from the newer copy.
        const last = yield* echoRun(setup, association, {
          count: 40,
          streams: 2,
          crashAfter: 0,
          victim: secondaryHost,
        })
        expectExactlyOnceInOrder(last, 40, 2)
        const event = yield* within(1_000, Fiber.join(rejected))
        expect(event._tag === "Some" && JSON.stringify(event.value)).toMatch(
          /a snapshot of epoch 1 refused/,
        )
        const survivor = yield* rejoined.status
        expect(survivor.role).toBe("active-secondary")
        expect(survivor.fence?.epoch).toBe(3)
        expect(survivor.associations).toHaveLength(1)
        expect((yield* association.status).state).toBe("Established")
        expect((yield* refusalsOf("stale-snapshot")) - staleBefore).toBe(1)
        // Two takeovers, each with its duration.
        expect((yield* Metric.value(Metrics.takeovers)).count - takeoversBefore.count).toBe(2)
        expect((yield* Metric.value(Metrics.takeoverMs)).count - durationsBefore.count).toBe(2)
        // The store holds the survivor's copy only, and the floor of the epoch that settled.
        const left = (yield* store.range("/understudy/multihome/association/")).items
        expect(left.map((item) => item.key.split("/").at(-1))).toEqual(["3"])
      }),
  )

  for (const policy of ["interval:50", "on-event"] as const) {
    it.effect(`${policy}: a copy behind the primary resynchronises; the association lives`, () =>
      Effect.gen(function* () {
        const setup = yield* startCluster(policy)
        const association = yield* startPeer(setup.net)
        yield* advance(2_000)
        const secondaryNode = setup.nodes.get("secondary")!
        const tookOver = yield* Effect.forkScoped(
          secondaryNode.events.pipe(
            Stream.filter((event) => event._tag === "TookOver"),
            Stream.take(1),
            Stream.runDrain,
          ),
        )
        const echoes: Array<number> = []
        yield* Effect.forkScoped(
          association.messages.pipe(
            Stream.runForEach((message) => Effect.sync(() => echoes.push(numberOf(message.data)))),
          ),
        )
        // Before and around the crash: what the policy may lose.
        for (let index = 0; index < 100; index++) {
          if (index === 60) yield* setup.net.crash(primaryHost)
          yield* association.send(index % 2, 42, numbered(index))
          yield* advance(5)
        }
        yield* within(30_000, Fiber.join(tookOver))
        yield* advance(3_000)
        // After the takeover: every message echoed exactly once, in order.
        for (let index = 100; index < 150; index++) {
          yield* association.send(index % 2, 42, numbered(index))
          yield* advance(5)
        }
        yield* advance(5_000)
        // Everything sent after the crash reached only the secondary: echoed once, in order.
        const afterCrash = echoes.filter((number) => number >= 60)
        expect(afterCrash).toEqual(Array.from({ length: 90 }, (_, index) => 60 + index))
        // Loss is confined to what the primary handled after its last copy: at 5 ms a
        // message, the last interval (or the time since the last event) before the crash.
        const lost = Array.from({ length: 60 }, (_, index) => index).filter(
          (number) => !echoes.includes(number),
        )
        console.log(`${policy}: lost ${lost.length} of the 60 messages before the crash: ${lost}`)
        for (const number of lost) expect(number).toBeGreaterThanOrEqual(40)
        const status = yield* association.status
        expect(status.state).toBe("Established")
        expect((yield* secondaryNode.status).role).toBe("active-secondary")
      }),
    )
  }

  it.effect(
    "state-node with the store down: the primary serves on and reports each failed write",
    () =>
      Effect.gen(function* () {
        const setup = yield* startCluster("state-node", { store: true, storeDown: true })
        const primary = setup.nodes.get("primary")!
        const failed = yield* Effect.forkScoped(
          primary.events.pipe(
            Stream.filter((event) => event._tag === "StoreWriteFailed"),
            Stream.take(3),
            Stream.runCollect,
          ),
        )
        const association = yield* startPeer(setup.net)
        yield* echoesTen(association)
        expect(yield* within(1_000, Fiber.join(failed))).toHaveLength(3)
      }),
  )

  it.effect(
    "more associations than the endpoint's backlog (128): the 129th and 130th are served too",
    () =>
      Effect.gen(function* () {
        const setup = yield* startCluster("every-update")
        const count = 130
        // The cluster reads `accept` itself and shows each association on `accepted`.
        const accepted = yield* Effect.forkScoped(
          setup.nodes.get("primary")!.accepted.pipe(Stream.take(count), Stream.runCollect),
        )
        const associations: Array<Endpoint.AssociationHandle> = []
        for (let index = 0; index < count; index++) {
          const peer = yield* Endpoint.make({
            bind: Address.udp(peerHost, 10_000 + index),
            port: 20_000 + index,
            config: quick,
            seed: 1_000 + index,
          }).pipe(Effect.provide(setup.net.layer(peerHost)))
          associations.push(
            yield* within(10_000, peer.connect({ host: primaryHost, udpPort, port: sctpPort })),
          )
        }
        // The last ones, past the backlog, are up and echo.
        for (const association of associations.slice(-3)) {
          expect((yield* association.status).state).toBe("Established")
          const echo = yield* Effect.forkScoped(
            association.messages.pipe(Stream.take(1), Stream.runCollect),
          )
          yield* association.send(0, 1, numbered(7))
          const [message] = yield* within(10_000, Fiber.join(echo))
          expect(numberOf(message!.data)).toBe(7)
        }
        // Under every-update the stats wait for the endpoint's lock, held by updates waiting
        // for the secondary's ack: the simulated clock must move meanwhile.
        const stats = yield* within(30_000, setup.nodes.get("primary")!.endpoint.stats)
        expect(stats.associations).toBe(count)
        expect(yield* within(1_000, Fiber.join(accepted))).toHaveLength(count)
        expect(stats.dropped.BacklogFull).toBeUndefined()
      }),
  )

  it.effect(
    "every-update: no echo leaves before the secondary has it; with the link down the primary says it is unprotected",
    () =>
      Effect.gen(function* () {
        // A slow link detector (5 s), so that an ack that does not come is not noticed at once.
        const setup = yield* startCluster("every-update", {
          linkKeepAlive: { interval: "1 second", timeout: "5 seconds" },
        })
        const primary = setup.nodes.get("primary")!
        const events = yield* Effect.forkScoped(
          primary.events.pipe(
            Stream.filter((event) => event._tag === "Unprotected"),
            Stream.take(1),
            Stream.runCollect,
          ),
        )
        const association = yield* startPeer(setup.net)
        yield* advance(1_000)
        expect((yield* within(1_000, primary.status)).unprotected).toBe(false)
        const echo = yield* Effect.forkScoped(
          association.messages.pipe(Stream.take(1), Stream.runCollect),
        )
        // The secondary can not ack (the peer still reaches both nodes).
        yield* setup.net.partition([primaryHost], [secondaryHost])
        yield* association.send(0, 1, numbered(1))
        yield* advance(3_000)
        // Past the old 1 s ack time-out: still no echo, since nobody else holds it.
        expect(echo.pollUnsafe()).toBeUndefined()
        yield* advance(4_000)
        // The link timed out: the primary goes on alone, and says so.
        const [message] = yield* within(10_000, Fiber.join(echo))
        expect(numberOf(message!.data)).toBe(1)
        const [unprotected] = yield* within(1_000, Fiber.join(events))
        expect(unprotected).toMatchObject({ _tag: "Unprotected" })
        expect((yield* within(1_000, primary.status)).unprotected).toBe(true)
        expect(yield* Metric.value(Cluster.unprotectedMetric)).toMatchObject({ value: 1 })
      }),
  )

  it.effect(
    "fence: a secondary refuses a stale primary's replication (older than the store's epoch), counts it and deposes the sender",
    () =>
      Effect.gen(function* () {
        const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
        const fenceStore = yield* MemoryStore.make()
        // The cluster has moved on to epoch 5; a primary that still serves epoch 4 (paused
        // past its lease, say) comes back and links to the secondary.
        yield* fenceStore.put("/understudy/multihome/fence/epoch", new TextEncoder().encode("5"))
        const node = yield* Cluster.make({
          role: "secondary",
          bind: Address.udp(secondaryHost, udpPort),
          port: sctpPort,
          addresses: [primaryHost, secondaryHost],
          link: Address.tcp(secondaryHost, linkPort),
          policy: policyOf("every-update"),
          seed: 12,
          clusterKey,
          fence: { store: fenceStore, lease: "1 second" },
        }).pipe(Effect.provide(net.layer(secondaryHost)))
        const rejected = yield* Effect.forkScoped(
          node.events.pipe(
            Stream.filter((event) => event._tag === "ReplicaRejected"),
            Stream.take(1),
            Stream.runHead,
          ),
        )
        yield* advance(100)
        const linkTo = Effect.gen(function* () {
          const transport = yield* Transport.Transport
          return yield* transport.connect(Address.tcp(secondaryHost, linkPort), {
            codec: Replication.codec,
            keepAlive: { interval: 100, timeout: 500 },
            clusterKey,
          })
        }).pipe(Effect.provide(net.layer(primaryHost)))
        const secrets = (epoch: number, seq: number): Replication.Message => ({
          _tag: "Secrets",
          seq,
          epoch,
          listener: { current: new Uint8Array(32).fill(3), previous: undefined, rotatedAtMs: 0 },
        })

        const stale = yield* within(5_000, linkTo)
        const staleAnswers = yield* Effect.forkScoped(Stream.runCollect(stale.messages))
        yield* stale.send(secrets(4, 1))
        const answers = yield* within(10_000, Fiber.join(staleAnswers))
        expect(answers.map((message) => message._tag)).toEqual(["Deposed"])
        const event = yield* within(1_000, Fiber.join(rejected))
        expect(event._tag === "Some" && event.value._tag === "ReplicaRejected").toBe(true)
        expect(event._tag === "Some" && JSON.stringify(event.value)).toMatch(/epoch 4 refused/)
        const status = yield* node.status
        expect(status.replication.staleRefused).toBe(1)
        expect(status.replication.applied).toBe(0)
        expect(status.role).toBe("secondary")

        // The primary of the current epoch is served: its message applied and acknowledged.
        const current = yield* within(5_000, linkTo)
        const currentAnswers = yield* Effect.forkScoped(
          current.messages.pipe(Stream.take(1), Stream.runCollect),
        )
        yield* current.send(secrets(5, 1))
        expect(yield* within(10_000, Fiber.join(currentAnswers))).toEqual([{ _tag: "Ack", seq: 1 }])
        expect((yield* node.status).replication).toMatchObject({ applied: 1, staleRefused: 1 })
      }),
  )

  /**
   * A secondary made with `options` on a fresh network, closed again at once: the
   * `ClusterError` it failed with, if it did.
   */
  const refusal = (net: SimNet.SimNet, options: Partial<Cluster.Options>) =>
    Cluster.make({
      role: "secondary",
      bind: Address.udp(secondaryHost, udpPort),
      port: sctpPort,
      addresses: [primaryHost, secondaryHost],
      link: Address.tcp(secondaryHost, linkPort),
      policy: policyOf("every-update"),
      seed: 1,
      ...options,
    }).pipe(Effect.provide(net.layer(secondaryHost)), Effect.scoped, Effect.flip, Effect.option)

  it.effect("refuses to start without a cluster key unless insecure is explicit", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
      const make = (insecure: boolean) => refusal(net, insecure ? { insecure } : {})
      const refused = yield* make(false)
      expect(refused._tag).toBe("Some")
      expect(refused._tag === "Some" && refused.value.detail).toMatch(/needs a clusterKey/)
      expect((yield* make(true))._tag).toBe("None")
    }),
  )

  it.effect(
    "a duration option that is not positive and finite is a ClusterError naming it, before anything is bound",
    () =>
      Effect.gen(function* () {
        const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
        const fenceStore = yield* MemoryStore.make()
        const make = (timings: Partial<Cluster.Options>) => refusal(net, { clusterKey, ...timings })
        const cases: ReadonlyArray<[Partial<Cluster.Options>, string]> = [
          [{ linkKeepAlive: { interval: 0, timeout: "500 millis" } }, "linkKeepAlive.interval"],
          [{ linkKeepAlive: { interval: 100, timeout: -1 } }, "linkKeepAlive.timeout"],
          [{ ackTimeout: "never" as Duration.Input }, "ackTimeout"],
          [{ healthEvery: Number.POSITIVE_INFINITY }, "healthEvery"],
          [{ addressWait: Number.NaN }, "addressWait"],
          [{ fence: { store: fenceStore, lease: 0 } }, "fence.lease"],
          [{ policy: { _tag: "Interval", every: "soon" as Duration.Input } }, "policy.every"],
          [{ policy: { _tag: "Interval", every: -100 } }, "policy.every"],
        ]
        for (const [timings, option] of cases) {
          const refused = yield* make(timings)
          expect(refused._tag === "Some" && refused.value.detail).toMatch(
            new RegExp(`^invalid cluster options: ${option.replace(".", "\\.")}: `),
          )
        }
        // Nothing was bound: the same address binds now, and good durations of every form start.
        const started = yield* make({
          linkKeepAlive: { interval: "100 millis", timeout: 500 },
          ackTimeout: Duration.seconds(1),
          fence: { store: fenceStore, lease: "1.5 seconds" },
          policy: { _tag: "Interval", every: "250 millis" },
        })
        expect(started._tag).toBe("None")
      }),
  )
})
