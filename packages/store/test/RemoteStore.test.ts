import { describe, expect, it } from "@effect/vitest"
import { Address, NodeTransport } from "@understudy/transport"
import {
  Deferred,
  Effect,
  Exit,
  Fiber,
  Layer,
  Logger,
  Option,
  References,
  Scope,
  Stream,
} from "effect"
import * as MemoryStore from "../src/MemoryStore.ts"
import * as RemoteStore from "../src/RemoteStore.ts"
import { Store } from "../src/Store.ts"
import * as StoreServer from "../src/StoreServer.ts"
import { conformance } from "./support/conformance.ts"

const text = (s: string) => new TextEncoder().encode(s)

/** A fresh memory store served on a fresh loopback port, and a client of it. */
const served = (
  address: Address.StreamAddress,
  options: StoreServer.StoreServerOptions = {},
  client: Omit<RemoteStore.RemoteStoreOptions, "address"> = {},
) =>
  Layer.unwrap(
    Effect.gen(function* () {
      const memory = yield* Layer.build(MemoryStore.layer)
      const server = yield* StoreServer.serve(address, options).pipe(Effect.provideContext(memory))
      return RemoteStore.layer({ address: server.address, requestTimeout: 5_000, ...client })
    }),
  ).pipe(Layer.provide(NodeTransport.layer))

conformance("RemoteStore", {
  layer: served(Address.tcp("127.0.0.1", 0)),
  clock: "live",
  leaseTtlMs: 1_000,
})

