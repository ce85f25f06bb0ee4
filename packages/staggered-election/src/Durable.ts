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
 * (everything at once: what `compact` rewrites the log file into, or what an installed
 * snapshot replaces the log with). The applied state after the snapshot is not stored: it
 * is the committed part of the log, applied again on restart.
 *
 * Compaction in memory (`Replication.compact`) writes nothing: the file still holds the
 * entries the snapshot replaced, equivalent to it, until the file is rewritten (then the
 * machine's current snapshot is encoded with the `Replication.SnapshotCodec`). So encoding
 * the state costs one pass per file rewrite, which happens once the file has grown past
 * `compactBytes` plus twice the size of the last rewrite: amortised O(1) per write.
 *
 * @since 0.1.0
 */
import { Effect, Result, Schema, type Scope } from "effect"
import * as Message from "./Message.ts"
import type * as Replication from "./Replication.ts"
import * as Wal from "./Wal.ts"

/** The durable part of a server's state. @since 0.1.0 @category models */
export interface Durable<Req, S = unknown, Res = unknown> {
  readonly term: number
  readonly epoch: number
  readonly commitSeq: number
  /** The snapshot the log follows; absent, the log starts at position 1. */
  readonly base?: Replication.Snapshot<S, Res> | undefined
  /** `log[i]` holds position `(base?.seq ?? 0) + i + 1`. */
  readonly log: ReadonlyArray<Message.Entry<Req>>
}

/** A server that never wrote anything. @since 0.1.0 @category constructors */
export const empty: Durable<never, never, never> = { term: 0, epoch: 0, commitSeq: 0, log: [] }

const baseSeq = (durable: Durable<unknown, unknown, unknown>) => durable.base?.seq ?? 0

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
  | {
      readonly _tag: "Snapshot"
      readonly term: number
      readonly epoch: number
      readonly commitSeq: number
      /** The snapshot, encoded by the `Replication.SnapshotCodec`. */
      readonly base?: string
      readonly log: ReadonlyArray<Message.Entry<Req>>
    }

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
      base: Schema.optionalKey(Schema.String),
      log: Schema.Array(entry),
    }),
  ])
  return Schema.fromJsonString(union) as unknown as Schema.Codec<Record<Req>, unknown>
}

/**
 * The durable state a sequence of records leaves; `decodeBase` decodes a snapshot record's
 * snapshot (it throws nothing: a snapshot that does not decode was checked by `open`).
 *
 * @since 0.1.0
 * @category combinators
 */
export const replay = <Req, S = unknown, Res = unknown>(
  records: ReadonlyArray<Record<Req>>,
  decodeBase: (data: string) => Replication.Snapshot<S, Res> | undefined = () => undefined,
): Durable<Req, S, Res> => {
  let durable: Durable<Req, S, Res> = empty
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
      case "Entries": {
        const kept = Math.max(0, record.fromSeq - 1 - baseSeq(durable))
        durable = { ...durable, log: [...durable.log.slice(0, kept), ...record.entries] }
        break
      }
      case "Snapshot": {
        const base = record.base === undefined ? undefined : decodeBase(record.base)
        durable = {
          term: record.term,
          epoch: record.epoch,
          commitSeq: record.commitSeq,
          ...(base === undefined ? {} : { base }),
          log: record.log,
        }
        break
      }
    }
  }
  // A commit point past the log (its tail torn) says nothing about what is missing.
  return {
    ...durable,
    commitSeq: Math.min(durable.commitSeq, baseSeq(durable) + durable.log.length),
  }
}

/** The durable part of what a machine holds. @since 0.1.0 @category getters */
export const of = <Req, S, Res>(state: {
  readonly term: number
  readonly epoch: number
  readonly replica: {
    readonly commitSeq: number
    readonly base: Replication.Snapshot<S, Res>
    readonly log: ReadonlyArray<Message.Entry<Req>>
  }
}): Durable<Req, S, Res> => ({
  term: state.term,
  epoch: state.epoch,
  commitSeq: state.replica.commitSeq,
  ...(state.replica.base.seq === 0 ? {} : { base: state.replica.base }),
  log: state.replica.log,
})

/**
 * The records that take `persisted` to `next`. The machine never changes an entry in place,
 * so entries are compared by identity: from the end of the shorter log back to the first
 * position both still share (usually at once: an append). A snapshot moved by compaction
 * changes nothing on disk (the entries it replaced are there); one that replaced entries
 * the file does not hold (installed from the master) is written whole (`snapshot`
 * encodes it; without it nothing is ever installed).
 *
 * @since 0.1.0
 * @category combinators
 */
