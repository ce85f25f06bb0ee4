/**
 * The election loop of one instance as a pure machine on the `@understudy/machine` contract:
 * bind the election address, or else connect to whoever holds it; supervise or serve as a
 * subordinate until that ends; back off between attempts that found the address held but
 * nobody answering, and give up after `attemptsMax` of them in a row; after losing the
 * supervisor with a standby link to the successor, wait (at most `standbyWaitMs`) for its
 * takeover before electing the usual way. It performs nothing: the driver
 * (`internal/election.ts`) binds, connects, runs the supervisor's (`Machine.ts`) or the
 * subordinate's (`Subordinate.ts`) term and waits for the takeover when an event asks, and
 * steps what came of it back in as a command. The back-off and the standby wait are the
 * machine's timers; the back-off's jitter is drawn from the machine's seed.
 *
 * One machine is one instance's whole part in the election: `Supervising` and `Failed` are
 * final.
 *
 * Each step into any other phase asks the driver for what comes next: an event to perform
 * and step back as a command, a timer, or both (the standby wait: the takeover, unless the
 * timer fires first). No timer outlives the next input: the driver keeps only the timer the
 * latest step set and forgets it once anything is stepped, so a step that wants a timer still
 * running sets it again. A step that asks for neither a wait nor a timer is a defect: the
 * driver dies on it, naming the phase.
 *
 * @since 0.1.0
 */
import { Machine as M } from "@understudy/machine"
import type { ElectionError } from "./Election.ts"
import {
  ElectionFailed,
  NotPermitted,
  OtherProgramOnAddress,
  StrangerOnAddress,
} from "./ElectionError.ts"

/** @since 0.1.0 @category models */
export interface Config {
  /** The election address as users read it, for errors. */
  readonly address: string
  /** Attempts in a row that may find the address held but never answered. */
  readonly attemptsMax: number
  /** How long a member that lost its supervisor waits for the successor's takeover. */
  readonly standbyWaitMs: number
  /** The back-off's jitter is drawn from it. */
  readonly seed: number
}

/** @since 0.1.0 @category models */
export type Phase =
  /** Binding the address (`Bind` asked). */
  | { readonly _tag: "Binding" }
  /** The address is held: connecting to its holder (`Connect` asked). */
  | { readonly _tag: "Connecting" }
  /** Serving a supervisor (`Serve` asked), over the standby link after a `takeover`. */
  | { readonly _tag: "Subordinate"; readonly takeover: boolean }
  /** Waiting for the successor's takeover over the standby link (the `standby` timer runs). */
  | { readonly _tag: "AwaitingTakeover" }
  /** Between attempts (the `backoff` timer runs). */
  | { readonly _tag: "BackingOff" }
  /** Bound: the supervisor, for good. */
  | { readonly _tag: "Supervising" }
  | { readonly _tag: "Failed"; readonly error: ElectionError }

/** @since 0.1.0 @category models */
export interface State {
  readonly phase: Phase
  /** Attempts in a row that found the address held but nobody answering. */
  readonly failures: number
  /** This instance's term: one more for each attempt to take a role. */
  readonly epoch: number
  /** The jitter generator's state. */
  readonly random: number
}

/** What the driver's handshake failure says about the holder of the address. @since 0.1.0 @category models */
export type ConnectFailure =
  /** Nobody accepted (it is mid-bind, mid-start, or just died): try again. */
  | "Unreachable"
  | "NotUnderstudy"
  | "VersionMismatch"
  | "AuthenticationRequired"
  | "AuthenticationFailed"

/** What came of what the machine asked. @since 0.1.0 @category models */
export type Command =
  | { readonly _tag: "Bound" }
  | { readonly _tag: "BindFailed"; readonly addressInUse: boolean; readonly detail: string }
  | { readonly _tag: "Connected" }
  | { readonly _tag: "ConnectFailed"; readonly reason: ConnectFailure; readonly detail: string }
  /** The successor's Welcome came over the standby link. */
  | { readonly _tag: "TakenOver" }
  /** The standby link ended without a takeover. */
  | { readonly _tag: "NoTakeover" }
  /**
   * The subordinate's term ended: `lost` its supervisor (`standingBy`: with a standby link
   * to the successor up), or `retry` (never welcomed, refused for now, or the supervisor
   * resigned).
   */
  | {
      readonly _tag: "Ended"
      readonly outcome: "retry" | "lost"
      readonly standingBy: boolean
    }
  /** The subordinate's term failed the election. */
  | { readonly _tag: "SubordinateFailed"; readonly error: ElectionError }

