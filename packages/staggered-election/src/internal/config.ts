/**
 * The configuration of a server group's machine, the same on every server: what it is, how it
 * is checked (`validate`), and the leader lease's timings derived from it.
 */
import { Result, Schema } from "effect"
import type * as Durable from "../Durable.ts"
import * as Rank from "../Rank.ts"
import type * as Replication from "../Replication.ts"

/**
 * The configuration, the same on every server.
 *
 * @since 0.1.0
 * @category models
 */
export interface Config<S, Req, Res> {
  readonly servers: ReadonlyArray<Rank.Server>
  /** The equally periodic detection timer: probes (and inquiries) go out this often. */
  readonly detectionPeriodMs: number
  /** An inquiry unanswered for this long means the master failed. */
  readonly inquiryTimeoutMs: number
  /** The base of every election delay; must exceed a round trip (a restarted server hears the group first). */
  readonly baseDelayMs: number
  /** Every measured delay counts as at least this. Default 1. */
  readonly floorDelayMs?: number
  /** The delay of a pair nobody measured yet. Default `inquiryTimeoutMs`. */
  readonly unknownDelayMs?: number
  /** Round-trip samples kept per peer; the estimate is their maximum. Default 8. */
  readonly delayWindow?: number
  /** The user's state machine, replicated. */
  readonly initial: S
  readonly apply: Replication.Apply<S, Req, Res>
  /**
   * Most log entries kept after the snapshot; a master refuses requests beyond it (`Rejected`
   * `log-full`). Without `snapshot` nothing is compacted, so it bounds the lifetime count.
   * Default 10,000.
   */
  readonly logEntriesMax?: number
  /**
   * How the applied state (with the table of last answers) is encoded for a backup or a new
   * master that needs what was compacted, and for the write-ahead log: with it, the log is
   * compacted (`Replication.compact`) every `compactEvery` applied entries, so the only
   * bound is on the un-compacted tail (`logEntriesMax`). Absent: nothing is compacted.
   */
  readonly snapshot?: Replication.SnapshotCodec<S, Res>
  /** With `snapshot`: applied entries between compactions. Default 1,000. */
  readonly compactEvery?: number
  /** With `snapshot`: characters of an encoded snapshot per `Snapshot` message. Default 8,000. */
  readonly snapshotChunkChars?: number
  /** Most requests queued while a new master syncs. Default 1,000. */
  readonly queuedSubmitsMax?: number
  /** Most entries in one `Replicate` or `SyncReply`. Default 64. */
  readonly entriesPerMessageMax?: number
  /**
   * When the master may answer (commit): `"all-live"` (default) once every live backup has
   * the request and, with the master, they are a majority — no acknowledged request is lost
   * while any server that acknowledged it survives; `"majority"` once a majority has it,
   * not waiting for slower live backups — lower latency, and a backup may lag behind what
   * clients were told until it catches up (an acknowledged request then survives only
   * while a server of that majority does).
   */
  readonly answerWhen?: "all-live" | "majority"
  /**
   * This server's durable state, read from its write-ahead log (see `Durable`). A server
   * restarted with a non-empty one is not amnesiac: its term, promise and log are back, and
   * it counts towards majorities at once. Absent or empty: a cold start (amnesiac).
   */
  readonly restored?: Durable.Durable<Req, S, Res>
  /**
   * Leader-lease reads (etcd/raft's `ReadOnlyLeaseBased`, Chubby's master lease). Absent: every
   * read takes a read-index round (see `Read`). Present: the master begins a round on every
   * detection tick; once a majority (itself included, amnesiacs not) acknowledged a round
   * begun at `t` on its clock, it holds a lease until `t + durationMs` and confirms reads at
   * once while it holds one (a read outside the lease falls back to a round). Safe whatever
   * the timings, as long as every clock runs at a rate within `1 ± clockDriftMax` (pauses
   * are fine: the lease is checked on the clock when the read is handled): a new master does
   * not finish its sync — it answers nothing — until every lease its sync's majority could
   * have granted ran out on its own clock (see `leaseWaitMs`). Keep
   * `leaseWaitMs` below `inquiryTimeoutMs` (the default does) and that wait is normally over
   * before the election is (a backup gives up on its master only an inquiry time-out after
   * the last inquiry it answered), so failover is as fast as without the lease; the lease
   * should outlast `detectionPeriodMs` plus a round trip, or reads fall back to rounds.
   */
  readonly lease?: Lease
}

