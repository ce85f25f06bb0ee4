/**
 * The `Store` of a `StoreServer`, reached over `@understudy/transport`: the default for
 * processes on one machine that share state with nothing else installed.
 *
 * It connects on first use and again whenever the connection drops, with a jittered
 * exponential backoff (or the `reconnect` schedule given). Every request is bounded by
 * `requestTimeout`, connecting included;
 * past it, or when the connection is lost while it is in flight, it fails with
 * `Unavailable` — never a hang. A compare-and-set that failed with `Unavailable` may have
 * taken effect: retrying it with the same expected revision is safe.
 *
 * Watches survive reconnects: each resumes on the new connection right after the last
 * revision it delivered, with no event skipped or repeated, and fails with `Compacted` if
 * that revision is gone, or with `Unavailable` when the server stays unreachable for
 * `reconnectBudget`.
 *
 * @since 0.1.0
 */
import {
  Address,
  CloseReason,
  type Connection,
  type Options,
  Transport,
} from "@understudy/transport"
import {
  Cause,
  Deferred,
  Duration,
  Effect,
  Exit,
  Layer,
  Option,
  Queue,
  type Redacted,
  Schedule,
  Schema,
  Scope,
  Stream,
} from "effect"
import * as Config from "./internal/config.ts"
import * as Protocol from "./internal/protocol.ts"
import * as Validate from "./internal/validate.ts"
import * as Metrics from "./Metrics.ts"
import { type DeleteOptions, type PutOptions, Store, type WatchEvent } from "./Store.ts"
import {
  type Compacted,
  type InvalidRequest,
  type StoreConfigError,
  type StoreError,
  Unavailable,
} from "./StoreError.ts"

/** @since 0.1.0 @category models */
export interface RemoteStoreOptions {
  /** Where the `StoreServer` listens. */
  readonly address: Address.StreamAddress
  /** The server's cluster key, if it has one. */
  readonly clusterKey?: Redacted.Redacted<Uint8Array | string>
  /** Time allowed for one request, connecting included. Default 5 seconds. */
  readonly requestTimeout?: Duration.Input
  /**
   * How long a watch keeps trying to get back to the server after losing it before it
   * fails with `Unavailable`. Default 10 seconds.
   */
  readonly reconnectBudget?: Duration.Input
  /**
   * The delays between connection attempts (a request's, or a watch's after losing the
   * server); the request time-out and `reconnectBudget` bound it. Default `reconnectDefault`:
   * from 25 ms, doubling with jitter, up to 1 s.
   */
  readonly reconnect?: Schedule.Schedule<unknown>
  /** Largest frame accepted or sent. Default 2 MiB, like the server. */
  readonly frameBytesMax?: number
  /** Transport keep-alive; default the transport's (ping 1 s, time-out 5 s). */
  readonly keepAlive?: Options.ConnectionOptions<unknown>["keepAlive"]
  /**
   * Events a watch holds for a reader that has not taken them yet. Past it the watch ends
   * with `Unavailable` once the reader has taken what it holds (the reader resumes with
   * `fromRevision`), so a slow reader cannot make the client buffer without bound.
   * Default 10,000.
   */
  readonly watchQueuedEventsMax?: number
}

/** How a watch hears from its subscription on one connection. */
interface Subscriber {
  readonly onWatching: (fromRevision: number) => void
  readonly onEvents: (events: ReadonlyArray<Protocol.WireEvent>, complete: boolean) => void
  readonly onFailed: (error: StoreError) => void
  readonly onLost: (error: Unavailable) => void
}

interface Pending {
  readonly deferred: Deferred.Deferred<Protocol.Result, StoreError>
  /** Range pages received before the final answer. */
  items: Array<Protocol.WireKeyValue> | undefined
}

interface Session {
  readonly connection: Connection.Connection<Protocol.Message>
  readonly scope: Scope.Closeable
  alive: boolean
  readonly pending: Map<number, Pending>
  readonly subscribers: Map<number, Subscriber>
}

type Operation = Protocol.Operation
type Result = Protocol.Result

/**
 * The default delays between connection attempts: from 25 ms, doubling, at most 1 s, each
 * jittered so clients that lost one server do not all come back at once.
 *
 * @since 0.1.0
 * @category scheduling
 */
