/**
 * What the machine is given (commands), what it tells its driver (events), and what one
 * server holds (`State`, and the master's `Leader` bookkeeping); the names of its timers.
 */
import type { Machine as M } from "@understudy/machine"
import type * as Delays from "../Delays.ts"
import type * as Message from "../Message.ts"
import type * as Replication from "../Replication.ts"

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
  Message.Message<Req>,
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
