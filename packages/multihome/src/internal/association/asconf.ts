/**
 * The association machine: ASCONF (RFC 5061).
 */

import * as Asconf from "../../Asconf.ts"
import * as Chunk from "../../Chunk.ts"
import * as Rto from "../../Rto.ts"
import { add32 } from "../../Serial.ts"
import * as S from "../association-support.ts"
import { queueChunk, sendAlone } from "./bundling.ts"
import {
  addPath,
  addressOf,
  alternatePath,
  type Ctx,
  cancelTimer,
  dataPath,
  emit,
  hbName,
  pathIndex,
  rtoConfig,
  setTimer,
  t3Name,
} from "./context.ts"
import type { PeerAddress } from "./models.ts"
import { associationError, pathError, startHeartbeat } from "./paths.ts"
import { markRetransmit } from "./sack.ts"
import { close, sendAbort } from "./shutdown.ts"
import { requestPrimary } from "./snapshot.ts"
import type { State } from "./state.ts"

/** The chunk as received, for an Unrecognized Chunk Type cause. */
export const unrecognized = (chunk: Chunk.Chunk): Chunk.ErrorCause => ({
  _tag: "UnrecognizedChunkType",
  chunk: Chunk.encodeChunk(chunk).subarray(0, Chunk.chunkLength(chunk)),
})

/** §5.2: a peer's ASCONF (authenticated: {@link processChunks} checked it). */
export const onAsconf = (ctx: Ctx, st: State, chunk: Chunk.Asconf, from: PeerAddress): void => {
  const asconf = st.asconf
  if (asconf === undefined) {
    // Not negotiated: an unknown chunk type whose upper bits (11) say skip and report.
    queueChunk(ctx, st, from, { _tag: "OperationError", causes: [unrecognized(chunk)] })
    return
  }
  switch (Asconf.checkSerial(asconf.peerSerial, chunk.serialNumber)) {
    case "Stale":
      emit(ctx, { _tag: "Dropped", reason: "AsconfStaleSerial" })
      return
    case "Retransmission":
      // C3: our ASCONF-ACK was lost; send the same one again, change nothing.
      if (asconf.lastAck !== undefined) queueChunk(ctx, st, from, asconf.lastAck)
      return
    case "Next":
      break
  }
  // V1–V4: the requests in order; after the first refusal every success is reported too.
  const responses: Array<Chunk.AsconfParameter> = []
  let refused = false
  for (const request of chunk.parameters) {
    const response = applyAsconfRequest(ctx, st, request, from)
    if (response === "Stop") break
    if (response === "Ignore") continue
    if (response !== undefined) {
      responses.push(response)
      refused = true
    } else if (refused && "correlationId" in request) {
      responses.push({ _tag: "SuccessIndication", correlationId: request.correlationId })
    }
  }
  asconf.peerSerial = chunk.serialNumber
  asconf.lastAck = { _tag: "AsconfAck", serialNumber: chunk.serialNumber, parameters: responses }
  // C5: the ASCONF-ACK goes to the source of the ASCONF.
  queueChunk(ctx, st, from, asconf.lastAck)
}

/** A host named by an address parameter: its text, the source's for the wildcard. */
const requestHost = (address: Chunk.Parameter, from: PeerAddress): string | undefined =>
  Asconf.isWildcard(address)
    ? S.canonicalHost(from.host)
    : address._tag === "Ipv4Address" || address._tag === "Ipv6Address"
      ? S.listedAddresses([address])[0]
      : undefined

/**
 * Applies one ASCONF request (§5.2 V1): undefined on success, else the response to send;
 * "Ignore" for a parameter with no place in an ASCONF, "Stop" for an unknown one whose
 * upper bits say stop (RFC 9260 §3.2.1, reported first when they say so).
 */
