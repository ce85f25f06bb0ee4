/**
 * SCTP chunks, their parameters and error causes (RFC 9260 §3.2–3.3), as a tagged union
 * with a codec, and the rules for chunk and parameter types the receiver does not know
 * (the upper two bits of the type, §3.2 and §3.2.1).
 *
 * Decoded byte fields (`userData`, `cookie`, raw values) are views into the received
 * packet, never copies: decoding allocates less than the packet's size. Copy a field to
 * keep it after its buffer is reused.
 *
 * On encoding, numbers are taken modulo 2^32 (or 2^16 for 16-bit fields); reserved flag
 * bits are written as zero and ignored on receipt.
 *
 * @since 0.1.0
 */
import type { MalformedReason } from "./DecodeError.ts"
import { frameTlv, pad4, readU16, readU32, writeU16, writeU32 } from "./internal/wire.ts"

// ---------------------------------------------------------------------------------------
// Type codes
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

/** @since 0.1.0 @category parameters */
export interface Ipv4Address {
  readonly _tag: "Ipv4Address"
  /** 4 bytes in network order; on encoding, shorter is zero-filled, longer is cut. */
  readonly address: Uint8Array
}

/** @since 0.1.0 @category parameters */
export interface Ipv6Address {
  readonly _tag: "Ipv6Address"
  /** 16 bytes in network order; on encoding, shorter is zero-filled, longer is cut. */
  readonly address: Uint8Array
}

/** @since 0.1.0 @category parameters */
export interface StateCookie {
  readonly _tag: "StateCookie"
  /** Opaque to the peer: it is echoed back in COOKIE ECHO. */
  readonly cookie: Uint8Array
}

/**
 * In INIT ACK: a parameter of the INIT the sender did not recognize, as it was received
 * (the whole type-length-value).
 *
 * @since 0.1.0
 * @category parameters
 */
export interface UnrecognizedParameter {
  readonly _tag: "UnrecognizedParameter"
  readonly parameter: Uint8Array
}

/** @since 0.1.0 @category parameters */
export interface CookiePreservative {
  readonly _tag: "CookiePreservative"
  /** Suggested increase of the cookie's life span, in milliseconds. */
  readonly lifeSpanIncrementMs: number
}

/**
 * A host name to resolve. RFC 9260 §5.1.2: a receiver refuses it (ABORT with an
 * Unresolvable Address cause, see {@link refuseHostNameAddress}); a sender never sends it.
 *
 * @since 0.1.0
 * @category parameters
 */
export interface HostNameAddress {
  readonly _tag: "HostNameAddress"
  /** The name as received, with its terminating NUL if the peer sent one. */
  readonly hostName: Uint8Array
}

/** @since 0.1.0 @category parameters */
export interface SupportedAddressTypes {
  readonly _tag: "SupportedAddressTypes"
  /** Parameter type codes: 5 (IPv4), 6 (IPv6), 11 (host name). */
  readonly addressTypes: ReadonlyArray<number>
}

/**
 * Forward-TSN-Supported (RFC 3758 §3.1): in INIT or INIT ACK, the sender understands
 * FORWARD TSN.
 *
 * @since 0.1.0
 * @category parameters
 */
export interface ForwardTsnSupported {
  readonly _tag: "ForwardTsnSupported"
}

/**
 * RANDOM (RFC 4895 §3.1): the sender's random number (32 bytes from this endpoint).
 *
 * @since 0.1.0
 * @category parameters
 */
export interface Random {
  readonly _tag: "Random"
  readonly random: Uint8Array
}

/**
 * CHUNKS (RFC 4895 §3.2): chunk types the sender wants to receive only after an AUTH chunk.
 *
 * @since 0.1.0
 * @category parameters
 */
export interface ChunkList {
  readonly _tag: "ChunkList"
  /** One chunk type per byte. */
  readonly chunkTypes: Uint8Array
}

/**
 * HMAC-ALGO (RFC 4895 §3.3): HMAC identifiers the sender supports, most preferred first.
 *
 * @since 0.1.0
 * @category parameters
 */
export interface HmacAlgo {
  readonly _tag: "HmacAlgo"
  readonly hmacIds: ReadonlyArray<number>
}

/**
 * Supported Extensions (RFC 5061 §4.2.7): the extension chunk types the sender supports.
 *
 * @since 0.1.0
 * @category parameters
 */
export interface SupportedExtensions {
  readonly _tag: "SupportedExtensions"
  /** One chunk type per byte. */
  readonly chunkTypes: Uint8Array
}

/**
 * A parameter this codec does not interpret, kept with its type for
 * {@link processUnknownParameters}.
 *
 * @since 0.1.0
 * @category parameters
 */
export interface UnknownParameter {
  readonly _tag: "UnknownParameter"
  /** 16-bit type code; its upper two bits say what a receiver does with it. */
  readonly type: number
  readonly value: Uint8Array
}

/**
 * A parameter of INIT or INIT ACK.
 *
 * @since 0.1.0
 * @category parameters
 */
export type Parameter =
  | ForwardTsnSupported
  | Random
  | ChunkList
  | HmacAlgo
  | SupportedExtensions
  | Ipv4Address
  | Ipv6Address
  | StateCookie
  | UnrecognizedParameter
  | CookiePreservative
  | HostNameAddress
  | SupportedAddressTypes
  | UnknownParameter

// ---------------------------------------------------------------------------------------
// Error causes
// ---------------------------------------------------------------------------------------

/** @since 0.1.0 @category error causes */
export interface InvalidStreamIdentifier {
  readonly _tag: "InvalidStreamIdentifier"
  readonly streamIdentifier: number
}

/** @since 0.1.0 @category error causes */
export interface MissingMandatoryParameter {
  readonly _tag: "MissingMandatoryParameter"
  /** The parameter types that were missing. */
  readonly missingTypes: ReadonlyArray<number>
}

/** @since 0.1.0 @category error causes */
export interface StaleCookie {
  readonly _tag: "StaleCookie"
  /** How long past its life the cookie was, in microseconds. */
  readonly stalenessUs: number
}

/** @since 0.1.0 @category error causes */
export interface OutOfResource {
  readonly _tag: "OutOfResource"
}

/** @since 0.1.0 @category error causes */
export interface UnresolvableAddress {
  readonly _tag: "UnresolvableAddress"
  /** The address parameter that could not be resolved, type-length-value as received. */
  readonly address: Uint8Array
}

/** @since 0.1.0 @category error causes */
export interface UnrecognizedChunkType {
  readonly _tag: "UnrecognizedChunkType"
  /** The unrecognized chunk: type, flags, length and value. */
  readonly chunk: Uint8Array
}

/** @since 0.1.0 @category error causes */
export interface InvalidMandatoryParameter {
  readonly _tag: "InvalidMandatoryParameter"
}

/** @since 0.1.0 @category error causes */
export interface UnrecognizedParameters {
  readonly _tag: "UnrecognizedParameters"
  /** The unrecognized parameters, type-length-value each, padded, back to back. */
  readonly parameters: Uint8Array
}

