/**
 * Linearizable reads on the master: by read index (a round a majority acknowledged, see
 * `Read`), or within the leader lease (`Config.lease`), which the same rounds renew.
 */
import { Machine as M } from "@understudy/machine"
import { replicateAll } from "./replicate.ts"
import type { Output, Settings, Step } from "./settings.ts"
import type { Event, Leader, Read, State } from "./state.ts"

/** The next read round, sent with every `Replicate` from now on; with leases, when it began. */
export const beginRound = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  leader: Leader<Req>,
  nowMs: number,
): Leader<Req> => {
  const round = leader.readRound + 1
  return {
    ...leader,
    readRound: round,
    leaseRounds:
      settings.lease === undefined
        ? leader.leaseRounds
        : [...leader.leaseRounds, { round, sentMs: nowMs }].slice(-settings.leaseRoundsMax),
  }
}

/**
 * Answers the reads whose round a majority (this master and non-amnesiac backups) has
 * acknowledged, once an entry of this epoch is committed (so the applied state holds every
 * write committed before the read arrived, by this master or any earlier one).
 */
export const confirmReads = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const held = state.leader
  if (state.role !== "master" || held === undefined || held.phase !== "ready") return state
  // Called on every ack: nothing waits on a round (no read, no lease round), nothing to do.
  if (held.reads.length === 0 && held.leaseRounds.length === 0) return state
  const rounds = Object.values(held.roundAcked).sort((a, b) => b - a)
  // The newest round held by a majority: the master plus `needed` backups.
  const needed = Math.floor(settings.groupSize / 2)
  const confirmed = needed === 0 ? held.readRound : (rounds[needed - 1] ?? 0)
  const leader = renewLease(settings, held, confirmed)
  const renewed = leader === held ? state : { ...state, leader }
  if (leader.reads.length === 0 || state.replica.commitSeq < leader.syncedSeq) return renewed
  const done = leader.reads.filter((read) => read.round <= confirmed)
  if (done.length === 0) return renewed
  for (const read of done)
    outputs.push(M.emit<Event<Res>>({ _tag: "ReadConfirmed", readId: read.readId }))
  return {
    ...state,
    leader: { ...leader, reads: leader.reads.filter((read) => read.round > confirmed) },
  }
}

/** A majority holds round `confirmed`: the lease runs from the start of the newest such round. */
const renewLease = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  leader: Leader<Req>,
  confirmed: number,
): Leader<Req> => {
  const lease = settings.lease
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

export const onRead = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  read: Read,
  nowMs: number,
): Step<S, Req, Res> => onReadMany(settings, state, [read.readId], nowMs)

/**
 * Reads that arrived together share one round, begun now (after all of them arrived): the
 * driver batches those that came while a step was being made.
 */
export const onReadMany = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  readIds: ReadonlyArray<number>,
  nowMs: number,
): Step<S, Req, Res> => {
  const outputs: Array<Output<Req, Res>> = []
  const leader = state.leader
  const rejectAll = (reason: "not-master" | "not-ready" | "queue-full", ids = readIds) =>
    ids.map((readId) => M.emit<Event<Res>>({ _tag: "ReadRejected", readId, reason }))
  if (state.role !== "master" || leader === undefined) {
    return M.result(state, rejectAll("not-master"))
  }
  if (leader.phase !== "ready") return M.result(state, rejectAll("not-ready"))
  if (nowMs < leader.leaseUntilMs && state.replica.commitSeq >= leader.syncedSeq) {
    // Within the lease: no other master can have answered anything since it was granted.
    return M.result(
      state,
      readIds.map((readId) => M.emit<Event<Res>>({ _tag: "ReadConfirmed", readId })),
    )
  }
  const room = Math.max(0, settings.queuedSubmitsMax - leader.reads.length)
  const taken = readIds.slice(0, room)
  outputs.push(...rejectAll("queue-full", readIds.slice(room)))
  if (taken.length === 0) return M.result(state, outputs)
  const begun = beginRound(settings, leader, nowMs)
  const round = begun.readRound
  const next: State<S, Req, Res> = {
    ...state,
    leader: {
      ...begun,
      reads: [...leader.reads, ...taken.map((readId) => ({ readId, round }))],
    },
  }
  replicateAll(settings, next, outputs)
  return M.result(confirmReads(settings, next, outputs), outputs)
}
