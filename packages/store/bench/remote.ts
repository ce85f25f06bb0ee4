/**
 * `RemoteStore` against a `MemoryStore` in process, measured in the same run:
 *
 * - compare-and-set operations per second: `fibers` workers, each on its own key, each
 *   operation a get then a put conditional on the read `modRevision`; and the same with one
 *   worker (sequential, so one round trip at a time);
 * - watch delivery latency: one put at a time, time from just before the put to the event
 *   reaching the consumer, p50 / p99 over `watchPuts` puts.
 *
 * The remote side is a `StoreServer` serving a memory store in a child process
 * (`test/fixtures/storeServer.ts`) on loopback TCP, as processes sharing a store use it.
 * Each side runs a warm-up round, then `rounds` measured rounds, alternating; medians are
 * reported. `remoteStoreFigures()` returns the named figures (`bench/store.ts` merges them
 * into its own); run directly, this file prints a table and, last, one JSON line.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Address, NodeTransport } from "@understudy/transport"
import { Deferred, Effect, Option, Stream } from "effect"
import * as MemoryStore from "../src/MemoryStore.ts"
import * as RemoteStore from "../src/RemoteStore.ts"
import type { Store } from "../src/Store.ts"
import { freshPrefix, median, percentile, samples } from "./stats.ts"

const fibers = 16
const casPerFiber = 250
const casSequential = 1_000
const watchPuts = 300
const rounds = 3
/** A round taking longer than this is a failure, not a slow result. */
const roundTimeoutMs = 60_000
/** Time allowed for the server process to start listening. */
const serverStartMs = 20_000

const fixture = path.join(import.meta.dirname, "..", "test", "fixtures", "storeServer.ts")

const value = (n: number) => new TextEncoder().encode(`${n}`)
const nowMs = Effect.clockWith((clock) => clock.currentTimeNanos).pipe(
  Effect.map((nanos) => Number(nanos) / 1e6),
)

/** get + CAS put, `count` times on one key. */
const casWorker = (store: Store["Service"], key: string, count: number) =>
  Effect.gen(function* () {
    yield* store.put(key, value(0))
    for (let i = 0; i < count; i++) {
      const kv = Option.getOrThrow(yield* store.get(key))
      yield* store.put(key, value(i + 1), { ifModRevision: kv.modRevision })
    }
  })

/** Operations per second, counting each get + put pair as one. */
const casRound = (store: Store["Service"], workers: number, perWorker: number) =>
  Effect.gen(function* () {
    const prefix = freshPrefix()
    const started = yield* nowMs
    yield* Effect.forEach(
      Array.from({ length: workers }, (_, i) => i),
      (i) => casWorker(store, `${prefix}${i}`, perWorker),
      { concurrency: "unbounded", discard: true },
    )
    return (workers * perWorker) / (((yield* nowMs) - started) / 1_000)
  }).pipe(Effect.timeout(roundTimeoutMs))

/** Latencies in ms of `watchPuts` puts, one at a time, from put to delivered event. */
const watchRound = (store: Store["Service"]) =>
  Effect.gen(function* () {
    const prefix = freshPrefix()
    const latencies: Array<number> = []
    let waiting: { readonly revision: number; readonly done: Deferred.Deferred<number> } | undefined
    const seen = new Map<number, number>()
    yield* Effect.forkScoped(
      Stream.runForEach(store.watch(prefix), (event) =>
        Effect.flatMap(nowMs, (at) =>
          Effect.sync(() => {
            seen.set(event.revision, at)
            if (waiting !== undefined && waiting.revision === event.revision) {
              Deferred.doneUnsafe(waiting.done, Effect.succeed(at))
            }
          }),
        ),
      ),
    )
    // Let the watch be set up before the first timed put.
    yield* store.put(`${prefix}warm`, value(0))
    yield* Effect.sleep(100)
    for (let i = 0; i < watchPuts; i++) {
      const started = yield* nowMs
      const { revision } = yield* store.put(`${prefix}k`, value(i))
      const done = Deferred.makeUnsafe<number>()
      waiting = { revision, done }
      const early = seen.get(revision)
      const at = early ?? (yield* Deferred.await(done))
      latencies.push(at - started)
      seen.clear()
    }
    return latencies
  }).pipe(Effect.scoped, Effect.timeout(roundTimeoutMs))

