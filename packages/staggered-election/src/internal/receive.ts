/**
 * Every message is checked once before dispatch, as raft does: its sender must be a member at
 * its own index, within the size limits; an older epoch is ignored (event `Ignored`), except
 * a `Probe`, which is still answered so that a restarted or partitioned server learns the
 * current epoch; a newer one raises this server's term (if plausible) and, vouched for by its
 * master or a follower, makes it acknowledge that master, or a master compare indices.
 */
import { Machine as M } from "@understudy/machine"
import type * as Message from "../Message.ts"
import type * as Rank from "../Rank.ts"
import { onReplicate, onSyncRequest } from "./backup.ts"
import { onProbe, onProbeReply } from "./detection.ts"
import { follow, onNewerMastership } from "./election.ts"
import { masterIndexOf, reachableTerm, termOf } from "./epoch.ts"
import { onAck } from "./master.ts"
import { onSnapshotAck } from "./replicate.ts"
import type { Output, Settings, Step } from "./settings.ts"
import { onSnapshot } from "./snapshot.ts"
import type { Event, State } from "./state.ts"
import { onSyncReply } from "./sync.ts"

/** Whether a message shows that some server held a non-empty log. */
const reportsHistory = <Req>(message: Message.Message<Req>): boolean => {
  switch (message._tag) {
    case "Probe":
    case "ProbeReply":
      return message.history === true
    case "Replicate":
      return message.prevSeq > 0 || message.entries.length > 0 || message.commitSeq > 0
    case "Ack":
      return message.lastSeq > 0
    case "SyncReply":
      return message.history === true || message.lastSeq > 0 || (message.commitSeq ?? 0) > 0
    case "Snapshot":
      return message.seq > 0
    default:
      return false
  }
}

/** Whether a message speaks for the mastership of its epoch (a probe only if it follows one). */
const vouches = <Req>(message: Message.Message<Req>, from: Rank.Ranked): boolean => {
  switch (message._tag) {
    case "Probe":
    case "ProbeReply":
      return message.master !== null || from.index === masterIndexOf(message.epoch)
    default:
      return true
  }
}

/**
 * 0 (no master yet), or an epoch of a configured server whose term this server could have
 * reached (`reachableTerm`): an absurd one is dropped, never adopted.
 */
const plausibleEpoch = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  epoch: number,
  nowMs: number,
): boolean => {
  if (epoch === 0) return true
  const index = masterIndexOf(epoch)
  return (
    Number.isSafeInteger(epoch) &&
    termOf(epoch) <= reachableTerm(state.term, state.termRaisedMs, nowMs) &&
    index >= 1 &&
    index <= settings.byId.size
  )
}

const ignored = <S, Req, Res>(
  state: State<S, Req, Res>,
  from: string,
  reason: "stale-epoch" | "unknown-sender" | "wrong-index" | "too-large" | "bad-epoch",
): Step<S, Req, Res> => M.result(state, [M.emit<Event<Res>>({ _tag: "Ignored", from, reason })])

export const onReceive = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  from: string,
  message: Message.Message<Req>,
  nowMs: number,
): Step<S, Req, Res> => {
  const sender = settings.byId.get(from)
  if (sender === undefined || from === state.self) return ignored(state, from, "unknown-sender")
  if (message.index !== sender.index) return ignored(state, from, "wrong-index")
  if (
    (message._tag === "Replicate" || message._tag === "SyncReply") &&
    message.entries.length > settings.entriesPerMessageMax
  ) {
    return ignored(state, from, "too-large")
  }
  if (message._tag === "Snapshot" && message.data.length > settings.chunkChars) {
    return ignored(state, from, "too-large")
  }
  const outputs: Array<Output<Req, Res>> = []
  // Whether the group has history is a fact about the past: even a stale message tells it.
  let next = !state.history && reportsHistory(message) ? { ...state, history: true } : state
  if (next.amnesiac && message._tag === "ProbeReply" && message.incarnation === next.incarnation) {
    // A fresh reply: what its sender knows of epochs (see `State.heard`, `State.heardAll`).
    const all = Math.max(next.heardAll[from] ?? 0, message.epoch)
    next = { ...next, heardAll: { ...next.heardAll, [from]: all } }
    if (message.amnesiac === false) {
      const heard = Math.max(next.heard[from] ?? 0, message.epoch)
      next = { ...next, heard: { ...next.heard, [from]: heard } }
    }
  }
  if (message.epoch < state.epoch) {
    // A stale probe is still answered, so its sender learns the current epoch; it
    // changes nothing here.
    if (message._tag === "Probe") {
      onProbe(next, from, message, outputs)
      return M.result(next, outputs)
    }
    return next === state
      ? ignored(state, from, "stale-epoch")
      : M.result(next, [M.emit<Event<Res>>({ _tag: "Ignored", from, reason: "stale-epoch" })])
  }
  if (message.epoch > state.epoch) {
    // A newer epoch raises this server's term: it must name a member, within reach.
    if (!plausibleEpoch(settings, state, message.epoch, nowMs))
      return ignored(state, from, "bad-epoch")
    if (vouches(message, sender))
      next = onNewerMastership(settings, next, message.epoch, nowMs, outputs)
    else next = { ...next, term: Math.max(next.term, termOf(message.epoch)) }
  } else if (
    next.role === "waiting" &&
    next.failed === from &&
    sender.index === masterIndexOf(message.epoch) &&
    (message._tag !== "ProbeReply" || message.role === "master")
  ) {
    // The master we gave up on answers at its epoch: it was only slow.
    outputs.push(M.emit<Event<Res>>({ _tag: "MasterRecovered", master: from }))
    next = follow(next, from, message.epoch, outputs)
  }
  // Handled at our (possibly just adopted) epoch; a message still older than ours after
  // a revoke is answered by the revoke itself.
  if (message.epoch !== next.epoch && message._tag !== "Probe" && message._tag !== "ProbeReply") {
    return M.result(next, outputs)
  }
  return M.result(dispatch(settings, next, from, message, nowMs, outputs), outputs)
}

/** A message at this server's epoch, to its handler. */
const dispatch = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  from: string,
  message: Message.Message<Req>,
  nowMs: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  switch (message._tag) {
    case "Probe":
      return onProbe(state, from, message, outputs)
    case "ProbeReply":
      return onProbeReply(settings, state, from, message, nowMs, outputs)
    case "Declare":
    case "Revoke":
      // Already handled by the epoch check: acknowledged, accepted or revoked.
      return state
    case "Replicate":
      return onReplicate(settings, state, from, message, nowMs, outputs)
    case "Ack":
      return onAck(settings, state, from, message, nowMs, outputs)
    case "SyncRequest":
      return onSyncRequest(settings, state, from, message, nowMs, outputs)
    case "SyncReply":
      return onSyncReply(settings, state, from, message, nowMs, outputs)
    case "Snapshot":
      return onSnapshot(settings, state, from, message, nowMs, outputs)
    case "SnapshotAck":
      return onSnapshotAck(settings, state, from, message, outputs)
  }
}
