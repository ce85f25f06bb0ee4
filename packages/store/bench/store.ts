/**
 * `EtcdStore` against the raw `etcd3` client, on one etcd started for the run:
 *
 * - compare-and-set operations per second: `fibers` workers, each on its own key, each
 *   operation a get then a put conditional on the read `mod_revision` (the raw side does
 *   the same `range` + `txn` calls); and the same with one worker (sequential);
 * - watch delivery latency: one put at a time, time from just before the put to the event
 *   reaching the consumer, p50 / p99 over `watchPuts` puts.
 *
 * Each side runs a warm-up round, then `rounds` measured rounds, alternating; medians are
 * reported. RemoteStore figures come from `remoteStoreFigures` in `bench/remote.ts` when
 * that file exists. The last line of output is one JSON object of named figures.
 */
import { existsSync } from "node:fs"
import { EtcdServer } from "@understudy/testkit"
import { Deferred, Effect, Fiber, Layer, Option, Queue, Stream } from "effect"
import { Etcd3 } from "etcd3"
import * as EtcdStore from "../src/EtcdStore.ts"
import { Store } from "../src/Store.ts"
import { freshPrefix, median, percentile, samples } from "./stats.ts"

const fibers = 16
const casPerFiber = 250
const casSequential = 1_000
const watchPuts = 300
const rounds = 5
/** A round taking longer than this is a failure, not a slow result. */
const roundTimeoutMs = 60_000

const value = (n: number) => Buffer.from(`${n}`)

// --- EtcdStore ------------------------------------------------------------------------

/** get + CAS put, `count` times on one key; returns when all succeeded. */
const storeCasWorker = (key: string, count: number) =>
  Effect.gen(function* () {
    const store = yield* Store
    yield* store.put(key, value(0))
    for (let i = 0; i < count; i++) {
      const kv = Option.getOrThrow(yield* store.get(key))
      yield* store.put(key, value(i + 1), { ifModRevision: kv.modRevision })
    }
  })

const storeCasRound = (workers: number, perWorker: number) =>
  Effect.gen(function* () {
    const prefix = freshPrefix()
    const started = performance.now()
    yield* Effect.forEach(
      Array.from({ length: workers }, (_, i) => i),
      (i) => storeCasWorker(`${prefix}k${i}`, perWorker),
      { concurrency: "unbounded", discard: true },
    )
    return (workers * perWorker) / ((performance.now() - started) / 1_000)
  }).pipe(Effect.timeout(roundTimeoutMs))

const storeWatchRound = Effect.gen(function* () {
  const store = yield* Store
  const prefix = freshPrefix()
  const start = yield* store.put(`${prefix}start`, value(0))
  const arrivals = yield* Queue.unbounded<number>()
  const ready = yield* Deferred.make<void>()
  const consumer = yield* Effect.forkChild(
    Stream.runForEach(store.watch(`${prefix}w/`, { fromRevision: start.revision + 1 }), () =>
      Effect.sync(() => Queue.offerUnsafe(arrivals, performance.now())),
    ).pipe(Effect.ensuring(Deferred.succeed(ready, undefined))),
  )
  const latencies: Array<number> = []
  for (let i = 0; i < watchPuts; i++) {
    const before = performance.now()
    yield* store.put(`${prefix}w/k`, value(i))
    const arrived = yield* Queue.take(arrivals)
    latencies.push(arrived - before)
  }
  yield* Fiber.interrupt(consumer)
  return latencies
}).pipe(Effect.timeout(roundTimeoutMs))

// --- raw etcd3 ------------------------------------------------------------------------

const rawCasWorker = async (client: Etcd3, key: string, count: number) => {
  const k = Buffer.from(key)
  await client.kv.put({ key: k, value: value(0) })
  for (let i = 0; i < count; i++) {
    const got = await client.kv.range({ key: k })
    const kv = got.kvs[0]!
    const response = await client.kv.txn({
      compare: [{ key: k, target: "Mod", result: "Equal", mod_revision: kv.mod_revision }],
      success: [{ request_put: { key: k, value: value(i + 1) } }],
      failure: [{ request_range: { key: k } }],
    })
    if (!response.succeeded) throw new Error(`unexpected conflict on ${key}`)
  }
}

const rawCasRound = async (client: Etcd3, workers: number, perWorker: number) => {
  const prefix = freshPrefix()
  const started = performance.now()
  await Promise.all(
    Array.from({ length: workers }, (_, i) => rawCasWorker(client, `${prefix}k${i}`, perWorker)),
  )
  return (workers * perWorker) / ((performance.now() - started) / 1_000)
}

