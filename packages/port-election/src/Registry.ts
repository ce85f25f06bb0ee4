/**
 * The supervisor's registry decisions, pure: who may register, what the registry says,
 * whose permits a new supervisor waits for, when grants thaw, and whom to designate as
 * successor. No Effect and no I/O: the supervisor driver (`Election.ts`) feeds it what
 * arrived and sends what it answers. The permits themselves are `Grants`.
 *
 * @since 0.1.0
 */
import type { Grants } from "./Grants.ts"
import {
  type Holding,
  type Member,
  type Message,
  protocolVersion,
  type SettingsSchema,
  type Successor,
} from "./internal/protocol.ts"

/** @since 0.1.0 @category models */
export type Register = Extract<Message, { _tag: "Register" }>
/** @since 0.1.0 @category models */
export type Welcome = Extract<Message, { _tag: "Welcome" }>
/** @since 0.1.0 @category models */
export type Refusal = Extract<Message, { _tag: "Refused" }>["reason"]

/**
 * Limits on what a registration may carry.
 *
 * @since 0.1.0
 * @category constants
 */
export const registration = {
  instanceIdLengthMax: 200,
  metadataEntriesMax: 64,
  metadataValueLengthMax: 1024,
} as const

/**
 * Who an instance is in the registry, without what it holds or waits for.
 *
 * @since 0.1.0
 * @category models
 */
export type Registrant = Omit<Member, "holdings" | "waiting" | "role">

/**
 * A registered member as the registry sees it; the driver's entry adds its connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry {
  readonly member: Registrant
  /**
   * Its holdings were adopted. Not yet for a member admitted from its pre-registration,
   * until it confirms them; meanwhile it is sent nothing, since its standby connection may
   * still be read by the reader that waited for the takeover.
   */
  holdingsKnown: boolean
  /**
   * Its connection closed while it held permits: they stay reserved for it (counted, given
   * to nobody) until it registers again or the reservation ends, and it stays in the
   * registry meanwhile, so that a successor waits for it too. Never designated.
   */
  cutOff: boolean
}

/**
 * The supervisor's registry.
 *
 * @since 0.1.0
 * @category models
 */
export interface State<E extends Entry = Entry> {
  readonly grants: Grants
  readonly members: Map<string, E>
  /** Previous members whose permits the grace period waits for. */
  readonly expected: Set<string>
  readonly joinedAtMs: number
  /**
   * No registry was ever seen: who holds permits is unknown until the grace period ends, or
   * until a re-registering member tells which registry it had.
   */
  blind: boolean
  /** The member asked to be successor, until it leaves. */
  designated: string | undefined
  /** The successor once its standby listener is up: sent out with the registry. */
  successor: Successor | undefined
  /**
   * Stopping on purpose: members were told `Resigning`, after the address was unbound. A
   * member that connected before the unbinding is not registered.
   */
  resigning: boolean
}

/**
 * Why a registration can not be accepted, or undefined when it can.
 *
 * @since 0.1.0
 * @category decisions
 */
export const invalidRegistration = (message: Register): string | undefined => {
  if (
    message.instanceId.length === 0 ||
    message.instanceId.length > registration.instanceIdLengthMax
  ) {
    return "instance id empty or too long"
  }
  if (!Number.isSafeInteger(message.pid) || message.pid <= 0) return `pid ${message.pid}`
  const metadata = Object.entries(message.metadata)
  if (
    metadata.length > registration.metadataEntriesMax ||
    metadata.some(([, value]) => value.length > registration.metadataValueLengthMax)
  ) {
    return "metadata over the limits"
  }
  if (message.previous?.some((id) => id.length > registration.instanceIdLengthMax)) {
    return "previous registry with an instance id too long"
  }
  for (const holding of message.holdings) {
    if (holding.limit < 1 || holding.permits < 1 || holding.permits > holding.limit) {
      return `holding of ${holding.resource}: ${holding.permits} of ${holding.limit}`
    }
  }
  return undefined
}

/** @since 0.1.0 @category models */
export type Settings = typeof SettingsSchema.Type

/** @since 0.1.0 @category decisions */
export const sameSettings = (a: Settings, b: Settings): boolean =>
  a.graceMs === b.graceMs &&
  a.keepAliveIntervalMs === b.keepAliveIntervalMs &&
  a.keepAliveTimeoutMs === b.keepAliveTimeoutMs

/** Timing as a person reads it. @since 0.1.0 @category formatting */
export const describeSettings = (settings: Settings): string =>
  `graceMs ${settings.graceMs}, keepAlive ${settings.keepAliveIntervalMs}/${settings.keepAliveTimeoutMs} ms`

/**
 * Why `message` can not be accepted by an election of `program` whose timing is `settings`
 * (a duplicate id aside), or undefined. A registration without timing (from an instance
 * that predates it) is taken as agreeing.
 *
 * @since 0.1.0
 * @category decisions
 */
export const refusalOf = (
  program: string,
  settings: Settings,
  message: Register,
): Refusal | undefined =>
  message.program !== program
    ? "DifferentProgram"
    : message.version !== protocolVersion
      ? "IncompatibleVersion"
      : invalidRegistration(message) !== undefined
        ? "InvalidRegistration"
        : message.settings !== undefined && !sameSettings(message.settings, settings)
          ? "DifferentSettings"
          : undefined

/**
 * The registration comes from the process a member entry stands for: the instance id is
 * unique across restarts, and pid and start time tell a copy that was given the same id.
 *
 * @since 0.1.0
 * @category decisions
 */
export const sameProcess = (member: Registrant, message: Register): boolean =>
  member.pid === message.pid && member.startedAtMs === message.startedAtMs

