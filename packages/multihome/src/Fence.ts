/**
 * The cluster's fence: the right to transmit for the associations, held in a `Store`
 * (in-process, a `StoreServer`, or etcd). Closing the split brain the link's keep-alive
 * leaves open: a primary paused or cut off longer than the keep-alive comes back believing
 * it still serves, while the secondary has taken over.
 *
 * A node holds the role while it holds the store's holder key, attached to a lease it keeps
 * alive. It proves the role to itself with the time its last successful keep-alive was
 * *started*: the store ends the lease `leaseMs` after it received that keep-alive, so never
 * before `startedAt + leaseMs` — up to then no other node can hold the key. Past it, the
 * node transmits nothing ({@link Fence.holds} is false, checked before every datagram), and
 * once it learns the lease is gone it stops for good ({@link Fence.lost}).
 *
 * Each acquisition increments the epoch (compare-and-set on the epoch key), so the epoch
 * names the holder: the secondary that takes over serves epoch n+1 and refuses the old
 * primary of epoch n.
 *
 * Assumes the nodes' clocks run at the same rate (not that they agree): a bound on drift
 * would shorten `leaseMs` by it.
 *
 * @since 0.1.0
 */
import type { Store } from "@understudy/store"
import { Options as TransportOptions } from "@understudy/transport"
import { Clock, Deferred, Duration, Effect, Option, Result, Schema, type Scope } from "effect"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly store: Store.Store["Service"]
  /** Where the holder and epoch keys live (default `/understudy/multihome/`). */
  readonly prefix?: string
  /** The lease: how long a silent holder keeps the role. Default 1.5 seconds. */
  readonly lease?: Duration.Input
  /** Who asks (written in the holder key, for an operator). */
  readonly holder: string
}

/**
 * What a status display shows of the fence.
 *
 * @since 0.1.0
 * @category models
 */
export interface Status {
  /** The epoch this node acquired; 0 before it did. */
  readonly epoch: number
  /** Whether it may transmit now. */
  readonly holding: boolean
  /** Clock time its last successful keep-alive was started (the proof of the role). */
  readonly lastKeepAliveMs: number | undefined
  readonly leaseMs: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Fence {
  /**
   * Waits until this node holds the role (the previous holder's lease ended), then bumps the
   * epoch and keeps the lease alive until the scope closes.
   */
  readonly acquire: Effect.Effect<number>
  /** True while the last successful keep-alive is younger than the lease. */
  readonly holds: Effect.Effect<boolean>
  /** Resolved, with the reason, when the role is lost for good. */
  readonly lost: Deferred.Deferred<string>
  readonly status: Effect.Effect<Status>
  /**
   * The newest epoch the store holds (0 when it holds none or does not answer): a secondary
   * refuses replication from an older one.
   */
  readonly storeEpoch: Effect.Effect<number>
}

/**
 * The fence's options are unusable: the detail names the option. Nothing is asked of the
 * store.
 *
 * @since 0.1.0
 * @category errors
 */
export class FenceConfigError extends Schema.TaggedError<FenceConfigError>()("FenceConfigError", {
  detail: Schema.String,
}) {
  override get message(): string {
    return `invalid fence options: ${this.detail}`
  }
}

/** The default lease (see `Options.lease`). */
const defaultLeaseMs = 1_500

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/**
 * A `lease` that is not a positive, finite duration fails with `FenceConfigError`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Fence, FenceConfigError, Scope.Scope> =>
  Effect.gen(function* () {
    const store = options.store
    const prefix = options.prefix ?? "/understudy/multihome/"
    const lease =
      options.lease === undefined
        ? Result.succeed(defaultLeaseMs)
        : TransportOptions.positiveMillis("lease", options.lease)
    if (Result.isFailure(lease)) return yield* new FenceConfigError({ detail: lease.failure })
    const leaseMs = lease.success
    const holderKey = `${prefix}fence/holder`
    const epochKey = `${prefix}fence/epoch`
    // Several keep-alives per lease, so one lost request does not cost the role.
    const stepMs = Math.max(10, Math.floor(leaseMs / 4))
    const lost = yield* Deferred.make<string>()
    const scope = yield* Effect.scope

    let epoch = 0
    let lastKeepAliveMs: number | undefined

    const holdsNow = (nowMs: number) =>
      epoch > 0 && lastKeepAliveMs !== undefined && nowMs - lastKeepAliveMs < leaseMs
    const holds = Effect.map(Clock.currentTimeMillis, (nowMs) =>
      Deferred.isDoneUnsafe(lost) ? false : holdsNow(nowMs),
    )

    /** One attempt: the holder key (only if nobody holds it), then epoch + 1. */
    const tryAcquire = Effect.gen(function* () {
      const startedMs = yield* Clock.currentTimeMillis
      const lease = yield* store.grantLease(leaseMs)
      const taken = yield* Effect.exit(
        store.put(holderKey, encoder.encode(options.holder), {
          lease: lease.id,
          ifModRevision: 0,
        }),
      )
      if (taken._tag === "Failure") {
        yield* Effect.ignore(store.revokeLease(lease.id))
        return Option.none<{ epoch: number; lease: string; startedMs: number }>()
      }
      for (;;) {
        const current = yield* store.get(epochKey)
        const previous = Option.isSome(current)
          ? Number(decoder.decode(current.value.value)) || 0
          : 0
        const bumped = yield* Effect.exit(
          store.put(epochKey, encoder.encode(String(previous + 1)), {
            ifModRevision: Option.isSome(current) ? current.value.modRevision : 0,
          }),
        )
        if (bumped._tag === "Success") {
          return Option.some({ epoch: previous + 1, lease: lease.id, startedMs })
        }
      }
    })

