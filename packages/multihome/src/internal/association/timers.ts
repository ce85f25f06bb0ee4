/**
 * The association machine: Timers.
 */
import type * as Chunk from "../../Chunk.ts"
import * as Congestion from "../../Congestion.ts"
import * as Rto from "../../Rto.ts"
import { isClosed, onT4 } from "./asconf.ts"
import { queueChunk, sendAlone } from "./bundling.ts"
import {
  addressOf,
  alternatePath,
  type Ctx,
  dataPath,
  emit,
  pathIndex,
  pmdcs,
  rtoConfig,
  setTimer,
} from "./context.ts"
import { sendCookieEcho } from "./handshake.ts"
import { onHeartbeatTimer, pathError, probeTakeoverHole, takeoverProbeName } from "./paths.ts"
import { markRetransmit } from "./sack.ts"
import { close, sendAbort } from "./shutdown.ts"
import type { State } from "./state.ts"

export const onTimer = (ctx: Ctx, st: State, timer: string): void => {
  const at = st.timers[timer]
  if (at === undefined || ctx.now < at) {
    emit(ctx, { _tag: "Dropped", reason: "StaleTimer" })
    return
  }
  delete st.timers[timer]
  if (timer === "T1-init") {
    onT1Init(ctx, st)
    return
  }
  if (timer === "T1-cookie") {
    onT1Cookie(ctx, st)
    return
  }
  if (timer === "T2-shutdown") {
    onT2(ctx, st)
    return
  }
  if (timer === "T5-shutdown-guard") {
    sendAbort(ctx, st, addressOf(st.paths[dataPath(st)]!), st.peerTag, [])
    emit(ctx, { _tag: "CommLost", reason: "ShutdownGuard" })
    close(ctx, st, "Closed")
    return
  }
  if (timer === "SACK") {
    st.sackNow = true
    return
  }
  if (timer === takeoverProbeName) {
    probeTakeoverHole(ctx, st)
    return
  }
  if (timer === "T4-asconf") {
    onT4(ctx, st)
    return
  }
  if (timer.startsWith("T3-rtx:")) {
    const index = pathIndex(st, timer.slice(7))
    if (index >= 0) onT3(ctx, st, index)
    return
  }
  if (timer.startsWith("HB:")) {
    const index = pathIndex(st, timer.slice(3))
    if (index >= 0) onHeartbeatTimer(ctx, st, index)
  }
}

const onT1Init = (ctx: Ctx, st: State): void => {
  if (st.name !== "CookieWait" || st.init === undefined) return
  st.initRetransmits++
  if (st.initRetransmits > st.config.initRetransmitsMax) {
    emit(ctx, { _tag: "CommLost", reason: "InitTimeout" })
    close(ctx, st, "Closed")
    return
  }
  // §6.3.3 / §5.1: back off and try the peer's next address, round robin.
  const index = st.initRetransmits % st.paths.length
  const path = st.paths[index]!
  st.paths[0]!.rto = Rto.backoff(st.paths[0]!.rto, rtoConfig(st.config))
  sendAlone(ctx, st, addressOf(path), 0, st.init)
  setTimer(ctx, st, "T1-init", ctx.now + st.paths[0]!.rto.rto)
}

const onT1Cookie = (ctx: Ctx, st: State): void => {
  if (st.name !== "CookieEchoed" || st.cookie === undefined) return
  st.initRetransmits++
  if (st.initRetransmits > st.config.initRetransmitsMax) {
    emit(ctx, { _tag: "CommLost", reason: "CookieTimeout" })
    close(ctx, st, "Closed")
    return
  }
  const primary = st.paths[st.primary]!
  primary.rto = Rto.backoff(primary.rto, rtoConfig(st.config))
  // §6.4.1: a retransmission goes to another address of a multi-homed peer when it has
  // one: round robin from the primary (a peer cluster's other node may be the live one).
  const index = (st.primary + st.initRetransmits) % st.paths.length
  sendCookieEcho(ctx, st, index)
  setTimer(ctx, st, "T1-cookie", ctx.now + primary.rto.rto)
}

const onT3 = (ctx: Ctx, st: State, index: number): void => {
  const path = st.paths[index]!
  // §6.3.3 E1–E3: back off, collapse cwnd, mark this path's outstanding DATA for
  // retransmission (to an alternate path, §6.4.1).
  path.rto = Rto.backoff(path.rto, rtoConfig(st.config))
  path.congestion = Congestion.onRetransmissionTimeout(path.congestion, pmdcs(st))
  const out = st.outstanding
  for (let position = st.outstandingHead; position < out.length; position++) {
    const chunk = out[position]!
    if (chunk.path === index && chunk.inFlight) markRetransmit(st, chunk)
  }
  path.flightBytes = 0
  path.rttPending = false
  st.fastRecovery = false
  pathError(ctx, st, index, true)
  if (isClosed(st)) return
  st.retransmitPath = alternatePath(st, index)
  if (st.forwardTsn?.sent === true) st.forwardTsn.sent = false
}

const onT2 = (ctx: Ctx, st: State): void => {
  if (st.name !== "ShutdownSent" && st.name !== "ShutdownAckSent") return
  const index = dataPath(st)
  const path = st.paths[index]!
  path.rto = Rto.backoff(path.rto, rtoConfig(st.config))
  pathError(ctx, st, index, true)
  if (isClosed(st)) return
  const target = alternatePath(st, index)
  const chunk: Chunk.Chunk =
    st.name === "ShutdownSent"
      ? { _tag: "Shutdown", cumulativeTsnAck: st.tracker!.cumulative }
      : { _tag: "ShutdownAck" }
  queueChunk(ctx, st, addressOf(st.paths[target]!), chunk)
  setTimer(ctx, st, "T2-shutdown", ctx.now + st.paths[target]!.rto.rto)
}
