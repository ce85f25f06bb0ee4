/**
 * One SCTP association (RFC 9260) as a pure deterministic machine: the TCB is a mutable
 * {@link State}; {@link step} feeds it one {@link Input} (a received packet, a timer that
 * fired, a user command) and returns the {@link Output}s (packets to transmit, timers to
 * set or cancel, events for the user). There is no I/O, no clock and no `Math.random`:
 * time is `nowMs` of each input, randomness (verification tags, initial TSNs, heartbeat
 * nonces, cookie secrets, heartbeat jitter) comes from the OS CSPRNG, or, in simulation, from
 * a seeded PRNG held in the state (see {@link Seed}).
 * Replaying the same inputs into a {@link restore}d {@link snapshot} yields the same
 * state and outputs — the cluster's replication relies on it.
 *
 * Timers are both emitted (`SetTimer` / `CancelTimer`, by name; setting a name again
 * replaces its deadline) and recorded in the state, so {@link takeOver} can re-arm them
 * on a replica. Names: `T1-init`, `T1-cookie`, `T2-shutdown`, `T5-shutdown-guard`,
 * `SACK` (delayed SACK), `T4-asconf` (RFC 5061), `T3-rtx:<host>` and `HB:<host>` per path.
 * A `TimerFired` for a name not armed (or before its deadline) is ignored, so stale firings
 * are harmless.
 *
 * What the driver does: decode datagrams (CRC checked), demultiplex to the association by
 * verification tag ({@link myTag}) or by peer host and port ({@link peerHosts},
 * {@link peerPort}), feed packets that match none to the Listener, encode `Transmit`
 * packets with `Packet.encode` and send them to `to` (host and UDP port), run timers, and
 * forget the association on the `Closed` event.
 *
 * Byte fields of events and packets may be views into buffers the machine keeps; `Message`
 * data is owned by the receiver. `Send` takes over its `data` (fragments are views of it).
 *
 * Choices where RFC 9260 leaves room: new DATA avoids a path whose last transmission timed
 * out while a clean confirmed alternate exists, and such a path is probed every RTO (RFC
 * 7829 SCTP-PF with threshold 0), so a dead primary costs one RTO rather than a minute;
 * T1-cookie retransmissions go round robin over the peer's addresses, bundled with a
 * HEARTBEAT to an unconfirmed one (§5.4); an authentic but stale COOKIE ECHO naming this
 * very association is answered as case D. PR-SCTP (RFC 3758) is offered
 * (Forward-TSN-Supported) and FORWARD TSN understood on receipt; this end sends one only
 * after a {@link takeOver} with a reserve (it never abandons data otherwise). AUTH (RFC 4895,
 * see `Auth`) and ASCONF (RFC 5061, see `Asconf`) are offered (`Config.auth`,
 * `Config.asconf`): a peer's ASCONFs are accepted behind a valid AUTH chunk, and a
 * {@link takeOver} with `setPrimary` asks the peer to send to the new node's address. Not
 * implemented: gap-ack reneging (a gap-acked chunk is never resent unless T3 marks it),
 * DATA bundled with COOKIE ECHO, ECN (declined: not echoed), endpoint pair shared keys
 * (AUTH runs with Shared Key Identifier 0, the empty key), sending Add / Delete IP.
 *
 * @since 0.1.0
 */
import * as Asconf from "./Asconf.ts"
import * as Auth from "./Auth.ts"
import * as Chunk from "./Chunk.ts"
import * as Congestion from "./Congestion.ts"
import * as Cookie from "./Cookie.ts"
import * as S from "./internal/association-support.ts"
import * as Packet from "./Packet.ts"
import { Reassembly, type ReassemblySnapshot } from "./Reassembly.ts"
import * as Rto from "./Rto.ts"
import { add32, diff32, gt32, gte32, lt32, lte32 } from "./Serial.ts"
import { TsnTracker, type TsnTrackerSnapshot } from "./TsnTracker.ts"

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/**
 * Protocol parameters of an association (RFC 9260 §16 for the defaults).
 *
 * @since 0.1.0
 * @category config
 */
export interface Config {
  /** Our SCTP port. */
  readonly localPort: number
  /** IPs listed in INIT / INIT ACK (v4 and v6 text); empty: none (the source address only). */
  readonly localAddresses: ReadonlyArray<string>
  readonly rtoInitialMs: number
  readonly rtoMinMs: number
  readonly rtoMsMax: number
  /** Max.Burst: new-data packets sent at once. */
  readonly burstMax: number
  readonly associationMaxRetrans: number
  readonly pathMaxRetrans: number
  readonly initRetransmitsMax: number
  readonly heartbeatIntervalMs: number
  readonly validCookieLifeMs: number
  /** Delayed SACK: at most this long, and every second packet with DATA is SACKed at once. */
  readonly sackDelayMs: number
  /** SCTP packet bytes (the UDP payload). */
  readonly mtu: number
  /** The a_rwnd we offer, in bytes. */
  readonly receiveWindow: number
  /** OS: outbound streams we ask for. */
  readonly outboundStreams: number
  /** MIS: inbound streams we accept. */
  readonly inboundStreamsMax: number
  /** Bound on queued unsent plus unacknowledged user bytes; beyond it `Send` fails ("WouldBlock"). */
  readonly sendBufferBytes: number
  /**
   * Offer authenticated chunks (RFC 4895: RANDOM, CHUNKS, HMAC-ALGO in INIT / INIT ACK);
   * used when the peer offers them too.
   */
  readonly auth: boolean
  /**
   * Offer dynamic address reconfiguration (RFC 5061, needs `auth`): accept the peer's
   * ASCONFs and send Set Primary Address on a takeover.
   */
  readonly asconf: boolean
}

/**
 * The defaults of RFC 9260 §16 and a 1200-byte packet.
 *
 * @since 0.1.0
 * @category config
 */
export const defaultConfig: Config = {
  localPort: 5000,
  localAddresses: [],
  rtoInitialMs: 1000,
  rtoMinMs: 1000,
  rtoMsMax: 60000,
  burstMax: 4,
  associationMaxRetrans: 10,
  pathMaxRetrans: 5,
  initRetransmitsMax: 8,
  heartbeatIntervalMs: 30000,
  validCookieLifeMs: 60000,
  sackDelayMs: 200,
  mtu: 1200,
  receiveWindow: 131072,
  outboundStreams: 10,
  inboundStreamsMax: 65535,
  sendBufferBytes: 4 * 1024 * 1024,
  auth: true,
  asconf: true,
}

// ---------------------------------------------------------------------------------------
// Inputs, outputs, events
// ---------------------------------------------------------------------------------------

/**
 * A path's far end: the peer's IP and the UDP port its packets come from (RFC 6951).
 *
 * @since 0.1.0
 * @category models
 */
export interface PeerAddress {
  readonly host: string
  readonly udpPort: number
}

/**
 * A user command.
 *
 * @since 0.1.0
 * @category models
 */
export type Command =
  | {
      readonly _tag: "Send"
      readonly stream: number
      readonly ppid: number
      /** Taken over by the machine: the caller must not change it afterwards. */
      readonly data: Uint8Array
      readonly unordered: boolean
    }
  | { readonly _tag: "Shutdown" }
  | { readonly _tag: "Abort"; readonly reason?: string }
  | { readonly _tag: "SetPrimary"; readonly host: string }
  | { readonly _tag: "RequestHeartbeat"; readonly host: string }

/**
 * An input of {@link step}.
 *
 * @since 0.1.0
 * @category models
 */
export type Input =
  | {
      readonly _tag: "Receive"
      readonly from: PeerAddress
      /** Decoded, CRC already verified. */
      readonly packet: Packet.Packet
      /** The datagram as received, when the driver has it: replication ships it as it is. */
      readonly bytes?: Uint8Array
      readonly nowMs: number
    }
  | { readonly _tag: "TimerFired"; readonly timer: string; readonly nowMs: number }
  | { readonly _tag: "Command"; readonly command: Command; readonly nowMs: number }

/**
 * Something the user learns.
 *
 * - `SendFailed.reason`: "WouldBlock" (send buffer full), "InvalidStream", "NotEstablished",
 *   "Closed" (queued or outstanding data dropped by an abort or restart).
 * - `PeerError`: an ERROR chunk from the peer (its causes, views into the packet).
 * - `Dropped`: a packet or chunk ignored by a rule (for counters).
 * - `Closed`: the TCB is gone; the driver forgets the association.
 *
 * @since 0.1.0
 * @category models
 */
export type Event =
  | {
      readonly _tag: "CommUp"
      readonly peerAddresses: ReadonlyArray<string>
      readonly inboundStreams: number
      readonly outboundStreams: number
    }
  | {
      readonly _tag: "Message"
      readonly stream: number
      readonly ppid: number
      readonly unordered: boolean
      readonly data: Uint8Array
    }
  | {
      readonly _tag: "PathChange"
      readonly host: string
      readonly state: "Confirmed" | "Unreachable" | "Available" | "Primary"
    }
  | {
      readonly _tag: "SendFailed"
      readonly reason: "WouldBlock" | "InvalidStream" | "NotEstablished" | "Closed"
      readonly stream: number
      readonly ppid: number
      readonly bytes: number
    }
  | { readonly _tag: "CommLost"; readonly reason: string }
  | { readonly _tag: "PeerError"; readonly causes: ReadonlyArray<Chunk.ErrorCause> }
  | { readonly _tag: "Restart" }
  | { readonly _tag: "ShutdownComplete" }
  | { readonly _tag: "Dropped"; readonly reason: string }
  | { readonly _tag: "Closed" }

