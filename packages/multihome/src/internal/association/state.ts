/**
 * The association machine: State.
 */

import type * as Auth from "../../Auth.ts"
import type * as Chunk from "../../Chunk.ts"
import type * as Congestion from "../../Congestion.ts"
import type * as Cookie from "../../Cookie.ts"
import type { Reassembly } from "../../Reassembly.ts"
import type * as Rto from "../../Rto.ts"
import type { TsnTracker } from "../../TsnTracker.ts"
import type * as S from "../association-support.ts"
import type { Config } from "./config.ts"

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
export interface Path {
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
export interface Outstanding {
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
export interface Queued {
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
   * Set by a takeover (not replicated) until a SACK with no gap acknowledges DATA that came
   * after it (`from`: the cumulative TSN then), or until `untilMs`: what the peer sent to the
   * dead node may be lost, and a peer that bundles (Nagle) holds what it writes next behind
   * it, so nothing reaches us above the hole and only its T3-rtx would resend it. Meanwhile
   * a HEARTBEAT goes to the peer every {@link takeoverProbeMs}, less often after several
   * drew no DATA (`probeTakeoverHole`): each packet it gets sends what it held, each of our
   * SACKs for that newly acknowledges a higher TSN, and the third is its fast retransmit
   * (RFC 9260 §7.2.4). `quietProbes`: the probes since the last DATA.
   * `primary`: the Set Primary Address to ask for once filled
   * (`TakeOverOptions.setPrimaryOnceFilled`).
   */
  takeoverHole?:
    | { from: number; untilMs: number; quietProbes: number; primary?: string }
    | undefined
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
export interface InboundResync {
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
