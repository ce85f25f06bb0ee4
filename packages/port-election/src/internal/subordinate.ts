/**
 * The subordinate driver: runs the subordinate's `Subordinate` machine on the shared
 * `Runner` (`Runner.runConnections`) for as long as the instance takes part in the election.
 * Each connection to a supervisor is attached and registers; what it carries is stepped as
 * `Receive`, its end as `Closed`; the register time-out and the cut-off deadline are the
 * Runner's timers. The driver does what the machine's events say (the instance's permits,
 * the standby link, replies and commands) and tells the election loop how an attempt ended.
 * The supervisor's side is the `Machine` run by `supervisor.ts`; `Election.ts` elects and
 * offers the public API over both.
 */

import { Runner } from "@understudy/machine"
import { CloseReason, type Connection } from "@understudy/transport"
import { Clock, Deferred, Effect, Exit, Metric, Result, Scope } from "effect"
import type { ElectionError, Handler } from "../Election.ts"
import { AcquireRefused, OtherProgramOnAddress, RequestFailed } from "../ElectionError.ts"
import * as Metrics from "../Metrics.ts"
import * as Registry from "../Registry.ts"
import * as Subordinate from "../Subordinate.ts"
import type { Instance } from "./instance.ts"
import type { Holding, Message } from "./protocol.ts"

type Register = Registry.Register
type Welcome = Registry.Welcome

/** @since 0.1.0 @category models */
export interface Env {
  readonly settings: Registry.Settings
  readonly graceMs: number
  readonly requestTimeoutMs: number
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
  readonly losePermits: (lost: ReadonlyArray<Holding>) => Effect.Effect<void>
  readonly registerMessage: () => Register
  readonly prepareRegistration: () => void
  readonly releaseSpent: Effect.Effect<void>
}

/** A running subordinate side. @since 0.1.0 @category models */
export interface Running {
  /**
   * Registers over `connection` and serves the supervisor until it is lost. `takeover` is
   * the Welcome a successor sent over a standby connection at which this instance had
   * pre-registered: it stands for the answer to a Register, and the Register that follows
   * it confirms what this instance holds.
   */
  readonly runSubordinate: (
    connection: Connection.Connection<Message>,
    takeover?: Welcome,
  ) => Effect.Effect<"retry" | "lost", ElectionError, Scope.Scope>
  /** Steps one of the instance's own commands (acquire, cancel, release, supervising). */
  readonly step: (command: Subordinate.Command) => Effect.Effect<void>
  /**
   * Steps `Supervising`, whether it changes anything or not (the machine's call): a step
   * that changes nothing is cheap, as the Runner steps a command to an idle node at once in
   * the caller's fiber.
   */
  readonly supervising: Effect.Effect<void>
}

/** How one attempt over one connection ended, as the machine said. */
interface Attempt {
  readonly connection: Connection.Connection<Message>
  /** The supervisor's id once welcomed; undefined if not welcomed. */
  readonly registered: Deferred.Deferred<string | undefined, ElectionError>
  /** After a Welcome: the connection ended; whether the supervisor said it resigned. */
  readonly ended: Deferred.Deferred<boolean>
}

