/**
 * The port election of seed 000: copies of one program on one machine elect a supervisor
 * by each trying to bind one well-known address. The one whose bind succeeds is the
 * supervisor; the others are subordinates that connect to it and register. The kernel
 * closing a TCP (or Unix) connection tells the supervisor that a subordinate died and
 * every subordinate that the supervisor died; keep-alives catch a hung peer. Then the
 * survivors immediately bind again, and the losers connect to the winner.
 *
 * Failover is fast because it is prepared: the supervisor designates a successor (its
 * oldest member), which opens a standby listener, and every other subordinate connects to
 * it ahead of time and pre-registers there (who it is). When the supervisor dies, the
 * successor binds the election address first thing, admits every pre-registered member and
 * welcomes it over its standby connection: no race for the bind, no new connection, no
 * handshake and no registration round trip. Each member then confirms what it holds, and
 * grants wait for those confirmations as they wait for re-registrations. The designation is
 * only a shortcut: a successor that loses the bind (or dies too) closes its standby
 * connections, and their peers elect the usual way. Only the bind makes a supervisor.
 *
 * The supervisor keeps the registry and controls what needs coordination: requests from
 * subordinates, commands to them, and machine-wide mutexes and semaphores. Permits survive
 * a failover: each subordinate re-registers what it holds, and a new supervisor grants
 * nothing new until the previous members have re-registered (or a grace period ends), so no
 * mutex is ever held twice and no semaphore exceeds its count.
 *
 * @since 0.1.0
 */
import { Address, type Connection, Transport } from "@understudy/transport"
import {
  Clock,
  Context,
  Deferred,
  type Duration,
  Effect,
  Exit,
  Layer,
  PubSub,
  Redacted,
  Result,
  Scope,
  Stream,
} from "effect"
import * as Config from "./Config.ts"
import {
  type AcquireRefused,
  type ElectionConfigError,
  type ElectionFailed,
  type NotPermitted,
  type OtherProgramOnAddress,
  RequestFailed,
  type StrangerOnAddress,
} from "./ElectionError.ts"
import type { OwnCommand } from "./Grants.ts"
import { Identity } from "./Identity.ts"
import * as ElectionDriver from "./internal/election.ts"
import type { Instance, Shared } from "./internal/instance.ts"
import {
  codec,
  frameBytesMax,
  type Holding,
  type Member,
  type Message,
  preEncode,
  protocolVersion,
} from "./internal/protocol.ts"
import * as Subordinate from "./internal/subordinate.ts"
import * as Supervisor from "./internal/supervisor.ts"
import * as Machine from "./Machine.ts"
import * as Metrics from "./Metrics.ts"
import * as Registry from "./Registry.ts"
import * as Secret from "./Secret.ts"
import * as Standby from "./Standby.ts"

export type { Holding, Member }