/**
 * Whether a supervisor in pid namespace `own` may ask the OS about `member`'s pid: only when
 * the member registered the same namespace. Elsewhere (another container sharing the
 * network namespace) its pid number may belong to an unrelated process here, or to none.
 *
 * @since 0.1.0
 * @category decisions
 */
export const pidVisible = (member: Registrant, own: string | undefined): boolean =>
  own !== undefined && member.pidNamespace === own

/**
 * Who may hold permits besides `self`, from the last registry it had: its subordinates,
 * but not the supervisor it was last registered with (whose permits went with it), even
 * when that registry came from an earlier supervisor.
 *
 * @since 0.1.0
 * @category decisions
 */
export const previousSubordinates = (
  lastMembers: ReadonlyArray<Member>,
  self: string,
  lastSupervisorId: string | undefined,
): Array<string> =>
  lastMembers
    .filter(
      (m) => m.role === "subordinate" && m.instanceId !== self && m.instanceId !== lastSupervisorId,
    )
    .map((m) => m.instanceId)

/**
 * Whether `lastMembers` is the registry of another supervisor than `self`: one that a new
 * supervisor can wait for, and that a Register names as `previous`.
 *
 * @since 0.1.0
 * @category decisions
 */
export const sawRegistry = (lastMembers: ReadonlyArray<Member>, self: string): boolean =>
  lastMembers.some((m) => m.role === "supervisor" && m.instanceId !== self)

/**
 * The registry entries of `ids` (all members when omitted), with what each holds; `self`
 * is the supervisor.
 *
 * @since 0.1.0
 * @category decisions
 */
export const memberList = (
  state: State,
  self: Registrant,
  ids?: ReadonlyArray<string>,
): Array<Member> => {
  const snapshot = state.grants.snapshot()
  const holdingsOf = (id: string) =>
    snapshot.flatMap((r) =>
      r.holders
        .filter((h) => h.instanceId === id)
        .map((h) => ({ resource: r.resource, limit: r.limit, permits: h.permits })),
    )
  const waitingOf = (id: string) =>
    snapshot.filter((r) => r.waiting.includes(id)).map((r) => r.resource)
  const supervisor: Member = {
    instanceId: self.instanceId,
    pid: self.pid,
    ...(self.pidNamespace === undefined ? {} : { pidNamespace: self.pidNamespace }),
    startedAtMs: self.startedAtMs,
    metadata: self.metadata,
    role: "supervisor",
    joinedAtMs: self.joinedAtMs,
    holdings: holdingsOf(self.instanceId),
    waiting: waitingOf(self.instanceId),
  }
  const subordinates =
    ids === undefined
      ? [...state.members.values()]
      : ids.flatMap((id) => state.members.get(id) ?? [])
  return [
    ...(ids === undefined || ids.includes(self.instanceId) ? [supervisor] : []),
    ...subordinates.map((entry) => ({
      ...entry.member,
      role: "subordinate" as const,
      holdings: holdingsOf(entry.member.instanceId),
      waiting: waitingOf(entry.member.instanceId),
    })),
  ]
}

/**
 * The registry message: the members and, once it stands by, the successor.
 *
 * @since 0.1.0
 * @category decisions
 */
export const registryMessage = (state: State, members: ReadonlyArray<Member>): Message =>
  state.successor === undefined
    ? { _tag: "Members", members }
    : { _tag: "Members", members, successor: state.successor }

/**
 * The answer to a registration: who supervises, what the member could not keep, and the
 * successor once one stands by.
 *
 * @since 0.1.0
 * @category decisions
 */
export const welcomeOf = (
  state: State,
  supervisorId: string,
  lost: ReadonlyArray<Holding>,
): Welcome =>
  state.successor === undefined
    ? { _tag: "Welcome", supervisorId, lost }
    : { _tag: "Welcome", supervisorId, lost, successor: state.successor }

/**
 * The member to ask to be successor, now recorded as designated: the oldest connected
 * one, unless one is designated. Not while the previous members re-register: the standby connections it
 * brings would compete with them for the CPU. Undefined when nobody is to be asked.
 *
 * @since 0.1.0
 * @category decisions
 */
export const designate = <E extends Entry>(state: State<E>): E | undefined => {
  if (state.designated !== undefined || (state.grants.frozen && !state.blind)) return undefined
  for (const entry of state.members.values()) {
    if (entry.cutOff) continue
    state.designated = entry.member.instanceId
    return entry
  }
  return undefined
}

/**
 * The designated member is gone (it left, or its connection was replaced, which closes its
 * standby listener): nobody is designated, nor announced as successor.
 *
 * @since 0.1.0
 * @category decisions
 */
export const undesignate = (state: State, instanceId: string): boolean => {
  if (state.designated !== instanceId) return false
  state.designated = undefined
  state.successor = undefined
  return true
}

/**
 * Grants are frozen only for the previous members' re-registration: true once every one
 * is back (and who they are is known).
 *
 * @since 0.1.0
 * @category decisions
 */
export const thawDue = (state: State): boolean =>
  state.grants.frozen && !state.blind && state.expected.size === 0

/**
 * Takes over what a member holds, as its registration (or its confirmation after a
 * takeover) claims, and learns from it whose permits to wait for if this supervisor never
 * saw a registry. Returns the permits it could not keep.
 *
 * @since 0.1.0
 * @category decisions
 */
export const adoptHoldings = (
  state: State,
  self: string,
  message: Register,
): ReadonlyArray<Holding> => {
  const lost = state.grants.adopt(message.instanceId, message.holdings)
  if (state.blind && state.grants.frozen && message.previous !== undefined) {
    // The registry this member had: wait for its members as if it had been ours.
    state.blind = false
    for (const id of message.previous) {
      if (id !== self && !state.members.has(id)) state.expected.add(id)
    }
  }
  state.expected.delete(message.instanceId)
  return lost
}
