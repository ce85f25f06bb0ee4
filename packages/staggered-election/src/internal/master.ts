/**
 * The master once synced: clients' requests appended and replicated (group commit for a
 * batch), backups' acknowledgements counted, and the commit point advanced (`answerWhen`).
 */
import { Machine as M } from "@understudy/machine"
import type * as Message from "../Message.ts"
import * as Replication from "../Replication.ts"
import { applyCommitted } from "./apply.ts"
import { confirmReads } from "./reads.ts"
import { replicateAll, replicateTo } from "./replicate.ts"
import { type Output, peersOf, type Settings, type Step } from "./settings.ts"
import type { Event, Leader, State, Submit, SubmitMany } from "./state.ts"

/** A master that stops being one rejects what it queued: reads and requests alike. */
export const rejectQueue = <Req, Res>(
  leader: Leader<Req> | undefined,
  outputs: Array<Output<Req, Res>>,
) => {
  for (const read of leader?.reads ?? []) {
    outputs.push(
      M.emit<Event<Res>>({ _tag: "ReadRejected", readId: read.readId, reason: "not-master" }),
    )
  }
  for (const submit of leader?.queue ?? []) {
    outputs.push(
      M.emit<Event<Res>>({
        _tag: "Rejected",
        clientId: submit.clientId,
        requestId: submit.requestId,
        reason: "not-master",
      }),
    )
  }
}

export const advanceCommit = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  nowMs: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const { config, inquiryTimeoutMs, groupSize } = settings
  const leader = state.leader
  if (state.role !== "master" || leader === undefined || leader.phase !== "ready") return state
  const live = peersOf(settings, state)
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
  return applyCommitted(settings, { ...state, replica: { ...state.replica, commitSeq } }, outputs)
}

export const submitReady = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  submit: Submit<Req>,
  nowMs: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const reject = (reason: "log-full" | "stale-request") => {
    outputs.push(
      M.emit<Event<Res>>({
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
        M.emit<Event<Res>>({
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
  if (state.replica.log.length >= settings.logEntriesMax) return reject("log-full")
  const replica = Replication.append(state.replica, {
    _tag: "Request",
    seq: Replication.lastSeq(state.replica) + 1,
    epoch: state.epoch,
    clientId: submit.clientId,
    requestId: submit.requestId,
    request: submit.request,
  })
  const next = { ...state, replica }
  if (settings.batching !== undefined) {
    // One replication and one commit check for the whole batch (`onSubmitMany`).
    settings.batching.appended = true
    return next
  }
  replicateAll(settings, next, outputs)
  return advanceCommit(settings, next, nowMs, outputs)
}

export const onSubmitMany = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  many: SubmitMany<Req>,
  nowMs: number,
): Step<S, Req, Res> => {
  const outputs: Array<Output<Req, Res>> = []
  let next = state
  const batch = { appended: false }
  settings.batching = batch
  try {
    for (const submit of many.submits) {
      const result = onSubmit(settings, next, submit, nowMs)
      next = result.state
      outputs.push(...result.outputs)
    }
  } finally {
    settings.batching = undefined
  }
  if (batch.appended && next.role === "master" && next.leader?.phase === "ready") {
    replicateAll(settings, next, outputs)
    next = advanceCommit(settings, next, nowMs, outputs)
  }
  return M.result(next, outputs)
}

export const onSubmit = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  submit: Submit<Req>,
  nowMs: number,
): Step<S, Req, Res> => {
  const outputs: Array<Output<Req, Res>> = []
  const leader = state.leader
  if (state.role !== "master" || leader === undefined) {
    outputs.push(
      M.emit<Event<Res>>({
        _tag: "Rejected",
        clientId: submit.clientId,
        requestId: submit.requestId,
        reason: "not-master",
      }),
    )
    return M.result(state, outputs)
  }
  if (leader.phase === "syncing") {
    if (leader.queue.length >= settings.queuedSubmitsMax) {
      outputs.push(
        M.emit<Event<Res>>({
          _tag: "Rejected",
          clientId: submit.clientId,
          requestId: submit.requestId,
          reason: "queue-full",
        }),
      )
      return M.result(state, outputs)
    }
    return M.result({ ...state, leader: { ...leader, queue: [...leader.queue, submit] } }, outputs)
  }
  const next = submitReady(settings, state, submit, nowMs, outputs)
  return M.result(next, outputs)
}

export const onAck = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  from: string,
  message: Message.Ack,
  nowMs: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
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
  let next: State<S, Req, Res>
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
    if (matched < last && (leader.nextSeq[from] ?? 0) <= matched)
      replicateTo(settings, next, from, outputs)
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
    if (moved) replicateTo(settings, next, from, outputs)
  }
  // The first ack of an amnesiac incarnation: the next Replicate names it, to catch it up.
  if (!syncing && amnesiac && knownIncarnation !== incarnation)
    replicateTo(settings, next, from, outputs)
  return confirmReads(settings, advanceCommit(settings, next, nowMs, outputs), outputs)
}
