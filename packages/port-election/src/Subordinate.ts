/**
 * The subordinate side of a port election as a pure machine on the `@understudy/machine`
 * contract: registering with a supervisor (or confirming a successor's takeover over the
 * standby connection), serving it, noticing its end, and the cut-off deadline at which
 * permits held while no supervisor has them are given up (and handed back if a registration
 * still claimed them). It performs nothing: the subordinate driver
 * (`internal/subordinate.ts`) attaches each supervisor connection to the shared `Runner`,
 * steps the instance's own acquisitions and releases as commands, and does what the events
 * say. The supervisor's side is `Machine.ts`.
 *
 * One machine lives as long as the instance takes part in the election: the deadline and
 * the permits given up outlive the connection that set them.
 *
 * @since 0.1.0
 */
import { Machine as M } from "@understudy/machine"
import type { OwnCommand } from "./Grants.ts"
import type { Holding, Message, Successor } from "./internal/protocol.ts"
import type * as Registry from "./Registry.ts"

/** A supervisor connection, named by the Runner. @since 0.1.0 @category models */
export type ConnectionId = M.NodeId

/** @since 0.1.0 @category models */
export interface Config {
  /** How long a supervisor keeps a lost holder's permits: the deadline is within it. */
  readonly graceMs: number
  /** The keep-alive interval: the deadline comes this much early, room to wake up late. */
  readonly keepAliveIntervalMs: number
  /** Time the supervisor has to answer a Register. */
  readonly requestTimeoutMs: number
}

/** A request of this instance's own, waiting for a permit. @since 0.1.0 @category models */
export interface Waiting {
  readonly resource: string
  readonly limit: number
}

/** The connection to a supervisor and what its registration claimed. @since 0.1.0 @category models */
export interface Upstream {
  readonly connection: ConnectionId
  /** The permits the registration claimed, per resource. */
  readonly claimed: ReadonlyMap<string, number>
  /** What this supervisor answered lost, of what the registration claimed. */
  readonly lostHere: ReadonlyMap<string, number>
}

/** @since 0.1.0 @category models */
export type Phase =
  | { readonly _tag: "Electing" }
  /** Registered over `connection`, no Welcome yet (the `register` timer runs). */
  | ({
      readonly _tag: "Registering"
      /** Over the standby connection, the successor's Welcome already in. */
      readonly takeover: boolean
    } & Upstream)
  | ({
      readonly _tag: "Registered"
      readonly supervisorId: string
      /** A takeover's Welcome: the holdings are taken back once the registry comes. */
      readonly awaitingRegistry: boolean
      /** The supervisor said it leaves on purpose: its connection's end is no failure. */
      readonly resigned: boolean
    } & Upstream)

/** @since 0.1.0 @category models */
export interface State {
  readonly phase: Phase
  /** Permits this instance holds, per resource (as its registrations and grants said). */
  readonly held: ReadonlyMap<string, Holding>
  /** Own requests waiting for a permit, by request id. */
  readonly waiting: ReadonlyMap<string, Waiting>
  /** The cut-off deadline is set (the `cutoff` timer runs). */
  readonly cutOffArmed: boolean
  /**
   * Permits given up while no supervisor had them (at the deadline, or released while
   * electing): a registration in flight may still claim them.
   */
  readonly abandoned: ReadonlyMap<string, number>
}

/** @since 0.1.0 @category models */
export type Command =
  /**
   * A connection to the supervisor (or, with `takeover`, the standby connection over which
   * the successor's Welcome came): register with `registration`, built before, with what is
   * waiting for a permit now.
   */
  | {
      readonly _tag: "Connected"
      readonly connection: ConnectionId
      readonly registration: Registry.Register
      readonly waiting: ReadonlyArray<readonly [string, Waiting]>
      readonly takeover?: Registry.Welcome
    }
  /** The Runner: a connection ended, everything it carried stepped before. */
  | { readonly _tag: "Closed"; readonly connection: ConnectionId; readonly reason: string }
  /**
   * The supervisor's connection ended and the instance elects again: the cut-off deadline
   * runs from `lastHeardAtMs`, the last thing (a message or a keep-alive) heard on it.
   */
  | { readonly _tag: "Lost"; readonly lastHeardAtMs: number }
  /** This instance's own acquisition, withdrawal and release. */
  | OwnCommand
  /**
   * This instance took the supervisor's role, its own holdings with it: the deadline is off,
   * and what it gave up it claimed from nobody, so nothing is handed back.
   */
  | { readonly _tag: "Supervising" }

