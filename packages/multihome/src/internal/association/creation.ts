/**
 * The association machine: Creation.
 */

import * as Auth from "../../Auth.ts"
import * as Chunk from "../../Chunk.ts"
import * as Cookie from "../../Cookie.ts"
import { Reassembly } from "../../Reassembly.ts"
import { add32 } from "../../Serial.ts"
import { TsnTracker } from "../../TsnTracker.ts"
import * as S from "../association-support.ts"
import { queueChunk, sendAlone } from "./bundling.ts"
import type { Config } from "./config.ts"
import { addPath, addressOf, type Ctx, emit, makeCtx, setTimer } from "./context.ts"
import type { Input, PeerAddress, Result } from "./models.ts"
import { finish } from "./outbound.ts"
import { startHeartbeat } from "./paths.ts"
import { processChunks } from "./receive.ts"
import type { State } from "./state.ts"

export const cookieSecretBytes = 32

/**
 * Where an association's randomness comes from: `"crypto"` (node:crypto; what a real
 * endpoint uses) or a number seeding a PRNG (deterministic simulation only: its tags and
 * secrets are predictable).
 *
 * @since 0.1.0
 * @category models
 */
export type Seed = S.Seed

const blankState = (config: Config, seed: Seed): State => {
  const rng = S.makeRng(seed)
  const secrets = Cookie.CookieSecrets.create(S.nextBytes(rng, cookieSecretBytes), 0)
  return {
    config,
    rng,
    name: "Closed",
    localPort: config.localPort,
    peerPort: 0,
    myTag: 0,
    peerTag: 0,
    myInitialTsn: 0,
    peerInitialTsn: 0,
    outboundStreams: 0,
    inboundStreams: 0,
    paths: [],
    primary: 0,
    retransmitPath: 0,
    peerRwnd: 0,
    nextTsn: 0,
    lastCumAck: 0,
    outstanding: [],
    outstandingHead: 0,
    flightBytes: 0,
    retransmitCount: 0,
    fastRecovery: false,
    fastRecoveryExit: 0,
    queue: [],
    queueHead: 0,
    queuedBytes: 0,
    bufferedBytes: 0,
    ssnOut: [],
    tracker: undefined,
    reassembly: undefined,
    sackNow: false,
    packetsSinceSack: 0,
    lastDataPath: 0,
    errorCount: 0,
    initRetransmits: 0,
    init: undefined,
    cookie: undefined,
    cookieSecrets: secrets,
    secretsRotatedAt: undefined,
    resynchronizing: false,
    inboundResync: undefined,
    forwardTsnSupported: false,
    forwardTsn: undefined,
    auth: undefined,
    asconf: undefined,
    timers: {},
  }
}

export const localAddressParameters = (config: Config): Array<Chunk.Parameter> => {
  const parameters: Array<Chunk.Parameter> = []
  let v4 = false
  let v6 = false
  for (const address of config.localAddresses) {
    const parameter = S.addressParameter(address)
    if (parameter === undefined) continue
    parameters.push(parameter)
    if (parameter._tag === "Ipv4Address") v4 = true
    else v6 = true
  }
  if (v4 || v6 || parameters.length === 0) {
    parameters.push({ _tag: "SupportedAddressTypes", addressTypes: [5, 6] })
  }
  return parameters
}

/** Chunk types this end accepts only authenticated: ASCONF and ASCONF-ACK (RFC 5061 §4.1.1). */
const requiredChunks = (config: Config): ReadonlyArray<number> =>
  config.asconf ? [Chunk.ChunkType.Asconf, Chunk.ChunkType.AsconfAck] : []

/**
 * The INIT / INIT ACK parameters of the extensions offered: RFC 4895's RANDOM, CHUNKS and
 * HMAC-ALGO, and Supported Extensions (RFC 5061 §4.2.7) naming AUTH, ASCONF, ASCONF-ACK
 * and FORWARD TSN. None when `config.auth` is off.
 */