const rawWatchRound = async (client: Etcd3) => {
  const prefix = freshPrefix()
  const watcher = await client.watch().prefix(`${prefix}w/`).create()
  const waiting: Array<(at: number) => void> = []
  const early: Array<number> = []
  watcher.on("put", () => {
    const at = performance.now()
    const resolve = waiting.shift()
    if (resolve) resolve(at)
    else early.push(at)
  })
  const latencies: Array<number> = []
  for (let i = 0; i < watchPuts; i++) {
    const before = performance.now()
    const arrival = new Promise<number>((resolve) => {
      const at = early.shift()
      if (at !== undefined) resolve(at)
      else waiting.push(resolve)
    })
    await client.put(`${prefix}w/k`).value(value(i))
    latencies.push((await arrival) - before)
  }
  await watcher.cancel()
  return latencies
}

// --- run ------------------------------------------------------------------------------

interface Figures {
  [name: string]: number | { [series: string]: ReadonlyArray<number> }
}

const remoteStoreFigures = async (): Promise<Figures | undefined> => {
  const url = new URL("./remote.ts", import.meta.url)
  if (!existsSync(url)) return undefined
  const module = (await import(url.href)) as {
    remoteStoreFigures?: () => Promise<Figures>
  }
  return module.remoteStoreFigures?.()
}

const main = async () => {
  const server = await EtcdServer.startEtcd()
  const raw = new Etcd3({ hosts: [server.endpoint] })
  try {
    const measured = await Effect.runPromise(
      Effect.gen(function* () {
        const storeCas: Array<number> = []
        const rawCas: Array<number> = []
        const storeSeq: Array<number> = []
        const rawSeq: Array<number> = []
        const storeWatch: Array<number> = []
        const rawWatch: Array<number> = []
        // Warm-up: connections, JIT.
        yield* storeCasRound(fibers, 100)
        yield* Effect.promise(() => rawCasRound(raw, fibers, 100))
        yield* storeWatchRound
        yield* Effect.promise(() => rawWatchRound(raw))
        for (let round = 0; round < rounds; round++) {
          rawCas.push(yield* Effect.promise(() => rawCasRound(raw, fibers, casPerFiber)))
          storeCas.push(yield* storeCasRound(fibers, casPerFiber))
          rawSeq.push(yield* Effect.promise(() => rawCasRound(raw, 1, casSequential)))
          storeSeq.push(yield* storeCasRound(1, casSequential))
          rawWatch.push(...(yield* Effect.promise(() => rawWatchRound(raw))))
          storeWatch.push(...(yield* storeWatchRound))
        }
        return { storeCas, rawCas, storeSeq, rawSeq, storeWatch, rawWatch }
      }).pipe(
        Effect.provide(
          Layer.unwrap(
            Effect.sync(() => EtcdStore.layer({ endpoints: [server.endpoint], prefix: "" })),
          ),
        ),
        Effect.scoped,
      ),
    )
    const round2 = (x: number) => Math.round(x * 100) / 100
    const figures: Figures = {
      etcd_cas_per_s: Math.round(median(measured.storeCas)),
      raw_etcd_cas_per_s: Math.round(median(measured.rawCas)),
      cas_ratio: round2(median(measured.storeCas) / median(measured.rawCas)),
      etcd_cas_sequential_per_s: Math.round(median(measured.storeSeq)),
      raw_etcd_cas_sequential_per_s: Math.round(median(measured.rawSeq)),
      cas_sequential_ratio: round2(median(measured.storeSeq) / median(measured.rawSeq)),
      etcd_watch_p50_ms: round2(percentile(measured.storeWatch, 50)),
      raw_watch_p50_ms: round2(percentile(measured.rawWatch, 50)),
      etcd_watch_p99_ms: round2(percentile(measured.storeWatch, 99)),
      raw_watch_p99_ms: round2(percentile(measured.rawWatch, 99)),
    }
    // Every watch latency measured, for the docs' distribution plots.
    const series = {
      etcd_watch_ms: samples(measured.storeWatch),
      raw_watch_ms: samples(measured.rawWatch),
    }
    const { samples: remoteSeries, ...remote } = (await remoteStoreFigures()) ?? {}
    Object.assign(figures, remote)
    figures.samples = { ...series, ...(typeof remoteSeries === "object" ? remoteSeries : {}) }
    console.log(
      `etcd ${server.endpoint}; CAS = get + conditional put; ${fibers} fibers x ${casPerFiber}, ` +
        `sequential x ${casSequential}; watch: ${watchPuts} puts one at a time; ` +
        `median of ${rounds} rounds`,
    )
    const { samples: _, ...table } = figures
    console.table(table)
    console.log(JSON.stringify(figures))
  } finally {
    raw.close()
    await server.stop()
  }
}

await main()
