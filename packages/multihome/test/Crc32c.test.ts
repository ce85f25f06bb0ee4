import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Crc32c from "../src/Crc32c.ts"
import * as Packet from "../src/Packet.ts"
import { usrsctpInitHex } from "./fixtures.ts"

/** The bit-at-a-time definition (RFC 9260 Appendix A), to check the sliced tables against. */
const bitwise = (bytes: Uint8Array): number => {
  let crc = 0xffffffff
  for (const byte of bytes) {
    crc ^= byte
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1
  }
  return ~crc >>> 0
}

const fromHex = (hex: string) => Uint8Array.from(Buffer.from(hex, "hex"))

describe("Crc32c", () => {
  it("matches the iSCSI test vectors of RFC 3720 B.4", () => {
    const ascending = Uint8Array.from({ length: 32 }, (_, index) => index)
    const descending = Uint8Array.from({ length: 32 }, (_, index) => 31 - index)
    expect(Crc32c.compute(new Uint8Array(32))).toBe(0x8a9136aa)
    expect(Crc32c.compute(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43)
    expect(Crc32c.compute(ascending)).toBe(0x46dd794e)
    expect(Crc32c.compute(descending)).toBe(0x113fdb5c)
  })

  it('matches the check value of the CRC catalogue ("123456789" → 0xE3069283)', () => {
    expect(Crc32c.compute(new TextEncoder().encode("123456789"))).toBe(0xe3069283)
  })

  it("slicing-by-16 equals the bitwise definition at every length and alignment", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(16), (bytes, skip) => {
        const slice = bytes.subarray(Math.min(skip, bytes.length))
        expect(Crc32c.compute(slice)).toBe(bitwise(slice))
      }),
      { numRuns: 500 },
    )
  })

  it("folds any range in pieces: update(start, cut) then (cut, end) equals the whole range", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.nat(16),
        fc.nat(300),
        fc.nat(300),
        (bytes, skip, first, second) => {
          // A subarray at any byte offset: the word reads must not assume alignment.
          const view = bytes.subarray(Math.min(skip, bytes.length))
          const start = Math.min(first, second, view.length)
          const cut = Math.min(Math.max(first, second), view.length)
          const register = Crc32c.update(
            Crc32c.update(0xffffffff, view, 0, start),
            view,
            start,
            cut,
          )
          const whole = Crc32c.update(0xffffffff, view, 0, cut)
          expect(register).toBe(whole)
          expect(~whole >>> 0).toBe(bitwise(view.subarray(0, cut)))
        },
      ),
      { numRuns: 500 },
    )
  })

  it("checksums a packet with its checksum field taken as zero, without copying", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 12, maxLength: 200 }), (bytes) => {
        const zeroed = bytes.slice()
        zeroed.fill(0, 8, 12)
        const before = bytes.slice()
        expect(Crc32c.ofPacket(bytes)).toBe(Crc32c.compute(zeroed))
        expect(bytes).toEqual(before)
      }),
    )
  })

  it("stores the checksum least significant byte first, as the RFC 3720 vector shows", () => {
    // RFC 3720 B.4 gives the CRC of 32 zero bytes as the byte sequence aa 36 91 8a.
    const packet = new Uint8Array(12)
    Crc32c.write(packet, 0x8a9136aa)
    expect(Array.from(packet.subarray(8, 12))).toEqual([0xaa, 0x36, 0x91, 0x8a])
    expect(Crc32c.read(packet)).toBe(0x8a9136aa)
  })

  it("verifies a known-good SCTP packet: an INIT captured from usrsctp", () => {
    const init = fromHex(usrsctpInitHex)
    expect(Crc32c.verify(init)).toBe(true)
    expect(Crc32c.ofPacket(init)).toBe(Crc32c.read(init))
    const corrupted = init.slice()
    corrupted[20] = (corrupted[20] as number) ^ 0x01
    expect(Crc32c.verify(corrupted)).toBe(false)
    // And re-encoding the decoded packet reproduces the captured bytes, checksum included.
    const decoded = Packet.decode(init)
    expect(decoded._tag).toBe("Success")
    if (decoded._tag === "Success") {
      expect(Buffer.from(Packet.encode(decoded.success)).toString("hex")).toBe(usrsctpInitHex)
    }
  })

  it("does not verify fewer than 12 bytes", () => {
    expect(Crc32c.verify(new Uint8Array(11))).toBe(false)
  })
})