export const reconnectDefault: Schedule.Schedule<unknown> = Schedule.min([
  Schedule.exponential(Duration.millis(25)),
  Schedule.spaced(Duration.seconds(1)),
]).pipe(Schedule.jittered)

/** How long a cancelled watch waits to queue its cancel message on a full connection. */
const cancelSendMs = 1_000

/**
 * Builds a remote store whose connection lives in the current scope. Fails with
 * `StoreConfigError` naming an option out of range, before connecting.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: RemoteStoreOptions,
): Effect.Effect<Store["Service"], StoreConfigError, Transport.Transport | Scope.Scope> =>
  Effect.gen(function* () {
    const config = yield* Config.decode(
      "RemoteStore",
      Schema.Struct({
        requestTimeout: Config.duration,
        reconnectBudget: Config.duration,
        frameBytesMax: Config.whole,
        watchQueuedEventsMax: Config.whole,
        reconnect: Config.schedule,
      }),
      options,
    )
    const transport = yield* Transport.Transport
    const layerScope = yield* Effect.scope
    const requestTimeoutMs = Config.millis(config.requestTimeout, 5_000)
    const reconnectBudgetMs = Config.millis(config.reconnectBudget, 10_000)
    const watchQueuedEventsMax = config.watchQueuedEventsMax ?? 10_000
    const connectionOptions: Options.ConnectionOptions<Protocol.Message> = {
      codec: Protocol.clientCodec,
      frameBytesMax: config.frameBytesMax ?? Protocol.frameBytesMaxDefault,
      // A connection attempt never outlives the request that waits for it.
      handshakeTimeout: requestTimeoutMs,
      ...(options.clusterKey === undefined ? {} : { clusterKey: options.clusterKey }),
      ...(options.keepAlive === undefined ? {} : { keepAlive: options.keepAlive }),
    }
    /** Callers bound it by time. */
    const backoff = options.reconnect ?? reconnectDefault

    let session: Session | undefined
    let connecting: Deferred.Deferred<Session, Unavailable> | undefined
    let nextId = 1

    const lose = (s: Session, detail: string) =>
      Effect.gen(function* () {
        if (!s.alive) return
        s.alive = false
        if (session === s) session = undefined
        const error = new Unavailable({ detail })
        for (const pending of s.pending.values()) {
          Deferred.doneUnsafe(pending.deferred, Effect.fail(error))
        }
        s.pending.clear()
        for (const subscriber of s.subscribers.values()) subscriber.onLost(error)
        s.subscribers.clear()
        yield* Scope.close(s.scope, Exit.void)
      })

    const dispatch = (s: Session, message: Protocol.Message): void => {
      switch (message._tag) {
        case "Ok": {
          const pending = s.pending.get(message.id)
          if (pending === undefined) return
          s.pending.delete(message.id)
          const result =
            pending.items !== undefined && message.result._tag === "Range"
              ? { ...message.result, items: [...pending.items, ...message.result.items] }
              : message.result
          Deferred.doneUnsafe(pending.deferred, Effect.succeed(result))
          return
        }
        case "Partial": {
          const pending = s.pending.get(message.id)
          if (pending === undefined) return
          pending.items ??= []
          for (const item of message.items) pending.items.push(item)
          return
        }
        case "Failed": {
          const pending = s.pending.get(message.id)
          if (pending === undefined) return
          s.pending.delete(message.id)
          Deferred.doneUnsafe(pending.deferred, Effect.fail(message.error))
          return
        }
        case "Watching":
          s.subscribers.get(message.id)?.onWatching(message.fromRevision)
          return
        case "Events":
          s.subscribers.get(message.id)?.onEvents(message.events, message.complete)
          return
        case "WatchFailed": {
          const subscriber = s.subscribers.get(message.id)
          s.subscribers.delete(message.id)
          subscriber?.onFailed(message.error)
          return
        }
        case "Request":
          // The client codec decodes only responses; nothing else reaches here.
          return
      }
    }

    const open = Effect.gen(function* () {
      const scope = yield* Scope.fork(layerScope)
      const connection = yield* transport.connect(options.address, connectionOptions).pipe(
        Scope.provide(scope),
        Effect.tapError(() => Scope.close(scope, Exit.void)),
        Effect.mapError((error) => new Unavailable({ detail: error.message })),
      )
      const s: Session = {
        connection,
        scope,
        alive: true,
        pending: new Map(),
        subscribers: new Map(),
      }
      yield* Stream.runForEachArray(connection.messages, (messages) =>
        Effect.sync(() => {
          for (const message of messages) dispatch(s, message)
        }),
      ).pipe(
        Effect.andThen(connection.closed),
        Effect.flatMap((reason) =>
          Effect.andThen(
            // With the caller's annotations (its node, role), as every line of the store.
            Effect.logWarning("store: connection to the store server lost").pipe(
              Effect.annotateLogs({
                store: Address.format(options.address),
                reason: CloseReason.describe(reason),
              }),
            ),
            lose(s, `connection to the store server lost (${CloseReason.describe(reason)})`),
          ),
        ),
        Effect.forkIn(layerScope),
      )
      return s
    })

    /** The open session, or one connection attempt shared by everyone who waits for it. */
    const connectOnce: Effect.Effect<Session, Unavailable> = Effect.suspend(() => {
      if (session?.alive) return Effect.succeed(session)
      if (connecting !== undefined) return Deferred.await(connecting)
      const attempt = Deferred.makeUnsafe<Session, Unavailable>()
      connecting = attempt
      // Forked in the layer's scope: a waiter that times out does not cancel the attempt
      // for the others.
      return open.pipe(
        Effect.exit,
        Effect.flatMap((exit) =>
          Effect.sync(() => {
            connecting = undefined
            if (Exit.isSuccess(exit)) session = exit.value
            Deferred.doneUnsafe(attempt, exit)
          }),
        ),
        Effect.forkIn(layerScope),
        Effect.andThen(Deferred.await(attempt)),
      )
    })

    const connected = connectOnce.pipe(Effect.retry(backoff))

    /** Sends `op` and waits for its answer; registered atomically with the liveness check. */
    const roundTrip = (op: Operation): Effect.Effect<Result, StoreError> =>
      Effect.gen(function* () {
        const s = yield* connected
        const id = nextId++
        const deferred = Deferred.makeUnsafe<Result, StoreError>()
        if (!s.alive) return yield* new Unavailable({ detail: "connection lost" })
        s.pending.set(id, { deferred, items: undefined })
        yield* s.connection.send({ _tag: "Request", id, op }).pipe(
          Effect.mapError(
            (error) =>
              new Unavailable({
                detail:
                  error._tag === "CodecError"
                    ? `the request could not be sent: ${error.detail}`
                    : "connection lost while sending",
              }),
          ),
          Effect.tapError(() => Effect.sync(() => s.pending.delete(id))),
        )
        return yield* Deferred.await(deferred).pipe(
          Effect.ensuring(Effect.sync(() => s.pending.delete(id))),
        )
      }).pipe(
        Effect.timeoutOrElse({
          duration: Duration.millis(requestTimeoutMs),
          orElse: () =>
            Effect.fail(
              new Unavailable({ detail: `no answer from the store within ${requestTimeoutMs} ms` }),
            ),
        }),
      )

    /**
     * A request whose answer must be of the `tag` case, failing only with the errors its
     * operation declares; anything else from the server is a broken server: `Unavailable`.
     */
    const call = <T extends Result["_tag"], K extends StoreError["_tag"] = never>(
      op: Operation,
      tag: T,
      errors: ReadonlyArray<K>,
    ): Effect.Effect<
      Extract<Result, { readonly _tag: T }>,
      Extract<StoreError, { readonly _tag: K }> | Unavailable
    > =>
      roundTrip(op).pipe(
        Effect.catch((error) =>
          error._tag === "Unavailable" || (errors as ReadonlyArray<string>).includes(error._tag)
            ? Effect.fail(error as Extract<StoreError, { readonly _tag: K }> | Unavailable)
            : Effect.fail(new Unavailable({ detail: `unexpected ${error._tag} from the server` })),
        ),
        Effect.flatMap((result) =>
          result._tag === tag
            ? Effect.succeed(result as Extract<Result, { readonly _tag: T }>)
            : Effect.fail(
                new Unavailable({ detail: `unexpected ${result._tag} answer from the server` }),
              ),
        ),
      )

    const get = (key: string) =>
      Validate.key(key).pipe(
        Effect.andThen(call({ _tag: "Get", key }, "Value", ["InvalidRequest"] as const)),
        Effect.map((result) =>
          result.kv === undefined
            ? Option.none()
            : Option.some(Protocol.fromWireKeyValue(result.kv)),
        ),
      )

    const range = (prefix: string) =>
      Validate.prefix(prefix).pipe(
        Effect.andThen(call({ _tag: "Range", prefix }, "Range", ["InvalidRequest"] as const)),
        Effect.map((result) => ({
          revision: result.revision,
          items: result.items.map(Protocol.fromWireKeyValue),
        })),
      )

    const put = (key: string, value: Uint8Array, putOptions: PutOptions = {}) =>
      Effect.gen(function* () {
        // Checked here too: a value over the limit would not fit a frame.
        yield* Validate.key(key)
        yield* Validate.value(value)
        const result = yield* call(
          {
            _tag: "Put",
            key,
            value,
            ...(putOptions.lease === undefined ? {} : { lease: putOptions.lease }),
            ...(putOptions.ifModRevision === undefined
              ? {}
              : { ifModRevision: putOptions.ifModRevision }),
          },
          "Written",
          ["Conflict", "LeaseExpired", "InvalidRequest"] as const,
        )
        return { revision: result.revision }
      })

    const del = (key: string, deleteOptions: DeleteOptions = {}) =>
      Effect.gen(function* () {
        yield* Validate.key(key)
        const result = yield* call(
          {
            _tag: "Delete",
            key,
            ...(deleteOptions.ifModRevision === undefined
              ? {}
              : { ifModRevision: deleteOptions.ifModRevision }),
          },
          "Deleted",
          ["Conflict", "InvalidRequest"] as const,
        )
        return { revision: result.revision, deleted: result.deleted }
      })

    const grantLease = (ttlMs: number) =>
      call({ _tag: "GrantLease", ttlMs }, "Lease", ["InvalidRequest"] as const).pipe(
        Effect.map((result) => ({ id: result.lease, ttlMs: result.ttlMs })),
      )

    const keepAlive = (lease: string) =>
      Effect.asVoid(call({ _tag: "KeepAlive", lease }, "Done", ["LeaseExpired"] as const))

    const revokeLease = (lease: string) =>
      Effect.asVoid(call({ _tag: "RevokeLease", lease }, "Done", []))

    const compact = (revision: number) =>
      Effect.asVoid(call({ _tag: "Compact", revision }, "Done", ["InvalidRequest"] as const))

    const watch = (
      prefix: string,
      watchOptions: { readonly fromRevision?: number } = {},
    ): Stream.Stream<WatchEvent, Compacted | Unavailable | InvalidRequest> =>
      Stream.callback<WatchEvent, Compacted | Unavailable | InvalidRequest>(
        (queue) =>
          Effect.gen(function* () {
            yield* Validate.prefix(prefix)
            if (watchOptions.fromRevision !== undefined) {
              yield* Validate.revision("fromRevision", watchOptions.fromRevision)
            }
            /** Where the watch starts; for "from now", set by the server's first answer. */
            let start = watchOptions.fromRevision
            /** The revision of the last event delivered, 0 before any. */
            let lastRevision = 0
            let deliveredAtLast = 0
            /** Whether every event of `lastRevision` was delivered. */
            let lastComplete = true

            /**
             * One subscription on one connection: fails with `Unavailable` when it could not
             * be set up (retried with backoff), succeeds when its connection was lost after it
             * was set up (resubscribed at once), fails with what the server says otherwise.
             */
            const subscribe = Effect.gen(function* () {
              const s = yield* connectOnce
              const id = nextId++
              const resumeFrom =
                lastRevision === 0 ? start : lastComplete ? lastRevision + 1 : lastRevision
              let toSkip = lastRevision === 0 || lastComplete ? 0 : deliveredAtLast
              const watching = Deferred.makeUnsafe<void>()
              const outcome = Deferred.makeUnsafe<void, StoreError>()
              const subscriber: Subscriber = {
                onWatching: (fromRevision) => {
                  start ??= fromRevision
                  Deferred.doneUnsafe(watching, Effect.void)
                },
                onEvents: (events, complete) => {
                  const fresh: Array<WatchEvent> = []
                  for (const wire of events) {
                    if (wire.revision < lastRevision) continue
                    if (wire.revision === lastRevision && toSkip > 0) {
                      toSkip--
                      continue
                    }
                    if (wire.revision === lastRevision) deliveredAtLast++
                    else {
                      lastRevision = wire.revision
                      deliveredAtLast = 1
                    }
                    fresh.push(Protocol.fromWireEvent(wire))
                  }
                  lastComplete = complete
                  if (fresh.length === 0) return
                  // The queue is bounded: what it cannot take ends the watch (after the events
                  // it holds) rather than being dropped or buffered without bound.
                  const refused = Queue.offerAllUnsafe(queue, fresh)
                  if (refused.length > 0) {
                    Queue.failCauseUnsafe(
                      queue,
                      Cause.fail(
                        new Unavailable({
                          detail: `the watch's reader fell behind by more than ${watchQueuedEventsMax} events; resume from the revision of the last event read`,
                        }),
                      ),
                    )
                  }
                },
                onFailed: (error) => Deferred.doneUnsafe(outcome, Effect.fail(error)),
                onLost: () => Deferred.doneUnsafe(outcome, Effect.void),
              }
              if (!s.alive) return yield* new Unavailable({ detail: "connection lost" })
              s.subscribers.set(id, subscriber)
              const cancel = Effect.suspend(() => {
                if (!s.alive || s.subscribers.get(id) !== subscriber) return Effect.void
                s.subscribers.delete(id)
                // Queued before anything this client sends next, so the server frees the
                // watch first; bounded, so a stalled connection cannot hold up the consumer.
                return s.connection
                  .send({ _tag: "Request", id: nextId++, op: { _tag: "CancelWatch", watch: id } })
                  .pipe(Effect.timeout(Duration.millis(cancelSendMs)), Effect.ignore)
              })
              return yield* Effect.gen(function* () {
                yield* s.connection
                  .send({
                    _tag: "Request",
                    id,
                    op: {
                      _tag: "Watch",
                      prefix,
                      ...(resumeFrom === undefined ? {} : { fromRevision: resumeFrom }),
                    },
                  })
                  .pipe(
                    Effect.mapError(
                      () => new Unavailable({ detail: "connection lost while subscribing" }),
                    ),
                  )
                // Until the server confirms, a lost connection or silence is a failed attempt.
                const confirmed = yield* Effect.raceFirst(
                  Effect.as(Deferred.await(watching), true),
                  Effect.as(Deferred.await(outcome), false),
                ).pipe(
                  Effect.timeoutOrElse({
                    duration: Duration.millis(requestTimeoutMs),
                    orElse: () =>
                      Effect.fail(
                        new Unavailable({
                          detail: `no answer to a watch within ${requestTimeoutMs} ms`,
                        }),
                      ),
                  }),
                )
                if (!confirmed) {
                  return yield* new Unavailable({ detail: "connection lost while subscribing" })
                }
                yield* Deferred.await(outcome)
              }).pipe(Effect.ensuring(cancel))
            })

            const retried = subscribe.pipe(
              Effect.retry({
                schedule: backoff.pipe(
                  Schedule.upTo({ duration: Duration.millis(reconnectBudgetMs) }),
                ),
                while: (error) => error._tag === "Unavailable",
              }),
            )
            // Each loss starts a fresh retry budget; the loop runs until the stream is
            // dropped or the subscription fails for good.
            while (true) {
              yield* retried.pipe(
                Effect.mapError((error) =>
                  error._tag === "Conflict" || error._tag === "LeaseExpired"
                    ? new Unavailable({ detail: `unexpected ${error._tag} on a watch` })
                    : error,
                ),
              )
            }
          }).pipe(Effect.catchCause((cause) => Queue.failCause(queue, cause))),
        { bufferSize: watchQueuedEventsMax },
      )

    return Store.of(
      Metrics.instrument("remote", {
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
 * A remote store as a `Layer`: connects on first use.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { Address, NodeTransport } from "@understudy/transport"
 * import { RemoteStore, Store } from "@understudy/store"
 *
 * const StoreLive = RemoteStore.layer({ address: Address.unix("/run/app/store.sock") }).pipe(
 *   Layer.provide(NodeTransport.layer),
 * )
 * const program = Effect.flatMap(Store.Store, (store) => store.get("/config")).pipe(
 *   Effect.provide(StoreLive),
 * )
 * ```
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: RemoteStoreOptions,
): Layer.Layer<Store, StoreConfigError, Transport.Transport> => Layer.effect(Store, make(options))
