/**
 * The association machine: Sending DATA.
 */
import * as Chunk from "../../Chunk.ts"
import * as Congestion from "../../Congestion.ts"
import * as Packet from "../../Packet.ts"
import { gt32, gte32, lt32 } from "../../Serial.ts"
import { destinationFor, flushDestination, queueChunk } from "./bundling.ts"
import {
  addressOf,
  alternatePath,
  type Ctx,
  cancelTimer,
  type Destination,
  dataHeaderLength,
  dataPath,
  pmdcs,
  setTimer,
  t3Name,
} from "./context.ts"
import { buildSack } from "./inbound.ts"
import { sendsData } from "./sack.ts"
import { requestPrimary, takeQueuedWithNextTsn } from "./snapshot.ts"
import type { Outstanding, State } from "./state.ts"

const dataChunkOf = (chunk: Outstanding): Chunk.Data => ({
  _tag: "Data",
  immediate: false,
  unordered: chunk.unordered,
  beginning: chunk.beginning,
  ending: chunk.ending,
  tsn: chunk.tsn,
  streamIdentifier: chunk.stream,
  streamSequenceNumber: chunk.ssn,
  payloadProtocolIdentifier: chunk.ppid,
  userData: chunk.data,
})

const putData = (ctx: Ctx, st: State, index: number, chunk: Outstanding): Destination => {
  const path = st.paths[index]!
  const dest = queueChunk(
    ctx,
    st,
    addressOf(path),
    dataChunkOf(chunk),
    pad4(dataHeaderLength + chunk.data.length),
  )
  chunk.path = index
  chunk.inFlight = true
  st.flightBytes += chunk.data.length
  path.flightBytes += chunk.data.length
  path.lastSendMs = ctx.now
  if (st.timers[t3Name(path)] === undefined) setTimer(ctx, st, t3Name(path), ctx.now + path.rto.rto)
  return dest
}

export const pad4 = (n: number): number => (n + 3) & ~3

const sendData = (ctx: Ctx, st: State): void => {
  if (!sendsData(st) || st.paths.length === 0) return
  const mtu = st.config.mtu
  // 1. Retransmissions: fast retransmits go out at once (one packet, outside cwnd, §7.2.4
  //    step 3); T3 ones as cwnd of their path allows (§6.3.3 E3, §7.2.3).
  if (st.retransmitCount > 0) {
    const out = st.outstanding
    let fastBytes = 0
    for (
      let position = st.outstandingHead;
      position < out.length && st.retransmitCount > 0;
      position++
    ) {
      const chunk = out[position]!
      if (!chunk.retransmit) continue
      const index = chunk.fast
        ? alternateIfDown(st, chunk.path)
        : st.retransmitPath < st.paths.length
          ? st.retransmitPath
          : dataPath(st)
      const path = st.paths[index]!
      const size = pad4(dataHeaderLength + chunk.data.length)
      if (chunk.fast) {
        if (fastBytes > 0 && fastBytes + size > mtu - Packet.headerLength) continue
        fastBytes += size
      } else if (path.flightBytes >= path.congestion.cwnd) {
        continue
      }
      chunk.retransmit = false
      chunk.fast = false
      st.retransmitCount--
      chunk.transmissions++
      chunk.missIndications = 0
      putData(ctx, st, index, chunk)
    }
  }
  // 2. New data on the data path, within cwnd, the peer's rwnd, and Max.Burst (§6.1, §7.2).
  if (st.queueHead >= st.queue.length) return
  const index = dataPath(st)
  const path = st.paths[index]!
  if (!path.confirmed) return
  // §7.2.1: a path idle for an RTO or more gets cwnd = max(cwnd/2, 4·PMDCS) per RTO idle.
  const idleMs = ctx.now - path.lastSendMs
  if (
    path.flightBytes === 0 &&
    path.lastSendMs > 0 &&
    idleMs > path.rto.rto &&
    path.congestion.cwnd > 4 * pmdcs(st)
  ) {
    path.congestion = Congestion.onIdle(
      path.congestion,
      pmdcs(st),
      Math.floor(idleMs / path.rto.rto),
    )
    path.lastSendMs = ctx.now
  }
  let budget = st.config.burstMax * (mtu - Packet.headerLength)
  while (st.queueHead < st.queue.length && budget > 0) {
    const next = st.queue[st.queueHead]!
    const length = next.data.length
    if (path.flightBytes >= path.congestion.cwnd) break
    // §6.1 A: rwnd, except one chunk when nothing is in flight (zero window probe).
    if (length > st.peerRwnd && st.flightBytes > 0) break
    const chunk = takeQueuedWithNextTsn(st, index)
    st.peerRwnd = Math.max(0, st.peerRwnd - length)
    if (!path.rttPending) {
      path.rttPending = true
      path.rttTsn = chunk.tsn
      path.rttSentMs = ctx.now
    }
    putData(ctx, st, index, chunk)
    budget -= pad4(dataHeaderLength + length)
  }
  if (st.queueHead === st.queue.length) {
    st.queue = []
    st.queueHead = 0
  } else if (st.queueHead > 1024 && st.queueHead * 2 > st.queue.length) {
    st.queue = st.queue.slice(st.queueHead)
    st.queueHead = 0
  }
}