/** What the driver does. @since 0.1.0 @category models */
export type Event =
  /** A new attempt (`epoch`): bind the address in a scope of its own. */
  | { readonly _tag: "Bind"; readonly epoch: number }
  /** Connect to the holder of the address. */
  | { readonly _tag: "Connect" }
  /**
   * The bind failed: a successor that lost it is no successor, and whoever stands by at it
   * elects the usual way now instead of waiting for a takeover that will not come.
   */
  | { readonly _tag: "StopStandingBy" }
  /** Run the supervisor's term on the bound address (it never ends). */
  | { readonly _tag: "Supervise" }
  /** Run the subordinate's term over the connection, or over the standby link after a takeover. */
  | { readonly _tag: "Serve"; readonly takeover: boolean }
  /** A new attempt (`epoch`): take the standby link and wait for the successor's takeover. */
  | { readonly _tag: "AwaitTakeover"; readonly epoch: number }
  /**
   * The attempt's connection, listener or link is done with: closed, or, after losing the
   * supervisor (`keep`), kept open until the next supervisor has this instance.
   */
  | { readonly _tag: "AttemptOver"; readonly keep: boolean }
  | { readonly _tag: "Failed"; readonly error: ElectionError }

/** @since 0.1.0 @category models */
export type Output = M.Output<never, Event>

/** @since 0.1.0 @category models */
export type ElectionLoop = M.Machine<State, never, Command, Event>

/** Between attempts; fires into the next one. @since 0.1.0 @category constants */
export const backoffTimer = "backoff"
/** The wait for the successor's takeover ends. @since 0.1.0 @category constants */
export const standbyTimer = "standby"

/** The back-off's ceiling after `failures` in a row: 2, 4, 8 ... 250 ms. */
const backoffCeilingMs = (failures: number) => Math.min(250, 2 ** Math.min(failures, 8))

