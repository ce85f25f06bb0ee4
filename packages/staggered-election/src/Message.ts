/**
 * The wire messages of the staggered election and its replication, as Effect Schemas, and a
 * JSON codec built from them, so a driver or a fuzzer can decode untrusted bytes into a typed
 * message or a `CodecError`, never a throw.
 *
 * Every message carries the sender's `epoch` (checked once, before dispatch, against the
 * receiver's) and the sender's `index` (checked against the configured group).
 *
 * `Declare` is the "first message" of claims 8 and 15; `Revoke` the "second message" of
 * claim 23, which carries both the revoker's index and the revoked server's index.
 *
 * Amnesia (see `Replication`): nothing is persisted, so a restarted server comes back with an
 * empty log and is "amnesiac" until a master catches it up. The optional fields `history`,
 * `amnesiac`, `incarnation`, `catchUp` and `safeSeq` carry what that needs; they are optional
 * only so that messages written before them still type-check and decode (absent means
 * `false` / unknown), and the machine always sends them.
 *
 * @since 0.1.0
 */
import { Codec } from "@understudy/transport"
import { Schema } from "effect"

/** @since 0.1.0 @category models */
export type Role = "master" | "backup" | "waiting"

/** A no-op a new master appends to commit what it adopted. @since 0.1.0 @category models */
export interface Noop {
  readonly _tag: "Noop"
  readonly seq: number
  readonly epoch: number
}

/** A client's request, at log position `seq`, created in `epoch`. @since 0.1.0 @category models */
export interface Request<Req> {
  readonly _tag: "Request"
  readonly seq: number
  readonly epoch: number
  readonly clientId: string
  readonly requestId: number
  readonly request: Req
}

/** One log entry. @since 0.1.0 @category models */
export type Entry<Req> = Noop | Request<Req>

/**
 * Sent to every peer on every detection tick; to the master it is the inquiry of claim 4.
 * `row` holds the sender's current per-peer delays, so every server learns the matrix.
 *
 * @since 0.1.0
 * @category models
 */
export interface Probe {
  readonly _tag: "Probe"
  readonly epoch: number
  readonly index: number
  readonly seq: number
  readonly master: string | null
  readonly row: Readonly<Record<string, number>>
  /** The sender knows the group has history: some server held a non-empty log. */
  readonly history?: boolean
  /** The sender's incarnation, echoed by the reply, so the reply is known to be fresh. */
  readonly incarnation?: number
}

/**
 * `incarnation` echoes the probe's, and `amnesiac` says whether the sender is: an amnesiac
 * counts only fresh replies of non-amnesiac servers as what the group knows of epochs.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProbeReply {
  readonly _tag: "ProbeReply"
  readonly epoch: number
  readonly index: number
  readonly seq: number
  readonly master: string | null
  readonly role: Role
  /** The sender knows the group has history: some server held a non-empty log. */
  readonly history?: boolean
  readonly amnesiac?: boolean
  readonly incarnation?: number
}

/** The first message: the sender declares itself master. @since 0.1.0 @category models */
export interface Declare {
  readonly _tag: "Declare"
  readonly epoch: number
  readonly index: number
}

/**
 * The second message: the sender (`index`) revokes the mastership of `revokedIndex` and
 * declares its own.
 *
 * @since 0.1.0
 * @category models
 */
export interface Revoke {
  readonly _tag: "Revoke"
  readonly epoch: number
  readonly index: number
  readonly revokedIndex: number
}

/**
 * Log entries from the master, following the entry at `prevSeq` (created in `prevEpoch`).
 * `catchUp` names the receiver's incarnation the master last heard of (so a message sent to an
 * earlier incarnation never catches up a later one) and `safeSeq` the position through which
 * a backup's log must match the master's to hold every committed entry (the master's no-op of
 * this epoch, or its commit point if later): an amnesiac backup of that incarnation whose log
 * matches through `safeSeq` stops being amnesiac. `cold` says the master synced as a cold
 * start and has not committed yet: the backup need not first hear from a majority. `round`
 * numbers the master's read-index rounds: the backup's `Ack` echoes it, which tells the
 * master that the backup still followed it after the reads of that round arrived.
 *
 * @since 0.1.0
 * @category models
 */
