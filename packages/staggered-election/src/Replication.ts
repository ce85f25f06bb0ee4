/**
 * Active replication (claim 1) as pure functions over one server's replica: a log of client
 * requests in positions `seq` 1, 2, …, global and continuing across epochs, each entry
 * stamped with the epoch it was created in; a commit point; and the user's state machine,
 * to which every server applies the committed entries in order. Only committed entries are
 * ever applied, so the applied sequences of any two servers are prefixes of one another.
 *
 * Commit rule (master side, `commitPoint`): an entry is committed when every live backup
 * holds it AND the master plus the backups holding it form a majority of the configured
 * group. The staggered election picks the master; the majority rule is what keeps a master
 * cut off in a minority partition (an old master that has not heard of its successor) from
 * ever acknowledging a request. As in Raft, a master counts replicas only for an entry of its
 * own epoch (earlier ones commit with it), and a new master first syncs with a majority
 * (`chooseSync`), so it holds every committed entry before it adds its own.
 *
 * Amnesia: without a write-ahead log (see `Durable`; with one, a restart keeps everything
 * below and is not amnesiac) nothing is persisted, so a restarted server comes back with an empty log (a cold
 * start and a restart look the same) and has forgotten what it held, acknowledged and
 * promised (the epochs it followed). Raft's argument needs every counted server to keep all
 * three, so such a server is "amnesiac" from its start until a master catches it up, and
 * while amnesiac:
 * - its acknowledgements do not count towards a commit majority (`commitPoint`'s
 *   `uncounted`), and acknowledgements of its earlier incarnations are discarded;
 * - its sync replies (and the syncing master itself, if amnesiac) do not count towards a new
 *   master's sync majority, unless nobody the master heard from knows of any history (no
 *   server held a non-empty log: a cold start of the whole group) or every server of the group
 *   replied (every log that still exists is then a candidate).
 * A synced master catches an amnesiac up: once the backup's log matches the master's through
 * the master's no-op of its epoch and its commit point (`safeSeq`, in a `Replicate` naming the
 * backup's current incarnation), and fresh probe replies of a majority of non-amnesiac servers,
 * or of every other server of the group (amnesiac or not), reported no epoch newer than that
 * master's (so a newer mastership it promised before its restart is not overruled through it:
 * a server that remembers it reports it, and when every server reports none, everyone who knew
 * of it has restarted since, so nobody can count that promise any more), it holds every
 * committed entry and counts again. The
 * backups of a cold start skip the second condition until their master's first commit (none
 * of them could meet it). A master that finished its sync holds every committed entry, so it
 * stops being amnesiac. A syncing master sends its backups its committed prefix, and takes any
 * committed entries a sync reply shows it, so what is decided is applied even by a group that
 * cannot finish a sync.
 *
 * What that guarantees. Safety: a committed entry stays in every later master's log and the
 * applied sequences stay prefixes of one another, unless every server that held it restarted
 * (or was cut off) before any caught-up server held it again — then it exists in no reachable
 * log, and no protocol without persistence can keep it — or a master synced as a cold start
 * while history existed (it heard only from empty, restarted servers that knew of none: a
 * majority restarted at once, cut off from the rest). Liveness: a master syncs with a majority
 * of non-amnesiac servers (itself included) or with every server, and commits with a majority
 * of non-amnesiac ones; an amnesiac is caught up within a probe round and a replicate round
 * once every server is up and reachable. So restarts of fewer than a majority at a time, each
 * caught up by the master before the next, cost nothing. But if at some point the amnesiac and unreachable
 * servers together make a majority and no synced master remains (say two of five are down and
 * a third restarted when the master fails), the group keeps a master that cannot finish its
 * sync: it applies and spreads what any live server knows is committed, but commits nothing
 * new, until enough non-amnesiac servers are reachable again or every server answers. That is
 * the price of not persisting: proceeding there could overwrite an entry committed by the
 * unreachable ones. Epochs are not persisted either: a restarted former master that hears only
 * of older terms can declare again at an epoch it used before (see the `Machine` module).
 *
 * Exactly-once: each client numbers its requests; applying an entry records the client's
 * last request id and result, replicated with the state, so a retried request is answered
 * from that table instead of being applied twice.
 *
 * @since 0.1.0
 */
import { HashMap, type Result, Schema } from "effect"
import type * as Message from "./Message.ts"

/**
 * The user's deterministic state machine: the same state and request must always give the
 * same next state and result, on every server (no clock, no randomness, no I/O).
 *
 * @since 0.1.0
 * @category models
 */