/** @since 0.1.0 @category error causes */
export interface NoUserData {
  readonly _tag: "NoUserData"
  /** The TSN of the DATA chunk that carried no user data. */
  readonly tsn: number
}

/** @since 0.1.0 @category error causes */
export interface CookieReceivedWhileShuttingDown {
  readonly _tag: "CookieReceivedWhileShuttingDown"
}

/** @since 0.1.0 @category error causes */
export interface RestartWithNewAddresses {
  readonly _tag: "RestartWithNewAddresses"
  /** The address parameters the restarting INIT added, type-length-value each. */
  readonly addresses: Uint8Array
}

/** @since 0.1.0 @category error causes */
export interface UserInitiatedAbort {
  readonly _tag: "UserInitiatedAbort"
  /** The upper layer's reason, opaque to SCTP. */
  readonly reason: Uint8Array
}

/** @since 0.1.0 @category error causes */
export interface ProtocolViolation {
  readonly _tag: "ProtocolViolation"
  readonly information: Uint8Array
}

/** @since 0.1.0 @category error causes */
export interface UnknownCause {
  readonly _tag: "UnknownCause"
  readonly code: number
  readonly value: Uint8Array
}

/**
 * An error cause, carried by ABORT and ERROR (RFC 9260 §3.3.10).
 *
 * @since 0.1.0
 * @category error causes
 */
export type ErrorCause =
  | InvalidStreamIdentifier
  | MissingMandatoryParameter
  | StaleCookie
  | OutOfResource
  | UnresolvableAddress
  | UnrecognizedChunkType
  | InvalidMandatoryParameter
  | UnrecognizedParameters
  | NoUserData
  | CookieReceivedWhileShuttingDown
  | RestartWithNewAddresses
  | UserInitiatedAbort
  | ProtocolViolation
  | UnknownCause

// ---------------------------------------------------------------------------------------
// Chunks
// ---------------------------------------------------------------------------------------

/**
 * Payload Data (DATA), RFC 9260 §3.3.1. An empty `userData` is decoded as is: answering it
 * (ABORT with No User Data) is the association's job.
 *
 * @since 0.1.0
 * @category chunks
 */
export interface Data {
  readonly _tag: "Data"
  /** I bit: the receiver should SACK at once. */
  readonly immediate: boolean
  /** U bit: no stream sequence number ordering. */
  readonly unordered: boolean
  /** B bit: first fragment of a user message. */
  readonly beginning: boolean
  /** E bit: last fragment of a user message. */
  readonly ending: boolean
  readonly tsn: number
  readonly streamIdentifier: number
  readonly streamSequenceNumber: number
  readonly payloadProtocolIdentifier: number
  readonly userData: Uint8Array
}

/**
 * Initiation (INIT), RFC 9260 §3.3.2; sent in a packet of its own with verification tag 0.
 *
 * @since 0.1.0
 * @category chunks
 */
export interface Init {
  readonly _tag: "Init"
  /** The tag the peer must put in every packet it sends to the sender; never 0. */
  readonly initiateTag: number
  /** a_rwnd, in bytes. */
  readonly advertisedReceiverWindowCredit: number
  /** OS: streams the sender wants to open. */
  readonly outboundStreams: number
  /** MIS: streams the sender accepts; never 0. */
  readonly inboundStreams: number
  readonly initialTsn: number
  readonly parameters: ReadonlyArray<Parameter>
}

/**
 * Initiation Acknowledgement (INIT ACK), RFC 9260 §3.3.3: the fields of INIT, and a State
 * Cookie among the parameters.
 *
 * @since 0.1.0
 * @category chunks
 */
export interface InitAck extends Omit<Init, "_tag"> {
  readonly _tag: "InitAck"
}

/**
 * A gap ack block: TSNs `cumulativeTsnAck + start` to `cumulativeTsnAck + end` arrived.
 *
 * @since 0.1.0
 * @category chunks
 */
export interface GapAckBlock {
  readonly start: number
  readonly end: number
}

/**
 * Selective Acknowledgement (SACK), RFC 9260 §3.3.4.
 *
 * @since 0.1.0
 * @category chunks
 */
export interface Sack {
  readonly _tag: "Sack"
  readonly cumulativeTsnAck: number
  readonly advertisedReceiverWindowCredit: number
  readonly gapAckBlocks: ReadonlyArray<GapAckBlock>
  readonly duplicateTsns: ReadonlyArray<number>
}

/**
 * Heartbeat Request (HEARTBEAT), RFC 9260 §3.3.5. `info` is the value of the Heartbeat
 * Info parameter, opaque to the receiver, which echoes it verbatim in HEARTBEAT ACK.
 *
 * @since 0.1.0
 * @category chunks
 */
export interface Heartbeat {
  readonly _tag: "Heartbeat"
  readonly info: Uint8Array
}

/** @since 0.1.0 @category chunks */
export interface HeartbeatAck {
  readonly _tag: "HeartbeatAck"
  readonly info: Uint8Array
}

/**
 * Abort Association (ABORT), RFC 9260 §3.3.7.
 *
 * @since 0.1.0
 * @category chunks
 */
export interface Abort {
  readonly _tag: "Abort"
  /**
   * T bit: the packet's verification tag is the one the sender received (its own tag,
   * reflected) rather than the one the receiver expects.
   */
  readonly reflected: boolean
  readonly causes: ReadonlyArray<ErrorCause>
}

/** Shutdown Association (SHUTDOWN), RFC 9260 §3.3.8. @since 0.1.0 @category chunks */
export interface Shutdown {
  readonly _tag: "Shutdown"
  readonly cumulativeTsnAck: number
}

/** Shutdown Acknowledgement (SHUTDOWN ACK), RFC 9260 §3.3.9. @since 0.1.0 @category chunks */
export interface ShutdownAck {
  readonly _tag: "ShutdownAck"
}

/** Operation Error (ERROR), RFC 9260 §3.3.10. @since 0.1.0 @category chunks */
export interface OperationError {
  readonly _tag: "OperationError"
  readonly causes: ReadonlyArray<ErrorCause>
}

/** State Cookie (COOKIE ECHO), RFC 9260 §3.3.11. @since 0.1.0 @category chunks */
export interface CookieEcho {
  readonly _tag: "CookieEcho"
  readonly cookie: Uint8Array
}

/** Cookie Acknowledgement (COOKIE ACK), RFC 9260 §3.3.12. @since 0.1.0 @category chunks */
export interface CookieAck {
  readonly _tag: "CookieAck"
}

/**
 * Shutdown Complete (SHUTDOWN COMPLETE), RFC 9260 §3.3.13; alone in its packet.
 *
 * @since 0.1.0
 * @category chunks
 */
export interface ShutdownComplete {
  readonly _tag: "ShutdownComplete"
  /** T bit, as in {@link Abort}. */
  readonly reflected: boolean
}

/**
 * A stream and the last SSN skipped on it, in a {@link ForwardTsn}.
 *
 * @since 0.1.0
 * @category chunks
 */
export interface ForwardTsnStream {
  readonly stream: number
  readonly ssn: number
}

