/**
 * The etcd store under real faults: etcd SIGKILLed and restarted under a live watch, requests
 * while it is down or not answering at all, and a lease holder that stops renewing.
 */
import { createServer, type Server, type Socket } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { EtcdServer } from "@understudy/testkit"
import { Effect, Exit, Fiber, Layer, Option, Stream } from "effect"
import * as EtcdStore from "../src/EtcdStore.ts"
import { Store } from "../src/Store.ts"

const server = EtcdServer.useEtcdServer({ beforeAll, afterAll })

const text = (s: string) => new TextEncoder().encode(s)
const str = (b: Uint8Array) => new TextDecoder().decode(b)

let stores = 0
const storeLayer = (options: Partial<EtcdStore.EtcdStoreOptions> = {}) =>
  Layer.unwrap(
    Effect.sync(() =>
      EtcdStore.layer({
        endpoints: [server().endpoint],
        prefix: `/faults/${++stores}/`,
        requestTimeout: 1_000,
        dialTimeout: 500,
        ...options,
      }),
    ),
  )

const kill = Effect.promise(() => server().kill())
const restart = Effect.promise(() => server().restart())

/**
 * Creates `key` with `value`, retrying while etcd is unavailable. A create whose answer was
 * lost may have been applied: a later Conflict with our own value there counts as success,
 * so each value is written exactly once.
 */
const createWithRetry = (key: string, value: string) =>
  Effect.gen(function* () {
    const store = yield* Store
    for (let attempt = 0; attempt < 400; attempt++) {
      const outcome = yield* store.put(key, text(value), { ifModRevision: 0 }).pipe(
        Effect.as("written" as const),
        Effect.catchTags({
          Conflict: () => Effect.succeed("conflict" as const),
          Unavailable: () => Effect.succeed("unavailable" as const),
        }),
      )
      if (outcome === "written") return
      if (outcome === "conflict") {
        const kv = yield* store.get(key).pipe(Effect.option, Effect.map(Option.flatten))
        if (Option.isSome(kv) && str(kv.value.value) === value) return
        return yield* Effect.die(`someone else wrote ${key}`)
      }
      yield* Effect.sleep(25)
    }
    return yield* Effect.die(`could not write ${key} within 400 attempts`)
  })

/**
 * The exit of an effect that must end by itself (its own time-outs), with a liveness bound
 * far above them: past it the effect counts as hung. Not a speed check.
 */
const ended = <A, E, R>(effect: Effect.Effect<A, E, R>, boundMs = 15_000) =>
  Effect.exit(effect).pipe(
    Effect.timeoutOrElse({
      duration: boundMs,
      orElse: () => Effect.die(new Error(`hung: no end within ${boundMs} ms`)),
    }),
  )

