/**
 * The `Store` on etcd (v3 API, via the `etcd3` client). Revisions, versions and leases
 * are etcd's own: `modRevision` is etcd's `mod_revision`, a compare-and-set is an etcd
 * transaction comparing it (0 matches a key that does not exist), lease ids are etcd's
 * lease ids in decimal, and `watch` is an etcd watch from `start_revision`.
 *
 * Gotchas: etcd counts lease TTLs in whole seconds (a TTL is rounded up, and etcd may raise
 * it to its minimum, `1.5 × election timeout`; the granted `ttlMs` says what was given);
 * revisions and compaction are global to the etcd cluster, not to `prefix`; an operation
 * that fails with `Unavailable` may have been applied.
 *
 * @since 0.1.0
 */
import { type Duration, Effect, Layer, Option, Schema, Stream } from "effect"
import type { IKeyValue, IOptions, ITxnResponse } from "etcd3"
import * as Config from "./internal/config.ts"
import { etcd3 } from "./internal/etcd3.ts"
import { call, type EtcdFailure } from "./internal/etcdCall.ts"
import { makeWatchSession } from "./internal/etcdWatch.ts"
import * as Validate from "./internal/validate.ts"
import * as Metrics from "./Metrics.ts"
import {
  type DeleteOptions,
  type KeyValue,
  type Lease,
  limits,
  type PutOptions,
  type RangeResult,
  Store,
  type WatchEvent,
} from "./Store.ts"
import { Conflict, LeaseExpired, type StoreConfigError, Unavailable } from "./StoreError.ts"

/** @since 0.1.0 @category models */
export interface EtcdStoreOptions {
  /** etcd client URLs, e.g. `["http://127.0.0.1:2379"]`. */
  readonly endpoints: ReadonlyArray<string>
  /** Every key is stored under this prefix, so several stores can share one etcd. */
  readonly prefix?: string
  /**
   * How long a watch or keep-alive stream may take to be acknowledged by etcd before it
   * is abandoned (and, for a watch, retried). Default 3 seconds.
   */
  readonly dialTimeout?: Duration.Input
  /** The deadline of every request. Default 5 seconds. */
  readonly requestTimeout?: Duration.Input
  /** How long a watch may stay disconnected before it fails with `Unavailable`. Default 30 seconds. */
  readonly watchOutageMax?: Duration.Input
}

type FaultPolicy = ReturnType<NonNullable<NonNullable<IOptions["faultHandling"]>["host"]>>

/**
 * A policy that runs each call once. The etcd3 defaults retry three times and open a
 * circuit breaker for five seconds: retries would hide a compare-and-set whose answer was
 * lost (the caller must decide), and the breaker would keep refusing calls after etcd is
 * back. Time-outs and retries belong to the caller, who sees `Unavailable`.
 */
const neverAborted = new AbortController().signal
const runOnce: FaultPolicy = {
  _altReturn: undefined as never,
  onSuccess: () => ({ dispose: () => undefined }),
  onFailure: () => ({ dispose: () => undefined }),
  execute: async (fn, signal) => fn({ signal: signal ?? neverAborted }),
}

/** The key after the last key with this prefix (etcd's `range_end` for a prefix). */
const prefixEnd = (prefix: Buffer): Buffer => {
  const end = Buffer.from(prefix)
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1
      return end.subarray(0, i + 1)
    }
  }
  // All 0xff (or empty): every key from `prefix` on.
  return Buffer.from([0])
}

/** A view on gRPC's buffer typed as a plain `Uint8Array` (no copy). */
const bytes = (buffer: Buffer): Uint8Array =>
  new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)

/** For requests where etcd's lease and revision errors cannot occur. */
const orUnavailable = <A>(effect: Effect.Effect<A, EtcdFailure>) =>
  Effect.catchTags(effect, {
    LeaseNotFound: () => Effect.fail(new Unavailable({ detail: "unexpected: lease not found" })),
    RevisionCompacted: () =>
      Effect.fail(new Unavailable({ detail: "unexpected: revision compacted" })),
    RevisionInFuture: () => Effect.fail(new Unavailable({ detail: "unexpected: future revision" })),
  })

