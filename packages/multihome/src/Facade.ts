/**
 * A Promise / EventEmitter API over {@link Endpoint} on real UDP (`NodeDatagram`), for code
 * that does not use Effect. Streams become events, pumped from the moment the first
 * listener is added (so nothing is emitted before anyone listens; until then it waits in
 * the association's bounded queues).
 *
 * Endpoint events: `association` (an accepted {@link SctpAssociation}). Association events:
 * `message` ({@link Endpoint.Message}), `event` (every `Association.Event`), the event
 * under its own tag too (`PathChange`, `CommLost`, ...), and `close` (its
 * {@link Endpoint.CloseReason}) once, last.
 *
 * @example
 * ```ts
 * const server = await Facade.open({ host: "127.0.0.2", port: 5000, listen: true })
 * server.on("association", (association) =>
 *   association.on("message", (m) => association.send(m.stream, m.ppid, m.data)))
 * const client = await Facade.open({ host: "127.0.0.3", port: 5001 })
 * const association = await client.connect({ host: "127.0.0.2", udpPort: server.address.port, port: 5000 })
 * await association.send(0, 51, new TextEncoder().encode("hello"))
 * ```
 * @since 0.1.0
 */
import { EventEmitter } from "node:events"
import { Address, NodeDatagram } from "@understudy/transport"
import { Effect, Exit, Scope, Stream } from "effect"
import type * as Association from "./Association.ts"
import * as Endpoint from "./Endpoint.ts"

/**
 * @since 0.1.0
 * @category models
 */
export interface OpenOptions extends Omit<Endpoint.Options, "bind" | "hooks" | "intercept"> {
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
  /** Rejects with a `ConnectError`. */
  connect(options: Endpoint.ConnectOptions): Promise<SctpAssociation>
  stats(): Promise<Endpoint.Stats>
  close(): Promise<void>
}

const wrapAssociation = (handle: Endpoint.AssociationHandle): SctpAssociation => {
  const emitter = new EventEmitter()
  let messagesPumped = false
  let eventsPumped = false
  emitter.on("newListener", (name: string | symbol) => {
    if (name === "newListener") return
    if (name === "message") {
      if (messagesPumped) return
      messagesPumped = true
      Effect.runFork(
        Stream.runForEach(handle.messages, (message) =>
          Effect.sync(() => emitter.emit("message", message)),
        ),
      )
      return
    }
    if (eventsPumped) return
    eventsPumped = true
    Effect.runFork(
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
    ) => Effect.runPromise(handle.send(stream, ppid, data, options)),
    shutdown: () => Effect.runPromise(handle.shutdown),
    abort: (reason?: string) => Effect.runPromise(handle.abort(reason)),
    status: () => Effect.runPromise(handle.status),
    setPrimary: (host: string) => Effect.runPromise(handle.setPrimary(host)),
    closed: Effect.runPromise(handle.closed),
  })
}

/**
 * Binds `host` (UDP `encapsulationPort`) and starts an SCTP endpoint on SCTP port `port`.
 * Rejects with the transport's `ListenError`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const open = async (options: OpenOptions): Promise<SctpEndpoint> => {
  const { host, encapsulationPort, ...rest } = options
  const scope = Effect.runSync(Scope.make())
  const endpoint = await Effect.runPromise(
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
    Effect.runFork(
      Stream.runForEach(endpoint.accept, (handle) =>
        Effect.sync(() => emitter.emit("association", wrapAssociation(handle))),
      ),
    )
  })
  return Object.assign(emitter, {
    address: endpoint.address,
    port: endpoint.port,
    connect: (connectOptions: Endpoint.ConnectOptions) =>
      Effect.runPromise(endpoint.connect(connectOptions).pipe(Effect.map(wrapAssociation))),
    stats: () => Effect.runPromise(endpoint.stats),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void)),
  })
}