/**
 * FORWARD TSN (RFC 3758 §3.2, PR-SCTP): the receiver moves its cumulative TSN to
 * `newCumulativeTsn` as if every TSN up to it had arrived, and on each listed ordered
 * stream skips the SSNs up to `ssn`.
 *
 * @since 0.1.0
 * @category chunks
 */
export interface ForwardTsn {
  readonly _tag: "ForwardTsn"
  readonly newCumulativeTsn: number
  readonly streams: ReadonlyArray<ForwardTsnStream>
}

/**
 * AUTH (RFC 4895 §4.2): an HMAC over itself (HMAC field zero) and every chunk after it in
 * the packet, under the association shared key.
 *
 * @since 0.1.0
 * @category chunks
 */
export interface Auth {
  readonly _tag: "Auth"
  readonly sharedKeyId: number
  readonly hmacId: number
  readonly hmac: Uint8Array
}

/**
 * A request or response inside ASCONF / ASCONF-ACK (RFC 5061 §4.2): Add IP Address, Delete
 * IP Address and Set Primary Address carry an address parameter; Error Cause Indication
 * carries error causes; Success Indication nothing but the correlation ID.
 *
 * @since 0.1.0
 * @category chunks
 */
export type AsconfParameter =
  | {
      readonly _tag: "AddIpAddress" | "DeleteIpAddress" | "SetPrimaryAddress"
      readonly correlationId: number
      /** An IPv4 or IPv6 Address parameter (anything else is answered as invalid). */
      readonly address: Parameter
    }
  | {
      readonly _tag: "ErrorCauseIndication"
      readonly correlationId: number
      readonly causes: ReadonlyArray<ErrorCause>
    }
  | { readonly _tag: "SuccessIndication"; readonly correlationId: number }
  | { readonly _tag: "UnknownAsconfParameter"; readonly type: number; readonly value: Uint8Array }

/**
 * ASCONF (RFC 5061 §4.1.1): requests, in order, under a serial number; `address` is one of
 * the sender's addresses (the receiver may find the association by it).
 *
 * @since 0.1.0
 * @category chunks
 */
export interface Asconf {
  readonly _tag: "Asconf"
  readonly serialNumber: number
  readonly address: Parameter
  readonly parameters: ReadonlyArray<AsconfParameter>
}

/**
 * ASCONF-ACK (RFC 5061 §4.1.2): the responses to the ASCONF of the same serial number.
 *
 * @since 0.1.0
 * @category chunks
 */
export interface AsconfAck {
  readonly _tag: "AsconfAck"
  readonly serialNumber: number
  readonly parameters: ReadonlyArray<AsconfParameter>
}

/**
 * A chunk type this codec does not interpret, kept whole so it can be skipped or reported
 * by {@link processUnknownChunks}.
 *
 * @since 0.1.0
 * @category chunks
 */
export interface UnknownChunk {
  readonly _tag: "UnknownChunk"
  /** 8-bit type code; its upper two bits say what a receiver does with it. */
  readonly type: number
  readonly flags: number
  readonly value: Uint8Array
}

/**
 * A chunk of an SCTP packet.
 *
 * @since 0.1.0
 * @category chunks
 */
export type Chunk =
  | Data
  | Init
  | InitAck
  | Sack
  | Heartbeat
  | HeartbeatAck
  | Abort
  | Shutdown
  | ShutdownAck
  | OperationError
  | CookieEcho
  | CookieAck
  | ShutdownComplete
  | ForwardTsn
  | Auth
  | Asconf
  | AsconfAck
  | UnknownChunk

/**
 * The largest value of a chunk's 16-bit length field: a chunk, header included, fits in it.
 *
 * @since 0.1.0
 * @category limits
 */
export const maxChunkLength = 0xffff

/**
 * The type code of a chunk.
 *
 * @since 0.1.0
 * @category accessors
 */
export const typeOf = (chunk: Chunk): number =>
  chunk._tag === "UnknownChunk" ? chunk.type & 0xff : ChunkType[chunk._tag]

// ---------------------------------------------------------------------------------------
// Unknown types: the upper two bits
// ---------------------------------------------------------------------------------------

/**
 * What a receiver does with a chunk or parameter type it does not recognize, from the
 * upper two bits of the type (RFC 9260 §3.2 for chunks, §3.2.1 for parameters):
 * 00 stop and discard, 01 stop, discard and report, 10 skip, 11 skip and report. For a
 * chunk "stop" means the rest of the packet; for a parameter, the rest of the chunk's
 * parameters.
 *
 * @since 0.1.0
 * @category unknown types
 */
export type UnknownAction = "Stop" | "StopAndReport" | "Skip" | "SkipAndReport"

const actions: ReadonlyArray<UnknownAction> = ["Stop", "StopAndReport", "Skip", "SkipAndReport"]

/**
 * The action for an unrecognized 8-bit chunk type.
 *
 * @since 0.1.0
 * @category unknown types
 */
export const chunkTypeAction = (type: number): UnknownAction => actions[(type >>> 6) & 3]!

/**
 * The action for an unrecognized 16-bit parameter type.
 *
 * @since 0.1.0
 * @category unknown types
 */
export const parameterTypeAction = (type: number): UnknownAction => actions[(type >>> 14) & 3]!

/**
 * The outcome of applying the upper-two-bit rule to a list of parameters.
 *
 * @since 0.1.0
 * @category unknown types
 */
export interface ParameterProcessing {
  /** An unknown parameter said stop: parameters after it are not processed. */
  readonly stop: boolean
  /** The recognized parameters to process, in order (those before a stop). */
  readonly process: ReadonlyArray<Parameter>
  /**
   * Unknown parameters to report: in an INIT ACK as Unrecognized Parameter parameters when
   * processing INIT, otherwise in an ERROR chunk's Unrecognized Parameters cause.
   */
  readonly report: ReadonlyArray<UnknownParameter>
}

/**
 * Applies RFC 9260 §3.2.1 to the parameters of an INIT or INIT ACK.
 *
 * @since 0.1.0
 * @category unknown types
 * @example
 * ```ts
 * const { stop, report } = Chunk.processUnknownParameters(init.parameters)
 * ```
 */
export const processUnknownParameters = (
  parameters: ReadonlyArray<Parameter>,
): ParameterProcessing => {
  const process: Array<Parameter> = []
  const report: Array<UnknownParameter> = []
  for (const parameter of parameters) {
    if (parameter._tag !== "UnknownParameter") {
      process.push(parameter)
      continue
    }
    const action = parameterTypeAction(parameter.type)
    if (action === "StopAndReport" || action === "SkipAndReport") report.push(parameter)
    if (action === "Stop" || action === "StopAndReport") return { stop: true, process, report }
  }
  return { stop: false, process, report }
}

/**
 * The outcome of applying the upper-two-bit rule to a packet's chunks.
 *
 * @since 0.1.0
 * @category unknown types
 */