export const extensionParameters = (config: Config, random: Uint8Array): Array<Chunk.Parameter> =>
  config.auth
    ? [
        ...Auth.localParameters(random, requiredChunks(config)),
        {
          _tag: "SupportedExtensions",
          chunkTypes: Uint8Array.from([
            Chunk.ChunkType.ForwardTsn,
            Chunk.ChunkType.Auth,
            ...requiredChunks(config),
          ]),
        },
      ]
    : []

/** The parameters of the peer's INIT / INIT ACK that AUTH and ASCONF depend on. */
export const peerExtensionParameters = (
  parameters: ReadonlyArray<Chunk.Parameter>,
): Array<Chunk.Parameter> =>
  parameters.filter(
    (p) =>
      p._tag === "Random" ||
      p._tag === "ChunkList" ||
      p._tag === "HmacAlgo" ||
      p._tag === "SupportedExtensions",
  )

/**
 * AUTH for an association set up from a cookie: the cookie's `extra` holds our RANDOM and
 * the peer's extension parameters (see {@link initAckFor}).
 */
export const cookieAuth = (
  config: Config,
  contents: Cookie.CookieContents,
): Auth.Negotiated | undefined => {
  if (!config.auth || contents.extra === undefined) return undefined
  const parameters = Chunk.decodeParameters(contents.extra, 0, contents.extra.length)
  if (Chunk.isFault(parameters)) return undefined
  const [ours, ...peer] = parameters
  if (ours?._tag !== "Random") return undefined
  return Auth.negotiate(extensionParameters(config, ours.random), peer)
}

/** Encodes parameters back to back (for the cookie's `extra`). */
export const encodeParameters = (parameters: ReadonlyArray<Chunk.Parameter>): Uint8Array => {
  const encoded = parameters.map((p) => Chunk.encodeParameter(p))
  const bytes = new Uint8Array(encoded.reduce((sum, e) => sum + e.length, 0))
  let at = 0
  for (const e of encoded) {
    bytes.set(e, at)
    at += e.length
  }
  return bytes
}

/**
 * Starts an association as its initiator: sends INIT to `peer` (COOKIE-WAIT, T1-init).
 * `peerAddresses` are further addresses of the peer known in advance (they become paths
 * once the peer lists them in its INIT ACK, or at once, unconfirmed).
 *
 * @since 0.1.0
 * @category constructors
 */
export const connect = (
  config: Config,
  options: {
    readonly peer: PeerAddress
    readonly peerPort: number
    readonly peerAddresses?: ReadonlyArray<string>
    readonly seed: Seed
    readonly nowMs: number
  },
): Result => {
  const st = blankState(config, options.seed)
  const ctx = makeCtx(options.nowMs)
  st.peerPort = options.peerPort
  st.myTag = S.nextTag(st.rng)
  st.myInitialTsn = S.nextU32(st.rng)
  st.nextTsn = st.myInitialTsn
  st.lastCumAck = add32(st.myInitialTsn, -1)
  addPath(st, S.canonicalHost(options.peer.host), options.peer.udpPort, false)
  for (const host of options.peerAddresses ?? []) {
    addPath(st, S.canonicalHost(host), options.peer.udpPort, false)
  }
  st.init = {
    _tag: "Init",
    initiateTag: st.myTag,
    advertisedReceiverWindowCredit: config.receiveWindow,
    outboundStreams: config.outboundStreams,
    inboundStreams: config.inboundStreamsMax,
    initialTsn: st.myInitialTsn,
    parameters: [
      ...localAddressParameters(config),
      { _tag: "ForwardTsnSupported" },
      ...extensionParameters(
        config,
        config.auth ? S.nextBytes(st.rng, Auth.randomLength) : new Uint8Array(0),
      ),
    ],
  }
  st.name = "CookieWait"
  sendAlone(ctx, st, addressOf(st.paths[0]!), 0, st.init)
  setTimer(ctx, st, "T1-init", ctx.now + st.paths[0]!.rto.rto)
  return { state: st, outputs: ctx.out }
}

