/**
 * Store layer options: decoded by Schema (durations as `Duration.Input`), a value out of range
 * fails with `StoreConfigError` naming it before anything is opened; the reconnection
 * schedule is the caller's to choose.
 */
import { describe, expect, it } from "@effect/vitest"
import { Address, SimNet } from "@understudy/transport"
import { Context, Duration, Effect, Exit, Fiber, Layer, Schedule } from "effect"
import { TestClock } from "effect/testing"
import fc from "fast-check"
import { EtcdStore } from "../src/etcd.ts"
import * as MemoryStore from "../src/MemoryStore.ts"
import * as NameServer from "../src/NameServer.ts"
import * as RemoteStore from "../src/RemoteStore.ts"
import { Store } from "../src/Store.ts"

/** Builds `layer` (with a simulated network under it) and returns how it failed. */
const configError = (layer: Layer.Layer<Store, unknown, never>) =>
  Effect.gen(function* () {
    const exit = yield* Effect.exit(Effect.scoped(Layer.build(layer)))
    expect(Exit.isFailure(exit)).toBe(true)
    const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
    return error !== undefined && "error" in error
      ? (error.error as { _tag: string; detail: string })
      : undefined
  })

const remote = (options: Partial<RemoteStore.RemoteStoreOptions>) =>
  Effect.gen(function* () {
    const net = yield* SimNet.make()
    return RemoteStore.layer({ address: Address.tcp("server", 7000), ...options }).pipe(
      Layer.provide(net.layer("client")),
    )
  })

describe("store layer options", () => {
  it.effect("an option out of range fails the layer with StoreConfigError naming it", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [string, Layer.Layer<Store, unknown, never>]> = [
        ["requestTimeout", yield* remote({ requestTimeout: 0 })],
        ["reconnectBudget", yield* remote({ reconnectBudget: "soon" as Duration.Input })],
        ["reconnect", yield* remote({ reconnect: 25 as never })],
        ["watchQueuedEventsMax", yield* remote({ watchQueuedEventsMax: 0.5 })],
        ["dialTimeout", EtcdStore.layer({ endpoints: ["http://127.0.0.1:1"], dialTimeout: -1 })],
        [
          "requestTimeout",
          EtcdStore.layer({ endpoints: ["http://127.0.0.1:1"], requestTimeout: Infinity }),
        ],
        [
          "watchOutageMax",
          EtcdStore.layer({ endpoints: ["http://127.0.0.1:1"], watchOutageMax: "0 millis" }),
        ],
        ["leaseSweep", MemoryStore.layerWith({ leaseSweep: Number.NaN })],
        ["historyMax", MemoryStore.layerWith({ historyMax: 0 })],
      ]
      for (const [name, layer] of cases) {
        const error = yield* configError(layer)
        expect(error?._tag, name).toBe("StoreConfigError")
        expect(error?.detail, name).toContain(`["${name}"]`)
      }
    }).pipe(Effect.scoped),
  )

  it.effect("durations are read as text, milliseconds or a Duration", () =>
    Effect.gen(function* () {
      for (const leaseSweep of ["20 millis", 20, Duration.millis(20)] as const) {
        const store = yield* MemoryStore.make({ leaseSweep })
        const lease = yield* store.grantLease(1_000)
        yield* TestClock.adjust(1_020)
        expect((yield* Effect.flip(store.keepAlive(lease.id)))._tag).toBe("LeaseExpired")
      }
    }).pipe(Effect.scoped),
  )

  it.effect("fuzz: any value of a duration option builds the layer or is refused naming it", () =>
    Effect.gen(function* () {
      const values = fc.sample(fc.oneof(fc.anything(), fc.double(), fc.string()), 300)
      for (const leaseSweep of values) {
        const exit = yield* Effect.exit(
          Effect.scoped(Layer.build(MemoryStore.layerWith({ leaseSweep } as never))),
        )
        if (Exit.isFailure(exit)) {
          const error = yield* configError(MemoryStore.layerWith({ leaseSweep } as never))
          expect(error?._tag).toBe("StoreConfigError")
          expect(error?.detail).toContain(`["leaseSweep"]`)
        }
      }
    }),
  )

  it.effect(
    "NameServer.register: a ttl that is not a positive duration is InvalidRequest naming it",
    () =>
      Effect.gen(function* () {
        const names = yield* NameServer.make()
        for (const ttl of [0, -5, "soon", Number.POSITIVE_INFINITY] as const) {
          const error = yield* Effect.flip(
            Effect.scoped(names.register("master", "a", 1, { ttl: ttl as Duration.Input })),
          )
          expect(error._tag).toBe("InvalidRequest")
          expect((error as { detail: string }).detail).toMatch(/^ttl: not a positive duration/)
        }
      }).pipe(Effect.provide(MemoryStore.layer)),
  )
})

/** Moves the test clock by `ms` in 10 ms steps, so timers set along the way fire in order. */
const advance = (ms: number) =>
  Effect.gen(function* () {
    for (let elapsed = 0; elapsed < ms; elapsed += 10) yield* TestClock.adjust(10)
  })

/** Failed connection attempts in `ms` of a request to a server nobody runs, by `reconnect`. */
const attemptsIn = (ms: number, reconnect: Schedule.Schedule<unknown> | undefined) =>
  Effect.gen(function* () {
    let failures = 0
    const counted = (reconnect ?? RemoteStore.reconnectDefault).pipe(
      Schedule.tap(() =>
        Effect.sync(() => {
          failures++
        }),
      ),
    )
    const layer = yield* remote({ reconnect: counted, requestTimeout: "10 seconds" })
    const store = Context.get(yield* Layer.build(layer), Store)
    const request = yield* Effect.forkScoped(Effect.flip(store.get("/a")))
    yield* advance(ms)
    const counts = failures
    yield* advance(10_000 - ms)
    // The request time-out bounds every schedule.
    expect((yield* Fiber.join(request))._tag).toBe("Unavailable")
    return counts
  }).pipe(Effect.scoped)

describe("RemoteStore reconnect schedule", () => {
  it.effect(
    "connection attempts follow the caller's schedule; the default backs off from 25 ms",
    () =>
      Effect.gen(function* () {
        // Nobody listens: attempts at about 0, 1, 2 and 3 s, each refused after a round trip.
        expect(yield* attemptsIn(3_500, Schedule.spaced("1 second"))).toBe(4)
        // The default: 25, 50, 100, ... ms with jitter, capped at 1 s: more in the same time.
        expect(yield* attemptsIn(3_500, undefined)).toBeGreaterThanOrEqual(7)
      }),
  )
})
