import { describe, expect, it } from "@effect/vitest"
import { MemoryStore, Store } from "@understudy/store"
import { Effect, Exit, Fiber, Option, Stream } from "effect"
import { TestClock } from "effect/testing"
import type * as Checkpoint from "../src/Checkpoint.ts"
import * as CheckpointStore from "../src/CheckpointStore.ts"
import * as Contributor from "../src/Contributor.ts"

const prefix = CheckpointStore.defaultPrefix("test")

const server = (serverId: string) =>
  CheckpointStore.make({ serverId, backend: "session", prefix, leaseTtl: 300 })

/** A layer whose whole state is one counter, to see which checkpoint a restore used. */
const counterLayer = () => {
  let value = 0
  const restored: Array<number> = []
  let readies = 0
  const contributor: Contributor.Contributor = {
    layer: "counter",
    append: (draft) => Effect.succeed(Contributor.putLayer(draft, "counter", Uint8Array.of(value))),
    restore: (checkpoint: Checkpoint.Checkpoint) =>
      Effect.sync(() => {
        restored.push(checkpoint.layers.counter?.[0] ?? -1)
      }),
    ready: Effect.sync(() => {
      readies++
    }),
  }
  return { contributor, set: (v: number) => (value = v), restored, readies: () => readies }
}

describe("CheckpointStore", () => {
  it.effect(
    "a takeover waits for the owner's lease to lapse, adopts the latest checkpoint and fences the old owner",
    () =>
      Effect.gen(function* () {
        const a = yield* server("a")
        const layer = counterLayer()
        const bundle = Contributor.makeBundle("bundle-1", "test/1")
        yield* bundle.register(layer.contributor)
        layer.set(5)
        const owned = yield* a.open(bundle)
        layer.set(6)
        const written = yield* a.take(bundle, owned, "bytes")
        expect(written.checkpoint.generation).toBe(2)

        // b can not take it while a's lease is kept alive.
        const b = yield* server("b")
        const waiting = yield* Effect.forkChild(Effect.flip(b.claim("bundle-1", 100)))
        yield* TestClock.adjust(150)
        const early = yield* Fiber.join(waiting)
        expect(early).toMatchObject({ _tag: "TakeoverRefused", reason: "Owned" })

        // a hands off: b claims at once, restores every layer unready, then ready.
        yield* a.release("bundle-1")
        const claimed = yield* b.claim("bundle-1", 100)
        expect(claimed.checkpoint.layers.counter?.[0]).toBe(6)
        const adopted = yield* b.adopt(
          { ...claimed.checkpoint, resumeCounter: 1 },
          claimed.modRevision,
        )
        expect(adopted.latest()).toMatchObject({ serverId: "b", generation: 3, resumeCounter: 1 })
        yield* Contributor.restoreAll(bundle, adopted.latest())
        expect(layer.restored).toEqual([6])
        expect(layer.readies()).toBe(1)

        // a's next write finds b's: fenced.
        const fenced = yield* Effect.flip(a.take(bundle, owned, "bytes"))
        expect(fenced).toMatchObject({ _tag: "CheckpointWriteFailed" })
        expect(fenced._tag === "CheckpointWriteFailed" && fenced.detail).toContain("ownership lost")
        const latest = Option.getOrThrow(yield* b.load("bundle-1"))
        expect(latest.checkpoint.serverId).toBe("b")
      }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer)),
  )

  it.effect("a dead server's bundles are claimable once its lease lapses", () =>
    Effect.gen(function* () {
      const bundle = Contributor.makeBundle("bundle-2", "test/1")
      const exit = yield* Effect.scoped(
        Effect.gen(function* () {
          const a = yield* server("a")
          yield* a.open(bundle)
          // The scope closing revokes a's lease, as its death would let it lapse.
        }),
      ).pipe(Effect.exit)
      expect(Exit.isSuccess(exit)).toBe(true)
      const b = yield* server("b")
      const claimed = yield* b.claim("bundle-2", 0)
      expect(claimed.checkpoint.generation).toBe(1)
      expect(yield* Effect.flip(b.claim("no-such", 0))).toMatchObject({ reason: "NoCheckpoint" })
      expect(yield* Effect.flip(b.claim("../etc", 0))).toMatchObject({ reason: "WrongSession" })
    }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer)),
  )

  it.effect(
    "a server whose lease expired gets a new one: its old bundles are claimable, new ones open",
    () =>
      Effect.gen(function* () {
        const store = yield* Store.Store
        const a = yield* server("a")
        const old = Contributor.makeBundle("bundle-4", "test/1")
        yield* a.open(old)
        // The lease ends under a (as after a pause longer than its TTL).
        const announced = Option.getOrThrow(yield* store.get(`${prefix}/servers/a`))
        yield* store.revokeLease(announced.lease!)
        yield* TestClock.adjust(150)
        const renewed = Option.getOrThrow(yield* store.get(`${prefix}/servers/a`))
        expect(renewed.lease).not.toBe(announced.lease)
        const b = yield* server("b")
        expect((yield* b.claim("bundle-4", 0)).checkpoint.serverId).toBe("a")
        const owned = yield* a.open(Contributor.makeBundle("bundle-5", "test/1"))
        expect(owned.latest().generation).toBe(1)
      }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer)),
  )

  it.effect("a checkpoint made by another backend is refused as Unsupported", () =>
    Effect.gen(function* () {
      const bundle = Contributor.makeBundle("bundle-3", "http/1.1")
      const repair = yield* CheckpointStore.make({
        serverId: "r",
        backend: "tcp-repair",
        prefix,
        leaseTtl: 300,
      })
      yield* repair.open(bundle)
      yield* repair.release("bundle-3")
      const b = yield* server("b")
      expect(yield* Effect.flip(b.claim("bundle-3", 0))).toMatchObject({ reason: "Unsupported" })
    }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer)),
  )

  it.effect("hand-off requests reach the server they name; live servers are listed", () =>
    Effect.gen(function* () {
      const a = yield* server("a")
      const b = yield* server("b")
      const received = yield* Effect.forkChild(Stream.runHead(a.handoffRequests), {
        startImmediately: true,
      })
      yield* b.requestHandoff("a", "b")
      expect(yield* Fiber.join(received)).toEqual(Option.some({ to: "b" }))
      expect((yield* b.servers).map((s) => s.serverId).sort()).toEqual(["a", "b"])
    }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer)),
  )
})
