import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Option, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as MemoryStore from "../src/MemoryStore.ts"
import { NameServer, layer as nameServerLayer } from "../src/NameServer.ts"
import { Store } from "../src/Store.ts"
import { Unavailable } from "../src/StoreError.ts"

const env = nameServerLayer.pipe(Layer.provideMerge(MemoryStore.layer))
const run = <A, E>(effect: Effect.Effect<A, E, NameServer | Store | Scope.Scope>) =>
  effect.pipe(Effect.scoped, Effect.provide(env))

describe("NameServer", () => {
  it.effect("registers a holder and resolves it", () =>
    run(
      Effect.gen(function* () {
        const names = yield* NameServer
        expect(Option.isNone(yield* names.resolve("master"))).toBe(true)
        const registration = yield* names.register("master", "server-1", 1)
        expect(registration.holder).toEqual({ role: "master", holder: "server-1", epoch: 1 })
        expect(yield* names.resolve("master")).toEqual(
          Option.some({ role: "master", holder: "server-1", epoch: 1 }),
        )
      }),
    ),
  )

  it.effect("a newer epoch supersedes the holder, which learns it", () =>
    run(
      Effect.gen(function* () {
        const names = yield* NameServer
        const old = yield* names.register("master", "server-1", 1)
        const lost = yield* Effect.forkChild(old.lost)
        yield* names.register("master", "server-2", 2)
        const reason = yield* Fiber.join(lost)
        expect(reason._tag).toBe("Superseded")
        expect(Option.getOrThrow(yield* names.resolve("master")).holder).toBe("server-2")
      }),
    ),
  )

  it.effect("a stale epoch is refused, even after the newer holder's lease is gone", () =>
    run(
      Effect.gen(function* () {
        const names = yield* NameServer
        const newer = yield* Scope.make()
        yield* names.register("master", "server-2", 5).pipe(Scope.provide(newer))
        const whileAlive = yield* Effect.flip(names.register("master", "server-1", 4))
        expect(whileAlive._tag).toBe("StaleEpoch")
        expect(whileAlive._tag === "StaleEpoch" && whileAlive.current).toBe(5)
        yield* Scope.close(newer, Exit.void)
        expect(Option.isNone(yield* names.resolve("master"))).toBe(true)
        const afterDeath = yield* Effect.flip(names.register("master", "server-1", 4))
        expect(afterDeath._tag).toBe("StaleEpoch")
        const sameEpoch = yield* Effect.flip(names.register("master", "server-3", 5))
        expect(sameEpoch._tag).toBe("StaleEpoch")
        const next = yield* names.register("master", "server-1", 6)
        expect(next.holder.epoch).toBe(6)
      }),
    ),
  )

  it.effect("a holder that stops keeping its lease alive loses its registration", () =>
    run(
      Effect.gen(function* () {
        const names = yield* NameServer
        const store = yield* Store
        const registration = yield* names.register("master", "server-1", 1, { ttl: 1_000 })
        // Keep-alives go on while time passes: still registered after many TTLs.
        yield* TestClock.adjust(5_000)
        expect(Option.isSome(yield* names.resolve("master"))).toBe(true)
        const lost = yield* Effect.forkChild(registration.lost)
        // The store ends the lease (as if keep-alives stopped reaching it).
        yield* store.revokeLease(registration.lease)
        yield* TestClock.adjust(1_000)
        const reason = yield* Fiber.join(lost)
        expect(["LeaseExpired", "Superseded"]).toContain(reason._tag)
        expect(Option.isNone(yield* names.resolve("master"))).toBe(true)
      }),
    ),
  )

  it.effect("changes streams the holder, each change, and its end", () =>
    run(
      Effect.gen(function* () {
        const names = yield* NameServer
        const seen = yield* Effect.forkChild(
          Stream.runCollect(Stream.take(names.changes("master"), 4)),
        )
        yield* TestClock.adjust(10)
        const first = yield* Scope.make()
        yield* names.register("master", "a", 1).pipe(Scope.provide(first))
        yield* TestClock.adjust(10)
        const second = yield* Scope.make()
        yield* names.register("master", "b", 2).pipe(Scope.provide(second))
        yield* TestClock.adjust(10)
        yield* Scope.close(second, Exit.void)
        yield* Scope.close(first, Exit.void)
        const changes = yield* Fiber.join(seen)
        expect(changes.map((c) => Option.map(c, (h) => `${h.holder}@${h.epoch}`))).toEqual([
          Option.none(),
          Option.some("a@1"),
          Option.some("b@2"),
          Option.none(),
        ])
      }),
    ),
  )

  it.effect("of many concurrent registrations, the highest epoch holds the role", () =>
    run(
      Effect.gen(function* () {
        const names = yield* NameServer
        const results = yield* Effect.forEach(
          [3, 1, 4, 2, 5, 0],
          (epoch) => Effect.exit(names.register("master", `server-${epoch}`, epoch)),
          { concurrency: "unbounded" },
        )
        expect(Exit.isSuccess(results[4]!)).toBe(true)
        expect(Option.getOrThrow(yield* names.resolve("master"))).toEqual({
          role: "master",
          holder: "server-5",
          epoch: 5,
        })
      }),
    ),
  )
})

/** The memory store, with keep-alives and watches that fail while `away` is set. */
const flakyEnv = (away: { value: boolean }) =>
  nameServerLayer.pipe(
    Layer.provideMerge(
      Layer.effect(
        Store,
        Effect.gen(function* () {
          const store = yield* Store
          return Store.of({
            ...store,
            keepAlive: (lease) =>
              Effect.suspend(() =>
                away.value
                  ? Effect.fail(new Unavailable({ detail: "store away" }))
                  : store.keepAlive(lease),
              ),
          })
        }),
      ).pipe(Layer.provide(MemoryStore.layer)),
    ),
  )

/** Time passes in 10 ms steps, so timers fire in their order (one jump fires them at once). */
const advance = (ms: number) =>
  Effect.gen(function* () {
    for (let passed = 0; passed < ms; passed += 10)
      yield* TestClock.adjust(Math.min(10, ms - passed))
  })

describe("NameServer when the store is away", () => {
  it.effect("retries keep-alives, and rides out an outage shorter than the TTL", () => {
    const away = { value: false }
    return Effect.gen(function* () {
      const names = yield* NameServer
      const registration = yield* names.register("master", "server-1", 1, { ttl: 3_000 })
      const lost = yield* Effect.forkChild(registration.lost)
      away.value = true
      yield* advance(1_500)
      away.value = false
      yield* advance(10_000)
      expect(lost.pollUnsafe()).toBeUndefined()
      expect(Option.isSome(yield* names.resolve("master"))).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(flakyEnv(away)))
  })

  it.effect("`lost` completes (Unreachable) within one TTL of the last keep-alive sent", () => {
    const away = { value: false }
    return Effect.gen(function* () {
      const names = yield* NameServer
      const registration = yield* names.register("master", "server-1", 1, { ttl: 3_000 })
      const lost = yield* Effect.forkChild(registration.lost)
      // The keep-alive at 1,000 ms reaches the store; every later one fails.
      yield* advance(1_000)
      away.value = true
      yield* advance(2_990)
      expect(lost.pollUnsafe()).toBeUndefined()
      yield* advance(10)
      const reason = yield* Fiber.join(lost)
      expect(reason._tag).toBe("Unreachable")
    }).pipe(Effect.scoped, Effect.provide(flakyEnv(away)))
  })
})
