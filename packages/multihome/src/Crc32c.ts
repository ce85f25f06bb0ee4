/**
 * CRC32c (Castagnoli), the checksum of every SCTP packet (RFC 9260 §6.8, Appendix A).
 *
 * The reflected polynomial 0x82F63B78, initial value 0xFFFFFFFF, final complement; the
 * same function as iSCSI's (RFC 3720 §B.4). Computed slicing-by-16: sixteen 256-entry
 * tables, sixteen input bytes (four little-endian words) per step; on the receive path every
 * datagram's bytes go through it once, so it is worth the 16 KiB of tables.
 *
 * On the wire the checksum's least significant byte comes first (the byte order of the
 * reference code in RFC 9260 Appendix A): use {@link write} and {@link read}, not a
 * big-endian 32-bit store.
 *
 * @since 0.1.0
 */

/** The reflected Castagnoli polynomial. */
const polynomial = 0x82f63b78

/** Bytes folded per step of {@link update}, and its number of tables. */
const slices = 16

/** tables[k][b]: the CRC of byte b followed by k zero bytes; tables[0] is the classic table. */
const tables: ReadonlyArray<Uint32Array> = (() => {
  const result = Array.from({ length: slices }, () => new Uint32Array(256))
  const base = result[0] as Uint32Array
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 1 ? (crc >>> 1) ^ polynomial : crc >>> 1
    }
    base[byte] = crc >>> 0
  }
  for (let slice = 1; slice < slices; slice++) {
    const previous = result[slice - 1] as Uint32Array
    const current = result[slice] as Uint32Array
    for (let byte = 0; byte < 256; byte++) {
      const crc = previous[byte] as number
      current[byte] = ((crc >>> 8) ^ (base[crc & 0xff] as number)) >>> 0
    }
  }
  return result
})()

// One binding per table, so the hot loop indexes typed arrays directly.
const [t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15] = tables as [
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
]

/**
 * Folds `bytes[start, end)` into a running, not yet complemented, CRC register.
 * Start from 0xFFFFFFFF and complement at the end, as {@link compute} does.
 *
 * @since 0.1.0
 * @category internals
 */
export const update = (
  register: number,
  bytes: Uint8Array,
  start = 0,
  end = bytes.length,
): number => {
  let crc = register >>> 0
  let index = start
  const stop = end - ((end - start) & (slices - 1))
  if (index < stop) {
    // Little-endian word reads (any alignment): the reflected CRC takes bytes low first.
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    while (index < stop) {
      const w0 = (crc ^ view.getUint32(index, true)) >>> 0
      const w1 = view.getUint32(index + 4, true)
      const w2 = view.getUint32(index + 8, true)
      const w3 = view.getUint32(index + 12, true)
      crc =
        (t15[w0 & 0xff] as number) ^
        (t14[(w0 >>> 8) & 0xff] as number) ^
        (t13[(w0 >>> 16) & 0xff] as number) ^
        (t12[w0 >>> 24] as number) ^
        (t11[w1 & 0xff] as number) ^
        (t10[(w1 >>> 8) & 0xff] as number) ^
        (t9[(w1 >>> 16) & 0xff] as number) ^
        (t8[w1 >>> 24] as number) ^
        (t7[w2 & 0xff] as number) ^
        (t6[(w2 >>> 8) & 0xff] as number) ^
        (t5[(w2 >>> 16) & 0xff] as number) ^
        (t4[w2 >>> 24] as number) ^
        (t3[w3 & 0xff] as number) ^
        (t2[(w3 >>> 8) & 0xff] as number) ^
        (t1[(w3 >>> 16) & 0xff] as number) ^
        (t0[w3 >>> 24] as number)
      index += slices
    }
  }
  while (index < end) {
    crc = (crc >>> 8) ^ (t0[(crc ^ (bytes[index] as number)) & 0xff] as number)
    index++
  }
  return crc >>> 0
}

/**
 * The CRC32c of `bytes` as an unsigned 32-bit number (e.g. 32 zero bytes give 0x8A9136AA).
 *
 * @since 0.1.0
 * @category checksum
 */
export const compute = (bytes: Uint8Array): number => ~update(0xffffffff, bytes) >>> 0

/** Where the checksum sits in the SCTP common header, and its size. */
const checksumOffset = 8
const checksumEnd = 12
const fourZeros = new Uint8Array(4)

/**
 * The checksum of an SCTP packet: the CRC32c of the whole packet with the checksum field
 * taken as zero (RFC 9260 §6.8), without copying the packet. `packet` must hold at least
 * the 12-byte common header.
 *
 * @since 0.1.0
 * @category checksum
 */
export const ofPacket = (packet: Uint8Array): number => {
  let register = update(0xffffffff, packet, 0, checksumOffset)
  register = update(register, fourZeros)
  register = update(register, packet, checksumEnd, packet.length)
  return ~register >>> 0
}

/**
 * Reads the checksum field of an SCTP packet (least significant byte first).
 *
 * @since 0.1.0
 * @category checksum
 */
export const read = (packet: Uint8Array): number =>
  ((packet[checksumOffset] as number) |
    ((packet[checksumOffset + 1] as number) << 8) |
    ((packet[checksumOffset + 2] as number) << 16) |
    ((packet[checksumOffset + 3] as number) << 24)) >>>
  0

/**
 * Writes `checksum` into the checksum field of an SCTP packet (least significant byte first).
 *
 * @since 0.1.0
 * @category checksum
 */
export const write = (packet: Uint8Array, checksum: number): void => {
  packet[checksumOffset] = checksum & 0xff
  packet[checksumOffset + 1] = (checksum >>> 8) & 0xff
  packet[checksumOffset + 2] = (checksum >>> 16) & 0xff
  packet[checksumOffset + 3] = (checksum >>> 24) & 0xff
}

/**
 * Whether the packet's checksum field matches its contents.
 *
 * @since 0.1.0
 * @category checksum
 */
export const verify = (packet: Uint8Array): boolean =>
  packet.length >= checksumEnd && read(packet) === ofPacket(packet)
