/**
 * Runs one instance of a `Machine` over a link to its peers and the Effect `Clock`: the
 * caller of the pure machine, as `node.go` is for etcd's raft. It runs `init`, then feeds
 * received messages, fired timers and commands into `step` one at a time, in the order they
 * were given (a command given while nothing else waits or steps is stepped at once, in its
 * caller's fiber), and performs the outputs in order: sends go over the link, timers become sleeps on `Clock` (so `TestClock`
 * drives them in tests), events go to `events` (and `onEvent`). Two kinds of link, one step
 * loop and one timer driver:
 *
 * - `run`: datagrams. It binds the node's UDP endpoint; peers are named nodes at known
 *   addresses, and every datagram is sealed with the cluster key (`Authentication`).
 * - `runConnections`: stream connections (the transport's framed connections, authenticated
 *   by whoever accepted or opened them). Peers are the connections attached to the node, each
 *   named when attached; a connection's end becomes a command.
 *
 * Everything it starts lives in the caller's `Scope`: closing it stops the node.
 *
 * Group commit: `commandAll` gives the machine several commands in one step (stepped in turn,
 * `onStep` once for them all, so a driver that persists in `onStep` writes once for the
 * group), at most `inputsPerStepMax` per step; received messages and fired timers that come
 * meanwhile are stepped between the groups, never behind the whole batch.
 *
 * Limits: the inbox holds at most `inboxCapacity` inputs; when it is full the readers stop
 * reading and `command` suspends: a connection's peer feels backpressure, and the
 * endpoint's own bounded buffer drops new datagrams as a kernel would. A datagram that does not decode, comes from an
 * address that is not a peer, or fails authentication (see `Authentication`: a MAC with
 * the cluster key, replay and freshness checks) is dropped, logged and counted in
 * `understudy_runner_datagrams_dropped_total`: a bad peer never stops a node.
 *
 * @since 0.1.0
 */
import type { Address, CloseReason, Codec, Connection, TransportError } from "@understudy/transport"
import { Datagram } from "@understudy/transport"
import { Clock, Effect, Metric, Result, Scope, Stream } from "effect"
import * as Authentication from "./Authentication.ts"
import * as Loop from "./internal/loop.ts"
import type * as Machine from "./Machine.ts"

/** The pseudo-input of the step that `init` is. @since 0.1.0 @category models */
export interface Init {
  readonly _tag: "Init"
  readonly nowMs: number
}

/**
 * What happened in one step, for observers such as the simulation's invariant checks.
 * `before` is `undefined` for `init`.
 *
 * @since 0.1.0
 * @category models
 */
export interface StepInfo<State, Message, C, E, Address = Machine.NodeId> {
  readonly node: Machine.NodeId
  /** The step's input; for a step of several (see `inputs`), the last of them. */
  readonly input: Init | Machine.Input<Message, C, Address>
  /**
   * A step of several inputs (a group of commands given to `commandAll`): all of them, in
   * order; `before` is the state before the first, `after` after the last, `outputs` all of
   * theirs. Absent when the step took one input, `input`.
   */
  readonly inputs?: ReadonlyArray<Machine.Input<Message, C, Address>>
  readonly before: State | undefined
  readonly after: State
  readonly outputs: ReadonlyArray<Machine.Output<Message, E, Address>>
  readonly nowMs: number
}

/**
 * What every runner takes, whatever its link to the peers.
 *
 * @since 0.1.0
 * @category models
 */
export interface Settings<State, Message, C, E> {
  readonly self: Machine.NodeId
  /** Inputs waiting to be stepped, at most. Default 1,024. */
  readonly inboxCapacity?: number
  /** Events waiting for a slow `events` reader, at most, before the node waits. Default 1,024. */
  readonly eventsCapacity?: number
  /**
   * Commands one step takes, at most, when given together (`commandAll`). Bounded because
   * the peers' messages and this node's timers wait behind each step: a backlog of thousands
   * taken as one step, with its thousands of outputs (and a durable write in `onStep`), holds
   * a node's heartbeats back long enough for its peers to think it dead. Default 64.
   */
  readonly inputsPerStepMax?: number
  /**
   * Called after every step (and after `init`), before its outputs are performed, inside
   * the node's serial stepping (in its loop's fiber, or in the fiber of a command's caller
   * that was stepped at once): the node waits for it. A failure or defect in it stops the node.
   */
  readonly onStep?: (info: StepInfo<State, Message, C, E>) => Effect.Effect<void>
  /**
   * Called for each event as its `Emit` is performed (after it was published on `events`),
   * inside the node's serial stepping (as `onStep`), from `init`'s events on: a driver that must see every
   * event, in order with the sends, uses it rather than `events`. The node waits for it, so
   * it must not wait for a `command` of the same node (fork that); a failure or defect in it
   * stops the node.
   */
  readonly onEvent?: (event: E) => Effect.Effect<void>
}

