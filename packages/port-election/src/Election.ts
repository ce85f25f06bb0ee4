/**
 * The port election of seed 000: copies of one program on one machine elect a supervisor
 * by each trying to bind one well-known address. The one whose bind succeeds is the
 * supervisor; the others are subordinates that connect to it and register. The kernel
 * closing a TCP (or Unix) connection tells the supervisor that a subordinate died and
 * every subordinate that the supervisor died; keep-alives catch a hung peer. Then the
 * survivors immediately bind again, and the losers connect to the winner.
 *
 * The supervisor keeps the registry and controls what needs coordination: requests from
 * subordinates, commands to them, and machine-wide mutexes and semaphores. Permits survive
 * a failover: each subordinate re-registers what it holds, and a new supervisor grants
 * nothing new until the previous members have re-registered (or a grace period ends), so no
 * mutex is ever held twice and no semaphore exceeds its count.
 *
 * @since 0.1.0
 */
import { randomUUID } from "node:crypto"
import { Address, CloseReason, type Connection, Transport } from "@understudy/transport"
import {
  Clock,
  Context,
  Deferred,
  Effect,
  Fiber,
  Layer,
  PubSub,
  Queue,
  Random,
  Redacted,
  Result,
  type Scope,
  Stream,
} from "effect"
import {
  AcquireRefused,
  ElectionFailed,
  NotPermitted,
  OtherProgramOnAddress,
  RequestFailed,
  StrangerOnAddress,
} from "./ElectionError.ts"
import { type Grant, Grants } from "./Grants.ts"
import {
  codec,
  type Holding,
  type Member,
  type Message,
  maxFrameBytes,
  protocolVersion,
} from "./internal/protocol.ts"
import * as Secret from "./Secret.ts"

export type { Holding, Member }

/** @since 0.1.0 @category models */
export interface ElectionOptions {
  /** Instances elect together only with instances of the same program name. */
  readonly program: string
  /** The election address: `tcp://127.0.0.1:PORT`, `tcp://[::1]:PORT` or `unix://@name`. */
  readonly address: Address.StreamAddress
  /** Unique across restarts and pid reuse. Default: pid and a random UUID. */
  readonly instanceId?: string
  /** Shown in the registry (e.g. the command an instance runs). */
  readonly metadata?: Readonly<Record<string, string>>
  /**
   * The per-user secret proven in every handshake. Default: `Secret.load()` of
   * `~/.understudy/secret`; `{ path }` for another file; a value for tests.
   */
  readonly secret?: Redacted.Redacted<Uint8Array> | { readonly path: string }
  /** Keep-alive on every connection: a hung peer is dropped after `timeoutMs`. */
  readonly keepAlive?: { readonly intervalMs: number; readonly timeoutMs: number }
  /** Time allowed for a request, a command, the handshake and registration. Default 5,000. */
  readonly requestTimeoutMs?: number
  /**
   * How long a new supervisor waits for the previous members to re-register their
   * permits before it grants new ones. Default 1,000 ms; ends early once every member of
   * the last registry it saw is back. A supervisor that never saw a registry (the first
   * one on the machine, or a newcomer that won the bind during a failover) cannot tell
   * the two apart, so it waits the whole grace period before its first grant.
   */
  readonly graceMs?: number
  /** Bind-or-connect attempts without success before giving up. Default 2,000. */
  readonly attemptsMax?: number
}

/** @since 0.1.0 @category models */
export type Role =
  | { readonly _tag: "Electing" }
  | { readonly _tag: "Supervisor" }
  | { readonly _tag: "Subordinate"; readonly supervisorId: string }
  | { readonly _tag: "Failed"; readonly error: ElectionError }

/** @since 0.1.0 @category models */
export type ElectionError =
  | StrangerOnAddress
  | OtherProgramOnAddress
  | NotPermitted
  | ElectionFailed

/** @since 0.1.0 @category models */
export type ElectionEvent =
  | { readonly _tag: "Elected"; readonly instanceId: string; readonly atMs: number }
  | { readonly _tag: "BecameSubordinate"; readonly supervisorId: string; readonly atMs: number }
  | { readonly _tag: "MemberJoined"; readonly member: Member }
  | { readonly _tag: "MemberLeft"; readonly member: Member; readonly reason: string }
  | {
      readonly _tag: "SupervisorLost"
      readonly supervisorId: string
      readonly reason: string
      readonly atMs: number
    }
  | { readonly _tag: "PermitLost"; readonly resource: string }
  | { readonly _tag: "Failed"; readonly error: ElectionError }

