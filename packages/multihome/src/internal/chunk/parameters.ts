/**
 * The parameters of INIT and INIT ACK, also the address parameters of ASCONF
 * (RFC 9260 §3.3.2.1): models and codec.
 */

import { frameTlv, pad4, readU16, readU32, writeU16, writeU32 } from "../wire.ts"
import { ParameterType } from "./codes.ts"
import { type Fault, fault } from "./fault.ts"

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

export const parameterValueLength = (parameter: Parameter): number => {
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
export const parameterSize = (parameter: Parameter): number =>
  pad4(4 + parameterValueLength(parameter))

/** Writes bytes cut or zero-filled to exactly `length` (zero-fill: the buffer starts zeroed). */
const writeFixed = (bytes: Uint8Array, offset: number, value: Uint8Array, length: number) => {
  bytes.set(value.length > length ? value.subarray(0, length) : value, offset)
}

/** Writes one parameter at `offset` into a zeroed buffer; returns the offset after its padding. */
export const writeParameter = (bytes: Uint8Array, offset: number, parameter: Parameter): number => {
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
export const decodeParameter = (
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