/** @since 0.1.0 @category models */
export interface Options<State, Message, C, E> extends Settings<State, Message, C, E> {
  /** The other nodes; `self`, if listed, is left out. */
  readonly peers: ReadonlyArray<Machine.NodeId>
  /** Where each node (this one included) receives its datagrams. */
  readonly addresses:
    | Readonly<Record<Machine.NodeId, Address.Udp>>
    | ((node: Machine.NodeId) => Address.Udp)
  readonly codec: Codec.Codec<Message>
  /**
   * `Authentication.keyed(clusterKey)` (what every member must use alike), or the explicit
   * `Authentication.insecure`, which trusts source addresses and logs a warning.
   */
  readonly authentication: Authentication.Authentication
}

/**
 * A running node, whatever its link.
 *
 * @since 0.1.0
 * @category models
 */
export interface Node<State, C, E> {
  readonly self: Machine.NodeId
  /** The machine's current state, for observation. */
  readonly state: Effect.Effect<State>
  /**
   * The events emitted from the moment the stream is started. A reader that falls more than
   * `eventsCapacity` behind slows the node down rather than losing events.
   */
  readonly events: Stream.Stream<E>
  /**
   * Steps the machine with a command; completes once the step ran and its outputs were
   * performed. Interrupted if the node stops first. When the node is idle (no step running,
   * no input waiting) the step runs at once in the caller's fiber, with no queue round trip;
   * once begun it is not interrupted (a step is performed whole). Otherwise the command
   * waits its turn behind the inputs given before it.
   */
  readonly command: (command: C) => Effect.Effect<void>
  /**
   * Steps the machine with several commands, in order, `inputsPerStepMax` at most per step:
   * each step takes its group in turn and calls `onStep` once for it (group commit). The next
   * group is queued once the previous one was stepped, so messages and timers that came
   * meanwhile go between them. Completes once the last group's outputs were performed;
   * interrupted if the node stops first.
   */
  readonly commandAll: (commands: ReadonlyArray<C>) => Effect.Effect<void>
  /**
   * Waits while the node runs. It never succeeds: if `init`, `step` or `onStep` throws or
   * dies, the node stops and this dies with the same defect, so a supervisor sees it.
   */
  readonly join: Effect.Effect<never>
}

/**
 * A running node over datagrams.
 *
 * @since 0.1.0
 * @category models
 */
export interface Running<State, C, E> extends Node<State, C, E> {
  /** The bound address (with the actual port when port 0 was asked for). */
  readonly address: Address.Udp
}

const addressKey = (address: Address.Udp): string => `${address.host}:${address.port}`

/**
 * Datagrams a runner dropped, by `reason`: `UnknownSender`, `Undecodable`, or an
 * `Authentication.DropReason`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const datagramsDropped = Metric.counter("understudy_runner_datagrams_dropped_total", {
  description: "Datagrams a machine runner dropped before its machine saw them, by reason",
  incremental: true,
})

const dropped = (reason: string, detail: Record<string, unknown>) =>
  Effect.logWarning("dropping a datagram", { reason, ...detail }).pipe(
    Effect.andThen(Metric.update(Metric.withAttributes(datagramsDropped, { reason }), 1)),
  )

/**
 * Starts the node: binds its endpoint, runs `init`, and steps the machine until the scope
 * closes. Fails only if the endpoint cannot be bound.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Address } from "@understudy/transport"
 * import { Authentication, FailureDetector, Runner } from "@understudy/machine"
 *
 * declare const clusterKey: Uint8Array // e.g. from ClusterKey.readFile
 *
 * const node = Runner.run(FailureDetector.make({ intervalMs: 100, timeoutMs: 500 }), {
 *   self: "a",
 *   peers: ["b"],
 *   addresses: { a: Address.udp("127.0.0.1", 9001), b: Address.udp("127.0.0.1", 9002) },
 *   codec: FailureDetector.codec,
 *   authentication: Authentication.keyed(clusterKey),
 * })
 * ```
 * @since 0.1.0
 * @category constructors
 */
