/**
 * The staggered election of a fault-tolerant server group (seed 003) as one pure `Machine`:
 * a master and backups; each backup inquires of its master on an equally periodic detection
 * timer (claims 4–5, 24–25); one whose inquiry goes unanswered within `inquiryTimeoutMs`
 * enters waiting and sets its election timer to its own election delay (claims 7, 9–13,
 * computed by `Delays` from the measured delay matrix); when it expires it declares itself
 * master with a first message (claim 8). A server that receives a declaration acknowledges it
 * when waiting or backup (claims 16–17); a master compares indices: it accepts a smaller
 * index (claim 22) and revokes a greater one with a second message carrying both indices
 * (claim 23). The master replicates client requests to every backup, all of them apply the
 * committed ones (claim 1, active replication; see `Replication`).
 *
 * Epochs: `epoch = term * 4096 + (4095 - index)`, unique per server, and within a term a
 * smaller index is newer. Every message carries the sender's epoch and is checked once
 * before dispatch, as raft does: older ones are ignored (event `Ignored`), except a `Probe`,
 * which is still answered so that a restarted or partitioned server learns the current
 * epoch. A newer epoch vouched for by its master or a follower makes a waiting or backup
 * server acknowledge that master, and a master compare indices (accept or revoke).
 *
 * Restarts: with a write-ahead log (`Config.restored`, see `Durable`), a restarted server
 * gets back its term, its promise (epoch) and its log, and is not amnesiac. Without one,
 * nothing is persisted, so `init` runs afresh on a cold start and on a restart alike, and
 * the server starts amnesiac (`State.amnesiac`, with a new `incarnation`, the
 * clock reading at its start). Its sync replies, acknowledgements and probe replies say so,
 * and a master does not count it towards its sync or commit majority unless nobody it heard
 * from knows of any history (`State.history`: some server held a non-empty log; probes spread
 * it), or, for the sync, every server replied. A synced master catches it up
 * (`Replicate.catchUp`, `safeSeq`) once a majority of non-amnesiacs (`State.heard`), or every
 * other server amnesiac or not (`State.heardAll`), told it of no newer epoch, after which it
 * counts again. Without this a restarted server's empty reply let a master of an older log
 * count a majority and overwrite committed entries (FastSim seed 335), and a restarted server
 * caught up by a stale master let it commit over a newer master's entries (seed 8412). Without
 * the second way, a majority that restarted stayed amnesiac for good even once every server
 * was back (too few non-amnesiacs left to tell them): its master could commit nothing more, so
 * the others never applied what it had answered last (seed 1966). See `Replication` for
 * exactly what is guaranteed; in short: safe unless every holder of a committed entry is lost
 * or a cut-off majority restarts at once, and while a majority is amnesiac or unreachable
 * with no synced master left, the group commits nothing new (it still applies what is known
 * committed) until that changes.
 *
 * Not covered without a write-ahead log: a restarted former master that hears only of older
 * terms than its last one declares again at an epoch it already used; if no server holding
 * that epoch's earlier entries takes part in its sync, two different entries can carry the
 * same position and epoch. Persisting the term (`Durable`) rules that out.
 *
 * @since 0.1.0
 */
import { Machine as M } from "@understudy/machine"
import { Result, Schema } from "effect"
import * as Delays from "./Delays.ts"
import type * as Durable from "./Durable.ts"
import type * as Message from "./Message.ts"
import * as Rank from "./Rank.ts"
import * as Replication from "./Replication.ts"

type Msg<Req> = Message.Message<Req>

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
  readonly maxLogEntries?: number
  /**
   * How the applied state (with the table of last answers) is encoded for a backup or a new
   * master that needs what was compacted, and for the write-ahead log: with it, the log is
   * compacted (`Replication.compact`) every `compactEvery` applied entries, so the only
   * bound is on the un-compacted tail (`maxLogEntries`). Absent: nothing is compacted.
   */
  readonly snapshot?: Replication.SnapshotCodec<S, Res>
  /** With `snapshot`: applied entries between compactions. Default 1,000. */
  readonly compactEvery?: number
  /** With `snapshot`: characters of an encoded snapshot per `Snapshot` message. Default 8,000. */
  readonly snapshotChunkChars?: number
  /** Most requests queued while a new master syncs. Default 1,000. */
  readonly maxQueuedSubmits?: number
  /** Most entries in one `Replicate` or `SyncReply`. Default 64. */
  readonly maxEntriesPerMessage?: number
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
   * the timings, as long as every clock runs at a rate within `1 ± maxClockDrift` (pauses
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
  readonly maxClockDrift?: number
}

/**
 * How long, on a new master's clock, a lease granted at one server's clock reading may
 * still be held: `durationMs * (1 + drift) / (1 - drift)` — the lease's master may run slow
 * by `1 - drift`, the waiting master fast by `1 + drift`.
 *
 * @since 0.1.0
 * @category leases
 */
export const leaseWaitMs = (durationMs: number, maxClockDrift: number): number =>
  (durationMs * (1 + maxClockDrift)) / (1 - maxClockDrift)

