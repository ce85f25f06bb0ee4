/**
 * CRC32c (Castagnoli), the checksum of every SCTP packet (RFC 9260 §6.8, Appendix A).
 *
 * The reflected polynomial 0x82F63B78, initial value 0xFFFFFFFF, final complement; the
 * same function as iSCSI's (RFC 3720 §B.4). Computed slicing-by-8: eight 256-entry tables,
 * eight input bytes per step.
 *
 * On the wire the checksum's least significant byte comes first (the byte order of the
 * reference code in RFC 9260 Appendix A): use {@link write} and {@link read}, not a
 * big-endian 32-bit store.
 *
 * @since 0.1.0
 */

/** The reflected Castagnoli polynomial. */
const polynomial = 0x82f63b78

/** tables[k][b]: the CRC of byte b followed by k zero bytes; tables[0] is the classic table. */
const tables: ReadonlyArray<Uint32Array> = (() => {
  const result = Array.from({ length: 8 }, () => new Uint32Array(256))
  const base = result[0] as Uint32Array
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 1 ? (crc >>> 1) ^ polynomial : crc >>> 1
    }
    base[byte] = crc >>> 0
  }
  for (let slice = 1; slice < 8; slice++) {
    const previous = result[slice - 1] as Uint32Array
    const current = result[slice] as Uint32Array
    for (let byte = 0; byte < 256; byte++) {
      const crc = previous[byte] as number
      current[byte] = ((crc >>> 8) ^ (base[crc & 0xff] as number)) >>> 0
    }
  }
  return result
})()

const [t0, t1, t2, t3, t4, t5, t6, t7] = tables as [
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
  const stop8 = end - ((end - start) & 7)
  while (index < stop8) {
    const low =
      (crc ^
        ((bytes[index] as number) |
          ((bytes[index + 1] as number) << 8) |
          ((bytes[index + 2] as number) << 16) |
          ((bytes[index + 3] as number) << 24))) >>>
      0
    crc =
      (t7[low & 0xff] as number) ^
      (t6[(low >>> 8) & 0xff] as number) ^
      (t5[(low >>> 16) & 0xff] as number) ^
      (t4[low >>> 24] as number) ^
      (t3[bytes[index + 4] as number] as number) ^
      (t2[bytes[index + 5] as number] as number) ^
      (t1[bytes[index + 6] as number] as number) ^
      (t0[bytes[index + 7] as number] as number)
    index += 8
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