export interface ChunkProcessing {
  /** An unknown chunk said stop: it and every chunk after it are discarded. */
  readonly stop: boolean
  /** The recognized chunks to process, in order (those before a stop). */
  readonly process: ReadonlyArray<Chunk>
  /** Unknown chunks to report, each in an Unrecognized Chunk Type cause of an ERROR chunk. */
  readonly report: ReadonlyArray<UnknownChunk>
}

/**
 * Applies RFC 9260 §3.2 to the chunks of a received packet.
 *
 * @since 0.1.0
 * @category unknown types
 */
export const processUnknownChunks = (chunks: ReadonlyArray<Chunk>): ChunkProcessing => {
  const process: Array<Chunk> = []
  const report: Array<UnknownChunk> = []
  for (const chunk of chunks) {
    if (chunk._tag !== "UnknownChunk") {
      process.push(chunk)
      continue
    }
    const action = chunkTypeAction(chunk.type)
    if (action === "StopAndReport" || action === "SkipAndReport") report.push(chunk)
    if (action === "Stop" || action === "StopAndReport") return { stop: true, process, report }
  }
  return { stop: false, process, report }
}

/**
 * The error cause reporting an unrecognized chunk (the chunk as it was received, modulo
 * padding).
 *
 * @since 0.1.0
 * @category unknown types
 */
export const unrecognizedChunkType = (chunk: UnknownChunk): UnrecognizedChunkType => ({
  _tag: "UnrecognizedChunkType",
  chunk: encodeChunk(chunk).subarray(0, 4 + chunk.value.length),
})

/**
 * The INIT ACK parameter reporting one unrecognized INIT parameter.
 *
 * @since 0.1.0
 * @category unknown types
 */
export const unrecognizedParameter = (parameter: UnknownParameter): UnrecognizedParameter => ({
  _tag: "UnrecognizedParameter",
  parameter: encodeParameter(parameter).subarray(0, 4 + parameter.value.length),
})

/**
 * The ERROR cause reporting unrecognized parameters (outside INIT processing).
 *
 * @since 0.1.0
 * @category unknown types
 */
export const unrecognizedParameters = (
  parameters: ReadonlyArray<UnknownParameter>,
): UnrecognizedParameters => {
  const bytes = new Uint8Array(parameters.reduce((sum, p) => sum + parameterSize(p), 0))
  let offset = 0
  for (const parameter of parameters) offset = writeParameter(bytes, offset, parameter)
  // The last parameter's padding is the cause's own, outside its length.
  const length = listLength(parameters, (p) => 4 + parameterValueLength(p))
  return { _tag: "UnrecognizedParameters", parameters: bytes.subarray(0, length) }
}

/**
 * RFC 9260 §5.1.2: an INIT or INIT ACK with a Host Name Address is refused with an ABORT.
 * Returns the Unresolvable Address cause to put in that ABORT, or `undefined` if there is
 * no host name among the parameters.
 *
 * @since 0.1.0
 * @category validation
 */