/** The lease's duration and wait, defaults applied. @since 0.1.0 @category leases */
export const leaseOf = (
  config: Pick<Config<unknown, unknown, unknown>, "inquiryTimeoutMs" | "lease">,
): { readonly durationMs: number; readonly waitMs: number } | undefined => {
  const lease = config.lease
  if (lease === undefined) return undefined
  const drift = lease.maxClockDrift ?? 0.01
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

/** A client's request, given to the master. @since 0.1.0 @category commands */
export interface Submit<Req> {
  readonly _tag: "Submit"
  readonly clientId: string
  /** Increasing per client; a retry reuses the id and is answered once. */
  readonly requestId: number
  readonly request: Req
}

/**
 * A linearizable read (read index): the master answers it (`ReadConfirmed`) once a majority,
 * itself included, has acknowledged a `Replicate` it sent after the read arrived, and it has
 * committed an entry of its own epoch. A master that a newer one replaced (say it was paused
 * while the others elected) never gathers that majority: its reads are rejected when it
 * learns of the newer master, or time out in the driver, and are never answered from its
 * stale state.
 *
 * @since 0.1.0
 * @category commands
 */
export interface Read {
  readonly _tag: "Read"
  readonly readId: number
}

/** @since 0.1.0 @category commands */
/**
 * Several clients' requests at once (what the driver batches while a step is being made
 * durable): handled as that many `Submit`s in one step, with one replication message per
 * backup and one commit check for all of them — so the master's log is appended and
 * fsynced once for the batch (group commit), and so is each backup's.
 *
 * @since 0.1.0
 * @category commands
 */
export interface SubmitMany<Req> {
  readonly _tag: "SubmitMany"
  readonly submits: ReadonlyArray<Submit<Req>>
}

/**
 * Several linearizable reads at once (what the driver batches while a step is being made):
 * one round for all of them, begun after every one of them arrived.
 *
 * @since 0.1.0
 * @category commands
 */
export interface ReadMany {
  readonly _tag: "ReadMany"
  readonly readIds: ReadonlyArray<number>
}

/** @since 0.1.0 @category commands */
export type Command<Req> = Submit<Req> | SubmitMany<Req> | Read | ReadMany

/** @since 0.1.0 @category events */
export type Event<Res> =
  | {
      readonly _tag: "Waiting"
      readonly failed: string | undefined
      readonly delayMs: number
      readonly explain: string
    }
  | { readonly _tag: "BecameMaster"; readonly epoch: number }
  | { readonly _tag: "Acknowledged"; readonly master: string; readonly epoch: number }
  | { readonly _tag: "MasterRecovered"; readonly master: string }
  | { readonly _tag: "Demoted"; readonly master: string; readonly epoch: number }
  | { readonly _tag: "Revoked"; readonly revokedIndex: number; readonly epoch: number }
  | { readonly _tag: "Synced"; readonly epoch: number; readonly lastSeq: number }
  | {
      readonly _tag: "Ignored"
      readonly from: string
      readonly reason:
        | "stale-epoch"
        | "unknown-sender"
        | "wrong-index"
        | "too-large"
        | "bad-epoch"
        | "bad-snapshot"
    }
  /** A snapshot received from `from` replaced the log through `seq`. */
  | { readonly _tag: "SnapshotInstalled"; readonly from: string; readonly seq: number }
  | {
      readonly _tag: "Answered"
      readonly clientId: string
      readonly requestId: number
      readonly result: Res
    }
  | {
      readonly _tag: "Rejected"
      readonly clientId: string
      readonly requestId: number
      readonly reason: "not-master" | "queue-full" | "log-full" | "stale-request"
    }
  /** The read may be answered from the state applied now. */
  | { readonly _tag: "ReadConfirmed"; readonly readId: number }
  /** A new master's sync is done but a lease some master may still hold runs out only at `untilMs`: it answers nothing before. */
  | { readonly _tag: "AwaitingLease"; readonly untilMs: number }
  | {
      readonly _tag: "ReadRejected"
      readonly readId: number
      readonly reason: "not-master" | "not-ready" | "queue-full"
    }

/** The master's bookkeeping. @since 0.1.0 @category models */
export interface Leader<Req> {
  readonly phase: "syncing" | "ready"
  /** Sync: positions from here on are asked for (the master's commit point + 1). */
  readonly fromSeq: number
  readonly replies: Readonly<Record<string, Replication.SyncSummary<Req>>>
  /** Sync: the server whose log was chosen and is being fetched the rest of. */
  readonly pulling: string | undefined
  readonly matchSeq: Readonly<Record<string, number>>
  readonly nextSeq: Readonly<Record<string, number>>
  /** When each backup last acknowledged: "live" means within `inquiryTimeoutMs`. */
  readonly ackedMs: Readonly<Record<string, number>>
  readonly queue: ReadonlyArray<Submit<Req>>
  /** The latest incarnation heard of per backup: acks of earlier ones are stale. */
  readonly incarnations: Readonly<Record<string, number>>
  /** Backups whose latest ack said amnesiac: they do not count towards a commit. */
  readonly amnesiacs: Readonly<Record<string, boolean>>
  /** The last position of the log once synced (its no-op): a caught-up backup holds it. */
  readonly syncedSeq: number
  /** Synced as a cold start (nobody knew of any history). */
  readonly cold: boolean
  /** The last read-index round begun (every `Replicate` carries it). */
  readonly readRound: number
  /** Per backup, the latest round it acknowledged while not amnesiac. */
  readonly roundAcked: Readonly<Record<string, number>>
  /** Reads waiting for a majority to acknowledge their round, oldest first. */
  readonly reads: ReadonlyArray<{ readonly readId: number; readonly round: number }>
  /** With `Config.lease`: rounds begun and not yet held by a majority, with when they began. */
  readonly leaseRounds: ReadonlyArray<{ readonly round: number; readonly sentMs: number }>
  /** With `Config.lease`: reads are confirmed at once before this clock reading. */
  readonly leaseUntilMs: number
  /**
   * With `Config.lease`, while syncing: no lease granted by a server of this sync (or held by
   * one that gave it up) is held after this clock reading; the sync finishes only then.
   */
  readonly leaseClearMs: number
  /** Per backup sent the snapshot: how far it said it holds it. */
  readonly snapshotOffset: Readonly<
    Record<string, { readonly seq: number; readonly offset: number }>
  >
}

/** @since 0.1.0 @category models */
export interface State<S, Req, Res> {
  readonly self: string
  readonly index: number
  readonly role: Message.Role
  readonly master: string | undefined
  /** The master this server detected failed while waiting (`undefined` after a restart). */
  readonly failed: string | undefined
  /** The highest term seen. */
  readonly term: number
  /** When `term` last rose: newer terms are adopted only within `reachableTerm` of it. */
  readonly termRaisedMs: number
  /** The epoch of the mastership this server follows or holds (0: none yet). */
  readonly epoch: number
  readonly probeSeq: number
  /** The last probe sent to each peer, to time its reply. */
  readonly outstanding: Readonly<Record<string, { readonly seq: number; readonly sentMs: number }>>
  /** The last `delayWindow` round trips to each peer. */
  readonly samples: Readonly<Record<string, ReadonlyArray<number>>>
  /** Rows received from the peers (this server's own row comes from `samples`). */
  readonly rows: Delays.Matrix
  /** The pending inquiry to the master. */
  readonly inquiry: { readonly seq: number } | undefined
  readonly electionDelayMs: number | undefined
  readonly replica: Replication.Replica<S, Req, Res>
  readonly leader: Leader<Req> | undefined
  /**
   * Since this start (nothing is persisted, so a restart forgot its log and its promises),
   * until a master caught this server up or it finished a sync as master.
   */
  readonly amnesiac: boolean
  /** This server's life: the clock reading at its start. */
  readonly incarnation: number
  /**
   * The last clock reading at which this server granted a lease (acknowledged a master's
   * `Replicate`) or held one (was master): a sync reply says how long ago that was, so a new
   * master knows when every lease this server took part in ran out. A start counts (it may
   * have granted one just before a crash).
   */
  readonly grantedMs: number
  /** This server knows the group has history: some server held a non-empty log. */
  readonly history: boolean
  /**
   * While amnesiac: the epoch each non-amnesiac peer reported in a reply to a probe of this
   * incarnation. Before a master may catch this server up, a majority of the group (or every
   * peer, see `heardAll`) must have reported none newer than that master's: a mastership this server promised before its
   * restart (it forgot) is then known to one of them, so it is never counted for an older one.
   */
  readonly heard: Readonly<Record<string, number>>
  /**
   * While amnesiac: the epoch every peer, amnesiac or not, reported in a reply to a probe of
   * this incarnation. Once every peer of the group reported none newer than a master's, every
   * server that could remember a mastership this server promised before its restart has
   * restarted since (epochs never go down within a life): nobody can count that promise
   * any more, so this server may be counted for that master, as a sync may finish when every
   * server replied. Without it a group with a majority restarted never counts them again.
   */
  readonly heardAll: Readonly<Record<string, number>>
  /** A snapshot being received (`Snapshot` chunks), as far as received. */
  readonly receiving:
    | {
        readonly from: string
        readonly seq: number
        readonly epoch: number
        readonly data: string
        /** When the last chunk arrived: a transfer idle past the inquiry time-out may be replaced. */
        readonly atMs: number
      }
    | undefined
}

/** @since 0.1.0 @category models */
export type StaggeredElection<S, Req, Res> = M.Machine<
  State<S, Req, Res>,
  Msg<Req>,
  Command<Req>,
  Event<Res>
>

/** @since 0.1.0 @category timers */
export const detectTimer = "detect"
/** @since 0.1.0 @category timers */
export const inquiryTimer = "inquiry"
/** @since 0.1.0 @category timers */
export const electionTimer = "election"
/** A new master's wait for the leases of its predecessors to run out. @since 0.1.0 @category timers */
export const leaseTimer = "lease"

const indexSpan = 4096

/** @since 0.1.0 @category epochs */
export const epochOf = (term: number, index: number): number =>
  term * indexSpan + (indexSpan - 1 - index)
/** @since 0.1.0 @category epochs */
export const termOf = (epoch: number): number => Math.floor(epoch / indexSpan)
/** The index of the master an epoch names. @since 0.1.0 @category epochs */
export const masterIndexOf = (epoch: number): number => indexSpan - 1 - (epoch % indexSpan)

/**
 * No term reaches this: `epochOf` stays exact (below 2^53) for every term up to it. A newer
 * term is adopted only below it and within `termReach` of the server's own (see
 * `reachableTerm`), so a server can always declare the next one.
 *
 * @since 0.1.0
 * @category epochs
 */
export const termMax = 2 ** 40

/**
 * How far past its own term a server may be told of a newer one at once; beyond that the
 * allowance grows by one term per millisecond since its term last rose. Honest terms grow by
 * one per declaration (at most one per election delay per server) or revocation, far slower:
 * a forged epoch can raise a server's term no faster than that, so the `termMax - 1` left
 * after any adopted term take over 30 years of forging to use up.
 *
 * @since 0.1.0
 * @category epochs
 */
export const termReach = 1_024

/**
 * The highest term a server with term `term` (raised at `raisedMs`) adopts at `nowMs`. A
 * server that knows no term yet (just started, nothing persisted) adopts any term below
 * `termMax`: the group it joins may be of any age.
 *
 * @since 0.1.0
 * @category epochs
 */
export const reachableTerm = (term: number, raisedMs: number, nowMs: number): number =>
  term === 0
    ? termMax - 1
    : Math.min(termMax - 1, term + termReach + Math.max(0, Math.floor(nowMs - raisedMs)))

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
    positive("maxLogEntries", config.maxLogEntries, true) ??
    positive("maxQueuedSubmits", config.maxQueuedSubmits, true) ??
    positive("maxEntriesPerMessage", config.maxEntriesPerMessage, true) ??
    positive("compactEvery", config.compactEvery, true) ??
    positive("snapshotChunkChars", config.snapshotChunkChars, true) ??
    positive("lease.durationMs", config.lease?.durationMs) ??
    (config.lease?.maxClockDrift !== undefined &&
    !(config.lease.maxClockDrift >= 0 && config.lease.maxClockDrift < 0.5)
      ? new InvalidConfig({
          reason: `lease.maxClockDrift must be at least 0 and below 0.5, got ${config.lease.maxClockDrift}`,
        })
      : undefined) ??
    (config.lease !== undefined && !(leaseOf(config)!.durationMs > 0)
      ? new InvalidConfig({ reason: "inquiryTimeoutMs is too short for a default lease" })
      : undefined)
  )
}

/**
 * Who this server believes is master, and whether it is itself. For tests and drivers.
 *
 * @since 0.1.0
 * @category getters
 */
export const isMaster = (state: State<unknown, unknown, unknown>): boolean =>
  state.role === "master"

/**
 * The applied entries still held, in order: those after the snapshot (all of them when
 * nothing is compacted), from position `state.replica.base.seq + 1`.
 *
 * @since 0.1.0
 * @category getters
 */
export const applied = <Req>(
  state: State<unknown, Req, unknown>,
): ReadonlyArray<Message.Entry<Req>> => Replication.appliedEntries(state.replica)

