/**
 * The parameters of ASCONF and ASCONF-ACK (RFC 5061 §4.2): their codec, and the value of
 * an ASCONF chunk.
 */

import { frameTlv, listLength, pad4, readU32, writeU16, writeU32 } from "../wire.ts"
import { causesLength, decodeCauses, writeCause } from "./causes.ts"
import type { Asconf, AsconfParameter } from "./chunks.ts"
import { AsconfParameterType } from "./codes.ts"
import { type Fault, fault, isFault } from "./fault.ts"
import {
  decodeParameter,
  decodeParameters,
  parameterValueLength,
  writeParameter,
} from "./parameters.ts"

/** An ASCONF parameter's length field (its last inner item's padding excluded). */
export const asconfParameterLength = (parameter: AsconfParameter): number => {
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
export const writeAsconfParameter = (
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
export const asconfValueLength = (chunk: Asconf): number => {
  const address = 4 + parameterValueLength(chunk.address)
  return chunk.parameters.length === 0
    ? 4 + address
    : 4 + pad4(address) + listLength(chunk.parameters, asconfParameterLength)
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
export const decodeAsconf = (bytes: Uint8Array, start: number, end: number): Asconf | Fault => {
  if (end - start < 8) return fault("ChunkLengthInvalid", start - 4)
  const tlv = frameTlv(bytes, start + 4, end)
  if (typeof tlv === "string") return fault(`Parameter${tlv}`, start + 4)
  const address = decodeParameter(bytes, tlv.type, tlv.valueStart, tlv.valueEnd)
  if (address === undefined) return fault("ParameterLengthInvalid", start + 4)
  const parameters = decodeAsconfParameters(bytes, tlv.next, end)
  if (isFault(parameters)) return parameters
  return { _tag: "Asconf", serialNumber: readU32(bytes, start), address, parameters }
}
