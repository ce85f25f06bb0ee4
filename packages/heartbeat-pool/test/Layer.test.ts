/**
 * The server and the client as Effect services over real UDP on loopback: a one-server pool
 * built from `Server.layer`, a client from `Client.layer`, and the client holds the seat the
 * server counts, in its record and in its seat gauges. Waits are for state, bounded by the
 * test's time-out.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { NodeDatagram } from "@understudy/transport"
import { Effect, Layer, Metric } from "effect"
import { afterAll } from "vitest"
import * as Client from "../src/Client.ts"
import * as Machine from "../src/Machine.ts"
import * as Metrics from "../src/Metrics.ts"
import * as Server from "../src/Server.ts"
import { loopbackPool } from "./support/loopbackPool.ts"

const dir = mkdtempSync(join(tmpdir(), "heartbeat-pool-layer-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Checks `done` every 20 ms until it holds. */
const until = <A>(check: Effect.Effect<A>, done: (value: A) => boolean) =>
  Effect.gen(function* () {
    for (;;) {
      const value = yield* check
      if (done(value)) return value
      yield* Effect.sleep(20)
    }
  })

describe("Effect services", () => {
  it.live(
    "Server.layer and Client.layer: the client holds the seat the server counts",
    () =>
      Effect.gen(function* () {
        const { member, poolSecret, server, license } = yield* loopbackPool
        const servers = Server.layer({
          ...server,
          stateDir: dir,
          license: license(2, 1),
          // A new leader settles for a lease before it grants: a short one.
          timing: { heartbeatIntervalMs: 50, leaseMs: 500 },
        })
        const clients = Client.layer({
          id: "c1",
          bind: { _tag: "Udp", host: "127.0.0.1", port: 0 },
          servers: [{ id: "s1", address: member.client }],
          poolSecret,
          product: "cad",
          heartbeatInterval: 50,
        })
        yield* Effect.gen(function* () {
          const server = yield* Server.PoolServer
          const client = yield* Client.PoolClient
          const held = yield* until(client.state, (state) => state.phase === "holding")
          expect(held.server).toBe("s1")
          const counted = yield* until(server.state, (state) => state.role === "leader")
          expect(Machine.poolRecord(counted).has("c1")).toBe(true)
          // The leader's seat gauges: one of the two seats in use in the pool, one free.
          const seats = Effect.all([
            Metric.value(
              Metric.withAttributes(Metrics.seatsInUse, { server: "s1", scope: "pool" }),
            ),
            Metric.value(Metric.withAttributes(Metrics.seatsFree, { server: "s1" })),
          ])
          const [inUse, free] = yield* until(seats, ([inUse]) => inUse.value === 1)
          expect([inUse.value, free.value]).toEqual([1, 1])
        }).pipe(Effect.provide(Layer.mergeAll(servers, clients)))
      }).pipe(
        Effect.provide(NodeDatagram.layer),
        Effect.provideService(Metric.MetricRegistry, new Map()),
      ),
    60_000,
  )
})