/**
 * Starts the subordinate side: its machine runs until the election's scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = (instance: Instance, env: Env): Effect.Effect<Running> =>
  Effect.gen(function* () {
    const now = Clock.currentTimeMillis
    /** The attempt of each attached connection, by the Runner's id. */
    const attempts = new Map<Subordinate.ConnectionId, Attempt>()

    const send = (id: Subordinate.ConnectionId, message: Message) => {
      const connection = node.connection(id)
      return connection === undefined ? Effect.void : Effect.ignore(connection.send(message))
    }

    const onEvent = (event: Subordinate.Event): Effect.Effect<void> => {
      switch (event._tag) {
        case "Welcome":
          return Effect.sync(() => {
            instance.shared.lastSupervisorId = event.supervisorId
            // Prepared again with the registry this supervisor sends, not now: a takeover's
            // Welcome comes when the CPU is scarce.
            instance.shared.preparedRegistration = undefined
          })
        case "LosePermits":
          return env.losePermits(event.lost)
        case "Follow":
          return instance.standby.follow(event.successor)
        case "Registered": {
          const attempt = attempts.get(event.connection)
          if (attempt === undefined) return Effect.void
          // Subordinate from the step that took the Welcome in, here in the Runner's loop: the
          // attempt's fiber, woken by `registered`, would say so a turn of the event loop later.
          // (It ends the registration's span, then wakes whoever waits for a role.)
          return Effect.gen(function* () {
            instance.shared.upstream = attempt.connection
            instance.shared.role = { _tag: "Subordinate", supervisorId: event.supervisorId }
            yield* instance.emit({
              _tag: "BecameSubordinate",
              supervisorId: event.supervisorId,
              atMs: yield* now,
            })
            yield* Deferred.succeed(attempt.registered, event.supervisorId)
          })
        }
        case "NotWelcomed": {
          const attempt = attempts.get(event.connection)
          return attempt === undefined
            ? Effect.void
            : Effect.asVoid(Deferred.succeed(attempt.registered, undefined))
        }
        case "Refused": {
          const attempt = attempts.get(event.connection)
          if (attempt === undefined) return Effect.void
          const message = event.refusal
          return Effect.asVoid(
            Deferred.fail(
              attempt.registered,
              new OtherProgramOnAddress({
                address: instance.addressText,
                reason: message.reason,
                program: message.program,
                version: message.version,
                ...(message.reason === "DifferentSettings" && message.settings !== undefined
                  ? {
                      detail: `the supervisor's ${Registry.describeSettings(message.settings)}; this instance's ${Registry.describeSettings(env.settings)}: give every instance the same`,
                    }
                  : {}),
              }),
            ),
          )
        }
        case "Ended": {
          const attempt = attempts.get(event.connection)
          return attempt === undefined
            ? Effect.void
            : Effect.asVoid(Deferred.succeed(attempt.ended, event.resigned))
        }
        case "Registry":
          instance.shared.lastMembers = event.members
          env.prepareRegistration()
          // The previous supervisor's dead connection is torn down only now: the registry
          // comes once the members are back, so the teardown does not compete with their
          // registrations for the CPU.
          return Effect.andThen(instance.standby.follow(event.successor), env.releaseSpent)
        case "Designated":
          return Effect.flatMap(instance.standby.open, (standbyAt) =>
            standbyAt === undefined
              ? Effect.void
              : send(event.connection, { _tag: "StandbyAt", address: standbyAt }),
          )
        case "Granted": {
          const pending = env.pendingAcquires.get(event.requestId)
          // Given up meanwhile: hand the permit back (a step of its own, after this one).
          if (pending === undefined)
            return Effect.asVoid(
              Effect.forkIn(
                node.command({ _tag: "Release", resource: event.resource }),
                instance.electionScope,
              ),
            )
          return Effect.asVoid(Deferred.succeed(pending.done, undefined))
        }
        case "AcquireRefused": {
          const pending = env.pendingAcquires.get(event.requestId)
          if (pending === undefined) return Effect.void
          return Effect.asVoid(
            Deferred.fail(
              pending.done,
              new AcquireRefused({ resource: event.resource, detail: event.reason }),
            ),
          )
        }
        case "Reply": {
          const { reply } = event
          const pending = env.pendingRequests.get(reply.id)
          if (pending === undefined) return Effect.void
          env.pendingRequests.delete(reply.id)
          return Effect.asVoid(
            reply.ok
              ? Deferred.succeed(pending.done, reply.payload)
              : Deferred.fail(
                  pending.done,
                  new RequestFailed({
                    operation: pending.operation,
                    reason: "HandlerFailed",
                    detail: String(reply.payload),
                  }),
                ),
          )
        }
        case "Command": {
          const { command, connection, supervisorId } = event
          return Effect.asVoid(
            Effect.forkIn(
              Effect.flatMap(
                env.runHandler(env.commandHandlers, command.name, command.payload, supervisorId),
                (r) => send(connection, { _tag: "CommandDone", id: command.id, ...r }),
              ),
              instance.electionScope,
            ),
          )
        }
        case "Close":
          return node.connection(event.connection)?.close ?? Effect.void
      }
    }

    const node: Runner.Connections<
      Subordinate.State,
      Message,
      Subordinate.Command,
      Subordinate.Event
    > = yield* Runner.runConnections(
      Subordinate.make({
        graceMs: env.graceMs,
        keepAliveIntervalMs: instance.connectionOptions.keepAlive.interval,
        requestTimeoutMs: env.requestTimeoutMs,
      }),
      {
        self: instance.instanceId,
        onEvent,
        closed: (connection, reason) => ({
          _tag: "Closed" as const,
          connection,
          reason: CloseReason.describe(reason),
        }),
      },
    ).pipe(Scope.provide(instance.electionScope))

    const runSubordinate = (connection: Connection.Connection<Message>, takeover?: Welcome) =>
      Effect.gen(function* () {
        const attempt: Attempt = {
          connection,
          registered: yield* Deferred.make<string | undefined, ElectionError>(),
          ended: yield* Deferred.make<boolean>(),
        }
        // Built before any Welcome is taken in: `previous` names the registry of the
        // supervisor this instance had, not of the one that welcomes it.
        const registration = instance.shared.preparedRegistration ?? env.registerMessage()
        const welcome = yield* Effect.gen(function* () {
          yield* node.attach([connection], ([id]) => {
            attempts.set(id!, attempt)
            return [
              {
                _tag: "Connected",
                connection: id!,
                registration,
                waiting: [...env.pendingAcquires].map(([requestId, { resource, limit }]) => [
                  requestId,
                  { resource, limit },
                ]),
                ...(takeover === undefined ? {} : { takeover }),
              },
            ]
          })
          return yield* Deferred.await(attempt.registered)
        }).pipe(
          Effect.tap((welcome) =>
            Effect.annotateCurrentSpan({
              "understudy.outcome": welcome === undefined ? "retry" : "welcomed",
              "understudy.supervisor": welcome ?? "",
            }),
          ),
          Effect.withSpan("port-election.register", {
            attributes: {
              "understudy.instance": instance.instanceId,
              // Again: after a supervisor was lost (over the successor's standby link or not).
              "understudy.again": takeover !== undefined || registration.previous !== undefined,
              "understudy.standby": takeover !== undefined,
              "understudy.holdings": registration.holdings.length,
            },
          }),
        )
        if (welcome === undefined) return "retry" as const
        yield* Deferred.succeed(instance.firstRole, undefined)
        yield* instance.settle
        const reason = yield* connection.closed
        // The failure is noticed now: the detection time runs from the last thing heard on
        // the connection (a message or a keep-alive), both read before the bind below.
        const noticedAtMs = yield* now
        const lastHeardAtMs = yield* connection.lastHeardAtMs
        // Every survivor standing by waits for the successor's bind: it goes first, before
        // its own bookkeeping. (If it fails, the next attempt tries again.)
        if (instance.standby.listening() !== undefined) {
          const scope = yield* Scope.fork(instance.electionScope)
          const listened = yield* Effect.result(
            Scope.provide(
              instance.transport.listen(instance.address, instance.connectionOptions),
              scope,
            ),
          )
          if (Result.isSuccess(listened))
            instance.shared.bound = { scope, listener: listened.success }
          else yield* Scope.close(scope, Exit.void)
        }
        // What arrived before the close is stepped first: a Registry stepped after the
        // deadline was set would take it off with nobody holding the permits.
        const resigned = yield* Deferred.await(attempt.ended)
        // Recorded once every message was stepped: a Resigning read only now still says it
        // was none.
        if (CloseReason.isPeerFailure(reason) && !resigned) {
          yield* Metric.update(
            Metric.withAttributes(Metrics.detectionMs, { reason: reason._tag }),
            Math.max(0, noticedAtMs - lastHeardAtMs),
          )
        }
        // Bound, it supervises next, and `Supervising` would take the deadline off at once:
        // arming it would only cost the successor a step and a timer on its way to welcome
        // the others.
        if (instance.shared.bound === undefined)
          yield* node.command({ _tag: "Lost", lastHeardAtMs })
        instance.shared.upstream = undefined
        instance.shared.role = { _tag: "Electing" }
        for (const [id, pending] of env.pendingRequests) {
          env.pendingRequests.delete(id)
          yield* Deferred.fail(
            pending.done,
            new RequestFailed({
              operation: pending.operation,
              reason: "SupervisorLost",
              detail: CloseReason.describe(reason),
            }),
          )
        }
        yield* instance.emit({
          _tag: "SupervisorLost",
          supervisorId: welcome,
          reason: CloseReason.describe(reason),
          atMs: yield* now,
        })
        return "lost" as const
      }).pipe(Effect.ensuring(Effect.sync(() => attempts.clear())))

    // A command to a node that stopped is interrupted: the election is over, nothing to do.
    const step = (command: Subordinate.Command) => Effect.asVoid(Effect.exit(node.command(command)))

    return {
      runSubordinate,
      step,
      supervising: step({ _tag: "Supervising" }),
    }
  })
