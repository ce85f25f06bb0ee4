/**
 * Where checkpoints live and who owns a bundle, on the `@understudy/store` `Store` (memory by
 * default, a `StoreServer` shared by processes, or etcd).
 *
 * Keys, under a prefix per service (`/understudy/checkpoint/<service>`):
 * - `bundles/<bundleId>/checkpoint`: the latest checkpoint. Written with compare-and-set on
 *   its previous revision, so a server that lost its bundle (it was taken over while it
 *   was paused) can never overwrite its successor's checkpoint: fencing.
 * - `bundles/<bundleId>/owner`: the serving server's id, attached to that server's lease.
 *   When the server dies the lease lapses and the key goes; a planned hand-off deletes it.
 * - `servers/<serverId>`: the server's address, attached to its lease (who is alive).
 * - `handoff/<serverId>`: a request that the server hand its bundles off (to the server
 *   named in the value, or to any).
 *
 * @since 0.1.0
 */
import { Store } from "@understudy/store"
import {
  Clock,
  Context,
  type Duration,
  Effect,
  Layer,
  Metric,
  Option,
  type Scope,
  Stream,
} from "effect"
import * as Checkpoint from "./Checkpoint.ts"
import {
  type CheckpointConfigError,
  type CheckpointContributorFailed,
  type CheckpointDecodeError,
  type CheckpointTooLarge,
  CheckpointWriteFailed,
  TakeoverRefused,
} from "./CheckpointError.ts"
import { appendAll, type Bundle } from "./Contributor.ts"
import * as Durations from "./internal/durations.ts"
import * as Metrics from "./Metrics.ts"

/** Bundle and server ids: what may appear in a key. @since 0.1.0 @category models */
export const idPattern: RegExp = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/

/**
 * The store keys of one service.
 *
 * @since 0.1.0
 * @category keys
 */
export const keys = (prefix: string) => ({
  bundles: `${prefix}/bundles/`,
  checkpoint: (bundleId: string) => `${prefix}/bundles/${bundleId}/checkpoint`,
  owner: (bundleId: string) => `${prefix}/bundles/${bundleId}/owner`,
  servers: `${prefix}/servers/`,
  server: (serverId: string) => `${prefix}/servers/${serverId}`,
  handoff: (serverId: string) => `${prefix}/handoff/${serverId}`,
})

/** @since 0.1.0 @category keys */
export const defaultPrefix = (service: string): string => `/understudy/checkpoint/${service}`

/**
 * A server's hold on one bundle: the revision its next checkpoint write must find.
 *
 * @since 0.1.0
 * @category models
 */
export interface Ownership {
  readonly bundleId: string
  /** The latest checkpoint this server wrote. */
  readonly latest: () => Checkpoint.Checkpoint
  readonly modRevision: () => number
}

/** Why a checkpoint was taken (for metrics and events). @since 0.1.0 @category models */
export type Reason =
  | "open"
  | "bytes"
  | "interval"
  | "object-boundary"
  | "on-demand"
  | "takeover"
  | "horizon"

/** What `take` wrote. @since 0.1.0 @category models */
export interface Written {
  readonly checkpoint: Checkpoint.Checkpoint
  readonly bytes: number
  readonly reason: Reason
}

/** @since 0.1.0 @category models */
export interface CheckpointStoreOptions {
  readonly serverId: string
  readonly backend: Checkpoint.Backend
  /** Key prefix; `defaultPrefix(service)`. */
  readonly prefix: string
  /**
   * The server's lease: its bundles are taken over this long after it dies (`"1 second"`, a
   * number of milliseconds, a `Duration`). Default 1 second.
   */
  readonly leaseTtl?: Duration.Input
  /** The server's own address, published under `servers/` for clients and hand-offs. */
  readonly address?: string
}

type Failure = CheckpointWriteFailed

const unavailable = (bundleId: string, error: { readonly message: string }): Failure =>
  new CheckpointWriteFailed({ bundleId, detail: error.message })