export const run = <State, Message, C, E>(
  machine: Machine.Machine<State, Message, C, E>,
  options: Options<State, Message, C, E>,
): Effect.Effect<
  Running<State, C, E>,
  TransportError.ListenError,
  Datagram.Datagram | Scope.Scope
> =>
  Effect.gen(function* () {
    const { self, codec } = options
    const peers = options.peers.filter((peer) => peer !== self)
    const resolve =
      typeof options.addresses === "function"
        ? options.addresses
        : (node: Machine.NodeId): Address.Udp => {
            const address = (options.addresses as Readonly<Record<string, Address.Udp>>)[node]
            if (address === undefined) throw new Error(`no address for node ${node}`)
            return address
          }
    const peerAddresses = new Map<Machine.NodeId, Address.Udp>()
    const nodeByAddress = new Map<string, Machine.NodeId>()
    for (const peer of peers) {
      const address = resolve(peer)
      peerAddresses.set(peer, address)
      nodeByAddress.set(addressKey(address), peer)
    }

    const datagram = yield* Datagram.Datagram
    const endpoint = yield* datagram.bind(resolve(self))
    const startedMs = yield* Clock.currentTimeMillis
    const sealer = Authentication.sealer(options.authentication, self, startedMs)
    if (options.authentication._tag === "Insecure") {
      yield* Effect.logWarning(
        "running without a cluster key: any datagram from a member's address is believed",
      )
    }

    const sendTo = (to: Machine.NodeId, message: Message) =>
      Effect.suspend(() => {
        const address = peerAddresses.get(to)
        if (address === undefined) {
          return Effect.logWarning("dropping a message to an unknown node", { to })
        }
        const encoded = codec.encode(message)
        if (Result.isFailure(encoded)) {
          return Effect.logError("cannot encode an outgoing message", encoded.failure.message)
        }
        return Clock.currentTimeMillis.pipe(
          Effect.flatMap((nowMs) =>
            endpoint.send(address, sealer.seal(to, nowMs, encoded.success)),
          ),
          Effect.catch((error) =>
            Effect.logWarning("datagram not sent", { to, error: error.message }),
          ),
        )
      })

    const loop = yield* Loop.start(
      machine,
      options,
      peers,
      { send: sendTo, peers: () => peers },
      "loop",
    )

    const receive = (received: Datagram.Received) =>
      Effect.gen(function* () {
        const from = nodeByAddress.get(addressKey(received.from))
        if (from === undefined) {
          return yield* dropped("UnknownSender", {
            from: `${received.from.host}:${received.from.port}`,
          })
        }
        const opened = sealer.open(from, yield* Clock.currentTimeMillis, received.bytes)
        if ("dropped" in opened) return yield* dropped(opened.dropped, { from })
        const decoded = codec.decode(opened.payload)
        if (Result.isFailure(decoded)) {
          return yield* dropped("Undecodable", { from, error: decoded.failure.message })
        }
        yield* loop.receive(from, decoded.success)
      })
    yield* Stream.runForEach(endpoint.messages, receive).pipe(Effect.forkScoped)

    return { ...loop.node, address: endpoint.address }
  }).pipe(Effect.annotateLogs({ node: options.self }))

/**
 * A runner over stream connections: `Settings`, and the command that tells the machine a
 * connection ended.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectionOptions<State, Message, C, E> extends Settings<State, Message, C, E> {
  /**
   * The command stepped when a connection ends (its messages all stepped before), with why;
   * without it, an end is not stepped. The connection is forgotten after that step.
   */
  readonly closed?: (connection: Machine.NodeId, reason: CloseReason.CloseReason) => NoInfer<C>
}

