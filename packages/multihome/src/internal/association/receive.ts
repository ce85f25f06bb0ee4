/**
 * The association machine: Receive.
 */

import * as Auth from "../../Auth.ts"
import * as Chunk from "../../Chunk.ts"
import * as Packet from "../../Packet.ts"
import * as S from "../association-support.ts"
import { abortReason, isClosed, onAsconf, onAsconfAck, onOperationError } from "./asconf.ts"
import { queueChunk, sendAlone } from "./bundling.ts"
import { type Ctx, cancelTimer, emit, pathIndex } from "./context.ts"
import { commUp } from "./creation.ts"
import { onCookieEcho, onInit, onInitAck } from "./handshake.ts"
import { afterData, onData, onForwardTsn } from "./inbound.ts"
import type { Input, PeerAddress } from "./models.ts"
import { onHeartbeatAck } from "./paths.ts"
import { onSack } from "./sack.ts"
import { close, onShutdown } from "./shutdown.ts"
import type { State } from "./state.ts"

export const onReceive = (
  ctx: Ctx,
  st: State,
  input: Extract<Input, { _tag: "Receive" }>,
): void => {
  const packet = input.message
  if (Packet.checkBundling(packet)._tag !== "Ok") {
    emit(ctx, { _tag: "Dropped", reason: "ChunkNotAlone" })
    return
  }
  if (packet.destinationPort !== st.localPort || packet.sourcePort !== st.peerPort) {
    emit(ctx, { _tag: "Dropped", reason: "PortMismatch" })
    return
  }
  const check = Packet.checkVerificationTag(packet, { myTag: st.myTag, peerTag: st.peerTag })
  switch (check._tag) {
    case "Drop":
      emit(ctx, { _tag: "Dropped", reason: check.reason })
      return
    case "Init":
      onInit(ctx, st, packet.chunks[0] as Chunk.Init, input.from)
      return
    case "CookieEcho":
      onCookieEcho(ctx, st, input)
      return
    case "Accept":
      break
  }
  // §8.5.1 E: a SHUTDOWN ACK before the association is up is out of the blue.
  if (
    (st.name === "CookieWait" || st.name === "CookieEchoed") &&
    packet.chunks[0]?._tag === "ShutdownAck"
  ) {
    sendAlone(ctx, st, input.from, packet.verificationTag, {
      _tag: "ShutdownComplete",
      reflected: true,
    })
    return
  }
  // Hosts are stored canonical; the driver usually passes them so (parsing is the slow path).
  let index = pathIndex(st, input.from.host)
  if (index < 0) index = pathIndex(st, S.canonicalHost(input.from.host))
  // RFC 6951 §5.5: the UDP port of a path is learned from what arrives from it.
  if (index >= 0) st.paths[index]!.udpPort = input.from.udpPort
  processChunks(ctx, st, packet.chunks, input.from, index)
}

export const processChunks = (
  ctx: Ctx,
  st: State,
  chunks: ReadonlyArray<Chunk.Chunk>,
  from: PeerAddress,
  index: number,
): void => {
  let known = chunks
  let report: ReadonlyArray<Chunk.UnknownChunk> = []
  for (const chunk of chunks) {
    if (chunk._tag === "UnknownChunk") {
      const processed = Chunk.processUnknownChunks(chunks)
      known = processed.process
      report = processed.report
      break
    }
  }
  // RFC 4895 §6.3: the chunks after a valid AUTH chunk are authenticated; a chunk this end
  // asked to receive authenticated (its CHUNKS parameter) is discarded without one.
  let authenticated = false
  for (const chunk of known) {
    if (isClosed(st)) return
    if (chunk._tag === "Auth") {
      if (!onAuth(ctx, st, chunk, chunks.slice(chunks.indexOf(chunk) + 1), from)) break
      authenticated = true
      continue
    }
    if (!authenticated && st.auth?.localChunks.includes(Chunk.typeOf(chunk)) === true) {
      emit(ctx, { _tag: "Dropped", reason: "AuthMissing" })
      continue
    }
    if (!onChunk(ctx, st, chunk, from, index)) break
  }
  if (ctx.gotData) afterData(ctx, st, index)
  if (report.length > 0 && st.name !== "Closed" && st.peerTag !== 0) {
    queueChunk(ctx, st, from, {
      _tag: "OperationError",
      causes: report.map(Chunk.unrecognizedChunkType),
    })
  }
}