export type Apply<S, Req, Res> = (state: S, request: Req) => readonly [S, Res]

/** The last request applied for one client. @since 0.1.0 @category models */
export interface ClientRecord<Res> {
  readonly requestId: number
  readonly result: Res
}

/** The last request applied per client: a persistent map, so applying one copies O(log n). @since 0.1.0 @category models */
export type Clients<Res> = HashMap.HashMap<string, ClientRecord<Res>>

/**
 * The applied state through position `seq` (created in `epoch`): what the log before it was
 * compacted into. Committed and applied, so the same on every server that holds it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot<S, Res> {
  readonly seq: number
  readonly epoch: number
  readonly state: S
  readonly clients: Clients<Res>
}

/** One server's copy. @since 0.1.0 @category models */
export interface Replica<S, Req, Res> {
  /** Positions through `base.seq` are compacted into it; `log[i]` holds `seq = base.seq + i + 1`. */
  readonly base: Snapshot<S, Res>
  /**
   * The applied state at a later position, taken when the tail last grew by the compaction
   * interval: the next `base`. Compacting to it rather than to the applied point keeps an
   * interval's worth of entries, so a backup a little behind gets entries, not a snapshot.
   */
  readonly checkpoint: Snapshot<S, Res> | undefined
  readonly log: ReadonlyArray<Message.Entry<Req>>
  readonly commitSeq: number
  readonly appliedSeq: number
  readonly state: S
  readonly clients: Clients<Res>
}

/** A request applied (or found already applied) by `applyCommitted`. @since 0.1.0 @category models */
export interface Applied<Res> {
  readonly seq: number
  readonly clientId: string
  readonly requestId: number
  readonly result: Res
  /** True when the entry repeated a request already applied: the state did not change. */
  readonly duplicate: boolean
}

/** @since 0.1.0 @category constructors */
export const empty = <S, Req, Res>(state: S): Replica<S, Req, Res> => ({
  base: { seq: 0, epoch: 0, state, clients: HashMap.empty() },
  checkpoint: undefined,
  log: [],
  commitSeq: 0,
  appliedSeq: 0,
  state,
  clients: HashMap.empty(),
})

/** @since 0.1.0 @category getters */
export const lastSeq = (replica: Replica<unknown, unknown, unknown>): number =>
  replica.base.seq + replica.log.length

/** The entry at `seq`, if held (not compacted, not past the end). @since 0.1.0 @category getters */
export const entryAt = <Req>(
  replica: Replica<unknown, Req, unknown>,
  seq: number,
): Message.Entry<Req> | undefined =>
  seq > replica.base.seq ? replica.log[seq - replica.base.seq - 1] : undefined

/**
 * The epoch of the entry at `seq`: the snapshot's at its position (0 for position 0);
 * `undefined` past the end or inside the snapshot.
 *
 * @since 0.1.0
 * @category getters
 */
export const epochAt = (
  replica: Replica<unknown, unknown, unknown>,
  seq: number,
): number | undefined =>
  seq === replica.base.seq ? replica.base.epoch : entryAt(replica, seq)?.epoch

/** @since 0.1.0 @category getters */
export const lastEpoch = (replica: Replica<unknown, unknown, unknown>): number =>
  epochAt(replica, lastSeq(replica)) ?? 0

/**
 * The entries from `fromSeq` on, at most `max` of them. `fromSeq` must be past the snapshot
 * (`fromSeq > base.seq`): what is before it exists only as the snapshot.
 *
 * @since 0.1.0
 * @category getters
 */
export const entriesFrom = <Req>(
  replica: Replica<unknown, Req, unknown>,
  fromSeq: number,
  max: number,
): ReadonlyArray<Message.Entry<Req>> => {
  const from = Math.max(0, fromSeq - replica.base.seq - 1)
  return replica.log.slice(from, from + Math.max(0, max))
}

/** The entries held (after the snapshot) through the applied point. @since 0.1.0 @category getters */
export const appliedEntries = <Req>(
  replica: Replica<unknown, Req, unknown>,
): ReadonlyArray<Message.Entry<Req>> => replica.log.slice(0, replica.appliedSeq - replica.base.seq)

/**
 * What to do with a client's request at the master.
 *
 * @since 0.1.0
 * @category models
 */
export type Lookup<Res> =
  | { readonly _tag: "New" }
  | { readonly _tag: "Answered"; readonly result: Res }
  | { readonly _tag: "Pending" }
  | { readonly _tag: "Stale" }