export const refuseHostNameAddress = (
  parameters: ReadonlyArray<Parameter>,
): UnresolvableAddress | undefined => {
  const hostName = parameters.find((p) => p._tag === "HostNameAddress")
  return hostName === undefined
    ? undefined
    : {
        _tag: "UnresolvableAddress",
        address: encodeParameter(hostName).subarray(0, 4 + hostName.hostName.length),
      }
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

const parameterValueLength = (parameter: Parameter): number => {
  switch (parameter._tag) {
    case "Ipv4Address":
      return 4
    case "Ipv6Address":
      return 16
    case "StateCookie":
      return parameter.cookie.length
    case "UnrecognizedParameter":
      return parameter.parameter.length
    case "CookiePreservative":
      return 4
    case "HostNameAddress":
      return parameter.hostName.length
    case "SupportedAddressTypes":
      return 2 * parameter.addressTypes.length
    case "ForwardTsnSupported":
      return 0
    case "Random":
      return parameter.random.length
    case "ChunkList":
    case "SupportedExtensions":
      return parameter.chunkTypes.length
    case "HmacAlgo":
      return 2 * parameter.hmacIds.length
    case "UnknownParameter":
      return parameter.value.length
  }
}

const parameterTypeOf = (parameter: Parameter): number =>
  parameter._tag === "UnknownParameter" ? parameter.type & 0xffff : ParameterType[parameter._tag]

/** A parameter's size on the wire, padding included. */
const parameterSize = (parameter: Parameter): number => pad4(4 + parameterValueLength(parameter))

/** Writes bytes cut or zero-filled to exactly `length` (zero-fill: the buffer starts zeroed). */
const writeFixed = (bytes: Uint8Array, offset: number, value: Uint8Array, length: number) => {
  bytes.set(value.length > length ? value.subarray(0, length) : value, offset)
}

/** Writes one parameter at `offset` into a zeroed buffer; returns the offset after its padding. */
const writeParameter = (bytes: Uint8Array, offset: number, parameter: Parameter): number => {
  const length = 4 + parameterValueLength(parameter)
  writeU16(bytes, offset, parameterTypeOf(parameter))
  writeU16(bytes, offset + 2, length)
  const value = offset + 4
  switch (parameter._tag) {
    case "Ipv4Address":
      writeFixed(bytes, value, parameter.address, 4)
      break
    case "Ipv6Address":
      writeFixed(bytes, value, parameter.address, 16)
      break
    case "StateCookie":
      bytes.set(parameter.cookie, value)
      break
    case "UnrecognizedParameter":
      bytes.set(parameter.parameter, value)
      break
    case "CookiePreservative":
      writeU32(bytes, value, parameter.lifeSpanIncrementMs)
      break
    case "HostNameAddress":
      bytes.set(parameter.hostName, value)
      break
    case "SupportedAddressTypes":
      parameter.addressTypes.forEach((type, index) => {
        writeU16(bytes, value + 2 * index, type)
      })
      break
    case "ForwardTsnSupported":
      break
    case "Random":
      bytes.set(parameter.random, value)
      break
    case "ChunkList":
    case "SupportedExtensions":
      bytes.set(parameter.chunkTypes, value)
      break
    case "HmacAlgo":
      parameter.hmacIds.forEach((id, index) => {
        writeU16(bytes, value + 2 * index, id)
      })
      break
    case "UnknownParameter":
      bytes.set(parameter.value, value)
      break
  }
  return offset + pad4(length)
}

/**
 * One parameter, type-length-value, padded to 4 bytes.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeParameter = (parameter: Parameter): Uint8Array => {
  const bytes = new Uint8Array(parameterSize(parameter))
  writeParameter(bytes, 0, parameter)
  return bytes
}

const causeValueLength = (cause: ErrorCause): number => {
  switch (cause._tag) {
    case "InvalidStreamIdentifier":
    case "StaleCookie":
    case "NoUserData":
      return 4
    case "MissingMandatoryParameter":
      return 4 + 2 * cause.missingTypes.length
    case "OutOfResource":
    case "InvalidMandatoryParameter":
    case "CookieReceivedWhileShuttingDown":
      return 0
    case "UnresolvableAddress":
      return cause.address.length
    case "UnrecognizedChunkType":
      return cause.chunk.length
    case "UnrecognizedParameters":
      return cause.parameters.length
    case "RestartWithNewAddresses":
      return cause.addresses.length
    case "UserInitiatedAbort":
      return cause.reason.length
    case "ProtocolViolation":
      return cause.information.length
    case "UnknownCause":
      return cause.value.length
  }
}

const writeCause = (bytes: Uint8Array, offset: number, cause: ErrorCause): number => {
  const length = 4 + causeValueLength(cause)
  writeU16(bytes, offset, cause._tag === "UnknownCause" ? cause.code : CauseCode[cause._tag])
  writeU16(bytes, offset + 2, length)
  const value = offset + 4
  switch (cause._tag) {
    case "InvalidStreamIdentifier":
      // The 16 bits after the stream identifier are reserved: zero.
      writeU16(bytes, value, cause.streamIdentifier)
      break
    case "MissingMandatoryParameter":
      writeU32(bytes, value, cause.missingTypes.length)
      cause.missingTypes.forEach((type, index) => {
        writeU16(bytes, value + 4 + 2 * index, type)
      })
      break
    case "StaleCookie":
      writeU32(bytes, value, cause.stalenessUs)
      break
    case "NoUserData":
      writeU32(bytes, value, cause.tsn)
      break
    case "OutOfResource":
    case "InvalidMandatoryParameter":
    case "CookieReceivedWhileShuttingDown":
      break
    case "UnresolvableAddress":
      bytes.set(cause.address, value)
      break
    case "UnrecognizedChunkType":
      bytes.set(cause.chunk, value)
      break
    case "UnrecognizedParameters":
      bytes.set(cause.parameters, value)
      break
    case "RestartWithNewAddresses":
      bytes.set(cause.addresses, value)
      break
    case "UserInitiatedAbort":
      bytes.set(cause.reason, value)
      break
    case "ProtocolViolation":
      bytes.set(cause.information, value)
      break
    case "UnknownCause":
      bytes.set(cause.value, value)
      break
  }
  return offset + pad4(length)
}

/**
 * The length of back-to-back items whose unpadded lengths are given: every item padded but
 * the last, whose padding is the enclosing chunk's (RFC 9260 §3.2: the chunk length "does
 * include padding of any variable-length parameter except the last parameter").
 */
const listLength = <A>(items: ReadonlyArray<A>, unpadded: (item: A) => number): number => {
  let total = 0
  items.forEach((item, index) => {
    const length = unpadded(item)
    total += index === items.length - 1 ? length : pad4(length)
  })
  return total
}

const initValueLength = (init: Init | InitAck): number =>
  16 + listLength(init.parameters, (parameter) => 4 + parameterValueLength(parameter))

const causesLength = (causes: ReadonlyArray<ErrorCause>): number =>
  listLength(causes, (cause) => 4 + causeValueLength(cause))

/** An ASCONF parameter's length field (its last inner item's padding excluded). */
const asconfParameterLength = (parameter: AsconfParameter): number => {
  switch (parameter._tag) {
    case "AddIpAddress":
    case "DeleteIpAddress":
    case "SetPrimaryAddress":
      return 8 + 4 + parameterValueLength(parameter.address)
    case "ErrorCauseIndication":
      return 8 + causesLength(parameter.causes)
    case "SuccessIndication":
      return 8
    case "UnknownAsconfParameter":
      return 4 + parameter.value.length
  }
}

const asconfTypeOf = (parameter: AsconfParameter): number =>
  parameter._tag === "UnknownAsconfParameter"
    ? parameter.type & 0xffff
    : AsconfParameterType[parameter._tag]

/** Writes one ASCONF parameter at `offset` into a zeroed buffer; returns the offset after it. */
const writeAsconfParameter = (
  bytes: Uint8Array,
  offset: number,
  parameter: AsconfParameter,
): number => {
  const length = asconfParameterLength(parameter)
  writeU16(bytes, offset, asconfTypeOf(parameter))
  writeU16(bytes, offset + 2, length)
  switch (parameter._tag) {
    case "AddIpAddress":
    case "DeleteIpAddress":
    case "SetPrimaryAddress":
      writeU32(bytes, offset + 4, parameter.correlationId)
      writeParameter(bytes, offset + 8, parameter.address)
      break
    case "ErrorCauseIndication": {
      writeU32(bytes, offset + 4, parameter.correlationId)
      let at = offset + 8
      for (const cause of parameter.causes) at = writeCause(bytes, at, cause)
      break
    }
    case "SuccessIndication":
      writeU32(bytes, offset + 4, parameter.correlationId)
      break
    case "UnknownAsconfParameter":
      bytes.set(parameter.value, offset + 4)
      break
  }
  return offset + pad4(length)
}

/**
 * One ASCONF parameter, type-length-value, without trailing padding (as an error cause
 * quotes it).
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeAsconfParameter = (parameter: AsconfParameter): Uint8Array => {
  const length = asconfParameterLength(parameter)
  const bytes = new Uint8Array(pad4(length))
  writeAsconfParameter(bytes, 0, parameter)
  return bytes.subarray(0, length)
}

/** Serial number, address parameter (padded unless last), then the ASCONF parameters. */
const asconfValueLength = (chunk: Asconf): number => {
  const address = 4 + parameterValueLength(chunk.address)
  return chunk.parameters.length === 0
    ? 4 + address
    : 4 + pad4(address) + listLength(chunk.parameters, asconfParameterLength)
}

/** The length of a chunk's value, without header or padding. */
const chunkValueLength = (chunk: Chunk): number => {
  switch (chunk._tag) {
    case "Data":
      return 12 + chunk.userData.length
    case "Init":
    case "InitAck":
      return initValueLength(chunk)
    case "Sack":
      return 12 + 4 * (chunk.gapAckBlocks.length + chunk.duplicateTsns.length)
    case "Heartbeat":
    case "HeartbeatAck":
      return 4 + chunk.info.length
    case "Abort":
    case "OperationError":
      return causesLength(chunk.causes)
    case "Shutdown":
      return 4
    case "ShutdownAck":
    case "CookieAck":
    case "ShutdownComplete":
      return 0
    case "CookieEcho":
      return chunk.cookie.length
    case "ForwardTsn":
      return 4 + 4 * chunk.streams.length
    case "Auth":
      return 4 + chunk.hmac.length
    case "Asconf":
      return asconfValueLength(chunk)
    case "AsconfAck":
      return 4 + listLength(chunk.parameters, asconfParameterLength)
    case "UnknownChunk":
      return chunk.value.length
  }
}

/**
 * A chunk's length field: header and value, without padding (RFC 9260 §3.2).
 *
 * @since 0.1.0
 * @category encoding
 */
export const chunkLength = (chunk: Chunk): number => 4 + chunkValueLength(chunk)

/**
 * A chunk's size on the wire, padding included.
 *
 * @since 0.1.0
 * @category encoding
 */
export const chunkSize = (chunk: Chunk): number => pad4(chunkLength(chunk))

const flagsOf = (chunk: Chunk): number => {
  switch (chunk._tag) {
    case "Data":
      return (
        (chunk.immediate ? 0x08 : 0) |
        (chunk.unordered ? 0x04 : 0) |
        (chunk.beginning ? 0x02 : 0) |
        (chunk.ending ? 0x01 : 0)
      )
    case "Abort":
    case "ShutdownComplete":
      return chunk.reflected ? 0x01 : 0
    case "UnknownChunk":
      return chunk.flags & 0xff
    default:
      return 0
  }
}

/**
 * Writes one chunk at `offset` into a zeroed buffer with room for {@link chunkSize} bytes;
 * returns the offset after its padding. Throws a `RangeError` (a defect of the caller) if
 * the chunk is longer than {@link maxChunkLength}.
 *
 * @since 0.1.0
 * @category encoding
 */
export const writeChunk = (bytes: Uint8Array, offset: number, chunk: Chunk): number => {
  const length = chunkLength(chunk)
  if (length > maxChunkLength) {
    throw new RangeError(`SCTP chunk of ${length} bytes exceeds ${maxChunkLength}`)
  }
  bytes[offset] = typeOf(chunk)
  bytes[offset + 1] = flagsOf(chunk)
  writeU16(bytes, offset + 2, length)
  const value = offset + 4
  switch (chunk._tag) {
    case "Data":
      writeU32(bytes, value, chunk.tsn)
      writeU16(bytes, value + 4, chunk.streamIdentifier)
      writeU16(bytes, value + 6, chunk.streamSequenceNumber)
      writeU32(bytes, value + 8, chunk.payloadProtocolIdentifier)
      bytes.set(chunk.userData, value + 12)
      break
    case "Init":
    case "InitAck": {
      writeU32(bytes, value, chunk.initiateTag)
      writeU32(bytes, value + 4, chunk.advertisedReceiverWindowCredit)
      writeU16(bytes, value + 8, chunk.outboundStreams)
      writeU16(bytes, value + 10, chunk.inboundStreams)
      writeU32(bytes, value + 12, chunk.initialTsn)
      let at = value + 16
      for (const parameter of chunk.parameters) at = writeParameter(bytes, at, parameter)
      break
    }
    case "Sack": {
      writeU32(bytes, value, chunk.cumulativeTsnAck)
      writeU32(bytes, value + 4, chunk.advertisedReceiverWindowCredit)
      writeU16(bytes, value + 8, chunk.gapAckBlocks.length)
      writeU16(bytes, value + 10, chunk.duplicateTsns.length)
      let at = value + 12
      for (const block of chunk.gapAckBlocks) {
        writeU16(bytes, at, block.start)
        writeU16(bytes, at + 2, block.end)
        at += 4
      }
      for (const tsn of chunk.duplicateTsns) {
        writeU32(bytes, at, tsn)
        at += 4
      }
      break
    }
    case "Heartbeat":
    case "HeartbeatAck":
      writeU16(bytes, value, ParameterType.HeartbeatInfo)
      writeU16(bytes, value + 2, 4 + chunk.info.length)
      bytes.set(chunk.info, value + 4)
      break
    case "Abort":
    case "OperationError": {
      let at = value
      for (const cause of chunk.causes) at = writeCause(bytes, at, cause)
      break
    }
    case "Shutdown":
      writeU32(bytes, value, chunk.cumulativeTsnAck)
      break
    case "ShutdownAck":
    case "CookieAck":
    case "ShutdownComplete":
      break
    case "CookieEcho":
      bytes.set(chunk.cookie, value)
      break
    case "ForwardTsn": {
      writeU32(bytes, value, chunk.newCumulativeTsn)
      let at = value + 4
      for (const entry of chunk.streams) {
        writeU16(bytes, at, entry.stream)
        writeU16(bytes, at + 2, entry.ssn)
        at += 4
      }
      break
    }
    case "Auth":
      writeU16(bytes, value, chunk.sharedKeyId)
      writeU16(bytes, value + 2, chunk.hmacId)
      bytes.set(chunk.hmac, value + 4)
      break
    case "Asconf": {
      writeU32(bytes, value, chunk.serialNumber)
      let at = writeParameter(bytes, value + 4, chunk.address)
      for (const parameter of chunk.parameters) at = writeAsconfParameter(bytes, at, parameter)
      break
    }
    case "AsconfAck": {
      writeU32(bytes, value, chunk.serialNumber)
      let at = value + 4
      for (const parameter of chunk.parameters) at = writeAsconfParameter(bytes, at, parameter)
      break
    }
    case "UnknownChunk":
      bytes.set(chunk.value, value)
      break
  }
  return offset + pad4(length)
}

/**
 * One chunk: header, value and padding.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeChunk = (chunk: Chunk): Uint8Array => {
  const bytes = new Uint8Array(chunkSize(chunk))
  writeChunk(bytes, 0, chunk)
  return bytes
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

/**
 * Why a chunk could not be decoded, and where (a byte offset in the same buffer).
 *
 * @since 0.1.0
 * @category decoding
 */
export interface Fault {
  readonly _tag: "Fault"
  readonly reason: MalformedReason
  readonly offset: number
}

const fault = (reason: MalformedReason, offset: number): Fault => ({
  _tag: "Fault",
  reason,
  offset,
})

/**
 * Whether a decoding result is a {@link Fault}.
 *
 * @since 0.1.0
 * @category decoding
 */
export const isFault = (result: unknown): result is Fault =>
  typeof result === "object" &&
  result !== null &&
  "_tag" in result &&
  (result as { readonly _tag: unknown })._tag === "Fault"

const decodeParameter = (
  bytes: Uint8Array,
  type: number,
  start: number,
  end: number,
): Parameter | undefined => {
  const length = end - start
  switch (type) {
    case ParameterType.Ipv4Address:
      return length === 4 ? { _tag: "Ipv4Address", address: bytes.subarray(start, end) } : undefined
    case ParameterType.Ipv6Address:
      return length === 16
        ? { _tag: "Ipv6Address", address: bytes.subarray(start, end) }
        : undefined
    case ParameterType.StateCookie:
      return { _tag: "StateCookie", cookie: bytes.subarray(start, end) }
    case ParameterType.UnrecognizedParameter:
      return { _tag: "UnrecognizedParameter", parameter: bytes.subarray(start, end) }
    case ParameterType.CookiePreservative:
      return length === 4
        ? { _tag: "CookiePreservative", lifeSpanIncrementMs: readU32(bytes, start) }
        : undefined
    case ParameterType.HostNameAddress:
      return { _tag: "HostNameAddress", hostName: bytes.subarray(start, end) }
    case ParameterType.ForwardTsnSupported:
      return length === 0 ? { _tag: "ForwardTsnSupported" } : undefined
    case ParameterType.Random:
      return length > 0 ? { _tag: "Random", random: bytes.subarray(start, end) } : undefined
    case ParameterType.ChunkList:
      return { _tag: "ChunkList", chunkTypes: bytes.subarray(start, end) }
    case ParameterType.SupportedExtensions:
      return { _tag: "SupportedExtensions", chunkTypes: bytes.subarray(start, end) }
    case ParameterType.HmacAlgo: {
      if (length % 2 !== 0) return undefined
      const hmacIds: Array<number> = []
      for (let at = start; at < end; at += 2) hmacIds.push(readU16(bytes, at))
      return { _tag: "HmacAlgo", hmacIds }
    }
    case ParameterType.SupportedAddressTypes: {
      if (length % 2 !== 0) return undefined
      const addressTypes: Array<number> = []
      for (let at = start; at < end; at += 2) addressTypes.push(readU16(bytes, at))
      return { _tag: "SupportedAddressTypes", addressTypes }
    }
    default:
      return { _tag: "UnknownParameter", type, value: bytes.subarray(start, end) }
  }
}

/**
 * Decodes the parameters in `bytes[start, end)`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeParameters = (
  bytes: Uint8Array,
  start: number,
  end: number,
): ReadonlyArray<Parameter> | Fault => {
  const parameters: Array<Parameter> = []
  let offset = start
  while (offset < end) {
    const tlv = frameTlv(bytes, offset, end)
    if (typeof tlv === "string") return fault(`Parameter${tlv}`, offset)
    const parameter = decodeParameter(bytes, tlv.type, tlv.valueStart, tlv.valueEnd)
    if (parameter === undefined) return fault("ParameterLengthInvalid", offset)
    parameters.push(parameter)
    offset = tlv.next
  }
  return parameters
}

const decodeCause = (
  bytes: Uint8Array,
  code: number,
  start: number,
  end: number,
): ErrorCause | undefined => {
  const length = end - start
  switch (code) {
    case CauseCode.InvalidStreamIdentifier:
      return length === 4
        ? { _tag: "InvalidStreamIdentifier", streamIdentifier: readU16(bytes, start) }
        : undefined
    case CauseCode.MissingMandatoryParameter: {
      if (length < 4) return undefined
      // Compare the announced count with the bytes present before allocating anything.
      const count = readU32(bytes, start)
      if (length !== 4 + 2 * count) return undefined
      const missingTypes: Array<number> = []
      for (let at = start + 4; at < end; at += 2) missingTypes.push(readU16(bytes, at))
      return { _tag: "MissingMandatoryParameter", missingTypes }
    }
    case CauseCode.StaleCookie:
      return length === 4 ? { _tag: "StaleCookie", stalenessUs: readU32(bytes, start) } : undefined
    case CauseCode.OutOfResource:
      return length === 0 ? { _tag: "OutOfResource" } : undefined
    case CauseCode.UnresolvableAddress:
      return { _tag: "UnresolvableAddress", address: bytes.subarray(start, end) }
    case CauseCode.UnrecognizedChunkType:
      return { _tag: "UnrecognizedChunkType", chunk: bytes.subarray(start, end) }
    case CauseCode.InvalidMandatoryParameter:
      return length === 0 ? { _tag: "InvalidMandatoryParameter" } : undefined
    case CauseCode.UnrecognizedParameters:
      return { _tag: "UnrecognizedParameters", parameters: bytes.subarray(start, end) }
    case CauseCode.NoUserData:
      return length === 4 ? { _tag: "NoUserData", tsn: readU32(bytes, start) } : undefined
    case CauseCode.CookieReceivedWhileShuttingDown:
      return length === 0 ? { _tag: "CookieReceivedWhileShuttingDown" } : undefined
    case CauseCode.RestartWithNewAddresses:
      return { _tag: "RestartWithNewAddresses", addresses: bytes.subarray(start, end) }
    case CauseCode.UserInitiatedAbort:
      return { _tag: "UserInitiatedAbort", reason: bytes.subarray(start, end) }
    case CauseCode.ProtocolViolation:
      return { _tag: "ProtocolViolation", information: bytes.subarray(start, end) }
    default:
      return { _tag: "UnknownCause", code, value: bytes.subarray(start, end) }
  }
}

/**
 * Decodes the error causes in `bytes[start, end)`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeCauses = (
  bytes: Uint8Array,
  start: number,
  end: number,
): ReadonlyArray<ErrorCause> | Fault => {
  const causes: Array<ErrorCause> = []
  let offset = start
  while (offset < end) {
    const tlv = frameTlv(bytes, offset, end)
    if (typeof tlv === "string") return fault(`Cause${tlv}`, offset)
    const cause = decodeCause(bytes, tlv.type, tlv.valueStart, tlv.valueEnd)
    if (cause === undefined) return fault("CauseLengthInvalid", offset)
    causes.push(cause)
    offset = tlv.next
  }
  return causes
}

/** One ASCONF parameter whose value is `bytes[start, end)`. */
const decodeAsconfParameter = (
  bytes: Uint8Array,
  type: number,
  start: number,
  end: number,
): AsconfParameter | undefined => {
  switch (type) {
    case AsconfParameterType.AddIpAddress:
    case AsconfParameterType.DeleteIpAddress:
    case AsconfParameterType.SetPrimaryAddress: {
      if (end - start < 8) return undefined
      const inner = decodeParameters(bytes, start + 4, end)
      if (isFault(inner) || inner.length !== 1) return undefined
      const _tag =
        type === AsconfParameterType.AddIpAddress
          ? "AddIpAddress"
          : type === AsconfParameterType.DeleteIpAddress
            ? "DeleteIpAddress"
            : "SetPrimaryAddress"
      return { _tag, correlationId: readU32(bytes, start), address: inner[0]! }
    }
    case AsconfParameterType.ErrorCauseIndication: {
      if (end - start < 4) return undefined
      const causes = decodeCauses(bytes, start + 4, end)
      if (isFault(causes)) return undefined
      return { _tag: "ErrorCauseIndication", correlationId: readU32(bytes, start), causes }
    }
    case AsconfParameterType.SuccessIndication:
      return end - start === 4
        ? { _tag: "SuccessIndication", correlationId: readU32(bytes, start) }
        : undefined
    default:
      return { _tag: "UnknownAsconfParameter", type, value: bytes.subarray(start, end) }
  }
}

/**
 * Decodes the ASCONF parameters in `bytes[start, end)`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeAsconfParameters = (
  bytes: Uint8Array,
  start: number,
  end: number,
): ReadonlyArray<AsconfParameter> | Fault => {
  const parameters: Array<AsconfParameter> = []
  let offset = start
  while (offset < end) {
    const tlv = frameTlv(bytes, offset, end)
    if (typeof tlv === "string") return fault(`Parameter${tlv}`, offset)
    const parameter = decodeAsconfParameter(bytes, tlv.type, tlv.valueStart, tlv.valueEnd)
    if (parameter === undefined) return fault("ParameterLengthInvalid", offset)
    parameters.push(parameter)
    offset = tlv.next
  }
  return parameters
}

/** ASCONF: serial number, the sender's address parameter, then the requests. */
const decodeAsconf = (bytes: Uint8Array, start: number, end: number): Asconf | Fault => {
  if (end - start < 8) return fault("ChunkLengthInvalid", start - 4)
  const tlv = frameTlv(bytes, start + 4, end)
  if (typeof tlv === "string") return fault(`Parameter${tlv}`, start + 4)
  const address = decodeParameter(bytes, tlv.type, tlv.valueStart, tlv.valueEnd)
  if (address === undefined) return fault("ParameterLengthInvalid", start + 4)
  const parameters = decodeAsconfParameters(bytes, tlv.next, end)
  if (isFault(parameters)) return parameters
  return { _tag: "Asconf", serialNumber: readU32(bytes, start), address, parameters }
}

const decodeInit = (
  tag: "Init" | "InitAck",
  bytes: Uint8Array,
  start: number,
  end: number,
): Init | InitAck | Fault => {
  if (end - start < 16) return fault("ChunkLengthInvalid", start - 4)
  const parameters = decodeParameters(bytes, start + 16, end)
  if (isFault(parameters)) return parameters
  return {
    _tag: tag,
    initiateTag: readU32(bytes, start),
    advertisedReceiverWindowCredit: readU32(bytes, start + 4),
    outboundStreams: readU16(bytes, start + 8),
    inboundStreams: readU16(bytes, start + 10),
    initialTsn: readU32(bytes, start + 12),
    parameters,
  }
}

const decodeSack = (bytes: Uint8Array, start: number, end: number): Sack | Fault => {
  if (end - start < 12) return fault("ChunkLengthInvalid", start - 4)
  const gapCount = readU16(bytes, start + 8)
  const duplicateCount = readU16(bytes, start + 10)
  // The counts must account for the value exactly; checked before allocating.
  if (end - start !== 12 + 4 * (gapCount + duplicateCount)) {
    return fault("ChunkLengthInvalid", start - 4)
  }
  const gapAckBlocks: Array<GapAckBlock> = []
  let at = start + 12
  for (let index = 0; index < gapCount; index++, at += 4) {
    gapAckBlocks.push({ start: readU16(bytes, at), end: readU16(bytes, at + 2) })
  }
  const duplicateTsns: Array<number> = []
  for (let index = 0; index < duplicateCount; index++, at += 4) {
    duplicateTsns.push(readU32(bytes, at))
  }
  return {
    _tag: "Sack",
    cumulativeTsnAck: readU32(bytes, start),
    advertisedReceiverWindowCredit: readU32(bytes, start + 4),
    gapAckBlocks,
    duplicateTsns,
  }
}

/** The value of the one Heartbeat Info parameter that makes up a HEARTBEAT (ACK) value. */
const decodeHeartbeatInfo = (bytes: Uint8Array, start: number, end: number): Uint8Array | Fault => {
  const tlv = frameTlv(bytes, start, end)
  if (typeof tlv === "string") return fault(`Parameter${tlv}`, start)
  if (tlv.type !== ParameterType.HeartbeatInfo || tlv.next !== end) {
    return fault("MissingHeartbeatInfo", start)
  }
  return bytes.subarray(tlv.valueStart, tlv.valueEnd)
}

const fixedLength = <A extends Chunk>(
  chunk: A,
  start: number,
  end: number,
  expected: number,
): A | Fault => (end - start === expected ? chunk : fault("ChunkLengthInvalid", start - 4))

/**
 * Decodes one chunk whose value is `bytes[start, end)` (the header, 4 bytes before
 * `start`, has been framed by the caller).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeChunk = (
  bytes: Uint8Array,
  type: number,
  flags: number,
  start: number,
  end: number,
): Chunk | Fault => {
  switch (type) {
    case ChunkType.Data:
      if (end - start < 12) return fault("ChunkLengthInvalid", start - 4)
      return {
        _tag: "Data",
        immediate: (flags & 0x08) !== 0,
        unordered: (flags & 0x04) !== 0,
        beginning: (flags & 0x02) !== 0,
        ending: (flags & 0x01) !== 0,
        tsn: readU32(bytes, start),
        streamIdentifier: readU16(bytes, start + 4),
        streamSequenceNumber: readU16(bytes, start + 6),
        payloadProtocolIdentifier: readU32(bytes, start + 8),
        userData: bytes.subarray(start + 12, end),
      }
    case ChunkType.Init:
      return decodeInit("Init", bytes, start, end)
    case ChunkType.InitAck:
      return decodeInit("InitAck", bytes, start, end)
    case ChunkType.Sack:
      return decodeSack(bytes, start, end)
    case ChunkType.Heartbeat:
    case ChunkType.HeartbeatAck: {
      const info = decodeHeartbeatInfo(bytes, start, end)
      if (isFault(info)) return info
      return { _tag: type === ChunkType.Heartbeat ? "Heartbeat" : "HeartbeatAck", info }
    }
    case ChunkType.Abort:
    case ChunkType.OperationError: {
      const causes = decodeCauses(bytes, start, end)
      if (isFault(causes)) return causes
      return type === ChunkType.Abort
        ? { _tag: "Abort", reflected: (flags & 0x01) !== 0, causes }
        : { _tag: "OperationError", causes }
    }
    case ChunkType.Shutdown:
      return end - start === 4
        ? { _tag: "Shutdown", cumulativeTsnAck: readU32(bytes, start) }
        : fault("ChunkLengthInvalid", start - 4)
    case ChunkType.ShutdownAck:
      return fixedLength({ _tag: "ShutdownAck" }, start, end, 0)
    case ChunkType.CookieEcho:
      return { _tag: "CookieEcho", cookie: bytes.subarray(start, end) }
    case ChunkType.CookieAck:
      return fixedLength({ _tag: "CookieAck" }, start, end, 0)
    case ChunkType.ShutdownComplete:
      return fixedLength(
        { _tag: "ShutdownComplete", reflected: (flags & 0x01) !== 0 },
        start,
        end,
        0,
      )
    case ChunkType.ForwardTsn: {
      // RFC 3758 §3.2: the new cumulative TSN, then (stream, SSN) pairs of 4 bytes.
      if (end - start < 4 || (end - start) % 4 !== 0) return fault("ChunkLengthInvalid", start - 4)
      const streams: Array<ForwardTsnStream> = []
      for (let at = start + 4; at < end; at += 4) {
        streams.push({ stream: readU16(bytes, at), ssn: readU16(bytes, at + 2) })
      }
      return { _tag: "ForwardTsn", newCumulativeTsn: readU32(bytes, start), streams }
    }
    case ChunkType.Auth:
      if (end - start < 4) return fault("ChunkLengthInvalid", start - 4)
      return {
        _tag: "Auth",
        sharedKeyId: readU16(bytes, start),
        hmacId: readU16(bytes, start + 2),
        hmac: bytes.subarray(start + 4, end),
      }
    case ChunkType.Asconf:
      return decodeAsconf(bytes, start, end)
    case ChunkType.AsconfAck: {
      if (end - start < 4) return fault("ChunkLengthInvalid", start - 4)
      const parameters = decodeAsconfParameters(bytes, start + 4, end)
      if (isFault(parameters)) return parameters
      return { _tag: "AsconfAck", serialNumber: readU32(bytes, start), parameters }
    }
    default:
      return { _tag: "UnknownChunk", type, flags, value: bytes.subarray(start, end) }
  }
}
