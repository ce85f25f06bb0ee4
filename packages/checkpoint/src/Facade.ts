/**
 * Object transfers that survive their server's death, for code that does not use Effect:
 * `createServer` serves objects (a directory, or your own source) and checkpoints every
 * transfer; `createClient` downloads them as Node `Readable`s that ride through takeovers.
 * Both are `EventEmitter`s: the server emits `Checkpointed`, `TakenOver`, `Refused` and
 * `Finished`, the client `opened` (the object's size, once per download) and `resumed` (gap
 * in ms, the object offset, the server). A client finds the servers through a list of
 * their addresses, or through the name server of their store (`{ nameServer }`, servers
 * created with `advertise: true`).
 *
 * @example
 * ```ts
 * import { createClient, createServer } from "@understudy/checkpoint"
 *
 * const server = await createServer({ serverId: "a", listen: "tcp://127.0.0.1:7400", dir: "/srv/objects", store: { remote: "tcp://127.0.0.1:7300" }, clusterKey })
 * const client = createClient({ service: ["tcp://127.0.0.1:7400", "tcp://127.0.0.1:7401"], clusterKey })
 * // or, servers created with `advertise: true` on that store:
 * // createClient({ service: { nameServer: { remote: "tcp://127.0.0.1:7300" } }, clusterKey })
 * client.on("resumed", (event) => console.log("taken over at byte", event.offset))
 * client.get("movie.mp4").pipe(createWriteStream("movie.mp4"))
 * // ... later
 * await server.close()
 * ```
 * @since 0.1.0
 */
import { EventEmitter } from "node:events"
import { Readable } from "node:stream"
import { MemoryStore, NameServer, RemoteStore, Store } from "@understudy/store"
import { Address, NodeTransport, Observability, type Transport } from "@understudy/transport"
import { type Duration, Effect, Exit, Layer, Redacted, Result, Scope, Stream } from "effect"
import { CheckpointConfigError } from "./CheckpointError.ts"
import * as CheckpointStore from "./CheckpointStore.ts"
import * as Discovery from "./Discovery.ts"
import * as Durations from "./internal/durations.ts"
import * as ObjectSession from "./ObjectSession.ts"
import * as Policy from "./Policy.ts"

/** Where a Promise server keeps checkpoints and leases. @since 0.1.0 @category models */
export type StoreChoice =
  /** In this process only: no other server can take over (tests, one server). */
  | "memory"
  /** A `StoreServer` shared by the service's servers. */
  | { readonly remote: string }
  /** etcd (needs the optional `etcd3` package). */
  | { readonly etcd: ReadonlyArray<string> }
  /** A store you built (`MemoryStore.make`, `EtcdStore.make`, ...). */
  | { readonly store: Store.Store["Service"] }

/** @since 0.1.0 @category models */
export interface CreateServerOptions extends Observability.FacadeOptions {
  /** This server's id in the service (letters, digits, `-`, `_`). */
  readonly serverId: string
  /** `tcp://HOST:PORT` (port 0: any free port). */
  readonly listen: string
  /** Objects: the files of a directory, or your own source. */
  readonly dir?: string
  readonly source?: {
    readonly size: (name: string) => Promise<number | undefined>
    readonly read: (name: string, offset: number, length: number) => Promise<Uint8Array>
  }
  /** Default `"memory"`. */
  readonly store?: StoreChoice
  /** The service's name: servers of one service take each other's transfers over. Default `objects`. */
  readonly service?: string
  /** The cluster key (authenticates transfers and the store); required unless `insecure`. */
  readonly clusterKey?: Uint8Array | string
  readonly insecure?: boolean
  /** Checkpoint policy: `{ everyBytes, every, objectBoundaries }`. */
  readonly policy?: unknown
  /** This server's lease: its transfers are taken over this long after it dies. Default `"1 second"`. */
  readonly leaseTtl?: Duration.Input
  readonly windowBytesMax?: number
  readonly sessionsMax?: number
  /**
   * Contend for the service's name on the store's `NameServer` (see `Discovery`), so that
   * clients given `{ nameServer }` find this server when it holds the name. Default false.
   */
  readonly advertise?: boolean
}

/** @since 0.1.0 @category models */
export interface CheckpointServer extends EventEmitter {
  /** The address it listens on (`tcp://HOST:PORT`). */
  readonly address: string
  /** Sessions served now. */
  sessions(): number
  close(): Promise<void>
}

