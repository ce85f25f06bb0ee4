/**
 * A new master's sync, before it serves: it asks every backup for its log after its own
 * commit point, adopts the log a majority makes safe (`Replication.chooseSync`, pulling the
 * rest of it when one reply did not hold it all), waits out any lease a former master may
 * hold, commits a no-op of its epoch and then serves the requests it queued meanwhile.
 */
import { Machine as M } from "@understudy/machine"
import type * as Message from "../Message.ts"
import * as Replication from "../Replication.ts"
import { applyCommitted } from "./apply.ts"
import { advanceCommit, submitReady } from "./master.ts"
import { replicateAll } from "./replicate.ts"
import { type Output, peersOf, type Settings, type Step } from "./settings.ts"
import { type Event, type Leader, leaseTimer, type State } from "./state.ts"

export const sendSyncRequests = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  leader: Leader<Req>,
  outputs: Array<Output<Req, Res>>,
) => {
  const request: Message.SyncRequest = {
    _tag: "SyncRequest",
    epoch: state.epoch,
    index: state.index,
    fromSeq: leader.fromSeq,
  }
  if (leader.pulling !== undefined) {
    const got = leader.replies[leader.pulling]!.entries.length
    outputs.push(
      M.send<Message.Message<Req>>(leader.pulling, {
        ...request,
        fromSeq: leader.fromSeq + got,
      }),
    )
    return
  }
  const receiving = state.receiving
  for (const peer of peersOf(settings, state)) {
    if (leader.replies[peer.id] !== undefined) continue
    outputs.push(
      M.send<Message.Message<Req>>(
        peer.id,
        receiving?.from === peer.id
          ? { ...request, snapshotSeq: receiving.seq, snapshotOffset: receiving.data.length }
          : request,
      ),
    )
  }
}

/**
 * A new master's sync starts over after its committed prefix moved (entries or a snapshot
 * it caught up with): from the next unknown seq, with every reply asked for again.
 */
export const restartSync = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  leader: Leader<Req>,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const restarted: Leader<Req> = {
    ...leader,
    fromSeq: state.replica.commitSeq + 1,
    replies: {},
    pulling: undefined,
  }
  const next = { ...state, leader: restarted }
  sendSyncRequests(settings, next, restarted, outputs)
  return next
}

/** Once a majority (the master included) has answered the sync, adopt, then serve. */
export const maybeFinishSync = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  nowMs: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const { groupSize, logEntriesMax } = settings
  const leader = state.leader
  if (state.role !== "master" || leader === undefined || leader.phase !== "syncing") return state
  const own: Replication.SyncSummary<Req> = {
    lastSeq: Replication.lastSeq(state.replica),
    lastEpoch: Replication.lastEpoch(state.replica),
    entries: Replication.entriesFrom(state.replica, leader.fromSeq, logEntriesMax),
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
    sendSyncRequests(settings, next, pulling, outputs)
    return next
  }
  if (nowMs < leader.leaseClearMs) {
    // A lease a former master may still hold: answering anything now (a write, a read)
    // could let it answer a read from older state afterwards. Finish once it ran out.
    outputs.push(
      M.setTimer(leaseTimer, leader.leaseClearMs - nowMs),
      M.emit<Event<Res>>({ _tag: "AwaitingLease", untilMs: leader.leaseClearMs }),
    )
    return state
  }
  let replica =
    from === state.self
      ? state.replica
      : Replication.adopt(state.replica, leader.fromSeq, summary.entries, logEntriesMax)
  // A no-op of our epoch: what we adopted commits with it (Raft's rule for earlier terms).
  if (replica.log.length < logEntriesMax) {
    replica = Replication.append(replica, {
      _tag: "Noop",
      seq: Replication.lastSeq(replica) + 1,
      epoch: state.epoch,
    })
  }
  const nextSeq: Record<string, number> = {}
  for (const peer of peersOf(settings, state)) nextSeq[peer.id] = leader.fromSeq
  // Synced: this log holds every committed entry, so this server is no longer amnesiac.
  let next: State<S, Req, Res> = {
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
    M.emit<Event<Res>>({
      _tag: "Synced",
      epoch: state.epoch,
      lastSeq: Replication.lastSeq(replica),
    }),
  )
  replicateAll(settings, next, outputs)
  next = advanceCommit(settings, next, nowMs, outputs)
  for (const submit of leader.queue) {
    if (next.role !== "master") break
    next = submitReady(settings, next, submit, nowMs, outputs)
  }
  return next
}

/** A new master's wait for former leases is over: finish the sync if it still can. */
export const onLeaseWaited = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  nowMs: number,
): Step<S, Req, Res> => {
  const outputs: Array<Output<Req, Res>> = []
  return M.result(maybeFinishSync(settings, state, nowMs, outputs), outputs)
}

/**
 * A sync reply shows committed entries this master did not know were: they are decided, so
 * it takes them and applies them (whether or not its sync can finish, say with a majority
 * amnesiac or down), then restarts its sync after them.
 */
const learnCommitted = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  leader: Leader<Req>,
  message: Message.SyncReply<Req>,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> | undefined => {
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
    settings.logEntriesMax,
  )
  if (!accepted.ok || accepted.replica.commitSeq <= state.replica.commitSeq) return undefined
  const applied = applyCommitted(settings, { ...state, replica: accepted.replica }, outputs)
  return restartSync(settings, applied, leader, outputs)
}

export const onSyncReply = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  from: string,
  message: Message.SyncReply<Req>,
  nowMs: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const lease = settings.lease
  const syncing = state.leader
  if (state.role !== "master" || syncing === undefined || syncing.phase !== "syncing") return state
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
  const learned = learnCommitted(settings, noted, leader, message, outputs)
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
  return maybeFinishSync(settings, next, nowMs, outputs)
}
