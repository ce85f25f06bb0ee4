/**
 * The supervisor of a port election as a pure machine on the `@understudy/machine` contract:
 * registration and re-registration across a failover, the grants of mutexes and semaphores,
 * the freeze that waits for the previous members' permits, the reservation of a cut-off
 * holder's permits, the batched registry, and the designation of a successor. It performs
 * nothing: the supervisor driver (`internal/supervisor.ts`) feeds it what arrived on each
 * member connection and what the instance itself asks, and does what it answers.
 *
 * Peers are connections: each one the driver accepts gets a `ConnectionId`, messages from it
 * arrive as `Receive`, and `Send` goes back over it. A connection's end, a member's process
 * seen gone, and this instance's own acquisitions arrive as commands. Identities (its own
 * instance id, pid, start time) and what it knew at the takeover come in as `Config`.
 *
 * One machine is one term as supervisor: a takeover makes a new one from what the instance
 * knew then (`Takeover`).
 *
 * @since 0.1.0
 */
import { Machine as M } from "@understudy/machine"
import { type Grant, Grants, type OwnCommand } from "./Grants.ts"
import type { Holding, Member, Message } from "./internal/protocol.ts"
import { protocolVersion } from "./internal/protocol.ts"
import * as Registry from "./Registry.ts"

/** A member connection, named by the driver. @since 0.1.0 @category models */
export type ConnectionId = M.NodeId

/** A registered member: its registry entry and the connection it is served over. @since 0.1.0 @category models */
export interface Entry extends Registry.Entry {
  readonly connection: ConnectionId
  /** Why its connection closed, while its permits are reserved for it. */
  readonly closedBecause?: string
}

/** @since 0.1.0 @category models */
export interface State extends Registry.State<Entry> {
  /** This instance in the registry, as its supervisor. */
  readonly self: Registry.Registrant
  /** The instance each connection registered as (kept after its entry moved to a newer one). */
  readonly registered: Map<ConnectionId, string>
  /** Members named in a registry sent out: every member, the successor too, knows them. */
  readonly announced: Set<string>
  /** Grants to members not yet announced, held back until the next registry goes out. */
  readonly unannounced: Array<Grant>
  /** The registry changed since it last went out: the `members` timer runs. */
  membersDue: boolean
}

/** A request of this instance's own, waiting for a permit. @since 0.1.0 @category models */
export interface Waiting {
  readonly requestId: string
  readonly resource: string
  readonly limit: number
}

/**
 * What the instance knew when it took the supervisor's role.
 *
 * @since 0.1.0
 * @category models
 */
export interface Takeover {
  /** Members of the last registry it had, whose permits to wait for. */
  readonly expected: ReadonlyArray<string>
  /** It never saw another supervisor's registry: who holds permits is unknown. */
  readonly blind: boolean
  /** Members named in the last registry it had: every member knows them already. */
  readonly announced: ReadonlyArray<string>
  /** Members pre-registered at its standby listener (as the designated successor). */
  readonly standingBy: ReadonlyArray<string>
  /** Its own permits from before, and its own requests still waiting. */
  readonly holdings: ReadonlyArray<Holding>
  readonly waiting: ReadonlyArray<Waiting>
}

/** @since 0.1.0 @category models */
export interface Config {
  readonly program: string
  /** The timing every member must share; `graceMs` is also how long permits wait for a holder. */
  readonly settings: Registry.Settings
  /** Who this instance is (its `joinedAtMs` is the takeover's time). */
  readonly self: Omit<Registry.Registrant, "joinedAtMs">
  /** Time an unregistered connection has to register. */
  readonly requestTimeoutMs: number
  /** How long registry changes are gathered before the registry goes out. */
  readonly membersBatchMs: number
  readonly takeover: Takeover
}

/** @since 0.1.0 @category models */
export type Command =
  /** A connection was accepted at the election address: it has a time-out to register. */
  | { readonly _tag: "Connected"; readonly connection: ConnectionId }
  /**
   * Connections that stood by at this instance as successor, with their pre-registrations:
   * each is welcomed over its own (one Welcome for all, before any bookkeeping) and admitted;
   * their holdings are adopted once each confirms them.
   */
  | {
      readonly _tag: "Admit"
      readonly standing: ReadonlyArray<{
        readonly connection: ConnectionId
        readonly preRegistration: Registry.Register
      }>
    }
  /** A standby connection pre-registered after the takeover: admitted, not welcomed yet. */
  | {
      readonly _tag: "PreRegistered"
      readonly connection: ConnectionId
      readonly preRegistration: Registry.Register
    }
  | { readonly _tag: "Closed"; readonly connection: ConnectionId; readonly reason: string }
  /** The process of a cut-off member, watched after `Reserved`, is gone. */
  | { readonly _tag: "ProcessGone"; readonly connection: ConnectionId }
  /** This instance's own acquisition, withdrawal and release. */
  | OwnCommand
  /** Stopping on purpose: members are told, and nobody registers any more. */
  | { readonly _tag: "Resign" }

