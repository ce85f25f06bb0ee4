/**
 * The supervisor driver: runs one term of the supervisor's `Machine` on the shared `Runner`
 * over member connections (`Runner.runConnections`): each accepted connection is attached,
 * what it carries is stepped as `Receive`, its end as `Closed`; timers are the Runner's, on
 * the Effect `Clock`. The events the driver does not handle itself (`Close`, `Reserved`) go
 * to `onEvent`.
 *
 * Everything it starts lives in the caller's `Scope`: closing it ends the term.
 *
 * `supervise` is one term as the instance lives it: the machine's `Config` built from what
 * the instance knew at the takeover, the members standing by at it admitted, `Elected`,
 * then the election address served; the machine's events become the instance's (its own
 * grants, `MemberJoined`, replies to requests).
 */
import { Runner } from "@understudy/machine"
import { CloseReason, type Connection, type Transport } from "@understudy/transport"
import { Clock, Deferred, Effect, type Scope, Stream } from "effect"
import type { Handler } from "../Election.ts"
import { AcquireRefused } from "../ElectionError.ts"
import * as Machine from "../Machine.ts"
import * as Metrics from "../Metrics.ts"
import * as Registry from "../Registry.ts"
import type { Instance } from "./instance.ts"
import type { Holding, Message } from "./protocol.ts"

/** @since 0.1.0 @category models */
export interface Env {
  readonly config: Machine.Config
  /** How often the process of a cut-off member is looked at (only in this pid namespace). */
  readonly pollMs: number
  /** Whether a process of this pid namespace runs; unknown when absent. */
  readonly isRunning: ((pid: number) => boolean) | undefined
  /**
   * The events for the instance: its own grants, the public events, requests. Called from
   * `init` on, inside the term's serial loop, with the term: a command in answer must be
   * forked (the loop waits for this).
   */
  readonly onEvent: (event: Machine.Event, term: Supervising) => Effect.Effect<void>
}

/** A running term. @since 0.1.0 @category models */
export interface Supervising {
  /** The machine's state after its last step, for reading (the registry, the members). */
  readonly state: () => Machine.State
  /**
   * Steps the machine with one of this instance's commands and performs its outputs. After
   * the term ended, nothing happens: its members have lost it already.
   */
  readonly step: (command: Machine.Command) => Effect.Effect<void>
  /** The open connection of a member, to send it what is no registry decision (replies, commands). */
  readonly connection: (id: Machine.ConnectionId) => Connection.Connection<Message> | undefined
  /** Serves a connection accepted at the election address until it closes (in the background). */
  readonly accept: (connection: Connection.Connection<Message>) => Effect.Effect<void>
  /**
   * Admits connections that stood by with a pre-registration (the takeover's, welcomed;
   * a later one, not yet) and serves each in the background.
   */
  readonly admit: (
    standing: ReadonlyArray<readonly [Connection.Connection<Message>, Registry.Register]>,
    welcome: boolean,
  ) => Effect.Effect<void>
}