/**
 * A running node over stream connections. Its peers are the connections attached to it:
 * each gets a `NodeId` (`self`, a slash and a counter), what it carries is stepped as
 * `Receive` from that id, and `Send` to the id goes over it; `Broadcast` goes to every
 * attached connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface Connections<State, Message, C, E> extends Node<State, C, E> {
  /**
   * Attaches connections (already authenticated by whoever accepted or opened them), steps
   * the commands `attached` makes of their ids (in one `commandAll`: nothing they carry is
   * stepped before), then reads each in the background until it ends. Returns their ids.
   */
  readonly attach: (
    connections: ReadonlyArray<Connection.Connection<Message>>,
    attached?: (ids: ReadonlyArray<Machine.NodeId>) => ReadonlyArray<C>,
  ) => Effect.Effect<ReadonlyArray<Machine.NodeId>>
  /** An attached connection that has not ended yet, for what is no decision of the machine. */
  readonly connection: (id: Machine.NodeId) => Connection.Connection<Message> | undefined
}

/**
 * Starts a node whose peers are stream connections (the transport's framed, authenticated
 * connections): runs `init` (and performs its outputs) before it returns, then steps the
 * machine until the scope closes, with the same step loop, timers and `inputsPerStepMax`
 * as `run`. Messages are already decoded and authenticated by the connection, so nothing
 * is sealed here. A message to an id with no connection (it ended) is dropped; a send
 * that fails (the connection closed meanwhile) is ignored: its end is stepped anyway.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import type { Transport } from "@understudy/transport"
 * import { Machine, Runner } from "@understudy/machine"
 *
 * // Answers every "ping" over the connection it came on.
 * const pong: Machine.Machine<null, string> = {
 *   init: () => Machine.result(null),
 *   step: (state, input) =>
 *     Machine.result(state, input._tag === "Receive" ? [Machine.send(input.from, "pong")] : []),
 * }
 *
 * declare const listener: Transport.Listener<string>
 *
 * const server = Effect.gen(function* () {
 *   const node = yield* Runner.runConnections(pong, { self: "server" })
 *   yield* Stream.runForEach(listener.connections, (connection) => node.attach([connection]))
 * })
 * ```
 * @since 0.1.0
 * @category constructors
 */
export const runConnections = <State, Message, C, E>(
  machine: Machine.Machine<State, Message, C, E>,
  options: ConnectionOptions<State, Message, C, E>,
): Effect.Effect<Connections<State, Message, C, E>, never, Scope.Scope> =>
  Effect.gen(function* () {
    // The connections' readers in a scope made now, so they outlive whatever the caller
    // sets up after `start` (a finalizer that steps a goodbye still finds its connections).
    const readers = yield* Scope.fork(yield* Effect.scope, "parallel")
    const connections = new Map<Machine.NodeId, Connection.Connection<Message>>()
    let counter = 0
    const loop = yield* Loop.start(
      machine,
      options,
      [],
      {
        send: (to, message) =>
          Effect.suspend(() => {
            const connection = connections.get(to)
            return connection === undefined ? Effect.void : Effect.ignore(connection.send(message))
          }),
        peers: () => connections.keys(),
      },
      "before-return",
    )

    /** Steps what the connection carries, then its end. */
    const read = (id: Machine.NodeId, connection: Connection.Connection<Message>) =>
      Effect.gen(function* () {
        yield* Stream.runForEach(connection.messages, (message) => loop.receive(id, message))
        const reason = yield* connection.closed
        if (options.closed !== undefined) yield* loop.node.command(options.closed(id, reason))
      }).pipe(Effect.ensuring(Effect.sync(() => connections.delete(id))))

    const node: Connections<State, Message, C, E> = {
      ...loop.node,
      connection: (id) => connections.get(id),
      attach: (attaching, attached) =>
        Effect.gen(function* () {
          const ids = attaching.map((connection) => {
            const id = `${options.self}/${++counter}`
            connections.set(id, connection)
            return id
          })
          if (attached !== undefined) yield* loop.node.commandAll(attached(ids))
          for (let i = 0; i < ids.length; i++)
            yield* Effect.forkIn(read(ids[i]!, attaching[i]!), readers)
          return ids
        }),
    }
    return node
  }).pipe(Effect.annotateLogs({ node: options.self }))
