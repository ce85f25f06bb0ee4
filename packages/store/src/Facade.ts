/**
 * The store for code that does not use Effect: `createStore` opens a store (in this process,
 * a `StoreServer`'s, or etcd) whose operations return Promises (a refusal rejects with the
 * typed error: `Conflict`, `LeaseExpired`, ...) and whose watches are `EventEmitter`s;
 * `createStoreServer` serves a store in memory to other processes on one machine. Both take
 * a `logger` (every log line, instead of the console) and a `layer` (a tracer, a metrics
 * exporter: a remote or etcd store's operations are spans `store.get`, `store.put`, ...).
 *
 * @example
 * ```ts
 * import { createStore, createStoreServer } from "@understudy/store"
 *
 * const server = await createStoreServer({ listen: "tcp://127.0.0.1:7300", clusterKey })
 * const store = await createStore({ backend: { remote: server.address }, clusterKey })
 * const lease = await store.grantLease(1_000)
 * await store.put("/locks/build", "worker-1", { lease: lease.id, ifModRevision: 0 })
 * const watch = store.watch("/locks/")
 * watch.on("change", (event) => console.log(event._tag, event.revision))
 * // ... later
 * await watch.close()
 * await store.close()
 * await server.close()
 * ```
 * @since 0.1.0
 */
import { EventEmitter } from "node:events"
import {
  Address,
  NodeTransport,
  Observability,
  Options,
  type Transport,
} from "@understudy/transport"
import {
  Context,
  type Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  Option,
  Redacted,
  Result,
  Scope,
  Stream,
} from "effect"
import * as MemoryStore from "./MemoryStore.ts"
import * as RemoteStore from "./RemoteStore.ts"
import * as Store from "./Store.ts"
import { StoreConfigError, type StoreError } from "./StoreError.ts"
import * as StoreServer from "./StoreServer.ts"

/** Where a Promise store is. @since 0.1.0 @category models */
export type StoreBackend =
  /** In this process only (tests, one process). */
  | "memory"
  /** A `StoreServer` (`createStoreServer`, `StoreServer.serve`): `tcp://HOST:PORT` or a unix socket. */
  | { readonly remote: string }
  /** etcd (needs the optional `etcd3` package). */
  | { readonly etcd: ReadonlyArray<string> }

/** @since 0.1.0 @category models */
export interface CreateStoreOptions extends Observability.FacadeOptions {
  /** Default `"memory"`. */
  readonly backend?: StoreBackend
  /** A remote store's cluster key (the server's); required for `remote` unless `insecure`. */
  readonly clusterKey?: Uint8Array | string
  /** Talk to a `StoreServer` that has no cluster key. */
  readonly insecure?: boolean
  /** A remote or etcd store: time allowed for one request. Default 5 seconds. */
  readonly requestTimeout?: Duration.Input
}

/**
 * A watch of the keys under a prefix: emits `change` (every `Store.WatchEvent`, in revision
 * order) and the event under its own tag (`Put`, `Delete`). `done` resolves when the watch
 * ends: with the error it failed with (`Compacted`, `Unavailable`, ...), or `undefined`
 * once closed.
 *
 * @since 0.1.0
 * @category models
 */
export interface StoreWatch extends EventEmitter {
  readonly done: Promise<StoreError | undefined>
  close(): Promise<void>
}

/**
 * A store's operations as Promises (see `Store.Store` for what each one guarantees); a
 * string value is stored as its UTF-8 bytes.
 *
 * @since 0.1.0
 * @category models
 */
export interface StoreClient {
  get(key: string): Promise<Store.KeyValue | undefined>
  range(prefix: string): Promise<Store.RangeResult>
  put(
    key: string,
    value: Uint8Array | string,
    options?: Store.PutOptions,
  ): Promise<{ readonly revision: number }>
  delete(
    key: string,
    options?: Store.DeleteOptions,
  ): Promise<{ readonly revision: number; readonly deleted: boolean }>
  grantLease(ttlMs: number): Promise<Store.Lease>
  keepAlive(lease: string): Promise<void>
  revokeLease(lease: string): Promise<void>
  /** Changes after now, or from `fromRevision` on. */
  watch(prefix: string, options?: { readonly fromRevision?: number }): StoreWatch
  compact(revision: number): Promise<void>
  /** Ends the watches and the connection (a memory store's data goes with it). */
  close(): Promise<void>
}

const encoder = new TextEncoder()

const backendLayer = async (
  options: CreateStoreOptions,
): Promise<Layer.Layer<Store.Store, StoreConfigError, Transport.Transport>> => {
  const backend = options.backend ?? "memory"
  const requestTimeoutMs = requestTimeoutMsOf(options.requestTimeout)
  if (backend === "memory") return MemoryStore.layer
  if ("remote" in backend) {
    const address = Address.parseStream(backend.remote)
    if (address instanceof Address.InvalidAddress)
      throw new StoreConfigError({ detail: `backend.remote: ${address.reason}` })
    if (options.clusterKey === undefined && options.insecure !== true)
      throw new StoreConfigError({ detail: "a clusterKey is required (or insecure: true)" })
    return RemoteStore.layer({
      address,
      ...(options.clusterKey === undefined
        ? {}
        : { clusterKey: Redacted.make(options.clusterKey) }),
      ...(requestTimeoutMs === undefined ? {} : { requestTimeout: requestTimeoutMs }),
    })
  }
  if (backend.etcd.length === 0) throw new StoreConfigError({ detail: "backend.etcd is empty" })
  // Loaded only when asked for: etcd3 is an optional dependency.
  const { EtcdStore } = await import("./etcd.ts")
  return EtcdStore.layer({
    endpoints: [...backend.etcd],
    ...(requestTimeoutMs === undefined ? {} : { requestTimeout: requestTimeoutMs }),
  })
}