/**
 * Whether a request is new, already applied (answer from the table), already in the log but
 * not committed (its answer will come), or older than the client's last applied request.
 *
 * @since 0.1.0
 * @category getters
 */
export const lookup = <Req, Res>(
  replica: Replica<unknown, Req, Res>,
  clientId: string,
  requestId: number,
): Lookup<Res> => {
  const record = HashMap.get(replica.clients, clientId)
  if (record._tag === "Some") {
    if (record.value.requestId === requestId)
      return { _tag: "Answered", result: record.value.result }
    if (record.value.requestId > requestId) return { _tag: "Stale" }
  }
  for (let seq = replica.appliedSeq + 1; seq <= lastSeq(replica); seq++) {
    const entry = entryAt(replica, seq)!
    if (entry._tag === "Request" && entry.clientId === clientId && entry.requestId === requestId) {
      return { _tag: "Pending" }
    }
  }
  return { _tag: "New" }
}

/** Appends one entry at the end (master side). @since 0.1.0 @category combinators */
export const append = <S, Req, Res>(
  replica: Replica<S, Req, Res>,
  entry: Message.Entry<Req>,
): Replica<S, Req, Res> => ({ ...replica, log: [...replica.log, entry] })

/** The outcome of `accept`. @since 0.1.0 @category models */
export interface Accepted<S, Req, Res> {
  readonly replica: Replica<S, Req, Res>
  readonly ok: boolean
  /** When ok: the last position known to agree with the master; else where it should go back to. */
  readonly lastSeq: number
}

/**
 * A backup takes entries that follow position `prevSeq` (created in `prevEpoch`) in the
 * master's log, Raft style: if it does not hold that entry, it refuses and says how far its
 * log goes; otherwise an entry at a position it holds with another epoch drops its own from
 * there on (that suffix was never committed), and the rest is appended. It never drops an
 * applied entry (that would mean two masters disagree on a committed one: refused instead).
 * At most `logEntriesMax` are kept after the snapshot; what does not fit is not
 * acknowledged. Entries inside this server's snapshot are committed, so the same as the
 * master's: they are skipped as matching.
 *
 * @since 0.1.0
 * @category combinators
 */
export const accept = <S, Req, Res>(
  replica: Replica<S, Req, Res>,
  prevSeq: number,
  prevEpoch: number,
  entries: ReadonlyArray<Message.Entry<Req>>,
  commitSeq: number,
  logEntriesMax: number,
): Accepted<S, Req, Res> => {
  const base = replica.base.seq
  if (Number.isInteger(prevSeq) && prevSeq >= 0 && prevSeq < base) {
    // Inside the snapshot: committed, so it matches; go on from the snapshot's end.
    const skipped = base - prevSeq
    const continues = entries.every((entry, i) => entry.seq === prevSeq + 1 + i)
    if (!continues || entries.length <= skipped)
      return { replica, ok: true, lastSeq: continues ? base : prevSeq }
    return accept(
      replica,
      base,
      replica.base.epoch,
      entries.slice(skipped),
      commitSeq,
      logEntriesMax,
    )
  }
  const held = epochAt(replica, prevSeq)
  if (held === undefined) return { replica, ok: false, lastSeq: lastSeq(replica) }
  if (held !== prevEpoch) return { replica, ok: false, lastSeq: Math.max(0, prevSeq - 1) }
  let log = replica.log
  let matched = prevSeq
  for (const entry of entries) {
    const seq = matched + 1
    // An entry that does not continue the message's positions is malformed: stop there.
    if (entry.seq !== seq || seq - base > logEntriesMax) break
    const existing = log[seq - base - 1]
    if (existing !== undefined && existing.epoch === entry.epoch) {
      matched = seq
      continue
    }
    if (existing !== undefined) {
      if (seq <= replica.appliedSeq) break
      log = log.slice(0, seq - base - 1)
    } else if (log === replica.log) {
      log = [...log]
    }
    ;(log as Array<Message.Entry<Req>>).push(entry)
    matched = seq
  }
  const commit = Math.max(replica.commitSeq, Math.min(commitSeq, matched))
  return { replica: { ...replica, log, commitSeq: commit }, ok: true, lastSeq: matched }
}

