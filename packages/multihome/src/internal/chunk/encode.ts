/**
 * Encoding a chunk: its length, flags and bytes (every chunk type in one switch: the hot
 * path of DATA and SACK).
 */

import { listLength, pad4, writeU16, writeU32 } from "../wire.ts"
import { asconfParameterLength, asconfValueLength, writeAsconfParameter } from "./asconf.ts"
import { causesLength, writeCause } from "./causes.ts"
import { type Chunk, type Init, type InitAck, maxChunkLength, typeOf } from "./chunks.ts"
import { ParameterType } from "./codes.ts"
import { parameterValueLength, writeParameter } from "./parameters.ts"

const initValueLength = (init: Init | InitAck): number =>
  16 + listLength(init.parameters, (parameter) => 4 + parameterValueLength(parameter))

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