export interface Replicate<Req> {
  readonly _tag: "Replicate"
  readonly epoch: number
  readonly index: number
  readonly prevSeq: number
  readonly prevEpoch: number
  readonly entries: ReadonlyArray<Entry<Req>>
  readonly commitSeq: number
  readonly catchUp?: number
  readonly safeSeq?: number
  readonly cold?: boolean
  readonly round?: number
}

/**
 * A backup's answer to `Replicate`: `ok` with the last position it holds in agreement with
 * the master, or not `ok` with where the master should go back to. `incarnation` identifies
 * the sender's life since its last start (acks of an earlier one are stale: that log is gone);
 * an `amnesiac` sender's acks do not count towards a commit majority.
 *
 * @since 0.1.0
 * @category models
 */
export interface Ack {
  readonly _tag: "Ack"
  readonly epoch: number
  readonly index: number
  readonly ok: boolean
  readonly lastSeq: number
  readonly amnesiac?: boolean
  readonly incarnation?: number
  /** The `round` of the `Replicate` this answers, if it had one. */
  readonly round?: number
}

/**
 * A new master asks for the logs from `fromSeq` on. A server that compacted past `fromSeq`
 * sends its snapshot instead (`Snapshot` chunks), from `snapshotOffset` if the master is
 * already receiving that snapshot (`snapshotSeq`) from it.
 *
 * @since 0.1.0
 * @category models
 */
export interface SyncRequest {
  readonly _tag: "SyncRequest"
  readonly epoch: number
  readonly index: number
  readonly fromSeq: number
  readonly snapshotSeq?: number
  readonly snapshotOffset?: number
}

/**
 * One chunk of a snapshot (see `Replication.Snapshot`), encoded by the group's snapshot
 * codec: `data` holds its characters from `offset` on; `done` marks the last chunk. The
 * master sends it to a backup whose next entry it compacted; a backup to a syncing master
 * whose commit point is before its own snapshot. The receiver answers each chunk but the
 * last with a `SnapshotAck`, the last one (once installed) with an `Ack` (to a master).
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  readonly _tag: "Snapshot"
  readonly epoch: number
  readonly index: number
  readonly seq: number
  readonly snapshotEpoch: number
  readonly offset: number
  readonly data: string
  readonly done: boolean
}

/** The receiver holds the snapshot at `seq` through `offset`: send on from there. @since 0.1.0 @category models */
export interface SnapshotAck {
  readonly _tag: "SnapshotAck"
  readonly epoch: number
  readonly index: number
  readonly seq: number
  readonly offset: number
}

/**
 * A backup's log from `fromSeq` on (at most a message's worth; `complete` says whether that
 * is all), with the position and epoch of its whole log's last entry. An `amnesiac` sender's
 * reply counts towards the sync majority only while nobody knows of any history (a cold start
 * of the whole group); `history` passes on what the sender knows of it. `commitSeq` is the
 * sender's commit point: what is committed is decided, so the master takes it at once.
 *
 * @since 0.1.0
 * @category models
 */
export interface SyncReply<Req> {
  readonly _tag: "SyncReply"
  readonly epoch: number
  readonly index: number
  readonly fromSeq: number
  readonly entries: ReadonlyArray<Entry<Req>>
  readonly lastSeq: number
  readonly lastEpoch: number
  readonly complete: boolean
  readonly amnesiac?: boolean
  readonly history?: boolean
  readonly incarnation?: number
  readonly commitSeq?: number
  /**
   * How long ago, on the sender's clock, it last granted a master a lease (acknowledged a
   * read round) or held one: a new master with leases on waits until every lease its sync's
   * majority could have granted ran out (see `Machine.Config.lease`). Absent: just now.
   */
  readonly grantedAgoMs?: number
}

/** Every wire message. @since 0.1.0 @category models */
export type Message<Req> =
  | Probe
  | ProbeReply
  | Declare
  | Revoke
  | Replicate<Req>
  | Ack
  | SyncRequest
  | SyncReply<Req>
  | Snapshot
  | SnapshotAck