/**
 * What {@link step} asks the driver to do, in order.
 *
 * @since 0.1.0
 * @category models
 */
export type Output =
  | { readonly _tag: "Transmit"; readonly to: PeerAddress; readonly packet: Packet.Packet }
  | { readonly _tag: "SetTimer"; readonly timer: string; readonly atMs: number }
  | { readonly _tag: "CancelTimer"; readonly timer: string }
  | { readonly _tag: "Event"; readonly event: Event }

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

/**
 * The association's states (RFC 9260 §4).
 *
 * @since 0.1.0
 * @category models
 */
export type StateName =
  | "Closed"
  | "CookieWait"
  | "CookieEchoed"
  | "Established"
  | "ShutdownPending"
  | "ShutdownSent"
  | "ShutdownReceived"
  | "ShutdownAckSent"

/** A destination transport address of the peer (§5.4, §8). */
interface Path {
  host: string
  udpPort: number
  confirmed: boolean
  active: boolean
  errorCount: number
  rto: Rto.RtoState
  congestion: Congestion.CongestionState
  /** Bytes of DATA sent on this path and neither acknowledged nor marked for retransmission. */
  flightBytes: number
  heartbeatNonce: number
  heartbeatOutstanding: boolean
  lastSendMs: number
  /** One RTT measurement at a time per path (§6.3.1 C4), never on a retransmission (Karn). */
  rttPending: boolean
  rttTsn: number
  rttSentMs: number
}

/** A DATA chunk sent and not yet covered by the peer's cumulative TSN ack. */
interface Outstanding {
  tsn: number
  stream: number
  ssn: number
  ppid: number
  unordered: boolean
  beginning: boolean
  ending: boolean
  data: Uint8Array
  path: number
  transmissions: number
  /** Acknowledged by a gap ack block. */
  acked: boolean
  inFlight: boolean
  missIndications: number
  /** Marked for retransmission (T3 or fast retransmit). */
  retransmit: boolean
  /** Marked by fast retransmit: sent at once, outside cwnd (§7.2.4 step 3). */
  fast: boolean
  /** Fast-retransmitted once already: later losses wait for T3 (§7.2.4). */
  fastDone: boolean
}

/** A fragment waiting for its first transmission (TSN assigned when sent). */
interface Queued {
  stream: number
  ssn: number
  ppid: number
  unordered: boolean
  beginning: boolean
  ending: boolean
  data: Uint8Array
}

/**
 * The TCB. Opaque to the driver: read it through {@link info} and the accessors.
 *
 * @since 0.1.0
 * @category models
 */
export interface State {
  readonly config: Config
  rng: S.Rng
  name: StateName
  localPort: number
  peerPort: number
  myTag: number
  peerTag: number
  myInitialTsn: number
  peerInitialTsn: number
  outboundStreams: number
  inboundStreams: number
  paths: Array<Path>
  primary: number
  /** Where T3 retransmissions go: an active alternate of the path that timed out (§6.4.1). */
  retransmitPath: number
  peerRwnd: number
  nextTsn: number
  /** The peer's last cumulative TSN ack (§6.2.1): outstanding starts at lastCumAck + 1. */
  lastCumAck: number
  outstanding: Array<Outstanding>
  outstandingHead: number
  flightBytes: number
  retransmitCount: number
  fastRecovery: boolean
  fastRecoveryExit: number
  queue: Array<Queued>
  queueHead: number
  queuedBytes: number
  /** User bytes queued or outstanding (for sendBufferBytes). */
  bufferedBytes: number
  ssnOut: Array<number>
  tracker: TsnTracker | undefined
  reassembly: Reassembly | undefined
  sackNow: boolean
  packetsSinceSack: number
  /**
   * Set by a takeover (not replicated): the first SACK that reports a hole goes out split
   * so the peer fast-retransmits what it sent into the takeover's gap (`sendSplitSacks`).
   */
  splitFirstGapSack?: boolean
  lastDataPath: number
  errorCount: number
  initRetransmits: number
  /** The INIT we send (kept for T1-init retransmissions). */
  init: Chunk.Init | undefined
  /** The State Cookie to echo while COOKIE-ECHOED. */
  cookie: Uint8Array | undefined
  /** Rotating secrets for the cookies this association issues in §5.2 collisions. */
  cookieSecrets: Cookie.CookieSecrets
  secretsRotatedAt: number | undefined
  /**
   * Set by {@link takeOver} until a SACK falls within what we sent: a replica restored from
   * an older snapshot may see the peer acknowledge TSNs the dead primary sent after it.
   */
  resynchronizing: boolean
  /** Inbound resynchronisation after `takeOver(…, { resync: true })`, see {@link takeOver}. */
  inboundResync: InboundResync | undefined
  /** Both ends offered Forward-TSN-Supported (RFC 3758 PR-SCTP): FORWARD TSN understood. */
  forwardTsnSupported: boolean
  /** A FORWARD TSN to send after a reserve jump on takeover (see {@link takeOver}). */
  forwardTsn: PendingForwardTsn | undefined
  /** AUTH (RFC 4895) as negotiated at setup; undefined: the association runs without it. */
  auth: Auth.Negotiated | undefined
  /** ASCONF (RFC 5061) serial numbers and the request in flight; undefined: not negotiated. */
  asconf: AsconfState | undefined
  /** Armed timers: name → deadline (ms). */
  timers: Record<string, number>
}

/**
 * The ASCONF side of the TCB (plain data). `nextSerial` starts at our initial TSN (RFC 5061
 * §4.1.1 A2), `peerSerial` at the peer's initial TSN − 1 (§5.2 C1); `pending` is the ASCONF
 * sent and not yet acknowledged (T4-asconf runs), last sent to `pendingHost`; `nextPrimary` an
 * address to ask for once it is acknowledged (one ASCONF at a time, §4.1.1 A3); `lastAck` the
 * ASCONF-ACK answering `peerSerial`, resent for a retransmitted ASCONF (§5.2 C3).
 */
interface AsconfState {
  nextSerial: number
  pending: Chunk.Asconf | undefined
  pendingHost: string
  nextPrimary?: string
  peerSerial: number
  lastAck: Chunk.AsconfAck | undefined
}

/**
 * A replica's inbound resynchronisation of its ordered streams (plain data, see
 * {@link takeOver}): `candidates`, flat `[stream, tsn, ssn, …]`, the lowest-TSN ordered
 * chunk seen per stream not yet resolved; `seenStreams`, the streams resolved; `untilTsn`,
 * past which the mode ends.
 */
interface InboundResync {
  candidates: Array<number>
  seenStreams: Array<number>
  untilTsn: number
}

/**
 * A FORWARD TSN owed to the peer (plain data): sent once the peer's cumulative TSN ack
 * reaches `afterTsn` (every chunk the replica knew is acknowledged), until it acknowledges
 * `cumulative`; `streams` flat `[stream, ssn, …]`; `path` where it went last.
 */
interface PendingForwardTsn {
  afterTsn: number
  cumulative: number
  streams: Array<number>
  sent: boolean
  path: number
}

// ---------------------------------------------------------------------------------------
// Step context and small helpers
// ---------------------------------------------------------------------------------------

interface Destination {
  to: PeerAddress
  tag: number
  chunks: Array<Chunk.Chunk>
  size: number
  /** Room for an AUTH chunk is counted in `size` (a chunk the peer wants authenticated). */
  authed: boolean
}

interface Ctx {
  readonly out: Array<Output>
  readonly now: number
  readonly dests: Array<Destination>
  /** A DATA chunk arrived in the packet being processed. */
  gotData: boolean
}

const makeCtx = (now: number): Ctx => ({ out: [], now, dests: [], gotData: false })

const emit = (ctx: Ctx, event: Event): void => {
  ctx.out.push({ _tag: "Event", event })
}

const setTimer = (ctx: Ctx, st: State, timer: string, deadlineMs: number): void => {
  // Whole milliseconds, as the clocks that fire timers count: an RTO is fractional (SRTT +
  // 4 RTTVAR), and a deadline between two ticks was never reached by a driver that reads
  // the clock in whole milliseconds (a lossy SimNet schedule stalled on one).
  const atMs = Math.ceil(deadlineMs)
  st.timers[timer] = atMs
  ctx.out.push({ _tag: "SetTimer", timer, atMs })
}

const cancelTimer = (ctx: Ctx, st: State, timer: string): void => {
  if (st.timers[timer] === undefined) return
  delete st.timers[timer]
  ctx.out.push({ _tag: "CancelTimer", timer })
}

const t3Name = (path: Path): string => `T3-rtx:${path.host}`
const hbName = (path: Path): string => `HB:${path.host}`

const maxPaths = 16
const dataHeaderLength = 16
const rtoConfig = (config: Config): Rto.RtoConfig => ({
  rtoInitialMs: config.rtoInitialMs,
  rtoMinMs: config.rtoMinMs,
  rtoMsMax: config.rtoMsMax,
})

/**
 * PMDCS (§1.3, what §7.2 counts cwnd in): the largest DATA chunk a packet carries, the
 * packet size less the common header.
 */
const pmdcs = (st: State): number => st.config.mtu - Packet.headerLength

const addressOf = (path: Path): PeerAddress => ({ host: path.host, udpPort: path.udpPort })

const pathIndex = (st: State, host: string): number => {
  for (let index = 0; index < st.paths.length; index++) {
    if (st.paths[index]!.host === host) return index
  }
  return -1
}