/** The server process: its bound address once it prints its ready line. */
const startServer = (): Promise<{ readonly url: string; readonly child: ChildProcess }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fixture, "tcp://127.0.0.1:0"], {
      stdio: ["ignore", "pipe", "pipe"],
    })
    let stdout = ""
    let stderr = ""
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`store server did not start within ${serverStartMs} ms: ${stderr}`))
    }, serverStartMs)
    child.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString()
      const ready = /ready (\S+)/.exec(stdout)
      if (ready !== null) {
        clearTimeout(timer)
        resolve({ url: ready[1]!, child })
      }
    })
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`store server exited (${code ?? signal}): ${stderr}`))
    })
  })

const stopServer = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGKILL")
  })

/** @since 0.1.0 */
export interface RemoteFigures {
  readonly [name: string]: number | { readonly [series: string]: ReadonlyArray<number> }
}

/**
 * Measures the remote store against the memory store and returns the named figures.
 *
 * @since 0.1.0
 */
export const remoteStoreFigures = async (): Promise<RemoteFigures> => {
  const server = await startServer()
  try {
    const address = Address.parseStream(server.url)
    if (address instanceof Address.InvalidAddress) throw address
    const measured = await Effect.runPromise(
      Effect.gen(function* () {
        const remote = yield* RemoteStore.make({ address }).pipe(
          Effect.provide(NodeTransport.layer),
        )
        const memory = yield* MemoryStore.make()
        const result = {
          remoteCas: [] as Array<number>,
          memoryCas: [] as Array<number>,
          remoteSeq: [] as Array<number>,
          memorySeq: [] as Array<number>,
          remoteWatch: [] as Array<number>,
          memoryWatch: [] as Array<number>,
        }
        // Warm-up: the connection, JIT.
        yield* casRound(remote, fibers, 20)
        yield* casRound(memory, fibers, 20)
        for (let round = 0; round < rounds; round++) {
          result.memoryCas.push(yield* casRound(memory, fibers, casPerFiber))
          result.remoteCas.push(yield* casRound(remote, fibers, casPerFiber))
          result.memorySeq.push(yield* casRound(memory, 1, casSequential))
          result.remoteSeq.push(yield* casRound(remote, 1, casSequential))
          result.memoryWatch.push(...(yield* watchRound(memory)))
          result.remoteWatch.push(...(yield* watchRound(remote)))
        }
        return result
      }).pipe(Effect.scoped),
    )
    const round2 = (x: number) => Math.round(x * 100) / 100
    const round3 = (x: number) => Math.round(x * 1000) / 1000
    return {
      remote_cas_per_s: Math.round(median(measured.remoteCas)),
      memory_cas_per_s: Math.round(median(measured.memoryCas)),
      remote_cas_ratio: round3(median(measured.remoteCas) / median(measured.memoryCas)),
      remote_cas_sequential_per_s: Math.round(median(measured.remoteSeq)),
      memory_cas_sequential_per_s: Math.round(median(measured.memorySeq)),
      remote_cas_sequential_ratio: round3(median(measured.remoteSeq) / median(measured.memorySeq)),
      remote_watch_p50_ms: round3(percentile(measured.remoteWatch, 50)),
      remote_watch_p99_ms: round3(percentile(measured.remoteWatch, 99)),
      memory_watch_p50_ms: round3(percentile(measured.memoryWatch, 50)),
      memory_watch_p99_ms: round3(percentile(measured.memoryWatch, 99)),
      remote_watch_p99_vs_memory_ms: round2(
        percentile(measured.remoteWatch, 99) - percentile(measured.memoryWatch, 99),
      ),
      samples: {
        remote_watch_ms: samples(measured.remoteWatch),
        memory_watch_ms: samples(measured.memoryWatch),
      },
    }
  } finally {
    await stopServer(server.child)
  }
}

if (
  process.argv[1] !== undefined &&
  fileURLToPath(import.meta.url) === path.resolve(process.argv[1])
) {
  const figures = await remoteStoreFigures()
  console.log(
    `RemoteStore (server in a child process, loopback TCP) vs MemoryStore in process; ` +
      `CAS = get + conditional put; ${fibers} fibers x ${casPerFiber}, sequential x ` +
      `${casSequential}; watch: ${watchPuts} puts one at a time; median of ${rounds} rounds`,
  )
  const { samples: _, ...table } = figures
  console.table(table)
  console.log(JSON.stringify(figures))
}