/** @since 0.1.0 @category models */
export type Event =
  /** A Welcome came: the supervisor's id (the registration to prepare again). */
  | { readonly _tag: "Welcome"; readonly supervisorId: string }
  /** Registered: this instance is the supervisor's subordinate. */
  | {
      readonly _tag: "Registered"
      readonly connection: ConnectionId
      readonly supervisorId: string
    }
  /** No Welcome (time-out, or the connection ended first): try again. */
  | { readonly _tag: "NotWelcomed"; readonly connection: ConnectionId }
  | {
      readonly _tag: "Refused"
      readonly connection: ConnectionId
      readonly refusal: Extract<Message, { _tag: "Refused" }>
    }
  /** The registered supervisor's connection ended (`resigned`: it said it leaves). */
  | { readonly _tag: "Ended"; readonly connection: ConnectionId; readonly resigned: boolean }
  /** Permits the supervisor could not keep, or given up at the deadline. */
  | { readonly _tag: "LosePermits"; readonly lost: ReadonlyArray<Holding> }
  /** Stand by at this successor (or at none). */
  | { readonly _tag: "Follow"; readonly successor: Successor | undefined }
  /** The registry came. */
  | {
      readonly _tag: "Registry"
      readonly members: Extract<Message, { _tag: "Members" }>["members"]
      readonly successor: Successor | undefined
    }
  /** Designated successor: open the standby listener and say where (`StandbyAt`). */
  | { readonly _tag: "Designated"; readonly connection: ConnectionId }
  /** A permit for this instance's own request. */
  | { readonly _tag: "Granted"; readonly requestId: string; readonly resource: string }
  | {
      readonly _tag: "AcquireRefused"
      readonly requestId: string
      readonly resource: string
      readonly reason: string
    }
  /** Not registry decisions: the driver answers them. */
  | { readonly _tag: "Reply"; readonly reply: Extract<Message, { _tag: "Reply" }> }
  | {
      readonly _tag: "Command"
      readonly connection: ConnectionId
      readonly supervisorId: string
      readonly command: Extract<Message, { _tag: "Command" }>
    }
  /** Close this connection. */
  | { readonly _tag: "Close"; readonly connection: ConnectionId }

/** @since 0.1.0 @category models */
export type Output = M.Output<Message, Event>

/** @since 0.1.0 @category models */
export type Subordinate = M.Machine<State, Message, Command, Event>

/** The supervisor's Welcome is waited for until it fires. @since 0.1.0 @category constants */
export const registerTimer = "register"
/** Permits still held are given up when it fires. @since 0.1.0 @category constants */
export const cutOffTimer = "cutoff"

/** The registration's claim, per resource. */
const claimOf = (registration: Registry.Register): Map<string, number> => {
  const claimed = new Map<string, number>()
  for (const { resource, permits } of registration.holdings) {
    claimed.set(resource, (claimed.get(resource) ?? 0) + permits)
  }
  return claimed
}

