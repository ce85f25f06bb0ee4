/**
 * Big-endian field access and 4-byte padding, the byte-level vocabulary of the SCTP codec.
 * Callers check bounds before reading; writes take values modulo 2^16 / 2^32.
 */

/** A length rounded up to a multiple of 4, the padding rule of chunks, parameters and causes. */
export const pad4 = (length: number): number => (length + 3) & ~3

/**
 * The length of back-to-back items whose unpadded lengths are given: every item padded but
 * the last, whose padding is the enclosing chunk's (RFC 9260 §3.2: the chunk length "does
 * include padding of any variable-length parameter except the last parameter").
 */
export const listLength = <A>(items: ReadonlyArray<A>, unpadded: (item: A) => number): number => {
  let total = 0
  items.forEach((item, index) => {
    const length = unpadded(item)
    total += index === items.length - 1 ? length : pad4(length)
  })
  return total
}

export const readU16 = (bytes: Uint8Array, offset: number): number =>
  (bytes[offset]! << 8) | bytes[offset + 1]!

export const readU32 = (bytes: Uint8Array, offset: number): number =>
  ((bytes[offset]! << 24) |
    (bytes[offset + 1]! << 16) |
    (bytes[offset + 2]! << 8) |
    bytes[offset + 3]!) >>>
  0

export const writeU16 = (bytes: Uint8Array, offset: number, value: number): void => {
  bytes[offset] = (value >>> 8) & 0xff
  bytes[offset + 1] = value & 0xff
}

export const writeU32 = (bytes: Uint8Array, offset: number, value: number): void => {
  bytes[offset] = (value >>> 24) & 0xff
  bytes[offset + 1] = (value >>> 16) & 0xff
  bytes[offset + 2] = (value >>> 8) & 0xff
  bytes[offset + 3] = value & 0xff
}

/**
 * A type-length-value item (parameter or error cause) found in `bytes[start, end)`: its
 * type, the start and end of its value, and where the next item starts (after padding).
 */
export interface Tlv {
  readonly type: number
  readonly valueStart: number
  readonly valueEnd: number
  readonly next: number
}

/** Why a TLV could not be framed. */
export type TlvFault = "LengthTooShort" | "PastEnd" | "HeaderTruncated"

/**
 * Frames one TLV at `offset`. The last item's padding may be missing at `end` (a receiver
 * ignores padding, RFC 9260 §3.2), so `next` is clamped to `end`.
 */
export const frameTlv = (bytes: Uint8Array, offset: number, end: number): Tlv | TlvFault => {
  if (end - offset < 4) return "HeaderTruncated"
  const length = readU16(bytes, offset + 2)
  if (length < 4) return "LengthTooShort"
  if (length > end - offset) return "PastEnd"
  return {
    type: readU16(bytes, offset),
    valueStart: offset + 4,
    valueEnd: offset + length,
    next: Math.min(offset + pad4(length), end),
  }
}