/**
 * Starts the term: `init` (its outputs performed) before it returns, then every input
 * stepped in turn on the Runner's loop.
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = (env: Env): Effect.Effect<Supervising, never, Scope.Scope> =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    let state: Machine.State | undefined
    // The node, once `runConnections` returned: `init`'s events reach `onEvent` before that.
    const running =
      yield* Deferred.make<
        Runner.Connections<Machine.State, Message, Machine.Command, Machine.Event>
      >()
    let node: Runner.Connections<Machine.State, Message, Machine.Command, Machine.Event>

    /**
     * Until its reservation ends, looks every `pollMs` whether a cut-off member's process is
     * still there: a process gone holds nothing, and need not be waited for.
     */
    const watch = (connection: Machine.ConnectionId, pid: number) =>
      Effect.gen(function* () {
        const isRunning = env.isRunning
        if (isRunning === undefined) return
        const untilMs = (yield* Clock.currentTimeMillis) + env.config.settings.graceMs
        for (;;) {
          const leftMs = untilMs - (yield* Clock.currentTimeMillis)
          const reserved = [...term.state().members.values()].some(
            (entry) => entry.connection === connection && entry.cutOff,
          )
          if (leftMs <= 0 || !reserved) return
          if (!isRunning(pid)) return yield* term.step({ _tag: "ProcessGone", connection })
          yield* Effect.sleep(Math.min(env.pollMs, leftMs))
        }
      })

    const term: Supervising = {
      state: () => state!,
      // A command to a node that stopped is interrupted: the term is over, nothing to do.
      step: (command) =>
        Deferred.await(running).pipe(
          Effect.flatMap((node) => node.command(command)),
          Effect.exit,
          Effect.asVoid,
        ),
      connection: (id) => node.connection(id),
      accept: (connection) =>
        Effect.asVoid(
          node.attach([connection], ([id]) => [{ _tag: "Connected", connection: id! }]),
        ),
      admit: (standing, welcome) =>
        Effect.asVoid(
          node.attach(
            standing.map(([connection]) => connection),
            (ids): ReadonlyArray<Machine.Command> => {
              const admitted = ids.map((connection, i) => ({
                connection,
                preRegistration: standing[i]![1],
              }))
              return welcome
                ? [{ _tag: "Admit", standing: admitted }]
                : admitted.map(({ connection, preRegistration }) => ({
                    _tag: "PreRegistered" as const,
                    connection,
                    preRegistration,
                  }))
            },
          ),
        ),
    }

    // The permit gauges this term set, back to zero once it ended (after its last step).
    let reported: ReadonlyMap<string, Metrics.PermitCounts> = new Map()
    yield* Effect.addFinalizer(() => Metrics.recordPermits(new Map(), reported))

    node = yield* Runner.runConnections(Machine.make(env.config), {
      self: env.config.self.instanceId,
      onStep: (info) =>
        Effect.gen(function* () {
          state = info.after
          reported = yield* Metrics.recordPermits(info.after.grants.counts(), reported)
        }),
      onEvent: (event) => {
        switch (event._tag) {
          case "Close":
            return node.connection(event.connection)?.close ?? Effect.void
          case "Reserved":
            return Effect.asVoid(Effect.forkIn(watch(event.connection, event.pid), scope))
          default:
            return env.onEvent(event, term)
        }
      },
      closed: (connection, reason) => ({
        _tag: "Closed" as const,
        connection,
        reason: CloseReason.describe(reason),
      }),
    })
    yield* Deferred.succeed(running, node)
    return term
  })

/** How long the supervisor gathers registry changes before sending the registry out. */
const membersBatchMs = 25

type Register = Registry.Register

/** What a term as supervisor needs of its instance. @since 0.1.0 @category models */
/** What the supervisor's driver alone needs, beside the instance. */
export interface SuperviseEnv {
  readonly pid: number
  readonly pidNamespace: string | undefined
  readonly isRunning: ((pid: number) => boolean) | undefined
  readonly startedAtMs: number
  readonly program: string
  readonly metadata: Readonly<Record<string, string>>
  readonly settings: Registry.Settings
  readonly requestTimeoutMs: number
  readonly keepAliveIntervalMs: number
  readonly pendingAcquires: Map<
    string,
    {
      readonly resource: string
      readonly limit: number
      readonly done: Deferred.Deferred<void, AcquireRefused>
    }
  >
  readonly pendingCommands: Map<string, Deferred.Deferred<{ ok: boolean; payload: unknown }>>
  readonly handlers: Map<string, Handler>
  readonly runHandler: (
    table: Map<string, Handler>,
    name: string,
    payload: unknown,
    from: string,
  ) => Effect.Effect<{ ok: boolean; payload: unknown }>
  readonly holdings: () => Array<Holding>
  readonly losePermits: (lost: ReadonlyArray<Holding>) => Effect.Effect<void>
  readonly previousSubordinates: () => Array<string>
  /** Tells the subordinate side: its cut-off deadline is off, what it gave up forgotten. */
  readonly supervising: Effect.Effect<void>
  readonly releaseSpent: Effect.Effect<void>
}

