/**
 * The name server: who holds a role, at which epoch. A holder
 * registers under a lease that it keeps alive; the registration vanishes when the holder
 * dies. A newer epoch always wins and a stale holder can never overwrite a newer one, even
 * after the newer one's lease expired: the highest epoch ever registered is kept in a
 * key of its own, which is only ever raised by compare-and-set.
 *
 * Keys, under `prefix` (default `/understudy/roles/`): `<role>/epoch` (no lease) and
 * `<role>/holder` (on the holder's lease).
 *
 * @since 0.1.0
 */
import { Options } from "@understudy/transport"
import {
  Clock,
  Context,
  Deferred,
  type Duration,
  Effect,
  Layer,
  Metric,
  Option,
  Result,
  Schedule,
  Schema,
  type Scope,
  Stream,
} from "effect"
import * as Metrics from "./Metrics.ts"
import { Store } from "./Store.ts"
import { InvalidRequest, type LeaseExpired, Unavailable } from "./StoreError.ts"

/** @since 0.1.0 @category models */
export const Holder = Schema.Struct({
  role: Schema.String,
  holder: Schema.String,
  epoch: Schema.Number,
})

/** @since 0.1.0 @category models */
export type Holder = typeof Holder.Type

const HolderJson = Schema.fromJsonString(Holder)
const encodeHolder = (holder: Holder) =>
  new TextEncoder().encode(Schema.encodeSync(HolderJson)(holder))
const decodeHolder = (bytes: Uint8Array): Option.Option<Holder> =>
  Schema.decodeUnknownOption(HolderJson)(new TextDecoder().decode(bytes))

/**
 * A registration was refused because the role already has this or a newer epoch.
 *
 * @since 0.1.0
 * @category errors
 */
export class StaleEpoch extends Schema.TaggedError<StaleEpoch>()("StaleEpoch", {
  role: Schema.String,
  epoch: Schema.Number,
  current: Schema.Number,
  currentHolder: Schema.String,
}) {
  override get message(): string {
    return `epoch ${this.epoch} of ${this.role} is stale: ${this.currentHolder} holds epoch ${this.current}`
  }
}

/**
 * Why a registration ended while its scope was still open. `Unreachable`: no keep-alive
 * reached the store for a whole TTL (retried meanwhile), so the lease may have ended there
 * and another holder may be registered: act as if it had.
 *
 * @since 0.1.0
 * @category models
 */
export type Lost =
  | { readonly _tag: "LeaseExpired" }
  | { readonly _tag: "Superseded"; readonly by: Option.Option<Holder> }
  | { readonly _tag: "Unreachable"; readonly detail: string }

/** @since 0.1.0 @category models */
export interface Registration {
  readonly holder: Holder
  /** The store lease the registration lives on. */
  readonly lease: string
  /**
   * Completes if the registration is lost before its scope closes: at the latest one TTL
   * after the last keep-alive that reached the store was sent (before the store can have
   * let anyone else register).
   */
  readonly lost: Effect.Effect<Lost>
}

/** @since 0.1.0 @category models */
export interface RegisterOptions {
  /**
   * Lease TTL: how long after the holder's death its registration vanishes. Default 3
   * seconds; one that is not a positive duration fails `register` with `InvalidRequest`.
   */
  readonly ttl?: Duration.Input
}

/** @since 0.1.0 @category services */
export class NameServer extends Context.Service<
  NameServer,
  {
    /**
     * Registers `holder` for `role` at `epoch`, keeps its lease alive while the scope is
     * open, and revokes it when the scope closes. Fails with `StaleEpoch` when the role has
     * a newer epoch, or this epoch for another holder.
     */
    readonly register: (
      role: string,
      holder: string,
      epoch: number,
      options?: RegisterOptions,
    ) => Effect.Effect<
      Registration,
      StaleEpoch | Unavailable | InvalidRequest | LeaseExpired,
      Scope.Scope
    >
    /** The current holder of a role, if its lease is alive. */
    readonly resolve: (
      role: string,
    ) => Effect.Effect<Option.Option<Holder>, Unavailable | InvalidRequest>
    /** The current holder, then every change (`None` when the holder's lease ends). */
    readonly changes: (role: string) => Stream.Stream<Option.Option<Holder>, unknown>
  }
>()("@understudy/store/NameServer") {}

/** Compare-and-set rounds before a registration gives up under contention. */
const casAttemptsMax = 32

