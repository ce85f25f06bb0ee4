/**
 * Faults between a `RemoteStore` and its `StoreServer`: a server process killed with
 * SIGKILL and restarted, connections dropped under live watches, a server that stays away.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Address, NodeTransport } from "@understudy/transport"
import { Context, Effect, Exit, Fiber, Layer, Scope, Stream } from "effect"
import * as MemoryStore from "../src/MemoryStore.ts"
import * as RemoteStore from "../src/RemoteStore.ts"
import { Store, type WatchEvent } from "../src/Store.ts"
import * as StoreServer from "../src/StoreServer.ts"

const fixture = path.join(import.meta.dirname, "fixtures", "storeServer.ts")
const text = (s: string) => new TextEncoder().encode(s)

const tempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "understudy-store-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })),
)

/** Starts the fixture server on `address`; SIGKILLed when the scope closes, if still alive. */
const spawnServer = (address: string) =>
  Effect.acquireRelease(
    Effect.callback<ChildProcess, Error>((resume) => {
      const child = spawn(process.execPath, [fixture, address], {
        stdio: ["ignore", "pipe", "pipe"],
      })
      let stdout = ""
      let stderr = ""
      child.stdout?.on("data", (chunk: Buffer) => {
        stdout += chunk.toString()
        if (stdout.includes("ready ")) resume(Effect.succeed(child))
      })
      child.stderr?.on("data", (chunk: Buffer) => {
        stderr += chunk.toString()
      })
      child.once("exit", (code, signal) =>
        resume(Effect.fail(new Error(`server exited (${code ?? signal}): ${stderr}`))),
      )
      return Effect.sync(() => child.kill("SIGKILL"))
    }).pipe(Effect.timeout(20_000)),
    (child) => kill(child),
  )

/** SIGKILL, then wait (bounded) until the process is gone. */
const kill = (child: ChildProcess) =>
  Effect.callback<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGKILL")
  }).pipe(Effect.timeout(5_000), Effect.ignore)

const client = (options: RemoteStore.RemoteStoreOptions) =>
  RemoteStore.make(options).pipe(Effect.provide(NodeTransport.layer))

