/**
 * The association machine: SACK processing (§6.2.1, §7.2).
 */
import type * as Chunk from "../../Chunk.ts"
import * as Congestion from "../../Congestion.ts"
import * as Rto from "../../Rto.ts"
import { add32, diff32, gt32, gte32, lt32, lte32 } from "../../Serial.ts"
import { pathAddress } from "./bundling.ts"
import {
  addressOf,
  type Ctx,
  cancelTimer,
  dataPath,
  emit,
  pmdcs,
  rtoConfig,
  setTimer,
  t3Name,
} from "./context.ts"
import { checkShutdownProgress, close, sendAbort } from "./shutdown.ts"
import type { Outstanding, State } from "./state.ts"

export const sendsData = (st: State): boolean =>
  st.name === "Established" || st.name === "ShutdownPending" || st.name === "ShutdownReceived"

/** Acknowledges one outstanding chunk (cumulative or gap); returns its bytes if newly acked. */
const ackChunk = (ctx: Ctx, st: State, chunk: Outstanding, acked: Array<number>): void => {
  if (chunk.acked) return
  chunk.acked = true
  const path = st.paths[chunk.path]
  const length = chunk.data.length
  if (chunk.inFlight) {
    chunk.inFlight = false
    st.flightBytes -= length
    if (path !== undefined) path.flightBytes -= length
  }
  if (chunk.retransmit) {
    chunk.retransmit = false
    st.retransmitCount--
  }
  if (path !== undefined) {
    acked[chunk.path] = (acked[chunk.path] ?? 0) + length
    if (path.rttPending && path.rttTsn === chunk.tsn) {
      path.rttPending = false
      if (chunk.transmissions === 1) {
        path.rto = Rto.measured(
          path.rto,
          Math.max(0, ctx.now - path.rttSentMs),
          rtoConfig(st.config),
        )
      }
    }
    // §8.3: an acknowledgement clears the error counter of the destination it was sent to.
    path.errorCount = 0
    if (!path.active) {
      path.active = true
      emit(ctx, { _tag: "PathChange", host: path.host, state: "Available" })
    }
  }
}

export const onSack = (ctx: Ctx, st: State, sack: Chunk.Sack): void => {
  if (!sendsData(st) && st.name !== "ShutdownSent") {
    emit(ctx, { _tag: "Dropped", reason: "SackNotExpected" })
    return
  }
  processSack(
    ctx,
    st,
    sack.cumulativeTsnAck,
    sack.gapAckBlocks,
    sack.advertisedReceiverWindowCredit,
  )
}

