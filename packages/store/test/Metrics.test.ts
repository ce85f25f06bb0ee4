/**
 * What the store records: operations by backend and outcome with their durations, watches
 * open and the changes they delivered, a store server's clients, the name server's
 * registrations and those it lost — read from a registry of the test's own after the
 * operations, with the spans a recording tracer kept.
 */
import { describe, expect, it } from "@effect/vitest"
import { TestTracer } from "@understudy/testkit"
import { Address, NodeTransport } from "@understudy/transport"
import { Effect, Fiber, Layer, Metric, Option, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as MemoryStore from "../src/MemoryStore.ts"
import * as Metrics from "../src/Metrics.ts"
import { NameServer, layer as nameServerLayer } from "../src/NameServer.ts"
import * as RemoteStore from "../src/RemoteStore.ts"
import { Store } from "../src/Store.ts"
import * as StoreServer from "../src/StoreServer.ts"

const text = (s: string) => new TextEncoder().encode(s)

const count = (op: string, backend: Metrics.Backend, outcome: string) =>
  Effect.map(
    Metric.value(Metric.withAttributes(Metrics.operations, { op, backend, outcome })),
    (state) => state.count,
  )

/** Runs `effect` with a metrics registry of its own and a tracer keeping every span. */
const observed = <A, E>(effect: Effect.Effect<A, E>) => {
  const tracer = TestTracer.make()
  return effect.pipe(
    Effect.map((result) => ({ result, spans: tracer.spans })),
    tracer.provide,
    Effect.provideService(Metric.MetricRegistry, new Map()),
  )
}

describe("store metrics", () => {
  it.effect(
    "a memory store counts each operation by outcome, with no timing or span; watches counted while open",
    () =>
      observed(
        Effect.gen(function* () {
          const store = yield* Store
          const { revision } = yield* store.put("/a", text("1"), { ifModRevision: 0 })
          const refused = yield* Effect.flip(store.put("/a", text("2"), { ifModRevision: 0 }))
          expect(refused._tag).toBe("Conflict")
          expect(Option.isSome(yield* store.get("/a"))).toBe(true)
          const invalid = yield* Effect.flip(store.get(""))
          expect(invalid._tag).toBe("InvalidRequest")
          const lease = yield* store.grantLease(1_000)
          yield* TestClock.adjust(2_000)
          const expired = yield* Effect.flip(store.keepAlive(lease.id))
          expect(expired._tag).toBe("LeaseExpired")

          expect(yield* count("put", "memory", "ok")).toBe(1)
          expect(yield* count("put", "memory", "Conflict")).toBe(1)
          expect(yield* count("get", "memory", "ok")).toBe(1)
          expect(yield* count("get", "memory", "InvalidRequest")).toBe(1)
          expect(yield* count("grant-lease", "memory", "ok")).toBe(1)
          expect(yield* count("keep-alive", "memory", "LeaseExpired")).toBe(1)
          // Microseconds each: not timed (below the first bucket).
          const puts = yield* Metric.value(
            Metric.withAttributes(Metrics.operationMs, { op: "put", backend: "memory" }),
          )
          expect(puts.count).toBe(0)

          const open = Metric.withAttributes(Metrics.watches, { backend: "memory" })
          const watch = yield* Effect.forkChild(
            Stream.runCollect(Stream.take(store.watch("/a", { fromRevision: revision + 1 }), 2)),
          )
          yield* Effect.yieldNow
          yield* store.put("/a", text("3"))
          yield* store.delete("/a")
          const events = yield* Fiber.join(watch)
          expect(events.map((event) => event._tag)).toEqual(["Put", "Delete"])
          expect((yield* Metric.value(open)).value).toBe(0)
          const delivered = yield* Metric.value(
            Metric.withAttributes(Metrics.watchEvents, { backend: "memory" }),
          )
          expect(delivered.count).toBe(2)

          const held = yield* Effect.forkChild(Stream.runDrain(store.watch("/b")))
          yield* Effect.yieldNow
          expect((yield* Metric.value(open)).value).toBe(1)
          yield* Fiber.interrupt(held)
          expect((yield* Metric.value(open)).value).toBe(0)
        }).pipe(Effect.provide(MemoryStore.layer)),
      ).pipe(
        Effect.tap(({ spans }) =>
          Effect.sync(() => {
            expect(spans.map((span) => span.name)).toEqual([])
          }),
        ),
      ),
  )

  it.effect(
    "the name server counts registrations, refusals and losses by reason, each registration a span",
    () =>
      observed(
        Effect.gen(function* () {
          const names = yield* NameServer
          const first = yield* names.register("master", "server-1", 1)
          const lost = yield* Effect.forkChild(first.lost)
          yield* names.register("master", "server-2", 2)
          expect((yield* Fiber.join(lost))._tag).toBe("Superseded")
          const stale = yield* Effect.flip(names.register("master", "server-1", 1))
          expect(stale._tag).toBe("StaleEpoch")

          const registered = (outcome: string) =>
            Effect.map(
              Metric.value(Metric.withAttributes(Metrics.registrations, { outcome })),
              (state) => state.count,
            )
          expect(yield* registered("registered")).toBe(2)
          expect(yield* registered("StaleEpoch")).toBe(1)
          const superseded = yield* Metric.value(
            Metric.withAttributes(Metrics.registrationsLost, { reason: "Superseded" }),
          )
          expect(superseded.count).toBe(1)
        }).pipe(
          Effect.scoped,
          Effect.provide(nameServerLayer.pipe(Layer.provideMerge(MemoryStore.layer))),
        ),
      ).pipe(
        Effect.tap(({ spans }) =>
          Effect.sync(() => {
            const registrations = spans.filter((span) => span.name === "store.name-server.register")
            expect(registrations.map((span) => span.attributes.get("store.epoch"))).toEqual([
              1, 2, 1,
            ])
            expect(registrations.every((span) => span.status._tag === "Ended")).toBe(true)
            expect(registrations[0]!.attributes.get("store.holder")).toBe("server-1")
          }),
        ),
      ),
  )

  it.live(
    "a store server counts its clients; a client's operations are counted as remote, timed, and in spans",
    () =>
      observed(
        Effect.gen(function* () {
          const memory = yield* Layer.build(MemoryStore.layer)
          const server = yield* StoreServer.serve(Address.tcp("127.0.0.1", 0)).pipe(
            Effect.provideContext(memory),
          )
          const clients = Metric.value(Metrics.serverClients)
          expect((yield* clients).value).toBe(0)
          yield* Effect.gen(function* () {
            const store = yield* Store
            yield* store.put("/r", text("1"))
            expect(yield* server.connectionCount).toBe(1)
            expect((yield* clients).value).toBe(1)
          }).pipe(
            Effect.provide(RemoteStore.layer({ address: server.address, requestTimeout: 5_000 })),
          )
          expect(yield* count("put", "remote", "ok")).toBe(1)
          const timed = yield* Metric.value(
            Metric.withAttributes(Metrics.operationMs, { op: "put", backend: "remote" }),
          )
          expect(timed.count).toBe(1)
          // The server ran it on its memory store.
          expect(yield* count("put", "memory", "ok")).toBe(1)
          // The client's connection closed with its layer.
          for (let i = 0; i < 100 && (yield* server.connectionCount) > 0; i++) {
            yield* Effect.sleep(10)
          }
          expect((yield* clients).value).toBe(0)
        }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer)),
      ).pipe(
        Effect.tap(({ spans }) =>
          Effect.sync(() => {
            const puts = spans.filter((span) => span.name === "store.put")
            expect(puts.map((span) => span.attributes.get("store.key"))).toEqual(["/r"])
            expect(puts[0]!.attributes.get("store.backend")).toBe("remote")
            expect(puts[0]!.status._tag).toBe("Ended")
          }),
        ),
      ),
  )
})