describe("RemoteStore", () => {
  it.live(
    "a lost server connection is logged with the server's address and the caller's annotations",
    () => {
      const lines: Array<{ message: string; annotations: Record<string, unknown> }> = []
      const logger = Logger.layer([
        Logger.make(({ message, fiber }) => {
          lines.push({
            message: (Array.isArray(message) ? message : [message]).join(" "),
            annotations: { ...fiber.getRef(References.CurrentLogAnnotations) },
          })
        }),
      ])
      return Effect.gen(function* () {
        const memory = yield* Layer.build(MemoryStore.layer)
        const serverScope = yield* Scope.make()
        const server = yield* StoreServer.serve(Address.tcp("127.0.0.1", 0)).pipe(
          Effect.provideContext(memory),
          Scope.provide(serverScope),
        )
        const store = yield* RemoteStore.make({ address: server.address, requestTimeout: 5_000 })
        yield* store.put("/a", text("1")).pipe(Effect.annotateLogs({ node: "client-1" }))
        yield* Scope.close(serverScope, Exit.void)
        for (
          let turn = 0;
          turn < 200 && !lines.some((line) => line.message.includes("lost"));
          turn++
        )
          yield* Effect.sleep(10)
        const lost = lines.find((line) =>
          line.message.includes("connection to the store server lost"),
        )
        expect(lost?.annotations).toMatchObject({
          node: "client-1",
          store: Address.format(server.address),
        })
      }).pipe(Effect.scoped, Effect.provide(Layer.merge(NodeTransport.layer, logger)))
    },
  )

  it.live("works over a unix socket, with values at the size limit", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.promise(() =>
        import("node:fs/promises").then((fs) => fs.mkdtemp("/tmp/understudy-store-")),
      )
      const run = Effect.gen(function* () {
        const store = yield* Store
        const big = new Uint8Array(1024 * 1024).map((_, i) => i % 251)
        yield* store.put("/big", big)
        const kv = Option.getOrThrow(yield* store.get("/big"))
        expect(kv.value).toEqual(big)
      }).pipe(Effect.provide(served(Address.unix(`${dir}/store.sock`))))
      yield* run.pipe(
        Effect.ensuring(
          Effect.promise(() =>
            import("node:fs/promises").then((fs) => fs.rm(dir, { recursive: true, force: true })),
          ),
        ),
      )
    }),
  )

  it.live("a range too large for one frame arrives whole, in pages", () =>
    Effect.gen(function* () {
      const store = yield* Store
      const value = new Uint8Array(200 * 1024)
      for (let i = 0; i < 20; i++) yield* store.put(`/pages/${String(i).padStart(2, "0")}`, value)
      const range = yield* store.range("/pages/")
      expect(range.items.map((kv) => kv.key)).toEqual(
        Array.from({ length: 20 }, (_, i) => `/pages/${String(i).padStart(2, "0")}`),
      )
      expect(range.items.every((kv) => kv.value.byteLength === value.byteLength)).toBe(true)
    }).pipe(Effect.provide(served(Address.tcp("127.0.0.1", 0)))),
  )

  it.live("many requests in flight on one connection are all answered", () =>
    Effect.gen(function* () {
      const store = yield* Store
      const results = yield* Effect.forEach(
        Array.from({ length: 2_000 }, (_, i) => i),
        (i) => store.put(`/many/${i % 50}`, text(`${i}`)),
        { concurrency: "unbounded" },
      )
      const revisions = results.map((r) => r.revision).sort((a, b) => a - b)
      expect(revisions).toEqual(Array.from({ length: 2_000 }, (_, i) => i + 1))
    }).pipe(Effect.provide(served(Address.tcp("127.0.0.1", 0)))),
  )

  it.live("a finished watch is cancelled on the server, freeing its slot", () =>
    Effect.gen(function* () {
      const store = yield* Store
      const first = yield* store.put("/cw/a", text("1"))
      // This server allows one watch per connection: each watch below needs the last one
      // to have been cancelled.
      for (let i = 0; i < 5; i++) {
        const events = yield* Stream.runCollect(
          Stream.take(store.watch("/cw/", { fromRevision: first.revision }), 1),
        )
        expect(events.map((e) => e.revision)).toEqual([first.revision])
      }
      const watcher = yield* Effect.forkChild(Stream.runCollect(store.watch("/cw/")))
      yield* Effect.sleep(50)
      const blocked = yield* Effect.flip(Stream.runCollect(store.watch("/other/")))
      expect(blocked._tag).toBe("InvalidRequest")
      yield* Fiber.interrupt(watcher)
      const after = yield* store.put("/cw/b", text("2"))
      const again = yield* Stream.runCollect(
        Stream.take(store.watch("/cw/", { fromRevision: after.revision }), 1),
      )
      expect(again.map((e) => e.revision)).toEqual([after.revision])
    }).pipe(Effect.provide(served(Address.tcp("127.0.0.1", 0), { watchesPerConnectionMax: 1 }))),
  )

  it.live("a watch whose reader falls behind ends with Unavailable after the events it holds", () =>
    Effect.gen(function* () {
      const store = yield* Store
      const first = yield* store.put("/slow/0", text("0"))
      const gate = yield* Deferred.make<void>()
      const read: Array<number> = []
      // The reader stops at its first event until every put is done: the watch must hold the
      // rest, and it holds at most 4.
      const reader = yield* Effect.forkChild(
        Effect.flip(
          Stream.runForEach(store.watch("/slow/", { fromRevision: first.revision }), (event) =>
            Effect.andThen(
              Deferred.await(gate),
              Effect.sync(() => read.push(event.revision)),
            ),
          ),
        ),
      )
      for (let i = 1; i <= 50; i++) yield* store.put(`/slow/${i}`, text(String(i)))
      yield* Effect.sleep(50)
      yield* Deferred.succeed(gate, undefined)
      const error = yield* Fiber.join(reader)
      expect(error._tag).toBe("Unavailable")
      expect(error._tag === "Unavailable" && error.detail).toMatch(
        /fell behind by more than 4 events/,
      )
      // What was read is every revision from the first, none skipped, and not all of them.
      expect(read.length).toBeGreaterThan(0)
      expect(read.length).toBeLessThan(51)
      expect(read).toEqual(read.map((_, i) => first.revision + i))
    }).pipe(Effect.provide(served(Address.tcp("127.0.0.1", 0), {}, { watchQueuedEventsMax: 4 }))),
  )
})
