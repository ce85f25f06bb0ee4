/**
 * The prepared failover, both sides of it. The supervisor designates a successor (its oldest
 * member), which opens a standby listener next to the election address; every other
 * subordinate connects to it ahead of time and pre-registers there. When the supervisor
 * dies, the successor binds the election address first thing and welcomes every
 * pre-registered member over its standby connection: no race for the bind, no new
 * connection, no handshake and no registration round trip.
 *
 * This module owns the standby listener (as successor) and the link to the successor (as any
 * other subordinate); the election driver decides when to open, follow and take over.
 *
 * @since 0.1.0
 */
import { Address, type Connection, type Options, type Transport } from "@understudy/transport"
import { Deferred, Effect, Exit, Result, Scope, Stream } from "effect"
import type { Message, Successor } from "./internal/protocol.ts"

type Register = Extract<Message, { _tag: "Register" }>
type Welcome = Extract<Message, { _tag: "Welcome" }>
type Refusal = Extract<Message, { _tag: "Refused" }>["reason"]

/**
 * Standby connections a successor holds for its takeover; past this, it closes new ones and
 * their peers elect the usual way.
 */
const standbyConnectionsMax = 4096

/**
 * As the designated successor: the standby listener and the connections it accepted.
 *
 * @since 0.1.0
 * @category models
 */
export interface Listening {
  readonly scope: Scope.Closeable
  readonly address: string
  /**
   * Open connections standing by, not yet served by this instance as supervisor, with their
   * pre-registration once it came.
   */
  readonly waiting: Map<Connection.Connection<Message>, Register | undefined>
  /** Set once this instance supervises: admits a pre-registered member. */
  serve:
    | ((
        connection: Connection.Connection<Message>,
        preRegistration: Register,
      ) => Effect.Effect<void>)
    | undefined
}

/**
 * As any other subordinate: the connection standing by at the successor.
 *
 * @since 0.1.0
 * @category models
 */
export interface Link {
  /** The successor it is for: its instance id and address. */
  readonly target: string
  readonly scope: Scope.Closeable
  /** The connection, once made; it is being made from the moment the successor is known. */
  connection: Connection.Connection<Message> | undefined
  /**
   * The successor's Welcome, sent once it has bound the election address; undefined if the
   * connection could not be made or closed first.
   */
  readonly takeover: Deferred.Deferred<Welcome | undefined>
}

/**
 * What the standby needs from the election: its transport, scope and identity, and how a
 * registration is judged and made.
 *
 * @since 0.1.0
 * @category models
 */
export interface Env {
  readonly transport: Transport.Transport["Service"]
  readonly connectionOptions: Options.ConnectionOptions<Message>
  /** The election's scope: the listener and the link each live in a scope forked from it. */
  readonly scope: Scope.Scope
  readonly instanceId: string
  /** The election address, next to which the standby listens. */
  readonly address: Address.StreamAddress
  readonly uniqueId: () => string
  /** Why a pre-registration can not be accepted (a duplicate id aside), or undefined. */
  readonly refusalOf: (message: Register) => Refusal | undefined
  readonly refuse: (
    connection: Connection.Connection<Message>,
    reason: Refusal,
  ) => Effect.Effect<void>
  /** This instance's registration as of now, sent as its pre-registration. */
  readonly registerMessage: () => Register
}

/**
 * One instance's standby: its own listener while it is the designated successor, and its
 * link to another successor.
 *
 * @since 0.1.0
 * @category models
 */
export interface Standby {
  /** The standby listener, while this instance is the designated successor. */
  readonly listening: () => Listening | undefined
  /** The link to the successor, while one is named and this instance is not it. */
  readonly link: () => Link | undefined
  /** Takes the link for a takeover: spent either way, a later successor gets a new one. */
  readonly takeLink: () => Link | undefined
  /** Opens the standby listener (once); its address, or undefined if it can not listen. */
  readonly open: Effect.Effect<string | undefined>
  /** Closes the standby listener and its connections: their peers elect the usual way. */
  readonly close: Effect.Effect<void>
  /** Connects to the successor ahead of a failover; drops a link to a previous one. */
  readonly follow: (successor: Successor | undefined) => Effect.Effect<void>
}