const newPath = (config: Config, host: string, udpPort: number, confirmed: boolean): Path => ({
  host,
  udpPort,
  confirmed,
  active: true,
  errorCount: 0,
  rto: Rto.initial(rtoConfig(config)),
  congestion: Congestion.initial(config.mtu - Packet.headerLength),
  flightBytes: 0,
  heartbeatNonce: 0,
  heartbeatOutstanding: false,
  lastSendMs: 0,
  rttPending: false,
  rttTsn: 0,
  rttSentMs: 0,
})

/** Adds a path for `host` if it is new (bounded by maxPaths); returns its index or -1. */
const addPath = (st: State, host: string, udpPort: number, confirmed: boolean): number => {
  const existing = pathIndex(st, host)
  if (existing >= 0) {
    if (confirmed) st.paths[existing]!.confirmed = true
    return existing
  }
  if (st.paths.length >= maxPaths) return -1
  st.paths.push(newPath(st.config, host, udpPort, confirmed))
  return st.paths.length - 1
}

/**
 * The path new DATA goes to (§6.4): the primary if usable, else another active confirmed
 * one. A path whose last transmission timed out (error count > 0) is avoided while a
 * clean alternate exists, as RFC 7829 (SCTP-PF, threshold 0) does: §6.4 leaves the choice
 * to the sender, and without it new data keeps going into a dead primary for
 * Path.Max.Retrans backed-off RTOs (about a minute). HEARTBEATs every RTO probe it, and
 * its first acknowledgement makes it clean again.
 */
const dataPath = (st: State): number => {
  const paths = st.paths
  const primary = paths[st.primary]
  if (primary !== undefined && usable(primary) && primary.errorCount === 0) return st.primary
  for (let index = 0; index < paths.length; index++) {
    const path = paths[index]!
    if (usable(path) && path.errorCount === 0) return index
  }
  if (primary !== undefined && usable(primary)) return st.primary
  for (let index = 0; index < paths.length; index++) {
    if (usable(paths[index]!)) return index
  }
  return st.primary
}

const usable = (path: Path): boolean => path.active && path.confirmed

/** An active confirmed path other than `avoid`, else `avoid` itself (§6.4.1). */
const alternatePath = (st: State, avoid: number): number => {
  const primary = st.paths[st.primary]
  if (st.primary !== avoid && primary !== undefined && primary.active && primary.confirmed) {
    return st.primary
  }
  for (let index = 0; index < st.paths.length; index++) {
    const path = st.paths[index]!
    if (index !== avoid && path.active && path.confirmed) return index
  }
  return avoid >= 0 && avoid < st.paths.length ? avoid : dataPath(st)
}

// ---------------------------------------------------------------------------------------
// Packet assembly (bundling, §6.10)
// ---------------------------------------------------------------------------------------

const sameAddress = (a: PeerAddress, b: PeerAddress): boolean =>
  a.host === b.host && a.udpPort === b.udpPort

const transmit = (
  ctx: Ctx,
  st: State,
  to: PeerAddress,
  tag: number,
  chunks: Array<Chunk.Chunk>,
) => {
  // RFC 4895 §6.2: an AUTH chunk goes before the first chunk the peer wants authenticated
  // and covers it and every chunk after it.
  const first = st.auth === undefined ? -1 : chunks.findIndex((chunk) => needsAuth(st, chunk))
  if (first >= 0) {
    const after = chunks.slice(first)
    chunks = [...chunks.slice(0, first), Auth.sign(st.auth!, after), ...after]
  }
  ctx.out.push({
    _tag: "Transmit",
    to,
    packet: {
      sourcePort: st.localPort,
      destinationPort: st.peerPort,
      verificationTag: tag,
      chunks,
    },
  })
}

const destinationFor = (ctx: Ctx, to: PeerAddress, tag: number): Destination => {
  for (const dest of ctx.dests) if (dest.tag === tag && sameAddress(dest.to, to)) return dest
  const dest: Destination = { to, tag, chunks: [], size: Packet.headerLength, authed: false }
  ctx.dests.push(dest)
  return dest
}

const flushDestination = (ctx: Ctx, st: State, dest: Destination): void => {
  if (dest.chunks.length === 0) return
  transmit(ctx, st, dest.to, dest.tag, dest.chunks)
  dest.chunks = []
  dest.size = Packet.headerLength
  dest.authed = false
}

/** Queues a chunk for bundling into a packet to `to`, starting a new packet when full. */
const queueChunk = (
  ctx: Ctx,
  st: State,
  to: PeerAddress,
  chunk: Chunk.Chunk,
  size = Chunk.chunkSize(chunk),
  tag = st.peerTag,
): Destination => {
  const dest = destinationFor(ctx, to, tag)
  const auth = needsAuth(st, chunk) ? authSize(st) : 0
  if (dest.chunks.length > 0 && dest.size + size + (dest.authed ? 0 : auth) > st.config.mtu) {
    flushDestination(ctx, st, dest)
  }
  dest.chunks.push(chunk)
  dest.size += size
  if (auth > 0 && !dest.authed) {
    dest.size += auth
    dest.authed = true
  }
  return dest
}

/** The peer accepts this chunk only behind an AUTH chunk (its CHUNKS parameter). */
const needsAuth = (st: State, chunk: Chunk.Chunk): boolean =>
  st.auth?.peerChunks.includes(Chunk.typeOf(chunk)) === true

const authSize = (st: State): number =>
  8 + pad4(Auth.digestLength(st.auth?.sendHmacId ?? Auth.HmacId.Sha1) ?? 20)

/** A chunk that must be alone in its packet (INIT, INIT ACK, SHUTDOWN COMPLETE), §6.10. */
const sendAlone = (ctx: Ctx, st: State, to: PeerAddress, tag: number, chunk: Chunk.Chunk) => {
  transmit(ctx, st, to, tag, [chunk])
}

const pathAddress = (st: State, index: number, fallback: PeerAddress): PeerAddress => {
  const path = st.paths[index]
  return path === undefined ? fallback : addressOf(path)
}

// ---------------------------------------------------------------------------------------
// Creation
// ---------------------------------------------------------------------------------------

const cookieSecretBytes = 32

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