describe("RemoteStore faults", () => {
  it.live(
    "a SIGKILLed server fails in-flight and new requests with Unavailable promptly; a restarted one is used again",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const url = `unix://${dir}/store.sock`
        const address = Address.unix(`${dir}/store.sock`)
        const patient = yield* client({ address, requestTimeout: 10_000 })
        const impatient = yield* client({ address, requestTimeout: 1_000 })
        const serverScope = yield* Scope.make()
        const child = yield* spawnServer(url).pipe(Scope.provide(serverScope))
        const written = yield* patient.put("/f/a", text("1"))
        expect(written.revision).toBe(1)

        // Requests in flight on a stopped server, then the server dies.
        child.kill("SIGSTOP")
        const inFlight = yield* Effect.forEach(
          Array.from({ length: 20 }, (_, i) => i),
          (i) => Effect.forkChild(Effect.exit(patient.put(`/f/${i}`, text("x")))),
        )
        yield* Effect.sleep(100)
        yield* kill(child)
        const exits = yield* Fiber.joinAll(inFlight)
        for (const exit of exits) {
          expect(Exit.isFailure(exit)).toBe(true)
          expect(JSON.stringify(exit)).toContain("Unavailable")
          // The lost connection failed them, not the 10 s request time-out.
          expect(JSON.stringify(exit)).not.toContain("no answer from the store")
        }

        // New requests while nothing listens: Unavailable (the test's time-out catches a hang).
        const refused = yield* Effect.flip(impatient.get("/f/a"))
        expect(refused._tag).toBe("Unavailable")

        // A patient request made while the server is down is answered once it is back.
        const waiting = yield* Effect.forkChild(patient.put("/f/after", text("2")))
        yield* Effect.sleep(200)
        yield* Scope.close(serverScope, Exit.void)
        yield* spawnServer(url)
        const answered = yield* Fiber.join(waiting)
        // A fresh memory store: its revisions start again.
        expect(answered.revision).toBe(1)
        const got = yield* impatient.get("/f/after")
        expect(got._tag).toBe("Some")
      }).pipe(Effect.scoped),
  )

  it.live("a watch fails with Unavailable once the server stays away for its budget", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const url = `unix://${dir}/store.sock`
      const child = yield* spawnServer(url)
      const store = yield* client({
        address: Address.unix(`${dir}/store.sock`),
        requestTimeout: 1_000,
        reconnectBudget: 1_000,
      })
      const watcher = yield* Effect.forkChild(Stream.runCollect(store.watch("/w/")))
      yield* Effect.sleep(100)
      yield* store.put("/w/a", text("1"))
      yield* Effect.sleep(100)
      yield* kill(child)
      const exit = yield* Fiber.await(watcher)
      expect(Exit.isFailure(exit)).toBe(true)
      expect(JSON.stringify(exit)).toContain("Unavailable")
    }).pipe(Effect.scoped),
  )

  /** A memory store in this process, served and re-served on one unix socket. */
  const restartable = Effect.gen(function* () {
    const dir = yield* tempDir
    const address = Address.unix(`${dir}/store.sock`)
    const context = yield* Layer.build(Layer.merge(MemoryStore.layer, NodeTransport.layer))
    const memory = Context.get(context, Store)
    let scope = yield* Scope.make()
    let server = yield* StoreServer.serve(address).pipe(
      Scope.provide(scope),
      Effect.provideContext(context),
    )
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    return {
      address,
      memory,
      drop: Effect.suspend(() => server.dropConnections),
      stop: Effect.suspend(() => Scope.close(scope, Exit.void)),
      start: Effect.gen(function* () {
        scope = yield* Scope.make()
        server = yield* StoreServer.serve(address).pipe(
          Scope.provide(scope),
          Effect.provideContext(context),
        )
      }),
    }
  })

  it.live(
    "watches resume across dropped connections and server restarts: no gap, no duplicate",
    () =>
      Effect.gen(function* () {
        const served = yield* restartable
        const store = yield* client({ address: served.address, reconnectBudget: 5_000 })
        const start = yield* served.memory.put("/r/start", text("0"))
        // 600 puts, 5 puts on a lease, the lease's 5 deletes under one revision; the last
        // event is round 19's last put.
        const expected = 20 * 30 + 5 + 5
        const isLast = (e: WatchEvent) =>
          e._tag === "Put" &&
          e.kv.key === "/r/k1" &&
          new TextDecoder().decode(e.kv.value) === "19.29"
        const collect = (watch: Stream.Stream<WatchEvent, unknown>, seen?: Array<WatchEvent>) =>
          Effect.forkChild(
            Stream.runCollect(
              Stream.takeUntil(
                seen === undefined
                  ? watch
                  : Stream.tap(watch, (e) => Effect.sync(() => seen.push(e))),
                isLast,
              ),
            ),
          )
        // The reference: the same watch on the memory store itself, no connection involved.
        const reference = yield* collect(
          served.memory.watch("/r/", { fromRevision: start.revision + 1 }),
        )
        const remote = yield* collect(store.watch("/r/", { fromRevision: start.revision + 1 }))
        // Also one without a start revision: "from now" must hold across reconnects too. Its
        // "now" is when the server set it up, which a loaded machine may take a while to do:
        // probes until it has seen one, so the test's puts all come after.
        const fromNowSeen: Array<WatchEvent> = []
        const fromNow = yield* collect(store.watch("/r/"), fromNowSeen)
        let probes = 0
        while (fromNowSeen.length === 0 && probes < 200) {
          yield* served.memory.put(`/r/probe${probes++}`, text("p"))
          yield* Effect.sleep(50)
        }
        expect(fromNowSeen.length).toBeGreaterThan(0)
        for (let round = 0; round < 20; round++) {
          for (let i = 0; i < 30; i++) {
            yield* served.memory.put(`/r/k${i % 7}`, text(`${round}.${i}`))
            yield* served.memory.put(`/other/k${i}`, text("not watched"))
            if (i % 10 === 0) yield* Effect.sleep(1)
          }
          if (round % 2 === 0) yield* served.drop
          else {
            yield* served.stop
            yield* Effect.sleep(20)
            yield* served.start
          }
          if (round === 10) {
            const lease = yield* served.memory.grantLease(60_000)
            for (let k = 0; k < 5; k++) {
              yield* served.memory.put(`/r/leased${k}`, text("l"), { lease: lease.id })
            }
            yield* served.memory.revokeLease(lease.id)
            yield* served.drop
          }
        }
        const summary = (events: Iterable<WatchEvent>) =>
          Array.from(
            events,
            (e) => `${e.revision} ${e._tag} ${e._tag === "Put" ? e.kv.key : e.key}`,
          )
        const want = summary(yield* Fiber.join(reference).pipe(Effect.timeout(20_000)))
        expect(want).toHaveLength(probes + expected)
        expect(want.filter((e) => e.includes("Delete"))).toHaveLength(5)
        expect(summary(yield* Fiber.join(remote).pipe(Effect.timeout(20_000)))).toEqual(want)
        // From the first probe it saw on, everything: no gap, no duplicate.
        const fromNowGot = summary(yield* Fiber.join(fromNow).pipe(Effect.timeout(20_000)))
        expect(fromNowGot).toEqual(want.slice(want.indexOf(fromNowGot[0]!)))
        expect(fromNowGot.length).toBeGreaterThanOrEqual(expected + 1)
      }).pipe(Effect.scoped),
  )

  it.live("a watch resumed after its next revision was compacted fails with Compacted", () =>
    Effect.gen(function* () {
      const served = yield* restartable
      const store = yield* client({ address: served.address, reconnectBudget: 10_000 })
      const first = yield* served.memory.put("/c/a", text("1"))
      const seen = yield* Effect.forkChild(
        Stream.runCollect(store.watch("/c/", { fromRevision: first.revision })),
      )
      yield* Effect.sleep(200)
      yield* served.stop
      let last = first.revision
      for (let i = 0; i < 5; i++) last = (yield* served.memory.put("/c/a", text(`${i}`))).revision
      yield* served.memory.compact(last)
      yield* served.start
      const exit = yield* Fiber.await(seen).pipe(Effect.timeout(10_000))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(JSON.stringify(exit)).toContain("Compacted")
    }).pipe(Effect.scoped),
  )
})
