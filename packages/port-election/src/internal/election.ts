/**
 * The driver of the election loop (`ElectionLoop.ts`): binds the address, connects to its
 * holder, runs the supervisor's term (`supervisor.ts`) or the subordinate's
 * (`subordinate.ts`), waits for the successor's takeover over the standby link, and steps
 * what came of each back into the machine, with its timers (the back-off, the standby wait)
 * on the Effect clock. The machine decides what to try next and when the election fails.
 */
import { Machine as M } from "@understudy/machine"
import type { Connection, Transport } from "@understudy/transport"
import { Clock, Deferred, Effect, Exit, Random, Result, Scope, type Tracer } from "effect"
import type { ElectionError } from "../Election.ts"
import * as ElectionLoop from "../ElectionLoop.ts"
import type * as Registry from "../Registry.ts"
import type { Instance } from "./instance.ts"
import type { Message } from "./protocol.ts"

/** What the election loop alone needs, beside the instance. @since 0.1.0 @category models */
export interface Env {
  /** Scopes of attempts whose supervisor was lost, torn down later (`releaseSpent`). */
  readonly spent: Array<Scope.Closeable>
  readonly attemptsMax: number
  /** How long a member that lost its supervisor waits for the successor's takeover. */
  readonly standbyWaitMs: number
  /**
   * Supervises on `listener`; `release` closes the listener's scope, its accepted
   * connections with it (idempotent; the address is freed before, by `listener.unbind`).
   */
  readonly runSupervisor: (
    listener: Transport.Listener<Message>,
    release: Effect.Effect<void>,
  ) => Effect.Effect<never, never, Scope.Scope>
  readonly runSubordinate: (
    connection: Connection.Connection<Message>,
    takeover?: Registry.Welcome,
  ) => Effect.Effect<"retry" | "lost", ElectionError, Scope.Scope>
}

type Command = ElectionLoop.Command

/** What the current attempt holds, closed or kept when it is over. */
interface Attempt {
  readonly scope: Scope.Closeable
  readonly epoch: number
  listener?: {
    readonly listener: Transport.Listener<Message>
    readonly release: Effect.Effect<void>
  }
  connection?: Connection.Connection<Message>
  link?: { readonly scope: Scope.Closeable }
  takeover?: Registry.Welcome
  /** `port-election.election`: from the bind to its outcome (bound, connected, retry). */
  span?: Tracer.Span
}

/**
 * The loop, until the election's scope closes or the election fails.
 *
 * @since 0.1.0
 * @category constructors
 */
