/**
 * Decoding a chunk from a packet's bytes, as views, never copies (every chunk type in one
 * switch: the hot path of DATA and SACK).
 */

import { frameTlv, readU16, readU32 } from "../wire.ts"
import { decodeAsconf, decodeAsconfParameters } from "./asconf.ts"
import { decodeCauses } from "./causes.ts"
import type { Chunk, ForwardTsnStream, GapAckBlock, Init, InitAck, Sack } from "./chunks.ts"
import { ChunkType, ParameterType } from "./codes.ts"
import { type Fault, fault, isFault } from "./fault.ts"
import { decodeParameters } from "./parameters.ts"

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