const localAddressParameters = (config: Config): Array<Chunk.Parameter> => {
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
const extensionParameters = (config: Config, random: Uint8Array): Array<Chunk.Parameter> =>
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
const peerExtensionParameters = (
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
const cookieAuth = (
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
const encodeParameters = (parameters: ReadonlyArray<Chunk.Parameter>): Uint8Array => {
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
): { readonly state: State; readonly outputs: Array<Output> } => {
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
const establishFields = (
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

const commUp = (ctx: Ctx, st: State): void => {
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
): { readonly state: State; readonly outputs: Array<Output> } => {
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
  processChunks(ctx, st, input.packet.chunks.slice(1), input.from, 0)
  finish(ctx, st)
  return { state: st, outputs: ctx.out }
}

// ---------------------------------------------------------------------------------------
// INIT handling shared with the Listener
// ---------------------------------------------------------------------------------------

/**
 * The parts of an INIT this endpoint checks before answering it (§3.3.2, §5.1.2).
 *
 * @since 0.1.0
 * @category handshake
 */
export type InitCheck =
  | { readonly _tag: "Ok"; readonly unrecognized: ReadonlyArray<Chunk.UnknownParameter> }
  | { readonly _tag: "Discard" }
  | { readonly _tag: "Abort"; readonly causes: ReadonlyArray<Chunk.ErrorCause> }

/**
 * Checks an INIT or INIT ACK: an INIT with Initiate Tag 0 is discarded silently (§3.3.2);
 * otherwise non-zero Initiate Tag, OS and MIS (§3.3.2, §3.3.3: otherwise ABORT), no Host Name Address (§5.1.2: ABORT, Unresolvable Address), unrecognized
 * parameters by their upper bits (§3.2.1).
 *
 * @since 0.1.0
 * @category handshake
 */
export const checkInit = (init: Chunk.Init | Chunk.InitAck): InitCheck => {
  // §3.3.2: an INIT with Initiate Tag 0 is silently discarded (an INIT ACK's is fatal, §3.3.3).
  if (init._tag === "Init" && init.initiateTag === 0) return { _tag: "Discard" }
  if (init.initiateTag === 0 || init.outboundStreams === 0 || init.inboundStreams === 0) {
    return { _tag: "Abort", causes: [{ _tag: "InvalidMandatoryParameter" }] }
  }
  const hostName = Chunk.refuseHostNameAddress(init.parameters)
  if (hostName !== undefined) return { _tag: "Abort", causes: [hostName] }
  const processed = Chunk.processUnknownParameters(init.parameters)
  return { _tag: "Ok", unrecognized: processed.report }
}

/**
 * Builds the INIT ACK answering `init` (§5.1 B, §5.2): a fresh or given Initiate Tag and
 * initial TSN, our addresses, a State Cookie sealed with `secrets`, and an Unrecognized
 * Parameter for each INIT parameter whose upper bits ask for a report.
 *
 * @since 0.1.0
 * @category handshake
 */
export const initAckFor = (options: {
  readonly config: Config
  readonly secrets: Cookie.CookieSecrets
  readonly init: Chunk.Init
  readonly unrecognized: ReadonlyArray<Chunk.UnknownParameter>
  readonly from: PeerAddress
  readonly peerPort: number
  readonly myTag: number
  readonly myInitialTsn: number
  readonly nowMs: number
  readonly tieTagLocal?: number
  readonly tieTagPeer?: number
  /** Our RANDOM (RFC 4895 §3.1), from the CSPRNG: required when `config.auth` is on. */
  readonly authRandom?: Uint8Array
}): Chunk.InitAck => {
  const { config, init } = options
  const authRandom = config.auth ? options.authRandom : undefined
  const listed = S.listedAddresses(init.parameters)
  const source = S.canonicalHost(options.from.host)
  const peerAddresses = listed.filter((host) => host !== source)
  const contents: Cookie.CookieContents = {
    myTag: options.myTag,
    peerTag: init.initiateTag,
    myInitialTsn: options.myInitialTsn,
    peerInitialTsn: init.initialTsn,
    peerRwnd: init.advertisedReceiverWindowCredit,
    outboundStreams: Math.min(config.outboundStreams, init.inboundStreams),
    inboundStreams: Math.min(config.inboundStreamsMax, init.outboundStreams),
    localPort: config.localPort,
    peerPort: options.peerPort,
    peerAddresses,
    ...(peerAddresses.length < listed.length ? { sourceListed: true } : {}),
    createdMs: options.nowMs,
    lifespanMs: config.validCookieLifeMs,
    ...(init.parameters.some((p) => p._tag === "ForwardTsnSupported") ? { forwardTsn: true } : {}),
    ...(options.tieTagLocal === undefined ? {} : { tieTagLocal: options.tieTagLocal }),
    ...(options.tieTagPeer === undefined ? {} : { tieTagPeer: options.tieTagPeer }),
    // The cookie remembers both ends' AUTH parameters: the association key needs them.
    ...(authRandom === undefined
      ? {}
      : {
          extra: encodeParameters([
            { _tag: "Random", random: authRandom },
            ...peerExtensionParameters(init.parameters),
          ]),
        }),
  }
  const cookie = Cookie.seal(options.secrets, contents)
  const parameters: Array<Chunk.Parameter> = [
    ...localAddressParameters(config).filter((p) => p._tag !== "SupportedAddressTypes"),
    { _tag: "StateCookie", cookie },
    // RFC 3758 §3.3.1: PR-SCTP offered (FORWARD TSN understood).
    { _tag: "ForwardTsnSupported" },
    ...(authRandom === undefined ? [] : extensionParameters(config, authRandom)),
    ...options.unrecognized.map(Chunk.unrecognizedParameter),
  ]
  return {
    _tag: "InitAck",
    initiateTag: options.myTag,
    advertisedReceiverWindowCredit: config.receiveWindow,
    outboundStreams: config.outboundStreams,
    inboundStreams: config.inboundStreamsMax,
    initialTsn: options.myInitialTsn,
    parameters,
  }
}

// ---------------------------------------------------------------------------------------
// Step
// ---------------------------------------------------------------------------------------

/**
 * Feeds one input to the association; mutates `state` and returns what to do.
 *
 * @since 0.1.0
 * @category machine
 */
export const step = (state: State, input: Input): Array<Output> => {
  const ctx = makeCtx(input.nowMs)
  if (state.name === "Closed") {
    emit(ctx, { _tag: "Dropped", reason: "AssociationClosed" })
    return ctx.out
  }
  switch (input._tag) {
    case "Receive":
      onReceive(ctx, state, input)
      break
    case "TimerFired":
      onTimer(ctx, state, input.timer)
      break
    case "Command":
      onCommand(ctx, state, input.command)
      break
  }
  finish(ctx, state)
  return ctx.out
}

// ---------------------------------------------------------------------------------------
// Receive
// ---------------------------------------------------------------------------------------

const onReceive = (ctx: Ctx, st: State, input: Extract<Input, { _tag: "Receive" }>): void => {
  const packet = input.packet
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

const processChunks = (
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

// ---------------------------------------------------------------------------------------
// ASCONF (RFC 5061)
// ---------------------------------------------------------------------------------------

/** The chunk as received, for an Unrecognized Chunk Type cause. */
const unrecognized = (chunk: Chunk.Chunk): Chunk.ErrorCause => ({
  _tag: "UnrecognizedChunkType",
  chunk: Chunk.encodeChunk(chunk).subarray(0, Chunk.chunkLength(chunk)),
})

/** §5.2: a peer's ASCONF (authenticated: {@link processChunks} checked it). */
const onAsconf = (ctx: Ctx, st: State, chunk: Chunk.Asconf, from: PeerAddress): void => {
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
const onAsconfAck = (ctx: Ctx, st: State, ack: Chunk.AsconfAck, from: PeerAddress): boolean => {
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
const sendAsconf = (ctx: Ctx, st: State, index: number): void => {
  const asconf = st.asconf
  const path = st.paths[index]
  if (asconf?.pending === undefined || path === undefined) return
  asconf.pendingHost = path.host
  queueChunk(ctx, st, addressOf(path), asconf.pending)
  setTimer(ctx, st, "T4-asconf", ctx.now + path.rto.rto)
}

/** §4.1.2 B1–B5: T4 expired: count the error, back off, resend the same ASCONF elsewhere. */
const onT4 = (ctx: Ctx, st: State): void => {
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
const isClosed = (st: State): boolean => st.name === "Closed"

const abortReason = (causes: ReadonlyArray<Chunk.ErrorCause>): string =>
  causes.length === 0 ? "Abort" : `Abort: ${causes.map((cause) => cause._tag).join(", ")}`

const onOperationError = (ctx: Ctx, st: State, chunk: Chunk.OperationError): void => {
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

// ---------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------

const onInitAck = (ctx: Ctx, st: State, ack: Chunk.InitAck, from: PeerAddress): void => {
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
const sendCookieEcho = (ctx: Ctx, st: State, index = st.primary): void => {
  const path = st.paths[index]!
  queueChunk(ctx, st, addressOf(path), { _tag: "CookieEcho", cookie: st.cookie! })
  if (!path.confirmed) sendHeartbeat(ctx, st, index)
}

/** §5.2.1 and §5.2.2: an INIT for an association that exists. */
const onInit = (ctx: Ctx, st: State, init: Chunk.Init, from: PeerAddress): void => {
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
const onCookieEcho = (ctx: Ctx, st: State, input: Extract<Input, { _tag: "Receive" }>): void => {
  const echo = input.packet.chunks[0] as Chunk.CookieEcho
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
  if (input.packet.verificationTag !== c.myTag) {
    emit(ctx, { _tag: "Dropped", reason: "CookieTagMismatch" })
    return
  }
  const from = S.canonicalHost(input.from.host)
  const index = pathIndex(st, from)
  if (index >= 0) st.paths[index]!.udpPort = input.from.udpPort
  const rest = input.packet.chunks.slice(1)
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

// ---------------------------------------------------------------------------------------
// DATA receive (§6.2, §6.5)
// ---------------------------------------------------------------------------------------

const receivesData = (st: State): boolean =>
  st.name === "Established" || st.name === "ShutdownPending" || st.name === "ShutdownSent"

const onData = (
  ctx: Ctx,
  st: State,
  chunk: Chunk.Data,
  from: PeerAddress,
  index: number,
): boolean => {
  if (!receivesData(st) || st.tracker === undefined || st.reassembly === undefined) {
    emit(ctx, { _tag: "Dropped", reason: "DataNotExpected" })
    return true
  }
  if (chunk.userData.length === 0) {
    // §6.2: a DATA chunk with no user data aborts the association.
    sendAbort(ctx, st, pathAddress(st, index, from), st.peerTag, [
      { _tag: "NoUserData", tsn: chunk.tsn },
    ])
    emit(ctx, { _tag: "CommLost", reason: "NoUserData" })
    close(ctx, st, "Closed")
    return false
  }
  ctx.gotData = true
  if (chunk.immediate) st.sackNow = true
  const tracker = st.tracker
  const tsn = chunk.tsn
  // §6.2: beyond the window we can buffer, drop (not acknowledged, so the peer resends).
  const ahead = diff32(tsn, tracker.cumulative)
  if (
    ahead > 1 &&
    (ahead > 65535 || inboundBufferedBytes(st) + chunk.userData.length > st.config.receiveWindow)
  ) {
    st.sackNow = true
    emit(ctx, { _tag: "Dropped", reason: "DataBeyondWindow" })
    return true
  }
  if (tracker.receive(tsn) === "Duplicate") {
    st.sackNow = true
    return true
  }
  if (chunk.streamIdentifier >= st.inboundStreams) {
    // §6.5: acknowledged as received, discarded, reported.
    queueChunk(ctx, st, pathAddress(st, index, from), {
      _tag: "OperationError",
      causes: [{ _tag: "InvalidStreamIdentifier", streamIdentifier: chunk.streamIdentifier }],
    })
    st.sackNow = true
    return true
  }
  const resync = st.inboundResync
  if (resync !== undefined && !chunk.unordered) resyncCandidate(resync, chunk)
  return offerData(ctx, st, chunk, from, index)
}

/** Offers a new DATA chunk to reassembly and emits what it completes (or the rejection). */
const offerData = (
  ctx: Ctx,
  st: State,
  chunk: Chunk.Data,
  from: PeerAddress,
  index: number,
): boolean => {
  const tracker = st.tracker!
  if (st.reassembly === undefined) return true
  const outcome = st.reassembly.offer(chunk)
  if (st.inboundResync !== undefined && outcome._tag === "Accepted") {
    // A fragment whose siblings the dead primary acknowledged can never complete.
    const { messages, droppedBytes } = st.reassembly.abandon(tracker.cumulative)
    outcome.messages.push(...messages)
    if (droppedBytes > 0) emit(ctx, { _tag: "Dropped", reason: "ResyncIncomplete" })
    resyncStreams(ctx, st)
  }
  switch (outcome._tag) {
    case "Accepted":
      break
    case "FragmentMismatch":
      // §6.9: the fragments of a message MUST carry consecutive TSNs and one stream (and
      // SSN when ordered); a peer contradicting its own fragments cannot be reassembled.
      sendAbort(ctx, st, pathAddress(st, index, from), st.peerTag, [
        {
          _tag: "ProtocolViolation",
          information: new TextEncoder().encode(`TSN ${outcome.tsn}: ${outcome.detail}`),
        },
      ])
      emit(ctx, { _tag: "CommLost", reason: "ProtocolViolation" })
      close(ctx, st, "Closed")
      return false
    case "StaleSequence":
      // An ordered message whose SSN was delivered already: §6.5 leaves it to the receiver;
      // the TSN stays acknowledged (the peer must not resend it), the chunk is dropped.
      emit(ctx, { _tag: "Dropped", reason: "StaleSequence" })
      return true
    case "DuplicateTsn":
      // The tracker de-duplicates, so only a TSN already buffered under a stream can land
      // here (e.g. after a FORWARD TSN): nothing to add.
      emit(ctx, { _tag: "Dropped", reason: "DuplicateTsn" })
      return true
    case "InvalidStream":
    case "NoUserData":
      // Both are checked above, before the TSN is recorded.
      emit(ctx, { _tag: "Dropped", reason: outcome._tag })
      return true
  }
  for (const message of outcome.messages) {
    emit(ctx, {
      _tag: "Message",
      stream: message.stream,
      ppid: message.ppid,
      unordered: message.unordered,
      data: message.data,
    })
  }
  return true
}

/** User bytes held for delivery (what the window we offer subtracts, §6.2). */
const inboundBufferedBytes = (st: State): number => st.reassembly?.bufferedBytes ?? 0

/** Records `chunk` as its stream's candidate when it is the lowest TSN seen on it. */
const resyncCandidate = (resync: InboundResync, chunk: Chunk.Data): void => {
  const stream = chunk.streamIdentifier
  if (resync.seenStreams.includes(stream)) return
  const list = resync.candidates
  for (let index = 0; index < list.length; index += 3) {
    if (list[index] !== stream) continue
    if (lt32(chunk.tsn, list[index + 1]!)) {
      list[index + 1] = chunk.tsn
      list[index + 2] = chunk.streamSequenceNumber
    }
    return
  }
  list.push(stream, chunk.tsn, chunk.streamSequenceNumber)
}

/**
 * Inbound resynchronisation, ordered streams: once every TSN below a stream's lowest-TSN
 * candidate arrived (so no earlier message of the stream can still come: a sender numbers
 * a stream's messages in TSN order), the candidate's SSN becomes the next one expected if
 * it is ahead (the dead primary delivered the ones before it); buffered fragments of the
 * SSNs skipped are dropped. The mode ends when every inbound stream is resolved or the
 * cumulative TSN passes `untilTsn` (SSNs wrap).
 */
const resyncStreams = (ctx: Ctx, st: State): void => {
  const resync = st.inboundResync!
  const tracker = st.tracker!
  const reassembly = st.reassembly!
  const list = resync.candidates
  for (let index = 0; index < list.length; ) {
    const stream = list[index]!
    const tsn = list[index + 1]!
    const ssn = list[index + 2]!
    if (gt32(tsn, add32(tracker.cumulative, 1))) {
      index += 3
      continue
    }
    list.splice(index, 3)
    resync.seenStreams.push(stream)
    const before = reassembly.bufferedBytes
    const expected = reassembly.expectedSsn(stream)
    const messages = reassembly.resync(stream, ssn)
    if (expected !== reassembly.expectedSsn(stream)) {
      emit(ctx, { _tag: "Dropped", reason: "ResyncSkippedSsns" })
    }
    let delivered = 0
    for (const message of messages) delivered += message.data.length
    if (reassembly.bufferedBytes + delivered < before) {
      emit(ctx, { _tag: "Dropped", reason: "ResyncIncomplete" })
    }
    for (const message of messages) emit(ctx, { _tag: "Message", ...message })
  }
  if (gt32(tracker.cumulative, resync.untilTsn) || resync.seenStreams.length >= st.inboundStreams) {
    st.inboundResync = undefined
  }
}

/**
 * FORWARD TSN received (RFC 3758 §3.6): the cumulative TSN moves to the New Cumulative
 * TSN as if every TSN up to it had arrived, buffered fragments that can no longer complete
 * are dropped, each listed ordered stream skips its SSNs up to the one given (delivering
 * the complete messages that were waiting), and a SACK goes out at once. One at or behind
 * the cumulative TSN is out of date: only SACKed (its SACK may have been lost). Without
 * PR-SCTP negotiated the chunk is unknown (type 192: skip and report, §3.2).
 */
const onForwardTsn = (
  ctx: Ctx,
  st: State,
  chunk: Chunk.ForwardTsn,
  from: PeerAddress,
  index: number,
): void => {
  const tracker = st.tracker
  const reassembly = st.reassembly
  if (!receivesData(st) || tracker === undefined || reassembly === undefined) {
    emit(ctx, { _tag: "Dropped", reason: "ForwardTsnNotExpected" })
    return
  }
  if (!st.forwardTsnSupported) {
    queueChunk(ctx, st, pathAddress(st, index, from), {
      _tag: "OperationError",
      causes: [{ _tag: "UnrecognizedChunkType", chunk: Chunk.encodeChunk(chunk) }],
    })
    return
  }
  st.sackNow = true
  if (index >= 0) st.lastDataPath = index
  if (!tracker.skipTo(chunk.newCumulativeTsn)) return
  const skips: Array<number> = []
  for (const entry of chunk.streams) skips.push(entry.stream, entry.ssn)
  const { messages, droppedBytes } = reassembly.abandon(tracker.cumulative, skips)
  if (droppedBytes > 0) emit(ctx, { _tag: "Dropped", reason: "ForwardTsnAbandoned" })
  for (const message of messages) emit(ctx, { _tag: "Message", ...message })
}

const afterData = (ctx: Ctx, st: State, index: number): void => {
  if (index >= 0) st.lastDataPath = index
  st.packetsSinceSack++
  if (st.tracker?.hasGaps === true || st.packetsSinceSack >= 2) st.sackNow = true
  if (st.name === "ShutdownSent") {
    // §9.2: each packet with DATA in SHUTDOWN-SENT is answered with a SHUTDOWN, T2 restarted.
    st.sackNow = true
    queueChunk(ctx, st, addressOf(st.paths[dataPath(st)]!), {
      _tag: "Shutdown",
      cumulativeTsnAck: st.tracker!.cumulative,
    })
    setTimer(ctx, st, "T2-shutdown", ctx.now + st.paths[dataPath(st)]!.rto.rto)
  }
  if (!st.sackNow && st.timers.SACK === undefined)
    setTimer(ctx, st, "SACK", ctx.now + st.config.sackDelayMs)
}

const buildSack = (st: State): Chunk.Sack => {
  const tracker = st.tracker!
  const room = Math.max(0, Math.floor((st.config.mtu - Packet.headerLength - 16) / 4))
  const gapAckBlocks = tracker.gapBlocks(Math.min(room, 512))
  const duplicateTsns = tracker.takeDuplicates(Math.min(room - gapAckBlocks.length, 128))
  return {
    _tag: "Sack",
    cumulativeTsnAck: tracker.cumulative,
    advertisedReceiverWindowCredit: Math.max(0, st.config.receiveWindow - inboundBufferedBytes(st)),
    gapAckBlocks,
    duplicateTsns,
  }
}

// ---------------------------------------------------------------------------------------
// SACK processing (§6.2.1, §7.2)
// ---------------------------------------------------------------------------------------

const sendsData = (st: State): boolean =>
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

const onSack = (ctx: Ctx, st: State, sack: Chunk.Sack): void => {
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

const processSack = (
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

const markRetransmit = (st: State, chunk: Outstanding): void => {
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

// ---------------------------------------------------------------------------------------
// Sending DATA
// ---------------------------------------------------------------------------------------

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

const pad4 = (n: number): number => (n + 3) & ~3

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
 * After a takeover, the first SACK that reports a hole: what the peer sent to the dead node
 * before the takeover (or before its address was taken over) is lost, and a peer that
 * bundles (Nagle) sends nothing new while it is unacknowledged, so only its T3-rtx timer
 * (RTO.min, 1 s by default) would resend it. Two SACKs go first, each in its own packet,
 * acknowledging the first TSN above the hole and then one more: the SACKs this end would
 * have sent had those TSNs come one per packet. With the full SACK after them the peer
 * counts three miss indications for the hole (each SACK newly acknowledges a higher TSN:
 * HTNA) and fast-retransmits it at once (RFC 9260 §7.2.4). Needs three TSNs above the hole.
 */
const sendSplitSacks = (ctx: Ctx, st: State, to: PeerAddress, sack: Chunk.Sack): void => {
  /** The first three TSNs above the hole, as offsets from the Cumulative TSN Ack. */
  const offsets: Array<number> = []
  for (const block of sack.gapAckBlocks) {
    for (let offset = block.start; offset <= block.end && offsets.length < 3; offset++) {
      offsets.push(offset)
    }
  }
  if (offsets.length < 3) return
  for (const count of [1, 2]) {
    const gapAckBlocks: Array<Chunk.GapAckBlock> = []
    for (const offset of offsets.slice(0, count)) {
      const last = gapAckBlocks.at(-1)
      if (last !== undefined && last.end + 1 === offset) {
        gapAckBlocks[gapAckBlocks.length - 1] = { start: last.start, end: offset }
      } else gapAckBlocks.push({ start: offset, end: offset })
    }
    transmit(ctx, st, to, st.peerTag, [{ ...sack, gapAckBlocks, duplicateTsns: [] }])
  }
}

/** Ends a step: SACK if due, DATA, then every packet assembled. */
const finish = (ctx: Ctx, st: State): void => {
  if (st.name !== "Closed") {
    if (st.sackNow && st.tracker !== undefined && st.peerTag !== 0) {
      st.sackNow = false
      st.packetsSinceSack = 0
      cancelTimer(ctx, st, "SACK")
      const sack = buildSack(st)
      const path = st.paths[st.lastDataPath] ?? st.paths[dataPath(st)]
      if (path !== undefined && st.splitFirstGapSack === true && sack.gapAckBlocks.length > 0) {
        st.splitFirstGapSack = false
        sendSplitSacks(ctx, st, addressOf(path), sack)
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

// ---------------------------------------------------------------------------------------
// Heartbeats and path management (§5.4, §8)
// ---------------------------------------------------------------------------------------

const jitteredInterval = (st: State, path: Path): number => {
  // §8.3: RTO + HB.interval, RTO jittered by ±50%.
  const jitter = Math.floor(path.rto.rto * (S.nextU32(st.rng) / 0x1_0000_0000 - 0.5))
  return st.config.heartbeatIntervalMs + path.rto.rto + jitter
}

const sendHeartbeat = (ctx: Ctx, st: State, index: number): void => {
  const path = st.paths[index]!
  path.heartbeatNonce = S.nextU32(st.rng)
  path.heartbeatOutstanding = true
  queueChunk(ctx, st, addressOf(path), {
    _tag: "Heartbeat",
    info: S.encodeHeartbeatInfo({ host: path.host, nonce: path.heartbeatNonce, sentMs: ctx.now }),
  })
}

const startHeartbeat = (ctx: Ctx, st: State, index: number): void => {
  const path = st.paths[index]!
  if (!path.confirmed) {
    // §5.4: confirm at once, then one HEARTBEAT per RTO until confirmed.
    sendHeartbeat(ctx, st, index)
    setTimer(ctx, st, hbName(path), ctx.now + path.rto.rto)
  } else {
    setTimer(ctx, st, hbName(path), ctx.now + jitteredInterval(st, path))
  }
}

const onHeartbeatTimer = (ctx: Ctx, st: State, index: number): void => {
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

const onHeartbeatAck = (ctx: Ctx, st: State, ack: Chunk.HeartbeatAck): void => {
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
const pathError = (ctx: Ctx, st: State, index: number, association: boolean): void => {
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

const associationError = (ctx: Ctx, st: State, reason: string): void => {
  st.errorCount++
  if (st.errorCount > st.config.associationMaxRetrans) {
    sendAbort(ctx, st, addressOf(st.paths[dataPath(st)]!), st.peerTag, [])
    emit(ctx, { _tag: "CommLost", reason })
    close(ctx, st, "Closed")
  }
}

// ---------------------------------------------------------------------------------------
// Timers
// ---------------------------------------------------------------------------------------

const onTimer = (ctx: Ctx, st: State, timer: string): void => {
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

// ---------------------------------------------------------------------------------------
// Shutdown (§9.2) and abort (§9.1)
// ---------------------------------------------------------------------------------------

const nothingToSend = (st: State): boolean =>
  st.queueHead >= st.queue.length && st.outstandingHead >= st.outstanding.length

const checkShutdownProgress = (ctx: Ctx, st: State): void => {
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

const onShutdown = (ctx: Ctx, st: State, chunk: Chunk.Shutdown, from: PeerAddress): void => {
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

const sendAbort = (
  ctx: Ctx,
  st: State,
  to: PeerAddress,
  tag: number,
  causes: ReadonlyArray<Chunk.ErrorCause>,
): void => {
  transmit(ctx, st, to, tag, [{ _tag: "Abort", reflected: false, causes }])
}

/** Drops queued and outstanding user data, telling the user (abort, restart). */
const failQueued = (ctx: Ctx, st: State): void => {
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

const close = (ctx: Ctx, st: State, _why: "Closed"): void => {
  for (const name of Object.keys(st.timers)) cancelTimer(ctx, st, name)
  st.name = "Closed"
  st.queue = []
  st.queueHead = 0
  st.outstanding = []
  st.outstandingHead = 0
  ctx.dests.length = 0
  emit(ctx, { _tag: "Closed" })
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

const onCommand = (ctx: Ctx, st: State, command: Command): void => {
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

// ---------------------------------------------------------------------------------------
// Read helpers
// ---------------------------------------------------------------------------------------

/**
 * A path as {@link info} shows it.
 *
 * @since 0.1.0
 * @category accessors
 */
export interface PathStatus {
  readonly host: string
  readonly udpPort: number
  readonly confirmed: boolean
  readonly active: boolean
  readonly errorCount: number
  readonly rtoMs: number
  readonly srttMs: number | undefined
  readonly cwnd: number
  readonly ssthresh: number
  readonly flightBytes: number
}

/**
 * A read-only summary of the TCB.
 *
 * @since 0.1.0
 * @category accessors
 */
export interface Status {
  readonly state: StateName
  readonly myTag: number
  readonly peerTag: number
  readonly localPort: number
  readonly peerPort: number
  readonly paths: ReadonlyArray<PathStatus>
  readonly primary: string | undefined
  readonly peerRwnd: number
  readonly flightBytes: number
  readonly queuedBytes: number
  readonly outstandingChunks: number
  readonly nextTsn: number
  readonly cumulativeTsnAcked: number
  readonly peerCumulativeTsn: number | undefined
  readonly errorCount: number
  readonly inboundStreams: number
  readonly outboundStreams: number
}

/**
 * A summary of the association for status displays and tests.
 *
 * @since 0.1.0
 * @category accessors
 */
export const info = (st: State): Status => ({
  state: st.name,
  myTag: st.myTag,
  peerTag: st.peerTag,
  localPort: st.localPort,
  peerPort: st.peerPort,
  paths: st.paths.map((path) => ({
    host: path.host,
    udpPort: path.udpPort,
    confirmed: path.confirmed,
    active: path.active,
    errorCount: path.errorCount,
    rtoMs: path.rto.rto,
    srttMs: path.rto.srtt,
    cwnd: path.congestion.cwnd,
    ssthresh: path.congestion.ssthresh,
    flightBytes: path.flightBytes,
  })),
  primary: st.paths[st.primary]?.host,
  peerRwnd: st.peerRwnd,
  flightBytes: st.flightBytes,
  queuedBytes: st.queuedBytes,
  outstandingChunks: st.outstanding.length - st.outstandingHead,
  nextTsn: st.nextTsn,
  cumulativeTsnAcked: st.lastCumAck,
  peerCumulativeTsn: st.tracker?.cumulative,
  errorCount: st.errorCount,
  inboundStreams: st.inboundStreams,
  outboundStreams: st.outboundStreams,
})

/** The tag packets to us carry (for demultiplexing). @since 0.1.0 @category accessors */
export const myTag = (st: State): number => st.myTag
/** The tag we put on packets to the peer (0 before it is known). @since 0.1.0 @category accessors */
export const peerTag = (st: State): number => st.peerTag
/** The peer's SCTP port. @since 0.1.0 @category accessors */
export const peerPort = (st: State): number => st.peerPort
/** The peer's addresses (the paths' hosts, canonical text). @since 0.1.0 @category accessors */
export const peerHosts = (st: State): ReadonlyArray<string> => st.paths.map((path) => path.host)
/** The state name. @since 0.1.0 @category accessors */
export const stateName = (st: State): StateName => st.name
/**
 * User bytes `Send` accepts now before failing with "WouldBlock".
 *
 * @since 0.1.0
 * @category accessors
 */
export const sendBufferAvailable = (st: State): number =>
  Math.max(0, st.config.sendBufferBytes - st.bufferedBytes)

// ---------------------------------------------------------------------------------------
// Snapshot / restore / take over
// ---------------------------------------------------------------------------------------

/**
 * The TCB as plain data (numbers, strings, booleans, arrays, Uint8Array, plain objects):
 * what the cluster replicates. Byte arrays are copies.
 *
 * @since 0.1.0
 * @category replication
 */
export interface Snapshot {
  readonly version: 1
  readonly rng: S.Rng
  readonly name: StateName
  readonly localPort: number
  readonly peerPort: number
  readonly myTag: number
  readonly peerTag: number
  readonly myInitialTsn: number
  readonly peerInitialTsn: number
  readonly outboundStreams: number
  readonly inboundStreams: number
  readonly paths: ReadonlyArray<Path>
  readonly primary: number
  readonly retransmitPath: number
  readonly peerRwnd: number
  readonly nextTsn: number
  readonly lastCumAck: number
  readonly outstanding: ReadonlyArray<Outstanding>
  readonly flightBytes: number
  readonly retransmitCount: number
  readonly fastRecovery: boolean
  readonly fastRecoveryExit: number
  readonly queue: ReadonlyArray<Queued>
  readonly queuedBytes: number
  readonly bufferedBytes: number
  readonly ssnOut: ReadonlyArray<number>
  readonly tracker: TsnTrackerSnapshot | undefined
  readonly reassembly: ReassemblySnapshot | undefined
  readonly sackNow: boolean
  readonly packetsSinceSack: number
  readonly lastDataPath: number
  readonly errorCount: number
  readonly initRetransmits: number
  readonly init: Chunk.Init | undefined
  readonly cookie: Uint8Array | undefined
  readonly cookieSecrets: Cookie.CookieSecretsSnapshot
  readonly secretsRotatedAt: number | undefined
  readonly resynchronizing: boolean
  readonly inboundResync?: {
    readonly candidates: ReadonlyArray<number>
    readonly seenStreams: ReadonlyArray<number>
    readonly untilTsn: number
  }
  readonly forwardTsnSupported?: boolean
  readonly forwardTsn?: {
    readonly afterTsn: number
    readonly cumulative: number
    readonly streams: ReadonlyArray<number>
    readonly sent: boolean
    readonly path: number
  }
  readonly auth?: Auth.Negotiated
  readonly asconf?: {
    readonly nextSerial: number
    readonly pending: Chunk.Asconf | undefined
    readonly pendingHost: string
    readonly nextPrimary?: string
    readonly peerSerial: number
    readonly lastAck: Chunk.AsconfAck | undefined
  }
  readonly timers: ReadonlyArray<readonly [string, number]>
}

const copyPath = (path: Path): Path => ({
  ...path,
  rto: { ...path.rto },
  congestion: { ...path.congestion },
})

/**
 * A plain-data copy of the TCB.
 *
 * @since 0.1.0
 * @category replication
 */
export const snapshot = (st: State): Snapshot => ({
  version: 1,
  rng: S.copyRng(st.rng),
  name: st.name,
  localPort: st.localPort,
  peerPort: st.peerPort,
  myTag: st.myTag,
  peerTag: st.peerTag,
  myInitialTsn: st.myInitialTsn,
  peerInitialTsn: st.peerInitialTsn,
  outboundStreams: st.outboundStreams,
  inboundStreams: st.inboundStreams,
  paths: st.paths.map(copyPath),
  primary: st.primary,
  retransmitPath: st.retransmitPath,
  peerRwnd: st.peerRwnd,
  nextTsn: st.nextTsn,
  lastCumAck: st.lastCumAck,
  outstanding: st.outstanding
    .slice(st.outstandingHead)
    .map((chunk) => ({ ...chunk, data: chunk.data.slice() })),
  flightBytes: st.flightBytes,
  retransmitCount: st.retransmitCount,
  fastRecovery: st.fastRecovery,
  fastRecoveryExit: st.fastRecoveryExit,
  queue: st.queue.slice(st.queueHead).map((queued) => ({ ...queued, data: queued.data.slice() })),
  queuedBytes: st.queuedBytes,
  bufferedBytes: st.bufferedBytes,
  ssnOut: st.ssnOut.slice(),
  tracker: st.tracker?.snapshot(),
  reassembly: st.reassembly?.snapshot(),
  sackNow: st.sackNow,
  packetsSinceSack: st.packetsSinceSack,
  lastDataPath: st.lastDataPath,
  errorCount: st.errorCount,
  initRetransmits: st.initRetransmits,
  init: st.init,
  cookie: st.cookie?.slice(),
  cookieSecrets: st.cookieSecrets.snapshot(),
  secretsRotatedAt: st.secretsRotatedAt,
  resynchronizing: st.resynchronizing,
  ...(st.inboundResync === undefined
    ? {}
    : {
        inboundResync: {
          ...st.inboundResync,
          candidates: st.inboundResync.candidates.slice(),
          seenStreams: st.inboundResync.seenStreams.slice(),
        },
      }),
  forwardTsnSupported: st.forwardTsnSupported,
  ...(st.forwardTsn === undefined
    ? {}
    : { forwardTsn: { ...st.forwardTsn, streams: st.forwardTsn.streams.slice() } }),
  ...(st.auth === undefined ? {} : { auth: st.auth }),
  ...(st.asconf === undefined ? {} : { asconf: { ...st.asconf } }),
  timers: Object.entries(st.timers),
})

/**
 * Rebuilds a TCB from a {@link snapshot}: it steps exactly as the original would.
 *
 * @since 0.1.0
 * @category replication
 */
export const restore = (config: Config, s: Snapshot): State => {
  const timers: Record<string, number> = {}
  for (const [name, at] of s.timers) timers[name] = at
  return {
    config,
    rng: S.copyRng(s.rng),
    name: s.name,
    localPort: s.localPort,
    peerPort: s.peerPort,
    myTag: s.myTag,
    peerTag: s.peerTag,
    myInitialTsn: s.myInitialTsn,
    peerInitialTsn: s.peerInitialTsn,
    outboundStreams: s.outboundStreams,
    inboundStreams: s.inboundStreams,
    paths: s.paths.map(copyPath),
    primary: s.primary,
    retransmitPath: s.retransmitPath,
    peerRwnd: s.peerRwnd,
    nextTsn: s.nextTsn,
    lastCumAck: s.lastCumAck,
    outstanding: s.outstanding.map((chunk) => ({ ...chunk, data: chunk.data.slice() })),
    outstandingHead: 0,
    flightBytes: s.flightBytes,
    retransmitCount: s.retransmitCount,
    fastRecovery: s.fastRecovery,
    fastRecoveryExit: s.fastRecoveryExit,
    queue: s.queue.map((queued) => ({ ...queued, data: queued.data.slice() })),
    queueHead: 0,
    queuedBytes: s.queuedBytes,
    bufferedBytes: s.bufferedBytes,
    ssnOut: s.ssnOut.slice(),
    tracker: s.tracker === undefined ? undefined : TsnTracker.restore(s.tracker),
    reassembly: s.reassembly === undefined ? undefined : Reassembly.restore(s.reassembly),
    sackNow: s.sackNow,
    packetsSinceSack: s.packetsSinceSack,
    lastDataPath: s.lastDataPath,
    errorCount: s.errorCount,
    initRetransmits: s.initRetransmits,
    init: s.init,
    cookie: s.cookie?.slice(),
    cookieSecrets: Cookie.CookieSecrets.restore(s.cookieSecrets),
    secretsRotatedAt: s.secretsRotatedAt,
    resynchronizing: s.resynchronizing,
    inboundResync:
      s.inboundResync === undefined
        ? undefined
        : {
            candidates: s.inboundResync.candidates.slice(),
            seenStreams: s.inboundResync.seenStreams.slice(),
            untilTsn: s.inboundResync.untilTsn,
          },
    forwardTsnSupported: s.forwardTsnSupported === true,
    forwardTsn:
      s.forwardTsn === undefined
        ? undefined
        : { ...s.forwardTsn, streams: s.forwardTsn.streams.slice() },
    auth: s.auth,
    asconf: s.asconf === undefined ? undefined : { ...s.asconf },
    timers,
  }
}

/**
 * The outbound reserve jump of {@link takeOver}: TSNs and SSNs the dead primary may have
 * used are skipped; queued (never sent by this copy) ordered messages are renumbered past
 * them; the FORWARD TSN that makes the peer skip them is scheduled.
 */
/**
 * Takes the first queued fragment, gives it the next TSN and puts it on the outstanding
 * list as sent once on `path` (the caller decides whether it is in flight).
 */
const takeQueuedWithNextTsn = (st: State, path: number): Outstanding => {
  const next = st.queue[st.queueHead]!
  st.queue[st.queueHead] = undefined as unknown as Queued
  st.queueHead++
  st.queuedBytes -= next.data.length
  const chunk: Outstanding = {
    tsn: st.nextTsn,
    stream: next.stream,
    ssn: next.ssn,
    ppid: next.ppid,
    unordered: next.unordered,
    beginning: next.beginning,
    ending: next.ending,
    data: next.data,
    path,
    transmissions: 1,
    acked: false,
    inFlight: false,
    missIndications: 0,
    retransmit: false,
    fast: false,
    fastDone: false,
  }
  st.nextTsn = add32(st.nextTsn, 1)
  st.outstanding.push(chunk)
  return chunk
}

const reserveJump = (st: State, tsnReserve: number, ssnReserve: number): void => {
  // TSNs are assigned in queue order, so the primary sent (if it sent them) this copy's
  // queued fragments under the next TSNs, with the SSNs they already carry: they take
  // those TSNs before the jump, marked for retransmission, so the peer's SACKs acknowledge
  // what it got from the primary (no message twice) and the rest goes out under the same
  // numbers. This also keeps a message partly sent whole (§6.9: consecutive TSNs, one SSN).
  while (st.queueHead < st.queue.length) {
    markRetransmit(st, takeQueuedWithNextTsn(st, st.primary))
  }
  if (st.queueHead === st.queue.length) {
    st.queue = []
    st.queueHead = 0
  }
  const afterTsn = add32(st.nextTsn, -1)
  st.nextTsn = add32(st.nextTsn, tsnReserve)
  const streams: Array<number> = []
  if (ssnReserve > 0) {
    // The first SSN each stream would use next: its first queued ordered message's, else
    // the next one to assign.
    const first = st.ssnOut.slice()
    const seen = new Set<number>()
    for (let position = st.queueHead; position < st.queue.length; position++) {
      const queued = st.queue[position]!
      if (queued.unordered || seen.has(queued.stream)) continue
      seen.add(queued.stream)
      first[queued.stream] = queued.ssn
    }
    for (let position = st.queueHead; position < st.queue.length; position++) {
      const queued = st.queue[position]!
      if (!queued.unordered) queued.ssn = (queued.ssn + ssnReserve) & 0xffff
    }
    // One FORWARD TSN in one packet: every stream if they fit, else the ones used so far.
    const room = Math.floor((st.config.mtu - Packet.headerLength - 8) / 4)
    for (let stream = 0; stream < st.ssnOut.length; stream++) {
      const used = st.ssnOut[stream] !== 0 || seen.has(stream)
      if (st.ssnOut.length > room && (!used || streams.length / 2 >= room)) continue
      st.ssnOut[stream] = (st.ssnOut[stream]! + ssnReserve) & 0xffff
      streams.push(stream, (first[stream]! + ssnReserve - 1) & 0xffff)
    }
  }
  st.forwardTsn = {
    afterTsn,
    cumulative: add32(st.nextTsn, -1),
    streams,
    sent: false,
    path: st.primary,
  }
}

/**
 * Options of {@link takeOver}.
 *
 * - `resync`: the replica may be behind the primary (a snapshot from an inexact policy:
 *   `interval`, `on-event`); resynchronise inbound with the peer (see {@link takeOver}).
 *   Leave it off for an exact replica (`every-update`, `state-node`): the heuristic can
 *   only lose data there.
 *
 * @since 0.1.0
 * @category replication
 */
export interface TakeOverOptions {
  readonly resync?: boolean
  /**
   * With `resync`: the highest Cumulative TSN Ack the primary may have sent the peer (the
   * replication makes it known to the secondary before the SACK leaves the primary). The
   * peer never resends a TSN at or below it. Undefined: none beyond the copy's.
   */
  readonly cumulativeTsnAck?: number
  /**
   * With `resync`: the snapshot is at most `tsn` TSNs and `ssn` SSNs per stream behind
   * the primary (the replication guarantees it). The replica jumps over them and tells
   * the peer to skip them with a FORWARD TSN (RFC 3758), when both ends support PR-SCTP.
   */
  readonly reserve?: { readonly tsn: number; readonly ssn: number }
  /**
   * This node's address (one the association lists): when the peer negotiated ASCONF (RFC
   * 5061), an authenticated ASCONF asks it to make this address its primary, retransmitted
   * on T4 until the ASCONF-ACK, so its new DATA comes here at once instead of after its
   * retransmission timers gave up on the dead node's address.
   */
  readonly setPrimary?: string
  /**
   * A planned handover: the copy is exact and the old node sent everything the copy says
   * was sent (it waited for its last updates' outputs before handing over). What is in
   * flight stays in flight under its running T3-rtx timer: nothing is sent again.
   */
  readonly handover?: boolean
}

/**
 * Makes a replica live: re-arms every recorded timer, marks all outstanding DATA for
 * retransmission (as on T3 expiry but keeping cwnd; not on a `handover`) and sends it as
 * cwnd allows, and sends a HEARTBEAT on every path so the peer sees the new address answer
 * at once. Its first SACK that reports a hole goes out split (see `sendSplitSacks`): the
 * peer fast-retransmits what it sent to the dead node instead of waiting for its T3-rtx.
 *
 * Outbound, always: until a SACK acknowledges less than everything we sent, a SACK whose
 * Cumulative TSN Ack is at or beyond our next TSN is believed (the dead primary sent those
 * TSNs after the snapshot): our next TSN moves past it and what we hold below it counts as
 * acknowledged (`resynchronizing`).
 *
 * Inbound, with `resync: true` — for a replica that may be behind the primary:
 *
 * 1. The cumulative TSN moves to `cumulativeTsnAck` when that is ahead: the peer freed
 *    those TSNs and never resends them (what the primary received there and had not
 *    delivered is lost: the policy's bounded loss); buffered fragments of messages that
 *    lack a fragment at or below it are dropped. When it is not ahead the replica is in
 *    step with the peer (every TSN the peer will not resend is in the copy), and nothing
 *    below applies.
 * 2. On each ordered stream, once every TSN below the lowest TSN seen on it arrived, that
 *    chunk's SSN becomes the next one expected if it is ahead (the primary delivered the
 *    ones before it; a sender numbers a stream's messages in TSN order); buffered
 *    fragments of the SSNs skipped are dropped.
 * 3. The mode ends when every inbound stream was resolved, or when the cumulative TSN
 *    passes the takeover's + 65,536 (SSNs wrap).
 *
 * Outbound, always: a SACK that no longer covers a TSN an earlier Gap Ack Block covered
 * (below its highest block) revokes it (§6.2.1 D iv): it is outstanding again and T3 runs,
 * so a peer whose data the dead primary gap-acknowledged resends it to the replica.
 *
 * Outbound, with `resync: true` and `reserve: { tsn: R1, ssn: R2 }` (the snapshot is at
 * most R1 TSNs and R2 SSNs per stream behind the primary), when both ends offered
 * Forward-TSN-Supported (RFC 3758, PR-SCTP; we always offer it): the fragments still
 * queued in the snapshot first take the next TSNs — TSNs are assigned in queue order, so
 * these are the TSNs (and SSNs) under which the primary sent them if it did — and are
 * marked for retransmission with the outstanding chunks: what the peer got from the
 * primary is acknowledged, not sent twice, and a message is never split across the jump
 * (§6.9). Then the next TSN moves R1 ahead and every outbound stream's next SSN R2 ahead;
 * once every chunk below the jump is acknowledged (the peer's cumulative TSN ack reaches
 * it) a FORWARD TSN goes out with New Cumulative TSN = the jumped next TSN − 1 and, per
 * stream, the SSN before its first new one; it is retransmitted on T3 until the peer's
 * cumulative TSN ack reaches it. It covers everything up to the jump, so whatever the
 * primary sent in the reserved range the peer moves past. New DATA meanwhile uses the new
 * numbers (the peer holds it above the gap until the FORWARD TSN arrives). What the dead
 * primary sent in the reserved range (messages queued after the snapshot) and the peer did
 * not receive is lost (the policy's bounded loss). Keep R1 well under 65,535 minus the
 * peer's window in chunks: a peer drops DATA that far beyond its cumulative TSN. If the
 * outbound streams do not fit one FORWARD TSN in a packet, only the streams used so far
 * jump. Without PR-SCTP on both ends there is no jump: the replica reuses TSNs and SSNs
 * the primary may have used; the peer takes the reused TSNs it received as duplicates
 * (those messages of ours are lost) and, for a reused SSN it delivered, drops the message
 * as stale, or waits for SSNs the primary used and it never received (the stream stalls).
 *
 * Every skip is reported as a `Dropped` event (`ResyncSkippedTsns`, `ResyncSkippedSsns`,
 * `ResyncIncomplete`). Messages the primary received above a gap (acknowledged by Gap Ack
 * Blocks) and delivered are not known to the replica: the peer resends them once our
 * SACKs omit them (§6.2.1 D iv, reneging), and they are delivered a second time.
 *
 * @since 0.1.0
 * @category replication
 */
export const takeOver = (st: State, nowMs: number, options?: TakeOverOptions): Array<Output> => {
  const ctx = makeCtx(nowMs)
  if (isClosed(st)) return ctx.out
  for (const [name, at] of Object.entries(st.timers)) setTimer(ctx, st, name, Math.max(at, nowMs))
  if (options?.handover !== true) {
    const out = st.outstanding
    for (let position = st.outstandingHead; position < out.length; position++) {
      const chunk = out[position]!
      if (chunk.inFlight) markRetransmit(st, chunk)
    }
    for (const path of st.paths) {
      path.flightBytes = 0
      path.rttPending = false
    }
    st.flightBytes = 0
    st.resynchronizing = st.peerTag !== 0
    st.splitFirstGapSack = true
  }
  st.inboundResync = undefined
  const acked = options?.cumulativeTsnAck
  const tracker = st.tracker
  if (
    options?.resync === true &&
    acked !== undefined &&
    tracker !== undefined &&
    st.reassembly !== undefined &&
    gt32(acked, tracker.cumulative)
  ) {
    tracker.skipTo(acked)
    st.sackNow = true
    emit(ctx, { _tag: "Dropped", reason: "ResyncSkippedTsns" })
    const { messages, droppedBytes } = st.reassembly.abandon(tracker.cumulative)
    if (droppedBytes > 0) emit(ctx, { _tag: "Dropped", reason: "ResyncIncomplete" })
    for (const message of messages) emit(ctx, { _tag: "Message", ...message })
    st.inboundResync = {
      candidates: [],
      seenStreams: [],
      untilTsn: add32(tracker.cumulative, 65536),
    }
  }
  const reserve = options?.reserve
  if (
    options?.resync === true &&
    reserve !== undefined &&
    st.forwardTsnSupported &&
    (st.name === "Established" || st.name === "ShutdownPending" || st.name === "ShutdownReceived")
  ) {
    reserveJump(st, Math.max(0, Math.floor(reserve.tsn)), Math.max(0, Math.floor(reserve.ssn)))
  }
  if (st.peerTag !== 0 && st.name !== "CookieWait" && st.name !== "CookieEchoed") {
    for (let index = 0; index < st.paths.length; index++) sendHeartbeat(ctx, st, index)
    requestPrimary(ctx, st, options?.setPrimary)
    // The SACK the dead node owed (its delayed-SACK timer runs on the copy) goes with the
    // request: a peer that bundles (Nagle) sends nothing new until it comes, and once it has
    // both it sends its next DATA here (the SACK goes first in the packet, the ASCONF after).
    if (options?.setPrimary !== undefined && st.timers.SACK !== undefined) st.sackNow = true
  }
  finish(ctx, st)
  return ctx.out
}

/**
 * Asks the peer (ASCONF Set Primary Address) to send to `host` from now on; nothing when
 * ASCONF was not negotiated. With an ASCONF in flight (a replica of a node that had just
 * sent one) that one is retransmitted as it is and this request waits for its ASCONF-ACK
 * (§4.1.1 A3: one at a time).
 */
const requestPrimary = (ctx: Ctx, st: State, host: string | undefined): void => {
  const asconf = st.asconf
  if (host === undefined || asconf === undefined || st.paths.length === 0) return
  if (asconf.pending !== undefined) {
    asconf.nextPrimary = host
    return
  }
  const address = S.addressParameter(host)
  if (address === undefined) return
  asconf.pending = Asconf.setPrimary(asconf.nextSerial, address)
  asconf.nextSerial = add32(asconf.nextSerial, 1)
  sendAsconf(ctx, st, dataPath(st))
}