/**
 * A term as supervisor on the election address `listener`: the machine starts from what
 * the instance knew, members standing by are admitted, and connections are served until
 * the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const supervise = (instance: Instance, env: SuperviseEnv) => {
  const pidNamespace = env.pidNamespace === undefined ? {} : { pidNamespace: env.pidNamespace }
  const now = Clock.currentTimeMillis

  /** What the supervisor's machine tells this instance. */
  const onSupervisorEvent =
    (thawed: Deferred.Deferred<void>, supervising: Scope.Scope) =>
    (event: Machine.Event, term: Supervising): Effect.Effect<void> => {
      switch (event._tag) {
        case "MemberJoined":
          return instance.emit({ _tag: "MemberJoined", member: event.member })
        case "MemberLeft":
          return instance.emit({ _tag: "MemberLeft", member: event.member, reason: event.reason })
        case "Granted": {
          const pending = env.pendingAcquires.get(event.requestId)
          // Given up meanwhile: hand the permit back (a step of its own, after this one).
          if (pending === undefined)
            return Effect.asVoid(
              Effect.forkIn(term.step({ _tag: "Release", resource: event.resource }), supervising),
            )
          return Deferred.succeed(pending.done, undefined)
        }
        case "Refused": {
          const pending = env.pendingAcquires.get(event.requestId)
          if (pending === undefined) return Effect.void
          env.pendingAcquires.delete(event.requestId)
          return Deferred.fail(
            pending.done,
            new AcquireRefused({ resource: event.resource, detail: event.reason }),
          )
        }
        case "Lost":
          return env.losePermits(event.lost)
        case "Thawed":
          return Deferred.succeed(thawed, undefined)
        case "RegistrySent":
          return Effect.sync(() => {
            instance.shared.lastMembers = event.members
            instance.shared.preparedRegistration = undefined
          })
        case "Request": {
          const { connection, from, request } = event
          return Effect.asVoid(
            Effect.forkIn(
              Effect.flatMap(
                env.runHandler(env.handlers, request.operation, request.payload, from),
                (r) => {
                  const member = term.connection(connection)
                  return member === undefined
                    ? Effect.void
                    : Effect.ignore(member.send({ _tag: "Reply", id: request.id, ...r }))
                },
              ),
              supervising,
            ),
          )
        }
        case "CommandDone": {
          const pending = env.pendingCommands.get(event.done.id)
          return pending === undefined
            ? Effect.void
            : Deferred.succeed(pending, { ok: event.done.ok, payload: event.done.payload })
        }
        case "Warning":
          return Effect.logWarning(event.message)
        default:
          return Effect.void
      }
    }

  /**
   * Taking the supervisor's role once the address is bound: a term of the machine starts
   * from what this instance knew (the last registry, its own permits and waiting requests,
   * who stands by at it), then — for the designated successor — every member standing by
   * is welcomed over its standby connection. Ends with `Elected`.
   */
  const takeOver = Effect.gen(function* () {
    // The designated successor takes over with members standing by at it.
    const standing = instance.standby.listening()
    yield* Effect.annotateCurrentSpan("understudy.successor", standing !== undefined)
    const preRegistered: Array<readonly [Connection.Connection<Message>, Register]> = []
    for (const [connection, preRegistration] of standing?.waiting ?? []) {
      if (preRegistration !== undefined) preRegistered.push([connection, preRegistration])
    }
    const thawed = yield* Deferred.make<void>()
    const scope = yield* Effect.scope
    // Supervising, it takes its own holdings back in the machine's `init`: the subordinate
    // side's deadline goes first (no permit given up after they were taken), and what it
    // gave up at the deadline it claimed from nobody, so nothing is handed back.
    yield* env.supervising
    // The role first: the machine's `init` grants this instance's waiting requests, and
    // whoever wakes up on them finds it supervisor.
    instance.shared.role = { _tag: "Supervisor" }
    const term = yield* start({
      config: {
        program: env.program,
        settings: env.settings,
        self: {
          instanceId: instance.instanceId,
          pid: env.pid,
          ...pidNamespace,
          startedAtMs: env.startedAtMs,
          metadata: { ...env.metadata },
        },
        requestTimeoutMs: env.requestTimeoutMs,
        membersBatchMs,
        takeover: {
          expected: env.previousSubordinates(),
          blind: !Registry.sawRegistry(instance.shared.lastMembers, instance.instanceId),
          // The members of the registry it had are known to every member already.
          announced: instance.shared.lastMembers.map((m) => m.instanceId),
          standingBy: preRegistered.map(([, preRegistration]) => preRegistration.instanceId),
          holdings: env.holdings(),
          waiting: [...env.pendingAcquires].map(([requestId, pending]) => ({
            requestId,
            resource: pending.resource,
            limit: pending.limit,
          })),
        },
      },
      pollMs: env.keepAliveIntervalMs,
      isRunning: env.isRunning,
      onEvent: onSupervisorEvent(thawed, scope),
    })
    instance.shared.supervisor = term
    instance.shared.lastMembers = Machine.members(term.state())
    instance.shared.preparedRegistration = undefined
    if (standing !== undefined) {
      yield* Effect.addFinalizer(() => instance.standby.close)
      // A member that pre-registers later is admitted as it comes, welcomed by its registry.
      standing.serve = (connection, preRegistration) =>
        term.admit([[connection, preRegistration]], false)
      for (const [connection] of preRegistered) standing.waiting.delete(connection)
    }
    const state = term.state()
    yield* Effect.annotateCurrentSpan({
      // Members welcomed over their standby connections, and those waited for.
      "understudy.welcomed": new Set(
        preRegistered.map(([, p]) => p.instanceId).filter((id) => id !== instance.instanceId),
      ).size,
      "understudy.expected": state.expected.size,
      "understudy.frozen": state.grants.frozen,
    })
    yield* instance.emit({ _tag: "Elected", instanceId: instance.instanceId, atMs: yield* now })
    // Connections that stood by at this instance as successor: each pre-registered member
    // is welcomed over its own and admitted (the others as their pre-registration comes).
    if (preRegistered.length > 0) yield* term.admit(preRegistered, true)
    return { term, thawed }
  }).pipe(
    Effect.withSpan("port-election.takeover", {
      attributes: { "understudy.instance": instance.instanceId },
    }),
  )

  const runSupervisor = (listener: Transport.Listener<Message>, release: Effect.Effect<void>) =>
    Effect.gen(function* () {
      const { term, thawed } = yield* takeOver
      yield* instance.standby.follow(undefined)
      yield* Deferred.succeed(instance.firstRole, undefined)
      yield* instance.settle
      // The previous supervisor's dead connection is torn down once the members are back.
      yield* Effect.forkScoped(Effect.andThen(Deferred.await(thawed), env.releaseSpent))
      // A supervisor that stops on purpose says so, so subordinates elect at once; it
      // unbinds the address first, so whoever they elect can bind it. (Its term's loop may
      // still have steps queued, such as its connections' ends when it was killed: the
      // address must not wait for them.) Only then does it close its connections, which
      // must still be open to carry its Resigning.
      yield* Effect.addFinalizer(() =>
        Effect.andThen(listener.unbind, Effect.andThen(term.step({ _tag: "Resign" }), release)),
      )
      yield* Stream.runForEach(listener.connections, term.accept)
      return yield* Effect.never
    })

  return runSupervisor
}
