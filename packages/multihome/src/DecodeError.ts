/**
 * Why bytes received as an SCTP packet were not one: a bad checksum (counted and dropped
 * silently, RFC 9260 §6.8) or a structure the codec does not accept.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * The packet's CRC32c does not match its contents. RFC 9260 §6.8: the receiver drops the
 * packet silently; keep a count, the association is not told.
 *
 * @since 0.1.0
 * @category errors
 */
export class BadChecksum extends Schema.TaggedError<BadChecksum>()("BadChecksum", {
  /** The CRC32c computed over the received bytes. */
  computed: Schema.Number,
  /** The value in the packet's checksum field. */
  received: Schema.Number,
}) {}

/**
 * What is wrong with a malformed packet.
 *
 * - `PacketTooShort`: fewer than the 12 bytes of the common header.
 * - `NoChunks`: a common header and nothing after it.
 * - `ChunkHeaderTruncated`: 1 to 3 bytes left where a chunk header should start.
 * - `ChunkLengthTooShort`: a chunk length below 4, the size of its own header.
 * - `ChunkPastEnd`: a chunk length that runs past the end of the packet.
 * - `ChunkLengthInvalid`: a length that does not fit the chunk type's fixed fields (e.g. a
 *   SACK whose block counts disagree with its length, a SHUTDOWN that is not 8 bytes).
 * - `Parameter*`, `Cause*`: the same faults for a parameter or an error cause inside a chunk.
 * - `MissingHeartbeatInfo`: a HEARTBEAT (ACK) whose value is not one Heartbeat Info parameter.
 *
 * @since 0.1.0
 * @category models
 */
export const MalformedReason = Schema.Literals([
  "PacketTooShort",
  "NoChunks",
  "ChunkHeaderTruncated",
  "ChunkLengthTooShort",
  "ChunkPastEnd",
  "ChunkLengthInvalid",
  "ParameterHeaderTruncated",
  "ParameterLengthTooShort",
  "ParameterPastEnd",
  "ParameterLengthInvalid",
  "CauseHeaderTruncated",
  "CauseLengthTooShort",
  "CausePastEnd",
  "CauseLengthInvalid",
  "MissingHeartbeatInfo",
])

/**
 * @since 0.1.0
 * @category models
 */
export type MalformedReason = typeof MalformedReason.Type

/**
 * The bytes have a valid checksum but are not a well-formed SCTP packet. Drop the packet;
 * the peer that sent it may be misbehaving.
 *
 * @since 0.1.0
 * @category errors
 */
export class MalformedPacket extends Schema.TaggedError<MalformedPacket>()("MalformedPacket", {
  reason: MalformedReason,
  /** Byte offset in the packet where the fault was found. */
  offset: Schema.Number,
  /** The type of the chunk being decoded, when the fault is inside one. */
  chunkType: Schema.UndefinedOr(Schema.Number),
}) {}

/**
 * Every way decoding a packet fails.
 *
 * @since 0.1.0
 * @category errors
 */
export type DecodeError = BadChecksum | MalformedPacket