export const processSack = (
  ctx: Ctx,
  st: State,
  cum: number,
  gaps: ReadonlyArray<Chunk.GapAckBlock>,
  rwnd: number | undefined,
): void => {
  if (lt32(cum, st.lastCumAck)) {
    emit(ctx, { _tag: "Dropped", reason: "SackOutOfOrder" })
    return
  }
  if (gte32(cum, st.nextTsn)) {
    if (!st.resynchronizing) {
      // Acknowledges a TSN never sent: a protocol violation (§11.4: the association SHOULD
      // be aborted; an attacker guessing the tag could otherwise make us drop data).
      sendAbort(
        ctx,
        st,
        pathAddress(st, st.lastDataPath, addressOf(st.paths[dataPath(st)]!)),
        st.peerTag,
        [
          {
            _tag: "ProtocolViolation",
            information: new TextEncoder().encode(`SACK acknowledges TSN ${cum}, never sent`),
          },
        ],
      )
      emit(ctx, { _tag: "CommLost", reason: "ProtocolViolation" })
      close(ctx, st, "Closed")
      return
    }
    // A replica behind the dead primary: the peer holds TSNs up to `cum` that this copy of
    // the TCB never sent. Skip our TSNs past them (the chunks we still hold under those
    // TSNs count as acknowledged: the policy's bounded loss) so the association goes on.
    st.nextTsn = add32(cum, 1)
  } else if (st.resynchronizing && lt32(cum, add32(st.nextTsn, -1))) {
    st.resynchronizing = false
  }
  const pathCount = st.paths.length
  const flightBefore: Array<number> = new Array<number>(pathCount)
  for (let index = 0; index < pathCount; index++) flightBefore[index] = st.paths[index]!.flightBytes
  const acked: Array<number> = new Array<number>(pathCount).fill(0)
  const cumAdvanced = gt32(cum, st.lastCumAck)
  const out = st.outstanding
  let highestNewlyAcked: number | undefined
  // Cumulative: pop the front (the outstanding queue is TSN-contiguous from lastCumAck + 1).
  let head = st.outstandingHead
  while (head < out.length && lte32(out[head]!.tsn, cum)) {
    const chunk = out[head]!
    if (!chunk.acked) highestNewlyAcked = chunk.tsn
    ackChunk(ctx, st, chunk, acked)
    st.bufferedBytes -= chunk.data.length
    out[head] = undefined as unknown as Outstanding
    head++
  }
  st.outstandingHead = head
  st.lastCumAck = cum
  if (cumAdvanced) st.errorCount = 0
  // Gap ack blocks: O(1) index per TSN.
  let highestGapAcked: number | undefined
  for (const block of gaps) {
    if (block.start === 0 || block.end < block.start) continue
    for (let offset = block.start; offset <= block.end; offset++) {
      const position = positionOf(out, head, add32(cum, offset))
      if (position < 0) continue
      const chunk = out[position]!
      if (!chunk.acked) {
        highestNewlyAcked = chunk.tsn
        ackChunk(ctx, st, chunk, acked)
      }
      highestGapAcked = chunk.tsn
    }
  }
  revokeReneged(ctx, st, cum, gaps)
  // §7.2.4 (HTNA): a miss indication for each TSN below the highest newly acknowledged.
  if (highestGapAcked !== undefined && highestNewlyAcked !== undefined) {
    for (let position = head; position < out.length; position++) {
      const chunk = out[position]!
      if (!lt32(chunk.tsn, highestNewlyAcked)) break
      if (chunk.acked || chunk.fastDone || chunk.retransmit) continue
      chunk.missIndications++
      if (chunk.missIndications >= 3) markFastRetransmit(st, chunk, flightBefore)
    }
  }
  if (st.fastRecovery && gte32(cum, st.fastRecoveryExit)) st.fastRecovery = false
  for (let index = 0; index < pathCount; index++) {
    const path = st.paths[index]!
    const bytes = acked[index]!
    if (bytes > 0) {
      path.congestion = Congestion.onAck(path.congestion, {
        bytesAcked: bytes,
        mtu: pmdcs(st),
        flightSizeBefore: flightBefore[index]!,
        cumulativeAdvanced: cumAdvanced,
        inFastRecovery: st.fastRecovery,
        flightSizeAfter: Math.max(0, path.flightBytes),
      })
    }
    // §6.3.2 R2, R3.
    if (path.flightBytes <= 0) {
      path.flightBytes = 0
      cancelTimer(ctx, st, t3Name(path))
    } else if (cumAdvanced && bytes > 0) {
      setTimer(ctx, st, t3Name(path), ctx.now + path.rto.rto)
    }
  }
  const forward = st.forwardTsn
  if (forward?.sent === true) {
    if (gte32(cum, forward.cumulative)) {
      st.forwardTsn = undefined
    } else {
      // RFC 3758 §3.5: the FORWARD TSN is retransmitted on T3 until acknowledged.
      const path = st.paths[forward.path]
      if (path !== undefined && st.timers[t3Name(path)] === undefined) {
        setTimer(ctx, st, t3Name(path), ctx.now + path.rto.rto)
      }
    }
  }
  if (rwnd !== undefined) st.peerRwnd = Math.max(0, rwnd - st.flightBytes)
  compactOutstanding(st)
  checkShutdownProgress(ctx, st)
}