/**
 * A name server on the `Store` in context.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: { readonly prefix?: string } = {}) =>
  Effect.gen(function* () {
    const store = yield* Store
    const prefix = options.prefix ?? "/understudy/roles/"
    const epochKey = (role: string) => `${prefix}${role}/epoch`
    const holderKey = (role: string) => `${prefix}${role}/holder`

    const read = (key: string) =>
      Effect.map(store.get(key), (kv) =>
        Option.map(kv, (kv) => ({ modRevision: kv.modRevision, holder: decodeHolder(kv.value) })),
      )

    /** Raises the role's epoch record to `me`, or fails if it is at or past it. */
    const claimEpoch = (me: Holder) =>
      Effect.gen(function* () {
        for (let attempt = 0; attempt < casAttemptsMax; attempt++) {
          const current = yield* read(epochKey(me.role))
          const known = Option.flatMap(current, (c) => c.holder)
          if (Option.isSome(known)) {
            const { epoch, holder } = known.value
            if (epoch > me.epoch || (epoch === me.epoch && holder !== me.holder)) {
              return yield* new StaleEpoch({
                role: me.role,
                epoch: me.epoch,
                current: epoch,
                currentHolder: holder,
              })
            }
            if (epoch === me.epoch) return
          }
          const ifModRevision = Option.match(current, {
            onNone: () => 0,
            onSome: (c) => c.modRevision,
          })
          const written = yield* store
            .put(epochKey(me.role), encodeHolder(me), { ifModRevision })
            .pipe(
              Effect.map(() => true),
              Effect.catchTag("Conflict", () => Effect.succeed(false)),
            )
          if (written) return
        }
        return yield* new Unavailable({ detail: `epoch of ${me.role} kept changing` })
      })

    /** Writes the holder key under `lease` unless a newer holder is there. */
    const claimHolder = (me: Holder, lease: string) =>
      Effect.gen(function* () {
        for (let attempt = 0; attempt < casAttemptsMax; attempt++) {
          const current = yield* read(holderKey(me.role))
          const known = Option.flatMap(current, (c) => c.holder)
          if (Option.isSome(known) && known.value.epoch > me.epoch) {
            return yield* new StaleEpoch({
              role: me.role,
              epoch: me.epoch,
              current: known.value.epoch,
              currentHolder: known.value.holder,
            })
          }
          const ifModRevision = Option.match(current, {
            onNone: () => 0,
            onSome: (c) => c.modRevision,
          })
          const written = yield* store
            .put(holderKey(me.role), encodeHolder(me), { lease, ifModRevision })
            .pipe(
              Effect.map(() => true),
              Effect.catchTag("Conflict", () => Effect.succeed(false)),
            )
          if (written) return
        }
        return yield* new Unavailable({ detail: `holder of ${me.role} kept changing` })
      })

    const register = (role: string, holder: string, epoch: number, opts: RegisterOptions = {}) =>
      Effect.gen(function* () {
        const me: Holder = { role, holder, epoch }
        const ttl = Options.positiveMillis("ttl", opts.ttl ?? 3_000)
        if (Result.isFailure(ttl)) return yield* new InvalidRequest({ detail: ttl.failure })
        const ttlMs = Math.round(ttl.success)
        yield* claimEpoch(me)
        // The lease's TTL may run from as early as this: `lost` counts from here.
        const grantedMs = yield* Clock.currentTimeMillis
        const lease = yield* Effect.acquireRelease(store.grantLease(ttlMs), (lease) =>
          Effect.ignore(store.revokeLease(lease.id)),
        )
        yield* claimHolder(me, lease.id)
        const { revision } = yield* store.range(holderKey(role))
        const lost = yield* Deferred.make<Lost>()
        const lose = (why: Lost) =>
          Effect.flatMap(Deferred.succeed(lost, why), (first) =>
            first
              ? Metric.update(
                  Metric.withAttributes(Metrics.registrationsLost, { reason: why._tag }),
                  1,
                )
              : Effect.void,
          )
        // Keep-alive every third of the TTL; a failed one is retried (backing off, at most a
        // sixth of the TTL apart) until a TTL has passed since the last one that reached the
        // store was sent: then the store may have ended the lease, and the holder is told.
        const periodMs = Math.max(1, Math.floor(ttlMs / 3))
        const retry = Schedule.min([
          Schedule.exponential(Math.max(1, Math.floor(ttlMs / 60))),
          Schedule.spaced(Math.max(1, Math.floor(ttlMs / 6))),
        ])
        const keepAlive = (lastSentMs: number) =>
          Effect.gen(function* () {
            const sentMs = yield* Clock.currentTimeMillis
            const leftMs = lastSentMs + ttlMs - sentMs
            if (leftMs <= 0) return yield* new Unavailable({ detail: "keep-alive overdue" })
            yield* store.keepAlive(lease.id).pipe(
              Effect.tapError((error) =>
                Effect.logWarning("name server keep-alive failed; retrying", {
                  role,
                  epoch,
                  error: error.message,
                }),
              ),
              Effect.retry({ schedule: retry, while: (error) => error._tag !== "LeaseExpired" }),
              Effect.timeoutOrElse({
                duration: leftMs,
                orElse: () =>
                  Effect.fail(
                    new Unavailable({ detail: `no keep-alive reached the store for ${ttlMs} ms` }),
                  ),
              }),
            )
            return sentMs
          })
        yield* Effect.forkScoped(
          Effect.gen(function* () {
            let lastSentMs = grantedMs
            while (true) {
              yield* Effect.sleep(periodMs)
              lastSentMs = yield* keepAlive(lastSentMs)
            }
          }).pipe(
            Effect.catchTag("LeaseExpired", () => lose({ _tag: "LeaseExpired" })),
            Effect.catch((error) =>
              Effect.andThen(
                Effect.logWarning("name server registration lost: store unreachable", {
                  role,
                  epoch,
                  error: error.message,
                }),
                lose({ _tag: "Unreachable", detail: error.message }),
              ),
            ),
          ),
        )
        // Anyone else's write to the holder key, or its deletion, ends this registration. A
        // watch cut off from the store is opened again from the same revision (an event seen
        // twice is the holder's own, or ends it once).
        yield* Effect.forkScoped(
          store.watch(holderKey(role), { fromRevision: revision + 1 }).pipe(
            Stream.map((event) =>
              event._tag === "Put" ? decodeHolder(event.kv.value) : Option.none<Holder>(),
            ),
            Stream.filter(
              (next) =>
                !(
                  Option.isSome(next) &&
                  next.value.holder === holder &&
                  next.value.epoch === epoch
                ),
            ),
            Stream.take(1),
            Stream.runForEach((by) => lose({ _tag: "Superseded", by })),
            Effect.tapError((error) =>
              Effect.logWarning("name server watch failed", { role, epoch, error: error.message }),
            ),
            Effect.retry({ schedule: retry, while: (error) => error._tag === "Unavailable" }),
            // Changes can no longer be watched (compacted, refused): whether someone else
            // registered is unknown, so the registration counts as lost.
            Effect.catch((error) => lose({ _tag: "Unreachable", detail: error.message })),
          ),
        )
        return { holder: me, lease: lease.id, lost: Deferred.await(lost) } satisfies Registration
      }).pipe(
        Effect.onExit((exit) =>
          Metric.update(
            Metric.withAttributes(Metrics.registrations, {
              outcome: exit._tag === "Success" ? "registered" : Metrics.outcome(exit),
            }),
            1,
          ),
        ),
        Effect.withSpan("store.name-server.register", {
          attributes: { "store.role": role, "store.holder": holder, "store.epoch": epoch },
        }),
        // The keep-alive and watch fibers forked here log with these too.
        Effect.annotateLogs({ role, holder, epoch }),
      )

    const resolve = (role: string) =>
      Effect.map(read(holderKey(role)), (current) => Option.flatMap(current, (c) => c.holder))

    const changes = (role: string) =>
      Stream.unwrap(
        Effect.gen(function* () {
          const { revision, items } = yield* store.range(holderKey(role))
          const first = Option.flatMap(
            Option.fromUndefinedOr(items.find((kv) => kv.key === holderKey(role))),
            (kv) => decodeHolder(kv.value),
          )
          const later = store
            .watch(holderKey(role), { fromRevision: revision + 1 })
            .pipe(
              Stream.map((event) =>
                event._tag === "Put" ? decodeHolder(event.kv.value) : Option.none<Holder>(),
              ),
            )
          return Stream.concat(Stream.make(first), later).pipe(
            Stream.changesWith(
              Option.makeEquivalence(
                (a: Holder, b: Holder) =>
                  a.holder === b.holder && a.epoch === b.epoch && a.role === b.role,
              ),
            ),
          )
        }),
      )

    return NameServer.of({ register, resolve, changes })
  })

/** @since 0.1.0 @category layers */
export const layer: Layer.Layer<NameServer, never, Store> = Layer.effect(NameServer, make())