const applyAsconfRequest = (
  ctx: Ctx,
  st: State,
  request: Chunk.AsconfParameter,
  from: PeerAddress,
): Chunk.AsconfParameter | undefined | "Ignore" | "Stop" => {
  const quoted = () => Chunk.encodeAsconfParameter(request)
  switch (request._tag) {
    case "ErrorCauseIndication":
    case "SuccessIndication":
      return "Ignore"
    case "UnknownAsconfParameter": {
      const action = Chunk.parameterTypeAction(request.type)
      if (action === "Stop") return "Stop"
      if (action === "Skip") return "Ignore"
      return Asconf.refusal(request, Chunk.CauseCode.UnrecognizedParameters, quoted())
    }
    case "AddIpAddress": {
      const host = requestHost(request.address, from)
      if (host === undefined) {
        return Asconf.refusal(request, Chunk.CauseCode.InvalidMandatoryParameter, quoted())
      }
      if (pathIndex(st, host) >= 0) return undefined
      const index = addPath(st, host, from.udpPort, false)
      if (index < 0) return Asconf.refusal(request, Asconf.CauseCode.ResourceShortage, quoted())
      // Unconfirmed until it answers a HEARTBEAT (RFC 9260 §5.4): no data goes there before.
      startHeartbeat(ctx, st, index)
      return undefined
    }
    case "DeleteIpAddress": {
      const source = S.canonicalHost(from.host)
      if (Asconf.isWildcard(request.address)) {
        // §4.2.2: every address but the source.
        if (pathIndex(st, source) < 0) {
          return Asconf.refusal(request, Asconf.CauseCode.NoAuthorization, quoted())
        }
        for (let index = st.paths.length - 1; index >= 0; index--) {
          if (st.paths[index]!.host !== source) removePath(ctx, st, index)
        }
        return undefined
      }
      const host = requestHost(request.address, from)
      if (host === undefined) {
        return Asconf.refusal(request, Chunk.CauseCode.UnresolvableAddress, quoted())
      }
      if (host === source) {
        return Asconf.refusal(request, Asconf.CauseCode.DeleteSourceAddress, quoted())
      }
      const index = pathIndex(st, host)
      // Not part of the association: nothing to delete, and nothing wrong (§5.2).
      if (index < 0) return undefined
      if (st.paths.length === 1) {
        return Asconf.refusal(request, Asconf.CauseCode.DeleteLastRemainingAddress, quoted())
      }
      removePath(ctx, st, index)
      return undefined
    }
    case "SetPrimaryAddress": {
      const host = requestHost(request.address, from)
      const index = host === undefined ? -1 : pathIndex(st, host)
      if (index < 0) return Asconf.refusal(request, Chunk.CauseCode.UnresolvableAddress, quoted())
      if (index !== st.primary) {
        st.primary = index
        handOver(ctx, st, index)
      }
      emit(ctx, { _tag: "PathChange", host: st.paths[index]!.host, state: "Primary" })
      return undefined
    }
  }
}

/**
 * The peer named a new primary (it moved there: a takeover, a handover). RFC 5061 leaves
 * the DATA in flight on the other paths to their T3 timers; like usrsctp's fast handoff it
 * is retransmitted to the new primary at once instead, ahead of any new DATA, so the peer's
 * messages arrive in TSN order rather than the new ones first and the old ones an RTO later.
 */
const handOver = (ctx: Ctx, st: State, index: number): void => {
  const out = st.outstanding
  for (let position = st.outstandingHead; position < out.length; position++) {
    const chunk = out[position]!
    if (chunk.inFlight && chunk.path !== index) markRetransmit(st, chunk)
  }
  st.retransmitPath = index
  for (let other = 0; other < st.paths.length; other++) {
    const path = st.paths[other]!
    if (other !== index && path.flightBytes === 0) cancelTimer(ctx, st, t3Name(path))
  }
}

/**
 * Removes a path (a peer's Delete IP Address): its timers stop, its DATA in flight is
 * retransmitted elsewhere, and every index into the paths moves down past it.
 */
const removePath = (ctx: Ctx, st: State, index: number): void => {
  const path = st.paths[index]!
  cancelTimer(ctx, st, t3Name(path))
  cancelTimer(ctx, st, hbName(path))
  const out = st.outstanding
  for (let position = st.outstandingHead; position < out.length; position++) {
    const chunk = out[position]!
    if (chunk.path === index && chunk.inFlight) markRetransmit(st, chunk)
  }
  st.paths.splice(index, 1)
  const moved = (at: number): number => (at > index ? at - 1 : at === index ? 0 : at)
  for (let position = st.outstandingHead; position < out.length; position++) {
    out[position]!.path = moved(out[position]!.path)
  }
  const primaryRemoved = st.primary === index
  st.primary = moved(st.primary)
  st.retransmitPath = moved(st.retransmitPath)
  st.lastDataPath = moved(st.lastDataPath)
  if (st.forwardTsn !== undefined) st.forwardTsn.path = moved(st.forwardTsn.path)
  if (primaryRemoved) st.primary = dataPath(st)
}

/**
 * §5.3: the ASCONF-ACK of our ASCONF. A serial number we never sent is illegal: ABORT with
 * the Illegal ASCONF-ACK cause (false: nothing more of the packet is processed).
 */
