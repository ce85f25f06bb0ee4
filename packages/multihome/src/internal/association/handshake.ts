/**
 * The association machine: Handshake.
 */

import * as Auth from "../../Auth.ts"
import * as Chunk from "../../Chunk.ts"
import * as Congestion from "../../Congestion.ts"
import * as Cookie from "../../Cookie.ts"
import * as Rto from "../../Rto.ts"
import { add32 } from "../../Serial.ts"
import * as S from "../association-support.ts"
import { abortReason } from "./asconf.ts"
import { pathAddress, queueChunk, sendAlone } from "./bundling.ts"
import {
  addPath,
  addressOf,
  type Ctx,
  cancelTimer,
  emit,
  pathIndex,
  pmdcs,
  rtoConfig,
  setTimer,
} from "./context.ts"
import { commUp, cookieAuth, cookieSecretBytes, establishFields } from "./creation.ts"
import { checkInit, initAckFor } from "./init.ts"
import type { Input, PeerAddress } from "./models.ts"
import { sendHeartbeat } from "./paths.ts"
import { processChunks } from "./receive.ts"
import { close, failQueued, sendAbort } from "./shutdown.ts"
import type { State } from "./state.ts"

export const onInitAck = (ctx: Ctx, st: State, ack: Chunk.InitAck, from: PeerAddress): void => {
  if (st.name !== "CookieWait") {
    emit(ctx, { _tag: "Dropped", reason: "UnexpectedInitAck" })
    return
  }
  const check = checkInit(ack)
  if (check._tag === "Abort") {
    sendAbort(ctx, st, from, ack.initiateTag, check.causes)
    emit(ctx, { _tag: "CommLost", reason: abortReason(check.causes) })
    close(ctx, st, "Closed")
    return
  }
  const cookie = ack.parameters.find((p) => p._tag === "StateCookie")
  if (cookie === undefined) {
    const causes: Array<Chunk.ErrorCause> = [
      { _tag: "MissingMandatoryParameter", missingTypes: [Chunk.ParameterType.StateCookie] },
    ]
    sendAbort(ctx, st, from, ack.initiateTag, causes)
    emit(ctx, { _tag: "CommLost", reason: abortReason(causes) })
    close(ctx, st, "Closed")
    return
  }
  cancelTimer(ctx, st, "T1-init")
  establishFields(st, {
    peerTag: ack.initiateTag,
    peerInitialTsn: ack.initialTsn,
    peerRwnd: ack.advertisedReceiverWindowCredit,
    outboundStreams: Math.min(st.config.outboundStreams, ack.inboundStreams),
    inboundStreams: Math.min(st.config.inboundStreamsMax, ack.outboundStreams),
    forwardTsn: ack.parameters.some((p) => p._tag === "ForwardTsnSupported"),
    auth:
      st.config.auth && st.init !== undefined
        ? Auth.negotiate(st.init.parameters, ack.parameters)
        : undefined,
  })
  const fromHost = S.canonicalHost(from.host)
  const primary = addPath(st, fromHost, from.udpPort, true)
  if (primary >= 0) st.primary = primary
  const processed = Chunk.processUnknownParameters(ack.parameters)
  for (const host of S.listedAddresses(processed.process)) addPath(st, host, from.udpPort, false)
  // Addresses we guessed at connect that the peer did not list and never answered from are
  // not the peer's: forget them (before any timer refers to them).
  const listed = new Set([fromHost, ...S.listedAddresses(processed.process)])
  st.paths = st.paths.filter((path) => listed.has(path.host))
  st.primary = Math.max(0, pathIndex(st, fromHost))
  st.retransmitPath = st.primary
  st.cookie = cookie.cookie.slice()
  st.name = "CookieEchoed"
  st.initRetransmits = 0
  sendCookieEcho(ctx, st)
  if (processed.report.length > 0) {
    // §5.1 C: unrecognized INIT ACK parameters are reported in an ERROR bundled with COOKIE ECHO.
    queueChunk(ctx, st, addressOf(st.paths[st.primary]!), {
      _tag: "OperationError",
      causes: [Chunk.unrecognizedParameters(processed.report)],
    })
  }
  setTimer(ctx, st, "T1-cookie", ctx.now + st.paths[st.primary]!.rto.rto)
}

/**
 * Sends the COOKIE ECHO to path `index`. §5.4: to an unconfirmed address it goes bundled
 * with a HEARTBEAT carrying a nonce (the COOKIE ECHO first, §5.1 D).
 */
