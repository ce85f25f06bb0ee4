/**
 * The association machine: Configuration.
 */

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
