/**
 * The SCTP packet (RFC 9260 §3): a 12-byte common header (source port, destination port,
 * verification tag, CRC32c checksum) followed by chunks, each padded to 4 bytes; and the
 * rules about a packet's structure a receiver applies before any association logic
 * (bundling, §6.10; verification tag, §8.5–8.5.1).
 *
 * `decode` is total: any bytes give a packet or a typed {@link DecodeError.DecodeError},
 * never a throw, and it allocates less than the input (byte fields are views into it).
 *
 * @since 0.1.0
 */
import { Result } from "effect"
import * as Chunk from "./Chunk.ts"
import * as Crc32c from "./Crc32c.ts"
import { BadChecksum, type DecodeError, MalformedPacket } from "./DecodeError.ts"
import { readU16, readU32, writeU16, writeU32 } from "./internal/wire.ts"

/**
 * An SCTP packet. The checksum is not a field: `decode` verifies it, `encode` computes it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Packet {
  readonly sourcePort: number
  readonly destinationPort: number
  /** The receiver's tag, from its INIT or INIT ACK (0 on a packet carrying INIT). */
  readonly verificationTag: number
  readonly chunks: ReadonlyArray<Chunk.Chunk>
}

/**
 * The size of the common header.
 *
 * @since 0.1.0
 * @category limits
 */
export const headerLength = 12

/**
 * The encoded size of a packet.
 *
 * @since 0.1.0
 * @category encoding
 */
export const size = (packet: Packet): number =>
  packet.chunks.reduce((sum, chunk) => sum + Chunk.chunkSize(chunk), headerLength)

/**
 * Encodes a packet and computes its checksum. Numbers are taken modulo 2^16 / 2^32.
 * Throws a `RangeError` (a defect of the caller) for a chunk longer than
 * {@link Chunk.maxChunkLength}.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encode = (packet: Packet): Uint8Array => {
  const bytes = new Uint8Array(size(packet))
  writeU16(bytes, 0, packet.sourcePort)
  writeU16(bytes, 2, packet.destinationPort)
  writeU32(bytes, 4, packet.verificationTag)
  let offset = headerLength
  for (const chunk of packet.chunks) offset = Chunk.writeChunk(bytes, offset, chunk)
  Crc32c.write(bytes, Crc32c.ofPacket(bytes))
  return bytes
}

/**
 * Options of {@link decode}.
 *
 * @since 0.1.0
 * @category decoding
 */
export interface DecodeOptions {
  /**
   * `"verified"`: these bytes are a datagram whose checksum was verified already (a
   * secondary replaying the datagrams its primary decoded, which reach it over the
   * authenticated link), so it is not computed again; everything else is checked as
   * always. Default `"verify"`.
   */
  readonly checksum?: "verify" | "verified"
}

/**
 * Decodes a packet: the checksum first, unless {@link DecodeOptions} says it was verified
 * (a mismatch is {@link BadChecksum}, to be counted and dropped, RFC 9260 §6.8), then the
 * header and every chunk. Padding bytes are ignored,
 * and the last chunk's padding may be missing.
 *
 * @since 0.1.0
 * @category decoding
 * @example
 * ```ts
 * const result = Packet.decode(datagram)
 * if (Result.isSuccess(result)) handle(result.success)
 * ```
 */
export const decode = (
  input: Uint8Array,
  options?: DecodeOptions,
): Result.Result<Packet, DecodeError> => {
  // A plain view over the same memory (a node Buffer's subarray would be a Buffer).
  const bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength)
  if (bytes.length < headerLength) {
    return Result.fail(
      new MalformedPacket({ reason: "PacketTooShort", offset: 0, chunkType: undefined }),
    )
  }
  if (options?.checksum !== "verified") {
    const computed = Crc32c.ofPacket(bytes)
    const received = Crc32c.read(bytes)
    if (computed !== received) return Result.fail(new BadChecksum({ computed, received }))
  }
  if (bytes.length === headerLength) {
    return Result.fail(
      new MalformedPacket({ reason: "NoChunks", offset: headerLength, chunkType: undefined }),
    )
  }
  const chunks: Array<Chunk.Chunk> = []
  let offset = headerLength
  while (offset < bytes.length) {
    if (bytes.length - offset < 4) {
      return Result.fail(
        new MalformedPacket({ reason: "ChunkHeaderTruncated", offset, chunkType: undefined }),
      )
    }
    const type = bytes[offset]!
    const length = readU16(bytes, offset + 2)
    if (length < 4) {
      return Result.fail(
        new MalformedPacket({ reason: "ChunkLengthTooShort", offset, chunkType: type }),
      )
    }
    if (length > bytes.length - offset) {
      return Result.fail(new MalformedPacket({ reason: "ChunkPastEnd", offset, chunkType: type }))
    }
    const chunk = Chunk.decodeChunk(bytes, type, bytes[offset + 1]!, offset + 4, offset + length)
    if (Chunk.isFault(chunk)) {
      return Result.fail(
        new MalformedPacket({ reason: chunk.reason, offset: chunk.offset, chunkType: type }),
      )
    }
    chunks.push(chunk)
    // Padding is at most 3 bytes and ignored; at the very end it may be absent.
    offset = Math.min(offset + ((length + 3) & ~3), bytes.length)
  }
  return Result.succeed({
    sourcePort: readU16(bytes, 0),
    destinationPort: readU16(bytes, 2),
    verificationTag: readU32(bytes, 4),
    chunks,
  })
}