/**
 * The subordinate's machine.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (config: Config): Subordinate => ({
  init: () =>
    M.result<State, Message, Event>({
      phase: { _tag: "Electing" },
      held: new Map(),
      waiting: new Map(),
      cutOffArmed: false,
      abandoned: new Map(),
    }),
  step: (before, input) => {
    // A copy this step changes: the state it was given stays as it was.
    let phase = before.phase
    const held = new Map(before.held)
    const waiting = new Map(before.waiting)
    const abandoned = new Map(before.abandoned)
    let cutOffArmed = before.cutOffArmed
    const out: Array<Output> = []
    const emit = (event: Event) => out.push(M.emit(event))

    const lose = (lost: ReadonlyArray<Holding>) => {
      for (const { resource, permits } of lost) {
        const holding = held.get(resource)
        if (holding === undefined) continue
        const left = holding.permits - Math.min(permits, holding.permits)
        if (left > 0) held.set(resource, { ...holding, permits: left })
        else held.delete(resource)
      }
    }

    /**
     * A supervisor has this instance's holdings again, as its registration claimed minus
     * what it answered lost: the deadline is off, and permits given up meanwhile that the
     * registration still claimed are handed back.
     */
    const holdingsBack = (upstream: Upstream) => {
      if (cutOffArmed) out.push(M.cancelTimer(cutOffTimer))
      cutOffArmed = false
      for (const [resource, permits] of abandoned) {
        const kept = (upstream.claimed.get(resource) ?? 0) - (upstream.lostHere.get(resource) ?? 0)
        for (let i = 0; i < Math.min(permits, kept); i++) {
          out.push(M.send(upstream.connection, { _tag: "Release", resource }))
        }
      }
      abandoned.clear()
    }

    const welcome = (message: Registry.Welcome) => {
      if (phase._tag === "Electing") return
      const lostHere = new Map(phase.lostHere)
      for (const { resource, permits } of message.lost) {
        lostHere.set(resource, (lostHere.get(resource) ?? 0) + permits)
      }
      const first = phase._tag === "Registering"
      // A takeover's Welcome comes before this instance confirmed its holdings: they are
      // taken back once the registry comes (it is sent only to those who confirmed).
      const awaitingRegistry = phase._tag === "Registered" ? phase.awaitingRegistry : phase.takeover
      phase = {
        _tag: "Registered",
        connection: phase.connection,
        claimed: phase.claimed,
        lostHere,
        supervisorId: message.supervisorId,
        awaitingRegistry,
        resigned: false,
      }
      if (first) out.push(M.cancelTimer(registerTimer))
      emit({ _tag: "Welcome", supervisorId: message.supervisorId })
      lose(message.lost)
      emit({ _tag: "LosePermits", lost: message.lost })
      emit({ _tag: "Follow", successor: message.successor })
      if (!awaitingRegistry) holdingsBack(phase)
      if (!first) return
      emit({ _tag: "Registered", connection: phase.connection, supervisorId: message.supervisorId })
      // What waited while no supervisor had this instance goes to this one.
      for (const [id, { resource, limit }] of waiting) {
        out.push(M.send(phase.connection, { _tag: "Acquire", id, resource, limit }))
      }
    }

    const receive = (from: ConnectionId, message: Message) => {
      if (phase._tag === "Electing" || phase.connection !== from) return
      const connection = phase.connection
      switch (message._tag) {
        case "Welcome":
          return welcome(message)
        case "Refused":
          if (phase._tag !== "Registering") return
          out.push(M.cancelTimer(registerTimer))
          phase = { _tag: "Electing" }
          return emit({ _tag: "Refused", connection, refusal: message })
        default:
          break
      }
      if (phase._tag !== "Registered") return
      switch (message._tag) {
        case "Members":
          emit({ _tag: "Registry", members: message.members, successor: message.successor })
          if (phase.awaitingRegistry) {
            phase = { ...phase, awaitingRegistry: false }
            holdingsBack(phase)
          }
          return
        case "Designate":
          return emit({ _tag: "Designated", connection })
        case "Reply":
          return emit({ _tag: "Reply", reply: message })
        case "Command":
          return emit({
            _tag: "Command",
            connection,
            supervisorId: phase.supervisorId,
            command: message,
          })
        case "Granted": {
          const request = waiting.get(message.id)
          // Given up meanwhile: the permit goes back.
          if (request === undefined) {
            return out.push(M.send(connection, { _tag: "Release", resource: message.resource }))
          }
          waiting.delete(message.id)
          const holding = held.get(message.resource)
          held.set(message.resource, {
            resource: message.resource,
            limit: request.limit,
            permits: (holding?.permits ?? 0) + 1,
          })
          return emit({ _tag: "Granted", requestId: message.id, resource: message.resource })
        }
        case "AcquireRefused":
          if (!waiting.delete(message.id)) return
          return emit({
            _tag: "AcquireRefused",
            requestId: message.id,
            resource: message.resource,
            reason: message.reason,
          })
        case "Resigning":
          // The supervisor leaves on purpose: go to the election now, not at its close.
          phase = { ...phase, resigned: true }
          return emit({ _tag: "Close", connection })
        default:
          return
      }
    }

    const command = (command: Command, nowMs: number) => {
      switch (command._tag) {
        case "Connected": {
          if (phase._tag === "Registering") out.push(M.cancelTimer(registerTimer))
          held.clear()
          for (const holding of command.registration.holdings) held.set(holding.resource, holding)
          waiting.clear()
          for (const [id, request] of command.waiting) waiting.set(id, request)
          // What was given up before claims nothing: only what goes from now on is handed back.
          abandoned.clear()
          phase = {
            _tag: "Registering",
            connection: command.connection,
            claimed: claimOf(command.registration),
            lostHere: new Map(),
            takeover: command.takeover !== undefined,
          }
          out.push(M.send(command.connection, command.registration))
          // A takeover's Welcome is already in: nothing to wait for.
          if (command.takeover !== undefined) return welcome(command.takeover)
          return out.push(M.setTimer(registerTimer, config.requestTimeoutMs))
        }
        case "Closed":
          if (phase._tag === "Electing" || phase.connection !== command.connection) return
          if (phase._tag === "Registering") {
            out.push(M.cancelTimer(registerTimer))
            phase = { _tag: "Electing" }
            return emit({ _tag: "NotWelcomed", connection: command.connection })
          }
          {
            const resigned = phase.resigned
            phase = { _tag: "Electing" }
            return emit({ _tag: "Ended", connection: command.connection, resigned })
          }
        case "Lost": {
          // An earlier deadline still runs: a registration since did not take the permits.
          // Set even if nothing is held yet: a grant read just before the close may still be
          // on its way to the acquirer.
          if (cutOffArmed) return
          cutOffArmed = true
          const deadlineMs = command.lastHeardAtMs + config.graceMs - config.keepAliveIntervalMs
          return out.push(M.setTimer(cutOffTimer, Math.max(0, deadlineMs - nowMs)))
        }
        case "Acquire":
          waiting.set(command.requestId, { resource: command.resource, limit: command.limit })
          if (phase._tag !== "Registered") return
          return out.push(
            M.send(phase.connection, {
              _tag: "Acquire",
              id: command.requestId,
              resource: command.resource,
              limit: command.limit,
            }),
          )
        case "Cancel":
          waiting.delete(command.requestId)
          if (phase._tag !== "Registered") return
          return out.push(
            M.send(phase.connection, { _tag: "CancelAcquire", id: command.requestId }),
          )
        case "Release": {
          const holding = held.get(command.resource)
          if (holding !== undefined) {
            if (holding.permits > 1)
              held.set(command.resource, { ...holding, permits: holding.permits - 1 })
            else held.delete(command.resource)
          }
          if (phase._tag === "Registered") {
            return out.push(
              M.send(phase.connection, { _tag: "Release", resource: command.resource }),
            )
          }
          // Released while electing: a Register already on its way may claim it.
          abandoned.set(command.resource, (abandoned.get(command.resource) ?? 0) + 1)
          return
        }
        case "Supervising":
          if (cutOffArmed) out.push(M.cancelTimer(cutOffTimer))
          cutOffArmed = false
          abandoned.clear()
          return
      }
    }

    switch (input._tag) {
      case "Receive":
        receive(input.from, input.message)
        break
      case "Command":
        command(input.command, input.nowMs)
        break
      case "TimerFired":
        if (input.timer === registerTimer && phase._tag === "Registering") {
          const connection = phase.connection
          phase = { _tag: "Electing" }
          emit({ _tag: "NotWelcomed", connection })
          emit({ _tag: "Close", connection })
        } else if (input.timer === cutOffTimer && cutOffArmed) {
          cutOffArmed = false
          const lost = [...held.values()]
          for (const { resource, permits } of lost) {
            abandoned.set(resource, (abandoned.get(resource) ?? 0) + permits)
          }
          held.clear()
          emit({ _tag: "LosePermits", lost })
        }
        break
    }
    return M.result({ phase, held, waiting, cutOffArmed, abandoned }, out)
  },
})
