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
}

/** @since 0.1.0 @category models */
export interface ProbeReply {
  readonly _tag: "ProbeReply"
  readonly epoch: number
  readonly index: number
  readonly seq: number
  readonly master: string | null
  readonly role: Role
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
}

/**
 * A backup's answer to `Replicate`: `ok` with the last position it holds in agreement with
 * the master, or not `ok` with where the master should go back to.
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
}

/** A new master asks for the logs from `fromSeq` on. @since 0.1.0 @category models */
export interface SyncRequest {
  readonly _tag: "SyncRequest"
  readonly epoch: number
  readonly index: number
  readonly fromSeq: number
}

/**
 * A backup's log from `fromSeq` on (at most a message's worth; `complete` says whether that
 * is all), with the position and epoch of its whole log's last entry.
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

const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const Delay = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))
const RoleSchema = Schema.Literals(["master", "backup", "waiting"])

const entrySchema = <R extends Schema.Top>(request: R) =>
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
    }),
    Schema.TaggedStruct("ProbeReply", {
      epoch: Count,
      index: Count,
      seq: Count,
      master: Schema.NullOr(Schema.String),
      role: RoleSchema,
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
    }),
    Schema.TaggedStruct("Ack", { epoch: Count, index: Count, ok: Schema.Boolean, lastSeq: Count }),
    Schema.TaggedStruct("SyncRequest", { epoch: Count, index: Count, fromSeq: Count }),
    Schema.TaggedStruct("SyncReply", {
      epoch: Count,
      index: Count,
      fromSeq: Count,
      entries: Schema.Array(entry),
      lastSeq: Count,
      lastEpoch: Count,
      complete: Schema.Boolean,
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