/**
 * @since 0.1.0
 * @category services
 */
export class CheckpointStore extends Context.Service<
  CheckpointStore,
  {
    readonly serverId: string
    readonly backend: Checkpoint.Backend
    readonly prefix: string
    readonly leaseTtlMs: number
    /**
     * Claims a new bundle for this server and writes its first checkpoint (generation 1).
     * Fails when the bundle id is taken.
     */
    readonly open: (
      bundle: Bundle,
    ) => Effect.Effect<
      Ownership,
      CheckpointWriteFailed | CheckpointTooLarge | CheckpointContributorFailed
    >
    /**
     * Passes a block through the bundle's contributors and writes the result, fenced on the
     * previous write. `CheckpointWriteFailed` with a lost ownership means: stop serving it.
     */
    readonly take: (
      bundle: Bundle,
      ownership: Ownership,
      reason: Reason,
      patch?: (checkpoint: Checkpoint.Checkpoint) => Checkpoint.Checkpoint,
    ) => Effect.Effect<
      Written,
      CheckpointWriteFailed | CheckpointTooLarge | CheckpointContributorFailed
    >
    /** The latest checkpoint of a bundle, if any. */
    readonly load: (
      bundleId: string,
    ) => Effect.Effect<
      Option.Option<{ readonly checkpoint: Checkpoint.Checkpoint; readonly modRevision: number }>,
      CheckpointWriteFailed | CheckpointDecodeError
    >
    /**
     * Takes a bundle over: waits (at most `waitMs`) for its owner's lease to lapse or its
     * hand-off, claims it, and returns the latest checkpoint, which the caller compares and
     * then rewrites with `adopt`. `TakeoverRefused` `Owned` when the owner stays alive.
     */
    readonly claim: (
      bundleId: string,
      waitMs: number,
    ) => Effect.Effect<
      { readonly checkpoint: Checkpoint.Checkpoint; readonly modRevision: number },
      TakeoverRefused | CheckpointWriteFailed | CheckpointDecodeError
    >
    /**
     * Writes the checkpoint a takeover recreated the bundle from, as this server's, with a
     * new generation: from then on the previous owner's writes fail.
     */
    readonly adopt: (
      checkpoint: Checkpoint.Checkpoint,
      modRevision: number,
    ) => Effect.Effect<Ownership, CheckpointWriteFailed | CheckpointTooLarge>
    /** Gives a bundle up (planned hand-off): its owner key goes, its checkpoint stays. */
    readonly release: (bundleId: string) => Effect.Effect<void>
    /** Forgets a finished bundle: checkpoint and owner key. */
    readonly finish: (bundleId: string) => Effect.Effect<void>
    /** Asks server `from` to hand its bundles off (to `to`, when given). */
    readonly requestHandoff: (
      from: string,
      to: string | undefined,
    ) => Effect.Effect<void, CheckpointWriteFailed>
    /** Hand-off requests addressed to this server, as they arrive. */
    readonly handoffRequests: Stream.Stream<{ readonly to: string | undefined }>
    /** Live servers and their addresses. */
    readonly servers: Effect.Effect<
      ReadonlyArray<{ readonly serverId: string; readonly address: string }>,
      CheckpointWriteFailed
    >
  }