/** @since 0.1.0 @category models */
export interface ElectionOptions {
  /** Instances elect together only with instances of the same program name. */
  readonly program: string
  /** The election address: `tcp://127.0.0.1:PORT`, `tcp://[::1]:PORT` or `unix://@name`. */
  readonly address: Address.StreamAddress
  /**
   * Unique across restarts and pid reuse. Default: the `Identity`'s pid and a unique id
   * (`process.pid` and a random UUID unless an `Identity` is provided).
   */
  readonly instanceId?: string
  /** Shown in the registry (e.g. the command an instance runs). */
  readonly metadata?: Readonly<Record<string, string>>
  /**
   * The per-user secret proven in every handshake. Default: `Secret.load()` of
   * `~/.understudy/secret`; `{ path }` for another file; a value for tests.
   */
  readonly secret?: Redacted.Redacted<Uint8Array> | { readonly path: string }
  /**
   * Keep-alive on every connection, each a `Duration.Input`: a ping every `interval`, and a
   * hung peer is dropped after `timeout` (which must exceed `interval`). Default 200 ms and
   * 1,500 ms.
   */
  readonly keepAlive?: { readonly interval: Duration.Input; readonly timeout: Duration.Input }
  /**
   * Time allowed for a request, a command, the handshake and registration: milliseconds or
   * text (`"5 seconds"`). Default 5 seconds.
   */
  readonly requestTimeout?: Duration.Input
  /**
   * How long permits wait for a holder whose connection is gone. A new supervisor waits
   * this long for the previous members to re-register their permits before it grants new
   * ones; it ends early once every member of the last registry it saw is back. A
   * supervisor that never saw a registry (the first one on the machine, or a newcomer that
   * won the bind during a failover) waits for the registry the first re-registering member
   * had, or, if none had one, the whole grace period before its first grant. A supervisor
   * that loses the connection of a member holding permits keeps them for it this long (the
   * member stays in the registry meanwhile), unless its process is gone.
   *
   * A holder cut off from its supervisor gives its permits up (`lost`) at the last time it
   * heard from it plus `grace` minus `keepAlive.interval`, unless a supervisor has
   * taken its holdings by then: before any supervisor gives them to another, since that
   * supervisor lost it, or took over, after that last time. So it must be more than
   * `keepAlive.timeout` (a holder notices a hung supervisor only then) plus the time to
   * register again, and the same on every instance. Default: `keepAlive.timeout` plus
   * the larger of 1,000 ms and `keepAlive.timeout` (3,000 ms with the default keep-alive).
   * Milliseconds or text (`"3 seconds"`).
   */
  readonly grace?: Duration.Input
  /** Bind-or-connect attempts without success before giving up. Default 2,000. */
  readonly attemptsMax?: number
  /**
   * Events kept for each reader of `events` that falls behind. Default 1,024; past it the
   * oldest are dropped for that reader, so a reader that stops reading never holds up
   * the election nor grows memory (`role`, `members` and a permit's `lost` stay exact).
   */
  readonly eventsCapacity?: number
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
     * A reader more than `eventsCapacity` events behind loses the oldest.
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

type Register = Registry.Register
type Refusal = Registry.Refusal

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
  ElectionError | ElectionConfigError | Secret.SecretError,
  Transport.Transport | Scope.Scope
> =>
  Effect.gen(function* () {
    // Timing and limits first: a bad value fails before anything is read or bound.
    const config = Config.decode(options)
    if (Result.isFailure(config)) return yield* config.failure
    const { requestTimeoutMs, attemptsMax, graceMs, eventsCapacity, keepAlive } = config.success
    const transport = yield* Transport.Transport
    const address = options.address
    const addressText = Address.format(address)
    // Who this process is: read once, so the protocol below never asks the OS (a
    // simulation provides one identity per instance).
    const identity = yield* Identity
    const pid = identity.pid
    const pidNamespace =
      identity.pidNamespace === undefined ? {} : { pidNamespace: identity.pidNamespace }
    const instanceId = options.instanceId ?? `${pid}-${identity.uniqueId()}`
    const startedAtMs = yield* Clock.currentTimeMillis
    const clusterKey =
      options.secret !== undefined && Redacted.isRedacted(options.secret)
        ? options.secret
        : yield* Secret.load(options.secret?.path)
    const connectionOptions = {
      codec,
      frameBytesMax,
      keepAlive: { interval: keepAlive.intervalMs, timeout: keepAlive.timeoutMs },
      clusterKey,
      handshakeTimeout: requestTimeoutMs,
    }
    /** Sent in every Register and Refused: instances with other timing are refused. */
    const settings: Registry.Settings = {
      graceMs,
      keepAliveIntervalMs: keepAlive.intervalMs,
      keepAliveTimeoutMs: keepAlive.timeoutMs,
    }

    const events = yield* PubSub.sliding<ElectionEvent>(eventsCapacity)
    const record = Metrics.recorder()
    /** Role changes in the log (debug level), annotated with the role and the instance id. */
    const logRole = (event: ElectionEvent) => {
      switch (event._tag) {
        case "Elected":
          return Effect.logDebug("elected").pipe(Effect.annotateLogs({ role: "supervisor" }))
        case "BecameSubordinate":
          return Effect.logDebug("registered with the supervisor").pipe(
            Effect.annotateLogs({ role: "subordinate", supervisorId: event.supervisorId }),
          )
        case "SupervisorLost":
          return Effect.logDebug(`supervisor lost: ${event.reason}`).pipe(
            Effect.annotateLogs({ role: "electing", supervisorId: event.supervisorId }),
          )
        default:
          return Effect.void
      }
    }
    const emit = (event: ElectionEvent) =>
      Effect.andThen(Effect.andThen(record(event), logRole(event)), PubSub.publish(events, event))
    const now = Clock.currentTimeMillis

    const shared: Shared = {
      role: { _tag: "Electing" },
      lastMembers: [],
      lastSupervisorId: undefined,
      upstream: undefined,
      preparedRegistration: undefined,
      supervisor: undefined,
      bound: undefined,
    }
    const firstRole = yield* Deferred.make<void, ElectionError>()
    /** Completed (and replaced) whenever this instance gets a role: wakes waiting requests. */
    let settled = yield* Deferred.make<void>()
    const settle = Effect.suspend(() => {
      const previous = settled
      settled = Deferred.makeUnsafe<void>()
      return Deferred.succeed(previous, undefined)
    })

    const held = new Set<PermitState>()
    // Once out of the election, this instance holds nothing: a permit still in use is lost.
    yield* Effect.addFinalizer(() =>
      Effect.forEach(held, (permit) => Deferred.succeed(permit.lost, undefined), { discard: true }),
    )
    const pendingAcquires = new Map<string, PendingAcquire>()
    const pendingRequests = new Map<
      string,
      { readonly operation: string; readonly done: Deferred.Deferred<unknown, RequestFailed> }
    >()
    const handlers = new Map<string, Handler>()
    const commandHandlers = new Map<string, Handler>()
    const electionScope = yield* Effect.scope
    // A peer that lost the supervisor waits this long for the successor's takeover: the
    // successor notices the loss within its own keep-alive time-out.
    const standbyWaitMs = keepAlive.timeoutMs
    /**
     * Scopes of attempts whose supervisor was lost, with its dead connection: torn down once
     * the next supervisor is back to normal (its registry came, or it thawed), so that the
     * teardown does not delay re-registering.
     */
    const spent: Array<Scope.Closeable> = []
    const releaseSpent = Effect.suspend(() =>
      Effect.forEach(spent.splice(0), (scope) => Scope.close(scope, Exit.void), {
        discard: true,
      }),
    )
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
      ).pipe(Effect.tap(() => (lost.length === 0 ? Effect.void : Effect.sync(prepareRegistration))))

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

    /** Who may hold permits besides this instance, from the last registry it had. */
    const previousSubordinates = (): Array<string> =>
      Registry.previousSubordinates(shared.lastMembers, instanceId, shared.lastSupervisorId)

    /** The last registry from another supervisor, for a Register. */
    const previousRegistry = (): { previous?: ReadonlyArray<string> } =>
      Registry.sawRegistry(shared.lastMembers, instanceId)
        ? { previous: previousSubordinates() }
        : {}

    /** This instance's registration as of now: identity, holdings and the last registry. */
    const registerMessage = (): Register => ({
      _tag: "Register",
      program: options.program,
      version: protocolVersion,
      instanceId,
      pid,
      ...pidNamespace,
      startedAtMs,
      metadata: { ...options.metadata },
      holdings: holdings(),
      ...previousRegistry(),
      settings,
    })

    /** Builds and encodes `registerMessage()` ahead (see `Shared.preparedRegistration`). */
    const prepareRegistration = () => {
      shared.preparedRegistration = registerMessage()
      preEncode(shared.preparedRegistration)
    }

    /** Why `message` can not be accepted (a duplicate id aside), or undefined. */
    const refusalOf = (message: Register): Refusal | undefined =>
      Registry.refusalOf(options.program, settings, message)

    const refuse = (connection: Connection.Connection<Message>, reason: Refusal) =>
      Effect.andThen(
        Effect.ignore(
          connection.send({
            _tag: "Refused",
            reason,
            program: options.program,
            version: protocolVersion,
            settings,
          }),
        ),
        connection.close,
      )

    // ---- standby: the successor and the connections waiting at it ------------------

    const standby = Standby.make({
      transport,
      connectionOptions,
      scope: electionScope,
      instanceId,
      address,
      uniqueId: identity.uniqueId,
      refusalOf,
      refuse,
      registerMessage,
    })

    /** The instance as every driver sees it, built once. */
    const instance: Instance = {
      shared,
      instanceId,
      address,
      addressText,
      transport,
      connectionOptions,
      standby,
      electionScope,
      emit,
      firstRole,
      settle,
    }

    // ---- supervisor: the machine (`Machine.ts`) run by its driver -----------------

    /** Answers of pending commands to members, by command id. */
    const pendingCommands = new Map<string, Deferred.Deferred<{ ok: boolean; payload: unknown }>>()

    const runSupervisor = Supervisor.supervise(instance, {
      pid,
      pidNamespace: identity.pidNamespace,
      isRunning: identity.isRunning,
      startedAtMs,
      program: options.program,
      metadata: { ...options.metadata },
      settings,
      requestTimeoutMs,
      keepAliveIntervalMs: keepAlive.intervalMs,
      pendingAcquires,
      pendingCommands,
      handlers,
      runHandler,
      holdings,
      losePermits,
      previousSubordinates,
      supervising: Effect.suspend(() => subordinate.supervising),
      releaseSpent,
    })

    // ---- subordinate: its driver (`internal/subordinate.ts`) ------------------------

    const subordinate = yield* Subordinate.start(instance, {
      settings,
      graceMs,
      requestTimeoutMs,
      pendingAcquires,
      pendingRequests,
      commandHandlers,
      runHandler,
      losePermits,
      registerMessage,
      prepareRegistration,
      releaseSpent,
    })

    // ---- the election loop (`ElectionLoop.ts`, run by `internal/election.ts`) --------

    const electionLoop = ElectionDriver.loop(instance, {
      spent,
      attemptsMax,
      standbyWaitMs,
      runSupervisor,
      runSubordinate: subordinate.runSubordinate,
    })

    yield* Effect.forkScoped(electionLoop.pipe(Effect.annotateLogs({ instanceId })))
    yield* Deferred.await(firstRole)

    // ---- the public API ------------------------------------------------------------

    /** Waits (bounded) until this instance is supervisor or connected to one. */
    const awaitRole = (operation: string) =>
      Effect.gen(function* () {
        const deadline = (yield* now) + requestTimeoutMs
        while (shared.role._tag === "Electing") {
          const left = deadline - (yield* now)
          if (left <= 0) break
          yield* Deferred.await(settled).pipe(Effect.timeoutOption(left))
        }
        if (shared.role._tag === "Supervisor" || shared.role._tag === "Subordinate")
          return shared.role
        return yield* new RequestFailed({
          operation,
          reason: "Timeout",
          detail:
            shared.role._tag === "Failed"
              ? shared.role.error.message
              : "no supervisor elected in time",
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
        yield* shared.upstream!.send({ _tag: "Request", id, operation, payload }).pipe(
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
        const term = shared.supervisor
        if (term === undefined || shared.role._tag !== "Supervisor") {
          return yield* new RequestFailed({
            operation: name,
            reason: "NotSupervisor",
            detail: "only the supervisor sends commands",
          })
        }
        const { members } = term.state()
        const targets =
          target === "all"
            ? [instanceId, ...members.keys()]
            : target === instanceId || members.has(target)
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
              const entry = term.state().members.get(id)
              if (entry?.cutOff === true) {
                return { instanceId: id, ok: false, payload: "its connection is gone" }
              }
              const commandId = nextId()
              const done = yield* Deferred.make<{ ok: boolean; payload: unknown }>()
              pendingCommands.set(commandId, done)
              const connection = entry === undefined ? undefined : term.connection(entry.connection)
              if (connection !== undefined) {
                yield* Effect.ignore(
                  connection.send({ _tag: "Command", id: commandId, name, payload }),
                )
              }
              const answer = yield* Deferred.await(done).pipe(
                Effect.timeoutOption(requestTimeoutMs),
                Effect.ensuring(Effect.sync(() => pendingCommands.delete(commandId))),
              )
              return answer._tag === "Some"
                ? { instanceId: id, ...answer.value }
                : { instanceId: id, ok: false, payload: `no answer in ${requestTimeoutMs} ms` }
            }),
          { concurrency: "unbounded" },
        )
      })

    /** One of the instance's own permit commands, to whichever side's machine it runs now. */
    const own = (command: OwnCommand) =>
      shared.supervisor !== undefined ? shared.supervisor.step(command) : subordinate.step(command)

    const acquire = (resource: string, acquireOptions: { readonly limit?: number } = {}) =>
      Effect.gen(function* () {
        const limit = acquireOptions.limit ?? 1
        const id = nextId()
        const done = yield* Deferred.make<void, AcquireRefused>()
        pendingAcquires.set(id, { resource, limit, done })
        const cancel = Effect.suspend(() => {
          pendingAcquires.delete(id)
          return own({ _tag: "Cancel", requestId: id })
        })
        // Granted or refused through the machines' events: the supervisor's, or the
        // subordinate's (which sends it to its supervisor, or with the re-registration while
        // an election is on).
        yield* own({ _tag: "Acquire", requestId: id, resource, limit })
        yield* Deferred.await(done).pipe(Effect.onInterrupt(() => cancel))
        pendingAcquires.delete(id)
        const permit: PermitState = { resource, limit, lost: yield* Deferred.make<void>() }
        held.add(permit)
        prepareRegistration()
        yield* Effect.addFinalizer(() =>
          Effect.suspend(() => {
            if (!held.delete(permit)) return Effect.void
            prepareRegistration()
            // Released while electing, the subordinate's machine counts it given up: a
            // Register already on its way may claim it.
            return own({ _tag: "Release", resource })
          }),
        )
        return { resource, lost: Deferred.await(permit.lost) } satisfies Permit
      })

    return PortElection.of({
      instanceId,
      role: Effect.sync(() => shared.role),
      events: Stream.fromPubSub(events),
      members: Effect.sync(() =>
        shared.supervisor !== undefined
          ? Machine.members(shared.supervisor.state())
          : shared.lastMembers,
      ),
      request,
      serve: (operation, handler) => Effect.sync(() => void handlers.set(operation, handler)),
      onCommand: (name, handler) => Effect.sync(() => void commandHandlers.set(name, handler)),
      command,
      acquire,
    })
  })

/**
 * The election as a `Layer`: the instance takes part until the layer's scope closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: ElectionOptions,
): Layer.Layer<
  PortElection,
  ElectionError | ElectionConfigError | Secret.SecretError,
  Transport.Transport
> => Layer.effect(PortElection, make(options))