/** @since 0.1.0 @category models */
export type Event =
  /** Close this connection. */
  | { readonly _tag: "Close"; readonly connection: ConnectionId }
  | { readonly _tag: "MemberJoined"; readonly member: Member }
  | { readonly _tag: "MemberLeft"; readonly member: Member; readonly reason: string }
  /** A permit for this instance's own request. */
  | { readonly _tag: "Granted"; readonly requestId: string; readonly resource: string }
  | {
      readonly _tag: "Refused"
      readonly requestId: string
      readonly resource: string
      readonly reason: string
    }
  /** Own permits from before the takeover that could not be kept. */
  | { readonly _tag: "Lost"; readonly lost: ReadonlyArray<Holding> }
  /** Grants are no longer frozen (the previous members are back, or the grace period ended). */
  | { readonly _tag: "Thawed" }
  /** The registry went out to the members. */
  | { readonly _tag: "RegistrySent"; readonly members: ReadonlyArray<Member> }
  /** A cut-off member's permits are reserved: watch its process (`ProcessGone`). */
  | { readonly _tag: "Reserved"; readonly connection: ConnectionId; readonly pid: number }
  /** A member's coordinated request, for the handler of `operation`. */
  | {
      readonly _tag: "Request"
      readonly connection: ConnectionId
      readonly from: string
      readonly request: Extract<Message, { _tag: "Request" }>
    }
  | { readonly _tag: "CommandDone"; readonly done: Extract<Message, { _tag: "CommandDone" }> }
  | { readonly _tag: "Warning"; readonly message: string }

/** @since 0.1.0 @category models */
export type Output = M.Output<Message, Event>

/** @since 0.1.0 @category models */
export type Supervisor = M.Machine<State, Message, Command, Event>

/** The grace period's timer: grants thaw when it fires. @since 0.1.0 @category constants */
export const graceTimer = "grace"
/** The registry goes out when it fires. @since 0.1.0 @category constants */
export const membersTimer = "members"
const registerTimer = (connection: ConnectionId) => `register:${connection}`
const reserveTimer = (connection: ConnectionId) => `reserve:${connection}`

/** A copy a step may change: the state it was given stays as it was. */
const copy = (state: State): State => {
  const members = new Map<string, Entry>()
  for (const [id, entry] of state.members) members.set(id, { ...entry })
  return {
    ...state,
    grants: state.grants.clone(),
    members,
    expected: new Set(state.expected),
    registered: new Map(state.registered),
    announced: new Set(state.announced),
    unannounced: [...state.unannounced],
  }
}

