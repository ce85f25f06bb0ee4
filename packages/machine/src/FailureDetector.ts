/**
 * A heartbeat failure detector as a pure `Machine`, for the mechanisms to build on. Every
 * node broadcasts a `Heartbeat` every `intervalMs`; each peer has a time-out timer that any
 * fresh heartbeat from it resets. When the timer expires the peer becomes `Suspected`; a
 * fresh heartbeat from a suspected peer makes it `Alive` again.
 *
 * What it guarantees, given a bound `maxDelayMs` on the delay of a working link:
 * - completeness: a crashed node is suspected by every live node within
 *   `timeoutMs + maxDelayMs` of its crash (it sends nothing more);
 * - accuracy: a live peer is not suspected while its link has delivered every heartbeat
 *   within `maxDelayMs` for the last `timeoutMs`, provided `maxDelayMs < timeoutMs - intervalMs`.
 *
 * Each heartbeat carries the sender's incarnation, picked from the clock at `init`, and a
 * sequence number. A restarted node has a later incarnation, so it is recognised (event
 * `Restarted`) and its sequence numbers starting again from 0 are not taken as stale.
 * Duplicated or overtaken heartbeats (not newer than the last one seen) are ignored, so a
 * replayed old packet never hides a failure.
 *
 * @example
 * ```ts
 * import { FailureDetector, Runner } from "@understudy/machine"
 *
 * const detector = FailureDetector.make({ intervalMs: 100, timeoutMs: 500 })
 * // Runner.run(detector, { self: "a", peers: ["b", "c"], addresses, codec: FailureDetector.codec })
 * ```
 * @since 0.1.0
 */
import { Codec } from "@understudy/transport"
import { Schema } from "effect"
import * as Machine from "./Machine.ts"

/**
 * `timeoutMs` must exceed `intervalMs` (and, for accuracy, `intervalMs` plus the delay of a
 * working link).
 *
 * @since 0.1.0
 * @category models
 */
export interface Config {
  readonly intervalMs: number
  readonly timeoutMs: number
}

/**
 * The configuration is unusable. Its tag names the detector: staggered-election's
 * `InvalidConfig` is another error, and a tag belongs to one package.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>()(
  "FailureDetectorInvalidConfig",
  { reason: Schema.String },
) {
  override get message(): string {
    return `invalid failure detector config: ${this.reason}`
  }
}

/** @since 0.1.0 @category schemas */
export const Heartbeat = Schema.TaggedStruct("Heartbeat", {
  /** The sender's node id; a heartbeat whose sender does not match where it came from is dropped. */
  from: Schema.String,
  incarnation: Schema.Finite,
  seq: Schema.Int,
})

/** @since 0.1.0 @category models */
export type Heartbeat = typeof Heartbeat.Type

/** Every wire message of the detector. @since 0.1.0 @category schemas */
export const Message = Heartbeat

/** @since 0.1.0 @category models */
export type Message = typeof Message.Type

/** JSON through the `Message` schema. @since 0.1.0 @category codecs */
export const codec: Codec.Codec<Message> = Codec.json(Message, "FailureDetector")

/** @since 0.1.0 @category models */
export type Status = "Alive" | "Suspected"

/**
 * What one node thinks of one peer. `sinceMs` is when `status` last changed (or `init`);
 * `lastHeardMs` is when the last fresh heartbeat arrived.
 *
 * @since 0.1.0
 * @category models
 */
export interface PeerState {
  readonly status: Status
  readonly sinceMs: number
  readonly lastHeardMs: number | undefined
  readonly incarnation: number | undefined
  readonly seq: number
}

/** @since 0.1.0 @category models */
export interface State {
  readonly self: Machine.NodeId
  readonly incarnation: number
  /** The sequence number of the next heartbeat to send. */
  readonly nextSeq: number
  readonly peers: Readonly<Record<Machine.NodeId, PeerState>>
}

/** The peer's time-out expired. @since 0.1.0 @category events */
export interface Suspected {
  readonly _tag: "Suspected"
  readonly peer: Machine.NodeId
  /** When the suspicion started (the time-out's expiry). */
  readonly sinceMs: number
}

/** A suspected peer was heard from again. @since 0.1.0 @category events */
export interface Alive {
  readonly _tag: "Alive"
  readonly peer: Machine.NodeId
}

/** A peer came back with a new incarnation: it restarted and lost its state. @since 0.1.0 @category events */
export interface Restarted {
  readonly _tag: "Restarted"
  readonly peer: Machine.NodeId
  readonly incarnation: number
}

/** @since 0.1.0 @category events */
export type Event = Suspected | Alive | Restarted

/** @since 0.1.0 @category models */
export type FailureDetector = Machine.Machine<State, Message, never, Event>

/** The timer that sends the next heartbeat. @since 0.1.0 @category timers */
export const heartbeatTimer = "heartbeat"

const timeoutPrefix = "timeout:"

/** The time-out timer of one peer. @since 0.1.0 @category timers */
export const timeoutTimer = (peer: Machine.NodeId): string => `${timeoutPrefix}${peer}`

