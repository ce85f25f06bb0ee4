/**
 * The election and the roles it moves a server between: a backup whose inquiry went
 * unanswered waits its staggered election delay (claims 7, 9–13, computed by `Delays` from
 * the measured delay matrix) and then declares itself master (claim 8); a server told of a
 * newer mastership acknowledges it (claims 16–17), and a master compares indices: it accepts
 * a smaller one (claim 22) and revokes a greater one (claim 23).
 */
import { Machine as M } from "@understudy/machine"
import * as Delays from "../Delays.ts"
import type * as Message from "../Message.ts"
import * as Rank from "../Rank.ts"
import { epochOf, masterIndexOf, termOf } from "./epoch.ts"
import { rejectQueue } from "./master.ts"
import type { Output, Settings, Step } from "./settings.ts"
import { type Event, electionTimer, inquiryTimer, type Leader, type State } from "./state.ts"
import { maybeFinishSync, sendSyncRequests } from "./sync.ts"

/** This server's row of the delay matrix: per peer, the largest of its recent round trips. */
export const ownRow = (state: State<unknown, unknown, unknown>): Record<string, number> => {
  const row: Record<string, number> = {}
  for (const peer in state.samples) {
    const samples = state.samples[peer]!
    if (samples.length > 0) row[peer] = Math.max(...samples)
  }
  return row
}

const explainFor = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  failed: string | undefined,
): Delays.Explanation =>
  Delays.explain({
    servers: settings.servers,
    self: state.self,
    failed,
    matrix: { ...state.rows, [state.self]: ownRow(state) },
    baseDelayMs: settings.baseDelayMs,
    floorDelayMs: settings.floorDelayMs,
    unknownDelayMs: settings.unknownDelayMs,
  })

/** Enters waiting and sets the election timer to the delay computed now (claims 7, 9). */
export const enterWaiting = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  failed: string | undefined,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const explanation = explainFor(settings, state, failed)
  outputs.push(
    M.cancelTimer(inquiryTimer),
    M.setTimer(electionTimer, explanation.totalMs),
    M.emit<Event<Res>>({
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

/** Follows `master` at `epoch` as a backup: acknowledge (claim 17) or accept (claim 22). */
export const follow = <S, Req, Res>(
  state: State<S, Req, Res>,
  master: string,
  epoch: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  if (state.role === "master") {
    rejectQueue(state.leader, outputs)
    outputs.push(M.emit<Event<Res>>({ _tag: "Demoted", master, epoch }))
  } else {
    outputs.push(M.emit<Event<Res>>({ _tag: "Acknowledged", master, epoch }))
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

/** Takes mastership at a new epoch (term above every term seen) and starts the sync. */
const becomeMaster = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  nowMs: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const lease = settings.lease
  const term = state.term + 1
  const epoch = epochOf(term, state.index)
  outputs.push(M.cancelTimer(electionTimer), M.cancelTimer(inquiryTimer))
  // Reads of an earlier epoch of ours: their rounds prove nothing about this one.
  for (const read of state.leader?.reads ?? []) {
    outputs.push(
      M.emit<Event<Res>>({ _tag: "ReadRejected", readId: read.readId, reason: "not-master" }),
    )
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
  const next: State<S, Req, Res> = {
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
const declare = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  nowMs: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const next = becomeMaster(settings, state, nowMs, outputs)
  outputs.push(
    M.broadcast<Message.Message<Req>>({ _tag: "Declare", epoch: next.epoch, index: next.index }),
    M.emit<Event<Res>>({ _tag: "BecameMaster", epoch: next.epoch }),
  )
  sendSyncRequests(settings, next, next.leader!, outputs)
  return maybeFinishSync(settings, next, nowMs, outputs)
}

/** Claim 23: stay master with a new epoch and send the second message with both indices. */
const revoke = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  revokedIndex: number,
  nowMs: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const next = becomeMaster(settings, state, nowMs, outputs)
  outputs.push(
    M.broadcast<Message.Message<Req>>({
      _tag: "Revoke",
      epoch: next.epoch,
      index: next.index,
      revokedIndex,
    }),
    M.emit<Event<Res>>({ _tag: "Revoked", revokedIndex, epoch: next.epoch }),
  )
  sendSyncRequests(settings, next, next.leader!, outputs)
  return maybeFinishSync(settings, next, nowMs, outputs)
}

/** Claims 4–5: the inquiry went unanswered: the master failed; wait (claim 7). */
export const onInquiryTimeout = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
): Step<S, Req, Res> => {
  if (state.role !== "backup" || state.inquiry === undefined) return M.result(state)
  const outputs: Array<Output<Req, Res>> = []
  return M.result(enterWaiting(settings, state, state.master, outputs), outputs)
}

/** The election delay ran out while still waiting: declare (claim 8). */
export const onElection = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  nowMs: number,
): Step<S, Req, Res> => {
  if (state.role !== "waiting") return M.result(state)
  const outputs: Array<Output<Req, Res>> = []
  return M.result(declare(settings, state, nowMs, outputs), outputs)
}

/**
 * A mastership at a newer epoch than ours is vouched for: by its master itself, or by a
 * server following it. Waiting or backup: acknowledge (claims 16–17). Master: compare
 * (claim 18): a smaller index than ours wins (accept, claim 22), else revoke (claim 23).
 */
export const onNewerMastership = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  epoch: number,
  nowMs: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const master = settings.byIndex.get(masterIndexOf(epoch))
  const withTerm = { ...state, term: Math.max(state.term, termOf(epoch)) }
  if (master === undefined || master.id === state.self || termOf(epoch) === 0) return withTerm
  if (state.role !== "master") return follow(withTerm, master.id, epoch, outputs)
  if (Rank.wins(state.index, master.index))
    return revoke(settings, withTerm, master.index, nowMs, outputs)
  return follow(withTerm, master.id, epoch, outputs)
}