export const sendCookieEcho = (ctx: Ctx, st: State, index = st.primary): void => {
  const path = st.paths[index]!
  queueChunk(ctx, st, addressOf(path), { _tag: "CookieEcho", cookie: st.cookie! })
  if (!path.confirmed) sendHeartbeat(ctx, st, index)
}

/** §5.2.1 and §5.2.2: an INIT for an association that exists. */
export const onInit = (ctx: Ctx, st: State, init: Chunk.Init, from: PeerAddress): void => {
  const check = checkInit(init)
  if (check._tag === "Discard") {
    emit(ctx, { _tag: "Dropped", reason: "InitTagZero" })
    return
  }
  if (check._tag === "Abort") {
    sendAbort(ctx, st, from, init.initiateTag, check.causes)
    return
  }
  if (st.name === "ShutdownAckSent") {
    // §9.2: discard the INIT and retransmit the SHUTDOWN ACK.
    queueChunk(ctx, st, pathAddress(st, st.primary, from), { _tag: "ShutdownAck" })
    return
  }
  // §5.2.2: an INIT adding addresses is refused (the restart must not hijack new paths).
  const known = new Set(st.paths.map((path) => path.host))
  const added = S.listedAddresses(init.parameters).filter((host) => !known.has(host))
  if (!known.has(S.canonicalHost(from.host))) added.push(S.canonicalHost(from.host))
  if (added.length > 0 && st.name !== "CookieWait") {
    const addresses = added
      .map(S.addressParameter)
      .filter((p): p is Chunk.Parameter => p !== undefined)
      .map((p) => Chunk.encodeParameter(p))
    const total = new Uint8Array(addresses.reduce((sum, a) => sum + a.length, 0))
    let at = 0
    for (const bytes of addresses) {
      total.set(bytes, at)
      at += bytes.length
    }
    sendAbort(ctx, st, from, init.initiateTag, [
      { _tag: "RestartWithNewAddresses", addresses: total },
    ])
    return
  }
  if (
    st.secretsRotatedAt === undefined ||
    ctx.now - st.secretsRotatedAt >= st.config.validCookieLifeMs
  ) {
    rotateSecrets(st, ctx.now)
  }
  const collision = st.name === "CookieWait" || st.name === "CookieEchoed"
  // COOKIE-WAIT / COOKIE-ECHOED: same Initiate Tag and TSN as our INIT (§5.2.1); tie-tags
  // 0 in COOKIE-WAIT. Otherwise a new tag, tie-tags = the current tags (§5.2.2).
  const myTag = collision ? st.myTag : S.nextTag(st.rng)
  const myInitialTsn = collision ? st.myInitialTsn : S.nextU32(st.rng)
  const ack = initAckFor({
    config: st.config,
    secrets: st.cookieSecrets,
    init,
    unrecognized: check.unrecognized,
    from,
    peerPort: st.peerPort,
    myTag,
    myInitialTsn,
    nowMs: ctx.now,
    ...(st.name === "CookieWait" ? {} : { tieTagLocal: st.myTag, tieTagPeer: st.peerTag }),
    ...(st.config.auth ? { authRandom: collisionRandom(st, collision) } : {}),
  })
  sendAlone(ctx, st, from, init.initiateTag, ack)
}

/** Our RANDOM for an INIT ACK: in a collision the one of our INIT (one key vector per end). */
const collisionRandom = (st: State, collision: boolean): Uint8Array => {
  const ours = collision ? st.init?.parameters.find((p) => p._tag === "Random") : undefined
  return ours?._tag === "Random" ? ours.random : S.nextBytes(st.rng, Auth.randomLength)
}

const rotateSecrets = (st: State, now: number): void => {
  st.cookieSecrets.rotate(S.nextBytes(st.rng, cookieSecretBytes), now)
  st.secretsRotatedAt = now
}