>()("@understudy/checkpoint/CheckpointStore") {}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/**
 * Builds the service over the `Store` in context: grants this server's lease and keeps it
 * alive while the scope is open (revoked when it closes).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: CheckpointStoreOptions,
): Effect.Effect<CheckpointStore["Service"], CheckpointConfigError, Store.Store | Scope.Scope> =>
  Effect.gen(function* () {
    const durations = yield* Durations.millis(options, ["leaseTtl"])
    const store = yield* Store.Store
    const { serverId, backend, prefix } = options
    if (!idPattern.test(serverId)) return yield* Effect.die(new Error(`bad server id ${serverId}`))
    const key = keys(prefix)
    const leaseTtlMs = durations.leaseTtl ?? 1_000
    const announce = (leaseId: string) =>
      store.put(key.server(serverId), encoder.encode(options.address ?? ""), { lease: leaseId })
    // The lease in use; replaced when it expired (a pause longer than its TTL): the bundles
    // it held are then another server's to take, new ones go on the new lease.
    let lease: Store.Lease = yield* store.grantLease(leaseTtlMs).pipe(Effect.orDie)
    yield* Effect.addFinalizer(() => store.revokeLease(lease.id).pipe(Effect.ignore))
    const renew = Effect.gen(function* () {
      yield* Effect.logError(
        "checkpoint: this server's lease expired; its bundles will be taken over; a new lease is granted",
      ).pipe(Effect.annotateLogs({ serverId }))
      lease = yield* store.grantLease(leaseTtlMs)
      yield* announce(lease.id)
    })
    // A third of the TTL: two keep-alives may be lost before the lease lapses.
    yield* Effect.suspend(() => store.keepAlive(lease.id)).pipe(
      Effect.catchTag("LeaseExpired", () => renew),
      Effect.ignore,
      Effect.andThen(Effect.sleep(Math.max(30, Math.floor(leaseTtlMs / 3)))),
      Effect.forever,
      Effect.forkScoped,
    )
    // A start slower than the TTL (a loaded machine) finds its first lease gone: a new one.
    yield* announce(lease.id).pipe(
      Effect.catchTag("LeaseExpired", () => renew),
      Effect.orDie,
    )

    const now = Effect.clockWith((clock) => clock.currentTimeMillis)

    const write = (
      checkpoint: Checkpoint.Checkpoint,
      ifModRevision: number,
      reason: Reason,
      startedNs: bigint,
    ): Effect.Effect<
      { readonly revision: number; readonly bytes: number },
      CheckpointWriteFailed | CheckpointTooLarge
    > =>
      Effect.gen(function* () {
        const bytes = yield* Effect.fromResult(Checkpoint.encode(checkpoint))
        const { revision } = yield* store
          .put(key.checkpoint(checkpoint.bundleId), bytes, { ifModRevision })
          .pipe(
            Effect.mapError((error) =>
              error._tag === "Conflict"
                ? new CheckpointWriteFailed({
                    bundleId: checkpoint.bundleId,
                    detail: "ownership lost: another server wrote the bundle's checkpoint",
                  })
                : unavailable(checkpoint.bundleId, error),
            ),
          )
        const costMs = Number((yield* Clock.currentTimeNanos) - startedNs) / 1e6
        yield* Metric.update(Metric.withAttributes(Metrics.checkpointsWritten, { reason }), 1)
        yield* Metric.update(Metrics.checkpointBytes, bytes.length)
        yield* Metric.update(Metrics.checkpointWriteMs, costMs)
        return { revision, bytes: bytes.length }
      })

    const ownership = (initial: Checkpoint.Checkpoint, revision: number) => {
      let latest = initial
      let modRevision = revision
      return {
        handle: {
          bundleId: initial.bundleId,
          latest: () => latest,
          modRevision: () => modRevision,
        } satisfies Ownership,
        advance: (checkpoint: Checkpoint.Checkpoint, next: number) => {
          latest = checkpoint
          modRevision = next
        },
      }
    }
    const advances = new WeakMap<
      Ownership,
      (checkpoint: Checkpoint.Checkpoint, revision: number) => void
    >()
    const own = (checkpoint: Checkpoint.Checkpoint, revision: number): Ownership => {
      const { handle, advance } = ownership(checkpoint, revision)
      advances.set(handle, advance)
      return handle
    }

    const build = (bundle: Bundle, generation: number, resumeCounter: number) =>
      Effect.gen(function* () {
        const draft = yield* appendAll(bundle)
        return {
          version: 1 as const,
          backend,
          bundleId: bundle.id,
          serverId,
          takenAtMs: yield* now,
          generation,
          protocol: bundle.protocol,
          resumeCounter,
          connections: draft.connections,
          layers: draft.layers,
        } satisfies Checkpoint.Checkpoint
      })

    const claimOwner = (bundleId: string) =>
      store.put(key.owner(bundleId), encoder.encode(serverId), {
        ifModRevision: 0,
        lease: lease.id,
      })

    const open = (bundle: Bundle) =>
      Effect.gen(function* () {
        if (!idPattern.test(bundle.id))
          return yield* Effect.die(new Error(`bad bundle id ${bundle.id}`))
        yield* claimOwner(bundle.id).pipe(Effect.mapError((error) => unavailable(bundle.id, error)))
        const startedNs = yield* Clock.currentTimeNanos
        const checkpoint = yield* build(bundle, 1, 0)
        const { revision } = yield* write(checkpoint, 0, "open", startedNs)
        return own(checkpoint, revision)
      }).pipe(Effect.withSpan("checkpoint.open", { attributes: { bundleId: bundle.id, serverId } }))

    const take = (
      bundle: Bundle,
      held: Ownership,
      reason: Reason,
      patch?: (checkpoint: Checkpoint.Checkpoint) => Checkpoint.Checkpoint,
    ) =>
      Effect.gen(function* () {
        const startedNs = yield* Clock.currentTimeNanos
        const previous = held.latest()
        const built = yield* build(bundle, previous.generation + 1, previous.resumeCounter)
        const checkpoint = patch === undefined ? built : patch(built)
        const { revision, bytes } = yield* write(checkpoint, held.modRevision(), reason, startedNs)
        advances.get(held)?.(checkpoint, revision)
        yield* Effect.annotateCurrentSpan({ generation: checkpoint.generation, bytes })
        return { checkpoint, bytes, reason } satisfies Written
      }).pipe(
        Effect.withSpan("checkpoint.write", {
          attributes: { bundleId: bundle.id, serverId, reason },
        }),
      )

    const load = (bundleId: string) =>
      Effect.gen(function* () {
        const found = yield* store
          .get(key.checkpoint(bundleId))
          .pipe(Effect.mapError((e) => unavailable(bundleId, e)))
        if (Option.isNone(found)) return Option.none()
        const checkpoint = yield* Effect.fromResult(Checkpoint.decode(found.value.value))
        return Option.some({ checkpoint, modRevision: found.value.modRevision })
      })

    const ownerGone = (bundleId: string, waitMs: number) =>
      Effect.gen(function* () {
        const owner = yield* store
          .get(key.owner(bundleId))
          .pipe(Effect.mapError((e) => unavailable(bundleId, e)))
        if (Option.isNone(owner)) return true
        if (decoder.decode(owner.value.value) === serverId) return true
        const deleted = yield* store
          .watch(key.owner(bundleId), { fromRevision: owner.value.modRevision + 1 })
          .pipe(
            Stream.filter((event) => event._tag === "Delete"),
            Stream.runHead,
            Effect.timeoutOption(waitMs),
            Effect.mapError((e) => unavailable(bundleId, e)),
          )
        return Option.isSome(deleted) && Option.isSome(deleted.value)
      })

    const isOwner = (bundleId: string) =>
      store
        .get(key.owner(bundleId))
        .pipe(
          Effect.map(
            (owner) => Option.isSome(owner) && decoder.decode(owner.value.value) === serverId,
          ),
        )

    const claim = (bundleId: string, waitMs: number) =>
      Effect.gen(function* () {
        if (!idPattern.test(bundleId))
          return yield* new TakeoverRefused({
            reason: "WrongSession",
            sessionId: "",
            detail: "not a session id",
          })
        const gone = yield* ownerGone(bundleId, waitMs)
        if (!gone)
          return yield* new TakeoverRefused({
            reason: "Owned",
            sessionId: bundleId,
            detail: `its server is alive and kept it for ${waitMs} ms`,
          })
        const claimed = yield* claimOwner(bundleId).pipe(
          Effect.as(true),
          Effect.catchTag("Conflict", () => isOwner(bundleId)),
          Effect.mapError((error) => unavailable(bundleId, error)),
        )
        if (!claimed)
          return yield* new TakeoverRefused({
            reason: "Owned",
            sessionId: bundleId,
            detail: "another server claimed it first",
          })
        const loaded = yield* load(bundleId).pipe(Effect.tapError(() => release(bundleId)))
        if (Option.isNone(loaded)) {
          yield* release(bundleId)
          return yield* new TakeoverRefused({
            reason: "NoCheckpoint",
            sessionId: bundleId,
            detail: "no checkpoint",
          })
        }
        if (loaded.value.checkpoint.backend !== backend) {
          yield* release(bundleId)
          return yield* new TakeoverRefused({
            reason: "Unsupported",
            sessionId: bundleId,
            detail: `made by the ${loaded.value.checkpoint.backend} backend; this server runs ${backend}`,
          })
        }
        return loaded.value
      }).pipe(Effect.withSpan("checkpoint.claim", { attributes: { bundleId, serverId } }))

    const adopt = (checkpoint: Checkpoint.Checkpoint, modRevision: number) =>
      Effect.gen(function* () {
        const next: Checkpoint.Checkpoint = {
          ...checkpoint,
          serverId,
          takenAtMs: yield* now,
          generation: checkpoint.generation + 1,
        }
        const { revision } = yield* write(
          next,
          modRevision,
          "takeover",
          yield* Clock.currentTimeNanos,
        )
        return own(next, revision)
      }).pipe(
        Effect.withSpan("checkpoint.adopt", {
          attributes: {
            bundleId: checkpoint.bundleId,
            serverId,
            from: checkpoint.serverId,
            generation: checkpoint.generation + 1,
          },
        }),
      )

    const release = (bundleId: string) =>
      Effect.gen(function* () {
        const owner = yield* store.get(key.owner(bundleId))
        if (Option.isSome(owner) && decoder.decode(owner.value.value) === serverId)
          yield* store.delete(key.owner(bundleId), { ifModRevision: owner.value.modRevision })
      }).pipe(Effect.ignore)

    const finish = (bundleId: string) =>
      Effect.gen(function* () {
        yield* store.delete(key.checkpoint(bundleId))
        yield* release(bundleId)
      }).pipe(Effect.ignore)

    const requestHandoff = (from: string, to: string | undefined) =>
      store.put(key.handoff(from), encoder.encode(to ?? "")).pipe(
        Effect.asVoid,
        Effect.mapError((e) => unavailable(from, e)),
      )

    const handoffRequests = store.watch(key.handoff(serverId)).pipe(
      Stream.filter((event) => event._tag === "Put"),
      Stream.map((event) => {
        const to = event._tag === "Put" ? decoder.decode(event.kv.value) : ""
        return { to: to === "" ? undefined : to }
      }),
      Stream.catch((error) =>
        Stream.fromEffect(
          Effect.logWarning(`checkpoint: hand-off watch ended: ${error.message}`).pipe(
            Effect.annotateLogs({ serverId }),
          ),
        ).pipe(Stream.drain),
      ),
    )

    const servers = store.range(key.servers).pipe(
      Effect.map(({ items }) =>
        items.map((kv) => ({
          serverId: kv.key.slice(key.servers.length),
          address: decoder.decode(kv.value),
        })),
      ),
      Effect.mapError((e) => unavailable("", e)),
    )

    return CheckpointStore.of({
      serverId,
      backend,
      prefix,
      leaseTtlMs,
      open,
      take,
      load,
      claim,
      adopt,
      release,
      finish,
      requestHandoff,
      handoffRequests,
      servers,
    })
  })

/**
 * A `leaseTtl` that is not a positive duration fails it with `CheckpointConfigError`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: CheckpointStoreOptions,
): Layer.Layer<CheckpointStore, CheckpointConfigError, Store.Store> =>
  Layer.effect(CheckpointStore, make(options))
