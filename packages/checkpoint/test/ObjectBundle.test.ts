/**
 * Bundles over loopback TCP: a control connection and two data connections, one of them
 * PAUSEd, taken over as one when their server stops; the paused transfer stays paused on
 * the new server until RESUME, and both objects arrive exactly.
 */
import { describe, expect, it } from "@effect/vitest"
import { MemoryStore } from "@understudy/store"
import { Address, NodeTransport } from "@understudy/transport"
import { Deferred, Effect, Exit, Fiber, Redacted, Scope, Stream } from "effect"
import * as CheckpointStore from "../src/CheckpointStore.ts"
import * as ObjectBundle from "../src/ObjectBundle.ts"
import * as ObjectSession from "../src/ObjectSession.ts"
import * as Proof from "../src/Proof.ts"

const clusterKey = Redacted.make(new Uint8Array(Proof.newSecret()))
const objects: Record<string, Uint8Array> = {
  one: new Uint8Array(5 * 1024 * 1024 + 17).map((_, i) => (i * 13 + (i >>> 9)) & 0xff),
  two: new Uint8Array(3 * 1024 * 1024 + 5).map((_, i) => (i * 5 + (i >>> 11)) & 0xff),
}
const source: ObjectSession.ObjectSource = {
  size: (name) => Effect.succeed(objects[name]?.length),
  read: (name, offset, length) => Effect.succeed(objects[name]!.subarray(offset, offset + length)),
  list: Effect.succeed(Object.entries(objects).map(([name, o]) => ({ name, size: o.length }))),
}
const prefix = CheckpointStore.defaultPrefix("bundle-test")

const startServer = (serverId: string) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const server = yield* ObjectSession.serve(
      {
        listen: Address.tcp("127.0.0.1", 0),
        clusterKey,
        policy: { everyBytes: 512 * 1024, everyMs: 200, objectBoundaries: true },
        windowBytesMax: 256 * 1024,
      },
      source,
    ).pipe(
      Effect.provideServiceEffect(
        CheckpointStore.CheckpointStore,
        CheckpointStore.make({ serverId, backend: "session", prefix, leaseTtlMs: 300 }),
      ),
      Scope.provide(scope),
    )
    return { server, stop: Scope.close(scope, Exit.void) }
  })

/** Reads a transfer in the background, counting what arrived. */
const reader = (download: ObjectBundle.Download) =>
  Effect.gen(function* () {
    const progress = { bytes: 0 }
    const chunks: Array<Uint8Array> = []
    const fiber = yield* Effect.forkScoped(
      Stream.runForEach(download.bytes, (chunk) =>
        Effect.sync(() => {
          chunks.push(chunk)
          progress.bytes += chunk.length
        }),
      ).pipe(Effect.as(chunks)),
    )
    return { progress, fiber }
  })

const same = (chunks: ReadonlyArray<Uint8Array>, object: Uint8Array) =>
  Buffer.compare(Buffer.concat(chunks.map((c) => Buffer.from(c))), Buffer.from(object)) === 0

describe("ObjectBundle over loopback TCP", () => {
  it.live("LIST, two transfers, one PAUSEd: a takeover moves the bundle; paused stays paused", () =>
    Effect.gen(function* () {
      const a = yield* startServer("ba")
      const b = yield* startServer("bb")
      const resumed: Array<{ server: string }> = []
      const took = yield* Deferred.make<void>()
      const client = yield* ObjectBundle.connect({
        service: [a.server.address, b.server.address],
        clusterKey,
        onResumed: (event) => {
          resumed.push(event)
          Deferred.doneUnsafe(took, Effect.void)
        },
      })
      const listed = yield* client.list
      expect(listed.map((o) => o.name).sort()).toEqual(["one", "two"])
      const missing = yield* client.get("nothing").pipe(Effect.flip)
      expect(missing._tag).toBe("CheckpointCommandFailed")
      const one = yield* client.get("one")
      const two = yield* client.get("two")
      expect(new Set([one.transfer, two.transfer]).size).toBe(2)
      yield* client.pause(two.transfer)
      const r1 = yield* reader(one)
      const r2 = yield* reader(two)
      // Transfer one well under way, then its server stops: the whole bundle moves.
      while (r1.progress.bytes < objects.one!.length / 3) yield* Effect.sleep(5)
      yield* a.stop
      yield* Deferred.await(took)
      const pausedAt = r2.progress.bytes
      const chunks1 = yield* Fiber.join(r1.fiber)
      expect(same(chunks1, objects.one!)).toBe(true)
      // Transfer one ran to its end on the new server; the paused one got nothing from it.
      expect(r2.progress.bytes).toBe(pausedAt)
      expect(pausedAt).toBeLessThan(objects.two!.length)
      yield* client.resume(two.transfer)
      const chunks2 = yield* Fiber.join(r2.fiber)
      expect(same(chunks2, objects.two!)).toBe(true)
      expect(resumed.length).toBe(1)
      expect(resumed[0]!.server).toBe(Address.format(b.server.address))
      yield* client.close
      yield* b.stop
    }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer), Effect.provide(NodeTransport.layer)),
  )
})