/**
 * The machine of one server. Throws `InvalidConfig` or `Rank.InvalidGroup` for a
 * configuration `validate` rejects: a bad configuration is a programming error.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <S, Req, Res>(config: Config<S, Req, Res>): StaggeredElection<S, Req, Res> => {
  const invalid = validate(config)
  if (invalid !== undefined) throw invalid
  const servers = Result.getOrThrow(Rank.rank(config.servers))
  const byId = new Map(servers.map((server) => [server.id, server]))
  const byIndex = new Map(servers.map((server) => [server.index, server]))
  const groupSize = servers.length
  const { detectionPeriodMs, inquiryTimeoutMs, baseDelayMs } = config
  const floorDelayMs = config.floorDelayMs ?? 1
  const unknownDelayMs = config.unknownDelayMs ?? inquiryTimeoutMs
  const delayWindow = config.delayWindow ?? 8
  const maxLogEntries = config.maxLogEntries ?? 10_000
  const maxQueuedSubmits = config.maxQueuedSubmits ?? 1_000
  const maxEntriesPerMessage = config.maxEntriesPerMessage ?? 64
  const snapshots = config.snapshot
  const compactEvery = config.compactEvery ?? 1_000
  const chunkChars = config.snapshotChunkChars ?? 8_000
  const lease = leaseOf(config)
  /** Rounds kept waiting for a majority: older ones are dropped (their lease would be older too). */
  const leaseRoundsMax = 64
  // A snapshot is sent in many chunks, and to several servers: encode it once.
  const encoded = new WeakMap<Replication.Snapshot<S, Res>, string>()
  const encodeSnapshot = (snapshot: Replication.Snapshot<S, Res>): string => {
    let data = encoded.get(snapshot)
    if (data === undefined) {
      data = snapshots!.encode(snapshot)
      encoded.set(snapshot, data)
    }
    return data
  }

  type St = State<S, Req, Res>
  type Ev = Event<Res>
  type Output = M.Output<Msg<Req>, Ev>
  type Step = M.Result<St, Msg<Req>, Ev>

  const peersOf = (state: St) => servers.filter((server) => server.id !== state.self)

  const ownRow = (state: St): Record<string, number> => {
    const row: Record<string, number> = {}
    for (const peer in state.samples) {
      const samples = state.samples[peer]!
      if (samples.length > 0) row[peer] = Math.max(...samples)
    }
    return row
  }

  const explainFor = (state: St, failed: string | undefined): Delays.Explanation =>
    Delays.explain({
      servers,
      self: state.self,
      failed,
      matrix: { ...state.rows, [state.self]: ownRow(state) },
      baseDelayMs,
      floorDelayMs,
      unknownDelayMs,
    })

  /** Enters waiting and sets the election timer to the delay computed now (claims 7, 9). */
  const enterWaiting = (state: St, failed: string | undefined, outputs: Array<Output>): St => {
    const explanation = explainFor(state, failed)
    outputs.push(
      M.cancelTimer(inquiryTimer),
      M.setTimer(electionTimer, explanation.totalMs),
      M.emit<Ev>({
        _tag: "Waiting",
        failed,
        delayMs: explanation.totalMs,
        explain: explanation.text,
      }),
    )
    return {
      ...state,
      role: "waiting",
      master: undefined,
      failed,
      inquiry: undefined,
      electionDelayMs: explanation.totalMs,
      leader: undefined,
    }
  }

  const rejectQueue = (leader: Leader<Req> | undefined, outputs: Array<Output>) => {
    for (const read of leader?.reads ?? []) {
      outputs.push(M.emit<Ev>({ _tag: "ReadRejected", readId: read.readId, reason: "not-master" }))
    }
    for (const submit of leader?.queue ?? []) {
      outputs.push(
        M.emit<Ev>({
          _tag: "Rejected",
          clientId: submit.clientId,
          requestId: submit.requestId,
          reason: "not-master",
        }),
      )
    }
  }

  /** Follows `master` at `epoch` as a backup: acknowledge (claim 17) or accept (claim 22). */
  const follow = (state: St, master: string, epoch: number, outputs: Array<Output>): St => {
    if (state.role === "master") {
      rejectQueue(state.leader, outputs)
      outputs.push(M.emit<Ev>({ _tag: "Demoted", master, epoch }))
    } else {
      outputs.push(M.emit<Ev>({ _tag: "Acknowledged", master, epoch }))
    }
    outputs.push(M.cancelTimer(electionTimer), M.cancelTimer(inquiryTimer))
    return {
      ...state,
      role: "backup",
      master,
      failed: undefined,
      epoch,
      term: Math.max(state.term, termOf(epoch)),
      inquiry: undefined,
      electionDelayMs: undefined,
      leader: undefined,
    }
  }

  /**
   * A new master's sync starts over after its committed prefix moved (entries or a snapshot
   * it caught up with): from the next unknown seq, with every reply asked for again.
   */
  const restartSync = (state: St, leader: Leader<Req>, outputs: Array<Output>): St => {
    const restarted: Leader<Req> = {
      ...leader,
      fromSeq: state.replica.commitSeq + 1,
      replies: {},
      pulling: undefined,
    }
    const next = { ...state, leader: restarted }
    sendSyncRequests(next, restarted, outputs)
    return next
  }

  const sendSyncRequests = (state: St, leader: Leader<Req>, outputs: Array<Output>) => {
    const request: Message.SyncRequest = {
      _tag: "SyncRequest",
      epoch: state.epoch,
      index: state.index,
      fromSeq: leader.fromSeq,
    }
    if (leader.pulling !== undefined) {
      const got = leader.replies[leader.pulling]!.entries.length
      outputs.push(M.send<Msg<Req>>(leader.pulling, { ...request, fromSeq: leader.fromSeq + got }))
      return
    }
    const receiving = state.receiving
    for (const peer of peersOf(state)) {
      if (leader.replies[peer.id] !== undefined) continue
      outputs.push(
        M.send<Msg<Req>>(
          peer.id,
          receiving?.from === peer.id
            ? { ...request, snapshotSeq: receiving.seq, snapshotOffset: receiving.data.length }
            : request,
        ),
      )
    }
  }

  /** Takes mastership at a new epoch (term above every term seen) and starts the sync. */
  const becomeMaster = (state: St, nowMs: number, outputs: Array<Output>): St => {
    const term = state.term + 1
    const epoch = epochOf(term, state.index)
    outputs.push(M.cancelTimer(electionTimer), M.cancelTimer(inquiryTimer))
    // Reads of an earlier epoch of ours: their rounds prove nothing about this one.
    for (const read of state.leader?.reads ?? []) {
      outputs.push(M.emit<Ev>({ _tag: "ReadRejected", readId: read.readId, reason: "not-master" }))
    }
    const leader: Leader<Req> = {
      phase: "syncing",
      fromSeq: state.replica.commitSeq + 1,
      replies: {},
      pulling: undefined,
      matchSeq: {},
      nextSeq: {},
      ackedMs: {},
      queue: state.leader?.queue ?? [],
      incarnations: {},
      amnesiacs: {},
      syncedSeq: 0,
      cold: false,
      readRound: 0,
      roundAcked: {},
      reads: [],
      leaseRounds: [],
      leaseUntilMs: Number.NEGATIVE_INFINITY,
      // A lease this server granted as a backup, or held as master of an earlier epoch (it
      // ends now: the leader state holding it is dropped; a wait it began goes on).
      leaseClearMs:
        lease === undefined
          ? Number.NEGATIVE_INFINITY
          : state.role === "master"
            ? Math.max(nowMs, state.leader?.leaseClearMs ?? Number.NEGATIVE_INFINITY)
            : state.grantedMs + lease.waitMs,
      snapshotOffset: {},
    }
    const next: St = {
      ...state,
      role: "master",
      master: state.self,
      failed: undefined,
      term,
      epoch,
      inquiry: undefined,
      electionDelayMs: undefined,
      leader,
    }
    return next
  }

  /** Claim 8: set the role to master and send the first message to every other server. */
  const declare = (state: St, nowMs: number, outputs: Array<Output>): St => {
    const next = becomeMaster(state, nowMs, outputs)
    outputs.push(
      M.broadcast<Msg<Req>>({ _tag: "Declare", epoch: next.epoch, index: next.index }),
      M.emit<Ev>({ _tag: "BecameMaster", epoch: next.epoch }),
    )
    sendSyncRequests(next, next.leader!, outputs)
    return maybeFinishSync(next, nowMs, outputs)
  }

  /** Claim 23: stay master with a new epoch and send the second message with both indices. */
  const revoke = (state: St, revokedIndex: number, nowMs: number, outputs: Array<Output>): St => {
    const next = becomeMaster(state, nowMs, outputs)
    outputs.push(
      M.broadcast<Msg<Req>>({
        _tag: "Revoke",
        epoch: next.epoch,
        index: next.index,
        revokedIndex,
      }),
      M.emit<Ev>({ _tag: "Revoked", revokedIndex, epoch: next.epoch }),
    )
    sendSyncRequests(next, next.leader!, outputs)
    return maybeFinishSync(next, nowMs, outputs)
  }

  /** One chunk of this server's snapshot, from `offset`. */
  const sendSnapshot = (state: St, peer: string, offset: number, outputs: Array<Output>) => {
    const base = state.replica.base
    const data = encodeSnapshot(base)
    const from = Math.min(offset, data.length)
    outputs.push(
      M.send<Msg<Req>>(peer, {
        _tag: "Snapshot",
        epoch: state.epoch,
        index: state.index,
        seq: base.seq,
        snapshotEpoch: base.epoch,
        offset: from,
        data: data.slice(from, from + chunkChars),
        done: from + chunkChars >= data.length,
      }),
    )
  }

  /**
   * Sends the next entries a backup lacks. A syncing master sends only its committed prefix
   * (so backups apply what is already decided) and never catches anyone up: its own log may
   * still lack committed entries.
   */
  const replicateTo = (state: St, peer: string, outputs: Array<Output>) => {
    const leader = state.leader!
    const replica = state.replica
    const syncing = leader.phase === "syncing"
    const upTo = syncing ? replica.commitSeq : Replication.lastSeq(replica)
    const nextSeq = Math.min(leader.nextSeq[peer] ?? replica.commitSeq + 1, upTo + 1)
    if (nextSeq <= replica.base.seq) {
      // Compacted: the backup gets the snapshot, from where it said it holds it.
      const sent = leader.snapshotOffset[peer]
      sendSnapshot(state, peer, sent?.seq === replica.base.seq ? sent.offset : 0, outputs)
      return
    }
    const prevSeq = nextSeq - 1
    const entries = Replication.entriesFrom(
      replica,
      nextSeq,
      Math.min(maxEntriesPerMessage, upTo - prevSeq),
    )
    outputs.push(
      M.send<Msg<Req>>(peer, {
        _tag: "Replicate",
        epoch: state.epoch,
        index: state.index,
        prevSeq,
        prevEpoch: Replication.epochAt(replica, prevSeq) ?? 0,
        entries,
        commitSeq: replica.commitSeq,
        ...(syncing || leader.incarnations[peer] === undefined
          ? {}
          : {
              catchUp: leader.incarnations[peer],
              safeSeq: Math.max(leader.syncedSeq, replica.commitSeq),
              // Until its first commit, a cold start's backups are all amnesiac: none could
              // have heard of the group from a majority of non-amnesiacs.
              ...(leader.cold && replica.commitSeq < leader.syncedSeq ? { cold: true } : {}),
            }),
        ...(leader.readRound > 0 ? { round: leader.readRound } : {}),
      }),
    )
  }

  const replicateAll = (state: St, outputs: Array<Output>) => {
    for (const peer of peersOf(state)) replicateTo(state, peer.id, outputs)
  }

  /** Applies what is committed; the master answers each request it applies. */
  const applyCommitted = (state: St, outputs: Array<Output>): St => {
    const { replica, applied } = Replication.applyCommitted(state.replica, config.apply)
    if (state.role === "master") {
      for (const done of applied) {
        outputs.push(
          M.emit<Ev>({
            _tag: "Answered",
            clientId: done.clientId,
            requestId: done.requestId,
            result: done.result,
          }),
        )
      }
    }
    const compacted = snapshots === undefined ? replica : Replication.compact(replica, compactEvery)
    return compacted === state.replica ? state : { ...state, replica: compacted }
  }

  const advanceCommit = (state: St, nowMs: number, outputs: Array<Output>): St => {
    const leader = state.leader
    if (state.role !== "master" || leader === undefined || leader.phase !== "ready") return state
    const live = peersOf(state)
      .map((peer) => peer.id)
      .filter((peer) => {
        const acked = leader.ackedMs[peer]
        return acked !== undefined && nowMs - acked <= inquiryTimeoutMs
      })
    const commitSeq = Replication.commitPoint(
      state.replica,
      state.epoch,
      leader.matchSeq,
      config.answerWhen === "majority" ? [] : live,
      groupSize,
      Object.keys(leader.amnesiacs).filter((peer) => leader.amnesiacs[peer]),
    )
    if (commitSeq === state.replica.commitSeq) return state
    return applyCommitted({ ...state, replica: { ...state.replica, commitSeq } }, outputs)
  }

  const submitReady = (
    state: St,
    submit: Submit<Req>,
    nowMs: number,
    outputs: Array<Output>,
  ): St => {
    const reject = (reason: "log-full" | "stale-request") => {
      outputs.push(
        M.emit<Ev>({
          _tag: "Rejected",
          clientId: submit.clientId,
          requestId: submit.requestId,
          reason,
        }),
      )
      return state
    }
    const found = Replication.lookup(state.replica, submit.clientId, submit.requestId)
    switch (found._tag) {
      case "Answered":
        outputs.push(
          M.emit<Ev>({
            _tag: "Answered",
            clientId: submit.clientId,
            requestId: submit.requestId,
            result: found.result,
          }),
        )
        return state
      case "Stale":
        return reject("stale-request")
      case "Pending":
        // Its answer comes when it commits.
        return state
      case "New":
        break
    }
    if (state.replica.log.length >= maxLogEntries) return reject("log-full")
    const replica = Replication.append(state.replica, {
      _tag: "Request",
      seq: Replication.lastSeq(state.replica) + 1,
      epoch: state.epoch,
      clientId: submit.clientId,
      requestId: submit.requestId,
      request: submit.request,
    })
    const next = { ...state, replica }
    if (batching !== undefined) {
      // One replication and one commit check for the whole batch (`onSubmitMany`).
      batching.appended = true
      return next
    }
    replicateAll(next, outputs)
    return advanceCommit(next, nowMs, outputs)
  }

  /** Once a majority (the master included) has answered the sync, adopt, then serve. */
  const maybeFinishSync = (state: St, nowMs: number, outputs: Array<Output>): St => {
    const leader = state.leader
    if (state.role !== "master" || leader === undefined || leader.phase !== "syncing") return state
    const own: Replication.SyncSummary<Req> = {
      lastSeq: Replication.lastSeq(state.replica),
      lastEpoch: Replication.lastEpoch(state.replica),
      entries: Replication.entriesFrom(state.replica, leader.fromSeq, maxLogEntries),
      complete: true,
      amnesiac: state.amnesiac,
    }
    // An amnesiac's log may lack what it once acknowledged: it counts only on a cold start
    // (nobody knows of any history), or when every server answered (every log is a candidate).
    const everyone = Object.keys(leader.replies).length === groupSize - 1
    const candidates = [[state.self, own] as const, ...Object.entries(leader.replies)].filter(
      ([, summary]) => summary.amnesiac !== true || !state.history || everyone,
    )
    if (leader.pulling === undefined && candidates.length * 2 <= groupSize) return state
    const chosen =
      leader.pulling !== undefined
        ? ([leader.pulling, leader.replies[leader.pulling]!] as const)
        : Replication.chooseSync(candidates)!
    const [from, summary] = chosen
    if (!summary.complete) {
      const pulling: Leader<Req> = { ...leader, pulling: from }
      const next = { ...state, leader: pulling }
      sendSyncRequests(next, pulling, outputs)
      return next
    }
    if (nowMs < leader.leaseClearMs) {
      // A lease a former master may still hold: answering anything now (a write, a read)
      // could let it answer a read from older state afterwards. Finish once it ran out.
      outputs.push(
        M.setTimer(leaseTimer, leader.leaseClearMs - nowMs),
        M.emit<Ev>({ _tag: "AwaitingLease", untilMs: leader.leaseClearMs }),
      )
      return state
    }
    let replica =
      from === state.self
        ? state.replica
        : Replication.adopt(state.replica, leader.fromSeq, summary.entries, maxLogEntries)
    // A no-op of our epoch: what we adopted commits with it (Raft's rule for earlier terms).
    if (replica.log.length < maxLogEntries) {
      replica = Replication.append(replica, {
        _tag: "Noop",
        seq: Replication.lastSeq(replica) + 1,
        epoch: state.epoch,
      })
    }
    const nextSeq: Record<string, number> = {}
    for (const peer of peersOf(state)) nextSeq[peer.id] = leader.fromSeq
    // Synced: this log holds every committed entry, so this server is no longer amnesiac.
    let next: St = {
      ...state,
      replica,
      amnesiac: false,
      heard: {},
      heardAll: {},
      leader: {
        ...leader,
        phase: "ready",
        pulling: undefined,
        replies: {},
        nextSeq,
        // Acks while syncing only tracked the committed prefix: count afresh.
        matchSeq: {},
        queue: [],
        syncedSeq: Replication.lastSeq(replica),
        cold: !state.history,
      },
    }
    outputs.push(
      M.emit<Ev>({ _tag: "Synced", epoch: state.epoch, lastSeq: Replication.lastSeq(replica) }),
    )
    replicateAll(next, outputs)
    next = advanceCommit(next, nowMs, outputs)
    for (const submit of leader.queue) {
      if (next.role !== "master") break
      next = submitReady(next, submit, nowMs, outputs)
    }
    return next
  }

  /** Set while `onSubmitMany` runs: `submitReady` then leaves replication to it. */
  let batching: { appended: boolean } | undefined

  const onSubmitMany = (state: St, many: SubmitMany<Req>, nowMs: number): Step => {
    const outputs: Array<Output> = []
    let next = state
    const batch = { appended: false }
    batching = batch
    try {
      for (const submit of many.submits) {
        const result = onSubmit(next, submit, nowMs)
        next = result.state
        outputs.push(...result.outputs)
      }
    } finally {
      batching = undefined
    }
    if (batch.appended && next.role === "master" && next.leader?.phase === "ready") {
      replicateAll(next, outputs)
      next = advanceCommit(next, nowMs, outputs)
    }
    return M.result(next, outputs)
  }

  const onSubmit = (state: St, submit: Submit<Req>, nowMs: number): Step => {
    const outputs: Array<Output> = []
    const leader = state.leader
    if (state.role !== "master" || leader === undefined) {
      outputs.push(
        M.emit<Ev>({
          _tag: "Rejected",
          clientId: submit.clientId,
          requestId: submit.requestId,
          reason: "not-master",
        }),
      )
      return M.result(state, outputs)
    }
    if (leader.phase === "syncing") {
      if (leader.queue.length >= maxQueuedSubmits) {
        outputs.push(
          M.emit<Ev>({
            _tag: "Rejected",
            clientId: submit.clientId,
            requestId: submit.requestId,
            reason: "queue-full",
          }),
        )
        return M.result(state, outputs)
      }
      return M.result(
        { ...state, leader: { ...leader, queue: [...leader.queue, submit] } },
        outputs,
      )
    }
    const next = submitReady(state, submit, nowMs, outputs)
    return M.result(next, outputs)
  }

  const probeAll = (state: St, nowMs: number, outputs: Array<Output>): St => {
    const seq = state.probeSeq + 1
    const row = ownRow(state)
    const outstanding: Record<string, { seq: number; sentMs: number }> = {}
    for (const peer of peersOf(state)) {
      outputs.push(
        M.send<Msg<Req>>(peer.id, {
          _tag: "Probe",
          epoch: state.epoch,
          index: state.index,
          seq,
          master: state.master ?? null,
          row,
          history: state.history,
          incarnation: state.incarnation,
        }),
      )
      outstanding[peer.id] = { seq, sentMs: nowMs }
    }
    return { ...state, probeSeq: seq, outstanding }
  }

  const init = (context: M.Context): Step => {
    const own = byId.get(context.self)
    if (own === undefined)
      throw new InvalidConfig({ reason: `${context.self} is not a configured server` })
    const outputs: Array<Output> = []
    const restored = config.restored
    const durable =
      restored !== undefined &&
      (restored.epoch > 0 || restored.log.length > 0 || restored.base !== undefined)
        ? restored
        : undefined
    const formerMaster =
      durable === undefined || termOf(durable.epoch) === 0
        ? undefined
        : byIndex.get(masterIndexOf(durable.epoch))?.id
    let state: St = {
      self: context.self,
      index: own.index,
      role: "waiting",
      master: undefined,
      failed: undefined,
      term: durable?.term ?? 0,
      termRaisedMs: context.nowMs,
      epoch: durable?.epoch ?? 0,
      probeSeq: 0,
      outstanding: {},
      samples: {},
      rows: {},
      inquiry: undefined,
      electionDelayMs: undefined,
      replica:
        durable === undefined
          ? Replication.empty(config.initial)
          : Replication.applyCommitted(
              {
                ...Replication.empty<S, Req, Res>(config.initial),
                ...(durable.base === undefined
                  ? {}
                  : {
                      base: durable.base,
                      state: durable.base.state,
                      clients: durable.base.clients,
                      appliedSeq: durable.base.seq,
                    }),
                log: durable.log,
                commitSeq: Math.min(
                  durable.commitSeq,
                  (durable.base?.seq ?? 0) + durable.log.length,
                ),
              },
              config.apply,
            ).replica,
      leader: undefined,
      // Without a durable state a cold start and a restart look the same: this server holds
      // nothing. With one, it kept everything it told anyone: not amnesiac.
      amnesiac: durable === undefined,
      incarnation: context.nowMs,
      grantedMs: context.nowMs,
      history: (durable?.log.length ?? 0) > 0 || durable?.base !== undefined,
      heard: {},
      heardAll: {},
      receiving: undefined,
    }
    // A replayed log is compacted at once: its tail may be longer than `maxLogEntries` allows.
    if (snapshots !== undefined) {
      state = { ...state, replica: Replication.compact(state.replica, compactEvery) }
    }
    // The first probe round: its replies carry the current epoch and master, so a restarted
    // server acknowledges the master before its election delay (base > a round trip) expires.
    state = probeAll(state, context.nowMs, outputs)
    outputs.push(M.setTimer(detectTimer, detectionPeriodMs))
    state = enterWaiting(state, undefined, outputs)
    // A restored follower treats its master as given up on: if that master answers at the
    // epoch it promised, it was only slow and is followed again (no election for a restart).
    if (formerMaster !== undefined && formerMaster !== context.self) {
      state = { ...state, failed: formerMaster }
    }
    return M.result(state, outputs)
  }

  /** Claims 24–25: every period, probe every peer; to the master it is the inquiry (4–5). */
  const onDetect = (state: St, nowMs: number): Step => {
    const outputs: Array<Output> = []
    let next = probeAll(state, nowMs, outputs)
    outputs.push(M.setTimer(detectTimer, detectionPeriodMs))
    if (next.role === "backup" && next.master !== undefined && next.inquiry === undefined) {
      next = { ...next, inquiry: { seq: next.probeSeq } }
      outputs.push(M.setTimer(inquiryTimer, inquiryTimeoutMs))
    }
    const leader = next.leader
    if (next.role === "master" && leader !== undefined) {
      if (leader.phase === "syncing") {
        sendSyncRequests(next, leader, outputs)
        // Backups get what is already committed meanwhile, so they apply it even if this
        // sync cannot finish (a majority amnesiac or down).
        for (const peer of peersOf(next)) {
          if (
            leader.pulling !== peer.id &&
            (leader.matchSeq[peer.id] ?? 0) < next.replica.commitSeq
          ) {
            replicateTo(next, peer.id, outputs)
          }
        }
      } else {
        // With leases, every heartbeat is a round: a majority's acks renew the lease.
        if (lease !== undefined) next = { ...next, leader: beginRound(leader, nowMs) }
        replicateAll(next, outputs)
      }
      next = advanceCommit(next, nowMs, outputs)
    }
    return M.result(next, outputs)
  }

  /** The next read round, sent with every `Replicate` from now on; with leases, when it began. */
  const beginRound = (leader: Leader<Req>, nowMs: number): Leader<Req> => {
    const round = leader.readRound + 1
    return {
      ...leader,
      readRound: round,
      leaseRounds:
        lease === undefined
          ? leader.leaseRounds
          : [...leader.leaseRounds, { round, sentMs: nowMs }].slice(-leaseRoundsMax),
    }
  }

  /** A new master's wait for former leases is over: finish the sync if it still can. */
  const onLeaseWaited = (state: St, nowMs: number): Step => {
    const outputs: Array<Output> = []
    return M.result(maybeFinishSync(state, nowMs, outputs), outputs)
  }

  /** Claims 4–5: the inquiry went unanswered: the master failed; wait (claim 7). */
  const onInquiryTimeout = (state: St): Step => {
    if (state.role !== "backup" || state.inquiry === undefined) return M.result(state)
    const outputs: Array<Output> = []
    return M.result(enterWaiting(state, state.master, outputs), outputs)
  }

  const onElection = (state: St, nowMs: number): Step => {
    if (state.role !== "waiting") return M.result(state)
    const outputs: Array<Output> = []
    return M.result(declare(state, nowMs, outputs), outputs)
  }

  /**
   * A mastership at a newer epoch than ours is vouched for: by its master itself, or by a
   * server following it. Waiting or backup: acknowledge (claims 16–17). Master: compare
   * (claim 18): a smaller index than ours wins (accept, claim 22), else revoke (claim 23).
   */
  const onNewerMastership = (
    state: St,
    epoch: number,
    nowMs: number,
    outputs: Array<Output>,
  ): St => {
    const master = byIndex.get(masterIndexOf(epoch))
    const withTerm = { ...state, term: Math.max(state.term, termOf(epoch)) }
    if (master === undefined || master.id === state.self || termOf(epoch) === 0) return withTerm
    if (state.role !== "master") return follow(withTerm, master.id, epoch, outputs)
    if (Rank.wins(state.index, master.index)) return revoke(withTerm, master.index, nowMs, outputs)
    return follow(withTerm, master.id, epoch, outputs)
  }

  /** Whether a message shows that some server held a non-empty log. */
  const reportsHistory = (message: Msg<Req>): boolean => {
    switch (message._tag) {
      case "Probe":
      case "ProbeReply":
        return message.history === true
      case "Replicate":
        return message.prevSeq > 0 || message.entries.length > 0 || message.commitSeq > 0
      case "Ack":
        return message.lastSeq > 0
      case "SyncReply":
        return message.history === true || message.lastSeq > 0 || (message.commitSeq ?? 0) > 0
      case "Snapshot":
        return message.seq > 0
      default:
        return false
    }
  }

  const vouches = (message: Msg<Req>, from: Rank.Ranked): boolean => {
    switch (message._tag) {
      case "Probe":
      case "ProbeReply":
        return message.master !== null || from.index === masterIndexOf(message.epoch)
      default:
        return true
    }
  }

  const onProbe = (state: St, from: string, message: Message.Probe, outputs: Array<Output>): St => {
    outputs.push(
      M.send<Msg<Req>>(from, {
        _tag: "ProbeReply",
        epoch: state.epoch,
        index: state.index,
        seq: message.seq,
        master: state.master ?? null,
        role: state.role,
        history: state.history,
        amnesiac: state.amnesiac,
        ...(message.incarnation === undefined ? {} : { incarnation: message.incarnation }),
      }),
    )
    return { ...state, rows: { ...state.rows, [from]: message.row } }
  }

  const onProbeReply = (
    state: St,
    from: string,
    message: Message.ProbeReply,
    nowMs: number,
    outputs: Array<Output>,
  ): St => {
    let next = state
    const sent = state.outstanding[from]
    if (sent !== undefined && sent.seq === message.seq) {
      const samples = [...(state.samples[from] ?? []), nowMs - sent.sentMs].slice(-delayWindow)
      const { [from]: _, ...outstanding } = state.outstanding
      next = { ...next, samples: { ...state.samples, [from]: samples }, outstanding }
    }
    if (
      next.role === "backup" &&
      next.master === from &&
      next.inquiry !== undefined &&
      message.seq >= next.inquiry.seq
    ) {
      outputs.push(M.cancelTimer(inquiryTimer))
      next = { ...next, inquiry: undefined }
    }
    return next
  }

  const onReplicate = (
    state: St,
    from: string,
    message: Message.Replicate<Req>,
    nowMs: number,
    outputs: Array<Output>,
  ): St => {
    if (state.role !== "backup" || state.master !== from) return state
    const accepted = Replication.accept(
      state.replica,
      message.prevSeq,
      message.prevEpoch,
      message.entries,
      message.commitSeq,
      maxLogEntries,
    )
    // Caught up by a master that heard of this incarnation (an older message, sent before a
    // restart, must not clear it): the log now holds every committed entry.
    const heard = Object.values(state.heard)
    const heardAll = Object.values(state.heardAll)
    const caughtUp =
      state.amnesiac &&
      accepted.ok &&
      message.catchUp === state.incarnation &&
      message.safeSeq !== undefined &&
      accepted.lastSeq >= Math.max(message.safeSeq, message.commitSeq) &&
      (message.cold === true ||
        (heard.length * 2 > groupSize && heard.every((epoch) => epoch <= state.epoch)) ||
        (heardAll.length === groupSize - 1 && heardAll.every((epoch) => epoch <= state.epoch)))
    const amnesiac = state.amnesiac && !caughtUp
    outputs.push(
      M.send<Msg<Req>>(from, {
        _tag: "Ack",
        epoch: state.epoch,
        index: state.index,
        ok: accepted.ok,
        lastSeq: accepted.lastSeq,
        amnesiac,
        incarnation: state.incarnation,
        ...(message.round === undefined ? {} : { round: message.round }),
      }),
    )
    return applyCommitted(
      {
        ...state,
        replica: accepted.replica,
        amnesiac,
        heard: amnesiac ? state.heard : {},
        heardAll: amnesiac ? state.heardAll : {},
        // Acknowledging a round may grant the master a lease (see `Config.lease`).
        grantedMs: message.round === undefined ? state.grantedMs : nowMs,
      },
      outputs,
    )
  }

  const onAck = (
    state: St,
    from: string,
    message: Message.Ack,
    nowMs: number,
    outputs: Array<Output>,
  ): St => {
    const leader = state.leader
    if (state.role !== "master" || leader === undefined) return state
    const syncing = leader.phase === "syncing"
    // While syncing, only committed entries are sent, and never to the server pulled from.
    if (syncing && leader.pulling === from) return state
    const incarnation = message.incarnation ?? 0
    const knownIncarnation = leader.incarnations[from]
    // An ack of an earlier life of that server: the log it speaks of is gone.
    if (knownIncarnation !== undefined && incarnation < knownIncarnation) return state
    const reborn = knownIncarnation !== undefined && incarnation > knownIncarnation
    const amnesiac = message.amnesiac === true
    const last = syncing ? state.replica.commitSeq : Replication.lastSeq(state.replica)
    const ackedMs = { ...leader.ackedMs, [from]: nowMs }
    // Its log changed since its sync reply, if any: it must answer again to be a candidate.
    const { [from]: _, ...replies } = leader.replies
    const counted = {
      ...leader,
      replies: syncing ? replies : leader.replies,
      ackedMs,
      incarnations: { ...leader.incarnations, [from]: incarnation },
      amnesiacs: { ...leader.amnesiacs, [from]: amnesiac },
      // An amnesiac may have promised a newer master before its restart: it vouches for nothing.
      roundAcked:
        message.round !== undefined && !amnesiac
          ? { ...leader.roundAcked, [from]: Math.max(leader.roundAcked[from] ?? 0, message.round) }
          : leader.roundAcked,
    }
    const matchedBefore = reborn ? 0 : (leader.matchSeq[from] ?? 0)
    let next: St
    if (message.ok) {
      const matched = Math.min(last, Math.max(matchedBefore, message.lastSeq))
      next = {
        ...state,
        leader: {
          ...counted,
          matchSeq: { ...leader.matchSeq, [from]: matched },
          nextSeq: { ...leader.nextSeq, [from]: matched + 1 },
        },
      }
      if (matched < last && (leader.nextSeq[from] ?? 0) <= matched) replicateTo(next, from, outputs)
    } else {
      // Go back to where its log ends (bounded below by 1): the next Replicate fits or refuses again.
      const back = Math.max(1, Math.min(leader.nextSeq[from] ?? 1, message.lastSeq + 1))
      const moved = back !== leader.nextSeq[from]
      next = {
        ...state,
        leader: {
          ...counted,
          matchSeq: { ...leader.matchSeq, [from]: matchedBefore },
          nextSeq: { ...leader.nextSeq, [from]: back },
        },
      }
      if (moved) replicateTo(next, from, outputs)
    }
    // The first ack of an amnesiac incarnation: the next Replicate names it, to catch it up.
    if (!syncing && amnesiac && knownIncarnation !== incarnation) replicateTo(next, from, outputs)
    return confirmReads(advanceCommit(next, nowMs, outputs), outputs)
  }

  /**
   * Answers the reads whose round a majority (this master and non-amnesiac backups) has
   * acknowledged, once an entry of this epoch is committed (so the applied state holds every
   * write committed before the read arrived, by this master or any earlier one).
   */
  const confirmReads = (state: St, outputs: Array<Output>): St => {
    const held = state.leader
    if (state.role !== "master" || held === undefined || held.phase !== "ready") return state
    // Called on every ack: nothing waits on a round (no read, no lease round), nothing to do.
    if (held.reads.length === 0 && held.leaseRounds.length === 0) return state
    const rounds = Object.values(held.roundAcked).sort((a, b) => b - a)
    // The newest round held by a majority: the master plus `needed` backups.
    const needed = Math.floor(groupSize / 2)
    const confirmed = needed === 0 ? held.readRound : (rounds[needed - 1] ?? 0)
    const leader = renewLease(held, confirmed)
    const renewed = leader === held ? state : { ...state, leader }
    if (leader.reads.length === 0 || state.replica.commitSeq < leader.syncedSeq) return renewed
    const done = leader.reads.filter((read) => read.round <= confirmed)
    if (done.length === 0) return renewed
    for (const read of done)
      outputs.push(M.emit<Ev>({ _tag: "ReadConfirmed", readId: read.readId }))
    return {
      ...state,
      leader: { ...leader, reads: leader.reads.filter((read) => read.round > confirmed) },
    }
  }

  /** A majority holds round `confirmed`: the lease runs from the start of the newest such round. */
  const renewLease = (leader: Leader<Req>, confirmed: number): Leader<Req> => {
    if (lease === undefined || leader.leaseRounds.length === 0) return leader
    if (leader.leaseRounds[0]!.round > confirmed) return leader
    let sentMs = Number.NEGATIVE_INFINITY
    for (const begun of leader.leaseRounds) if (begun.round <= confirmed) sentMs = begun.sentMs
    return {
      ...leader,
      leaseRounds: leader.leaseRounds.filter((begun) => begun.round > confirmed),
      leaseUntilMs: Math.max(leader.leaseUntilMs, sentMs + lease.durationMs),
    }
  }

  const onRead = (state: St, read: Read, nowMs: number): Step =>
    onReadMany(state, [read.readId], nowMs)

  /**
   * Reads that arrived together share one round, begun now (after all of them arrived): the
   * driver batches those that came while a step was being made.
   */
  const onReadMany = (state: St, readIds: ReadonlyArray<number>, nowMs: number): Step => {
    const outputs: Array<Output> = []
    const leader = state.leader
    const rejectAll = (reason: "not-master" | "not-ready" | "queue-full", ids = readIds) =>
      ids.map((readId) => M.emit<Ev>({ _tag: "ReadRejected", readId, reason }))
    if (state.role !== "master" || leader === undefined) {
      return M.result(state, rejectAll("not-master"))
    }
    if (leader.phase !== "ready") return M.result(state, rejectAll("not-ready"))
    if (nowMs < leader.leaseUntilMs && state.replica.commitSeq >= leader.syncedSeq) {
      // Within the lease: no other master can have answered anything since it was granted.
      return M.result(
        state,
        readIds.map((readId) => M.emit<Ev>({ _tag: "ReadConfirmed", readId })),
      )
    }
    const room = Math.max(0, maxQueuedSubmits - leader.reads.length)
    const taken = readIds.slice(0, room)
    outputs.push(...rejectAll("queue-full", readIds.slice(room)))
    if (taken.length === 0) return M.result(state, outputs)
    const begun = beginRound(leader, nowMs)
    const round = begun.readRound
    const next: St = {
      ...state,
      leader: {
        ...begun,
        reads: [...leader.reads, ...taken.map((readId) => ({ readId, round }))],
      },
    }
    replicateAll(next, outputs)
    return M.result(confirmReads(next, outputs), outputs)
  }

  const onSyncRequest = (
    state: St,
    from: string,
    message: Message.SyncRequest,
    nowMs: number,
    outputs: Array<Output>,
  ): St => {
    if (state.role !== "backup" || state.master !== from) return state
    if (message.fromSeq <= state.replica.base.seq) {
      // Compacted past the master's commit point: what it lacks is in the snapshot.
      const offset =
        message.snapshotSeq === state.replica.base.seq ? (message.snapshotOffset ?? 0) : 0
      sendSnapshot(state, from, offset, outputs)
      return state
    }
    const entries = Replication.entriesFrom(state.replica, message.fromSeq, maxEntriesPerMessage)
    const last = Replication.lastSeq(state.replica)
    outputs.push(
      M.send<Msg<Req>>(from, {
        _tag: "SyncReply",
        epoch: state.epoch,
        index: state.index,
        fromSeq: message.fromSeq,
        entries,
        lastSeq: last,
        lastEpoch: Replication.lastEpoch(state.replica),
        complete: message.fromSeq - 1 + entries.length >= last,
        amnesiac: state.amnesiac,
        history: state.history,
        incarnation: state.incarnation,
        commitSeq: state.replica.commitSeq,
        grantedAgoMs: Math.max(0, nowMs - state.grantedMs),
      }),
    )
    return state
  }

  /**
   * A sync reply shows committed entries this master did not know were: they are decided, so
   * it takes them and applies them (whether or not its sync can finish, say with a majority
   * amnesiac or down), then restarts its sync after them.
   */
  const learnCommitted = (
    state: St,
    leader: Leader<Req>,
    message: Message.SyncReply<Req>,
    outputs: Array<Output>,
  ): St | undefined => {
    const commitSeq = message.commitSeq ?? 0
    if (commitSeq <= state.replica.commitSeq || message.fromSeq !== leader.fromSeq) return undefined
    const committed = message.entries.filter((entry) => entry.seq <= commitSeq)
    if (committed.length === 0) return undefined
    const prevSeq = leader.fromSeq - 1
    const accepted = Replication.accept(
      state.replica,
      prevSeq,
      Replication.epochAt(state.replica, prevSeq) ?? 0,
      committed,
      commitSeq,
      maxLogEntries,
    )
    if (!accepted.ok || accepted.replica.commitSeq <= state.replica.commitSeq) return undefined
    const applied = applyCommitted({ ...state, replica: accepted.replica }, outputs)
    return restartSync(applied, leader, outputs)
  }

  const onSyncReply = (
    state: St,
    from: string,
    message: Message.SyncReply<Req>,
    nowMs: number,
    outputs: Array<Output>,
  ): St => {
    const syncing = state.leader
    if (state.role !== "master" || syncing === undefined || syncing.phase !== "syncing")
      return state
    // Its sender follows this epoch now: it grants no lease to anyone else any more, and
    // every lease it granted (or held) runs out by this, on this server's clock.
    const leader: Leader<Req> =
      lease === undefined
        ? syncing
        : {
            ...syncing,
            leaseClearMs: Math.max(
              syncing.leaseClearMs,
              nowMs + lease.waitMs - (message.grantedAgoMs ?? 0),
            ),
          }
    const noted = { ...state, leader }
    const learned = learnCommitted(noted, leader, message, outputs)
    if (learned !== undefined) return learned
    const known = leader.replies[from]
    let summary: Replication.SyncSummary<Req>
    if (leader.pulling === from && known !== undefined) {
      if (message.fromSeq !== leader.fromSeq + known.entries.length) return noted
      summary = {
        lastSeq: known.lastSeq,
        lastEpoch: known.lastEpoch,
        entries: [...known.entries, ...message.entries],
        complete: message.complete,
        amnesiac: known.amnesiac === true,
      }
    } else {
      if (known !== undefined || leader.pulling !== undefined || message.fromSeq !== leader.fromSeq)
        return noted
      summary = {
        lastSeq: message.lastSeq,
        lastEpoch: message.lastEpoch,
        entries: message.entries,
        complete: message.complete,
        amnesiac: message.amnesiac === true,
      }
    }
    const incarnations =
      message.incarnation !== undefined &&
      message.incarnation > (leader.incarnations[from] ?? Number.NEGATIVE_INFINITY)
        ? { ...leader.incarnations, [from]: message.incarnation }
        : leader.incarnations
    const next = {
      ...noted,
      leader: {
        ...leader,
        incarnations,
        amnesiacs: { ...leader.amnesiacs, [from]: summary.amnesiac === true },
        replies: { ...leader.replies, [from]: summary },
      },
    }
    return maybeFinishSync(next, nowMs, outputs)
  }

  /**
   * A chunk of a snapshot: from its master (a backup it compacted past), or from a backup (a
   * syncing master whose commit point the backup compacted past). The last chunk is decoded
   * and installed; a master then syncs again after it, as when a sync reply shows it
   * committed entries (`learnCommitted`), a backup acknowledges up to it.
   */
  const onSnapshot = (
    state: St,
    from: string,
    message: Message.Snapshot,
    nowMs: number,
    outputs: Array<Output>,
  ): St => {
    const leader = state.leader
    const fromMaster = state.role === "backup" && state.master === from
    const toSyncing = state.role === "master" && leader?.phase === "syncing"
    if (snapshots === undefined || !(fromMaster || toSyncing)) return state
    const ack = (lastSeq: number) =>
      M.send<Msg<Req>>(from, {
        _tag: "Ack",
        epoch: state.epoch,
        index: state.index,
        ok: true,
        lastSeq,
        amnesiac: state.amnesiac,
        incarnation: state.incarnation,
      })
    if (message.seq <= state.replica.appliedSeq) {
      // Already applied through it (its acknowledgement was lost): say so again.
      if (fromMaster) outputs.push(ack(message.seq))
      return state
    }
    const held = state.receiving
    const same =
      held !== undefined &&
      held.from === from &&
      held.seq === message.seq &&
      held.epoch === message.snapshotEpoch
    // A chunk already held: a duplicate, or the master sending again from what it last heard
    // (an acknowledgement lost). Tell the master how far this server holds it (it ignores an
    // offset it already knew); a syncing master asks again on its next detection tick.
    if (same && message.offset < held.data.length) {
      if (fromMaster) {
        outputs.push(
          M.send<Msg<Req>>(from, {
            _tag: "SnapshotAck",
            epoch: state.epoch,
            index: state.index,
            seq: message.seq,
            offset: held.data.length,
          }),
        )
      }
      return state
    }
    // One transfer at a time (a syncing master may be offered several): another sender's
    // waits until this one is idle past the inquiry time-out (its sender died).
    if (!same && held !== undefined && held.from !== from && nowMs - held.atMs <= inquiryTimeoutMs)
      return state
    const continues = same && held.data.length === message.offset
    if (message.offset !== 0 && !continues) {
      // A chunk past a lost one: say where to go on from.
      const offset = same ? held.data.length : 0
      outputs.push(
        M.send<Msg<Req>>(from, {
          _tag: "SnapshotAck",
          epoch: state.epoch,
          index: state.index,
          seq: message.seq,
          offset,
        }),
      )
      return state
    }
    const data = (continues ? held.data : "") + message.data
    if (!message.done) {
      outputs.push(
        M.send<Msg<Req>>(from, {
          _tag: "SnapshotAck",
          epoch: state.epoch,
          index: state.index,
          seq: message.seq,
          offset: data.length,
        }),
      )
      return {
        ...state,
        receiving: { from, seq: message.seq, epoch: message.snapshotEpoch, data, atMs: nowMs },
      }
    }
    const decoded = snapshots.decode(data)
    if (
      Result.isFailure(decoded) ||
      decoded.success.seq !== message.seq ||
      decoded.success.epoch !== message.snapshotEpoch
    ) {
      outputs.push(M.emit<Ev>({ _tag: "Ignored", from, reason: "bad-snapshot" }))
      return { ...state, receiving: undefined }
    }
    const replica = Replication.install(state.replica, decoded.success)
    let next: St = { ...state, receiving: undefined }
    if (replica !== state.replica) {
      outputs.push(M.emit<Ev>({ _tag: "SnapshotInstalled", from, seq: message.seq }))
      next = applyCommitted({ ...next, replica }, outputs)
    }
    if (fromMaster) {
      outputs.push(ack(message.seq))
      return next
    }
    if (replica === state.replica || leader === undefined) return next
    return maybeFinishSync(restartSync(next, leader, outputs), nowMs, outputs)
  }

  /** The receiver of this server's snapshot holds it through `offset`: send the next chunk. */
  const onSnapshotAck = (
    state: St,
    from: string,
    message: Message.SnapshotAck,
    outputs: Array<Output>,
  ): St => {
    const base = state.replica.base
    if (snapshots === undefined || message.seq !== base.seq || base.seq === 0) return state
    const leader = state.leader
    if (state.role === "master" && leader !== undefined) {
      // Only news: the offset last heard of again comes from a duplicate, and the chunk
      // after it is already on its way (sending it again would start a second stream). A
      // lower one means the backup lost what it held (it restarted): start over from there.
      const known = leader.snapshotOffset[from]
      if (known?.seq === message.seq && message.offset === known.offset) return state
      if ((leader.nextSeq[from] ?? 0) > base.seq) return state
      sendSnapshot(state, from, message.offset, outputs)
      return {
        ...state,
        leader: {
          ...leader,
          snapshotOffset: {
            ...leader.snapshotOffset,
            [from]: { seq: message.seq, offset: message.offset },
          },
        },
      }
    }
    if (state.role === "backup" && state.master === from) {
      sendSnapshot(state, from, message.offset, outputs)
    }
    return state
  }

  /**
   * 0 (no master yet), or an epoch of a configured server whose term this server could have
   * reached (`reachableTerm`): an absurd one is dropped, never adopted.
   */
  const plausibleEpoch = (state: St, epoch: number, nowMs: number): boolean => {
    if (epoch === 0) return true
    const index = masterIndexOf(epoch)
    return (
      Number.isSafeInteger(epoch) &&
      termOf(epoch) <= reachableTerm(state.term, state.termRaisedMs, nowMs) &&
      index >= 1 &&
      index <= byId.size
    )
  }

  const ignored = (
    state: St,
    from: string,
    reason: "stale-epoch" | "unknown-sender" | "wrong-index" | "too-large" | "bad-epoch",
  ): Step => M.result(state, [M.emit<Ev>({ _tag: "Ignored", from, reason })])

  const onReceive = (state: St, from: string, message: Msg<Req>, nowMs: number): Step => {
    const sender = byId.get(from)
    if (sender === undefined || from === state.self) return ignored(state, from, "unknown-sender")
    if (message.index !== sender.index) return ignored(state, from, "wrong-index")
    if (
      (message._tag === "Replicate" || message._tag === "SyncReply") &&
      message.entries.length > maxEntriesPerMessage
    ) {
      return ignored(state, from, "too-large")
    }
    if (message._tag === "Snapshot" && message.data.length > chunkChars) {
      return ignored(state, from, "too-large")
    }
    const outputs: Array<Output> = []
    // Whether the group has history is a fact about the past: even a stale message tells it.
    let next = !state.history && reportsHistory(message) ? { ...state, history: true } : state
    if (
      next.amnesiac &&
      message._tag === "ProbeReply" &&
      message.incarnation === next.incarnation
    ) {
      // A fresh reply: what its sender knows of epochs (see `State.heard`, `State.heardAll`).
      const all = Math.max(next.heardAll[from] ?? 0, message.epoch)
      next = { ...next, heardAll: { ...next.heardAll, [from]: all } }
      if (message.amnesiac === false) {
        const heard = Math.max(next.heard[from] ?? 0, message.epoch)
        next = { ...next, heard: { ...next.heard, [from]: heard } }
      }
    }
    if (message.epoch < state.epoch) {
      // A stale probe is still answered, so its sender learns the current epoch; it
      // changes nothing here.
      if (message._tag === "Probe") {
        onProbe(next, from, message, outputs)
        return M.result(next, outputs)
      }
      return next === state
        ? ignored(state, from, "stale-epoch")
        : M.result(next, [M.emit<Ev>({ _tag: "Ignored", from, reason: "stale-epoch" })])
    }
    if (message.epoch > state.epoch) {
      // A newer epoch raises this server's term: it must name a member, within reach.
      if (!plausibleEpoch(state, message.epoch, nowMs)) return ignored(state, from, "bad-epoch")
      if (vouches(message, sender)) next = onNewerMastership(next, message.epoch, nowMs, outputs)
      else next = { ...next, term: Math.max(next.term, termOf(message.epoch)) }
    } else if (
      next.role === "waiting" &&
      next.failed === from &&
      sender.index === masterIndexOf(message.epoch) &&
      (message._tag !== "ProbeReply" || message.role === "master")
    ) {
      // The master we gave up on answers at its epoch: it was only slow.
      outputs.push(M.emit<Ev>({ _tag: "MasterRecovered", master: from }))
      next = follow(next, from, message.epoch, outputs)
    }
    // Handled at our (possibly just adopted) epoch; a message still older than ours after
    // a revoke is answered by the revoke itself.
    if (message.epoch !== next.epoch && message._tag !== "Probe" && message._tag !== "ProbeReply") {
      return M.result(next, outputs)
    }
    switch (message._tag) {
      case "Probe":
        next = onProbe(next, from, message, outputs)
        break
      case "ProbeReply":
        next = onProbeReply(next, from, message, nowMs, outputs)
        break
      case "Declare":
      case "Revoke":
        // Already handled by the epoch check: acknowledged, accepted or revoked.
        break
      case "Replicate":
        next = onReplicate(next, from, message, nowMs, outputs)
        break
      case "Ack":
        next = onAck(next, from, message, nowMs, outputs)
        break
      case "SyncRequest":
        next = onSyncRequest(next, from, message, nowMs, outputs)
        break
      case "SyncReply":
        next = onSyncReply(next, from, message, nowMs, outputs)
        break
      case "Snapshot":
        next = onSnapshot(next, from, message, nowMs, outputs)
        break
      case "SnapshotAck":
        next = onSnapshotAck(next, from, message, outputs)
        break
    }
    return M.result(next, outputs)
  }

  /** A server that holds a log or a commit point knows the group has history. */
  const noteHistory = (result: Step): Step =>
    result.state.history ||
    (result.state.replica.log.length === 0 && result.state.replica.commitSeq === 0)
      ? result
      : { ...result, state: { ...result.state, history: true } }

  /** Notes when the term rose: the reach of the next newer term counts from then. */
  const noteTerm = (before: St, result: Step, nowMs: number): Step =>
    result.state.term === before.term
      ? result
      : { ...result, state: { ...result.state, termRaisedMs: nowMs } }

  /** A master that leaves its epoch stops holding its lease now (see `State.grantedMs`). */
  const noteLeaseHeld = (before: St, result: Step, nowMs: number): Step =>
    before.role === "master" &&
    (result.state.role !== "master" || result.state.epoch !== before.epoch)
      ? { ...result, state: { ...result.state, grantedMs: nowMs } }
      : result

  const step = (state: St, input: M.Input<Msg<Req>, Command<Req>>): Step =>
    noteLeaseHeld(
      state,
      noteTerm(state, noteHistory(dispatch(state, input)), input.nowMs),
      input.nowMs,
    )

  const dispatch = (state: St, input: M.Input<Msg<Req>, Command<Req>>): Step => {
    switch (input._tag) {
      case "Receive":
        return onReceive(state, input.from, input.message, input.nowMs)
      case "TimerFired":
        switch (input.timer) {
          case detectTimer:
            return onDetect(state, input.nowMs)
          case inquiryTimer:
            return onInquiryTimeout(state)
          case electionTimer:
            return onElection(state, input.nowMs)
          case leaseTimer:
            return onLeaseWaited(state, input.nowMs)
          default:
            return M.result(state)
        }
      case "Command":
        switch (input.command._tag) {
          case "Read":
            return onRead(state, input.command, input.nowMs)
          case "ReadMany":
            return onReadMany(state, input.command.readIds, input.nowMs)
          case "SubmitMany":
            return onSubmitMany(state, input.command, input.nowMs)
          case "Submit":
            return onSubmit(state, input.command, input.nowMs)
        }
    }
  }

  return { init, step }
}

/**
 * The terms of a server's current election delay, as a structure and a line of text, from
 * what it knows now: for logs and for checking claims 10–13 by hand.
 *
 * @since 0.1.0
 * @category getters
 */
export const explainDelays = (
  config: Pick<
    Config<unknown, unknown, unknown>,
    "servers" | "baseDelayMs" | "floorDelayMs" | "unknownDelayMs" | "inquiryTimeoutMs"
  >,
  state: State<unknown, unknown, unknown>,
): Delays.Explanation => {
  const servers = Result.getOrThrow(Rank.rank(config.servers))
  const row: Record<string, number> = {}
  for (const peer in state.samples) {
    const samples = state.samples[peer]!
    if (samples.length > 0) row[peer] = Math.max(...samples)
  }
  return Delays.explain({
    servers,
    self: state.self,
    failed: state.failed,
    matrix: { ...state.rows, [state.self]: row },
    baseDelayMs: config.baseDelayMs,
    floorDelayMs: config.floorDelayMs ?? 1,
    unknownDelayMs: config.unknownDelayMs ?? config.inquiryTimeoutMs,
  })
}