/**
 * Applies every committed entry not yet applied, in order, and returns what each request
 * gave. A request whose client already had it (or a later one) applied does not change the
 * state: it is reported with the recorded result, as `duplicate`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const applyCommitted = <S, Req, Res>(
  replica: Replica<S, Req, Res>,
  apply: Apply<S, Req, Res>,
): { readonly replica: Replica<S, Req, Res>; readonly applied: ReadonlyArray<Applied<Res>> } => {
  if (replica.appliedSeq >= replica.commitSeq) return { replica, applied: [] }
  let state = replica.state
  let clients = replica.clients
  const applied: Array<Applied<Res>> = []
  const upTo = Math.min(replica.commitSeq, lastSeq(replica))
  for (let seq = replica.appliedSeq + 1; seq <= upTo; seq++) {
    const entry = entryAt(replica, seq)!
    if (entry._tag === "Noop") continue
    const found = HashMap.get(clients, entry.clientId)
    const record = found._tag === "Some" ? found.value : undefined
    if (record !== undefined && record.requestId >= entry.requestId) {
      if (record.requestId === entry.requestId) {
        applied.push({
          seq,
          clientId: entry.clientId,
          requestId: entry.requestId,
          result: record.result,
          duplicate: true,
        })
      }
      continue
    }
    const [next, result] = apply(state, entry.request)
    state = next
    clients = HashMap.set(clients, entry.clientId, { requestId: entry.requestId, result })
    applied.push({
      seq,
      clientId: entry.clientId,
      requestId: entry.requestId,
      result,
      duplicate: false,
    })
  }
  return { replica: { ...replica, state, clients, appliedSeq: upTo }, applied }
}

/**
 * The master's new commit point: the highest position of its own epoch that every live
 * backup holds and that the master plus the backups holding it make a majority of the
 * group of `groupSize`. `matchSeq` holds, per backup, the last position it acknowledged in
 * this epoch. The `uncounted` backups (amnesiac ones) must hold it too when live, but do not
 * count towards the majority: what they hold they may forget unnoticed.
 *
 * @since 0.1.0
 * @category getters
 */
export const commitPoint = (
  replica: Replica<unknown, unknown, unknown>,
  epoch: number,
  matchSeq: Readonly<Record<string, number>>,
  liveBackups: ReadonlyArray<string>,
  groupSize: number,
  uncounted: ReadonlyArray<string> = [],
): number => {
  for (let seq = lastSeq(replica); seq > replica.commitSeq; seq--) {
    // Earlier epochs' entries commit with one of ours (Raft's rule, §5.4.2): counting their
    // replicas is not enough, a later master may not have them.
    if (entryAt(replica, seq)!.epoch !== epoch) return replica.commitSeq
    if (liveBackups.some((backup) => (matchSeq[backup] ?? 0) < seq)) continue
    let holders = 1
    for (const backup in matchSeq) {
      if (matchSeq[backup]! >= seq && !uncounted.includes(backup)) holders++
    }
    if (holders * 2 > groupSize) return seq
  }
  return replica.commitSeq
}

/** What a server told a syncing master of its log. @since 0.1.0 @category models */
export interface SyncSummary<Req> {
  readonly lastSeq: number
  readonly lastEpoch: number
  /** Its entries from the sync's `fromSeq` on, as far as received. */
  readonly entries: ReadonlyArray<Message.Entry<Req>>
  readonly complete: boolean
  /** The replier was amnesiac: it counts only on a cold start or when every server replied. */
  readonly amnesiac?: boolean
}

/**
 * The log a new master adopts, among its own and the replies of a majority: the one whose
 * last entry has the newest epoch, then the longest (Raft's "up to date" order). Every
 * committed entry is on a majority, and every majority meets this one, so the chosen log
 * holds every committed entry. Ties go to the first in `candidates` (put the master first).
 *
 * @since 0.1.0
 * @category getters
 */
export const chooseSync = <Req>(
  candidates: ReadonlyArray<readonly [string, SyncSummary<Req>]>,
): readonly [string, SyncSummary<Req>] | undefined => {
  let best: readonly [string, SyncSummary<Req>] | undefined
  for (const candidate of candidates) {
    const [, summary] = candidate
    if (
      best === undefined ||
      summary.lastEpoch > best[1].lastEpoch ||
      (summary.lastEpoch === best[1].lastEpoch && summary.lastSeq > best[1].lastSeq)
    ) {
      best = candidate
    }
  }
  return best
}

