/**
 * One `Store.watch` over etcd: its own gRPC watch stream, re-created after a broken
 * connection from the revision after the last one received, with duplicates dropped by
 * revision.
 *
 * Why not the etcd3 `Watcher`: it resumes from the `created` response's header revision
 * plus one, which for a watch from a past revision is the current revision, so a
 * connection lost while the backlog is still arriving would skip the rest of it; and it
 * turns etcd's compaction cancel into an error without the compact revision. Here the
 * resume point is the last event actually received, and compaction is `Compacted` with
 * etcd's compact revision.
 *
 * Driven by the consumer's pulls: received events wait in `buffer` (the gRPC stream is
 * paused above `bufferHighWater` and resumed once drained), a pull that finds no
 * connection backs off and reconnects, and an outage longer than `outageMsMax` fails the
 * stream with `Unavailable`.
 */
import { Clock, Effect } from "effect"
import type { Etcd3, IEvent, IWatchRequest, IWatchResponse } from "etcd3"
import type { WatchEvent } from "../Store.ts"
import { Compacted, Unavailable } from "../StoreError.ts"

type Duplex = Awaited<ReturnType<Etcd3["watchClient"]["watch"]>> & {
  pause?: () => void
  resume?: () => void
}

export interface WatchSessionOptions {
  readonly client: Etcd3
  /** The watched range, already namespaced. */
  readonly key: Buffer
  readonly rangeEnd: Buffer
  /** First revision wanted; undefined means "after the watch is created". */
  readonly fromRevision: number | undefined
  /** Converts an etcd event; keys are un-namespaced here. */
  readonly toEvent: (event: IEvent) => WatchEvent
  /** How long a (re)connection may take to be acknowledged before it is retried. */
  readonly dialTimeoutMs: number
  /** How long the watch may stay disconnected before it fails with `Unavailable`. */
  readonly outageMsMax: number
}

const bufferHighWater = 10_000
const bufferLowWater = 1_000
const chunkMax = 4_096
const backoffMsInitial = 50
const backoffMsMax = 1_000

interface Connection {
  readonly duplex: Duplex
  created: boolean
  readonly startedAtMs: number
}

export const makeWatchSession = (options: WatchSessionOptions) => {
  let buffer: Array<WatchEvent> = []
  /** The next revision not yet received: events below it are duplicates. */
  let next = options.fromRevision
  let failure: Compacted | Unavailable | undefined
  let current: Connection | undefined
  let paused = false
  let closed = false
  let attempts = 0
  let outageStartedAtMs: number | undefined
  let lastProblem = "not connected yet"
  let wake: (() => void) | undefined

  const notify = () => {
    const resume = wake
    wake = undefined
    resume?.()
  }

  const drop = (connection: Connection, problem: string) => {
    if (current !== connection) return
    current = undefined
    lastProblem = problem
    paused = false
    // Ending the writable side first keeps etcd3 from treating our own cancel as a
    // host failure (it only marks hosts failed for errors on writable streams).
    connection.duplex.end()
    connection.duplex.cancel()
    notify()
  }

  const onResponse = (connection: Connection, response: IWatchResponse) => {
    if (current !== connection) return
    if (response.created) {
      connection.created = true
      attempts = 0
      outageStartedAtMs = undefined
      next ??= Number(response.header.revision) + 1
    }
    for (const event of response.events ?? []) {
      const revision = Number(event.kv.mod_revision)
      if (next !== undefined && revision < next) continue
      buffer.push(options.toEvent(event))
    }
    const last = response.events?.at(-1)
    if (last !== undefined) {
      next = Math.max(next ?? 0, Number(last.kv.mod_revision) + 1)
    }
    if (response.canceled) {
      const compactRevision = Number(response.compact_revision)
      failure =
        compactRevision > 0
          ? new Compacted({ requested: next ?? 0, compactRevision })
          : new Unavailable({ detail: `etcd cancelled the watch: ${response.cancel_reason}` })
      drop(connection, "cancelled")
    }
    if (buffer.length >= bufferHighWater && !paused && connection.duplex.pause) {
      paused = true
      connection.duplex.pause()
    }
    notify()
  }

  const connect = (nowMs: number) =>
    Effect.tryPromise({
      try: () => options.client.watchClient.watch(),
      catch: (error) => (error instanceof Error ? error.message : String(error)),
    }).pipe(
      Effect.match({
        onFailure: (problem) => {
          lastProblem = problem
        },
        onSuccess: (duplex: Duplex) => {
          if (closed) {
            duplex.end()
            duplex.cancel()
            return
          }
          const connection: Connection = { duplex, created: false, startedAtMs: nowMs }
          current = connection
          duplex.on("data", (response) => onResponse(connection, response))
          duplex.on("error", (error) => drop(connection, error.message))
          duplex.on("end", () => drop(connection, "watch stream ended"))
          const request: IWatchRequest = {
            create_request: {
              key: options.key,
              range_end: options.rangeEnd,
              prev_kv: true,
              progress_notify: false,
              ...(next === undefined ? {} : { start_revision: String(Math.max(next, 1)) }),
            },
          }
          duplex.write(request)
        },
      }),
    )

  /** Waits until a handler calls `notify`. */
  const waitForNews = Effect.callback<void>((resume) => {
    wake = () => resume(Effect.void)
    return Effect.sync(() => {
      wake = undefined
    })
  })

  const takeChunk = (): ReadonlyArray<WatchEvent> => {
    const chunk = buffer.length <= chunkMax ? buffer : buffer.slice(0, chunkMax)
    buffer = buffer.length <= chunkMax ? [] : buffer.slice(chunkMax)
    if (paused && buffer.length <= bufferLowWater && current?.duplex.resume) {
      paused = false
      current.duplex.resume()
    }
    return chunk
  }

  const pull: Effect.Effect<readonly [WatchEvent, ...Array<WatchEvent>], Compacted | Unavailable> =
    Effect.gen(function* () {
      while (true) {
        if (buffer.length > 0) return takeChunk() as readonly [WatchEvent, ...Array<WatchEvent>]
        if (failure !== undefined) return yield* failure
        const nowMs = yield* Clock.currentTimeMillis
        if (current === undefined) {
          outageStartedAtMs ??= nowMs
          if (nowMs - outageStartedAtMs > options.outageMsMax) {
            failure = new Unavailable({
              detail: `watch disconnected for over ${options.outageMsMax} ms: ${lastProblem}`,
            })
            continue
          }
          if (attempts > 0) {
            yield* Effect.sleep(Math.min(backoffMsInitial * 2 ** (attempts - 1), backoffMsMax))
          }
          attempts++
          yield* connect(yield* Clock.currentTimeMillis)
          continue
        }
        if (!current.created) {
          const connection = current
          const waitMs = Math.max(connection.startedAtMs + options.dialTimeoutMs - nowMs, 1)
          yield* Effect.timeoutOption(waitForNews, waitMs)
          if (
            current === connection &&
            !connection.created &&
            (yield* Clock.currentTimeMillis) - connection.startedAtMs >= options.dialTimeoutMs
          ) {
            drop(connection, `watch not acknowledged within ${options.dialTimeoutMs} ms`)
          }
          continue
        }
        yield* waitForNews
      }
    })

  const close = Effect.sync(() => {
    closed = true
    if (current !== undefined) drop(current, "closed")
  })

  return { pull, close }
}