describe("EtcdStore under faults", () => {
  it.live(
    "a watch across a SIGKILL and restart of etcd sees every put once, in order",
    () =>
      Effect.gen(function* () {
        const store = yield* Store
        const perPhase = 50
        const total = perPhase * 2
        const start = yield* store.put("/w/start", text("start"))
        const watcher = yield* Effect.forkChild(
          Stream.runCollect(
            Stream.take(store.watch("/w/k", { fromRevision: start.revision + 1 }), total),
          ),
        )
        for (let i = 0; i < perPhase; i++) yield* createWithRetry(`/w/k${i}`, `${i}`)
        yield* kill
        // Let the watcher notice the broken stream and fail a few reconnects.
        yield* Effect.sleep(300)
        yield* restart
        for (let i = perPhase; i < total; i++) yield* createWithRetry(`/w/k${i}`, `${i}`)
        const events = yield* Fiber.join(watcher).pipe(Effect.timeout(20_000))
        const values = events.map((e) => (e._tag === "Put" ? str(e.kv.value) : `delete ${e.key}`))
        expect(values).toEqual(Array.from({ length: total }, (_, i) => `${i}`))
        const revisions = events.map((e) => e.revision)
        for (let i = 1; i < revisions.length; i++) {
          expect(revisions[i]!).toBeGreaterThan(revisions[i - 1]!)
        }
        // A second watch replaying the same history after the restart agrees exactly.
        const replay = yield* Stream.runCollect(
          Stream.take(store.watch("/w/k", { fromRevision: start.revision + 1 }), total),
        )
        expect(replay.map((e) => e.revision)).toEqual(revisions)
      }).pipe(Effect.provide(storeLayer()), Effect.scoped),
    60_000,
  )

  it.live(
    "while etcd is down, every operation fails with Unavailable within the request timeout",
    () =>
      Effect.gen(function* () {
        const store = yield* Store
        const lease = yield* store.grantLease(5_000)
        yield* store.put("/down/k", text("v"))
        yield* kill
        const operations = [
          ["get", store.get("/down/k")],
          ["range", store.range("/down/")],
          ["put", store.put("/down/k", text("w"))],
          ["cas", store.put("/down/k", text("w"), { ifModRevision: 0 })],
          ["delete", store.delete("/down/k")],
          ["grantLease", store.grantLease(1_000)],
          ["keepAlive", store.keepAlive(lease.id)],
          ["revokeLease", store.revokeLease(lease.id)],
          ["compact", store.compact(2)],
        ] as const
        for (const [name, operation] of operations) {
          const exit = yield* ended(operation as Effect.Effect<unknown, { _tag: string }>, 5_000)
          expect(Exit.isFailure(exit), name).toBe(true)
          const error = yield* Effect.flip(Effect.suspend(() => exit))
          expect(error._tag, name).toBe("Unavailable")
        }
        yield* restart
        // Back up: the same client works again (after gRPC reconnects), and nothing was lost.
        let value: string | undefined
        for (let attempt = 0; attempt < 100 && value === undefined; attempt++) {
          const kv = yield* store.get("/down/k").pipe(Effect.option, Effect.map(Option.flatten))
          if (Option.isSome(kv)) value = str(kv.value.value)
          else yield* Effect.sleep(50)
        }
        expect(value).toBe("v")
      }).pipe(Effect.provide(storeLayer()), Effect.scoped),
    60_000,
  )

  it.live(
    "an endpoint that accepts connections but never answers gives Unavailable, not a hang",
    () =>
      Effect.gen(function* () {
        // A TCP listener that never speaks HTTP/2: every request must hit its deadline.
        const sockets = new Set<Socket>()
        const silent = yield* Effect.acquireRelease(
          Effect.promise(
            () =>
              new Promise<Server>((resolve) => {
                const listener = createServer((socket) => {
                  sockets.add(socket)
                  socket.on("close", () => sockets.delete(socket))
                })
                listener.listen(0, "127.0.0.1", () => resolve(listener))
              }),
          ),
          (listener) =>
            Effect.promise(
              () =>
                new Promise<void>((resolve) => {
                  // `close` waits for open connections: end them first.
                  for (const socket of sockets) socket.destroy()
                  listener.close(() => resolve())
                }),
            ),
        )
        const address = silent.address()
        const port = typeof address === "object" && address !== null ? address.port : 0
        const layer = EtcdStore.layer({
          endpoints: [`http://127.0.0.1:${port}`],
          requestTimeout: 500,
          dialTimeout: 200,
          watchOutageMax: 1_000,
        })
        yield* Effect.gen(function* () {
          const store = yield* Store
          const put = yield* ended(store.put("/k", text("v")), 5_000)
          expect(Exit.isFailure(put)).toBe(true)
          expect((yield* Effect.flip(Effect.suspend(() => put)))._tag).toBe("Unavailable")
          const watched = yield* ended(Stream.runCollect(Stream.take(store.watch("/"), 1)), 10_000)
          expect(Exit.isFailure(watched)).toBe(true)
          expect((yield* Effect.flip(Effect.suspend(() => watched)))._tag).toBe("Unavailable")
        }).pipe(Effect.provide(layer))
      }).pipe(Effect.scoped),
    30_000,
  )

  it.live(
    "a holder that stops keeping its lease alive loses its key, and another can take it",
    () =>
      Effect.gen(function* () {
        const store = yield* Store
        const lease = yield* store.grantLease(1_000)
        expect(lease.ttlMs).toBe(1_000)
        const held = yield* store.put("/lock", text("holder"), {
          lease: lease.id,
          ifModRevision: 0,
        })
        const deletions = yield* Effect.forkChild(
          Stream.runCollect(
            Stream.take(
              Stream.filter(
                store.watch("/lock", { fromRevision: held.revision + 1 }),
                (e) => e._tag === "Delete",
              ),
              1,
            ),
          ),
        )
        const keeper = yield* Effect.forkChild(
          Effect.forever(Effect.andThen(Effect.sleep(300), store.keepAlive(lease.id))),
        )
        // Kept alive for over two TTLs: still held.
        yield* Effect.sleep(2_500)
        expect(Option.isSome(yield* store.get("/lock"))).toBe(true)
        // The holder stops (a crash, a pause): within the TTL plus etcd's expiry sweep it is gone.
        yield* Fiber.interrupt(keeper)
        let gone = false
        for (let i = 0; i < 100 && !gone; i++) {
          gone = Option.isNone(yield* store.get("/lock"))
          if (!gone) yield* Effect.sleep(50)
        }
        expect(gone).toBe(true)
        const deleted = yield* Fiber.join(deletions).pipe(Effect.timeout(5_000))
        expect(deleted.map((e) => e._tag === "Delete" && e.key)).toEqual(["/lock"])
        expect((yield* Effect.flip(store.keepAlive(lease.id)))._tag).toBe("LeaseExpired")
        yield* store.put("/lock", text("next"), { ifModRevision: 0 })
      }).pipe(Effect.provide(storeLayer()), Effect.scoped),
    30_000,
  )
})