export const onAsconfAck = (
  ctx: Ctx,
  st: State,
  ack: Chunk.AsconfAck,
  from: PeerAddress,
): boolean => {
  const asconf = st.asconf
  if (asconf === undefined) return true
  switch (
    Asconf.checkAck(asconf.pending?.serialNumber, add32(asconf.nextSerial, -1), ack.serialNumber)
  ) {
    case "Stale":
      emit(ctx, { _tag: "Dropped", reason: "AsconfAckStale" })
      return true
    case "Illegal": {
      const causes: Array<Chunk.ErrorCause> = [
        { _tag: "UnknownCause", code: Asconf.CauseCode.IllegalAsconfAck, value: new Uint8Array(0) },
      ]
      sendAbort(ctx, st, from, st.peerTag, causes)
      emit(ctx, { _tag: "CommLost", reason: "IllegalAsconfAck" })
      close(ctx, st, "Closed")
      return false
    }
    case "Matches":
      break
  }
  // A5: stop T4, clear the error counters; A6: report what the peer refused.
  cancelTimer(ctx, st, "T4-asconf")
  const index = pathIndex(st, asconf.pendingHost)
  if (index >= 0) st.paths[index]!.errorCount = 0
  st.errorCount = 0
  asconf.pending = undefined
  const causes = ack.parameters.flatMap((p) => (p._tag === "ErrorCauseIndication" ? p.causes : []))
  if (causes.length > 0) emit(ctx, { _tag: "PeerError", causes })
  const next = asconf.nextPrimary
  delete asconf.nextPrimary
  requestPrimary(ctx, st, next)
  return true
}

/** §4.1.1 A3–A4: sends the pending ASCONF to path `index` and (re)starts T4. */
export const sendAsconf = (ctx: Ctx, st: State, index: number): void => {
  const asconf = st.asconf
  const path = st.paths[index]
  if (asconf?.pending === undefined || path === undefined) return
  asconf.pendingHost = path.host
  queueChunk(ctx, st, addressOf(path), asconf.pending)
  setTimer(ctx, st, "T4-asconf", ctx.now + path.rto.rto)
}

/** §4.1.2 B1–B5: T4 expired: count the error, back off, resend the same ASCONF elsewhere. */
export const onT4 = (ctx: Ctx, st: State): void => {
  if (st.asconf?.pending === undefined) return
  const index = pathIndex(st, st.asconf.pendingHost)
  if (index >= 0) {
    const path = st.paths[index]!
    path.rto = Rto.backoff(path.rto, rtoConfig(st.config))
    pathError(ctx, st, index, true)
  } else {
    associationError(ctx, st, "MaxRetransmissions")
  }
  if (isClosed(st)) return
  sendAsconf(ctx, st, index >= 0 ? alternatePath(st, index) : dataPath(st))
}

/** Read through a call so that TypeScript does not keep an earlier narrowing of `name`. */
export const isClosed = (st: State): boolean => st.name === "Closed"

export const abortReason = (causes: ReadonlyArray<Chunk.ErrorCause>): string =>
  causes.length === 0 ? "Abort" : `Abort: ${causes.map((cause) => cause._tag).join(", ")}`

export const onOperationError = (ctx: Ctx, st: State, chunk: Chunk.OperationError): void => {
  emit(ctx, { _tag: "PeerError", causes: chunk.causes })
  // §5.2.6: a Stale Cookie error in COOKIE-ECHOED: start over with a fresh INIT asking for
  // a longer cookie life (Cookie Preservative), bounded by Max.Init.Retransmits.
  const stale = chunk.causes.find((cause) => cause._tag === "StaleCookie")
  if (stale !== undefined && st.name === "CookieEchoed" && st.init !== undefined) {
    st.initRetransmits++
    if (st.initRetransmits > st.config.initRetransmitsMax) {
      emit(ctx, { _tag: "CommLost", reason: "StaleCookie" })
      close(ctx, st, "Closed")
      return
    }
    cancelTimer(ctx, st, "T1-cookie")
    const increment = Math.max(1, Math.ceil(stale.stalenessUs / 1000)) * 2
    st.init = {
      ...st.init,
      parameters: [
        ...st.init.parameters.filter((p) => p._tag !== "CookiePreservative"),
        { _tag: "CookiePreservative", lifeSpanIncrementMs: increment },
      ],
    }
    st.peerTag = 0
    st.cookie = undefined
    st.name = "CookieWait"
    sendAlone(ctx, st, addressOf(st.paths[st.primary]!), 0, st.init)
    setTimer(ctx, st, "T1-init", ctx.now + st.paths[st.primary]!.rto.rto)
  }
}
