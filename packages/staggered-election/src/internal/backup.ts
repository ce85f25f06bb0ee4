/**
 * A backup's side of replication: it accepts its master's entries and acknowledges them
 * (ending its amnesia once a master that heard of this incarnation caught it up), and
 * answers a new master's sync with what its log holds after that master's commit point.
 */
import { Machine as M } from "@understudy/machine"
import type * as Message from "../Message.ts"
import * as Replication from "../Replication.ts"
import { applyCommitted } from "./apply.ts"
import { sendSnapshot } from "./replicate.ts"
import type { Output, Settings } from "./settings.ts"
import type { State } from "./state.ts"

export const onReplicate = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  from: string,
  message: Message.Replicate<Req>,
  nowMs: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const { groupSize } = settings
  if (state.role !== "backup" || state.master !== from) return state
  const accepted = Replication.accept(
    state.replica,
    message.prevSeq,
    message.prevEpoch,
    message.entries,
    message.commitSeq,
    settings.logEntriesMax,
  )
  // Caught up by a master that heard of this incarnation (an older message, sent before a
  // restart, must not clear it): the log now holds every committed entry.
  const heard = Object.values(state.heard)
  const heardAll = Object.values(state.heardAll)
  const caughtUp =
    state.amnesiac &&
    accepted.ok &&
    message.catchUp === state.incarnation &&
    message.safeSeq !== undefined &&
    accepted.lastSeq >= Math.max(message.safeSeq, message.commitSeq) &&
    (message.cold === true ||
      (heard.length * 2 > groupSize && heard.every((epoch) => epoch <= state.epoch)) ||
      (heardAll.length === groupSize - 1 && heardAll.every((epoch) => epoch <= state.epoch)))
  const amnesiac = state.amnesiac && !caughtUp
  outputs.push(
    M.send<Message.Message<Req>>(from, {
      _tag: "Ack",
      epoch: state.epoch,
      index: state.index,
      ok: accepted.ok,
      lastSeq: accepted.lastSeq,
      amnesiac,
      incarnation: state.incarnation,
      ...(message.round === undefined ? {} : { round: message.round }),
    }),
  )
  return applyCommitted(
    settings,
    {
      ...state,
      replica: accepted.replica,
      amnesiac,
      heard: amnesiac ? state.heard : {},
      heardAll: amnesiac ? state.heardAll : {},
      // Acknowledging a round may grant the master a lease (see `Config.lease`).
      grantedMs: message.round === undefined ? state.grantedMs : nowMs,
    },
    outputs,
  )
}

export const onSyncRequest = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  from: string,
  message: Message.SyncRequest,
  nowMs: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  if (state.role !== "backup" || state.master !== from) return state
  if (message.fromSeq <= state.replica.base.seq) {
    // Compacted past the master's commit point: what it lacks is in the snapshot.
    const offset =
      message.snapshotSeq === state.replica.base.seq ? (message.snapshotOffset ?? 0) : 0
    sendSnapshot(settings, state, from, offset, outputs)
    return state
  }
  const entries = Replication.entriesFrom(
    state.replica,
    message.fromSeq,
    settings.entriesPerMessageMax,
  )
  const last = Replication.lastSeq(state.replica)
  outputs.push(
    M.send<Message.Message<Req>>(from, {
      _tag: "SyncReply",
      epoch: state.epoch,
      index: state.index,
      fromSeq: message.fromSeq,
      entries,
      lastSeq: last,
      lastEpoch: Replication.lastEpoch(state.replica),
      complete: message.fromSeq - 1 + entries.length >= last,
      amnesiac: state.amnesiac,
      history: state.history,
      incarnation: state.incarnation,
      commitSeq: state.replica.commitSeq,
      grantedAgoMs: Math.max(0, nowMs - state.grantedMs),
    }),
  )
  return state
}
