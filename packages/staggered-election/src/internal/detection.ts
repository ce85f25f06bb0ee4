/**
 * Failure detection: on the equally periodic detection timer every server probes every peer
 * (claims 24–25), which measures the round trips the election delays are computed from and
 * spreads each server's row of the delay matrix; a backup's probe of its master is its
 * inquiry (claims 4–5). A master's tick is also its heartbeat: it replicates (and, with
 * leases, begins a round), or, while syncing, asks again for the replies it lacks.
 */
import { Machine as M } from "@understudy/machine"
import type * as Message from "../Message.ts"
import { ownRow } from "./election.ts"
import { advanceCommit } from "./master.ts"
import { beginRound } from "./reads.ts"
import { replicateAll, replicateTo } from "./replicate.ts"
import { type Output, peersOf, type Settings, type Step } from "./settings.ts"
import { detectTimer, inquiryTimer, type State } from "./state.ts"
import { sendSyncRequests } from "./sync.ts"

export const probeAll = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  nowMs: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const seq = state.probeSeq + 1
  const row = ownRow(state)
  const outstanding: Record<string, { seq: number; sentMs: number }> = {}
  for (const peer of peersOf(settings, state)) {
    outputs.push(
      M.send<Message.Message<Req>>(peer.id, {
        _tag: "Probe",
        epoch: state.epoch,
        index: state.index,
        seq,
        master: state.master ?? null,
        row,
        history: state.history,
        incarnation: state.incarnation,
      }),
    )
    outstanding[peer.id] = { seq, sentMs: nowMs }
  }
  return { ...state, probeSeq: seq, outstanding }
}

/** Claims 24–25: every period, probe every peer; to the master it is the inquiry (4–5). */
export const onDetect = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  nowMs: number,
): Step<S, Req, Res> => {
  const outputs: Array<Output<Req, Res>> = []
  let next = probeAll(settings, state, nowMs, outputs)
  outputs.push(M.setTimer(detectTimer, settings.detectionPeriodMs))
  if (next.role === "backup" && next.master !== undefined && next.inquiry === undefined) {
    next = { ...next, inquiry: { seq: next.probeSeq } }
    outputs.push(M.setTimer(inquiryTimer, settings.inquiryTimeoutMs))
  }
  const leader = next.leader
  if (next.role === "master" && leader !== undefined) {
    if (leader.phase === "syncing") {
      sendSyncRequests(settings, next, leader, outputs)
      // Backups get what is already committed meanwhile, so they apply it even if this
      // sync cannot finish (a majority amnesiac or down).
      for (const peer of peersOf(settings, next)) {
        if (
          leader.pulling !== peer.id &&
          (leader.matchSeq[peer.id] ?? 0) < next.replica.commitSeq
        ) {
          replicateTo(settings, next, peer.id, outputs)
        }
      }
    } else {
      // With leases, every heartbeat is a round: a majority's acks renew the lease.
      if (settings.lease !== undefined)
        next = { ...next, leader: beginRound(settings, leader, nowMs) }
      replicateAll(settings, next, outputs)
    }
    next = advanceCommit(settings, next, nowMs, outputs)
  }
  return M.result(next, outputs)
}

/** A probe is answered with what this server knows (epoch, master, role); its row is kept. */
export const onProbe = <S, Req, Res>(
  state: State<S, Req, Res>,
  from: string,
  message: Message.Probe,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  outputs.push(
    M.send<Message.Message<Req>>(from, {
      _tag: "ProbeReply",
      epoch: state.epoch,
      index: state.index,
      seq: message.seq,
      master: state.master ?? null,
      role: state.role,
      history: state.history,
      amnesiac: state.amnesiac,
      ...(message.incarnation === undefined ? {} : { incarnation: message.incarnation }),
    }),
  )
  return { ...state, rows: { ...state.rows, [from]: message.row } }
}

/** A reply times its probe's round trip; from the master, it answers the inquiry. */
export const onProbeReply = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  from: string,
  message: Message.ProbeReply,
  nowMs: number,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  let next = state
  const sent = state.outstanding[from]
  if (sent !== undefined && sent.seq === message.seq) {
    const samples = [...(state.samples[from] ?? []), nowMs - sent.sentMs].slice(
      -settings.delayWindow,
    )
    const { [from]: _, ...outstanding } = state.outstanding
    next = { ...next, samples: { ...state.samples, [from]: samples }, outstanding }
  }
  if (
    next.role === "backup" &&
    next.master === from &&
    next.inquiry !== undefined &&
    message.seq >= next.inquiry.seq
  ) {
    outputs.push(M.cancelTimer(inquiryTimer))
    next = { ...next, inquiry: undefined }
  }
  return next
}