const alternateIfDown = (st: State, index: number): number => {
  const path = st.paths[index]
  return path?.active && path.confirmed ? index : alternatePath(st, index)
}

/**
 * DATA leaves in this step: a retransmission is due, or new DATA fits the data path's cwnd
 * (close enough: when the peer's window stops it after all, the owed SACK merely went early).
 */
const dataDue = (st: State): boolean => {
  if (!sendsData(st) || st.paths.length === 0) return false
  if (st.retransmitCount > 0) return true
  if (st.queueHead >= st.queue.length) return false
  const path = st.paths[dataPath(st)]!
  return path.confirmed && path.flightBytes < path.congestion.cwnd
}

/** Ends a step: SACK if due, DATA, then every packet assembled. */
export const finish = (ctx: Ctx, st: State): void => {
  if (st.name !== "Closed") {
    // §6.1: a SACK held back by the delayed-SACK timer (§6.2) goes with the DATA that leaves
    // now. A peer that bundles (Nagle) sends nothing new until its DATA is acknowledged: held
    // to the timer, a request/answer stream (an echo) ran in bursts one SACK delay apart.
    if (!st.sackNow && st.timers.SACK !== undefined && dataDue(st)) st.sackNow = true
    if (st.sackNow && st.tracker !== undefined && st.peerTag !== 0) {
      st.sackNow = false
      st.packetsSinceSack = 0
      cancelTimer(ctx, st, "SACK")
      const sack = buildSack(st)
      const path = st.paths[st.lastDataPath] ?? st.paths[dataPath(st)]
      const hole = st.takeoverHole
      if (
        hole !== undefined &&
        sack.gapAckBlocks.length === 0 &&
        gt32(sack.cumulativeTsnAck, hole.from)
      ) {
        // No gap, and DATA since the takeover acknowledged: the hole (if any) is filled.
        st.takeoverHole = undefined
        requestPrimary(ctx, st, hole.primary)
      }
      if (path !== undefined) {
        const dest = destinationFor(ctx, addressOf(path), st.peerTag)
        const size = Chunk.chunkSize(sack)
        if (dest.size + size > st.config.mtu) flushDestination(ctx, st, dest)
        // COOKIE ACK must stay first in its packet (§5.1 D); the SACK goes right after it.
        const at =
          dest.chunks[0]?._tag === "CookieAck" || dest.chunks[0]?._tag === "CookieEcho" ? 1 : 0
        dest.chunks.splice(at, 0, sack)
        dest.size += size
      }
    }
    sendForwardTsn(ctx, st)
    sendData(ctx, st)
  }
  for (const dest of ctx.dests) flushDestination(ctx, st, dest)
}

/**
 * Sends the FORWARD TSN owed after a reserve jump (RFC 3758 §3.5) once every chunk the
 * replica knew is acknowledged, ahead of any DATA in the packet, with T3 running so that
 * it is retransmitted until acknowledged.
 */
const sendForwardTsn = (ctx: Ctx, st: State): void => {
  const forward = st.forwardTsn
  if (forward === undefined || forward.sent || !sendsData(st) || st.paths.length === 0) return
  if (lt32(st.lastCumAck, forward.afterTsn)) return
  if (gte32(st.lastCumAck, forward.cumulative)) {
    st.forwardTsn = undefined
    return
  }
  const index = dataPath(st)
  const path = st.paths[index]!
  const streams: Array<Chunk.ForwardTsnStream> = []
  for (let at = 0; at + 1 < forward.streams.length; at += 2) {
    streams.push({ stream: forward.streams[at]!, ssn: forward.streams[at + 1]! })
  }
  queueChunk(ctx, st, addressOf(path), {
    _tag: "ForwardTsn",
    newCumulativeTsn: forward.cumulative,
    streams,
  })
  forward.sent = true
  forward.path = index
  if (st.timers[t3Name(path)] === undefined) setTimer(ctx, st, t3Name(path), ctx.now + path.rto.rto)
}