/**
 * The supervisor's machine for one term.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (config: Config): Supervisor => {
  const { program, settings, takeover } = config
  const selfId = config.self.instanceId
  const graceMs = settings.graceMs

  /** The decisions of one step, over the state it changes and the outputs it collects. */
  const stepper = (state: State, out: Array<Output>, nowMs: number) => {
    const send = (connection: ConnectionId, message: Message) =>
      void out.push(M.send(connection, message))
    const emit = (event: Event) => void out.push(M.emit(event))
    const close = (connection: ConnectionId) => emit({ _tag: "Close", connection })
    const memberList = (ids?: ReadonlyArray<string>) => Registry.memberList(state, state.self, ids)

    /** Marks the registry changed; it goes out once for a burst of changes. */
    const changed = () => {
      if (state.membersDue) return
      state.membersDue = true
      out.push(M.setTimer(membersTimer, config.membersBatchMs))
    }

    /** Hands out permits: to this instance as events, to members over their connection. */
    const deliver = (grants: ReadonlyArray<Grant>) => {
      for (const grant of grants) {
        if (grant.instanceId === selfId) {
          emit({ _tag: "Granted", requestId: grant.requestId, resource: grant.resource })
          changed()
          continue
        }
        // A member the registry never named is unknown to the successor, which would give
        // this permit to another if it took over now: it waits for the registry (queued to
        // the successor before this grant, on one machine delivered first).
        if (!state.announced.has(grant.instanceId)) {
          state.unannounced.push(grant)
          changed()
          continue
        }
        const entry = state.members.get(grant.instanceId)
        if (entry !== undefined) {
          send(entry.connection, { _tag: "Granted", id: grant.requestId, resource: grant.resource })
        }
      }
    }

    /** Asks the oldest member to be the successor, unless one is designated (`Registry.designate`). */
    const designate = () => {
      const designee = Registry.designate(state)
      if (designee !== undefined) send(designee.connection, { _tag: "Designate" })
    }

    const thaw = () => {
      deliver(state.grants.thaw())
      emit({ _tag: "Thawed" })
      designate()
    }

    const thawIfComplete = () => {
      if (Registry.thawDue(state)) thaw()
    }

    const refuse = (connection: ConnectionId, reason: Registry.Refusal) => {
      send(connection, { _tag: "Refused", reason, program, version: protocolVersion, settings })
      close(connection)
    }

    /**
     * A registration, or a pre-registration at the takeover (admitted at once, its holdings
     * only once it confirms them: the pre-registration's may be stale, and adopting a stale
     * claim could push out the current holder; until then it counts as expected).
     */
    const register = (
      connection: ConnectionId,
      message: Registry.Register,
      preRegistered: boolean,
      welcomed: boolean,
    ) => {
      // Its close may not be read yet (it would look like a duplicate of itself): the
      // connection just closes, and the member elects again once the address is free.
      if (state.resigning) return close(connection)
      const refusal = Registry.refusalOf(program, settings, message)
      if (refusal === "InvalidRegistration") {
        emit({
          _tag: "Warning",
          message: `refused a registration: ${Registry.invalidRegistration(message)}`,
        })
      }
      if (refusal !== undefined) return refuse(connection, refusal)
      const existing = state.members.get(message.instanceId)
      // The same process registering again over a new connection to the address replaces
      // its old one; anything else with a known id is a duplicate.
      const reconnect =
        existing !== undefined && !preRegistered && Registry.sameProcess(existing.member, message)
      if (message.instanceId === selfId || (existing !== undefined && !reconnect)) {
        return refuse(connection, "DuplicateInstance")
      }
      state.registered.set(connection, message.instanceId)
      out.push(M.cancelTimer(registerTimer(connection)))
      if (reconnect) return reconnected(connection, existing, message)
      const entry: Entry = {
        member: {
          instanceId: message.instanceId,
          pid: message.pid,
          ...(message.pidNamespace === undefined ? {} : { pidNamespace: message.pidNamespace }),
          startedAtMs: message.startedAtMs,
          metadata: message.metadata,
          joinedAtMs: nowMs,
        },
        connection,
        holdingsKnown: !preRegistered,
        cutOff: false,
      }
      let lost: ReadonlyArray<Holding> = []
      if (preRegistered) state.expected.add(message.instanceId)
      else lost = Registry.adoptHoldings(state, selfId, message)
      state.members.set(message.instanceId, entry)
      if (!(preRegistered && welcomed)) send(connection, Registry.welcomeOf(state, selfId, lost))
      changed()
      const [member] = memberList([message.instanceId])
      emit({ _tag: "MemberJoined", member: member! })
      thawIfComplete()
      designate()
    }

    /**
     * A member registers again while its old connection is still open here (that
     * connection died on its side: its keep-alive timed out, and this end has not read the
     * close yet), or is closed with its permits reserved for it. The new connection takes
     * the entry's place; what the member holds passes over without being granted to anyone
     * in between.
     */
    const reconnected = (connection: ConnectionId, existing: Entry, message: Registry.Register) => {
      const { closedBecause: _, ...kept } = existing
      state.members.set(message.instanceId, {
        ...kept,
        connection,
        holdingsKnown: true,
        cutOff: false,
      })
      close(existing.connection)
      out.push(M.cancelTimer(reserveTimer(existing.connection)))
      const { lost, grants } = state.grants.replace(message.instanceId, message.holdings)
      state.expected.delete(message.instanceId)
      // Its standby listener closed with the old connection.
      Registry.undesignate(state, message.instanceId)
      send(connection, Registry.welcomeOf(state, selfId, lost))
      deliver(grants)
      changed()
      thawIfComplete()
      designate()
    }

    /** A member admitted from its pre-registration tells what it holds now. */
    const confirmed = (entry: Entry, message: Registry.Register) => {
      entry.holdingsKnown = true
      const lost = Registry.adoptHoldings(state, selfId, message)
      // Only permits it could not keep need an answer.
      if (lost.length > 0) send(entry.connection, Registry.welcomeOf(state, selfId, lost))
      changed()
      thawIfComplete()
      designate()
    }

    /** A member is gone, with everything it held or waited for. */
    const leave = (id: string, reason: string) => {
      const [member] = memberList([id])
      state.members.delete(id)
      if (Registry.undesignate(state, id)) designate()
      deliver(state.grants.remove(id))
      changed()
      if (member !== undefined) emit({ _tag: "MemberLeft", member, reason })
    }

    const closed = (connection: ConnectionId, reason: string) => {
      const id = state.registered.get(connection)
      state.registered.delete(connection)
      out.push(M.cancelTimer(registerTimer(connection)))
      const entry = id === undefined ? undefined : state.members.get(id)
      if (id === undefined || entry === undefined || entry.connection !== connection) return
      if (state.grants.holds(id)) {
        // It may be alive and count on its permits: this side dropped it, or it dropped a
        // connection it thought hung. They stay its own for the grace period, in which it
        // registers again and keeps them, or gives them up itself (at its own deadline).
        state.members.set(id, { ...entry, cutOff: true, closedBecause: reason })
        state.grants.withdraw(id)
        if (Registry.undesignate(state, id)) designate()
        changed()
        out.push(M.setTimer(reserveTimer(connection), graceMs))
        // Its pid means that process only in this supervisor's own pid namespace.
        if (Registry.pidVisible(entry.member, config.self.pidNamespace)) {
          emit({ _tag: "Reserved", connection, pid: entry.member.pid })
        }
        return
      }
      leave(id, reason)
    }

    /** The reservation of a cut-off member ends: the grace period is over, or its process is gone. */
    const reservationOver = (connection: ConnectionId) => {
      for (const [id, entry] of state.members) {
        if (entry.connection === connection && entry.cutOff) {
          out.push(M.cancelTimer(reserveTimer(connection)))
          return leave(id, entry.closedBecause ?? "its connection closed")
        }
      }
    }

    const received = (connection: ConnectionId, message: Message) => {
      const from = state.registered.get(connection)
      if (from === undefined) {
        if (message._tag === "Register") return register(connection, message, false, false)
        if (message._tag === "Inspect") {
          send(connection, Registry.registryMessage(state, memberList()))
        }
        return close(connection)
      }
      const entry = state.members.get(from)
      // Replaced by a newer connection of the same member (or gone): what this one still
      // carries, the member has stated again over the new one.
      if (entry === undefined || entry.connection !== connection) return
      switch (message._tag) {
        case "Register":
          // Once, from a member admitted from its pre-registration, about itself.
          if (
            !entry.holdingsKnown &&
            message.instanceId === from &&
            Registry.refusalOf(program, settings, message) === undefined
          ) {
            return confirmed(entry, message)
          }
          emit({ _tag: "Warning", message: `unexpected Register from ${from}; dropping it` })
          return close(connection)
        case "Request":
          return emit({ _tag: "Request", connection, from, request: message })
        case "Acquire": {
          const result = state.grants.acquire(from, message.id, message.resource, message.limit)
          if (result.refused !== undefined) {
            return send(connection, {
              _tag: "AcquireRefused",
              id: message.id,
              resource: message.resource,
              reason: result.refused._tag,
            })
          }
          deliver(result.grants)
          return changed()
        }
        case "Release":
          deliver(state.grants.release(from, message.resource))
          return changed()
        case "CancelAcquire":
          return state.grants.cancel(from, message.id)
        case "StandbyAt":
          // Only from the member asked; a late answer of a previous one is stale.
          if (from !== state.designated) return
          state.successor = { instanceId: from, address: message.address }
          return changed()
        case "CommandDone":
          return emit({ _tag: "CommandDone", done: message })
        default:
          // A subordinate never sends anything else: it is confused or hostile.
          emit({ _tag: "Warning", message: `unexpected ${message._tag} from ${from}; dropping it` })
          return close(connection)
      }
    }

    /** Sends the registry to every member whose holdings are known. */
    const sendRegistry = () => {
      state.membersDue = false
      const members = memberList()
      emit({ _tag: "RegistrySent", members })
      const message = Registry.registryMessage(state, members)
      for (const entry of state.members.values()) {
        if (entry.holdingsKnown && !entry.cutOff) send(entry.connection, message)
      }
      // Exactly the members now: one that left is granted nothing, and the set stays small.
      state.announced.clear()
      for (const member of members) state.announced.add(member.instanceId)
      deliver(state.unannounced.splice(0))
    }

    const commanded = (command: Command) => {
      switch (command._tag) {
        case "Connected":
          return void out.push(
            M.setTimer(registerTimer(command.connection), config.requestTimeoutMs),
          )
        case "Admit": {
          // Every Welcome is on the wire before any bookkeeping: each one ends a member's
          // wait, and all of them compete for the CPU at once. One message for all (nobody
          // lost anything yet), so one encoding.
          const welcome = Registry.welcomeOf(state, selfId, [])
          const ids = new Set<string>()
          const admitted: Array<readonly [ConnectionId, Registry.Register, boolean]> = []
          for (const { connection, preRegistration } of command.standing) {
            // A copy of an id is left to the registration's own check, which refuses it.
            const welcomed =
              preRegistration.instanceId !== selfId && !ids.has(preRegistration.instanceId)
            ids.add(preRegistration.instanceId)
            if (welcomed) send(connection, welcome)
            admitted.push([connection, preRegistration, welcomed])
          }
          for (const [connection, preRegistration, welcomed] of admitted) {
            register(connection, preRegistration, true, welcomed)
          }
          return
        }
        case "PreRegistered":
          return register(command.connection, command.preRegistration, true, false)
        case "Closed":
          return closed(command.connection, command.reason)
        case "ProcessGone":
          return reservationOver(command.connection)
        case "Acquire": {
          const result = state.grants.acquire(
            selfId,
            command.requestId,
            command.resource,
            command.limit,
          )
          if (result.refused !== undefined) {
            return emit({
              _tag: "Refused",
              requestId: command.requestId,
              resource: command.resource,
              reason: result.refused._tag,
            })
          }
          return deliver(result.grants)
        }
        case "Release":
          deliver(state.grants.release(selfId, command.resource))
          return changed()
        case "Cancel":
          return state.grants.cancel(selfId, command.requestId)
        case "Resign":
          state.resigning = true
          for (const entry of state.members.values()) {
            if (!entry.cutOff) send(entry.connection, { _tag: "Resigning" })
          }
          return
      }
    }

    const fired = (timer: string) => {
      if (timer === membersTimer) return sendRegistry()
      if (timer === graceTimer) return state.grants.frozen ? thaw() : undefined
      if (timer.startsWith("register:")) {
        const connection = timer.slice("register:".length)
        return state.registered.has(connection) ? undefined : close(connection)
      }
      if (timer.startsWith("reserve:")) return reservationOver(timer.slice("reserve:".length))
    }

    return { received, commanded, fired, deliver, thaw }
  }

  return {
    init: (context) => {
      const state: State = {
        grants: new Grants(),
        members: new Map(),
        expected: new Set(takeover.expected),
        joinedAtMs: context.nowMs,
        blind: takeover.blind,
        designated: undefined,
        successor: undefined,
        resigning: false,
        self: { ...config.self, joinedAtMs: context.nowMs },
        registered: new Map(),
        announced: new Set(takeover.announced),
        unannounced: [],
        membersDue: false,
      }
      // Members standing by with a pre-registration are admitted once the driver has their
      // connections, but grants wait for what they confirm to hold, as for any previous member.
      for (const id of takeover.standingBy) if (id !== selfId) state.expected.add(id)
      const out: Array<Output> = []
      const { deliver, thaw } = stepper(state, out, context.nowMs)
      // Own permits from before the failover first, then own waiting requests.
      const lost = state.grants.adopt(selfId, takeover.holdings)
      if (lost.length > 0) out.push(M.emit({ _tag: "Lost", lost }))
      if (state.expected.size > 0 || state.blind) state.grants.frozen = true
      for (const waiting of takeover.waiting) {
        deliver(
          state.grants.acquire(selfId, waiting.requestId, waiting.resource, waiting.limit).grants,
        )
      }
      if (state.grants.frozen) out.push(M.setTimer(graceTimer, graceMs))
      else thaw()
      return M.result(state, out)
    },
    step: (previous, input) => {
      const state = copy(previous)
      const out: Array<Output> = []
      const step = stepper(state, out, input.nowMs)
      switch (input._tag) {
        case "Receive":
          step.received(input.from, input.message)
          break
        case "Command":
          step.commanded(input.command)
          break
        case "TimerFired":
          step.fired(input.timer)
          break
      }
      return M.result(state, out)
    },
  }
}

/**
 * The registry as the supervisor shows it: itself and every member, with what each holds.
 *
 * @since 0.1.0
 * @category getters
 */
export const members = (state: State): Array<Member> => Registry.memberList(state, state.self)