    const keepAlive = (lease: string) =>
      Effect.gen(function* () {
        while (!Deferred.isDoneUnsafe(lost)) {
          yield* Effect.sleep(Duration.millis(stepMs))
          const startedMs = yield* Clock.currentTimeMillis
          const renewed = yield* Effect.exit(store.keepAlive(lease))
          if (renewed._tag === "Success") {
            lastKeepAliveMs = startedMs
            continue
          }
          const nowMs = yield* Clock.currentTimeMillis
          const expired = renewed.cause.reasons.some(
            (reason) => reason._tag === "Fail" && reason.error._tag === "LeaseExpired",
          )
          if (expired) yield* Deferred.succeed(lost, "the store ended the lease")
          else if (!holdsNow(nowMs)) {
            yield* Deferred.succeed(lost, `no keep-alive succeeded within ${leaseMs} ms`)
          }
        }
        yield* Effect.ignore(store.revokeLease(lease))
      })

    const acquire = Effect.gen(function* () {
      if (epoch > 0) return epoch
      for (;;) {
        const got = yield* Effect.orElseSucceed(tryAcquire, () => Option.none())
        if (Option.isSome(got)) {
          epoch = got.value.epoch
          lastKeepAliveMs = got.value.startedMs
          yield* Effect.forkIn(keepAlive(got.value.lease), scope)
          return epoch
        }
        yield* Effect.sleep(Duration.millis(stepMs))
      }
    })

    const status = Effect.map(Clock.currentTimeMillis, (nowMs) => ({
      epoch,
      holding: !Deferred.isDoneUnsafe(lost) && holdsNow(nowMs),
      lastKeepAliveMs,
      leaseMs,
    }))

    const storeEpoch = store.get(epochKey).pipe(
      Effect.map((current) =>
        Option.isSome(current) ? Number(decoder.decode(current.value.value)) || 0 : 0,
      ),
      Effect.orElseSucceed(() => 0),
    )

    return { acquire, holds, lost, status, storeEpoch } satisfies Fence
  })
