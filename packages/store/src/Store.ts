/**
 * The `Store` service: a small, etcd-shaped key-value store that state outliving any one
 * server is kept in. Every value carries revisions; writes can be conditional on them
 * (compare-and-set, the basis of every lock and registration); keys can be attached to a
 * lease that must be kept alive; and `watch` streams every change from a revision on.
 *
 * Backends: `MemoryStore` (in process, the default), `RemoteStore` (a `StoreServer` over
 * `@understudy/transport`, shared by processes on one machine), `EtcdStore` (etcd).
 *
 * @since 0.1.0
 */
import { Context, type Effect, type Option, type Stream } from "effect"
import type {
  Compacted,
  Conflict,
  InvalidRequest,
  LeaseExpired,
  Unavailable,
} from "./StoreError.ts"

/** @since 0.1.0 @category models */
export interface KeyValue {
  readonly key: string
  readonly value: Uint8Array
  /** The store revision that created this key (since it last did not exist). */
  readonly createRevision: number
  /** The store revision of the last write to this key: what compare-and-set compares. */
  readonly modRevision: number
  /** Writes to this key since it was created, starting at 1. */
  readonly version: number
  /** The lease the key is attached to, if any. */
  readonly lease: string | undefined
}

/** @since 0.1.0 @category models */
export interface PutOptions {
  /** Attach the key to this lease: it is deleted when the lease ends. */
  readonly lease?: string
  /**
   * Write only if the key's `modRevision` is this; 0 means "only if the key does not
   * exist". Fails with `Conflict` otherwise.
   */
  readonly ifModRevision?: number
}

/** @since 0.1.0 @category models */
export interface DeleteOptions {
  /** Delete only if the key's `modRevision` is this. Fails with `Conflict` otherwise. */
  readonly ifModRevision?: number
}

/** @since 0.1.0 @category models */
export type WatchEvent =
  | { readonly _tag: "Put"; readonly revision: number; readonly kv: KeyValue }
  | {
      readonly _tag: "Delete"
      readonly revision: number
      readonly key: string
      /** The value before the delete, where the backend knows it. */
      readonly previous: KeyValue | undefined
    }

/** @since 0.1.0 @category models */
export interface RangeResult {
  readonly revision: number
  readonly items: ReadonlyArray<KeyValue>
}

/** @since 0.1.0 @category models */
export interface Lease {
  readonly id: string
  readonly ttlMs: number
}

/** Limits every backend enforces the same way. @since 0.1.0 @category limits */
export const limits = {
  keyBytesMax: 1024,
  /** Below etcd's default request limit of 1.5 MiB, leaving room for the envelope. */
  valueBytesMax: 1024 * 1024,
  rangeItemsMax: 10_000,
  leaseTtlMsMin: 100,
  leaseTtlMsMax: 24 * 60 * 60 * 1000,
} as const

/**
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Store, MemoryStore } from "@understudy/store"
 *
 * const program = Effect.gen(function* () {
 *   const store = yield* Store.Store
 *   const { revision } = yield* store.put("/locks/a", new TextEncoder().encode("me"), { ifModRevision: 0 })
 *   return revision
 * }).pipe(Effect.provide(MemoryStore.layer))
 * ```
 * @since 0.1.0
 * @category services
 */
export class Store extends Context.Service<
  Store,
  {
    readonly get: (
      key: string,
    ) => Effect.Effect<Option.Option<KeyValue>, Unavailable | InvalidRequest>
    /** Every key that starts with `prefix`, in key order, at one revision. */
    readonly range: (prefix: string) => Effect.Effect<RangeResult, Unavailable | InvalidRequest>
    readonly put: (
      key: string,
      value: Uint8Array,
      options?: PutOptions,
    ) => Effect.Effect<
      { readonly revision: number },
      Conflict | LeaseExpired | Unavailable | InvalidRequest
    >
    readonly delete: (
      key: string,
      options?: DeleteOptions,
    ) => Effect.Effect<
      { readonly revision: number; readonly deleted: boolean },
      Conflict | Unavailable | InvalidRequest
    >
    /** A new lease that ends `ttlMs` after its last keep-alive. */
    readonly grantLease: (ttlMs: number) => Effect.Effect<Lease, Unavailable | InvalidRequest>
    /** Renews a lease for its full TTL. */
    readonly keepAlive: (lease: string) => Effect.Effect<void, LeaseExpired | Unavailable>
    /** Ends a lease now, deleting its keys. Revoking an ended lease is not an error. */
    readonly revokeLease: (lease: string) => Effect.Effect<void, Unavailable>
    /**
     * Every change to keys under `prefix` with a revision of at least `fromRevision`
     * (default: changes after now), in revision order, none skipped, none repeated — across
     * reconnects of a remote backend. Fails with `Compacted` when `fromRevision` is gone.
     */
    readonly watch: (
      prefix: string,
      options?: { readonly fromRevision?: number },
    ) => Stream.Stream<WatchEvent, Compacted | Unavailable | InvalidRequest>
    /** Forgets history before `revision`; watches from earlier revisions then fail. */
    readonly compact: (revision: number) => Effect.Effect<void, Unavailable | InvalidRequest>
  }
>()("@understudy/store/Store") {}
