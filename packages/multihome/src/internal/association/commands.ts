/**
 * The association machine: Commands.
 */

import * as Packet from "../../Packet.ts"
import * as S from "../association-support.ts"
import { addressOf, type Ctx, dataHeaderLength, dataPath, emit, pathIndex } from "./context.ts"
import type { Command } from "./models.ts"
import { sendHeartbeat } from "./paths.ts"
import { checkShutdownProgress, close, failQueued, sendAbort } from "./shutdown.ts"
import type { State } from "./state.ts"

export const onCommand = (ctx: Ctx, st: State, command: Command): void => {
  switch (command._tag) {
    case "Send":
      onSend(ctx, st, command)
      return
    case "Shutdown":
      if (st.name === "Established") {
        st.name = "ShutdownPending"
        checkShutdownProgress(ctx, st)
      } else if (st.name === "CookieWait" || st.name === "CookieEchoed") {
        close(ctx, st, "Closed")
      }
      return
    case "Abort": {
      const reason = new TextEncoder().encode(command.reason ?? "")
      if (st.peerTag !== 0) {
        sendAbort(ctx, st, addressOf(st.paths[dataPath(st)]!), st.peerTag, [
          { _tag: "UserInitiatedAbort", reason },
        ])
      }
      failQueued(ctx, st)
      close(ctx, st, "Closed")
      return
    }
    case "SetPrimary": {
      const index = pathIndex(st, S.canonicalHost(command.host))
      if (index < 0) {
        emit(ctx, { _tag: "Dropped", reason: "UnknownPath" })
        return
      }
      st.primary = index
      emit(ctx, { _tag: "PathChange", host: st.paths[index]!.host, state: "Primary" })
      return
    }
    case "RequestHeartbeat": {
      const index = pathIndex(st, S.canonicalHost(command.host))
      if (index < 0 || st.peerTag === 0) {
        emit(ctx, { _tag: "Dropped", reason: "UnknownPath" })
        return
      }
      sendHeartbeat(ctx, st, index)
      return
    }
  }
}

const onSend = (ctx: Ctx, st: State, command: Extract<Command, { _tag: "Send" }>): void => {
  const failed = (reason: "WouldBlock" | "InvalidStream" | "NotEstablished") =>
    emit(ctx, {
      _tag: "SendFailed",
      reason,
      stream: command.stream,
      ppid: command.ppid,
      bytes: command.data.length,
    })
  if (st.name !== "Established") {
    failed("NotEstablished")
    return
  }
  if (
    command.stream < 0 ||
    command.stream >= st.outboundStreams ||
    !Number.isInteger(command.stream)
  ) {
    failed("InvalidStream")
    return
  }
  const data = command.data
  if (st.bufferedBytes + data.length > st.config.sendBufferBytes) {
    failed("WouldBlock")
    return
  }
  const ssn = command.unordered ? 0 : st.ssnOut[command.stream]!
  if (!command.unordered) st.ssnOut[command.stream] = (ssn + 1) & 0xffff
  // §6.9: fragments fill a packet: MTU less the common header and the DATA chunk header.
  const room = Math.max(4, (st.config.mtu - Packet.headerLength - dataHeaderLength) & ~3)
  const total = Math.max(1, Math.ceil(data.length / room))
  for (let fragment = 0; fragment < total; fragment++) {
    const start = fragment * room
    const piece = data.subarray(start, Math.min(data.length, start + room))
    st.queue.push({
      stream: command.stream,
      ssn,
      ppid: command.ppid,
      unordered: command.unordered,
      beginning: fragment === 0,
      ending: fragment === total - 1,
      data: piece,
    })
  }
  st.queuedBytes += data.length
  st.bufferedBytes += data.length
}