/** The negotiated stream counts and TCB fields shared by both ends of the handshake. */
export const establishFields = (
  st: State,
  fields: {
    readonly peerTag: number
    readonly peerInitialTsn: number
    readonly peerRwnd: number
    readonly outboundStreams: number
    readonly inboundStreams: number
    /** The peer offered Forward-TSN-Supported (we always do). */
    readonly forwardTsn?: boolean
    /** AUTH as negotiated (undefined: none). */
    readonly auth?: Auth.Negotiated | undefined
  },
): void => {
  st.auth = fields.auth
  st.asconf =
    fields.auth?.asconf === true
      ? {
          nextSerial: st.myInitialTsn,
          pending: undefined,
          pendingHost: "",
          peerSerial: add32(fields.peerInitialTsn, -1),
          lastAck: undefined,
        }
      : undefined
  st.forwardTsnSupported = fields.forwardTsn === true
  st.forwardTsn = undefined
  st.peerTag = fields.peerTag
  st.peerInitialTsn = fields.peerInitialTsn
  st.peerRwnd = fields.peerRwnd
  st.outboundStreams = fields.outboundStreams
  st.inboundStreams = fields.inboundStreams
  st.tracker = TsnTracker.create(fields.peerInitialTsn)
  st.reassembly = Reassembly.create(fields.inboundStreams)
  st.ssnOut = new Array<number>(fields.outboundStreams).fill(0)
}

export const commUp = (ctx: Ctx, st: State): void => {
  st.name = "Established"
  st.errorCount = 0
  emit(ctx, {
    _tag: "CommUp",
    peerAddresses: st.paths.map((path) => path.host),
    inboundStreams: st.inboundStreams,
    outboundStreams: st.outboundStreams,
  })
  for (let index = 0; index < st.paths.length; index++) startHeartbeat(ctx, st, index)
}

/**
 * Builds the association a valid State Cookie describes (used by the Listener on COOKIE
 * ECHO, §5.1.5): ESTABLISHED, COOKIE ACK sent, CommUp emitted, and the chunks bundled
 * after the COOKIE ECHO processed. `secrets`: the listener's, copied, so that a
 * retransmitted COOKIE ECHO still opens.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromCookie = (
  config: Config,
  contents: Cookie.CookieContents,
  input: Extract<Input, { _tag: "Receive" }>,
  seed: Seed,
  secrets?: Cookie.CookieSecrets,
): Result => {
  const st = blankState(config, seed)
  // The listener's secrets (a copy): a retransmitted COOKIE ECHO, when our COOKIE ACK was
  // lost, reaches the association and must open (§5.2.4 case D).
  if (secrets !== undefined) {
    st.cookieSecrets = Cookie.CookieSecrets.restore(secrets.snapshot())
    st.secretsRotatedAt = input.nowMs
  }
  const ctx = makeCtx(input.nowMs)
  st.peerPort = contents.peerPort
  st.myTag = contents.myTag
  st.myInitialTsn = contents.myInitialTsn
  st.nextTsn = contents.myInitialTsn
  st.lastCumAck = add32(contents.myInitialTsn, -1)
  establishFields(st, {
    peerTag: contents.peerTag,
    peerInitialTsn: contents.peerInitialTsn,
    peerRwnd: contents.peerRwnd,
    outboundStreams: contents.outboundStreams,
    inboundStreams: contents.inboundStreams,
    forwardTsn: contents.forwardTsn === true,
    auth: cookieAuth(config, contents),
  })
  const from = S.canonicalHost(input.from.host)
  addPath(st, from, input.from.udpPort, true)
  for (const host of contents.peerAddresses) addPath(st, host, input.from.udpPort, false)
  queueChunk(ctx, st, input.from, { _tag: "CookieAck" })
  commUp(ctx, st)
  processChunks(ctx, st, input.message.chunks.slice(1), input.from, 0)
  finish(ctx, st)
  return { state: st, outputs: ctx.out }
}
