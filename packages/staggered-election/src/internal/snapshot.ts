/**
 * Receiving a snapshot, in chunks: a backup from its master (which compacted past it), or a
 * syncing master from a backup (which compacted past the master's commit point).
 */
import { Machine as M } from "@understudy/machine"
import { Result } from "effect"
import type * as Message from "../Message.ts"
import * as Replication from "../Replication.ts"
import { applyCommitted } from "./apply.ts"
import type { Output, Settings } from "./settings.ts"
import type { Event, State } from "./state.ts"
import { maybeFinishSync, restartSync } from "./sync.ts"

/**
 * A chunk of a snapshot. The last chunk is decoded and installed; a master then syncs again
 * after it, as when a sync reply shows it committed entries, a backup acknowledges up to it.
 */
export const onSnapshot = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  from: string,
  message: Message.Snapshot,
  nowMs: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const snapshots = settings.snapshots
  const leader = state.leader
  const fromMaster = state.role === "backup" && state.master === from
  const toSyncing = state.role === "master" && leader?.phase === "syncing"
  if (snapshots === undefined || !(fromMaster || toSyncing)) return state
  const ack = (lastSeq: number) =>
    M.send<Message.Message<Req>>(from, {
      _tag: "Ack",
      epoch: state.epoch,
      index: state.index,
      ok: true,
      lastSeq,
      amnesiac: state.amnesiac,
      incarnation: state.incarnation,
    })
  if (message.seq <= state.replica.appliedSeq) {
    // Already applied through it (its acknowledgement was lost): say so again.
    if (fromMaster) outputs.push(ack(message.seq))
    return state
  }
  const held = state.receiving
  const same =
    held !== undefined &&
    held.from === from &&
    held.seq === message.seq &&
    held.epoch === message.snapshotEpoch
  // A chunk already held: a duplicate, or the master sending again from what it last heard
  // (an acknowledgement lost). Tell the master how far this server holds it (it ignores an
  // offset it already knew); a syncing master asks again on its next detection tick.
  if (same && message.offset < held.data.length) {
    if (fromMaster) {
      outputs.push(
        M.send<Message.Message<Req>>(from, {
          _tag: "SnapshotAck",
          epoch: state.epoch,
          index: state.index,
          seq: message.seq,
          offset: held.data.length,
        }),
      )
    }
    return state
  }
  // One transfer at a time (a syncing master may be offered several): another sender's
  // waits until this one is idle past the inquiry time-out (its sender died).
  if (
    !same &&
    held !== undefined &&
    held.from !== from &&
    nowMs - held.atMs <= settings.inquiryTimeoutMs
  )
    return state
  const continues = same && held.data.length === message.offset
  if (message.offset !== 0 && !continues) {
    // A chunk past a lost one: say where to go on from.
    const offset = same ? held.data.length : 0
    outputs.push(
      M.send<Message.Message<Req>>(from, {
        _tag: "SnapshotAck",
        epoch: state.epoch,
        index: state.index,
        seq: message.seq,
        offset,
      }),
    )
    return state
  }
  const data = (continues ? held.data : "") + message.data
  if (!message.done) {
    outputs.push(
      M.send<Message.Message<Req>>(from, {
        _tag: "SnapshotAck",
        epoch: state.epoch,
        index: state.index,
        seq: message.seq,
        offset: data.length,
      }),
    )
    return {
      ...state,
      receiving: { from, seq: message.seq, epoch: message.snapshotEpoch, data, atMs: nowMs },
    }
  }
  const decoded = snapshots.decode(data)
  if (
    Result.isFailure(decoded) ||
    decoded.success.seq !== message.seq ||
    decoded.success.epoch !== message.snapshotEpoch
  ) {
    outputs.push(M.emit<Event<Res>>({ _tag: "Ignored", from, reason: "bad-snapshot" }))
    return { ...state, receiving: undefined }
  }
  const replica = Replication.install(state.replica, decoded.success)
  let next: State<S, Req, Res> = { ...state, receiving: undefined }
  if (replica !== state.replica) {
    outputs.push(M.emit<Event<Res>>({ _tag: "SnapshotInstalled", from, seq: message.seq }))
    next = applyCommitted(settings, { ...next, replica }, outputs)
  }
  if (fromMaster) {
    outputs.push(ack(message.seq))
    return next
  }
  if (replica === state.replica || leader === undefined) return next
  return maybeFinishSync(settings, restartSync(settings, next, leader, outputs), nowMs, outputs)
}
