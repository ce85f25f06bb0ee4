/**
 * A protocol as a pure state machine, as etcd's raft package builds it: `step(state, input)`
 * returns the next state and a list of outputs (messages to send, timers to set or cancel,
 * events for the application) and performs nothing itself. The caller, the `Runner` or a
 * simulation, does the I/O. Time arrives only inside inputs, as `nowMs`; randomness, when a
 * protocol needs it, must arrive as an input too. So the same inputs always give the same
 * outputs, which is what makes seeded simulation and replay possible.
 *
 * @example
 * ```ts
 * import { Machine } from "@understudy/machine"
 *
 * // Counts pings and answers each one.
 * const pong: Machine.Machine<number, "ping" | "pong"> = {
 *   init: () => Machine.result(0),
 *   step: (count, input) =>
 *     input._tag === "Receive" && input.message === "ping"
 *       ? Machine.result(count + 1, [Machine.send(input.from, "pong")])
 *       : Machine.result(count),
 * }
 * ```
 * @since 0.1.0
 */

/** The name of a node in a cluster; unique among its peers. @since 0.1.0 @category models */
export type NodeId = string

/**
 * What a machine knows when it starts: who it is, who its peers are (never itself) and the
 * time. A restarted node is initialised again, with a later `nowMs`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Context {
  readonly self: NodeId
  readonly peers: ReadonlyArray<NodeId>
  readonly nowMs: number
}

/**
 * A message arrived from a peer. `Address` is how the machine names a peer: a `NodeId`
 * unless the machine says otherwise (the SCTP association's peer is a host and UDP port).
 *
 * @since 0.1.0
 * @category inputs
 */
export interface Receive<Message, Address = NodeId> {
  readonly _tag: "Receive"
  readonly from: Address
  readonly message: Message
  readonly nowMs: number
}

/**
 * A timer set with `SetTimer` expired. Never delivered for a timer that was cancelled or
 * set again since.
 *
 * @since 0.1.0
 * @category inputs
 */
export interface TimerFired {
  readonly _tag: "TimerFired"
  readonly timer: string
  readonly nowMs: number
}

/** The application asked for something. @since 0.1.0 @category inputs */
export interface Command<C> {
  readonly _tag: "Command"
  readonly command: C
  readonly nowMs: number
}

/** Everything a machine is stepped with. @since 0.1.0 @category inputs */
export type Input<Message, C = never, Address = NodeId> =
  | Receive<Message, Address>
  | TimerFired
  | Command<C>

/** Send one message to one peer. Delivery is not guaranteed. @since 0.1.0 @category outputs */
export interface Send<Message, Address = NodeId> {
  readonly _tag: "Send"
  readonly to: Address
  readonly message: Message
}

/** Send one message to every peer (not to itself). @since 0.1.0 @category outputs */
export interface Broadcast<Message> {
  readonly _tag: "Broadcast"
  readonly message: Message
}

/**
 * Fire `TimerFired { timer }` after `afterMs`. Setting a timer that is already set replaces
 * it: only the latest one fires.
 *
 * @since 0.1.0
 * @category outputs
 */
export interface SetTimer {
  readonly _tag: "SetTimer"
  readonly timer: string
  readonly afterMs: number
}

/** Cancel a timer; nothing happens when it is not set. @since 0.1.0 @category outputs */
export interface CancelTimer {
  readonly _tag: "CancelTimer"
  readonly timer: string
}

/** Tell the application something happened. @since 0.1.0 @category outputs */
export interface Emit<E> {
  readonly _tag: "Emit"
  readonly event: E
}

/**
 * Everything a step may ask its caller to do. The caller performs them in order.
 *
 * @since 0.1.0
 * @category outputs
 */
export type Output<Message, E = never, Address = NodeId> =
  | Send<Message, Address>
  | Broadcast<Message>
  | SetTimer
  | CancelTimer
  | Emit<E>