/** Handles one chunk; false stops processing the packet. */
const onChunk = (
  ctx: Ctx,
  st: State,
  chunk: Chunk.Chunk,
  from: PeerAddress,
  index: number,
): boolean => {
  switch (chunk._tag) {
    case "Data":
      return onData(ctx, st, chunk, from, index)
    case "Sack":
      onSack(ctx, st, chunk)
      return true
    case "InitAck":
      onInitAck(ctx, st, chunk, from)
      return false
    case "CookieAck":
      if (st.name === "CookieEchoed") {
        cancelTimer(ctx, st, "T1-cookie")
        st.cookie = undefined
        commUp(ctx, st)
      }
      return true
    case "Heartbeat":
      queueChunk(ctx, st, from, { _tag: "HeartbeatAck", info: chunk.info.slice() })
      return true
    case "HeartbeatAck":
      onHeartbeatAck(ctx, st, chunk)
      return true
    case "Abort":
      emit(ctx, { _tag: "CommLost", reason: abortReason(chunk.causes) })
      close(ctx, st, "Closed")
      return false
    case "Shutdown":
      onShutdown(ctx, st, chunk, from)
      return true
    case "ShutdownAck":
      if (st.name === "ShutdownSent" || st.name === "ShutdownAckSent") {
        cancelTimer(ctx, st, "T2-shutdown")
        cancelTimer(ctx, st, "T5-shutdown-guard")
        sendAlone(ctx, st, from, st.peerTag, { _tag: "ShutdownComplete", reflected: false })
        emit(ctx, { _tag: "ShutdownComplete" })
        close(ctx, st, "Closed")
        return false
      }
      emit(ctx, { _tag: "Dropped", reason: "UnexpectedShutdownAck" })
      return true
    case "ShutdownComplete":
      if (st.name === "ShutdownAckSent") {
        emit(ctx, { _tag: "ShutdownComplete" })
        close(ctx, st, "Closed")
        return false
      }
      emit(ctx, { _tag: "Dropped", reason: "UnexpectedShutdownComplete" })
      return true
    case "OperationError":
      onOperationError(ctx, st, chunk)
      return true
    case "CookieEcho":
      // Only the first chunk of a packet is a COOKIE ECHO to act on (§5.1 D).
      emit(ctx, { _tag: "Dropped", reason: "CookieEchoNotFirst" })
      return true
    case "ForwardTsn":
      onForwardTsn(ctx, st, chunk, from, index)
      return true
    case "Asconf":
      onAsconf(ctx, st, chunk, from)
      return true
    case "AsconfAck":
      return onAsconfAck(ctx, st, chunk, from)
    case "Auth":
    case "Init":
    case "UnknownChunk":
      return true
  }
}

/**
 * A received AUTH chunk (RFC 4895 §6.3); true when the chunks after it are authenticated.
 * Otherwise they are all discarded: silently, but counted (a `Dropped` event), and an
 * HMAC identifier we never offered is answered with an ERROR (§4.1). Without AUTH
 * negotiated the chunk type is one to stop at (its upper bits are 00, RFC 9260 §3.2).
 */
const onAuth = (
  ctx: Ctx,
  st: State,
  auth: Chunk.Auth,
  after: ReadonlyArray<Chunk.Chunk>,
  from: PeerAddress,
): boolean => {
  if (st.auth === undefined) {
    emit(ctx, { _tag: "Dropped", reason: "AuthNotNegotiated" })
    return false
  }
  const verdict = Auth.verify(st.auth, auth, after)
  if (verdict === "Valid") return true
  if (verdict === "UnsupportedHmac") {
    queueChunk(ctx, st, from, {
      _tag: "OperationError",
      causes: [Auth.unsupportedHmacCause(auth.hmacId)],
    })
  }
  emit(ctx, { _tag: "Dropped", reason: `Auth${verdict}` })
  return false
}
