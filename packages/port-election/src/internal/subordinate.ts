/**
 * The subordinate side of an instance: registering with the supervisor (or confirming a
 * successor's takeover over the standby connection), serving it until it is lost, and the
 * cut-off deadline at which permits held while no supervisor has them are given up. The
 * supervisor's side is the `Machine` run by `supervisor.ts`; `Election.ts` elects and offers
 * the public API over both.
 */
import {
  type Address,
  CloseReason,
  type Connection,
  type Options,
  type Transport,
} from "@understudy/transport"
import { Clock, Deferred, Effect, Exit, Fiber, Metric, Option, Result, Scope, Stream } from "effect"
import type { ElectionError, ElectionEvent, Handler, Role } from "../Election.ts"
import { AcquireRefused, OtherProgramOnAddress, RequestFailed } from "../ElectionError.ts"
import * as Metrics from "../Metrics.ts"
import * as Registry from "../Registry.ts"
import type * as Standby from "../Standby.ts"
import type { Holding, Member, Message } from "./protocol.ts"
import type * as Supervisor from "./supervisor.ts"

type Register = Registry.Register
type Welcome = Registry.Welcome

/**
 * What an instance knows that its drivers and its public API share.
 *
 * @since 0.1.0
 * @category models
 */
export interface Shared {
  role: Role
  /** The registry: the last one a supervisor sent, or this instance's own as supervisor. */
  lastMembers: ReadonlyArray<Member>
  /** The supervisor this instance was last welcomed by. */
  lastSupervisorId: string | undefined
  /** The connection to the supervisor, once welcomed. */
  upstream: Connection.Connection<Message> | undefined
  /**
   * `registerMessage()`, built and encoded whenever what it says changes (holdings, the last
   * registry), or undefined: the Register that confirms a takeover then costs nothing while
   * every survivor of the failover competes for the CPU.
   */
  preparedRegistration: Register | undefined
  /** This instance's term as supervisor, once it is one. */
  supervisor: Supervisor.Supervising | undefined
  /** The election address, bound by the successor the moment its supervisor was lost. */
  bound:
    | { readonly scope: Scope.Closeable; readonly listener: Transport.Listener<Message> }
    | undefined
}

/** @since 0.1.0 @category models */
export interface Env {
  readonly shared: Shared
  readonly instanceId: string
  readonly address: Address.StreamAddress
  readonly addressText: string
  readonly transport: Transport.Transport["Service"]
  readonly connectionOptions: Options.ConnectionOptions<Message> & {
    readonly keepAlive: { readonly interval: number; readonly timeout: number }
  }
  readonly settings: Registry.Settings
  readonly graceMs: number
  readonly requestTimeoutMs: number
  /** The election's scope: the cut-off deadline outlives the attempt that set it. */
  readonly electionScope: Scope.Scope
  readonly standby: Standby.Standby
  readonly pendingAcquires: ReadonlyMap<
    string,
    {
      readonly resource: string
      readonly limit: number
      readonly done: Deferred.Deferred<void, AcquireRefused>
    }
  >
  readonly pendingRequests: Map<
    string,
    { readonly operation: string; readonly done: Deferred.Deferred<unknown, RequestFailed> }
  >
  readonly commandHandlers: Map<string, Handler>
  readonly runHandler: (
    table: Map<string, Handler>,
    name: string,
    payload: unknown,
    from: string,
  ) => Effect.Effect<{ ok: boolean; payload: unknown }>
  readonly holdings: () => Array<Holding>
  readonly losePermits: (lost: ReadonlyArray<Holding>) => Effect.Effect<void>
  readonly registerMessage: () => Register
  readonly prepareRegistration: () => void
  readonly emit: (event: ElectionEvent) => Effect.Effect<void>
  readonly firstRole: Deferred.Deferred<void, ElectionError>
  readonly settle: Effect.Effect<void>
  readonly releaseSpent: Effect.Effect<void>
}

/**
 * Adds the permits of `holdings` to a count per resource.
 *
 * @since 0.1.0
 * @category utils
 */
export const countPermits = (into: Map<string, number>, holdings: ReadonlyArray<Holding>) => {
  for (const { resource, permits } of holdings) {
    into.set(resource, (into.get(resource) ?? 0) + permits)
  }
}