/**
 * The standby of one election, with nothing open yet.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (env: Env): Standby => {
  let standby: Listening | undefined
  let standbyLink: Link | undefined

  /**
   * Next to the election address, on a port (or abstract name) of its own; none for a
   * Unix socket path, whose file a crash would leave behind.
   */
  const standbyAddress = (): Address.StreamAddress | undefined =>
    env.address._tag === "Tcp"
      ? Address.tcp(env.address.host, 0)
      : env.address.abstract
        ? Address.abstract(`${env.address.path}.standby.${env.uniqueId()}`)
        : undefined

  /** Opens the standby listener (once); its address, or undefined if it can not listen. */
  const openStandby: Effect.Effect<string | undefined> = Effect.gen(function* () {
    if (standby !== undefined) return standby.address
    const at = standbyAddress()
    if (at === undefined) return undefined
    const scope = yield* Scope.fork(env.scope)
    const listened = yield* Effect.result(
      Scope.provide(env.transport.listen(at, env.connectionOptions), scope),
    )
    if (Result.isFailure(listened)) {
      yield* Scope.close(scope, Exit.void)
      return undefined
    }
    const opened: Listening = {
      scope,
      address: Address.format(listened.success.address),
      waiting: new Map(),
      serve: undefined,
    }
    yield* Effect.forkIn(
      Stream.runForEach(listened.success.connections, (connection) =>
        Effect.gen(function* () {
          if (opened.waiting.size >= standbyConnectionsMax) return yield* connection.close
          opened.waiting.set(connection, undefined)
          yield* Effect.forkIn(
            Effect.andThen(
              connection.closed,
              Effect.sync(() => opened.waiting.delete(connection)),
            ),
            scope,
          )
          yield* Effect.forkIn(preRegister(opened, connection), scope)
        }),
      ),
      scope,
    )
    standby = opened
    return opened.address
  })

  /**
   * Reads a standby connection's first message, its pre-registration: kept for the
   * takeover, or admitted at once if this instance already supervises. Nothing else is read
   * here, so whatever follows is left to the supervisor that serves the connection.
   */
  const preRegister = (opened: Listening, connection: Connection.Connection<Message>) =>
    Effect.gen(function* () {
      let first: Message | undefined
      yield* Stream.runForEach(Stream.take(connection.messages, 1), (message) =>
        Effect.sync(() => {
          first = message
        }),
      )
      if (first === undefined || !opened.waiting.has(connection)) return
      if (first._tag !== "Register") return yield* connection.close
      const refusal = env.refusalOf(first)
      if (refusal !== undefined) return yield* env.refuse(connection, refusal)
      if (opened.serve === undefined) {
        opened.waiting.set(connection, first)
        return
      }
      opened.waiting.delete(connection)
      yield* opened.serve(connection, first)
    })

  /** Closes the standby listener and its connections: their peers elect the usual way. */
  const closeStandby = Effect.suspend(() => {
    const current = standby
    standby = undefined
    return current === undefined ? Effect.void : Scope.close(current.scope, Exit.void)
  })

  /** Connects to the successor ahead of a failover; drops a link to a previous one. */
  const followSuccessor = (successor: Successor | undefined) =>
    Effect.suspend(() => {
      const target =
        successor === undefined || successor.instanceId === env.instanceId
          ? undefined
          : `${successor.instanceId} ${successor.address}`
      // Another successor named: this instance no longer is one. (None named: the
      // supervisor may still be waiting for this instance's StandbyAt.)
      const closeOwn =
        successor !== undefined && successor.instanceId !== env.instanceId
          ? closeStandby
          : Effect.void
      if (target === standbyLink?.target) return closeOwn
      const previous = standbyLink
      standbyLink = undefined
      const dropPrevious =
        previous === undefined ? Effect.void : Scope.close(previous.scope, Exit.void)
      const successorAddress =
        successor === undefined ? undefined : Address.parseStream(successor.address)
      if (
        target === undefined ||
        successorAddress === undefined ||
        successorAddress instanceof Address.InvalidAddress
      ) {
        return Effect.andThen(closeOwn, dropPrevious)
      }
      return Effect.andThen(
        Effect.andThen(closeOwn, dropPrevious),
        Effect.gen(function* () {
          // In place at once, while the connection is being made: an instance that loses
          // its supervisor meanwhile waits for the successor rather than racing it.
          const link: Link = {
            target,
            scope: yield* Scope.fork(env.scope),
            connection: undefined,
            takeover: yield* Deferred.make<Welcome | undefined>(),
          }
          standbyLink = link
          yield* Effect.forkIn(linkTo(link, successorAddress), link.scope)
        }),
      )
    })

  const linkTo = (link: Link, successorAddress: Address.StreamAddress) =>
    Effect.gen(function* () {
      const connected = yield* Effect.result(
        Scope.provide(env.transport.connect(successorAddress, env.connectionOptions), link.scope),
      )
      if (Result.isSuccess(connected)) {
        const connection = connected.success
        link.connection = connection
        // Pre-registered now, so that the takeover needs no registration round trip.
        yield* Effect.ignore(connection.send(env.registerMessage()))
        // The successor answers only at its takeover, with a Welcome (or refuses); after
        // it, the connection is read by the subordinate that it welcomed. The stream also
        // ends if it closes.
        yield* Stream.runForEach(
          Stream.takeUntil(connection.messages, (message) => message._tag === "Welcome"),
          (message) =>
            message._tag === "Welcome"
              ? Deferred.succeed(link.takeover, message)
              : connection.close,
        )
      }
      const failedFirst = yield* Deferred.succeed(link.takeover, undefined)
      if (failedFirst && standbyLink === link) standbyLink = undefined
    })

  return {
    listening: () => standby,
    link: () => standbyLink,
    takeLink: () => {
      const link = standbyLink
      standbyLink = undefined
      return link
    },
    open: openStandby,
    close: closeStandby,
    follow: followSuccessor,
  }
}
