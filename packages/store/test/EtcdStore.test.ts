import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { EtcdServer } from "@understudy/testkit"
import { Effect, Layer, Option, Stream } from "effect"
import * as EtcdStore from "../src/EtcdStore.ts"
import { Store } from "../src/Store.ts"
import { conformance } from "./support/conformance.ts"

const server = EtcdServer.useEtcdServer({ beforeAll, afterAll })

const text = (s: string) => new TextEncoder().encode(s)
const str = (b: Uint8Array) => new TextDecoder().decode(b)

/** Each layer build gets its own key prefix, so tests never see each other's keys. */
let stores = 0
const layer = Layer.unwrap(
  Effect.sync(() =>
    EtcdStore.layer({ endpoints: [server().endpoint], prefix: `/conformance/${++stores}/` }),
  ),
)

conformance("EtcdStore", { layer, clock: "live", leaseTtlMs: 1_000 })

describe("EtcdStore on etcd", () => {
  const withStore = <A, E>(effect: Effect.Effect<A, E, Store>) =>
    effect.pipe(Effect.provide(layer), Effect.scoped)

  it.live("lease TTLs are etcd's whole seconds, rounded up", () =>
    withStore(
      Effect.gen(function* () {
        const store = yield* Store
        expect((yield* store.grantLease(1_500)).ttlMs).toBe(2_000)
        expect((yield* store.grantLease(3_000)).ttlMs).toBe(3_000)
        const lease = yield* store.grantLease(1_000)
        expect(lease.id).toMatch(/^[1-9][0-9]*$/)
        yield* store.put("/l", text("v"), { lease: lease.id })
        expect(Option.getOrThrow(yield* store.get("/l")).lease).toBe(lease.id)
      }),
    ),
  )

  it.live("a delete event carries the value before the delete", () =>
    withStore(
      Effect.gen(function* () {
        const store = yield* Store
        const put = yield* store.put("/d/k", text("before"))
        yield* store.delete("/d/k")
        const [, deleted] = yield* Stream.runCollect(
          Stream.take(store.watch("/d/", { fromRevision: put.revision }), 2),
        )
        expect(deleted?._tag).toBe("Delete")
        if (deleted?._tag === "Delete") {
          expect(deleted.key).toBe("/d/k")
          expect(deleted.previous && str(deleted.previous.value)).toBe("before")
          expect(deleted.previous?.modRevision).toBe(put.revision)
        }
      }),
    ),
  )

  it.live("stores under different prefixes do not see each other's keys", () =>
    Effect.gen(function* () {
      const endpoints = [server().endpoint]
      const writeAndList = (prefix: string) =>
        Effect.gen(function* () {
          const store = yield* Store
          yield* store.put("/shared", text(prefix))
          const all = yield* store.range("")
          return all.items.map((kv) => [kv.key, str(kv.value)])
        }).pipe(Effect.provide(EtcdStore.layer({ endpoints, prefix: `/isolated-${prefix}/` })))
      expect(yield* writeAndList("a")).toEqual([["/shared", "a"]])
      expect(yield* writeAndList("b")).toEqual([["/shared", "b"]])
    }).pipe(Effect.scoped),
  )

  it.live("Compacted carries etcd's compact revision", () =>
    withStore(
      Effect.gen(function* () {
        const store = yield* Store
        const first = yield* store.put("/cr/a", text("1"))
        const second = yield* store.put("/cr/a", text("2"))
        yield* store.compact(second.revision)
        // Compacting again at or before it is a no-op, as on the memory store.
        yield* store.compact(first.revision)
        const error = yield* Effect.flip(
          Stream.runCollect(Stream.take(store.watch("/cr/", { fromRevision: first.revision }), 1)),
        )
        expect(error._tag).toBe("Compacted")
        if (error._tag === "Compacted") {
          expect(error.requested).toBe(first.revision)
          expect(error.compactRevision).toBe(second.revision)
        }
      }),
    ),
  )
})
