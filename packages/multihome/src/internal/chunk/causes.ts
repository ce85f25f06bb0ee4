/**
 * Error causes of ABORT and ERROR (RFC 9260 §3.3.10): models and codec.
 */

import { frameTlv, listLength, pad4, readU16, readU32, writeU16, writeU32 } from "../wire.ts"
import { CauseCode } from "./codes.ts"
import { type Fault, fault } from "./fault.ts"

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

export const writeCause = (bytes: Uint8Array, offset: number, cause: ErrorCause): number => {
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
export const causesLength = (causes: ReadonlyArray<ErrorCause>): number =>
  listLength(causes, (cause) => 4 + causeValueLength(cause))

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
