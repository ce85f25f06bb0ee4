/**
 * The association machine: Heartbeats and path management (§5.4, §8).
 */

import type * as Chunk from "../../Chunk.ts"
import * as Rto from "../../Rto.ts"
import * as S from "../association-support.ts"
import { isClosed } from "./asconf.ts"
import { queueChunk } from "./bundling.ts"
import {
  addressOf,
  type Ctx,
  dataPath,
  emit,
  hbName,
  pathIndex,
  rtoConfig,
  setTimer,
} from "./context.ts"
import { close, sendAbort } from "./shutdown.ts"
import type { Path, State } from "./state.ts"

const jitteredInterval = (st: State, path: Path): number => {
  // §8.3: RTO + HB.interval, RTO jittered by ±50%.
  const jitter = Math.floor(path.rto.rto * (S.nextU32(st.rng) / 0x1_0000_0000 - 0.5))
  return st.config.heartbeatIntervalMs + path.rto.rto + jitter
}

export const sendHeartbeat = (ctx: Ctx, st: State, index: number): void => {
  const path = st.paths[index]!
  path.heartbeatNonce = S.nextU32(st.rng)
  path.heartbeatOutstanding = true
  queueChunk(ctx, st, addressOf(path), {
    _tag: "Heartbeat",
    info: S.encodeHeartbeatInfo({ host: path.host, nonce: path.heartbeatNonce, sentMs: ctx.now }),
  })
}

/**
 * How often a takeover's hole is probed (see `State.takeoverHole`): under the pace of a stream
 * of small messages, so that each HEARTBEAT finds the peer holding one or two of them back
 * and each of our SACKs for them is one more miss indication. Why 10 ms and not slower
 * (`bench/takeoverProbe.ts`, a line every 20 ms, one lost at the dead node): the lost line is
 * resent 69 ms after its first send at 10 ms, 79 at 20, 99 at 40, for 6, 4 and 3 HEARTBEATs
 * per association; an idle peer costs 14, 11 and 10 in the RTO (the back-off makes the pace
 * matter little there). 1,000 associations taken over at once: 14,000 HEARTBEATs in 1 s
 * against 10,000 at 40 ms, for 30 ms less of a streaming peer's gap.
 */
export const takeoverProbeMs = 10

/**
 * After this many probes in a row that drew no DATA (50 ms: longer than a stream of small
 * messages waits between two), each further one doubles the wait before the next, up to
 * 2^{@link takeoverProbeBackoffMax} × `takeoverProbeMs`: a peer with nothing to send costs ~13
 * HEARTBEATs in an RTO of 1 s, not ~100. DATA from the peer brings the full pace back.
 */
const takeoverProbeQuietFull = 5
const takeoverProbeBackoffMax = 4

/**
 * A HEARTBEAT to the peer while a takeover's hole may be open (RFC 9260 §8.3: an on-demand
 * HEARTBEAT; one outstanding at a time). Answering it, a peer that bundles sends the DATA it
 * held back behind a chunk lost at the dead node — usrsctp applies Nagle only to its user's
 * sends, not to the output that follows a packet it received.
 */
export const probeTakeoverHole = (ctx: Ctx, st: State): void => {
  const hole = st.takeoverHole
  if (hole === undefined || ctx.now >= hole.untilMs || st.paths.length === 0) return
  const index = dataPath(st)
  if (!st.paths[index]!.heartbeatOutstanding) sendHeartbeat(ctx, st, index)
  const doublings = Math.min(
    Math.max(hole.quietProbes + 1 - takeoverProbeQuietFull, 0),
    takeoverProbeBackoffMax,
  )
  const waitMs = takeoverProbeMs * 2 ** doublings
  hole.quietProbes++
  setTimer(ctx, st, takeoverProbeName, ctx.now + waitMs)
}

export const takeoverProbeName = "Takeover-probe"

export const startHeartbeat = (ctx: Ctx, st: State, index: number): void => {
  const path = st.paths[index]!
  if (!path.confirmed) {
    // §5.4: confirm at once, then one HEARTBEAT per RTO until confirmed.
    sendHeartbeat(ctx, st, index)
    setTimer(ctx, st, hbName(path), ctx.now + path.rto.rto)
  } else {
    setTimer(ctx, st, hbName(path), ctx.now + jitteredInterval(st, path))
  }
}

export const onHeartbeatTimer = (ctx: Ctx, st: State, index: number): void => {
  const path = st.paths[index]!
  if (path.heartbeatOutstanding) {
    // §8.3: an unacknowledged HEARTBEAT counts as an error, and backs the RTO off.
    path.rto = Rto.backoff(path.rto, rtoConfig(st.config))
    pathError(ctx, st, index, path.confirmed)
    if (isClosed(st)) return
  }
  // §8.3: heartbeat idle paths; a path carrying data is probed by its own traffic.
  const idle = ctx.now - path.lastSendMs >= st.config.heartbeatIntervalMs || path.flightBytes === 0
  if (!path.confirmed || !path.active || path.heartbeatOutstanding || idle)
    sendHeartbeat(ctx, st, index)
  setTimer(
    ctx,
    st,
    hbName(path),
    ctx.now + (path.confirmed && path.errorCount === 0 ? jitteredInterval(st, path) : path.rto.rto),
  )
}

export const onHeartbeatAck = (ctx: Ctx, st: State, ack: Chunk.HeartbeatAck): void => {
  const info = S.decodeHeartbeatInfo(ack.info)
  const index = info === undefined ? -1 : pathIndex(st, info.host)
  const path = st.paths[index]
  if (
    info === undefined ||
    path === undefined ||
    !path.heartbeatOutstanding ||
    info.nonce !== path.heartbeatNonce
  ) {
    emit(ctx, { _tag: "Dropped", reason: "HeartbeatAckUnmatched" })
    return
  }
  path.heartbeatOutstanding = false
  path.errorCount = 0
  st.errorCount = 0
  if (ctx.now >= info.sentMs) {
    path.rto = Rto.measured(path.rto, ctx.now - info.sentMs, rtoConfig(st.config))
  }
  if (!path.confirmed) {
    path.confirmed = true
    emit(ctx, { _tag: "PathChange", host: path.host, state: "Confirmed" })
    setTimer(ctx, st, hbName(path), ctx.now + jitteredInterval(st, path))
  }
  if (!path.active) {
    path.active = true
    emit(ctx, { _tag: "PathChange", host: path.host, state: "Available" })
  }
}

/** Counts an error on a path (and on the association when `association`), §8.1–8.2. */
export const pathError = (ctx: Ctx, st: State, index: number, association: boolean): void => {
  const path = st.paths[index]!
  path.errorCount++
  // A path in error is probed every RTO (see dataPath), not every HB.interval.
  const probeAt = ctx.now + path.rto.rto
  const heartbeatAt = st.timers[hbName(path)]
  if (path.confirmed && heartbeatAt !== undefined && heartbeatAt > probeAt) {
    setTimer(ctx, st, hbName(path), probeAt)
  }
  if (path.active && path.errorCount > st.config.pathMaxRetrans) {
    path.active = false
    emit(ctx, { _tag: "PathChange", host: path.host, state: "Unreachable" })
  }
  if (association) associationError(ctx, st, "MaxRetransmissions")
}

export const associationError = (ctx: Ctx, st: State, reason: string): void => {
  st.errorCount++
  if (st.errorCount > st.config.associationMaxRetrans) {
    sendAbort(ctx, st, addressOf(st.paths[dataPath(st)]!), st.peerTag, [])
    emit(ctx, { _tag: "CommLost", reason })
    close(ctx, st, "Closed")
  }
}