/**
 * Replaces the log from `fromSeq` on with `entries` (a new master adopting the chosen log).
 * Positions below `fromSeq` are committed and the same everywhere, so they are kept
 * (`fromSeq` is past the snapshot: it follows the commit point). `logEntriesMax` bounds the
 * entries after the snapshot.
 *
 * @since 0.1.0
 * @category combinators
 */
export const adopt = <S, Req, Res>(
  replica: Replica<S, Req, Res>,
  fromSeq: number,
  entries: ReadonlyArray<Message.Entry<Req>>,
  logEntriesMax: number,
): Replica<S, Req, Res> => {
  const base = replica.base.seq
  const log = replica.log.slice(0, Math.max(0, fromSeq - base - 1))
  for (const entry of entries) {
    if (entry.seq !== base + log.length + 1 || log.length >= logEntriesMax) break
    log.push(entry)
  }
  return { ...replica, log }
}

/**
 * Compaction, after applying: once `every` entries were applied past the checkpoint (or the
 * snapshot, with no checkpoint yet), the checkpoint becomes the snapshot (the log before it
 * is dropped) and the applied state the new checkpoint. So the log keeps between `every` and
 * `2 * every` applied entries plus the unapplied ones, each compaction copies that much, and
 * a write costs O(1) amortised, whatever the lifetime count.
 *
 * @since 0.1.0
 * @category combinators
 */
export const compact = <S, Req, Res>(
  replica: Replica<S, Req, Res>,
  every: number,
): Replica<S, Req, Res> => {
  const from = replica.checkpoint ?? replica.base
  if (replica.appliedSeq - from.seq < every) return replica
  const applied: Snapshot<S, Res> = {
    seq: replica.appliedSeq,
    epoch: epochAt(replica, replica.appliedSeq) ?? 0,
    state: replica.state,
    clients: replica.clients,
  }
  if (replica.checkpoint === undefined && replica.appliedSeq - replica.base.seq >= 2 * every) {
    // No checkpoint and two intervals applied at once (a log replayed on restart): the only
    // state at hand is the applied one.
    return {
      ...replica,
      base: applied,
      log: replica.log.slice(replica.appliedSeq - replica.base.seq),
    }
  }
  const base = replica.checkpoint ?? replica.base
  const checkpoint = applied
  return {
    ...replica,
    base,
    checkpoint,
    log: base === replica.base ? replica.log : replica.log.slice(base.seq - replica.base.seq),
  }
}

/**
 * Installs a snapshot (committed, from the master or a peer): if this log holds the
 * snapshot's last entry, the entries after it are kept (Raft's rule), else the whole log
 * goes. A snapshot not past what is applied here changes nothing.
 *
 * @since 0.1.0
 * @category combinators
 */
export const install = <S, Req, Res>(
  replica: Replica<S, Req, Res>,
  snapshot: Snapshot<S, Res>,
): Replica<S, Req, Res> => {
  if (snapshot.seq <= replica.appliedSeq) return replica
  const keep = epochAt(replica, snapshot.seq) === snapshot.epoch
  return {
    base: snapshot,
    checkpoint: undefined,
    log: keep ? replica.log.slice(snapshot.seq - replica.base.seq) : [],
    commitSeq: Math.max(replica.commitSeq, snapshot.seq),
    appliedSeq: snapshot.seq,
    state: snapshot.state,
    clients: snapshot.clients,
  }
}

/** How snapshots go on the wire and to disk. @since 0.1.0 @category models */
export interface SnapshotCodec<S, Res> {
  readonly encode: (snapshot: Snapshot<S, Res>) => string
  readonly decode: (data: string) => Result.Result<Snapshot<S, Res>, Schema.SchemaError>
}

const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))

/**
 * A JSON snapshot codec from the schemas of the state and of the results (kept per client
 * for exactly-once answers).
 *
 * @since 0.1.0
 * @category codecs
 */
export const snapshotCodec = <S, Res>(
  state: Schema.Codec<S, unknown>,
  result: Schema.Codec<Res, unknown>,
): SnapshotCodec<S, Res> => {
  const schema = Schema.fromJsonString(
    Schema.toCodecJson(
      Schema.Struct({
        seq: Count,
        epoch: Count,
        state,
        clients: Schema.HashMap(Schema.String, Schema.Struct({ requestId: Count, result })),
      }),
    ),
  ) as unknown as Schema.Codec<Snapshot<S, Res>, string>
  const encode = Schema.encodeSync(schema)
  const decode = Schema.decodeUnknownResult(schema)
  return { encode: (snapshot) => encode(snapshot), decode: (data) => decode(data) }
}