/** §5.2.4: a COOKIE ECHO reaching an existing association. */
export const onCookieEcho = (
  ctx: Ctx,
  st: State,
  input: Extract<Input, { _tag: "Receive" }>,
): void => {
  const echo = input.message.chunks[0] as Chunk.CookieEcho
  const opened = Cookie.open(st.cookieSecrets, echo.cookie, ctx.now)
  if (opened._tag === "Invalid") {
    emit(ctx, { _tag: "Dropped", reason: "InvalidCookie" })
    return
  }
  let c: Cookie.CookieContents
  if (opened._tag === "Stale") {
    // An authentic cookie past its life that names this very association (case D: a
    // COOKIE ECHO retransmitted while our COOKIE ACKs were lost) is still answered: the
    // TCB exists, so staleness cannot let a new association in.
    const sameAssociation =
      opened.contents.myTag === st.myTag &&
      opened.contents.peerTag === st.peerTag &&
      st.name !== "CookieWait"
    if (!sameAssociation) {
      queueChunk(ctx, st, input.from, {
        _tag: "OperationError",
        causes: [{ _tag: "StaleCookie", stalenessUs: opened.stalenessUs }],
      })
      return
    }
    c = opened.contents
  } else {
    c = opened.contents
  }
  if (input.message.verificationTag !== c.myTag) {
    emit(ctx, { _tag: "Dropped", reason: "CookieTagMismatch" })
    return
  }
  const from = S.canonicalHost(input.from.host)
  const index = pathIndex(st, from)
  if (index >= 0) st.paths[index]!.udpPort = input.from.udpPort
  const rest = input.message.chunks.slice(1)
  if (
    c.myTag !== st.myTag &&
    c.peerTag !== st.peerTag &&
    c.tieTagLocal === st.myTag &&
    c.tieTagPeer === st.peerTag
  ) {
    // Case A: the peer restarted.
    if (st.name === "ShutdownAckSent") {
      queueChunk(ctx, st, input.from, { _tag: "ShutdownAck" }, undefined, c.peerTag)
      queueChunk(
        ctx,
        st,
        input.from,
        {
          _tag: "OperationError",
          causes: [{ _tag: "CookieReceivedWhileShuttingDown" }],
        },
        undefined,
        c.peerTag,
      )
      return
    }
    failQueued(ctx, st)
    for (const name of Object.keys(st.timers))
      if (!name.startsWith("HB:")) cancelTimer(ctx, st, name)
    st.myTag = c.myTag
    st.myInitialTsn = c.myInitialTsn
    st.nextTsn = c.myInitialTsn
    st.lastCumAck = add32(c.myInitialTsn, -1)
    establishFields(st, { ...c, auth: cookieAuth(st.config, c) })
    for (const path of st.paths) {
      path.flightBytes = 0
      path.rttPending = false
      path.congestion = Congestion.initial(pmdcs(st))
      path.rto = Rto.initial(rtoConfig(st.config))
      path.errorCount = 0
    }
    st.fastRecovery = false
    st.name = "Established"
    st.errorCount = 0
    emit(ctx, { _tag: "Restart" })
    queueChunk(ctx, st, input.from, { _tag: "CookieAck" })
    processChunks(ctx, st, rest, input.from, index)
    return
  }
  if (c.myTag === st.myTag && c.peerTag !== st.peerTag) {
    // Case B: an INIT collision; the cookie holds the peer's real tag.
    cancelTimer(ctx, st, "T1-init")
    cancelTimer(ctx, st, "T1-cookie")
    const wasUp = st.name !== "CookieWait" && st.name !== "CookieEchoed"
    establishFields(st, { ...c, auth: cookieAuth(st.config, c) })
    if (index < 0) addPath(st, from, input.from.udpPort, true)
    for (const host of c.peerAddresses) addPath(st, host, input.from.udpPort, false)
    queueChunk(ctx, st, input.from, { _tag: "CookieAck" })
    if (!wasUp) commUp(ctx, st)
    processChunks(ctx, st, rest, input.from, index)
    return
  }
  if (c.myTag !== st.myTag && c.peerTag === st.peerTag && c.tieTagLocal === undefined) {
    // Case C: our INIT crossed an INIT ACK of the peer; silently discarded.
    emit(ctx, { _tag: "Dropped", reason: "CookieCaseC" })
    return
  }
  if (c.myTag === st.myTag && c.peerTag === st.peerTag) {
    // Case D: both tags match (e.g. a retransmitted COOKIE ECHO).
    if (st.name === "CookieWait" || st.name === "CookieEchoed") {
      cancelTimer(ctx, st, "T1-init")
      cancelTimer(ctx, st, "T1-cookie")
      commUp(ctx, st)
    }
    queueChunk(ctx, st, input.from, { _tag: "CookieAck" })
    processChunks(ctx, st, rest, input.from, index)
    return
  }
  emit(ctx, { _tag: "Dropped", reason: "CookieNoCase" })
}
