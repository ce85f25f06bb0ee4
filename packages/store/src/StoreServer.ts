/**
 * Serves a `Store` over `@understudy/transport`, so that several processes on one machine
 * share one store with nothing else installed. Normally it serves a `MemoryStore`; any
 * backend works. Clients use `RemoteStore`.
 *
 * Each connection is handled on its own: requests are pipelined (many in flight, answered
 * by id, possibly out of order), watches stream their events until cancelled or until the
 * connection closes. Leases do not belong to connections (as in etcd): a client that loses
 * its connection keeps its leases for their TTL, and keeps them alive explicitly.
 *
 * Bad input ends only the connection that sent it: an undecodable or schema-invalid frame
 * closes it with a `ProtocolError` (the transport does that); a well-formed request with
 * invalid contents (a key over the limit, a negative revision) gets `InvalidRequest`.
 *
 * @since 0.1.0
 */
import {
  Address,
  type Connection,
  type Options,
  Transport,
  type TransportError,
} from "@understudy/transport"
import { Cause, Effect, Fiber, Metric, type Redacted, type Scope, Semaphore, Stream } from "effect"
import * as Protocol from "./internal/protocol.ts"
import * as Validate from "./internal/validate.ts"
import * as Metrics from "./Metrics.ts"
import { type KeyValue, Store, type WatchEvent } from "./Store.ts"
import { InvalidRequest, type StoreError, Unavailable } from "./StoreError.ts"

/** @since 0.1.0 @category models */
export interface StoreServerOptions {
  /** Clients must prove knowledge of this key (the transport's HMAC handshake). */
  readonly clusterKey?: Redacted.Redacted<Uint8Array | string>
  /** Largest frame accepted or sent. Default 2 MiB (a value at the limit, in base64). */
  readonly frameBytesMax?: number
  /**
   * Requests of one connection being executed at once; past it the server stops reading
   * that connection until one finishes (the client's sends then suspend). Default 1,024.
   */
  readonly inFlightPerConnectionMax?: number
  /** Watches open on one connection; past it a `Watch` fails with `InvalidRequest`. Default 256. */
  readonly watchesPerConnectionMax?: number
  /** Transport keep-alive; default the transport's (ping 1 s, time-out 5 s). */
  readonly keepAlive?: Options.ConnectionOptions<unknown>["keepAlive"]
}

/** @since 0.1.0 @category models */
export interface StoreServer {
  /** The bound address, with the actual port when port 0 was asked for. */
  readonly address: Address.StreamAddress
  /** Connections open now. */
  readonly connectionCount: Effect.Effect<number>
  /**
   * Closes every open connection; the listener and the store stay. Clients reconnect and
   * resume their watches. For operators shedding clients and for reconnection tests.
   * Returns how many were closed.
   */
  readonly dropConnections: Effect.Effect<number>
}

/**
 * A range prefix that matches no key a program would write: ranging over it is the
 * cheapest way the `Store` interface offers to read the current revision.
 */
const revisionProbePrefix = "\u0000understudy/revision-probe\u0000"

type Send = (message: Protocol.Response) => Effect.Effect<void>

/** Runs one operation after the same checks every backend makes. */
const execute = (
  store: Store["Service"],
  op: Exclude<Protocol.Operation, { readonly _tag: "Watch" | "CancelWatch" }>,
  id: number,
  send: Send,
): Effect.Effect<Protocol.Result, StoreError> => {
  switch (op._tag) {
    case "Get":
      return Validate.key(op.key).pipe(
        Effect.andThen(store.get(op.key)),
        Effect.map((kv) =>
          kv._tag === "Some"
            ? { _tag: "Value" as const, kv: Protocol.toWireKeyValue(kv.value) }
            : { _tag: "Value" as const },
        ),
      )
    case "Range":
      return Validate.prefix(op.prefix).pipe(
        Effect.andThen(store.range(op.prefix)),
        Effect.flatMap((range) => sendRange(id, range.revision, range.items, send)),
      )
    case "Put":
      return Effect.gen(function* () {
        yield* Validate.key(op.key)
        yield* Validate.value(op.value)
        if (op.ifModRevision !== undefined) {
          yield* Validate.revision("ifModRevision", op.ifModRevision)
        }
        const result = yield* store.put(op.key, op.value, {
          ...(op.lease === undefined ? {} : { lease: op.lease }),
          ...(op.ifModRevision === undefined ? {} : { ifModRevision: op.ifModRevision }),
        })
        return { _tag: "Written" as const, revision: result.revision }
      })
    case "Delete":
      return Effect.gen(function* () {
        yield* Validate.key(op.key)
        if (op.ifModRevision !== undefined) {
          yield* Validate.revision("ifModRevision", op.ifModRevision)
        }
        const result = yield* store.delete(
          op.key,
          op.ifModRevision === undefined ? {} : { ifModRevision: op.ifModRevision },
        )
        return { _tag: "Deleted" as const, revision: result.revision, deleted: result.deleted }
      })
    case "GrantLease":
      return Validate.ttl(op.ttlMs).pipe(
        Effect.andThen(store.grantLease(op.ttlMs)),
        Effect.map((lease) => ({ _tag: "Lease" as const, lease: lease.id, ttlMs: lease.ttlMs })),
      )
    case "KeepAlive":
      return Effect.as(store.keepAlive(op.lease), { _tag: "Done" as const })
    case "RevokeLease":
      return Effect.as(store.revokeLease(op.lease), { _tag: "Done" as const })
    case "Compact":
      return Validate.revision("revision", op.revision).pipe(
        Effect.andThen(store.compact(op.revision)),
        Effect.as({ _tag: "Done" as const }),
      )
  }
}