/**
 * Builds an etcd store whose client is closed when the scope closes. Connecting is lazy:
 * building never fails, and an unreachable etcd shows up as `Unavailable` on use.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: EtcdStoreOptions) =>
  Effect.gen(function* () {
    const namespace = options.prefix ?? ""
    const namespaceBytes = Buffer.byteLength(namespace, "utf8")
    const config = yield* Config.decode(
      "EtcdStore",
      Schema.Struct({
        requestTimeout: Config.duration,
        dialTimeout: Config.duration,
        watchOutageMax: Config.duration,
      }),
      options,
    )
    const timeoutMs = Config.millis(config.requestTimeout, 5_000)
    const dialTimeoutMs = Config.millis(config.dialTimeout, 3_000)
    const watchOutageMsMax = Config.millis(config.watchOutageMax, 30_000)

    const client = yield* Effect.acquireRelease(
      Effect.sync(
        () =>
          new etcd3.Etcd3({
            hosts: [...options.endpoints],
            faultHandling: { host: () => runOnce, global: runOnce },
            grpcOptions: {
              // Reconnect promptly after etcd comes back (gRPC's default backoff grows to 120 s).
              "grpc.initial_reconnect_backoff_ms": 100,
              "grpc.max_reconnect_backoff_ms": 1_000,
              // Notice a dead peer on an idle watch stream.
              "grpc.keepalive_time_ms": 10_000,
              "grpc.keepalive_timeout_ms": 5_000,
              // Ranges are bounded by item count, not bytes: accept what etcd sends.
              "grpc.max_receive_message_length": -1,
            },
          }),
      ),
      (etcd) => Effect.sync(() => etcd.close()),
    )

    const fullKey = (key: string): Buffer => Buffer.from(namespace + key, "utf8")
    const shortKey = (key: Buffer): string => key.subarray(namespaceBytes).toString("utf8")

    const toKeyValue = (kv: IKeyValue): KeyValue => ({
      key: shortKey(kv.key),
      value: bytes(kv.value),
      createRevision: Number(kv.create_revision),
      modRevision: Number(kv.mod_revision),
      version: Number(kv.version),
      lease: kv.lease === "0" || kv.lease === "" ? undefined : kv.lease,
    })

    /** The current modRevision of a key, from a transaction's failure branch (0: absent). */
    const actualRevision = (response: ITxnResponse): number => {
      const kv = response.responses[0]?.response_range?.kvs[0]
      return kv === undefined ? 0 : Number(kv.mod_revision)
    }

    const get = (key: string) =>
      Effect.gen(function* () {
        yield* Validate.key(key)
        const response = yield* orUnavailable(
          call("get", timeoutMs, (o) => client.kv.range({ key: fullKey(key) }, o)),
        )
        const kv = response.kvs[0]
        return kv === undefined ? Option.none() : Option.some(toKeyValue(kv))
      })

    const range = (prefix: string) =>
      Effect.gen(function* () {
        yield* Validate.prefix(prefix)
        const start = fullKey(prefix)
        const response = yield* orUnavailable(
          call("range", timeoutMs, (o) =>
            client.kv.range(
              {
                key: start.length === 0 ? Buffer.from([0]) : start,
                range_end: prefixEnd(start),
                limit: limits.rangeItemsMax,
                sort_order: "Ascend",
                sort_target: "Key",
              },
              o,
            ),
          ),
        )
        return {
          revision: Number(response.header.revision),
          items: response.kvs.map(toKeyValue),
        } satisfies RangeResult
      })

    const put = (key: string, value: Uint8Array, putOptions: PutOptions = {}) =>
      Effect.gen(function* () {
        yield* Validate.key(key)
        yield* Validate.value(value)
        const expected = putOptions.ifModRevision
        if (expected !== undefined) yield* Validate.revision("ifModRevision", expected)
        const lease = putOptions.lease
        const request = {
          key: fullKey(key),
          value: Buffer.from(value.buffer, value.byteOffset, value.byteLength),
          lease: lease ?? 0,
        }
        const sent: Effect.Effect<{ readonly revision: number }, EtcdFailure | Conflict> =
          expected === undefined
            ? Effect.map(
                call("put", timeoutMs, (o) => client.kv.put(request, o)),
                (response) => ({ revision: Number(response.header.revision) }),
              )
            : Effect.flatMap(
                call("put", timeoutMs, (o) =>
                  client.kv.txn(
                    {
                      // mod_revision of an absent key compares as 0: "ifModRevision: 0"
                      // is "must not exist" with no special case.
                      compare: [
                        {
                          key: request.key,
                          target: "Mod",
                          result: "Equal",
                          mod_revision: expected,
                        },
                      ],
                      success: [{ request_put: request }],
                      failure: [{ request_range: { key: request.key } }],
                    },
                    o,
                  ),
                ),
                (response) =>
                  response.succeeded
                    ? Effect.succeed({ revision: Number(response.header.revision) })
                    : Effect.fail(
                        new Conflict({ key, expected, actual: actualRevision(response) }),
                      ),
              )
        return yield* Effect.catchTags(sent, {
          LeaseNotFound: () => Effect.fail(new LeaseExpired({ lease: lease ?? "0" })),
          RevisionCompacted: () =>
            Effect.fail(new Unavailable({ detail: "unexpected: revision compacted" })),
          RevisionInFuture: () =>
            Effect.fail(new Unavailable({ detail: "unexpected: future revision" })),
        })
      })

    const del = (key: string, deleteOptions: DeleteOptions = {}) =>
      Effect.gen(function* () {
        yield* Validate.key(key)
        const expected = deleteOptions.ifModRevision
        if (expected !== undefined) yield* Validate.revision("ifModRevision", expected)
        const target = fullKey(key)
        if (expected === undefined) {
          const response = yield* orUnavailable(
            call("delete", timeoutMs, (o) => client.kv.deleteRange({ key: target }, o)),
          )
          return {
            revision: Number(response.header.revision),
            deleted: Number(response.deleted) > 0,
          }
        }
        const response = yield* orUnavailable(
          call("delete", timeoutMs, (o) =>
            client.kv.txn(
              {
                compare: [{ key: target, target: "Mod", result: "Equal", mod_revision: expected }],
                success: [{ request_delete_range: { key: target } }],
                failure: [{ request_range: { key: target } }],
              },
              o,
            ),
          ),
        )
        if (!response.succeeded) {
          return yield* new Conflict({ key, expected, actual: actualRevision(response) })
        }
        const deleted = Number(response.responses[0]?.response_delete_range?.deleted ?? 0)
        return { revision: Number(response.header.revision), deleted: deleted > 0 }
      })

    const grantLease = (ttlMs: number) =>
      Effect.gen(function* () {
        yield* Validate.ttl(ttlMs)
        const response = yield* orUnavailable(
          call("grantLease", timeoutMs, (o) =>
            client.leaseClient.leaseGrant({ TTL: Math.ceil(ttlMs / 1_000), ID: 0 }, o),
          ),
        )
        if (response.error !== "") {
          return yield* new Unavailable({ detail: `grantLease: ${response.error}` })
        }
        return { id: response.ID, ttlMs: Number(response.TTL) * 1_000 } satisfies Lease
      })

    /** One request on a keep-alive stream: the remaining TTL in seconds, 0 if the lease is gone. */
    const keepAliveOnce = (
      lease: string,
      o: Parameters<typeof client.leaseClient.leaseKeepAlive>[0],
    ) =>
      client.leaseClient.leaseKeepAlive(o).then(
        (duplex) =>
          new Promise<number>((resolve, reject) => {
            duplex.on("data", (response) => {
              resolve(Number(response.TTL))
              // Half-close: etcd then ends the stream normally.
              duplex.end()
            })
            duplex.on("error", reject)
            duplex.on("end", () => reject(new Error("keep-alive stream ended without an answer")))
            duplex.write({ ID: lease })
          }),
      )

    const keepAlive = (lease: string) =>
      Effect.gen(function* () {
        const ttlSeconds = yield* Effect.catchTag(
          orUnavailable(call("keepAlive", timeoutMs, (o) => keepAliveOnce(lease, o))),
          "InvalidRequest",
          (error) => Effect.fail(new Unavailable({ detail: error.detail })),
        )
        if (ttlSeconds <= 0) return yield* new LeaseExpired({ lease })
      })

    const revokeLease = (lease: string) =>
      call("revokeLease", timeoutMs, (o) => client.leaseClient.leaseRevoke({ ID: lease }, o)).pipe(
        Effect.asVoid,
        Effect.catchTags({
          // Revoking an ended lease is not an error.
          LeaseNotFound: () => Effect.void,
          InvalidRequest: (error) => Effect.fail(new Unavailable({ detail: error.detail })),
          RevisionCompacted: () =>
            Effect.fail(new Unavailable({ detail: "unexpected: revision compacted" })),
          RevisionInFuture: () =>
            Effect.fail(new Unavailable({ detail: "unexpected: future revision" })),
        }),
      )

    const toWatchEvent = (event: {
      readonly type: string
      readonly kv: IKeyValue
      readonly prev_kv: IKeyValue | null
    }): WatchEvent => {
      const revision = Number(event.kv.mod_revision)
      return event.type === "Put"
        ? { _tag: "Put", revision, kv: toKeyValue(event.kv) }
        : {
            _tag: "Delete",
            revision,
            key: shortKey(event.kv.key),
            previous: event.prev_kv ? toKeyValue(event.prev_kv) : undefined,
          }
    }

    const watch = (prefix: string, watchOptions: { readonly fromRevision?: number } = {}) =>
      Stream.unwrap(
        Effect.gen(function* () {
          yield* Validate.prefix(prefix)
          if (watchOptions.fromRevision !== undefined) {
            yield* Validate.revision("fromRevision", watchOptions.fromRevision)
          }
          const start = fullKey(prefix)
          const session = makeWatchSession({
            client,
            key: start.length === 0 ? Buffer.from([0]) : start,
            rangeEnd: prefixEnd(start),
            fromRevision: watchOptions.fromRevision,
            toEvent: toWatchEvent,
            dialTimeoutMs,
            outageMsMax: watchOutageMsMax,
          })
          yield* Effect.addFinalizer(() => session.close)
          return Stream.fromPull(Effect.succeed(session.pull))
        }),
      )

    const compactAt = (revision: number) =>
      call("compact", timeoutMs, (o) => client.kv.compact({ revision, physical: false }, o))

    const compact = (revision: number) =>
      Effect.gen(function* () {
        yield* Validate.revision("revision", revision)
        // Revision 1 is etcd's empty initial state: nothing before it to forget.
        if (revision <= 1) return
        yield* compactAt(revision).pipe(
          Effect.asVoid,
          Effect.catchTags({
            // Already compacted at or past it: nothing to do.
            RevisionCompacted: () => Effect.void,
            // Past the current revision: forget everything there is.
            RevisionInFuture: () =>
              Effect.flatMap(
                call("compact", timeoutMs, (o) =>
                  client.kv.range({ key: Buffer.from([0]), limit: 1 }, o),
                ),
                (response) => compactAt(Number(response.header.revision)),
              ).pipe(
                Effect.asVoid,
                Effect.catchTag("RevisionCompacted", () => Effect.void),
              ),
          }),
          orUnavailable,
        )
      })

    return Store.of(
      Metrics.instrument("etcd", {
        get,
        range,
        put,
        delete: del,
        grantLease,
        keepAlive,
        revokeLease,
        watch,
        compact,
      }),
    )
  })

/**
 * An etcd store as a scoped `Layer`: the etcd3 client is closed with the layer's scope.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { EtcdStore, Store } from "@understudy/store"
 *
 * const program = Effect.gen(function* () {
 *   const store = yield* Store.Store
 *   return yield* store.put("/locks/a", new TextEncoder().encode("me"), { ifModRevision: 0 })
 * }).pipe(Effect.provide(EtcdStore.layer({ endpoints: ["http://127.0.0.1:2379"], prefix: "/app/" })))
 * ```
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: EtcdStoreOptions): Layer.Layer<Store, StoreConfigError> =>
  Layer.effect(Store, make(options))
