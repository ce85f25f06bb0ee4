/**
 * The association machine: Shutdown (§9.2) and abort (§9.1).
 */
import type * as Chunk from "../../Chunk.ts"
import { gte32, lt32 } from "../../Serial.ts"
import { isClosed } from "./asconf.ts"
import { queueChunk, transmit } from "./bundling.ts"
import { addressOf, type Ctx, cancelTimer, dataPath, emit, setTimer } from "./context.ts"
import type { PeerAddress } from "./models.ts"
import { processSack } from "./sack.ts"
import type { State } from "./state.ts"

const nothingToSend = (st: State): boolean =>
  st.queueHead >= st.queue.length && st.outstandingHead >= st.outstanding.length

export const checkShutdownProgress = (ctx: Ctx, st: State): void => {
  if (!nothingToSend(st)) return
  if (st.name === "ShutdownPending") {
    st.name = "ShutdownSent"
    const path = st.paths[dataPath(st)]!
    queueChunk(ctx, st, addressOf(path), {
      _tag: "Shutdown",
      cumulativeTsnAck: st.tracker!.cumulative,
    })
    setTimer(ctx, st, "T2-shutdown", ctx.now + path.rto.rto)
    setTimer(ctx, st, "T5-shutdown-guard", ctx.now + 5 * st.config.rtoMsMax)
  } else if (st.name === "ShutdownReceived") {
    st.name = "ShutdownAckSent"
    const path = st.paths[dataPath(st)]!
    queueChunk(ctx, st, addressOf(path), { _tag: "ShutdownAck" })
    setTimer(ctx, st, "T2-shutdown", ctx.now + path.rto.rto)
    setTimer(ctx, st, "T5-shutdown-guard", ctx.now + 5 * st.config.rtoMsMax)
  }
}

export const onShutdown = (ctx: Ctx, st: State, chunk: Chunk.Shutdown, from: PeerAddress): void => {
  switch (st.name) {
    case "Established":
    case "ShutdownPending":
    case "ShutdownReceived":
      // §9.2: the Cumulative TSN Ack acknowledges like a SACK without gaps.
      if (
        gte32(chunk.cumulativeTsnAck, st.lastCumAck) &&
        lt32(chunk.cumulativeTsnAck, st.nextTsn)
      ) {
        processSack(ctx, st, chunk.cumulativeTsnAck, [], undefined)
      }
      if (isClosed(st)) return
      st.name = "ShutdownReceived"
      checkShutdownProgress(ctx, st)
      return
    case "ShutdownSent":
      // §9.2: SHUTDOWN crossed ours: answer with SHUTDOWN ACK at once.
      st.name = "ShutdownAckSent"
      queueChunk(ctx, st, from, { _tag: "ShutdownAck" })
      setTimer(ctx, st, "T2-shutdown", ctx.now + st.paths[dataPath(st)]!.rto.rto)
      return
    case "ShutdownAckSent":
      return
    default:
      emit(ctx, { _tag: "Dropped", reason: "UnexpectedShutdown" })
  }
}

export const sendAbort = (
  ctx: Ctx,
  st: State,
  to: PeerAddress,
  tag: number,
  causes: ReadonlyArray<Chunk.ErrorCause>,
): void => {
  transmit(ctx, st, to, tag, [{ _tag: "Abort", reflected: false, causes }])
}

/** Drops queued and outstanding user data, telling the user (abort, restart). */
export const failQueued = (ctx: Ctx, st: State): void => {
  let count = 0
  for (
    let position = st.queueHead;
    position < st.queue.length && count < 1_000_000;
    position++, count++
  ) {
    const queued = st.queue[position]!
    if (queued.beginning) {
      emit(ctx, {
        _tag: "SendFailed",
        reason: "Closed",
        stream: queued.stream,
        ppid: queued.ppid,
        bytes: queued.data.length,
      })
    }
  }
  st.queue = []
  st.queueHead = 0
  st.queuedBytes = 0
  st.outstanding = []
  st.outstandingHead = 0
  st.flightBytes = 0
  st.retransmitCount = 0
  st.bufferedBytes = 0
}

export const close = (ctx: Ctx, st: State, _why: "Closed"): void => {
  for (const name of Object.keys(st.timers)) cancelTimer(ctx, st, name)
  st.name = "Closed"
  st.queue = []
  st.queueHead = 0
  st.outstanding = []
  st.outstandingHead = 0
  ctx.dests.length = 0
  emit(ctx, { _tag: "Closed" })
}
