/**
 * What a server keeps on disk so that a restart is not amnesiac, and how it goes through the
 * write-ahead log (`Wal`): the highest term seen (so a restarted master never declares again
 * at an epoch it used), the epoch it follows or holds (the promise that its acknowledgements
 * made), its log, and its commit point (a hint: what is committed is learned again from the
 * master otherwise).
 *
 * The machine stays pure: the driver compares the state after every step with what it last
 * persisted (`changes`) and appends the difference, fsynced, before the step's messages go
 * out and before any client is answered — as etcd raft's `Ready` is persisted before it is
 * sent. So whatever a server told its peers (an acknowledgement, a promise, a term) is on
 * its disk, and a server restarted from its log may count towards majorities again.
 *
 * Records: `Hard` (term, epoch, commit point), `Entries` (the log from `fromSeq` on is
 * replaced by these entries: appends and a backup's overwritten suffix alike) and `Snapshot`
 * (everything at once: what `compact` rewrites the log file into). The applied state is not
 * stored: it is the committed prefix of the log, applied again on restart.
 *
 * @since 0.1.0
 */
import { Effect, Result, Schema, type Scope } from "effect"
import * as Message from "./Message.ts"
import * as Wal from "./Wal.ts"

/** The durable part of a server's state. @since 0.1.0 @category models */
export interface Durable<Req> {
  readonly term: number
  readonly epoch: number
  readonly commitSeq: number
  /** `log[i]` holds position `i + 1`. */
  readonly log: ReadonlyArray<Message.Entry<Req>>
}

/** A server that never wrote anything. @since 0.1.0 @category constructors */
export const empty: Durable<never> = { term: 0, epoch: 0, commitSeq: 0, log: [] }

/** One record of the log. @since 0.1.0 @category models */
export type Record<Req> =
  | {
      readonly _tag: "Hard"
      readonly term: number
      readonly epoch: number
      readonly commitSeq: number
    }
  | {
      readonly _tag: "Entries"
      readonly fromSeq: number
      readonly entries: ReadonlyArray<Message.Entry<Req>>
    }
  | ({ readonly _tag: "Snapshot" } & Durable<Req>)

const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))

/**
 * The JSON codec of records, given the schema of the user's requests.
 *
 * @since 0.1.0
 * @category schemas
 */
export const recordSchema = <Req>(
  request: Schema.Codec<Req, unknown>,
): Schema.Codec<Record<Req>, unknown> => {
  const entry = Message.entrySchema(request)
  const union = Schema.Union([
    Schema.TaggedStruct("Hard", { term: Count, epoch: Count, commitSeq: Count }),
    Schema.TaggedStruct("Entries", { fromSeq: Count, entries: Schema.Array(entry) }),
    Schema.TaggedStruct("Snapshot", {
      term: Count,
      epoch: Count,
      commitSeq: Count,
      log: Schema.Array(entry),
    }),
  ])
  return Schema.fromJsonString(union) as unknown as Schema.Codec<Record<Req>, unknown>
}

/** The durable state a sequence of records leaves. @since 0.1.0 @category combinators */
export const replay = <Req>(records: ReadonlyArray<Record<Req>>): Durable<Req> => {
  let durable: Durable<Req> = empty
  for (const record of records) {
    switch (record._tag) {
      case "Hard":
        durable = {
          ...durable,
          term: record.term,
          epoch: record.epoch,
          commitSeq: record.commitSeq,
        }
        break
      case "Entries":
        durable = {
          ...durable,
          log: [...durable.log.slice(0, Math.max(0, record.fromSeq - 1)), ...record.entries],
        }
        break
      case "Snapshot":
        durable = {
          term: record.term,
          epoch: record.epoch,
          commitSeq: record.commitSeq,
          log: record.log,
        }
        break
    }
  }
  // A commit point past the log (its tail torn) says nothing about what is missing.
  return { ...durable, commitSeq: Math.min(durable.commitSeq, durable.log.length) }
}