/** Range items in pages that fit a frame: `Partial`s, then the last page as the result. */
const sendRange = (
  id: number,
  revision: number,
  items: ReadonlyArray<KeyValue>,
  send: Send,
): Effect.Effect<Protocol.Result> =>
  Effect.gen(function* () {
    let page: Array<Protocol.WireKeyValue> = []
    let bytes = 0
    for (const kv of items) {
      const size = Protocol.kvWireBytes(kv)
      if (page.length > 0 && bytes + size > Protocol.batchBytesTarget) {
        yield* send({ _tag: "Partial", id, items: page })
        page = []
        bytes = 0
      }
      page.push(Protocol.toWireKeyValue(kv))
      bytes += size
    }
    return { _tag: "Range" as const, revision, items: page }
  })

/** One backend chunk of events as messages that fit a frame; only the last is `complete`. */
const sendEvents = (id: number, events: ReadonlyArray<WatchEvent>, send: Send) =>
  Effect.gen(function* () {
    let batch: Array<Protocol.WireEvent> = []
    let bytes = 0
    for (const event of events) {
      const size = Protocol.eventWireBytes(event)
      if (batch.length > 0 && bytes + size > Protocol.batchBytesTarget) {
        yield* send({ _tag: "Events", id, events: batch, complete: false })
        batch = []
        bytes = 0
      }
      batch.push(Protocol.toWireEvent(event))
      bytes += size
    }
    if (batch.length > 0) yield* send({ _tag: "Events", id, events: batch, complete: true })
  })

const unexpected = (cause: Cause.Cause<unknown>) =>
  new Unavailable({ detail: `store server error: ${Cause.pretty(cause).split("\n")[0]}` })

/**
 * Listens on `address` and serves the `Store` in context until the scope closes.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { Address, NodeTransport } from "@understudy/transport"
 * import { MemoryStore, StoreServer } from "@understudy/store"
 *
 * const program = Effect.gen(function* () {
 *   const server = yield* StoreServer.serve(Address.unix("/run/app/store.sock"))
 *   yield* Effect.log(`store on ${Address.format(server.address)}`)
 *   yield* Effect.never
 * }).pipe(Effect.scoped, Effect.provide(Layer.merge(MemoryStore.layer, NodeTransport.layer)))
 * ```
 * @since 0.1.0
 * @category constructors
 */
export const serve = (
  address: Address.StreamAddress,
  options: StoreServerOptions = {},
): Effect.Effect<
  StoreServer,
  TransportError.ListenError,
  Transport.Transport | Store | Scope.Scope