/** One draw of mulberry32: a number in [0, 1) and the generator's next state. */
const draw = (random: number): readonly [number, number] => {
  const next = (random + 0x6d2b79f5) >>> 0
  let t = Math.imul(next ^ (next >>> 15), next | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return [((t ^ (t >>> 14)) >>> 0) / 4_294_967_296, next]
}

/**
 * The election loop's machine.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (config: Config): ElectionLoop => {
  const address = config.address

  /** A new attempt: over the standby link when one is up after a loss, else a bind. */
  const attempt = (state: State, overStandby: boolean, out: Array<Output>): State => {
    const epoch = state.epoch + 1
    if (overStandby) {
      out.push(M.emit({ _tag: "AwaitTakeover", epoch }))
      out.push(M.setTimer(standbyTimer, config.standbyWaitMs))
      return { ...state, epoch, phase: { _tag: "AwaitingTakeover" } }
    }
    out.push(M.emit({ _tag: "Bind", epoch }))
    return { ...state, epoch, phase: { _tag: "Binding" } }
  }

  const fail = (state: State, error: ElectionError, out: Array<Output>): State => {
    out.push(M.emit({ _tag: "Failed", error }))
    return { ...state, phase: { _tag: "Failed", error } }
  }

  /**
   * The address was held but nobody answered: back off a little, with jitter so the losers
   * do not retry in lockstep. The attempts run out only once the back-off is over.
   */
  const backOff = (state: State, out: Array<Output>): State => {
    const failures = state.failures + 1
    const [fraction, random] = draw(state.random)
    out.push(M.setTimer(backoffTimer, Math.ceil(fraction * backoffCeilingMs(failures))))
    return { ...state, failures, random, phase: { _tag: "BackingOff" } }
  }

  const connectFailed = (
    state: State,
    command: Extract<Command, { _tag: "ConnectFailed" }>,
    out: Array<Output>,
  ): State => {
    out.push(M.emit({ _tag: "AttemptOver", keep: false }))
    switch (command.reason) {
      case "Unreachable":
        return backOff(state, out)
      case "NotUnderstudy":
        return fail(state, new StrangerOnAddress({ address, detail: command.detail }), out)
      case "VersionMismatch":
        return fail(
          state,
          new OtherProgramOnAddress({
            address,
            reason: "IncompatibleVersion",
            program: "unknown",
            version: -1,
          }),
          out,
        )
      default:
        return fail(state, new NotPermitted({ address, detail: command.detail }), out)
    }
  }

  const commanded = (state: State, command: Command, out: Array<Output>): State => {
    const phase = state.phase._tag
    switch (command._tag) {
      case "Bound":
        if (phase !== "Binding") return state
        out.push(M.emit({ _tag: "Supervise" }))
        return { ...state, phase: { _tag: "Supervising" } }
      case "BindFailed":
        if (phase !== "Binding") return state
        out.push(M.emit({ _tag: "StopStandingBy" }))
        if (command.addressInUse) {
          out.push(M.emit({ _tag: "Connect" }))
          return { ...state, phase: { _tag: "Connecting" } }
        }
        out.push(M.emit({ _tag: "AttemptOver", keep: false }))
        return fail(
          state,
          new ElectionFailed({ address, attempts: 1, detail: command.detail }),
          out,
        )
      case "Connected":
        if (phase !== "Connecting") return state
        out.push(M.emit({ _tag: "Serve", takeover: false }))
        return { ...state, phase: { _tag: "Subordinate", takeover: false } }
      case "ConnectFailed":
        return phase === "Connecting" ? connectFailed(state, command, out) : state
      case "TakenOver":
        if (phase !== "AwaitingTakeover") return state
        out.push(M.cancelTimer(standbyTimer))
        out.push(M.emit({ _tag: "Serve", takeover: true }))
        return { ...state, phase: { _tag: "Subordinate", takeover: true } }
      case "NoTakeover":
        if (phase !== "AwaitingTakeover") return state
        out.push(M.cancelTimer(standbyTimer))
        out.push(M.emit({ _tag: "AttemptOver", keep: false }))
        return attempt(state, false, out)
      case "Ended": {
        if (state.phase._tag !== "Subordinate") return state
        const lost = command.outcome === "lost"
        out.push(M.emit({ _tag: "AttemptOver", keep: lost }))
        // A supervisor lost: the attempts start again from none.
        if (lost) return attempt({ ...state, failures: 0 }, command.standingBy, out)
        // Not welcomed over the standby link: elect the usual way, no failure counted.
        if (state.phase.takeover) return attempt(state, false, out)
        return backOff(state, out)
      }
      case "SubordinateFailed":
        if (phase !== "Subordinate") return state
        out.push(M.emit({ _tag: "AttemptOver", keep: false }))
        return fail(state, command.error, out)
    }
  }

  const fired = (state: State, timer: string, out: Array<Output>): State => {
    if (timer === standbyTimer && state.phase._tag === "AwaitingTakeover") {
      // No takeover in time: elect the usual way.
      out.push(M.emit({ _tag: "AttemptOver", keep: false }))
      return attempt(state, false, out)
    }
    if (timer === backoffTimer && state.phase._tag === "BackingOff") {
      if (state.failures < config.attemptsMax) return attempt(state, false, out)
      return fail(
        state,
        new ElectionFailed({
          address,
          attempts: state.failures,
          detail: "the instance.address was held but never answered",
        }),
        out,
      )
    }
    return state
  }

  return {
    init: () => {
      const out: Array<Output> = []
      const state = attempt(
        { phase: { _tag: "Binding" }, failures: 0, epoch: 0, random: config.seed >>> 0 },
        false,
        out,
      )
      return M.result(state, out)
    },
    step: (state, input) => {
      const out: Array<Output> = []
      switch (input._tag) {
        case "Command":
          return M.result(commanded(state, input.command, out), out)
        case "TimerFired":
          return M.result(fired(state, input.timer, out), out)
        case "Receive":
          return M.result(state)
      }
    },
  }
}
