/**
 * The supervisor driver: runs one term of the supervisor's `Machine` over member
 * connections and the Effect `Clock`, as the shared `Runner` runs a machine over datagrams
 * (which a stream transport's connections are not). Each accepted connection gets a
 * `ConnectionId`; what it carries is stepped as `Receive`, its end as `Closed`. Steps are
 * synchronous and one at a time; their outputs are performed in order: sends go over the
 * member's connection, timers are sleeps on `Clock` (so `TestClock` drives them), and the
 * events the driver does not handle itself (`Close`, `Reserved`) go to `onEvent`.
 *
 * Everything it starts lives in the caller's `Scope`: closing it ends the term.
 */
import { Machine as M } from "@understudy/machine"
import { CloseReason, type Connection } from "@understudy/transport"
import { Clock, Effect, Fiber, type Scope, Stream } from "effect"
import * as Machine from "../Machine.ts"
import type * as Registry from "../Registry.ts"
import type { Message } from "./protocol.ts"

/** @since 0.1.0 @category models */
export interface Env {
  readonly config: Machine.Config
  /** How often the process of a cut-off member is looked at (only in this pid namespace). */
  readonly pollMs: number
  /** Whether a process of this pid namespace runs; unknown when absent. */
  readonly isRunning: ((pid: number) => boolean) | undefined
  /**
   * The events for the instance: its own grants, the public events, requests. Called from
   * `init` on, with the term (whose `step` it may use for a command in answer).
   */
  readonly onEvent: (event: Machine.Event, term: Supervising) => Effect.Effect<void>
}

/** A running term. @since 0.1.0 @category models */
export interface Supervising {
  /** The machine's state, for reading (the registry, the members). */
  readonly state: () => Machine.State
  /** Steps the machine with one of this instance's commands and performs its outputs. */
  readonly step: (command: Machine.Command) => Effect.Effect<void>
  /** The open connection of a member, to send it what is no registry decision (replies, commands). */
  readonly connection: (id: Machine.ConnectionId) => Connection.Connection<Message> | undefined
  /** Serves a connection accepted at the election address until it closes. */
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
 * Starts the term: `init` now, then every step as its input comes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = (env: Env): Effect.Effect<Supervising, never, Scope.Scope> =>
  Effect.gen(function* () {
    const machine = Machine.make(env.config)
    const scope = yield* Effect.scope
    const connections = new Map<Machine.ConnectionId, Connection.Connection<Message>>()
    let counter = 0
    const timers = new Map<string, Fiber.Fiber<void>>()

    const cancel = (timer: string) =>
      Effect.suspend(() => {
        const fiber = timers.get(timer)
        if (fiber === undefined) return Effect.void
        timers.delete(timer)
        return Fiber.interrupt(fiber)
      })

    const arm = (timer: string, afterMs: number) =>
      Effect.gen(function* () {
        yield* cancel(timer)
        const fiber: Fiber.Fiber<void> = yield* Effect.forkIn(
          Effect.andThen(
            Effect.sleep(afterMs),
            Effect.suspend(() => {
              // A timer set again or cancelled since is not this one.
              if (timers.get(timer) !== fiber) return Effect.void
              timers.delete(timer)
              return Effect.flatMap(Clock.currentTimeMillis, (nowMs) =>
                stepWith(M.timerFired(timer, nowMs)),
              )
            }),
          ),
          scope,
        )
        timers.set(timer, fiber)
      })

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
          const reserved = [...state.members.values()].some(
            (entry) => entry.connection === connection && entry.cutOff,
          )
          if (leftMs <= 0 || !reserved) return
          if (!isRunning(pid)) return yield* step({ _tag: "ProcessGone", connection })
          yield* Effect.sleep(Math.min(env.pollMs, leftMs))
        }
      })

    const perform = (outputs: ReadonlyArray<Machine.Output>): Effect.Effect<void> =>
      Effect.forEach(
        outputs,
        (output) => {
          switch (output._tag) {
            case "Send": {
              const connection = connections.get(output.to)
              return connection === undefined
                ? Effect.void
                : Effect.ignore(connection.send(output.message))
            }
            case "Broadcast":
              return Effect.forEach(
                connections.values(),
                (c) => Effect.ignore(c.send(output.message)),
                {
                  discard: true,
                },
              )
            case "SetTimer":
              return arm(output.timer, output.afterMs)
            case "CancelTimer":
              return cancel(output.timer)
            case "Emit": {
              const event = output.event
              switch (event._tag) {
                case "Close":
                  return connections.get(event.connection)?.close ?? Effect.void
                case "Reserved":
                  return Effect.asVoid(Effect.forkIn(watch(event.connection, event.pid), scope))
                default:
                  return env.onEvent(event, term)
              }
            }
          }
        },
        { discard: true },
      )

    // One step at a time: the step itself is synchronous, so nothing runs in between.
    const stepWith = (input: M.Input<Message, Machine.Command>) =>
      Effect.suspend(() => {
        const next = machine.step(state, input)
        state = next.state
        return perform(next.outputs)
      })

    const step = (command: Machine.Command) =>
      Effect.flatMap(Clock.currentTimeMillis, (nowMs) => stepWith(M.command(command, nowMs)))

    const add = (connection: Connection.Connection<Message>): Machine.ConnectionId => {
      const id = `c${++counter}`
      connections.set(id, connection)
      return id
    }

    /** Steps what the connection carries, then its end. */
    const read = (id: Machine.ConnectionId, connection: Connection.Connection<Message>) =>
      Effect.gen(function* () {
        yield* Stream.runForEach(connection.messages, (message) =>
          Effect.flatMap(Clock.currentTimeMillis, (nowMs) =>
            stepWith(M.receive(id, message, nowMs)),
          ),
        )
        const reason = yield* connection.closed
        yield* step({ _tag: "Closed", connection: id, reason: CloseReason.describe(reason) })
        connections.delete(id)
      })

    const term: Supervising = {
      state: () => state,
      step,
      connection: (id) => connections.get(id),
      accept: (connection) =>
        Effect.gen(function* () {
          const id = add(connection)
          yield* step({ _tag: "Connected", connection: id })
          yield* read(id, connection)
        }),
      admit: (standing, welcome) =>
        Effect.gen(function* () {
          const added = standing.map(
            ([connection, preRegistration]) =>
              [add(connection), connection, preRegistration] as const,
          )
          const admitted = added.map(([connection, , preRegistration]) => ({
            connection,
            preRegistration,
          }))
          yield* welcome
            ? step({ _tag: "Admit", standing: admitted })
            : Effect.forEach(
                admitted,
                ({ connection, preRegistration }) =>
                  step({ _tag: "PreRegistered", connection, preRegistration }),
                { discard: true },
              )
          for (const [id, connection] of added) yield* Effect.forkIn(read(id, connection), scope)
        }),
    }

    const initial = machine.init({
      self: env.config.self.instanceId,
      peers: [],
      nowMs: yield* Clock.currentTimeMillis,
    })
    let state = initial.state
    yield* perform(initial.outputs)
    return term
  })
