/**
 * The replication metrics move (issue 18): `understudy_multihome_replication_bytes_total`
 * counts what a primary ships, by target (`link` under every-update, `store` under
 * state-node), and `understudy_multihome_replication_lag_messages`, what the secondary has
 * not acknowledged, rises while the link is cut and is back at 0 once the pair is idle. The
 * gauge is set as the primary ships and as each acknowledgement comes. (Read the moment the
 * peer has its last echo it is often 1: the peer's SACK of that echo is an update the
 * primary ships, and its acknowledgement is a link round trip away.) A two-node cluster on
 * SimNet and the test clock; the counters are the process's, so each check compares before
 * and after.
 */
import { describe, expect, it } from "@effect/vitest"
import { MemoryStore, type Store } from "@understudy/store"
import { SimNet } from "@understudy/transport"
import { Effect, Fiber, Metric, Stream } from "effect"
import type * as Cluster from "../src/Cluster.ts"
import * as Metrics from "../src/Metrics.ts"
import {
  pairNode,
  peerHost,
  primaryHost,
  quick,
  sctpPort,
  secondaryHost,
  udpPort,
} from "./support/clusterPair.ts"
import { advance, connectPeer, within } from "./support/endpoint-support.ts"

const node = (
  net: SimNet.SimNet,
  role: Cluster.Role,
  policy: Cluster.Options["policy"],
  store: Store.Store["Service"] | undefined,
) => pairNode(net, role, { policy, ...(store === undefined ? {} : { store }) })

const bytesTo = (target: "link" | "store") =>
  Effect.map(
    Metric.value(Metric.withAttributes(Metrics.replicationBytes, { target })),
    (state) => state.count,
  )

const lag = Effect.map(Metric.value(Metrics.replicationLag), (state) => state.value)

/** Both nodes and a peer associated with the primary; `echoes(n)` sends n and awaits them. */
const start = (policy: Cluster.Options["policy"], store?: Store.Store["Service"]) =>
  Effect.gen(function* () {
    const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
    yield* net.run(
      secondaryHost,
      Effect.andThen(node(net, "secondary", policy, store), Effect.never),
    )
    yield* advance(100)
    yield* net.run(primaryHost, Effect.andThen(node(net, "primary", policy, store), Effect.never))
    yield* advance(500)
    const association = yield* connectPeer(net, peerHost, quick, {
      host: primaryHost,
      udpPort,
      port: sctpPort,
    })
    yield* advance(1_000)
    const echoes = (count: number) =>
      Effect.gen(function* () {
        const collected = yield* Effect.forkScoped(
          association.messages.pipe(Stream.take(count), Stream.runCollect),
        )
        for (let index = 0; index < count; index++) {
          yield* association.send(0, 1, new TextEncoder().encode(`message ${index}`))
        }
        return yield* within(30_000, Fiber.join(collected))
      })
    return { net, association, echoes }
  })

describe("replication metrics", () => {
  it.effect(
    "every-update: bytes to the link grow with the traffic; the lag rises while the link is cut",
    () =>
      Effect.gen(function* () {
        const { net, association, echoes } = yield* start({ _tag: "EveryUpdate" })
        const before = yield* bytesTo("link")
        expect(yield* echoes(20)).toHaveLength(20)
        const after = yield* bytesTo("link")
        // Every echo's update was shipped: at least its 20 messages' bytes.
        expect(after - before).toBeGreaterThan(20 * "message 0".length)
        // Idle: the last update (the peer's SACK of the last echo) acknowledged, none lags.
        yield* advance(100)
        expect(yield* lag).toBe(0)
        // The link cut (the peer still reaches the primary), for less than the link's 500 ms
        // keep-alive time-out: each update is shipped and none acknowledged.
        yield* net.partition([primaryHost], [secondaryHost])
        yield* association.send(0, 1, new TextEncoder().encode("held 1"))
        yield* advance(50)
        const cut = yield* lag
        expect(cut).toBeGreaterThan(0)
        yield* association.send(0, 1, new TextEncoder().encode("held 2"))
        yield* advance(50)
        expect(yield* lag).toBeGreaterThan(cut)
        yield* net.heal
      }),
  )

  it.effect("state-node: bytes to the store grow with the traffic", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.make()
      const { echoes } = yield* start({ _tag: "StateNode" }, store)
      const before = yield* bytesTo("store")
      expect(yield* echoes(10)).toHaveLength(10)
      expect((yield* bytesTo("store")) - before).toBeGreaterThan(0)
    }),
  )
})
