/**
 * The conformance suite: the same tests, unchanged, against every `Store` backend. A
 * backend passes a `Layer` that builds a fresh, empty store (or a store under a fresh
 * key prefix) and says how time passes for it: `TestClock` for the memory store, real
 * time (short TTLs) for servers.
 */
import { describe, expect, it } from "@effect/vitest"
import { Eventually } from "@understudy/testkit"
import { type Duration, Effect, Exit, Fiber, type Layer, Option, Stream } from "effect"
import { TestClock } from "effect/testing"
import { limits, Store, type WatchEvent } from "../../src/Store.ts"

export interface Backend {
  /** A fresh store for one test. */
  readonly layer: Layer.Layer<Store, unknown>
  /** "test": leases expire on TestClock; "live": on the real clock. */
  readonly clock: "test" | "live"
  /** The shortest lease TTL the backend honours exactly (etcd counts whole seconds). */
  readonly leaseTtlMs: number
}

const text = (s: string) => new TextEncoder().encode(s)
const str = (b: Uint8Array) => new TextDecoder().decode(b)
const keyOf = (e: WatchEvent) => (e._tag === "Put" ? e.kv.key : e.key)

export const conformance = (name: string, backend: Backend) => {
  const test = backend.clock === "test" ? it.effect : it.live
  const run = <A, E>(effect: Effect.Effect<A, E, Store>) =>
    effect.pipe(Effect.provide(backend.layer), Effect.scoped) as Effect.Effect<A, unknown>
  const advance = (duration: Duration.Input) =>
    backend.clock === "test" ? TestClock.adjust(duration) : Effect.sleep(duration)

  describe(`Store conformance: ${name}`, () => {
    test("put, get, range and delete carry revisions", () =>
      run(
        Effect.gen(function* () {
          const store = yield* Store
          const a = yield* store.put("/t/a", text("1"))
          const b = yield* store.put("/t/b", text("2"))
          const a2 = yield* store.put("/t/a", text("3"))
          expect(b.revision).toBeGreaterThan(a.revision)
          expect(a2.revision).toBeGreaterThan(b.revision)
          const kv = Option.getOrThrow(yield* store.get("/t/a"))
          expect(str(kv.value)).toBe("3")
          expect(kv.createRevision).toBe(a.revision)
          expect(kv.modRevision).toBe(a2.revision)
          expect(kv.version).toBe(2)
          expect(Option.isNone(yield* store.get("/t/missing"))).toBe(true)
          yield* store.put("/u/c", text("x"))
          const range = yield* store.range("/t/")
          expect(range.items.map((i) => i.key)).toEqual(["/t/a", "/t/b"])
          expect(range.revision).toBeGreaterThanOrEqual(a2.revision)
          const deleted = yield* store.delete("/t/a")
          expect(deleted.deleted).toBe(true)
          expect((yield* store.delete("/t/a")).deleted).toBe(false)
          expect(Option.isNone(yield* store.get("/t/a"))).toBe(true)
        }),
      ))

    test("compare-and-set succeeds only on the expected revision", () =>
      run(
        Effect.gen(function* () {
          const store = yield* Store
          const created = yield* store.put("/cas/k", text("a"), { ifModRevision: 0 })
          const again = yield* Effect.flip(store.put("/cas/k", text("b"), { ifModRevision: 0 }))
          expect(again._tag).toBe("Conflict")
          expect(again._tag === "Conflict" && again.actual).toBe(created.revision)
          const updated = yield* store.put("/cas/k", text("c"), {
            ifModRevision: created.revision,
          })
          const stale = yield* Effect.flip(
            store.put("/cas/k", text("d"), { ifModRevision: created.revision }),
          )
          expect(stale._tag).toBe("Conflict")
          const staleDelete = yield* Effect.flip(
            store.delete("/cas/k", { ifModRevision: created.revision }),
          )
          expect(staleDelete._tag).toBe("Conflict")
          yield* store.delete("/cas/k", { ifModRevision: updated.revision })
          expect(Option.isNone(yield* store.get("/cas/k"))).toBe(true)
        }),
      ))

    test("concurrent create-if-absent has exactly one winner", () =>
      run(
        Effect.gen(function* () {
          const store = yield* Store
          const results = yield* Effect.forEach(
            Array.from({ length: 16 }, (_, i) => i),
            (i) => Effect.exit(store.put("/race/lock", text(`fiber-${i}`), { ifModRevision: 0 })),
            { concurrency: "unbounded" },
          )
          const winners = results.filter(Exit.isSuccess)
          expect(winners).toHaveLength(1)
          for (const result of results.filter(Exit.isFailure)) {
            expect(JSON.stringify(result.cause)).toContain("Conflict")
          }
        }),
      ))

    test("compare-and-set increments from many fibers lose no update", () =>
      run(
        Effect.gen(function* () {
          const store = yield* Store
          yield* store.put("/race/counter", text("0"))
          const increment = Effect.gen(function* () {
            for (let attempt = 0; attempt < 200; attempt++) {
              const kv = Option.getOrThrow(yield* store.get("/race/counter"))
              const next = text(`${Number(str(kv.value)) + 1}`)
              const result = yield* Effect.exit(
                store.put("/race/counter", next, { ifModRevision: kv.modRevision }),
              )
              if (Exit.isSuccess(result)) return
            }
            return yield* Effect.die("too many conflicts")
          })
          yield* Effect.forEach(
            Array.from({ length: 8 }, () => Effect.repeat(increment, { times: 4 })),
            (e) => e,
            { concurrency: "unbounded" },
          )
          const kv = Option.getOrThrow(yield* store.get("/race/counter"))
          expect(str(kv.value)).toBe("40")
        }),
      ))

    test("keys on a lease vanish when it is not kept alive", () =>
      run(
        Effect.gen(function* () {
          const store = yield* Store
          const ttl = backend.leaseTtlMs
          const lease = yield* store.grantLease(ttl)
          yield* store.put("/lease/k", text("v"), { lease: lease.id })
          // Kept alive across three TTLs, the key stays.
          for (let i = 0; i < 6; i++) {
            yield* advance(ttl / 2)
            yield* store.keepAlive(lease.id)
          }
          expect(Option.isSome(yield* store.get("/lease/k"))).toBe(true)
          // Left alone, it goes within the TTL plus a margin.
          yield* Eventually.effect(
            "the lease's key is gone",
            Effect.map(store.get("/lease/k"), Option.isNone),
            {
              within: ttl * 3,
              every: 50,
              wait: advance,
            },
          )
          const late = yield* Effect.flip(store.keepAlive(lease.id))
          expect(late._tag).toBe("LeaseExpired")
          const onDead = yield* Effect.flip(store.put("/lease/k2", text("v"), { lease: lease.id }))
          expect(onDead._tag).toBe("LeaseExpired")
        }),
      ))

    test("revoking a lease deletes its keys at once", () =>
      run(
        Effect.gen(function* () {
          const store = yield* Store
          const lease = yield* store.grantLease(backend.leaseTtlMs * 10)
          yield* store.put("/revoke/a", text("1"), { lease: lease.id })
          yield* store.put("/revoke/b", text("2"), { lease: lease.id })
          yield* store.put("/revoke/c", text("3"))
          yield* store.revokeLease(lease.id)
          const left = yield* store.range("/revoke/")
          expect(left.items.map((i) => i.key)).toEqual(["/revoke/c"])
          yield* store.revokeLease(lease.id)
        }),
      ))

    test("watch delivers every change in revision order, from a past revision", () =>
      run(
        Effect.gen(function* () {
          const store = yield* Store
          const first = yield* store.put("/w/a", text("1"))
          yield* store.put("/other/x", text("no"))
          yield* store.put("/w/b", text("2"))
          yield* store.delete("/w/a")
          const events = yield* Stream.runCollect(
            Stream.take(store.watch("/w/", { fromRevision: first.revision }), 3),
          )
          expect(events.map((e) => [e._tag, keyOf(e)])).toEqual([
            ["Put", "/w/a"],
            ["Put", "/w/b"],
            ["Delete", "/w/a"],
          ])
          const revisions = events.map((e) => e.revision)
          expect([...revisions].sort((x, y) => x - y)).toEqual(revisions)
        }),
      ))

    test("a live watch sees later changes, lease expiries included, none skipped", () =>
      run(
        Effect.gen(function* () {
          const store = yield* Store
          const start = yield* store.put("/live/start", text("0"))
          const watcher = yield* Effect.forkChild(
            Stream.runCollect(
              Stream.take(store.watch("/live/", { fromRevision: start.revision + 1 }), 21),
            ),
          )
          for (let i = 0; i < 20; i++) yield* store.put(`/live/k${i % 3}`, text(`${i}`))
          const lease = yield* store.grantLease(backend.leaseTtlMs)
          yield* store.put("/live/leased", text("x"), { lease: lease.id })
          const events = yield* Fiber.join(watcher)
          expect(events.slice(0, 20).map((e) => e._tag === "Put" && str(e.kv.value))).toEqual(
            Array.from({ length: 20 }, (_, i) => `${i}`),
          )
          const more = yield* Effect.forkChild(
            Stream.runCollect(
              Stream.take(
                Stream.filter(
                  store.watch("/live/leased", { fromRevision: events[20]!.revision + 1 }),
                  (e) => e._tag === "Delete",
                ),
                1,
              ),
            ),
          )
          yield* advance(backend.leaseTtlMs * 3)
          const deleted = yield* Fiber.join(more)
          expect(deleted.map(keyOf)).toEqual(["/live/leased"])
        }),
      ))

    test("a watch from a compacted revision fails with Compacted", () =>
      run(
        Effect.gen(function* () {
          const store = yield* Store
          const first = yield* store.put("/c/a", text("1"))
          yield* store.put("/c/a", text("2"))
          const third = yield* store.put("/c/a", text("3"))
          yield* store.compact(third.revision)
          const error = yield* Effect.flip(
            Stream.runCollect(Stream.take(store.watch("/c/", { fromRevision: first.revision }), 1)),
          )
          expect(error._tag).toBe("Compacted")
          const fromKept = yield* Stream.runCollect(
            Stream.take(store.watch("/c/", { fromRevision: third.revision }), 1),
          )
          expect(fromKept[0]?.revision).toBe(third.revision)
        }),
      ))

    test("keys and values over the limits are refused", () =>
      run(
        Effect.gen(function* () {
          const store = yield* Store
          const bigKey = yield* Effect.flip(
            store.put("k".repeat(limits.keyBytesMax + 1), text("v")),
          )
          expect(bigKey._tag).toBe("InvalidRequest")
          const bigValue = yield* Effect.flip(
            store.put("/big", new Uint8Array(limits.valueBytesMax + 1)),
          )
          expect(bigValue._tag).toBe("InvalidRequest")
          const empty = yield* Effect.flip(store.get(""))
          expect(empty._tag).toBe("InvalidRequest")
          const badTtl = yield* Effect.flip(store.grantLease(1))
          expect(badTtl._tag).toBe("InvalidRequest")
          expect(Option.isNone(yield* store.get("/big"))).toBe(true)
        }),
      ))
  })
}
