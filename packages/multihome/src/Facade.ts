/**
 * A Promise / EventEmitter API over {@link Endpoint} on real UDP (`NodeDatagram`), for code
 * that does not use Effect: {@link createEndpoint}. Streams become events, pumped from the
 * moment the first listener is added (so nothing is emitted before anyone listens; until
 * then it waits in the association's bounded queues). Every effect runs with the caller's
 * `logger` and `layer` (a tracer, a metrics exporter; see `Observability.FacadeOptions`):
 * the endpoint logs each association it opens or accepts and how each one closed, and
 * `connect` is the span `multihome.connect`.
 *
 * Endpoint events: `association` (an accepted {@link SctpAssociation}). Association events:
 * `message` ({@link Endpoint.Message}), `event` (every `Association.Event`), the event
 * under its own tag too (`PathChange`, `CommLost`, ...), and `close` (its
 * {@link Endpoint.CloseReason}) once, last.
 *
 * @example
 * ```ts
 * import { createEndpoint } from "@understudy/multihome"
 *
 * const server = await createEndpoint({ host: "127.0.0.2", port: 5000, listen: true })
 * server.on("association", (association) =>
 *   association.on("message", (m) => association.send(m.stream, m.ppid, m.data)))
 * const client = await createEndpoint({
 *   host: "127.0.0.3",
 *   port: 5001,
 *   logger: (entry) => console.log(entry.level, entry.message, entry.annotations),
 * })
 * const association = await client.connect({ host: "127.0.0.2", udpPort: server.address.port, port: 5000 })
 * await association.send(0, 51, new TextEncoder().encode("hello"))
 * ```
 * @since 0.1.0
 */
import { EventEmitter } from "node:events"
import { Address, NodeDatagram, Observability } from "@understudy/transport"
import { Effect, Exit, Scope, Stream } from "effect"
import type * as Association from "./Association.ts"
import * as Endpoint from "./Endpoint.ts"

/**
 * @since 0.1.0
 * @category models
 */
export interface CreateEndpointOptions
  extends Omit<Endpoint.Options, "bind" | "hooks" | "intercept">,
    Observability.FacadeOptions {
  /** The local IP address to bind (e.g. 127.0.0.2). */
  readonly host: string
  /** The local UDP encapsulation port; default 0 (the OS picks one). */
  readonly encapsulationPort?: number
}

/**
 * One association. Rejections are the Effect API's typed errors (`AssociationError`).
 *
 * @since 0.1.0
 * @category models
 */
export interface SctpAssociation extends EventEmitter {
  readonly id: number
  readonly peer: Endpoint.AssociationHandle["peer"]
  send(
    stream: number,
    ppid: number,
    data: Uint8Array,
    options?: { readonly unordered?: boolean },
  ): Promise<void>
  /** Graceful shutdown; resolves at SHUTDOWN COMPLETE. */
  shutdown(): Promise<void>
  abort(reason?: string): Promise<void>
  status(): Promise<Association.Status>
  /** Makes `host` the primary path; rejects with `AssociationError` (`Rejected`) if unknown. */
  setPrimary(host: string): Promise<void>
  /** Resolves when the association is gone. */
  readonly closed: Promise<Endpoint.CloseReason>
}

/**
 * A bound endpoint. `close` aborts its associations and unbinds.
 *
 * @since 0.1.0
 * @category models
 */
export interface SctpEndpoint extends EventEmitter {
  readonly address: Address.Udp
  readonly port: number
  /** Rejects with an `AssociationConnectError`. */
  connect(options: Endpoint.ConnectOptions): Promise<SctpAssociation>
  stats(): Promise<Endpoint.Stats>
  close(): Promise<void>
}