// ---------------------------------------------------------------------------------------
// Structural rules
// ---------------------------------------------------------------------------------------

/**
 * The result of {@link checkBundling}.
 *
 * @since 0.1.0
 * @category validation
 */
export type BundlingCheck =
  | { readonly _tag: "Ok" }
  | {
      readonly _tag: "NotAlone"
      /** INIT (1), INIT ACK (2) or SHUTDOWN COMPLETE (14). */
      readonly chunkType: number
    }

/**
 * RFC 9260 §6.10: INIT, INIT ACK and SHUTDOWN COMPLETE must be the only chunk of their
 * packet. A packet that breaks it is discarded.
 *
 * @since 0.1.0
 * @category validation
 */
export const checkBundling = (packet: Packet): BundlingCheck => {
  if (packet.chunks.length > 1) {
    for (const chunk of packet.chunks) {
      if (chunk._tag === "Init" || chunk._tag === "InitAck" || chunk._tag === "ShutdownComplete") {
        return { _tag: "NotAlone", chunkType: Chunk.typeOf(chunk) }
      }
    }
  }
  return { _tag: "Ok" }
}

/**
 * Why {@link checkVerificationTag} drops a packet.
 *
 * - `InitWithNonZeroTag`: a packet carrying INIT must have verification tag 0 (§8.5.1 A).
 * - `ZeroTagWithoutInit`: tag 0 is only for a packet carrying INIT (§8.5.1 A); this comes
 *   before the ABORT rule, so an ABORT reflecting a peer tag not yet known is dropped.
 * - `InitNotAlone`: INIT bundled with other chunks (§6.10).
 * - `TagMismatch`: the tag is not the receiver's own (§8.5).
 * - `ReflectedTagMismatch`: an ABORT or SHUTDOWN COMPLETE whose tag matches neither the
 *   receiver's tag with T clear nor the peer's tag with T set (§8.5.1 B, C).
 *
 * @since 0.1.0
 * @category validation
 */
export type TagDropReason =
  | "InitWithNonZeroTag"
  | "ZeroTagWithoutInit"
  | "InitNotAlone"
  | "TagMismatch"
  | "ReflectedTagMismatch"

/**
 * The result of {@link checkVerificationTag}.
 *
 * - `Accept`: the tag is right for the packet; process it.
 * - `Drop`: discard the packet silently.
 * - `Init`: an INIT (tag 0, alone): not checked against an association's tags; handle it
 *   as §5.1 and §5.2 say (it may start an association, or collide with one).
 * - `CookieEcho`: the packet starts with COOKIE ECHO: its tag is checked against the tag
 *   inside the State Cookie, not here (§5.2.4); the association does that.
 *
 * @since 0.1.0
 * @category validation
 */
export type TagCheck =
  | { readonly _tag: "Accept" }
  | { readonly _tag: "Drop"; readonly reason: TagDropReason }
  | { readonly _tag: "Init" }
  | { readonly _tag: "CookieEcho" }

/**
 * The verification tags of an association, as the receiver knows them.
 *
 * @since 0.1.0
 * @category validation
 */
export interface Tags {
  /** The tag this endpoint chose (its Initiate Tag): every packet to it carries it. */
  readonly myTag: number
  /** The peer's Initiate Tag; 0 while not yet known (COOKIE-WAIT). */
  readonly peerTag: number
}

const accept: TagCheck = { _tag: "Accept" }
const drop = (reason: TagDropReason): TagCheck => ({ _tag: "Drop", reason })

/**
 * The verification tag rules of RFC 9260 §8.5 and §8.5.1, which need only the packet and
 * the association's two tags. The rules that depend on the association's state (§8.5.1 E,
 * a SHUTDOWN ACK in COOKIE-WAIT or COOKIE-ECHOED treated as out of the blue) belong to the
 * association.
 *
 * @since 0.1.0
 * @category validation
 * @example
 * ```ts
 * const check = Packet.checkVerificationTag(packet, { myTag, peerTag })
 * if (check._tag === "Drop") return dropped(check.reason)
 * ```
 */
export const checkVerificationTag = (packet: Packet, tags: Tags): TagCheck => {
  const tag = packet.verificationTag >>> 0
  const hasInit = packet.chunks.some((chunk) => chunk._tag === "Init")
  if (hasInit) {
    if (tag !== 0) return drop("InitWithNonZeroTag")
    return packet.chunks.length === 1 ? { _tag: "Init" } : drop("InitNotAlone")
  }
  // §8.5.1 A: tag 0 belongs to INIT alone, whatever else the packet says (so an ABORT
  // reflecting an unknown peer tag, 0, is dropped too).
  if (tag === 0) return drop("ZeroTagWithoutInit")
  // §8.5.1 B and C: ABORT and SHUTDOWN COMPLETE accept the peer's tag when the T bit says
  // it was reflected. The first such chunk decides (SHUTDOWN COMPLETE is always alone).
  for (const chunk of packet.chunks) {
    if (chunk._tag === "Abort" || chunk._tag === "ShutdownComplete") {
      const expected = chunk.reflected ? tags.peerTag >>> 0 : tags.myTag >>> 0
      return tag === expected ? accept : drop("ReflectedTagMismatch")
    }
  }
  if (packet.chunks[0]?._tag === "CookieEcho") return { _tag: "CookieEcho" }
  return tag === tags.myTag >>> 0 ? accept : drop("TagMismatch")
}
