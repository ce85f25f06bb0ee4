/**
 * Chunk type codes of RFC 9260 §3.2 (ECNE 12 and CWR 13 are reserved for ECN and decoded
 * as unknown chunks).
 *
 * @since 0.1.0
 * @category type codes
 */
export const ChunkType = {
  Data: 0,
  Init: 1,
  InitAck: 2,
  Sack: 3,
  Heartbeat: 4,
  HeartbeatAck: 5,
  Abort: 6,
  Shutdown: 7,
  ShutdownAck: 8,
  OperationError: 9,
  CookieEcho: 10,
  CookieAck: 11,
  ShutdownComplete: 14,
  /** RFC 4895 §4.2: authenticates the chunks after it in its packet. */
  Auth: 15,
  /** RFC 5061 §4.2 ASCONF-ACK. */
  AsconfAck: 0x80,
  /** RFC 3758 §3.2 (PR-SCTP). */
  ForwardTsn: 192,
  /** RFC 5061 §4.1 (dynamic address reconfiguration). */
  Asconf: 0xc1,
} as const

/**
 * Parameter type codes of INIT and INIT ACK (RFC 9260 §3.3.2–3.3.3), and Heartbeat Info.
 *
 * @since 0.1.0
 * @category type codes
 */
export const ParameterType = {
  HeartbeatInfo: 1,
  Ipv4Address: 5,
  Ipv6Address: 6,
  StateCookie: 7,
  UnrecognizedParameter: 8,
  CookiePreservative: 9,
  HostNameAddress: 11,
  SupportedAddressTypes: 12,
  /** RFC 3758 §3.1 (PR-SCTP), no value. */
  ForwardTsnSupported: 0xc000,
  /** RFC 4895 §3.1: the sender's random number, one input of the association key. */
  Random: 0x8002,
  /** RFC 4895 §3.2: chunk types the sender accepts only authenticated. */
  ChunkList: 0x8003,
  /** RFC 4895 §3.3: HMAC identifiers the sender supports, preferred first. */
  HmacAlgo: 0x8004,
  /** RFC 5061 §4.2.7: extension chunk types the sender supports. */
  SupportedExtensions: 0x8008,
} as const

/**
 * Parameter types of ASCONF and ASCONF-ACK (RFC 5061 §4.2).
 *
 * @since 0.1.0
 * @category type codes
 */
export const AsconfParameterType = {
  AddIpAddress: 0xc001,
  DeleteIpAddress: 0xc002,
  ErrorCauseIndication: 0xc003,
  SetPrimaryAddress: 0xc004,
  SuccessIndication: 0xc005,
} as const

/**
 * Error cause codes (RFC 9260 §3.3.10).
 *
 * @since 0.1.0
 * @category type codes
 */
export const CauseCode = {
  InvalidStreamIdentifier: 1,
  MissingMandatoryParameter: 2,
  StaleCookie: 3,
  OutOfResource: 4,
  UnresolvableAddress: 5,
  UnrecognizedChunkType: 6,
  InvalidMandatoryParameter: 7,
  UnrecognizedParameters: 8,
  NoUserData: 9,
  CookieReceivedWhileShuttingDown: 10,
  RestartWithNewAddresses: 11,
  UserInitiatedAbort: 12,
  ProtocolViolation: 13,
} as const