/**
 * The leader lease of `Config.lease`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Lease {
  /** How long a majority's ack of a round lets the master read alone. Default: the largest whose `leaseWaitMs` is `inquiryTimeoutMs`. */
  readonly durationMs?: number
  /** The bound on any clock's rate error (0.01: 1%, 10,000 ppm). Default 0.01. */
  readonly clockDriftMax?: number
}

/**
 * How long, on a new master's clock, a lease granted at one server's clock reading may
 * still be held: `durationMs * (1 + drift) / (1 - drift)` — the lease's master may run slow
 * by `1 - drift`, the waiting master fast by `1 + drift`.
 *
 * @since 0.1.0
 * @category leases
 */
export const leaseWaitMs = (durationMs: number, clockDriftMax: number): number =>
  (durationMs * (1 + clockDriftMax)) / (1 - clockDriftMax)

/** The lease's duration and wait, defaults applied. @since 0.1.0 @category leases */
export const leaseOf = (
  config: Pick<Config<unknown, unknown, unknown>, "inquiryTimeoutMs" | "lease">,
): { readonly durationMs: number; readonly waitMs: number } | undefined => {
  const lease = config.lease
  if (lease === undefined) return undefined
  const drift = lease.clockDriftMax ?? 0.01
  const durationMs =
    lease.durationMs ?? Math.floor((config.inquiryTimeoutMs * (1 - drift)) / (1 + drift))
  return { durationMs, waitMs: leaseWaitMs(durationMs, drift) }
}

/**
 * The configuration is unusable.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>()("InvalidConfig", {
  reason: Schema.String,
}) {
  override get message(): string {
    return `invalid staggered election config: ${this.reason}`
  }
}

/**
 * Checks a configuration.
 *
 * @since 0.1.0
 * @category constructors
 */
export const validate = <S, Req, Res>(
  config: Config<S, Req, Res>,
): InvalidConfig | Rank.InvalidGroup | undefined => {
  const ranked = Rank.rank(config.servers)
  if (Result.isFailure(ranked)) return ranked.failure
  const positive = (name: string, value: number | undefined, integer = false) =>
    value !== undefined &&
    (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value)))
      ? new InvalidConfig({
          reason: `${name} must be a positive ${integer ? "integer" : "number"}, got ${value}`,
        })
      : undefined
  return (
    positive("detectionPeriodMs", config.detectionPeriodMs) ??
    positive("inquiryTimeoutMs", config.inquiryTimeoutMs) ??
    positive("baseDelayMs", config.baseDelayMs) ??
    positive("floorDelayMs", config.floorDelayMs) ??
    positive("unknownDelayMs", config.unknownDelayMs) ??
    positive("delayWindow", config.delayWindow, true) ??
    positive("logEntriesMax", config.logEntriesMax, true) ??
    positive("queuedSubmitsMax", config.queuedSubmitsMax, true) ??
    positive("entriesPerMessageMax", config.entriesPerMessageMax, true) ??
    positive("compactEvery", config.compactEvery, true) ??
    positive("snapshotChunkChars", config.snapshotChunkChars, true) ??
    positive("lease.durationMs", config.lease?.durationMs) ??
    (config.lease?.clockDriftMax !== undefined &&
    !(config.lease.clockDriftMax >= 0 && config.lease.clockDriftMax < 0.5)
      ? new InvalidConfig({
          reason: `lease.clockDriftMax must be at least 0 and below 0.5, got ${config.lease.clockDriftMax}`,
        })
      : undefined) ??
    (config.lease !== undefined && !(leaseOf(config)!.durationMs > 0)
      ? new InvalidConfig({ reason: "inquiryTimeoutMs is too short for a default lease" })
      : undefined)
  )
}