/**
 * §6.2.1 D iv: a chunk acknowledged by an earlier Gap Ack Block that this SACK no longer
 * covers (below its highest block) was reneged on (e.g. a replica took over from a peer node that had received it):
 * it counts as outstanding again, gets a miss indication, and the T3-rtx timer of its
 * destination runs, so it is retransmitted rather than held for ever.
 */
const revokeReneged = (
  ctx: Ctx,
  st: State,
  cum: number,
  gaps: ReadonlyArray<Chunk.GapAckBlock>,
): void => {
  const out = st.outstanding
  // A receiver may list only its first Gap Ack Blocks (room in the packet): above the
  // highest one listed nothing is known, except when none is listed (then it holds
  // nothing above the cumulative TSN).
  let highest = gaps.length === 0 ? Number.POSITIVE_INFINITY : 0
  for (const gap of gaps) if (gap.end > highest) highest = gap.end
  let block = 0
  for (let position = st.outstandingHead; position < out.length; position++) {
    const chunk = out[position]!
    if (!chunk.acked) continue
    const offset = diff32(chunk.tsn, cum)
    if (offset > highest) break
    while (block < gaps.length && gaps[block]!.end < offset) block++
    const covering = gaps[block]
    if (covering !== undefined && covering.start <= offset && covering.start !== 0) continue
    chunk.acked = false
    chunk.inFlight = true
    chunk.fast = false
    st.flightBytes += chunk.data.length
    const path = st.paths[chunk.path]
    if (path === undefined) continue
    path.flightBytes += chunk.data.length
    chunk.missIndications++
    if (st.timers[t3Name(path)] === undefined) {
      setTimer(ctx, st, t3Name(path), ctx.now + path.rto.rto)
    }
  }
}

/**
 * The position of `tsn` in the outstanding queue from `head`, or -1. The queue is sorted by
 * TSN and contiguous except across a takeover's reserve jump: one subtraction usually
 * finds it, a binary search otherwise.
 */
const positionOf = (out: ReadonlyArray<Outstanding>, head: number, tsn: number): number => {
  const first = out[head]
  if (first === undefined) return -1
  const guess = head + diff32(tsn, first.tsn)
  if (guess >= head && guess < out.length && out[guess]!.tsn === tsn) return guess
  let low = head
  let high = out.length
  while (low < high) {
    const middle = (low + high) >>> 1
    if (lt32(out[middle]!.tsn, tsn)) low = middle + 1
    else high = middle
  }
  return low < out.length && out[low]!.tsn === tsn ? low : -1
}

const markFastRetransmit = (st: State, chunk: Outstanding, flightBefore: Array<number>): void => {
  const path = st.paths[chunk.path]
  if (!st.fastRecovery && path !== undefined) {
    // §7.2.4 step 2: once per window of data (until the exit point is acked).
    path.congestion = Congestion.onFastRetransmit(
      path.congestion,
      pmdcs(st),
      flightBefore[chunk.path] ?? path.flightBytes,
    )
    st.fastRecovery = true
    st.fastRecoveryExit = add32(st.nextTsn, -1)
  }
  markRetransmit(st, chunk)
  chunk.fast = true
  chunk.fastDone = true
}

export const markRetransmit = (st: State, chunk: Outstanding): void => {
  if (chunk.acked || chunk.retransmit) return
  if (chunk.inFlight) {
    chunk.inFlight = false
    st.flightBytes -= chunk.data.length
    const path = st.paths[chunk.path]
    if (path !== undefined) {
      path.flightBytes -= chunk.data.length
      if (path.rttPending && path.rttTsn === chunk.tsn) path.rttPending = false
    }
  }
  chunk.retransmit = true
  st.retransmitCount++
}

const compactOutstanding = (st: State): void => {
  if (st.outstandingHead === st.outstanding.length) {
    st.outstanding = []
    st.outstandingHead = 0
  } else if (st.outstandingHead > 1024 && st.outstandingHead * 2 > st.outstanding.length) {
    st.outstanding = st.outstanding.slice(st.outstandingHead)
    st.outstandingHead = 0
  }
}