const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const Delay = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))
const Flag = Schema.optionalKey(Schema.Boolean)
// An incarnation is the clock reading at the server's start: not necessarily an integer.
const Incarnation = Schema.optionalKey(Delay)
const RoleSchema = Schema.Literals(["master", "backup", "waiting"])

/**
 * The schema of one log entry, given the schema of the user's requests (on the wire and in
 * the write-ahead log).
 *
 * @since 0.1.0
 * @category schemas
 */
export const entrySchema = <R extends Schema.Top>(request: R) =>
  Schema.Union([
    Schema.TaggedStruct("Noop", { seq: Count, epoch: Count }),
    Schema.TaggedStruct("Request", {
      seq: Count,
      epoch: Count,
      clientId: Schema.String,
      requestId: Count,
      request,
    }),
  ])

/**
 * The schema of every message, given the schema of the user's requests.
 *
 * @since 0.1.0
 * @category schemas
 */
export const schema = <Req>(
  request: Schema.Codec<Req, unknown>,
): Schema.Codec<Message<Req>, unknown> => {
  const entry = entrySchema(request)
  const union = Schema.Union([
    Schema.TaggedStruct("Probe", {
      epoch: Count,
      index: Count,
      seq: Count,
      master: Schema.NullOr(Schema.String),
      row: Schema.Record(Schema.String, Delay),
      history: Flag,
      incarnation: Incarnation,
    }),
    Schema.TaggedStruct("ProbeReply", {
      epoch: Count,
      index: Count,
      seq: Count,
      master: Schema.NullOr(Schema.String),
      role: RoleSchema,
      history: Flag,
      amnesiac: Flag,
      incarnation: Incarnation,
    }),
    Schema.TaggedStruct("Declare", { epoch: Count, index: Count }),
    Schema.TaggedStruct("Revoke", { epoch: Count, index: Count, revokedIndex: Count }),
    Schema.TaggedStruct("Replicate", {
      epoch: Count,
      index: Count,
      prevSeq: Count,
      prevEpoch: Count,
      entries: Schema.Array(entry),
      commitSeq: Count,
      catchUp: Incarnation,
      safeSeq: Schema.optionalKey(Count),
      cold: Flag,
      round: Schema.optionalKey(Count),
    }),
    Schema.TaggedStruct("Ack", {
      epoch: Count,
      index: Count,
      ok: Schema.Boolean,
      lastSeq: Count,
      amnesiac: Flag,
      incarnation: Incarnation,
      round: Schema.optionalKey(Count),
    }),
    Schema.TaggedStruct("SyncRequest", {
      epoch: Count,
      index: Count,
      fromSeq: Count,
      snapshotSeq: Schema.optionalKey(Count),
      snapshotOffset: Schema.optionalKey(Count),
    }),
    Schema.TaggedStruct("Snapshot", {
      epoch: Count,
      index: Count,
      seq: Count,
      snapshotEpoch: Count,
      offset: Count,
      data: Schema.String,
      done: Schema.Boolean,
    }),
    Schema.TaggedStruct("SnapshotAck", { epoch: Count, index: Count, seq: Count, offset: Count }),
    Schema.TaggedStruct("SyncReply", {
      epoch: Count,
      index: Count,
      fromSeq: Count,
      entries: Schema.Array(entry),
      lastSeq: Count,
      lastEpoch: Count,
      complete: Schema.Boolean,
      amnesiac: Flag,
      history: Flag,
      incarnation: Incarnation,
      commitSeq: Schema.optionalKey(Count),
      grantedAgoMs: Schema.optionalKey(Delay),
    }),
  ])
  // The hand-written types above say the same as the union; a round-trip test checks it.
  return union as unknown as Schema.Codec<Message<Req>, unknown>
}

/**
 * A JSON codec of every message, given the schema of the user's requests.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Message } from "@understudy/staggered-election"
 * const codec = Message.codec(Schema.Struct({ add: Schema.Int }))
 * ```
 * @since 0.1.0
 * @category codecs
 */
export const codec = <Req>(request: Schema.Codec<Req, unknown>): Codec.Codec<Message<Req>> =>
  Codec.json(schema(request), "StaggeredElection")
