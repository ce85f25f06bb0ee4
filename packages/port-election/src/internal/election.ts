/**
 * The election loop of one instance: bind the address or connect to whoever holds it, run
 * as supervisor (`supervisor.ts`'s machine) or subordinate (`subordinate.ts`) until that
 * ends, and try again, over the successor's standby link first when one is up. Fails the
 * instance (`Failed`) for an address held by something that is not a supervisor of this
 * program for this user, or after `attemptsMax` attempts that found the address held but
 * never answered.
 */
import type { Connection, Transport } from "@understudy/transport"
import { Deferred, Effect, Exit, Random, Result, Scope } from "effect"
import type { ElectionError } from "../Election.ts"
import {
  ElectionFailed,
  NotPermitted,
  OtherProgramOnAddress,
  StrangerOnAddress,
} from "../ElectionError.ts"
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

/**
 * The loop, until the election's scope closes or the election fails.
 *
 * @since 0.1.0
 * @category constructors
 */
export const loop = (instance: Instance, env: Env): Effect.Effect<void, never, Scope.Scope> => {
  /**
   * One election: bind the address, or else connect to whoever holds it. Fails for an
   * address held by something that is not a supervisor of this program for this user.
   */
  const elect = Effect.gen(function* () {
    // The listener in a scope of its own, so a supervisor that stops can free the address,
    // say goodbye on its connections, and only then close them.
    const bindScope = yield* Scope.fork(yield* Effect.scope)
    const listened = yield* Effect.result(
      Scope.provide(
        instance.transport.listen(instance.address, instance.connectionOptions),
        bindScope,
      ),
    )
    if (Result.isSuccess(listened)) {
      return {
        _tag: "Bound",
        listener: listened.success,
        release: Scope.close(bindScope, Exit.void),
      } as const
    }
    yield* Scope.close(bindScope, Exit.void)
    // A successor that lost the bind is no successor: whoever stands by at it elects
    // the usual way now instead of waiting for a takeover that will not come.
    yield* instance.standby.close
    if (listened.failure.reason !== "AddressInUse") {
      return yield* new ElectionFailed({
        address: instance.addressText,
        attempts: 1,
        detail: listened.failure.message,
      })
    }
    const connected = yield* Effect.result(
      instance.transport.connect(instance.address, instance.connectionOptions),
    )
    if (Result.isSuccess(connected)) {
      return { _tag: "Connected", connection: connected.success } as const
    }
    const error = connected.failure
    if (error._tag === "ConnectError") return { _tag: "Retry" } as const
    switch (error.reason) {
      case "NotUnderstudy":
        return yield* new StrangerOnAddress({ address: instance.addressText, detail: error.detail })
      case "VersionMismatch":
        return yield* new OtherProgramOnAddress({
          address: instance.addressText,
          reason: "IncompatibleVersion",
          program: "unknown",
          version: -1,
        })
      default:
        return yield* new NotPermitted({ address: instance.addressText, detail: error.detail })
    }
  }).pipe(
    Effect.tap((outcome) =>
      Effect.annotateCurrentSpan("understudy.outcome", outcome._tag.toLowerCase()),
    ),
    Effect.withSpan("port-election.election", {
      attributes: {
        "understudy.instance": instance.instanceId,
        "understudy.address": instance.addressText,
      },
    }),
  )

  /** One try: bind and supervise, or connect and serve as a subordinate. */
  const attemptIn = Effect.gen(function* () {
    const early = instance.shared.bound
    instance.shared.bound = undefined
    if (early !== undefined) {
      const release = Scope.close(early.scope, Exit.void)
      yield* Effect.addFinalizer(() => release)
      return yield* env.runSupervisor(early.listener, release)
    }
    const outcome = yield* elect
    switch (outcome._tag) {
      case "Bound":
        return yield* env.runSupervisor(outcome.listener, outcome.release)
      case "Connected":
        return yield* env.runSubordinate(outcome.connection)
      case "Retry":
        return "retry" as const
    }
  })

  /** Runs `effect` in a scope of its own, kept open as `spent` if it lost its supervisor. */
  const inScope = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>, lost: (a: A) => boolean) =>
    Effect.gen(function* () {
      const scope = yield* Scope.fork(instance.electionScope)
      const exit = yield* Effect.exit(Scope.provide(effect, scope))
      if (Exit.isSuccess(exit) && lost(exit.value)) env.spent.push(scope)
      else yield* Scope.close(scope, exit)
      return yield* exit
    })

  const attempt = inScope(attemptIn, (outcome) => outcome === "lost")

  /**
   * After losing the supervisor with a link to the successor: waits (bounded) for its
   * takeover and registers over the link, instead of racing every other survivor for the
   * bind and then connecting. "none" when no takeover came: elect the usual way.
   */
  const overStandby = Effect.gen(function* () {
    // Spent either way: a later successor gets a new link.
    const link = instance.standby.takeLink()
    if (link === undefined) return "none" as const
    const takeover = yield* Deferred.await(link.takeover).pipe(
      Effect.timeoutOption(env.standbyWaitMs),
    )
    if (takeover._tag === "None" || takeover.value === undefined || link.connection === undefined) {
      yield* Scope.close(link.scope, Exit.void)
      return "none" as const
    }
    const outcome = yield* env
      .runSubordinate(link.connection, takeover.value)
      .pipe(
        Effect.onExit((exit) =>
          Exit.isSuccess(exit) && exit.value === "lost"
            ? Effect.sync(() => void env.spent.push(link.scope))
            : Scope.close(link.scope, Exit.void),
        ),
      )
    return outcome === "lost" ? outcome : ("none" as const)
  })

  const electionLoop = Effect.gen(function* () {
    let failures = 0
    let lost = false
    // This instance's term: one more for each attempt to take a role. Every log line of the
    // attempt (its role, the supervisor's or subordinate's work) carries it as `epoch`.
    let epoch = 0
    while (failures < env.attemptsMax) {
      const outcome: "lost" | "retry" | "none" = yield* (
        lost && instance.standby.link() !== undefined ? overStandby : attempt
      ).pipe(Effect.annotateLogs({ epoch: ++epoch }))
      lost = outcome === "lost"
      if (outcome === "lost") {
        failures = 0
        continue
      }
      if (outcome === "none") continue
      failures++
      // Somebody else is mid-bind or mid-start: back off a little, with jitter so the
      // losers do not retry in lockstep.
      const ceilingMs = Math.min(250, 2 ** Math.min(failures, 8))
      yield* Effect.sleep(Math.ceil((yield* Random.next) * ceilingMs))
    }
    return yield* new ElectionFailed({
      address: instance.addressText,
      attempts: failures,
      detail: "the instance.address was held but never answered",
    })
  }).pipe(
    Effect.catch((error: ElectionError) =>
      Effect.gen(function* () {
        instance.shared.role = { _tag: "Failed", error }
        yield* instance.emit({ _tag: "Failed", error })
        yield* Deferred.fail(instance.firstRole, error)
        yield* instance.settle
      }),
    ),
  )

  return electionLoop
}
