/**
 * A server of a staggered-election group for code that does not use Effect: Promises and
 * an EventEmitter, over real UDP and a `StoreServer` name server.
 *
 * @example
 * ```ts
 * import { createServer } from "@understudy/staggered-election"
 * import { Schema } from "effect"
 *
 * const server = await createServer({
 *   group: "counter",
 *   self: "1",
 *   servers: [{ id: "1", capacity: { cpu: 4, bandwidthMbps: 1000 } }, ...],
 *   addresses: { "1": "udp://127.0.0.1:7001", ... },
 *   store: "tcp://127.0.0.1:7100",
 *   request: Schema.Number,
 *   initial: 0,
 *   apply: (total, add) => [total + add, total + add],
 *   detectionPeriod: "50 millis", inquiryTimeout: "250 millis", baseDelay: "100 millis",
 * })
 * server.on("BecameMaster", (event) => console.log("master at epoch", event.epoch))
 * const total = await server.submit({ clientId: "c1", requestId: 1, request: 5 })
 * await server.close()
 * ```
 * @since 0.1.0
 */
import { EventEmitter } from "node:events"
import { NameServer, RemoteStore } from "@understudy/store"
import { Address, NodeDatagram, NodeTransport, Observability } from "@understudy/transport"
import { Effect, Exit, Layer, type Redacted, Scope, Stream } from "effect"
import type * as Delays from "./Delays.ts"
import * as ServerGroup from "./ServerGroup.ts"

/** @since 0.1.0 @category models */
export interface ServerOptions<S, Req, Res>
  extends Omit<ServerGroup.Options<S, Req, Res>, "addresses">,
    Observability.FacadeOptions {
  /** Every server's UDP address (`udp://127.0.0.1:7001`), this one included. */
  readonly addresses: Readonly<Record<string, string | Address.Udp>>
  /** Where the name server's `StoreServer` listens (`tcp://127.0.0.1:7100`, `unix:///path`). */
  readonly store: string | Address.StreamAddress
  /**
   * The name server's key, if it was started with one (`StoreServer.serve(address, {
   * clusterKey })`, `server-group nameserver --cluster-key FILE`): proven at every connection.
   */
  readonly storeClusterKey?: Redacted.Redacted<Uint8Array | string>
}

/**
 * A running server. Events are emitted under their tag: `BecameMaster`, `MasterLost`,
 * `Waiting`, `Revoked`, `Acknowledged`, `Registered`, `MembershipChanged`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Server<Req, Res, S = unknown> extends EventEmitter {
  readonly self: string
  /** Rejects with a `NotMaster` (its `master` says where to go), `Rejected` or `GroupUnavailable`. */
  submit(submission: ServerGroup.Submission<Req>): Promise<Res>
  /**
   * The replicated state, linearizable by default (see `ServerGroup.Options.reads`); rejects
   * with `NotMaster` or `GroupUnavailable`.
   */
  read(): Promise<S>
  status(): Promise<ServerGroup.Status>
  explainDelays(): Promise<Delays.Explanation>
  close(): Promise<void>
}

const parseAddress = <A>(
  value: string | A,
  parse: (text: string) => A | Address.InvalidAddress,
) => {
  if (typeof value !== "string") return value
  const parsed = parse(value)
  if (parsed instanceof Address.InvalidAddress) throw parsed
  return parsed
}

/**
 * Starts one server of the group. Rejects if its address cannot be bound or the
 * configuration is invalid.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createServer = async <S, Req, Res>(
  options: ServerOptions<S, Req, Res>,
): Promise<Server<Req, Res, S>> => {
  const addresses: Record<string, Address.Udp> = {}
  for (const [id, value] of Object.entries(options.addresses)) {
    addresses[id] = parseAddress(value, Address.parseDatagram)
  }
  const store = parseAddress(options.store, Address.parseStream)
  const scope = Effect.runSync(Scope.make())
  // The caller's logger and layers (tracer, metrics), for every effect of this server.
  const runtime = await Observability.facadeRuntime(options, scope)
  const services = NameServer.layer.pipe(
    Layer.provide(
      RemoteStore.layer({
        address: store,
        ...(options.storeClusterKey === undefined ? {} : { clusterKey: options.storeClusterKey }),
      }),
    ),
    Layer.provide(NodeTransport.layer),
    Layer.merge(NodeDatagram.layer),
  )
  const server = await runtime.runPromise(
    // The services live in the server's scope, not just while it starts.
    Effect.flatMap(Layer.build(services), (context) =>
      ServerGroup.make({ ...options, addresses }).pipe(Effect.provideContext(context)),
    ).pipe(
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
    self: server.self,
    submit: (submission: ServerGroup.Submission<Req>) =>
      runtime.runPromise(server.submit(submission)),
    read: () => runtime.runPromise(server.read),
    status: () => runtime.runPromise(server.status),
    explainDelays: () => runtime.runPromise(server.explainDelays()),
    close: () => runtime.runPromise(Scope.close(scope, Exit.void)),
  })
}
