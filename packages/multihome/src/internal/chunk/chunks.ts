/**
 * The chunks (RFC 9260 §3.3, RFC 3758 FORWARD TSN, RFC 4895 AUTH, RFC 5061 ASCONF) as one
 * tagged union.
 */
import type { ErrorCause } from "./causes.ts"
import { ChunkType } from "./codes.ts"
import type { Parameter } from "./parameters.ts"

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