/** A held mutex or semaphore permit. @since 0.1.0 @category models */
export interface Permit {
  readonly resource: string
  /**
   * Completes if the permit is lost while its scope is still open: this instance could not
   * re-register it with a new supervisor before the resource was given to others.
   */
  readonly lost: Effect.Effect<void>
}

/** How long the supervisor gathers registry changes before sending the registry out. */
const membersBatchMs = 25

/** Limits on what a registration may carry. */
const registration = {
  instanceIdLengthMax: 200,
  metadataEntriesMax: 64,
  metadataValueLengthMax: 1024,
}

/** A handler of coordinated requests or commands; its result must be JSON. */
export type Handler = (payload: unknown, from: string) => Effect.Effect<unknown, unknown>

/** @since 0.1.0 @category services */
export class PortElection extends Context.Service<
  PortElection,
  {
    readonly instanceId: string
    readonly role: Effect.Effect<Role>
    /**
     * Events from the moment of subscription on. The first role was taken before `make`
     * returned, so its `Elected` / `BecameSubordinate` is not in the stream: read `role`.
     */
    readonly events: Stream.Stream<ElectionEvent>
    /** The registry: authoritative on the supervisor, the last copy on a subordinate. */
    readonly members: Effect.Effect<ReadonlyArray<Member>>
    /**
     * Asks the supervisor to run `operation` (the handler registered with `serve` on
     * whichever instance is the supervisor). Waits for an election in progress.
     */
    readonly request: (operation: string, payload: unknown) => Effect.Effect<unknown, RequestFailed>
    /** Registers the handler this instance runs for `operation` while it is supervisor. */
    readonly serve: (operation: string, handler: Handler) => Effect.Effect<void>
    /** Registers the handler this instance runs when the supervisor sends `name`. */
    readonly onCommand: (name: string, handler: Handler) => Effect.Effect<void>
    /**
     * Supervisor only: runs command `name` on one instance or on all (itself included) and
     * collects their answers.
     */
    readonly command: (
      target: string | "all",
      name: string,
      payload: unknown,
    ) => Effect.Effect<
      ReadonlyArray<{
        readonly instanceId: string
        readonly ok: boolean
        readonly payload: unknown
      }>,
      RequestFailed
    >
    /**
     * A permit of a machine-wide semaphore of `limit` permits (1, the default, makes it a
     * mutex), granted by the supervisor in request order and released when the scope
     * closes or this instance dies.
     */
    readonly acquire: (
      resource: string,
      options?: { readonly limit?: number },
    ) => Effect.Effect<Permit, AcquireRefused, Scope.Scope>
  }
>()("@understudy/port-election/PortElection") {}

interface PermitState {
  readonly resource: string
  readonly limit: number
  readonly lost: Deferred.Deferred<void>
}

interface PendingAcquire {
  readonly resource: string
  readonly limit: number
  readonly done: Deferred.Deferred<void, AcquireRefused>
}

interface MemberEntry {
  readonly member: Omit<Member, "holdings" | "waiting" | "role">
  readonly connection: Connection.Connection<Message>
}

interface SupervisorState {
  readonly grants: Grants
  readonly members: Map<string, MemberEntry>
  /** Previous members whose permits the grace period waits for. */
  readonly expected: Set<string>
  readonly pendingCommands: Map<string, Deferred.Deferred<{ ok: boolean; payload: unknown }>>
  readonly joinedAtMs: number
  /** Signals a registry change to the broadcaster (a dropping queue of one). */
  readonly changed: Queue.Queue<void>
  /** No registry was ever seen: who holds permits is unknown until the grace period ends. */
  readonly blind: boolean
}

const describeError = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : JSON.stringify(error)