/**
 * Starts an object server. Rejects with a typed error on bad options.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createServer = async (options: CreateServerOptions): Promise<CheckpointServer> => {
  const policy = Policy.decode(options.policy ?? {})
  if (Result.isFailure(policy)) throw policy.failure
  const listen = Address.parseStream(options.listen)
  if (listen instanceof Address.InvalidAddress)
    throw new CheckpointConfigError({ detail: `listen: ${listen.reason}` })
  const source: ObjectSession.ObjectSource | undefined =
    options.dir !== undefined
      ? ObjectSession.fileSource(options.dir)
      : options.source === undefined
        ? undefined
        : {
            size: (name) => Effect.promise(() => options.source!.size(name)),
            read: (name, offset, length) =>
              Effect.promise(() => options.source!.read(name, offset, length)),
          }
  if (source === undefined) throw new CheckpointConfigError({ detail: "give dir or source" })
  if (!CheckpointStore.idPattern.test(options.serverId))
    throw new CheckpointConfigError({ detail: `bad serverId ${JSON.stringify(options.serverId)}` })
  if (options.clusterKey === undefined && options.insecure !== true)
    throw new CheckpointConfigError({ detail: "a clusterKey is required (or insecure: true)" })
  // Checked here, before the store is opened, as CheckpointStore.make checks it.
  const durations = Effect.runSync(Effect.result(Durations.millis(options, ["leaseTtl"])))
  if (Result.isFailure(durations)) throw durations.failure
  const clusterKey =
    options.clusterKey === undefined ? undefined : Redacted.make(options.clusterKey)
  const storeLayer = await storeLayerOf(options.store ?? "memory", clusterKey)

  const scope = Effect.runSync(Scope.make())
  // The caller's logger and layers (tracer, metrics), for every effect of this server.
  const runtime = await Observability.facadeRuntime(options, scope)
  const service = options.service ?? "objects"
  const leaseTtlMs = durations.success.leaseTtl ?? 1_000
  const server = await runtime.runPromise(
    Effect.gen(function* () {
      const stores = yield* Layer.build(storeLayer)
      const listened = yield* ObjectSession.serve(
        {
          listen,
          ...(clusterKey === undefined ? { insecure: true } : { clusterKey }),
          policy: options.policy ?? {},
          ...(options.windowBytesMax === undefined
            ? {}
            : { windowBytesMax: options.windowBytesMax }),
          ...(options.sessionsMax === undefined ? {} : { sessionsMax: options.sessionsMax }),
        },
        source,
      ).pipe(
        Effect.provideServiceEffect(
          CheckpointStore.CheckpointStore,
          CheckpointStore.make({
            serverId: options.serverId,
            backend: "session",
            prefix: CheckpointStore.defaultPrefix(service),
            leaseTtl: leaseTtlMs,
            address: options.listen,
          }),
        ),
        Effect.provide(stores),
      )
      if (options.advertise === true)
        yield* Discovery.advertise({
          service,
          serverId: options.serverId,
          address: listened.address,
          ttl: leaseTtlMs,
        }).pipe(Effect.provide(NameServer.layer), Effect.provide(stores))
      return listened
    }).pipe(
      Effect.provide(NodeTransport.layer),
      Scope.provide(scope),
      Effect.onError(() => Scope.close(scope, Exit.void)),
    ),
  )
  const emitter = new EventEmitter()
  runtime.runFork(
    Stream.runForEach(server.events, (event) =>
      Effect.sync(() => void emitter.emit(event._tag, event)),
    ).pipe(Scope.provide(scope)),
  )
  return Object.assign(emitter, {
    address: Address.format(server.address),
    sessions: server.sessions,
    close: () => runtime.runPromise(Scope.close(scope, Exit.void)),
  })
}

const storeLayerOf = async (
  choice: StoreChoice,
  clusterKey: Redacted.Redacted<Uint8Array | string> | undefined,
): Promise<Layer.Layer<Store.Store, never, Transport.Transport>> => {
  if (choice === "memory") return MemoryStore.layer
  if ("store" in choice) return Layer.succeed(Store.Store, choice.store)
  if ("remote" in choice) {
    const address = Address.parseStream(choice.remote)
    if (address instanceof Address.InvalidAddress)
      throw new CheckpointConfigError({ detail: `store.remote: ${address.reason}` })
    // The defaults and a key: nothing a store layer can refuse.
    return RemoteStore.layer({
      address,
      ...(clusterKey === undefined ? {} : { clusterKey }),
    }).pipe(Layer.orDie)
  }
  // Loaded only when asked for: etcd3 is an optional dependency.
  const { EtcdStore } = await import("@understudy/store/etcd")
  return EtcdStore.layer({ endpoints: [...choice.etcd] }).pipe(Layer.orDie)
}

/**
 * A client's way to the service's servers through the name server of their store: the
 * server that holds the service's name (servers created with `advertise: true`).
 *
 * @since 0.1.0
 * @category models
 */
