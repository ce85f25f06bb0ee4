/**
 * The sending side of replication: the entries a backup lacks, or, once they are compacted,
 * the snapshot in chunks (also what a backup sends a syncing master that lacks what it
 * compacted).
 */
import { Machine as M } from "@understudy/machine"
import type * as Message from "../Message.ts"
import * as Replication from "../Replication.ts"
import { type Output, peersOf, type Settings } from "./settings.ts"
import type { State } from "./state.ts"

const encodeSnapshot = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  snapshot: Replication.Snapshot<S, Res>,
): string => {
  let data = settings.encoded.get(snapshot)
  if (data === undefined) {
    data = settings.snapshots!.encode(snapshot)
    settings.encoded.set(snapshot, data)
  }
  return data
}

/** One chunk of this server's snapshot, from `offset`. */
export const sendSnapshot = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  peer: string,
  offset: number,
  outputs: Array<Output<Req, Res>>,
) => {
  const { chunkChars } = settings
  const base = state.replica.base
  const data = encodeSnapshot(settings, base)
  const from = Math.min(offset, data.length)
  outputs.push(
    M.send<Message.Message<Req>>(peer, {
      _tag: "Snapshot",
      epoch: state.epoch,
      index: state.index,
      seq: base.seq,
      snapshotEpoch: base.epoch,
      offset: from,
      data: data.slice(from, from + chunkChars),
      done: from + chunkChars >= data.length,
    }),
  )
}

/**
 * Sends the next entries a backup lacks. A syncing master sends only its committed prefix
 * (so backups apply what is already decided) and never catches anyone up: its own log may
 * still lack committed entries.
 */
export const replicateTo = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  peer: string,
  outputs: Array<Output<Req, Res>>,
) => {
  const { entriesPerMessageMax } = settings
  const leader = state.leader!
  const replica = state.replica
  const syncing = leader.phase === "syncing"
  const upTo = syncing ? replica.commitSeq : Replication.lastSeq(replica)
  const nextSeq = Math.min(leader.nextSeq[peer] ?? replica.commitSeq + 1, upTo + 1)
  if (nextSeq <= replica.base.seq) {
    // Compacted: the backup gets the snapshot, from where it said it holds it.
    const sent = leader.snapshotOffset[peer]
    sendSnapshot(settings, state, peer, sent?.seq === replica.base.seq ? sent.offset : 0, outputs)
    return
  }
  const prevSeq = nextSeq - 1
  const entries = Replication.entriesFrom(
    replica,
    nextSeq,
    Math.min(entriesPerMessageMax, upTo - prevSeq),
  )
  outputs.push(
    M.send<Message.Message<Req>>(peer, {
      _tag: "Replicate",
      epoch: state.epoch,
      index: state.index,
      prevSeq,
      prevEpoch: Replication.epochAt(replica, prevSeq) ?? 0,
      entries,
      commitSeq: replica.commitSeq,
      ...(syncing || leader.incarnations[peer] === undefined
        ? {}
        : {
            catchUp: leader.incarnations[peer],
            safeSeq: Math.max(leader.syncedSeq, replica.commitSeq),
            // Until its first commit, a cold start's backups are all amnesiac: none could
            // have heard of the group from a majority of non-amnesiacs.
            ...(leader.cold && replica.commitSeq < leader.syncedSeq ? { cold: true } : {}),
          }),
      ...(leader.readRound > 0 ? { round: leader.readRound } : {}),
    }),
  )
}

export const replicateAll = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  outputs: Array<Output<Req, Res>>,
) => {
  for (const peer of peersOf(settings, state)) replicateTo(settings, state, peer.id, outputs)
}

/** The receiver of this server's snapshot holds it through `offset`: send the next chunk. */
export const onSnapshotAck = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  from: string,
  message: Message.SnapshotAck,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const base = state.replica.base
  if (settings.snapshots === undefined || message.seq !== base.seq || base.seq === 0) return state
  const leader = state.leader
  if (state.role === "master" && leader !== undefined) {
    // Only news: the offset last heard of again comes from a duplicate, and the chunk
    // after it is already on its way (sending it again would start a second stream). A
    // lower one means the backup lost what it held (it restarted): start over from there.
    const known = leader.snapshotOffset[from]
    if (known?.seq === message.seq && message.offset === known.offset) return state
    if ((leader.nextSeq[from] ?? 0) > base.seq) return state
    sendSnapshot(settings, state, from, message.offset, outputs)
    return {
      ...state,
      leader: {
        ...leader,
        snapshotOffset: {
          ...leader.snapshotOffset,
          [from]: { seq: message.seq, offset: message.offset },
        },
      },
    }
  }
  if (state.role === "backup" && state.master === from) {
    sendSnapshot(settings, state, from, message.offset, outputs)
  }
  return state
}