/**
 * Checks a configuration: positive finite numbers, `timeoutMs > intervalMs`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const validate = (config: Config): InvalidConfig | undefined => {
  const { intervalMs, timeoutMs } = config
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) {
    return new InvalidConfig({ reason: `intervalMs must be positive, got ${intervalMs}` })
  }
  if (!Number.isFinite(timeoutMs) || timeoutMs <= intervalMs) {
    return new InvalidConfig({
      reason: `timeoutMs (${timeoutMs}) must be greater than intervalMs (${intervalMs})`,
    })
  }
  return undefined
}

/**
 * The detector's machine. Throws `InvalidConfig` for a configuration `validate` rejects: a
 * bad configuration is a programming error, found at start-up rather than at run time.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (config: Config): FailureDetector => {
  const invalid = validate(config)
  if (invalid !== undefined) throw invalid
  const { intervalMs, timeoutMs } = config

  const heartbeat = (state: State): Machine.Output<Message, Event> =>
    Machine.broadcast<Message>({
      _tag: "Heartbeat",
      from: state.self,
      incarnation: state.incarnation,
      seq: state.nextSeq,
    })

  const init = (context: Machine.Context): Machine.Result<State, Message, Event> => {
    const peers: Record<Machine.NodeId, PeerState> = {}
    const outputs: Array<Machine.Output<Message, Event>> = []
    for (const peer of context.peers) {
      if (peer === context.self) continue
      // Every peer starts alive with a full time-out: a node that never speaks is suspected
      // `timeoutMs` after we start, a live one is heard well before.
      peers[peer] = {
        status: "Alive",
        sinceMs: context.nowMs,
        lastHeardMs: undefined,
        incarnation: undefined,
        seq: -1,
      }
      outputs.push(Machine.setTimer(timeoutTimer(peer), timeoutMs))
    }
    const state: State = {
      self: context.self,
      // The clock at start-up: later for every restart, so peers can tell the lives apart.
      incarnation: context.nowMs,
      nextSeq: 0,
      peers,
    }
    // Announce ourselves at once, so a restarted node is known alive again without waiting
    // a full interval.
    outputs.unshift(heartbeat(state), Machine.setTimer(heartbeatTimer, intervalMs))
    return Machine.result({ ...state, nextSeq: 1 }, outputs)
  }

  const onHeartbeatTimer = (state: State): Machine.Result<State, Message, Event> =>
    Machine.result({ ...state, nextSeq: state.nextSeq + 1 }, [
      heartbeat(state),
      Machine.setTimer(heartbeatTimer, intervalMs),
    ])

  const onTimeout = (
    state: State,
    peer: Machine.NodeId,
    nowMs: number,
  ): Machine.Result<State, Message, Event> => {
    const current = state.peers[peer]
    if (current === undefined || current.status === "Suspected") return Machine.result(state)
    return Machine.result(
      {
        ...state,
        peers: { ...state.peers, [peer]: { ...current, status: "Suspected", sinceMs: nowMs } },
      },
      [Machine.emit<Event>({ _tag: "Suspected", peer, sinceMs: nowMs })],
    )
  }

  const onHeartbeat = (
    state: State,
    from: Machine.NodeId,
    message: Heartbeat,
    nowMs: number,
  ): Machine.Result<State, Message, Event> => {
    const current = state.peers[from]
    // A sender that is not a peer, or claims to be someone else, is ignored.
    if (current === undefined || message.from !== from) return Machine.result(state)
    const known = current.incarnation
    const fresh =
      known === undefined ||
      message.incarnation > known ||
      (message.incarnation === known && message.seq > current.seq)
    if (!fresh) return Machine.result(state)
    const outputs: Array<Machine.Output<Message, Event>> = [
      Machine.setTimer(timeoutTimer(from), timeoutMs),
    ]
    if (known !== undefined && message.incarnation > known) {
      outputs.push(
        Machine.emit<Event>({ _tag: "Restarted", peer: from, incarnation: message.incarnation }),
      )
    }
    const revived = current.status === "Suspected"
    if (revived) outputs.push(Machine.emit<Event>({ _tag: "Alive", peer: from }))
    const next: PeerState = {
      status: "Alive",
      sinceMs: revived ? nowMs : current.sinceMs,
      lastHeardMs: nowMs,
      incarnation: message.incarnation,
      seq: message.seq,
    }
    return Machine.result({ ...state, peers: { ...state.peers, [from]: next } }, outputs)
  }

  const step = (
    state: State,
    input: Machine.Input<Message, never>,
  ): Machine.Result<State, Message, Event> => {
    switch (input._tag) {
      case "Receive":
        return onHeartbeat(state, input.from, input.message, input.nowMs)
      case "TimerFired":
        if (input.timer === heartbeatTimer) return onHeartbeatTimer(state)
        if (input.timer.startsWith(timeoutPrefix)) {
          return onTimeout(state, input.timer.slice(timeoutPrefix.length), input.nowMs)
        }
        return Machine.result(state)
      case "Command":
        return Machine.result(state)
    }
  }

  return { init, step }
}

/**
 * The peers a node currently suspects, sorted.
 *
 * @since 0.1.0
 * @category getters
 */
export const suspected = (state: State): Array<Machine.NodeId> =>
  Object.keys(state.peers)
    .filter((peer) => state.peers[peer]!.status === "Suspected")
    .sort()
