/**
 * The package's metrics and spans: every store operation counted by backend and outcome
 * (a refusal by its reason: `Conflict`, `LeaseExpired`, ...) with its duration, the watches
 * open, the clients a store server holds, and the name server's registrations and the
 * registrations it lost. Every backend is wrapped by `instrument`, so they all record alike.
 *
 * @since 0.1.0
 */
import { Cause, Effect, type Exit, Metric, Option, Stream } from "effect"
import type { Store } from "./Store.ts"

/** Which backend an operation ran on. @since 0.1.0 @category models */
export type Backend = "memory" | "remote" | "etcd"

// Each kept for `observer`, which makes one series per op and outcome with the same
// name and description (the series key).
const operationsOptions = {
  description:
    "Store operations, by op (get, range, put, delete, grant-lease, keep-alive, revoke-lease, compact), backend (memory, remote, etcd) and outcome (ok, or the error: Conflict, LeaseExpired, Unavailable, InvalidRequest, Compacted)",
  incremental: true,
}

/**
 * @since 0.1.0
 * @category metrics
 */
export const operations = Metric.counter("understudy_store_operations_total", operationsOptions)

const operationMsOptions = {
  description: "Duration of a remote or etcd store operation, in ms, by op and backend",
  boundaries: Metric.exponentialBoundaries({ start: 0.125, factor: 2, count: 18 }),
}

/**
 * @since 0.1.0
 * @category metrics
 */
export const operationMs = Metric.histogram("understudy_store_operation_ms", operationMsOptions)

/**
 * @since 0.1.0
 * @category metrics
 */
export const watches = Metric.gauge("understudy_store_watches", {
  description: "Watches open, by backend",
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const watchEvents = Metric.counter("understudy_store_watch_events_total", {
  description: "Changes delivered to watches, by backend",
  incremental: true,
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const serverClients = Metric.gauge("understudy_store_server_clients", {
  description: "Client connections a store server holds",
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const registrations = Metric.counter("understudy_store_registrations_total", {
  description: "Name server registrations, by outcome (registered, StaleEpoch, Unavailable, ...)",
  incremental: true,
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const registrationsLost = Metric.counter("understudy_store_registrations_lost_total", {
  description:
    "Registrations lost while their holder still held them, by reason (LeaseExpired, Superseded, Unreachable)",
  incremental: true,
})

/** What an operation ended with: `ok`, the error's tag, or `interrupted`. */
export const outcome = (exit: Exit.Exit<unknown, { readonly _tag: string }>): string =>
  exit._tag === "Success"
    ? "ok"
    : Option.match(Cause.findErrorOption(exit.cause), {
        onNone: () => (Cause.hasInterruptsOnly(exit.cause) ? "interrupted" : "defect"),
        onSome: (error) => error._tag,
      })

/**
 * Wraps one backend's operations: each counted by outcome and, on a remote or etcd store,
 * timed and in a span. A memory store's operation takes microseconds: below the histogram's
 * first bucket, and less than a span or a metric update costs (tests and simulations run
 * many), so it is only counted. Each op and outcome gets a metric of its own, made once with
 * its attributes, which keeps its series key: `Metric.withAttributes` on the shared metric
 * would make that key again (a JSON string) whenever consecutive operations differ, as a
 * compare-and-set's get and put do.
 */
const observer = (backend: Backend) => {
  const counted = new Map<string, Metric.Counter<number>>()
  const timed = new Map<string, Metric.Histogram<number>>()
  const countedFor = (op: string, outcome: string) => {
    const key = `${op} ${outcome}`
    let metric = counted.get(key)
    if (metric === undefined) {
      metric = Metric.counter(operations.id, {
        ...operationsOptions,
        attributes: { op, backend, outcome },
      })
      counted.set(key, metric)
    }
    return metric
  }
  const timedFor = (op: string) => {
    let metric = timed.get(op)
    if (metric === undefined) {
      metric = Metric.histogram(operationMs.id, {
        ...operationMsOptions,
        attributes: { op, backend },
      })
      timed.set(op, metric)
    }
    return metric
  }
  return <A, E extends { readonly _tag: string }, R>(
    op: string,
    key: string | undefined,
    effect: Effect.Effect<A, E, R>,
  ): Effect.Effect<A, E, R> => {
    if (backend === "memory") {
      return Effect.onExit(effect, (exit) => Metric.update(countedFor(op, outcome(exit)), 1))
    }
    const observed = Effect.clockWith((clock) => {
      const startedMs = clock.currentTimeMillisUnsafe()
      return Effect.onExit(effect, (exit) =>
        Effect.andThen(
          Metric.update(countedFor(op, outcome(exit)), 1),
          Metric.update(timedFor(op), clock.currentTimeMillisUnsafe() - startedMs),
        ),
      )
    })
    return Effect.withSpan(observed, `store.${op}`, {
      attributes: { "store.backend": backend, ...(key === undefined ? {} : { "store.key": key }) },
    })
  }
}

/**
 * The same store, each operation counted and, on a remote or etcd store, timed and in a span
 * (`store.get`, `store.put`, ... with the backend and the key or lease); each watch counted
 * while open, with the changes it delivers.
 *
 * @since 0.1.0
 * @category constructors
 */
export const instrument = (backend: Backend, store: Store["Service"]): Store["Service"] => {
  const observe = observer(backend)
  const open = Metric.withAttributes(watches, { backend })
  const delivered = Metric.withAttributes(watchEvents, { backend })
  return {
    get: (key) => observe("get", key, store.get(key)),
    range: (prefix) => observe("range", prefix, store.range(prefix)),
    put: (key, value, options) => observe("put", key, store.put(key, value, options)),
    delete: (key, options) => observe("delete", key, store.delete(key, options)),
    grantLease: (ttlMs) => observe("grant-lease", undefined, store.grantLease(ttlMs)),
    keepAlive: (lease) => observe("keep-alive", lease, store.keepAlive(lease)),
    revokeLease: (lease) => observe("revoke-lease", lease, store.revokeLease(lease)),
    compact: (revision) => observe("compact", undefined, store.compact(revision)),
    watch: (prefix, options) =>
      Stream.unwrap(
        Effect.as(
          Effect.acquireRelease(Metric.modify(open, 1), () => Metric.modify(open, -1)),
          store.watch(prefix, options).pipe(Stream.tap(() => Metric.update(delivered, 1))),
        ),
      ),
  }
}