export interface NameServerChoice {
  /** The servers' store (a `StoreServer`, or etcd): reached with the client's cluster key. */
  readonly nameServer: Exclude<StoreChoice, "memory">
  /** The service's name, as the servers' `service`. Default `objects`. */
  readonly service?: string
}

const nameServerLocator = async (
  choice: NameServerChoice,
  clusterKey: Redacted.Redacted<Uint8Array | string> | undefined,
  scope: Scope.Scope,
): Promise<Discovery.Locator> => {
  const storeLayer = await storeLayerOf(choice.nameServer, clusterKey)
  return Effect.runPromise(
    Effect.gen(function* () {
      const names = yield* Layer.build(
        NameServer.layer.pipe(Layer.provide(storeLayer), Layer.provide(NodeTransport.layer)),
      )
      return yield* Discovery.nameServer(choice.service ?? "objects").pipe(Effect.provide(names))
    }).pipe(Scope.provide(scope)),
  )
}

/** @since 0.1.0 @category models */
export interface CreateClientOptions extends Observability.FacadeOptions {
  /**
   * Every server of the service (`tcp://HOST:PORT`, tried in turn), or the name server
   * that names the one to use (asked before each connection).
   */
  readonly service: ReadonlyArray<string> | NameServerChoice
  readonly clusterKey?: Uint8Array | string
  readonly insecure?: boolean
  /** Connection attempts across one transfer. Default 100. */
  readonly attemptsMax?: number
}

/** @since 0.1.0 @category models */
export interface CheckpointClient extends EventEmitter {
  /**
   * The object as a byte stream: each byte once, in order, across takeovers; or an `error`
   * event with a `TakeoverRefused` when no server can resume it exactly.
   */
  get(name: string): Readable
  /** Closes the layer it was given (a tracer's exporter flushes). */
  close(): Promise<void>
}

/**
 * A client of an object service.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createClient = (options: CreateClientOptions): CheckpointClient => {
  const list = "nameServer" in options.service ? undefined : options.service
  const addresses = list?.map((text) => {
    const address = Address.parseStream(text)
    if (address instanceof Address.InvalidAddress)
      throw new CheckpointConfigError({ detail: `service: ${address.reason}` })
    return address
  })
  if (addresses?.length === 0) throw new CheckpointConfigError({ detail: "an empty service" })
  if (options.clusterKey === undefined && options.insecure !== true)
    throw new CheckpointConfigError({ detail: "a clusterKey is required (or insecure: true)" })
  const clusterKey =
    options.clusterKey === undefined ? undefined : Redacted.make(options.clusterKey)
  const emitter = new EventEmitter()
  const scope = Effect.runSync(Scope.make())
  // The caller's logger and layers (tracer, metrics), built once for every download.
  const runtime = Observability.facadeRuntime(options, scope)
  // A layer that fails to build fails each download, not the constructor.
  runtime.catch(() => undefined)
  // The name server's locator, on one store client for every download.
  const located: Promise<Discovery.Service> =
    addresses !== undefined
      ? Promise.resolve(addresses)
      : nameServerLocator(options.service as NameServerChoice, clusterKey, scope)
  located.catch(() => undefined)
  const download = (name: string, service: Discovery.Service) =>
    ObjectSession.get(name, {
      service,
      ...(clusterKey === undefined ? { insecure: true } : { clusterKey }),
      ...(options.attemptsMax === undefined ? {} : { attemptsMax: options.attemptsMax }),
      onOpened: (event) => void emitter.emit("opened", { name, ...event }),
      onResumed: (event) => void emitter.emit("resumed", { name, ...event }),
    }).pipe(
      Stream.map((chunk) => Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)),
      Stream.provide(NodeTransport.layer),
    )
  return Object.assign(emitter, {
    get: (name: string) =>
      Readable.from(
        (async function* () {
          const run = await runtime
          const service = await located
          yield* await run.runPromise(Stream.toAsyncIterableEffect(download(name, service)))
        })(),
        { objectMode: false },
      ),
    close: async () => {
      await runtime.catch(() => undefined)
      await Effect.runPromise(Scope.close(scope, Exit.void))
    },
  })
}