> =>
  Effect.gen(function* () {
    const transport = yield* Transport.Transport
    const store = yield* Store
    const inFlightMax = options.inFlightPerConnectionMax ?? 1_024
    const watchesMax = options.watchesPerConnectionMax ?? 256
    const listener = yield* transport.listen(address, {
      codec: Protocol.serverCodec,
      frameBytesMax: options.frameBytesMax ?? Protocol.frameBytesMaxDefault,
      ...(options.clusterKey === undefined ? {} : { clusterKey: options.clusterKey }),
      ...(options.keepAlive === undefined ? {} : { keepAlive: options.keepAlive }),
    })
    const open = new Set<Connection.Connection<Protocol.Message>>()
    const serverScope = yield* Effect.scope

    const handle = (conn: Connection.Connection<Protocol.Message>) =>
      Effect.gen(function* () {
        const scope = yield* Effect.scope
        const permits = yield* Semaphore.make(inFlightMax)
        /** Open watches by id; the token tells a finished watch from a newer one. */
        const watches = new Map<number, { readonly fiber: Fiber.Fiber<void> }>()
        // A send fails only when the connection is closed, and then nobody waits for it.
        const send: Send = (message) => Effect.ignore(conn.send(message))

        const watch = (
          id: number,
          op: Extract<Protocol.Operation, { readonly _tag: "Watch" }>,
        ): Effect.Effect<void> =>
          Effect.gen(function* () {
            yield* Validate.prefix(op.prefix)
            if (op.fromRevision !== undefined) {
              yield* Validate.revision("fromRevision", op.fromRevision)
            }
            const fromRevision =
              op.fromRevision ?? (yield* store.range(revisionProbePrefix)).revision + 1
            yield* send({ _tag: "Watching", id, fromRevision })
            yield* Stream.runForEachArray(store.watch(op.prefix, { fromRevision }), (events) =>
              sendEvents(id, events, send),
            )
            return yield* new Unavailable({ detail: "the store ended the watch" })
          }).pipe(
            Effect.catchCause((cause) =>
              Cause.hasInterruptsOnly(cause)
                ? Effect.interrupt
                : send({
                    _tag: "WatchFailed",
                    id,
                    error: Cause.findErrorOption(cause).pipe((error) =>
                      error._tag === "Some" ? error.value : unexpected(cause),
                    ),
                  }),
            ),
          )

        const dispatch = (request: Protocol.Request): Effect.Effect<void> => {
          const { id, op } = request
          switch (op._tag) {
            case "CancelWatch": {
              const entry = watches.get(op.watch)
              if (entry === undefined) return Effect.void
              watches.delete(op.watch)
              return Fiber.interrupt(entry.fiber)
            }
            case "Watch": {
              if (watches.has(id)) {
                const error = new InvalidRequest({ detail: `watch id ${id} is in use` })
                return send({ _tag: "WatchFailed", id, error })
              }
              if (watches.size >= watchesMax) {
                const error = new InvalidRequest({
                  detail: `more than ${watchesMax} watches on one connection`,
                })
                return send({ _tag: "WatchFailed", id, error })
              }
              return Effect.gen(function* () {
                const fiber = yield* Effect.forkIn(watch(id, op), scope, { startImmediately: true })
                const entry = { fiber }
                watches.set(id, entry)
                fiber.addObserver(() => {
                  if (watches.get(id) === entry) watches.delete(id)
                })
              })
            }
            default:
              return Effect.gen(function* () {
                yield* Semaphore.take(permits, 1)
                yield* Effect.forkIn(
                  execute(store, op, id, send).pipe(
                    Effect.matchCauseEffect({
                      onSuccess: (result) => send({ _tag: "Ok", id, result }),
                      onFailure: (cause) =>
                        Cause.hasInterruptsOnly(cause)
                          ? Effect.void
                          : send({
                              _tag: "Failed",
                              id,
                              error: Cause.findErrorOption(cause).pipe((error) =>
                                error._tag === "Some" ? error.value : unexpected(cause),
                              ),
                            }),
                    }),
                    Effect.ensuring(Semaphore.release(permits, 1)),
                  ),
                  scope,
                  { startImmediately: true },
                )
              })
          }
        }

        yield* Stream.runForEachArray(conn.messages, (messages) =>
          Effect.forEach(
            messages,
            (message) => (message._tag === "Request" ? dispatch(message) : conn.close),
            { discard: true },
          ),
        )
        const reason = yield* conn.closed
        yield* Effect.logDebug("store client connection closed").pipe(
          Effect.annotateLogs({ connection: conn.id, reason: reason._tag }),
        )
      }).pipe(
        // Closing the scope interrupts what the connection still runs: its watches too.
        Effect.scoped,
        Effect.ensuring(
          Effect.andThen(
            Effect.sync(() => open.delete(conn)),
            Metric.modify(Metrics.serverClients, -1),
          ),
        ),
      )

    // Every line about a client's connection names this server (its address).
    yield* Stream.runForEach(listener.connections, (conn) =>
      Effect.sync(() => open.add(conn)).pipe(
        Effect.andThen(Metric.modify(Metrics.serverClients, 1)),
        Effect.andThen(Effect.forkIn(handle(conn), serverScope)),
      ),
    ).pipe(
      Effect.annotateLogs({ storeServer: Address.format(listener.address) }),
      Effect.forkScoped,
    )

    yield* Effect.logDebug("store server listening").pipe(
      Effect.annotateLogs({ address: Address.format(listener.address) }),
    )

    return {
      address: listener.address,
      connectionCount: Effect.sync(() => open.size),
      dropConnections: Effect.suspend(() => {
        const all = [...open]
        return Effect.as(
          Effect.forEach(all, (conn) => conn.close, { concurrency: "unbounded", discard: true }),
          all.length,
        )
      }),
    } satisfies StoreServer
  })