/** The durable part of what a machine holds. @since 0.1.0 @category getters */
export const of = <Req>(state: {
  readonly term: number
  readonly epoch: number
  readonly replica: {
    readonly commitSeq: number
    readonly log: ReadonlyArray<Message.Entry<Req>>
  }
}): Durable<Req> => ({
  term: state.term,
  epoch: state.epoch,
  commitSeq: state.replica.commitSeq,
  log: state.replica.log,
})

/**
 * The records that take `persisted` to `next`. The machine never changes an entry in place,
 * so entries are compared by identity: from the end of the shorter log back to the first
 * position both still share (usually at once: an append).
 *
 * @since 0.1.0
 * @category combinators
 */
export const changes = <Req>(
  persisted: Durable<Req>,
  next: Durable<Req>,
): ReadonlyArray<Record<Req>> => {
  const records: Array<Record<Req>> = []
  if (
    persisted.term !== next.term ||
    persisted.epoch !== next.epoch ||
    persisted.commitSeq !== next.commitSeq
  ) {
    records.push({ _tag: "Hard", term: next.term, epoch: next.epoch, commitSeq: next.commitSeq })
  }
  if (persisted.log !== next.log) {
    let shared = Math.min(persisted.log.length, next.log.length)
    while (shared > 0 && persisted.log[shared - 1] !== next.log[shared - 1]) shared--
    if (shared < persisted.log.length || shared < next.log.length) {
      records.push({ _tag: "Entries", fromSeq: shared + 1, entries: next.log.slice(shared) })
    }
  }
  return records
}

/**
 * A server's durable state on disk: what it recovered, and `persist`, which appends (fsynced)
 * the changes from what it last persisted and compacts the file into one `Snapshot` record
 * once it has grown past `compactBytes` plus twice the size of the last snapshot.
 *
 * @since 0.1.0
 * @category models
 */
export interface Store<Req> {
  readonly recovered: Durable<Req>
  /** Bytes of a torn tail truncated on open. */
  readonly truncatedBytes: number
  readonly persist: (next: Durable<Req>) => Effect.Effect<void, Wal.WalFailed>
}

/**
 * The log at `file`, opened and recovered for the scope. A record that passes its checksum
 * but does not decode is damage too (`ElectionWalCorrupt`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const open = <Req>(
  file: string,
  request: Schema.Codec<Req, unknown>,
  compactBytes = 4 * 1024 * 1024,
): Effect.Effect<Store<Req>, Wal.WalCorrupt | Wal.WalFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const codec = recordSchema(request)
    const decodeRecord = Schema.decodeUnknownResult(codec)
    const encodeRecord = Schema.encodeSync(codec)
    const { wal, records, truncatedBytes } = yield* Wal.open(file)
    const decoded: Array<Record<Req>> = []
    let offset = 0
    for (const bytes of records) {
      const result = decodeRecord(new TextDecoder().decode(bytes))
      if (Result.isFailure(result)) {
        return yield* new Wal.WalCorrupt({
          path: file,
          offset,
          reason: `a record does not decode: ${String(result.failure)}`,
        })
      }
      decoded.push(result.success)
      offset += Wal.frame(bytes).length
    }
    const encode = (record: Record<Req>) => new TextEncoder().encode(encodeRecord(record) as string)
    let persisted = replay(decoded)
    let snapshotBytes = yield* wal.size
    const persist = (next: Durable<Req>) =>
      Effect.gen(function* () {
        const batch = changes(persisted, next)
        if (batch.length === 0) return
        yield* wal.append(batch.map(encode))
        persisted = next
        if ((yield* wal.size) > compactBytes + 2 * snapshotBytes) {
          yield* wal.rewrite([encode({ _tag: "Snapshot", ...next })])
          snapshotBytes = yield* wal.size
        }
      })
    return { recovered: persisted, truncatedBytes, persist }
  })
