/**
 * Leader-only mode: elect, observe and resign, with no state machine of the user's (what
 * etcd3's `election(name).campaign(id)` / `observe()` give). Each member runs a server of the
 * staggered election (with an empty replicated state); the master registered in the name
 * server is the leader. Its epoch is the fencing token: it only grows, so a resource that
 * remembers the highest token it saw refuses a deposed leader that did not yet notice.
 *
 * A leader is a leader while `status.serving`: registered in the name server and
 * acknowledged by a majority within the inquiry time-out (it stops being one when either is
 * lost; see `ServerGroup`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Leadership } from "@understudy/staggered-election"
 *
 * declare const options: Leadership.Options
 * const program = Effect.gen(function* () {
 *   const member = yield* Leadership.make(options)
 *   const token = yield* member.campaign // resolves once this member leads
 *   // ... write to the external resource with `token` as the fencing token ...
 *   yield* member.resign
 * })
 * ```
 *
 * @since 0.1.0
 */
import type { NameServer } from "@understudy/store"
import type { Datagram, TransportError } from "@understudy/transport"
import { Effect, Exit, Option, Schedule, Schema, Scope, Stream } from "effect"
import type * as Machine from "./Machine.ts"
import * as ServerGroup from "./ServerGroup.ts"
import type * as Wal from "./Wal.ts"

/**
 * Everything `ServerGroup.Options` takes except the state machine.
 *
 * @since 0.1.0
 * @category models
 */
export type Options = Omit<
  ServerGroup.Options<null, never, never>,
  "request" | "initial" | "apply" | "reads"
>

/** Who leads, and its fencing token. @since 0.1.0 @category models */
export interface Leader {
  readonly id: string
  readonly token: number
}

/** @since 0.1.0 @category models */
export interface Leadership {
  readonly self: string
  /** Waits until this member leads; gives its fencing token (the epoch). */
  readonly campaign: Effect.Effect<number>
  /** The leader now (`None` while there is none), then every change. */
  readonly observe: Stream.Stream<Option.Option<Leader>>
  /** This member's view now. */
  readonly leader: Effect.Effect<Option.Option<Leader>>
  /** Leaves the election for good (a leader hands over: the others elect another). */
  readonly resign: Effect.Effect<void>
}

/**
 * Joins the election as `options.self`; leaves it when the scope closes (or on `resign`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options,
): Effect.Effect<
  Leadership,
  TransportError.ListenError | Machine.InvalidConfig | Wal.WalCorrupt | Wal.WalFailed,
  Datagram.Datagram | NameServer.NameServer | Scope.Scope
> =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const server = yield* ServerGroup.make<null, never, never>({
      ...options,
      request: Schema.Never,
      initial: null,
      apply: (state) => [state, undefined as never],
    }).pipe(Scope.provide(scope))
    const poll = Schedule.spaced(options.detectionPeriod)

    const leader = Effect.map(
      server.status,
      (status): Option.Option<Leader> =>
        status.role === "master" && status.serving
          ? Option.some({ id: status.self, token: status.epoch })
          : status.role === "backup" && status.master !== null
            ? Option.some({ id: status.master, token: status.epoch })
            : Option.none(),
    )

    const campaign = Effect.gen(function* () {
      const status = yield* server.status
      if (status.role === "master" && status.serving) return status.epoch
      return yield* Effect.fail(undefined)
    }).pipe(Effect.retry({ schedule: poll }), Effect.orDie)

    const observe = Stream.fromEffectSchedule(leader, poll).pipe(
      Stream.changesWith(
        Option.makeEquivalence((a: Leader, b: Leader) => a.id === b.id && a.token === b.token),
      ),
    )

    return {
      self: options.self,
      campaign,
      observe,
      leader,
      resign: Scope.close(scope, Exit.void),
    } satisfies Leadership
  })