export const changes = <Req, S, Res>(
  persisted: Durable<Req, S, Res>,
  next: Durable<Req, S, Res>,
  encodeBase: (base: Replication.Snapshot<S, Res>) => string = () => {
    throw new Error("a snapshot without a snapshot codec")
  },
): ReadonlyArray<Record<Req>> => {
  const persistedBase = baseSeq(persisted)
  const nextBase = baseSeq(next)
  const persistedLast = persistedBase + persisted.log.length
  if (
    next.base !== persisted.base &&
    (nextBase > persistedLast ||
      (nextBase > persistedBase &&
        persisted.log[nextBase - persistedBase - 1]?.epoch !== next.base!.epoch) ||
      nextBase < persistedBase)
  ) {
    return [
      {
        _tag: "Snapshot",
        term: next.term,
        epoch: next.epoch,
        commitSeq: next.commitSeq,
        ...(next.base === undefined ? {} : { base: encodeBase(next.base) }),
        log: next.log,
      },
    ]
  }
  let entries: Record<Req> | undefined
  if (persisted.log !== next.log) {
    // Positions both logs hold, compared from the end; `nextBase >= persistedBase` here.
    const nextLast = nextBase + next.log.length
    const entryOf = (durable: Durable<Req, S, Res>, base: number, seq: number) =>
      durable.log[seq - base - 1]
    let shared = Math.min(persistedLast, nextLast)
    while (
      shared > nextBase &&
      entryOf(persisted, persistedBase, shared) !== entryOf(next, nextBase, shared)
    ) {
      shared--
    }
    if (shared < persistedLast || shared < nextLast) {
      entries = { _tag: "Entries", fromSeq: shared + 1, entries: next.log.slice(shared - nextBase) }
    }
  }
  const promised = persisted.term !== next.term || persisted.epoch !== next.epoch
  const committed = persisted.commitSeq !== next.commitSeq
  const hard: Record<Req> = {
    _tag: "Hard",
    term: next.term,
    epoch: next.epoch,
    commitSeq: next.commitSeq,
  }
  if (entries === undefined) return promised || committed ? [hard] : []
  if (!committed) return promised ? [hard, entries] : [entries]
  // The commit point goes after the entries: a write torn between them must not leave it
  // pointing at an entry the lost ones replace (an uncommitted suffix being overwritten).
  // The promise still goes first: no entry of an epoch is on disk before the promise of it.
  return [
    ...(promised
      ? [{ ...hard, commitSeq: Math.min(persisted.commitSeq, next.commitSeq) } as Record<Req>]
      : []),
    entries,
    hard,
  ]
}

/**
 * A server's durable state on disk: what it recovered, and `persist`, which appends (fsynced)
 * the changes from what it last persisted and compacts the file into one `Snapshot` record
 * once it has grown past `compactBytes` plus twice the size of the last snapshot.
 *
 * @since 0.1.0
 * @category models
 */
export interface Store<Req, S = unknown, Res = unknown> {
  readonly recovered: Durable<Req, S, Res>
  /** Bytes of a torn tail truncated on open. */
  readonly truncatedBytes: number
  readonly persist: (next: Durable<Req, S, Res>) => Effect.Effect<void, Wal.WalFailed>
}

/**
 * The log at `file`, opened and recovered for the scope. A record that passes its checksum
 * but does not decode (nor its snapshot, with `snapshot`) is damage too
 * (`ElectionWalCorrupt`). Without `snapshot`, the machine must not compact (the whole log
 * is kept).
 *
 * @since 0.1.0
 * @category constructors
 */
export const open = <Req, S = unknown, Res = unknown>(
  file: string,
  request: Schema.Codec<Req, unknown>,
  compactBytes = 4 * 1024 * 1024,
  snapshot?: Replication.SnapshotCodec<S, Res>,
): Effect.Effect<Store<Req, S, Res>, Wal.WalCorrupt | Wal.WalFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const codec = recordSchema(request)
    const decodeRecord = Schema.decodeUnknownResult(codec)
    const encodeRecord = Schema.encodeSync(codec)
    const { wal, records, truncatedBytes } = yield* Wal.open(file)
    const decoded: Array<Record<Req>> = []
    const bases = new Map<string, Replication.Snapshot<S, Res>>()
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
      const record = result.success
      if (record._tag === "Snapshot" && record.base !== undefined) {
        const base = snapshot?.decode(record.base)
        if (base === undefined || Result.isFailure(base)) {
          return yield* new Wal.WalCorrupt({
            path: file,
            offset,
            reason:
              base === undefined
                ? "a snapshot, and no snapshot codec to read it"
                : `a snapshot does not decode: ${String(base.failure)}`,
          })
        }
        bases.set(record.base, base.success)
      }
      decoded.push(record)
      offset += Wal.frame(bytes).length
    }
    const encode = (record: Record<Req>) => new TextEncoder().encode(encodeRecord(record) as string)
    const encodeBase = (base: Replication.Snapshot<S, Res>) => {
      if (snapshot === undefined) throw new Error("a snapshot without a snapshot codec")
      return snapshot.encode(base)
    }
    let persisted = replay<Req, S, Res>(decoded, (data) => bases.get(data))
    bases.clear()
    let snapshotBytes = yield* wal.size
    const persist = (next: Durable<Req, S, Res>) =>
      Effect.gen(function* () {
        const batch = changes(persisted, next, encodeBase)
        if (batch.length === 0) return
        yield* wal.append(batch.map(encode))
        persisted = next
        if ((yield* wal.size) > compactBytes + 2 * snapshotBytes) {
          const { base, ...rest } = next
          yield* wal.rewrite([
            encode({
              _tag: "Snapshot",
              ...rest,
              ...(base === undefined ? {} : { base: encodeBase(base) }),
            }),
          ])
          snapshotBytes = yield* wal.size
        }
      })
    return { recovered: persisted, truncatedBytes, persist }
  })