/** The request time-out in milliseconds; undefined leaves the backend's default (5 s). */
const requestTimeoutMsOf = (input: Duration.Input | undefined): number | undefined => {
  if (input === undefined) return undefined
  const ms = Options.positiveMillis("requestTimeout", input)
  if (Result.isFailure(ms)) throw new StoreConfigError({ detail: ms.failure })
  return ms.success
}

/**
 * Opens a store. Rejects with `StoreConfigError` on bad options.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createStore = async (options: CreateStoreOptions = {}): Promise<StoreClient> => {
  const layer = await backendLayer(options)
  const scope = Effect.runSync(Scope.make())
  try {
    // The caller's logger and layers (tracer, metrics), for every operation of this store.
    const runtime = await Observability.facadeRuntime(options, scope)
    const context = await runtime.runPromise(
      Layer.buildWithScope(Layer.provide(layer, NodeTransport.layer), scope),
    )
    return wrap(runtime, Context.get(context, Store.Store), scope)
  } catch (error) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  }
}

const wrap = (
  runtime: Observability.FacadeRuntime,
  store: Store.Store["Service"],
  scope: Scope.Closeable,
): StoreClient => ({
  get: (key) => runtime.runPromise(Effect.map(store.get(key), Option.getOrUndefined)),
  range: (prefix) => runtime.runPromise(store.range(prefix)),
  put: (key, value, options) =>
    runtime.runPromise(
      store.put(key, typeof value === "string" ? encoder.encode(value) : value, options),
    ),
  delete: (key, options) => runtime.runPromise(store.delete(key, options)),
  grantLease: (ttlMs) => runtime.runPromise(store.grantLease(ttlMs)),
  keepAlive: (lease) => runtime.runPromise(store.keepAlive(lease)),
  revokeLease: (lease) => runtime.runPromise(store.revokeLease(lease)),
  compact: (revision) => runtime.runPromise(store.compact(revision)),
  watch: (prefix, options) => {
    const emitter = new EventEmitter()
    const fiber = runtime.runFork(
      Stream.runForEach(store.watch(prefix, options), (event) =>
        Effect.sync(() => {
          emitter.emit("change", event)
          emitter.emit(event._tag, event)
        }),
      ).pipe(
        Effect.as(undefined),
        Effect.catch((error: StoreError) => Effect.succeed(error)),
      ),
    )
    const done = runtime.runPromise(Fiber.join(fiber)).catch(() => undefined)
    return Object.assign(emitter, {
      done,
      close: async () => {
        await runtime.runPromise(Fiber.interrupt(fiber))
      },
    })
  },
  close: () => runtime.runPromise(Scope.close(scope, Exit.void)),
})

/** @since 0.1.0 @category models */
export interface CreateStoreServerOptions extends Observability.FacadeOptions {
  /** `tcp://HOST:PORT` (port 0: any free port) or a unix socket address. */
  readonly listen: string
  /** Clients must prove knowledge of this key; required unless `insecure`. */
  readonly clusterKey?: Uint8Array | string
  /** Serve without a cluster key (any local process may connect). */
  readonly insecure?: boolean
  /** See `StoreServer.StoreServerOptions`. */
  readonly frameBytesMax?: number
  readonly inFlightPerConnectionMax?: number
  readonly watchesPerConnectionMax?: number
}

/** A served store. @since 0.1.0 @category models */
export interface StoreServerHandle {
  /** The address it listens on, with the actual port when port 0 was asked for. */
  readonly address: string
  /** Client connections open now. */
  connections(): Promise<number>
  /** Closes the connections and the listener; the store's data goes with it. */
  close(): Promise<void>
}

/**
 * Serves a store in memory at `listen`. Rejects with `StoreConfigError` on bad options, with
 * the transport's `ListenError` if the address cannot be bound.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createStoreServer = async (
  options: CreateStoreServerOptions,
): Promise<StoreServerHandle> => {
  const listen = Address.parseStream(options.listen)
  if (listen instanceof Address.InvalidAddress)
    throw new StoreConfigError({ detail: `listen: ${listen.reason}` })
  if (options.clusterKey === undefined && options.insecure !== true)
    throw new StoreConfigError({ detail: "a clusterKey is required (or insecure: true)" })
  const scope = Effect.runSync(Scope.make())
  try {
    const runtime = await Observability.facadeRuntime(options, scope)
    const server = await runtime.runPromise(
      Effect.gen(function* () {
        const served = yield* StoreServer.serve(listen, {
          ...(options.clusterKey === undefined
            ? {}
            : { clusterKey: Redacted.make(options.clusterKey) }),
          ...(options.frameBytesMax === undefined ? {} : { frameBytesMax: options.frameBytesMax }),
          ...(options.inFlightPerConnectionMax === undefined
            ? {}
            : { inFlightPerConnectionMax: options.inFlightPerConnectionMax }),
          ...(options.watchesPerConnectionMax === undefined
            ? {}
            : { watchesPerConnectionMax: options.watchesPerConnectionMax }),
        })
        yield* Effect.logInfo("store: serving").pipe(
          Effect.annotateLogs({
            address: Address.format(served.address),
            authenticated: options.clusterKey !== undefined,
          }),
        )
        return served
      }).pipe(
        Effect.provide(Layer.merge(MemoryStore.layer, NodeTransport.layer)),
        Scope.provide(scope),
      ),
    )
    return {
      address: Address.format(server.address),
      connections: () => runtime.runPromise(server.connectionCount),
      close: () => runtime.runPromise(Scope.close(scope, Exit.void)),
    }
  } catch (error) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  }
}