/** A new state and what to do. @since 0.1.0 @category models */
export interface Result<State, Message, E = never, Address = NodeId> {
  readonly state: State
  readonly outputs: ReadonlyArray<Output<Message, E, Address>>
}

/**
 * A protocol. `init` and `step` must be pure and total: no I/O, no clock, no randomness, no
 * throw (a throw is a bug and stops the node). Treat `state` as immutable.
 *
 * One variant, for a hot path where copying the state would cost more than the step (the
 * SCTP association steps once per packet): a machine may say, in its documentation, that
 * `step` updates the state it is given in place and returns that same object. Its caller
 * then owns the state alone: it keeps no earlier state (a copy for replay is an explicit
 * snapshot) and steps it from one place at a time. Everything else holds: the outputs
 * depend only on the state and the input.
 *
 * @since 0.1.0
 * @category models
 */
export interface Machine<State, Message, C = never, E = never, Address = NodeId> {
  readonly init: (context: Context) => Result<State, Message, E, Address>
  readonly step: (
    state: State,
    input: Input<Message, C, Address>,
  ) => Result<State, Message, E, Address>
}

/** @since 0.1.0 @category constructors */
export const result = <State, Message = never, E = never, Address = NodeId>(
  state: State,
  outputs: ReadonlyArray<Output<Message, E, Address>> = [],
): Result<State, Message, E, Address> => ({ state, outputs })

/** @since 0.1.0 @category constructors */
export const receive = <Message>(
  from: NodeId,
  message: Message,
  nowMs: number,
): Receive<Message> => ({
  _tag: "Receive",
  from,
  message,
  nowMs,
})

/** @since 0.1.0 @category constructors */
export const timerFired = (timer: string, nowMs: number): TimerFired => ({
  _tag: "TimerFired",
  timer,
  nowMs,
})

/** @since 0.1.0 @category constructors */
export const command = <C>(command: C, nowMs: number): Command<C> => ({
  _tag: "Command",
  command,
  nowMs,
})

/** @since 0.1.0 @category constructors */
export const send = <Message, Address = NodeId>(
  to: Address,
  message: Message,
): Send<Message, Address> => ({
  _tag: "Send",
  to,
  message,
})

/** @since 0.1.0 @category constructors */
export const broadcast = <Message>(message: Message): Broadcast<Message> => ({
  _tag: "Broadcast",
  message,
})

/** @since 0.1.0 @category constructors */
export const setTimer = (timer: string, afterMs: number): SetTimer => ({
  _tag: "SetTimer",
  timer,
  afterMs,
})

/** @since 0.1.0 @category constructors */
export const cancelTimer = (timer: string): CancelTimer => ({ _tag: "CancelTimer", timer })

/** @since 0.1.0 @category constructors */
export const emit = <E>(event: E): Emit<E> => ({ _tag: "Emit", event })

/**
 * The events among some outputs, in order: handy in tests.
 *
 * @since 0.1.0
 * @category getters
 */
export const events = <Message, E, Address = NodeId>(
  outputs: ReadonlyArray<Output<Message, E, Address>>,
): Array<E> => {
  const found: Array<E> = []
  for (const output of outputs) if (output._tag === "Emit") found.push(output.event)
  return found
}

/**
 * Feeds inputs to a machine one after another, starting from `state`, and returns the final
 * state with every output in order: the synchronous driver of unit tests.
 *
 * @since 0.1.0
 * @category combinators
 */
export const stepAll = <State, Message, C, E, Address = NodeId>(
  machine: Machine<State, Message, C, E, Address>,
  state: State,
  inputs: Iterable<Input<Message, C, Address>>,
): Result<State, Message, E, Address> => {
  const outputs: Array<Output<Message, E, Address>> = []
  for (const input of inputs) {
    const next = machine.step(state, input)
    state = next.state
    outputs.push(...next.outputs)
  }
  return { state, outputs }
}