export const loop = (instance: Instance, env: Env): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const machine = ElectionLoop.make({
      address: instance.addressText,
      attemptsMax: env.attemptsMax,
      standbyWaitMs: env.standbyWaitMs,
      seed: yield* Random.nextInt,
    })
    const started = machine.init({
      self: instance.instanceId,
      peers: [],
      nowMs: yield* Clock.currentTimeMillis,
    })
    let state = started.state
    let outputs = started.outputs
    let attempt: Attempt | undefined

    const newAttempt = (epoch: number) =>
      Effect.map(Scope.fork(instance.electionScope), (scope) => {
        attempt = { scope, epoch }
        return attempt
      })

    /** Its span ends with the outcome the machine took from the bind or the connect. */
    const endSpan = Effect.gen(function* () {
      const span = attempt?.span
      if (span === undefined) return
      const phase = state.phase
      if (phase._tag === "Binding" || phase._tag === "Connecting") return
      delete attempt!.span
      const endTime = yield* Clock.currentTimeNanos
      if (phase._tag === "Failed") return span.end(endTime, Exit.fail(phase.error))
      const outcome =
        phase._tag === "Supervising"
          ? "bound"
          : phase._tag === "Subordinate"
            ? "connected"
            : "retry"
      span.attribute("understudy.outcome", outcome)
      span.end(endTime, Exit.void)
    })

    /** Binds in a scope of its own, so a supervisor that stops can free the address first. */
    const bind = (current: Attempt) =>
      Effect.gen(function* () {
        // The successor bound the address the moment its supervisor was lost.
        const early = instance.shared.bound
        instance.shared.bound = undefined
        if (early !== undefined) {
          const release = Scope.close(early.scope, Exit.void)
          yield* Scope.addFinalizer(current.scope, release)
          current.listener = { listener: early.listener, release }
          return { _tag: "Bound" } as const
        }
        // Ended by the step that leaves Binding or Connecting, or at the latest with the attempt.
        current.span = yield* Scope.provide(
          Effect.makeSpanScoped("port-election.election", {
            attributes: {
              "understudy.instance": instance.instanceId,
              "understudy.address": instance.addressText,
            },
          }),
          current.scope,
        )
        const bindScope = yield* Scope.fork(current.scope)
        const listened = yield* Effect.result(
          Scope.provide(
            instance.transport.listen(instance.address, instance.connectionOptions),
            bindScope,
          ),
        ).pipe(Effect.withParentSpan(current.span))
        if (Result.isSuccess(listened)) {
          current.listener = {
            listener: listened.success,
            release: Scope.close(bindScope, Exit.void),
          }
          return { _tag: "Bound" } as const
        }
        yield* Scope.close(bindScope, Exit.void)
        return {
          _tag: "BindFailed",
          addressInUse: listened.failure.reason === "AddressInUse",
          detail: listened.failure.message,
        } as const
      })

    const connect = (current: Attempt) =>
      Effect.gen(function* () {
        const connected = yield* Effect.result(
          Scope.provide(
            instance.transport.connect(instance.address, instance.connectionOptions),
            current.scope,
          ),
        ).pipe(
          current.span === undefined ? (effect) => effect : Effect.withParentSpan(current.span),
        )
        if (Result.isSuccess(connected)) {
          current.connection = connected.success
          return { _tag: "Connected" } as const
        }
        const error = connected.failure
        return {
          _tag: "ConnectFailed",
          reason: error._tag === "ConnectError" ? "Unreachable" : error.reason,
          detail: error._tag === "ConnectError" ? error.message : error.detail,
        } as const
      })

    /** The subordinate's term, over the connection or the standby link. */
    const serve = (current: Attempt, connection: Connection.Connection<Message>) =>
      Effect.gen(function* () {
        const ended = yield* Effect.result(
          Scope.provide(env.runSubordinate(connection, current.takeover), current.scope),
        )
        if (Result.isSuccess(ended)) {
          return {
            _tag: "Ended",
            outcome: ended.success,
            standingBy: ended.success === "lost" && instance.standby.link() !== undefined,
          } as const
        }
        return { _tag: "SubordinateFailed", error: ended.failure } as const
      })

    /** Takes the standby link (spent either way: a later successor gets a new one) and waits. */
    const awaitTakeover = (current: Attempt) =>
      Effect.gen(function* () {
        const link = instance.standby.takeLink()
        if (link === undefined) return { _tag: "NoTakeover" } as const
        current.link = link
        const takeover = yield* Deferred.await(link.takeover)
        if (takeover === undefined || link.connection === undefined) {
          return { _tag: "NoTakeover" } as const
        }
        current.connection = link.connection
        current.takeover = takeover
        return { _tag: "TakenOver" } as const
      })

    /** The attempt's scope and link: closed, or kept as spent after a lost supervisor. */
    const attemptOver = (keep: boolean) =>
      Effect.gen(function* () {
        const current = attempt
        attempt = undefined
        if (current === undefined) return
        for (const scope of [current.scope, current.link?.scope]) {
          if (scope === undefined) continue
          if (keep) env.spent.push(scope)
          else yield* Scope.close(scope, Exit.void)
        }
      })

    const failed = (error: ElectionError) =>
      Effect.gen(function* () {
        instance.shared.role = { _tag: "Failed", error }
        yield* instance.emit({ _tag: "Failed", error })
        yield* Deferred.fail(instance.firstRole, error)
        yield* instance.settle
      })

    while (true) {
      // What the outputs ask: at most one thing to wait for, and at most one timer.
      let waiting: Effect.Effect<Command> | undefined
      let timer: { readonly name: string; readonly afterMs: number } | undefined
      for (const output of outputs) {
        if (output._tag === "SetTimer") timer = { name: output.timer, afterMs: output.afterMs }
        else if (output._tag === "CancelTimer") {
          if (timer?.name === output.timer) timer = undefined
        } else if (output._tag === "Emit") {
          const event = output.event
          switch (event._tag) {
            case "Bind":
              waiting = bind(yield* newAttempt(event.epoch))
              break
            case "Connect":
              waiting = connect(attempt!)
              break
            case "StopStandingBy":
              yield* instance.standby.close
              break
            case "Supervise": {
              const { listener, release } = attempt!.listener!
              return yield* Scope.provide(
                env.runSupervisor(listener, release),
                attempt!.scope,
              ).pipe(Effect.annotateLogs({ epoch: attempt!.epoch }))
            }
            case "Serve":
              waiting = serve(attempt!, attempt!.connection!)
              break
            case "AwaitTakeover":
              waiting = awaitTakeover(yield* newAttempt(event.epoch))
              break
            case "AttemptOver":
              yield* attemptOver(event.keep)
              break
            case "Failed":
              return yield* failed(event.error)
          }
        }
      }
      const epoch = state.epoch
      const wait: Effect.Effect<{ readonly timer: string } | Command> | undefined =
        timer === undefined
          ? waiting
          : waiting === undefined
            ? Effect.as(Effect.sleep(timer.afterMs), { timer: timer.name })
            : // The standby wait: the takeover, unless the timer fires first.
              Effect.map(Effect.timeoutOption(waiting, timer.afterMs), (option) =>
                option._tag === "Some" ? option.value : { timer: timer.name },
              )
      // Each step that is not final asks for a wait, a timer or both (ElectionLoop.ts).
      if (wait === undefined) {
        return yield* Effect.die(
          new Error(
            `the election loop's step into ${state.phase._tag} (epoch ${epoch}) asked for neither a wait nor a timer`,
          ),
        )
      }
      const next = yield* wait.pipe(Effect.annotateLogs({ epoch }))
      const nowMs = yield* Clock.currentTimeMillis
      const stepped = machine.step(
        state,
        "timer" in next ? { _tag: "TimerFired", timer: next.timer, nowMs } : M.command(next, nowMs),
      )
      state = stepped.state
      outputs = stepped.outputs
      yield* endSpan
    }
  })