/**
 * The subordinate side of one instance.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (env: Env) => {
  const {
    shared,
    instanceId,
    address,
    addressText,
    transport,
    connectionOptions,
    settings,
    graceMs,
    requestTimeoutMs,
    electionScope,
    standby,
    pendingAcquires,
    pendingRequests,
    commandHandlers,
    runHandler,
    holdings,
    losePermits,
    registerMessage,
    prepareRegistration,
    emit,
    firstRole,
    settle,
    releaseSpent,
  } = env
  const now = Clock.currentTimeMillis

  // ---- cut off: permits held while no supervisor has them ---------------------------

  /**
   * Gives up this instance's permits at its deadline, unless a supervisor takes them back
   * first (`welcomedBack`). Safety: the supervisor that lost this instance keeps its
   * permits for `graceMs` from when it noticed the loss, which is after the last thing it
   * sent, which arrived after `lastHeardAtMs` (a lower bound of the arrival, not the time
   * it was read: a holder starved of CPU, or whose link back-pressure paused, reads late,
   * and would otherwise keep its permits past their regrant); a successor freezes its
   * grants for `graceMs` from its takeover, which is after its predecessor died, so after
   * that too. The deadline, `lastHeardAtMs + graceMs - keepAlive.intervalMs`, is before
   * either regrants, by the interval: room for this process to be late waking up.
   */
  let cutOff: Fiber.Fiber<void> | undefined
  /**
   * Permits given up while no supervisor had them (at the deadline, or released while
   * electing): a registration in flight may still claim them.
   */
  const abandoned = new Map<string, number>()
  const cutOffFrom = (connection: Connection.Connection<Message>) =>
    Effect.gen(function* () {
      // An earlier deadline still runs: a registration since did not take the permits.
      // Set even if nothing is held yet: a grant read just before the close may still be
      // on its way to the acquirer.
      if (cutOff !== undefined) return
      const deadlineMs =
        (yield* connection.lastHeardAtMs) + graceMs - connectionOptions.keepAlive.interval
      cutOff = yield* Effect.forkIn(
        Effect.gen(function* () {
          yield* Effect.sleep(Math.max(0, deadlineMs - (yield* now)))
          cutOff = undefined
          const lost = holdings()
          countPermits(abandoned, lost)
          yield* losePermits(lost)
        }),
        electionScope,
      )
    })

  /** A supervisor took this instance's holdings back: the deadline is off. */
  const cancelDeadline = Effect.suspend(() => {
    const deadline = cutOff
    cutOff = undefined
    return deadline === undefined ? Effect.void : Fiber.interrupt(deadline)
  })

  /**
   * A supervisor has this instance's holdings again, as `claimed` by its registration
   * minus what it answered lost: the deadline is off, and permits given up meanwhile that
   * the registration still claimed are handed back.
   */
  const welcomedBack = (
    claimed: ReadonlyArray<Holding>,
    lostHere: ReadonlyMap<string, number>,
    send: (message: Message) => Effect.Effect<void>,
  ) =>
    Effect.gen(function* () {
      yield* cancelDeadline
      for (const [resource, permits] of abandoned) {
        const kept =
          (claimed.find((h) => h.resource === resource)?.permits ?? 0) -
          (lostHere.get(resource) ?? 0)
        for (let i = 0; i < Math.min(permits, kept); i++) {
          yield* send({ _tag: "Release", resource })
        }
      }
      abandoned.clear()
    })

  // ---- subordinate --------------------------------------------------------------

  /**
   * Registers over `connection` and serves the supervisor until it is lost. `takeover` is
   * the Welcome a successor sent over a standby connection at which this instance had
   * pre-registered: it stands for the answer to a Register, and the Register that follows
   * it confirms what this instance holds.
   */
  const runSubordinate = (connection: Connection.Connection<Message>, takeover?: Welcome) =>
    Effect.gen(function* () {
      /** The supervisor's id once welcomed; undefined if the connection closed first. */
      const welcomed = yield* Deferred.make<string | undefined, ElectionError>()
      let supervisorId = ""
      const send = (message: Message) => Effect.ignore(connection.send(message))
      // Built before any Welcome is taken in: `previous` names the registry of the
      // supervisor this instance had, not of the one that welcomes it.
      const registration = shared.preparedRegistration ?? registerMessage()
      // What was given up before claims nothing: only what goes from now on is handed back.
      abandoned.clear()
      /** What this supervisor answered lost, of what the registration claimed. */
      const lostHere = new Map<string, number>()
      const haveHoldingsBack = welcomedBack(registration.holdings, lostHere, send)
      /** The supervisor said it leaves on purpose: its connection's end is no failure. */
      let resigned = false

      const onMessage = (message: Message): Effect.Effect<void> => {
        switch (message._tag) {
          case "Welcome":
            supervisorId = message.supervisorId
            shared.lastSupervisorId = message.supervisorId
            // Prepared again with the registry this supervisor sends, not now: a takeover's
            // Welcome comes when the CPU is scarce.
            shared.preparedRegistration = undefined
            countPermits(lostHere, message.lost)
            return Effect.andThen(
              Effect.andThen(losePermits(message.lost), standby.follow(message.successor)),
              Effect.andThen(
                // A takeover's Welcome comes before this instance confirmed its holdings:
                // they are taken once the registry comes (it is sent only to those).
                takeover === undefined ? haveHoldingsBack : Effect.void,
                Deferred.succeed(welcomed, message.supervisorId),
              ),
            )
          case "Refused":
            return Deferred.fail(
              welcomed,
              new OtherProgramOnAddress({
                address: addressText,
                reason: message.reason,
                program: message.program,
                version: message.version,
                ...(message.reason === "DifferentSettings" && message.settings !== undefined
                  ? {
                      detail: `the supervisor's ${Registry.describeSettings(message.settings)}; this instance's ${Registry.describeSettings(settings)}: give every instance the same`,
                    }
                  : {}),
              }),
            )
          case "Members":
            shared.lastMembers = message.members
            prepareRegistration()
            // The previous supervisor's dead connection is torn down only now: the
            // registry comes once the members are back, so the teardown does not compete
            // with their registrations for the CPU.
            return Effect.andThen(
              Effect.andThen(standby.follow(message.successor), releaseSpent),
              takeover === undefined ? Effect.void : haveHoldingsBack,
            )
          case "Designate":
            return Effect.flatMap(standby.open, (standbyAt) =>
              standbyAt === undefined
                ? Effect.void
                : send({ _tag: "StandbyAt", address: standbyAt }),
            )
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
            if (pending === undefined) return send({ _tag: "Release", resource: message.resource })
            return Deferred.succeed(pending.done, undefined)
          }
          case "Resigning":
            // The supervisor leaves on purpose: go to the election now, not at its close.
            resigned = true
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

      const reader = yield* Effect.forkChild(
        Effect.andThen(
          Stream.runForEach(connection.messages, onMessage),
          Deferred.succeed(welcomed, undefined),
        ),
      )
      if (takeover !== undefined) yield* onMessage(takeover)
      const welcome = yield* Effect.gen(function* () {
        const registered = yield* Effect.exit(connection.send(registration))
        if (registered._tag === "Failure") return undefined
        // A takeover's Welcome is already in: nothing to wait for.
        return (
          takeover?.supervisorId ??
          Option.getOrUndefined(
            yield* Deferred.await(welcomed).pipe(Effect.timeoutOption(requestTimeoutMs)),
          )
        )
      }).pipe(
        Effect.tap((welcome) =>
          Effect.annotateCurrentSpan({
            "understudy.outcome": welcome === undefined ? "retry" : "welcomed",
            "understudy.supervisor": welcome ?? "",
          }),
        ),
        Effect.withSpan("port-election.register", {
          attributes: {
            "understudy.instance": instanceId,
            // Again: after a supervisor was lost (over the successor's standby link or not).
            "understudy.again": takeover !== undefined || registration.previous !== undefined,
            "understudy.standby": takeover !== undefined,
            "understudy.holdings": registration.holdings.length,
          },
        }),
      )
      if (welcome === undefined) return "retry" as const
      shared.upstream = connection
      shared.role = { _tag: "Subordinate", supervisorId: welcome }
      yield* emit({ _tag: "BecameSubordinate", supervisorId: welcome, atMs: yield* now })
      yield* Deferred.succeed(firstRole, undefined)
      for (const [id, pending] of pendingAcquires) {
        yield* send({ _tag: "Acquire", id, resource: pending.resource, limit: pending.limit })
      }
      yield* settle
      const reason = yield* connection.closed
      // The failure is noticed now: the detection time runs from the last thing heard on the
      // connection (a message or a keep-alive), both read before the bind below.
      const noticedAtMs = yield* now
      const lastHeardAtMs = yield* connection.lastHeardAtMs
      // Every survivor standing by waits for the successor's bind: it goes first, before
      // its own bookkeeping. (If it fails, the next attempt tries again.)
      if (standby.listening() !== undefined) {
        const scope = yield* Scope.fork(electionScope)
        const listened = yield* Effect.result(
          Scope.provide(transport.listen(address, connectionOptions), scope),
        )
        if (Result.isSuccess(listened)) shared.bound = { scope, listener: listened.success }
        else yield* Scope.close(scope, Exit.void)
      }
      // What arrived before the close is read first: a Registry read after the deadline
      // was set would take it off (`haveHoldingsBack`) with nobody holding the permits.
      yield* Effect.exit(Fiber.join(reader))
      // Recorded once the reader is done: a Resigning read only now still says it was none.
      if (CloseReason.isPeerFailure(reason) && !resigned) {
        yield* Metric.update(
          Metric.withAttributes(Metrics.detectionMs, { reason: reason._tag }),
          Math.max(0, noticedAtMs - lastHeardAtMs),
        )
      }
      yield* cutOffFrom(connection)
      shared.upstream = undefined
      shared.role = { _tag: "Electing" }
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
        supervisorId: welcome,
        reason: CloseReason.describe(reason),
        atMs: yield* now,
      })
      return "lost" as const
    })

  return { runSubordinate, cutOffFrom, cancelDeadline, abandoned }
}