const wrapAssociation = (
  runtime: Observability.FacadeRuntime,
  handle: Endpoint.AssociationHandle,
  how: "opened" | "accepted",
): SctpAssociation => {
  const annotations = {
    association: handle.id,
    peer: `${handle.peer.host}:${handle.peer.udpPort}/${handle.peer.port}`,
  }
  // Logged whether or not anyone listens for `close`: how an association ended is what an
  // operator looks for first.
  runtime.runFork(
    Effect.logInfo(`multihome: association ${how}`).pipe(
      Effect.andThen(handle.closed),
      Effect.tap((reason) =>
        reason._tag === "ShutdownComplete" || reason._tag === "EndpointClosed"
          ? Effect.logInfo(`multihome: association closed (${reason._tag})`)
          : Effect.logWarning(`multihome: association closed (${reason._tag}: ${reason.reason})`),
      ),
      Effect.annotateLogs(annotations),
    ),
  )
  const emitter = new EventEmitter()
  let messagesPumped = false
  let eventsPumped = false
  emitter.on("newListener", (name: string | symbol) => {
    if (name === "newListener") return
    if (name === "message") {
      if (messagesPumped) return
      messagesPumped = true
      runtime.runFork(
        Stream.runForEach(handle.messages, (message) =>
          Effect.sync(() => emitter.emit("message", message)),
        ),
      )
      return
    }
    if (eventsPumped) return
    eventsPumped = true
    runtime.runFork(
      Stream.runForEach(handle.events, (event) =>
        Effect.sync(() => {
          emitter.emit("event", event)
          emitter.emit(event._tag, event)
        }),
      ).pipe(
        Effect.andThen(handle.closed),
        Effect.tap((reason) => Effect.sync(() => emitter.emit("close", reason))),
      ),
    )
  })
  return Object.assign(emitter, {
    id: handle.id,
    peer: handle.peer,
    send: (
      stream: number,
      ppid: number,
      data: Uint8Array,
      options?: { readonly unordered?: boolean },
    ) => runtime.runPromise(handle.send(stream, ppid, data, options)),
    shutdown: () => runtime.runPromise(handle.shutdown),
    abort: (reason?: string) => runtime.runPromise(handle.abort(reason)),
    status: () => runtime.runPromise(handle.status),
    setPrimary: (host: string) => runtime.runPromise(handle.setPrimary(host)),
    closed: runtime.runPromise(handle.closed),
  })
}

/**
 * Binds `host` (UDP `encapsulationPort`) and starts an SCTP endpoint on SCTP port `port`,
 * running with the caller's `logger` and `layer`. Rejects with the transport's
 * `ListenError`, or `EndpointConfigError` (naming the option) for a bad `backlog`,
 * `queuedMessagesMax` or `queuedEventsMax`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createEndpoint = async (options: CreateEndpointOptions): Promise<SctpEndpoint> => {
  const { host, encapsulationPort, logger: _logger, layer: _layer, ...rest } = options
  const scope = Effect.runSync(Scope.make())
  // The caller's logger and layers (tracer, metrics), for every effect of this endpoint.
  const runtime = await Observability.facadeRuntime(options, scope).catch(async (error) => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  })
  const endpoint = await runtime.runPromise(
    Endpoint.make({ ...rest, bind: Address.udp(host, encapsulationPort ?? 0) }).pipe(
      Effect.provide(NodeDatagram.layer),
      Scope.provide(scope),
      Effect.onError(() => Scope.close(scope, Exit.void)),
    ),
  )
  const emitter = new EventEmitter()
  let acceptPumped = false
  emitter.on("newListener", (name: string | symbol) => {
    if (name !== "association" || acceptPumped) return
    acceptPumped = true
    runtime.runFork(
      Stream.runForEach(endpoint.accept, (handle) =>
        Effect.sync(() =>
          emitter.emit("association", wrapAssociation(runtime, handle, "accepted")),
        ),
      ),
    )
  })
  return Object.assign(emitter, {
    address: endpoint.address,
    port: endpoint.port,
    connect: (connectOptions: Endpoint.ConnectOptions) =>
      runtime.runPromise(
        endpoint.connect(connectOptions).pipe(
          Effect.map((handle) => wrapAssociation(runtime, handle, "opened")),
          Effect.withSpan("multihome.connect", {
            attributes: {
              "multihome.peer": `${connectOptions.host}:${connectOptions.udpPort}/${connectOptions.port}`,
            },
          }),
        ),
      ),
    stats: () => runtime.runPromise(endpoint.stats),
    close: () => runtime.runPromise(Scope.close(scope, Exit.void)),
  })
}