/**
 * Runs this instance's part in the election until the scope closes. Completes once the
 * instance has a first role, or fails if the address is held by a stranger, another
 * program, or another user.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: ElectionOptions,
): Effect.Effect<
  PortElection["Service"],
  ElectionError | Secret.SecretError,
  Transport.Transport | Scope.Scope
> =>
  Effect.gen(function* () {
    const transport = yield* Transport.Transport
    const address = options.address
    const addressText = Address.format(address)
    // Instance ids must be unique across processes and restarts, so they come from the
    // OS's randomness rather than the (possibly seeded) Effect Random.
    const instanceId = options.instanceId ?? `${process.pid}-${randomUUID()}`
    const startedAtMs = yield* Clock.currentTimeMillis
    const requestTimeoutMs = options.requestTimeoutMs ?? 5_000
    const graceMs = options.graceMs ?? 1_000
    const attemptsMax = options.attemptsMax ?? 2_000
    const clusterKey =
      options.secret !== undefined && Redacted.isRedacted(options.secret)
        ? options.secret
        : yield* Secret.load(options.secret?.path)
    const connectionOptions = {
      codec,
      maxFrameBytes,
      keepAlive: options.keepAlive ?? { intervalMs: 200, timeoutMs: 1_500 },
      clusterKey,
      handshakeTimeoutMs: requestTimeoutMs,
    }

    const events = yield* PubSub.unbounded<ElectionEvent>()
    const emit = (event: ElectionEvent) => PubSub.publish(events, event)
    const now = Clock.currentTimeMillis

    let role: Role = { _tag: "Electing" }
    const firstRole = yield* Deferred.make<void, ElectionError>()
    /** Completed (and replaced) whenever this instance gets a role: wakes waiting requests. */
    let settled = yield* Deferred.make<void>()
    const settle = Effect.suspend(() => {
      const previous = settled
      settled = Deferred.makeUnsafe<void>()
      return Deferred.succeed(previous, undefined)
    })

    const held = new Set<PermitState>()
    const pendingAcquires = new Map<string, PendingAcquire>()
    const pendingRequests = new Map<
      string,
      { readonly operation: string; readonly done: Deferred.Deferred<unknown, RequestFailed> }
    >()
    const handlers = new Map<string, Handler>()
    const commandHandlers = new Map<string, Handler>()
    let lastMembers: ReadonlyArray<Member> = []
    let upstream: Connection.Connection<Message> | undefined
    let supervisor: SupervisorState | undefined
    let counter = 0
    const nextId = () => `${instanceId}:${++counter}`

    const holdings = (): Array<Holding> => {
      const byResource = new Map<string, Holding>()
      for (const permit of held) {
        const current = byResource.get(permit.resource)
        byResource.set(permit.resource, {
          resource: permit.resource,
          limit: permit.limit,
          permits: (current?.permits ?? 0) + 1,
        })
      }
      return [...byResource.values()]
    }

    /** Drops permits the new supervisor could not keep, and tells their holders. */
    const losePermits = (lost: ReadonlyArray<Holding>) =>
      Effect.forEach(
        lost,
        (holding) =>
          Effect.gen(function* () {
            let remaining = holding.permits
            for (const permit of held) {
              if (remaining === 0) break
              if (permit.resource !== holding.resource) continue
              held.delete(permit)
              remaining--
              yield* Deferred.succeed(permit.lost, undefined)
            }
            yield* emit({ _tag: "PermitLost", resource: holding.resource })
          }),
        { discard: true },
      )

    const runHandler = (
      table: Map<string, Handler>,
      name: string,
      payload: unknown,
      from: string,
    ): Effect.Effect<{ ok: boolean; payload: unknown }> => {
      const handler = table.get(name)
      if (handler === undefined)
        return Effect.succeed({ ok: false, payload: `no handler for ${name}` })
      return handler(payload, from).pipe(
        Effect.map((result) => ({ ok: true, payload: result ?? null })),
        Effect.catchCause((cause) => Effect.succeed({ ok: false, payload: describeError(cause) })),
      )
    }

    // ---- supervisor ---------------------------------------------------------------

    const memberList = (state: SupervisorState): Array<Member> => {
      const snapshot = state.grants.snapshot()
      const holdingsOf = (id: string) =>
        snapshot.flatMap((r) =>
          r.holders
            .filter((h) => h.instanceId === id)
            .map((h) => ({ resource: r.resource, limit: r.limit, permits: h.permits })),
        )
      const waitingOf = (id: string) =>
        snapshot.filter((r) => r.waiting.includes(id)).map((r) => r.resource)
      const self: Member = {
        instanceId,
        pid: process.pid,
        startedAtMs,
        metadata: { ...options.metadata },
        role: "supervisor",
        joinedAtMs: state.joinedAtMs,
        holdings: holdingsOf(instanceId),
        waiting: waitingOf(instanceId),
      }
      return [
        self,
        ...[...state.members.values()].map((entry) => ({
          ...entry.member,
          role: "subordinate" as const,
          holdings: holdingsOf(entry.member.instanceId),
          waiting: waitingOf(entry.member.instanceId),
        })),
      ]
    }

    /** Marks the registry changed; the broadcaster sends it once for a burst of changes. */
    const broadcastMembers = (state: SupervisorState) =>
      Effect.sync(() => void Queue.offerUnsafe(state.changed, undefined))

    /**
     * Sends the registry to every subordinate, at most once per `membersBatchMs`: when a
     * failover brings every survivor back at once, one registry goes out per batch rather
     * than one per registration to every member (which grows with the square of the group).
     */
    const broadcaster = (state: SupervisorState) =>
      Effect.forever(
        Effect.gen(function* () {
          yield* Queue.take(state.changed)
          yield* Effect.sleep(membersBatchMs)
          yield* Queue.clear(state.changed)
          const members = memberList(state)
          lastMembers = members
          const message: Message = { _tag: "Members", members }
          yield* Effect.forEach(
            state.members.values(),
            (entry) => Effect.ignore(entry.connection.send(message)),
            { discard: true },
          )
        }),
      )

    /** Hands out permits: to this instance directly, to members over their connection. */
    const deliver = (state: SupervisorState, grants: ReadonlyArray<Grant>): Effect.Effect<void> =>
      Effect.forEach(
        grants,
        (grant) => {
          if (grant.instanceId === instanceId) {
            const pending = pendingAcquires.get(grant.requestId)
            if (pending === undefined) {
              // Given up meanwhile: hand the permit back.
              return deliver(state, state.grants.release(instanceId, grant.resource))
            }
            return Deferred.succeed(pending.done, undefined)
          }
          const entry = state.members.get(grant.instanceId)
          const message: Message = {
            _tag: "Granted",
            id: grant.requestId,
            resource: grant.resource,
          }
          return entry === undefined ? Effect.void : Effect.ignore(entry.connection.send(message))
        },
        { discard: true },
      )

    const thawIfComplete = (state: SupervisorState) =>
      state.grants.frozen && !state.blind && state.expected.size === 0
        ? deliver(state, state.grants.thaw())
        : Effect.void

    const serveConnection = (state: SupervisorState, connection: Connection.Connection<Message>) =>
      Effect.gen(function* () {
        let memberId: string | undefined
        const send = (message: Message) => Effect.ignore(connection.send(message))

        const onRegister = (message: Extract<Message, { _tag: "Register" }>) =>
          Effect.gen(function* () {
            if (message.program !== options.program || message.version !== protocolVersion) {
              yield* send({
                _tag: "Refused",
                reason:
                  message.program !== options.program ? "DifferentProgram" : "IncompatibleVersion",
                program: options.program,
                version: protocolVersion,
              })
              return yield* connection.close
            }
            const invalid = invalidRegistration(message)
            if (invalid !== undefined) {
              yield* Effect.logWarning(`refused a registration: ${invalid}`)
              yield* send({
                _tag: "Refused",
                reason: "InvalidRegistration",
                program: options.program,
                version: protocolVersion,
              })
              return yield* connection.close
            }
            if (message.instanceId === instanceId || state.members.has(message.instanceId)) {
              yield* send({
                _tag: "Refused",
                reason: "DuplicateInstance",
                program: options.program,
                version: protocolVersion,
              })
              return yield* connection.close
            }
            memberId = message.instanceId
            const lost = state.grants.adopt(message.instanceId, message.holdings)
            state.members.set(message.instanceId, {
              member: {
                instanceId: message.instanceId,
                pid: message.pid,
                startedAtMs: message.startedAtMs,
                metadata: message.metadata,
                joinedAtMs: yield* now,
              },
              connection,
            })
            state.expected.delete(message.instanceId)
            yield* send({ _tag: "Welcome", supervisorId: instanceId, lost })
            yield* broadcastMembers(state)
            const member = memberList(state).find((m) => m.instanceId === message.instanceId)!
            yield* emit({ _tag: "MemberJoined", member })
            yield* thawIfComplete(state)
          })

        const onMessage = (message: Message): Effect.Effect<void> => {
          if (memberId === undefined) {
            if (message._tag === "Register") return onRegister(message)
            if (message._tag === "Inspect") {
              return Effect.andThen(
                send({ _tag: "Members", members: memberList(state) }),
                connection.close,
              )
            }
            return connection.close
          }
          const from = memberId
          switch (message._tag) {
            case "Request":
              return Effect.asVoid(
                Effect.forkChild(
                  Effect.flatMap(
                    runHandler(handlers, message.operation, message.payload, from),
                    (r) => send({ _tag: "Reply", id: message.id, ...r }),
                  ),
                ),
              )
            case "Acquire": {
              const result = state.grants.acquire(from, message.id, message.resource, message.limit)
              if (result.refused !== undefined) {
                return send({
                  _tag: "AcquireRefused",
                  id: message.id,
                  resource: message.resource,
                  reason: result.refused._tag,
                })
              }
              return Effect.andThen(deliver(state, result.grants), broadcastMembers(state))
            }
            case "Release":
              return Effect.andThen(
                deliver(state, state.grants.release(from, message.resource)),
                broadcastMembers(state),
              )
            case "CancelAcquire":
              return Effect.sync(() => state.grants.cancel(from, message.id))
            case "CommandDone": {
              const pending = state.pendingCommands.get(message.id)
              return pending === undefined
                ? Effect.void
                : Deferred.succeed(pending, { ok: message.ok, payload: message.payload })
            }
            default:
              // A subordinate never sends anything else: it is confused or hostile.
              return Effect.andThen(
                Effect.logWarning(`unexpected ${message._tag} from ${from}; dropping it`),
                connection.close,
              )
          }
        }

        // An unregistered peer gets the handshake time-out to register.
        yield* Effect.forkChild(
          Effect.andThen(Effect.sleep(requestTimeoutMs), () =>
            memberId === undefined ? connection.close : Effect.void,
          ),
        )
        yield* Stream.runForEach(connection.messages, onMessage)
        const reason = yield* connection.closed
        if (memberId === undefined) return
        const member = memberList(state).find((m) => m.instanceId === memberId)
        state.members.delete(memberId)
        yield* deliver(state, state.grants.remove(memberId))
        yield* broadcastMembers(state)
        if (member !== undefined) {
          yield* emit({ _tag: "MemberLeft", member, reason: CloseReason.describe(reason) })
        }
      })

    const runSupervisor = (listener: Transport.Listener<Message>) =>
      Effect.gen(function* () {
        const state: SupervisorState = {
          grants: new Grants(),
          members: new Map(),
          expected: new Set(
            lastMembers
              .filter((m) => m.role === "subordinate" && m.instanceId !== instanceId)
              .map((m) => m.instanceId),
          ),
          pendingCommands: new Map(),
          joinedAtMs: yield* now,
          changed: yield* Queue.dropping<void>(1),
          blind: !lastMembers.some((m) => m.role === "supervisor" && m.instanceId !== instanceId),
        }
        // Own permits from before the failover first, then own waiting requests.
        const lost = state.grants.adopt(instanceId, holdings())
        yield* losePermits(lost)
        if (state.expected.size > 0 || state.blind) state.grants.frozen = true
        // Own waiting requests: granted at once when the resource has room and nothing is
        // frozen, and those grants must be delivered (to this instance) like any other.
        const ownGrants: Array<Grant> = []
        for (const [id, pending] of pendingAcquires) {
          ownGrants.push(
            ...state.grants.acquire(instanceId, id, pending.resource, pending.limit).grants,
          )
        }
        supervisor = state
        yield* Effect.forkScoped(broadcaster(state))
        role = { _tag: "Supervisor" }
        lastMembers = memberList(state)
        yield* emit({ _tag: "Elected", instanceId, atMs: yield* now })
        yield* Deferred.succeed(firstRole, undefined)
        yield* settle
        if (state.grants.frozen) {
          yield* Effect.forkChild(
            Effect.andThen(Effect.sleep(graceMs), () =>
              state.grants.frozen ? deliver(state, state.grants.thaw()) : Effect.void,
            ),
          )
        }
        yield* deliver(state, [...ownGrants, ...(state.grants.frozen ? [] : state.grants.thaw())])
        // A supervisor that stops on purpose says so, so subordinates elect at once.
        yield* Effect.addFinalizer(() =>
          Effect.forEach(
            state.members.values(),
            (entry) => Effect.ignore(entry.connection.send({ _tag: "Resigning" })),
            { discard: true },
          ),
        )
        yield* Stream.runForEach(listener.connections, (connection) =>
          Effect.forkChild(serveConnection(state, connection)),
        )
        return yield* Effect.never
      })

    // ---- subordinate --------------------------------------------------------------

    const runSubordinate = (connection: Connection.Connection<Message>) =>
      Effect.gen(function* () {
        const welcomed = yield* Deferred.make<string, ElectionError>()
        let supervisorId = ""
        const send = (message: Message) => Effect.ignore(connection.send(message))

        const onMessage = (message: Message): Effect.Effect<void> => {
          switch (message._tag) {
            case "Welcome":
              supervisorId = message.supervisorId
              return Effect.andThen(
                losePermits(message.lost),
                Deferred.succeed(welcomed, message.supervisorId),
              )
            case "Refused":
              return Deferred.fail(
                welcomed,
                new OtherProgramOnAddress({
                  address: addressText,
                  reason: message.reason,
                  program: message.program,
                  version: message.version,
                }),
              )
            case "Members":
              return Effect.sync(() => {
                lastMembers = message.members
              })
            case "Reply": {
              const pending = pendingRequests.get(message.id)
              if (pending === undefined) return Effect.void
              pendingRequests.delete(message.id)
              return message.ok
                ? Deferred.succeed(pending.done, message.payload)
                : Deferred.fail(
                    pending.done,
                    new RequestFailed({
                      operation: pending.operation,
                      reason: "HandlerFailed",
                      detail: String(message.payload),
                    }),
                  )
            }
            case "Command":
              return Effect.asVoid(
                Effect.forkChild(
                  Effect.flatMap(
                    runHandler(commandHandlers, message.name, message.payload, supervisorId),
                    (r) => send({ _tag: "CommandDone", id: message.id, ...r }),
                  ),
                ),
              )
            case "Granted": {
              const pending = pendingAcquires.get(message.id)
              if (pending === undefined)
                return send({ _tag: "Release", resource: message.resource })
              return Deferred.succeed(pending.done, undefined)
            }
            case "Resigning":
              // The supervisor leaves on purpose: go to the election now, not at its close.
              return connection.close
            case "AcquireRefused": {
              const pending = pendingAcquires.get(message.id)
              if (pending === undefined) return Effect.void
              return Deferred.fail(
                pending.done,
                new AcquireRefused({ resource: message.resource, detail: message.reason }),
              )
            }
            default:
              return Effect.void
          }
        }

        const reader = yield* Effect.forkChild(Stream.runForEach(connection.messages, onMessage))
        const registered = yield* Effect.exit(
          connection.send({
            _tag: "Register",
            program: options.program,
            version: protocolVersion,
            instanceId,
            pid: process.pid,
            startedAtMs,
            metadata: { ...options.metadata },
            holdings: holdings(),
          }),
        )
        if (registered._tag === "Failure") return "retry" as const
        const welcome = yield* Deferred.await(welcomed).pipe(
          Effect.timeoutOption(requestTimeoutMs),
          Effect.raceFirst(Effect.map(connection.closed, () => undefined)),
        )
        if (welcome === undefined || welcome._tag === "None") return "retry" as const
        upstream = connection
        role = { _tag: "Subordinate", supervisorId: welcome.value }
        yield* emit({ _tag: "BecameSubordinate", supervisorId: welcome.value, atMs: yield* now })
        yield* Deferred.succeed(firstRole, undefined)
        for (const [id, pending] of pendingAcquires) {
          yield* send({ _tag: "Acquire", id, resource: pending.resource, limit: pending.limit })
        }
        yield* settle
        const reason = yield* connection.closed
        yield* Effect.exit(Fiber.join(reader))
        upstream = undefined
        role = { _tag: "Electing" }
        for (const [id, pending] of pendingRequests) {
          pendingRequests.delete(id)
          yield* Deferred.fail(
            pending.done,
            new RequestFailed({
              operation: pending.operation,
              reason: "SupervisorLost",
              detail: CloseReason.describe(reason),
            }),
          )
        }
        yield* emit({
          _tag: "SupervisorLost",
          supervisorId: welcome.value,
          reason: CloseReason.describe(reason),
          atMs: yield* now,
        })
        return "lost" as const
      })

    // ---- the election -------------------------------------------------------------

    /** One try: bind and supervise, or connect and serve as a subordinate. */
    const attempt = Effect.scoped(
      Effect.gen(function* () {
        const listened = yield* Effect.result(transport.listen(address, connectionOptions))
        if (Result.isSuccess(listened)) return yield* runSupervisor(listened.success)
        if (listened.failure.reason !== "AddressInUse") {
          return yield* new ElectionFailed({
            address: addressText,
            attempts: 1,
            detail: listened.failure.message,
          })
        }
        const connected = yield* Effect.result(transport.connect(address, connectionOptions))
        if (Result.isSuccess(connected)) return yield* runSubordinate(connected.success)
        const error = connected.failure
        if (error._tag === "ConnectError") return "retry" as const
        switch (error.reason) {
          case "NotUnderstudy":
            return yield* new StrangerOnAddress({ address: addressText, detail: error.detail })
          case "VersionMismatch":
            return yield* new OtherProgramOnAddress({
              address: addressText,
              reason: "IncompatibleVersion",
              program: "unknown",
              version: -1,
            })
          default:
            return yield* new NotPermitted({ address: addressText, detail: error.detail })
        }
      }),
    )

    const electionLoop = Effect.gen(function* () {
      let failures = 0
      while (failures < attemptsMax) {
        const outcome = yield* attempt
        if (outcome === "lost") {
          failures = 0
          continue
        }
        failures++
        // Somebody else is mid-bind or mid-start: back off a little, with jitter so the
        // losers do not retry in lockstep.
        const ceilingMs = Math.min(250, 2 ** Math.min(failures, 8))
        yield* Effect.sleep(Math.ceil((yield* Random.next) * ceilingMs))
      }
      return yield* new ElectionFailed({
        address: addressText,
        attempts: failures,
        detail: "the address was held but never answered",
      })
    }).pipe(
      Effect.catch((error: ElectionError) =>
        Effect.gen(function* () {
          role = { _tag: "Failed", error }
          yield* emit({ _tag: "Failed", error })
          yield* Deferred.fail(firstRole, error)
          yield* settle
        }),
      ),
    )

    yield* Effect.forkScoped(electionLoop)
    yield* Deferred.await(firstRole)

    // ---- the public API ------------------------------------------------------------

    /** Waits (bounded) until this instance is supervisor or connected to one. */
    const awaitRole = (operation: string) =>
      Effect.gen(function* () {
        const deadline = (yield* now) + requestTimeoutMs
        while (role._tag === "Electing") {
          const left = deadline - (yield* now)
          if (left <= 0) break
          yield* Deferred.await(settled).pipe(Effect.timeoutOption(left))
        }
        if (role._tag === "Supervisor" || role._tag === "Subordinate") return role
        return yield* new RequestFailed({
          operation,
          reason: "Timeout",
          detail: role._tag === "Failed" ? role.error.message : "no supervisor elected in time",
        })
      })

    const request = (operation: string, payload: unknown) =>
      Effect.gen(function* () {
        const current = yield* awaitRole(operation)
        if (current._tag === "Supervisor") {
          const result = yield* runHandler(handlers, operation, payload, instanceId)
          if (result.ok) return result.payload
          return yield* new RequestFailed({
            operation,
            reason: handlers.has(operation) ? "HandlerFailed" : "NoHandler",
            detail: String(result.payload),
          })
        }
        const id = nextId()
        const done = yield* Deferred.make<unknown, RequestFailed>()
        pendingRequests.set(id, { operation, done })
        yield* upstream!.send({ _tag: "Request", id, operation, payload }).pipe(
          Effect.catch(() =>
            Deferred.fail(
              done,
              new RequestFailed({
                operation,
                reason: "SupervisorLost",
                detail: "connection closed",
              }),
            ),
          ),
        )
        return yield* Deferred.await(done).pipe(
          Effect.timeoutOrElse({
            duration: requestTimeoutMs,
            orElse: () =>
              Effect.fail(
                new RequestFailed({
                  operation,
                  reason: "Timeout",
                  detail: `no reply in ${requestTimeoutMs} ms`,
                }),
              ),
          }),
          Effect.ensuring(Effect.sync(() => pendingRequests.delete(id))),
        )
      })

    const command = (target: string | "all", name: string, payload: unknown) =>
      Effect.gen(function* () {
        const state = supervisor
        if (state === undefined || role._tag !== "Supervisor") {
          return yield* new RequestFailed({
            operation: name,
            reason: "NotSupervisor",
            detail: "only the supervisor sends commands",
          })
        }
        const targets =
          target === "all"
            ? [instanceId, ...state.members.keys()]
            : target === instanceId || state.members.has(target)
              ? [target]
              : []
        if (targets.length === 0) {
          return yield* new RequestFailed({
            operation: name,
            reason: "NoHandler",
            detail: `no member ${target}`,
          })
        }
        return yield* Effect.forEach(
          targets,
          (id) =>
            Effect.gen(function* () {
              if (id === instanceId) {
                return {
                  instanceId: id,
                  ...(yield* runHandler(commandHandlers, name, payload, id)),
                }
              }
              const commandId = nextId()
              const done = yield* Deferred.make<{ ok: boolean; payload: unknown }>()
              state.pendingCommands.set(commandId, done)
              yield* Effect.ignore(
                state.members
                  .get(id)!
                  .connection.send({ _tag: "Command", id: commandId, name, payload }),
              )
              const answer = yield* Deferred.await(done).pipe(
                Effect.timeoutOption(requestTimeoutMs),
                Effect.ensuring(Effect.sync(() => state.pendingCommands.delete(commandId))),
              )
              return answer._tag === "Some"
                ? { instanceId: id, ...answer.value }
                : { instanceId: id, ok: false, payload: `no answer in ${requestTimeoutMs} ms` }
            }),
          { concurrency: "unbounded" },
        )
      })

    const acquire = (resource: string, acquireOptions: { readonly limit?: number } = {}) =>
      Effect.gen(function* () {
        const limit = acquireOptions.limit ?? 1
        const id = nextId()
        const done = yield* Deferred.make<void, AcquireRefused>()
        pendingAcquires.set(id, { resource, limit, done })
        const cancel = Effect.suspend(() => {
          pendingAcquires.delete(id)
          if (supervisor !== undefined) {
            supervisor.grants.cancel(instanceId, id)
            return Effect.void
          }
          return upstream === undefined
            ? Effect.void
            : Effect.ignore(upstream.send({ _tag: "CancelAcquire", id }))
        })
        if (supervisor !== undefined) {
          const result = supervisor.grants.acquire(instanceId, id, resource, limit)
          if (result.refused !== undefined) {
            pendingAcquires.delete(id)
            return yield* new AcquireRefused({ resource, detail: result.refused._tag })
          }
          yield* deliver(supervisor, result.grants)
        } else if (upstream !== undefined) {
          yield* Effect.ignore(upstream.send({ _tag: "Acquire", id, resource, limit }))
        }
        // Otherwise an election is on: the request goes out with the re-registration.
        yield* Deferred.await(done).pipe(Effect.onInterrupt(() => cancel))
        pendingAcquires.delete(id)
        const permit: PermitState = { resource, limit, lost: yield* Deferred.make<void>() }
        held.add(permit)
        yield* Effect.addFinalizer(() =>
          Effect.suspend(() => {
            if (!held.delete(permit)) return Effect.void
            if (supervisor !== undefined) {
              const state = supervisor
              return Effect.andThen(
                deliver(state, state.grants.release(instanceId, resource)),
                broadcastMembers(state),
              )
            }
            return upstream === undefined
              ? Effect.void
              : Effect.ignore(upstream.send({ _tag: "Release", resource }))
          }),
        )
        if (supervisor !== undefined) yield* broadcastMembers(supervisor)
        return { resource, lost: Deferred.await(permit.lost) } satisfies Permit
      })

    return PortElection.of({
      instanceId,
      role: Effect.sync(() => role),
      events: Stream.fromPubSub(events),
      members: Effect.sync(() => (supervisor !== undefined ? memberList(supervisor) : lastMembers)),
      request,
      serve: (operation, handler) => Effect.sync(() => void handlers.set(operation, handler)),
      onCommand: (name, handler) => Effect.sync(() => void commandHandlers.set(name, handler)),
      command,
      acquire,
    })
  })

/** Why a registration can not be accepted, or undefined when it can. */
const invalidRegistration = (
  message: Extract<Message, { _tag: "Register" }>,
): string | undefined => {
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
  for (const holding of message.holdings) {
    if (holding.limit < 1 || holding.permits < 1 || holding.permits > holding.limit) {
      return `holding of ${holding.resource}: ${holding.permits} of ${holding.limit}`
    }
  }
  return undefined
}

/**
 * The election as a `Layer`: the instance takes part until the layer's scope closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: ElectionOptions,
): Layer.Layer<PortElection, ElectionError | Secret.SecretError, Transport.Transport> =>
  Layer.effect(PortElection, make(options))
