import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import type * as Chunk from "../src/Chunk.ts"
import * as Crc32c from "../src/Crc32c.ts"
import * as DecodeError from "../src/DecodeError.ts"
import * as Packet from "../src/Packet.ts"
import * as Arbitrary from "./arbitraries.ts"

/** Header (ports 1 → 2, tag 0x0a0b0c0d) + `body`, with a valid checksum. */
const withChecksum = (body: ReadonlyArray<number> | Uint8Array): Uint8Array => {
  const bytes = new Uint8Array(12 + body.length)
  bytes.set([0, 1, 0, 2, 0x0a, 0x0b, 0x0c, 0x0d])
  bytes.set(body, 12)
  Crc32c.write(bytes, Crc32c.ofPacket(bytes))
  return bytes
}

/** Recomputes the checksum of arbitrary bytes in place, so the structure is what is tested. */
const fixChecksum = (bytes: Uint8Array): Uint8Array => {
  if (bytes.length >= 12) Crc32c.write(bytes, Crc32c.ofPacket(bytes))
  return bytes
}

const failure = (bytes: Uint8Array): DecodeError.DecodeError => {
  const result = Packet.decode(bytes)
  if (result._tag === "Success") throw new Error("expected a decode error")
  return result.failure
}

const malformed = (bytes: Uint8Array) => {
  const error = failure(bytes)
  expect(error).toBeInstanceOf(DecodeError.MalformedPacket)
  return error as DecodeError.MalformedPacket
}

/**
 * What a decoded packet holds beyond the input: every byte field must be a view into the
 * input's memory, and the values of every array fewer than the input's bytes.
 */
const checkBounded = (input: Uint8Array, packet: Packet.Packet): void => {
  let elements = 0
  const walk = (value: unknown): void => {
    if (value instanceof Uint8Array) {
      expect(value.buffer).toBe(input.buffer)
      expect(value.byteOffset).toBeGreaterThanOrEqual(input.byteOffset)
      expect(value.byteOffset + value.length).toBeLessThanOrEqual(input.byteOffset + input.length)
      return
    }
    if (Array.isArray(value)) {
      elements += value.length
      for (const item of value) walk(item)
      return
    }
    if (typeof value === "object" && value !== null)
      for (const item of Object.values(value)) walk(item)
  }
  walk(packet)
  // Each element (chunk, parameter, cause, address type, gap block, TSN) takes ≥ 2 bytes.
  expect(elements).toBeLessThanOrEqual(input.length / 2)
}

const decodeNeverThrows = (bytes: Uint8Array): void => {
  const result = Packet.decode(bytes)
  if (result._tag === "Success") {
    checkBounded(bytes, result.success)
    // What decodes re-encodes to bytes that decode to the same packet.
    const again = Packet.decode(Packet.encode(result.success))
    expect(again._tag).toBe("Success")
    if (again._tag === "Success") expect(again.success).toEqual(result.success)
  } else {
    expect(result.failure._tag === "BadChecksum" || result.failure._tag === "MalformedPacket").toBe(
      true,
    )
  }
}

describe("Packet.decode: framing (RFC 9260 §3, §3.2)", () => {
  it("a packet shorter than the 12-byte header is PacketTooShort", () => {
    for (let length = 0; length < 12; length++) {
      expect(malformed(new Uint8Array(length)).reason).toBe("PacketTooShort")
    }
  })

  it("a bad checksum is BadChecksum, with both values, before any structure is looked at", () => {
    const bytes = withChecksum([0x0b, 0, 0, 4])
    bytes[9] = (bytes[9] as number) ^ 0xff
    const error = failure(bytes)
    expect(error).toBeInstanceOf(DecodeError.BadChecksum)
    const bad = error as DecodeError.BadChecksum
    expect(bad.received).toBe(Crc32c.read(bytes))
    expect(bad.computed).toBe(Crc32c.ofPacket(bytes))
    // Even a structurally broken packet reports the checksum first.
    const broken = withChecksum([0x0b, 0, 0, 2])
    broken[8] = (broken[8] as number) ^ 1
    expect(failure(broken)._tag).toBe("BadChecksum")
  })

  it("any single-bit flip of a valid packet is BadChecksum", () => {
    fc.assert(
      fc.property(Arbitrary.packet, fc.nat(), fc.nat(7), (packet, at, bit) => {
        const bytes = Packet.encode(packet)
        const index = at % bytes.length
        bytes[index] = (bytes[index] as number) ^ (1 << bit)
        expect(failure(bytes)._tag).toBe("BadChecksum")
      }),
      { numRuns: 300 },
    )
  })

  it('checksum "verified": the checksum is not computed again, every other rule still holds', () => {
    fc.assert(
      fc.property(Arbitrary.packet, fc.integer({ min: 0, max: 0xffffffff }), (packet, wrong) => {
        const bytes = Packet.encode(packet)
        const expected = Packet.decode(bytes)
        Crc32c.write(bytes, wrong)
        const decoded = Packet.decode(bytes, { checksum: "verified" })
        expect(decoded).toStrictEqual(expected)
      }),
      { numRuns: 200 },
    )
    const noChunks = withChecksum([])
    Crc32c.write(noChunks, 0)
    const result = Packet.decode(noChunks, { checksum: "verified" })
    expect(result._tag === "Failure" && result.failure._tag).toBe("MalformedPacket")
  })

  it("a header without chunks is NoChunks", () => {
    expect(malformed(withChecksum([])).reason).toBe("NoChunks")
  })

  it("a zero-length or 1–3 length chunk is ChunkLengthTooShort", () => {
    for (const length of [0, 1, 2, 3]) {
      const error = malformed(withChecksum([0x0b, 0, 0, length]))
      expect(error.reason).toBe("ChunkLengthTooShort")
      expect(error.offset).toBe(12)
      expect(error.chunkType).toBe(0x0b)
    }
  })

  it("a chunk length past the end is ChunkPastEnd", () => {
    expect(malformed(withChecksum([0x0a, 0, 0, 9, 1, 2, 3, 4])).reason).toBe("ChunkPastEnd")
    const second = malformed(withChecksum([0x0b, 0, 0, 4, 0x0a, 0, 0xff, 0xff]))
    expect(second.reason).toBe("ChunkPastEnd")
    expect(second.offset).toBe(16)
  })

  it("1 to 3 bytes after the last chunk are ChunkHeaderTruncated", () => {
    for (const extra of [[0], [0, 0], [0, 0, 0]]) {
      expect(malformed(withChecksum([0x0b, 0, 0, 4, ...extra])).reason).toBe("ChunkHeaderTruncated")
    }
  })

  it("ignores padding bytes, zero or not, and accepts a last chunk whose padding is missing", () => {
    const cookie: Packet.Packet["chunks"] = [{ _tag: "CookieEcho", cookie: Uint8Array.of(7) }]
    const padded = Packet.decode(withChecksum([0x0a, 0, 0, 5, 7, 0xff, 0xee, 0xdd, 0x0b, 0, 0, 4]))
    expect(padded._tag === "Success" && padded.success.chunks).toEqual([
      ...cookie,
      { _tag: "CookieAck" },
    ])
    const unpadded = Packet.decode(withChecksum([0x0a, 0, 0, 5, 7]))
    expect(unpadded._tag === "Success" && unpadded.success.chunks).toEqual(cookie)
  })

  it("chunks whose value does not fit their type are ChunkLengthInvalid", () => {
    const cases: ReadonlyArray<ReadonlyArray<number>> = [
      [0x00, 0x03, 0, 15, ...new Array(11).fill(0), 0], // DATA shorter than its 16-byte header
      [0x01, 0, 0, 16, ...new Array(12).fill(0)], // INIT shorter than 20
      [0x03, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0], // SACK: 1 gap block announced, none present
      [0x03, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], // SACK: 4 bytes not announced
      [0x07, 0, 0, 4], // SHUTDOWN without its cumulative TSN ack
      [0x08, 0, 0, 8, 0, 0, 0, 0], // SHUTDOWN ACK with a value
      [0x0b, 0, 0, 5, 1, 0, 0, 0], // COOKIE ACK with a value
      [0x0e, 1, 0, 8, 0, 0, 0, 0], // SHUTDOWN COMPLETE with a value
    ]
    for (const body of cases)
      expect(malformed(withChecksum(body)).reason).toBe("ChunkLengthInvalid")
  })

  it("a SACK announcing 65,535 blocks in a small packet fails before allocating them", () => {
    const error = malformed(
      withChecksum([0x03, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]),
    )
    expect(error.reason).toBe("ChunkLengthInvalid")
  })

  it("parameters: truncated, too short, past the chunk, or of the wrong size", () => {
    const init = (...parameters: ReadonlyArray<number>) =>
      withChecksum([0x01, 0, 0, 20 + parameters.length, ...new Array(16).fill(1), ...parameters])
    expect(malformed(init(0, 5)).reason).toBe("ParameterHeaderTruncated")
    expect(malformed(init(0, 7, 0, 3)).reason).toBe("ParameterLengthTooShort")
    expect(malformed(init(0, 7, 0, 9, 1, 2, 3, 4)).reason).toBe("ParameterPastEnd")
    expect(malformed(init(0, 5, 0, 9, 127, 0, 0, 1, 1)).reason).toBe("ParameterLengthInvalid")
    expect(malformed(init(0, 9, 0, 6, 0, 0)).reason).toBe("ParameterLengthInvalid")
    expect(malformed(init(0, 12, 0, 7, 0, 5, 6)).reason).toBe("ParameterLengthInvalid")
  })

  it("error causes: truncated, too short, past the chunk, or of the wrong size", () => {
    const abort = (...causes: ReadonlyArray<number>) =>
      withChecksum([0x06, 0, 0, 4 + causes.length, ...causes])
    expect(malformed(abort(0, 1)).reason).toBe("CauseHeaderTruncated")
    expect(malformed(abort(0, 4, 0, 2)).reason).toBe("CauseLengthTooShort")
    expect(malformed(abort(0, 4, 0, 8, 0, 0, 0, 0)).reason).toBe("CauseLengthInvalid")
    expect(malformed(abort(0, 12, 0, 9, 1, 2, 3, 4)).reason).toBe("CausePastEnd")
    // Missing Mandatory Parameter announcing 2^32 - 1 types in 8 bytes.
    expect(malformed(abort(0, 2, 0, 8, 0xff, 0xff, 0xff, 0xff)).reason).toBe("CauseLengthInvalid")
  })

  it("a HEARTBEAT whose value is not one Heartbeat Info parameter is MissingHeartbeatInfo", () => {
    expect(malformed(withChecksum([0x04, 0, 0, 8, 0, 2, 0, 4])).reason).toBe("MissingHeartbeatInfo")
    expect(malformed(withChecksum([0x05, 0, 0, 12, 0, 1, 0, 4, 0, 1, 0, 4])).reason).toBe(
      "MissingHeartbeatInfo",
    )
    expect(malformed(withChecksum([0x04, 0, 0, 4])).reason).toBe("ParameterHeaderTruncated")
  })
})

describe("Packet.decode: fuzzing (never a throw, never more memory than the input)", () => {
  it("random bytes", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), decodeNeverThrows), {
      numRuns: 2000,
    })
  })

  it("random bytes with a valid checksum, so the chunk parser sees them", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 12, maxLength: 600 }), (bytes) =>
        decodeNeverThrows(fixChecksum(bytes)),
      ),
      { numRuns: 3000 },
    )
  })

  it("valid packets cut short, extended, or with bytes overwritten, checksum fixed", () => {
    fc.assert(
      fc.property(
        Arbitrary.packet,
        fc.array(fc.tuple(fc.nat(), Arbitrary.u8), { maxLength: 6 }),
        fc.nat(),
        fc.uint8Array({ maxLength: 7 }),
        (packet, writes, cut, tail) => {
          const encoded = Packet.encode(packet)
          const bytes = new Uint8Array(encoded.length + tail.length)
          bytes.set(encoded)
          bytes.set(tail, encoded.length)
          for (const [at, value] of writes) bytes[at % bytes.length] = value
          decodeNeverThrows(fixChecksum(bytes.subarray(0, Math.max(12, cut % (bytes.length + 1)))))
        },
      ),
      { numRuns: 3000 },
    )
  })

  it("chunk headers with random types, flags and lengths over random bodies", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(Arbitrary.u8, Arbitrary.u8, fc.nat(80), fc.uint8Array({ maxLength: 80 })),
        ),
        (chunks) => {
          const body: Array<number> = []
          for (const [type, flags, length, value] of chunks) {
            body.push(type, flags, length >>> 8, length & 0xff, ...value)
          }
          decodeNeverThrows(withChecksum(body))
        },
      ),
      { numRuns: 2000 },
    )
  })

  it("a subarray of a larger buffer decodes to views of that buffer", () => {
    const encoded = Packet.encode({
      sourcePort: 1,
      destinationPort: 2,
      verificationTag: 3,
      chunks: [{ _tag: "CookieEcho", cookie: Uint8Array.of(1, 2, 3) }],
    })
    const big = new Uint8Array(100)
    big.set(encoded, 40)
    const view = big.subarray(40, 40 + encoded.length)
    const result = Packet.decode(view)
    expect(result._tag).toBe("Success")
    if (result._tag === "Success") checkBounded(view, result.success)
  })
})

describe("Packet.checkBundling (§6.10)", () => {
  const init: Chunk.Chunk = {
    _tag: "Init",
    initiateTag: 1,
    advertisedReceiverWindowCredit: 1,
    outboundStreams: 1,
    inboundStreams: 1,
    initialTsn: 1,
    parameters: [],
  }
  const packet = (...chunks: ReadonlyArray<Chunk.Chunk>): Packet.Packet => ({
    sourcePort: 1,
    destinationPort: 2,
    verificationTag: 0,
    chunks,
  })

  it("INIT, INIT ACK and SHUTDOWN COMPLETE must be alone", () => {
    const cookieAck: Chunk.Chunk = { _tag: "CookieAck" }
    expect(Packet.checkBundling(packet(init))).toEqual({ _tag: "Ok" })
    expect(Packet.checkBundling(packet(cookieAck, init))).toEqual({
      _tag: "NotAlone",
      chunkType: 1,
    })
    expect(Packet.checkBundling(packet({ ...init, _tag: "InitAck" }, cookieAck))).toEqual({
      _tag: "NotAlone",
      chunkType: 2,
    })
    expect(
      Packet.checkBundling(packet(cookieAck, { _tag: "ShutdownComplete", reflected: false })),
    ).toEqual({ _tag: "NotAlone", chunkType: 14 })
    expect(Packet.checkBundling(packet(cookieAck, { _tag: "ShutdownAck" }))).toEqual({ _tag: "Ok" })
  })
})

describe("Packet.checkVerificationTag (§8.5, §8.5.1)", () => {
  const tags = { myTag: 0x11111111, peerTag: 0x22222222 }
  const init: Chunk.Chunk = {
    _tag: "Init",
    initiateTag: 5,
    advertisedReceiverWindowCredit: 1,
    outboundStreams: 1,
    inboundStreams: 1,
    initialTsn: 1,
    parameters: [],
  }
  const sack: Chunk.Chunk = {
    _tag: "Sack",
    cumulativeTsnAck: 1,
    advertisedReceiverWindowCredit: 1,
    gapAckBlocks: [],
    duplicateTsns: [],
  }
  const packet = (verificationTag: number, ...chunks: ReadonlyArray<Chunk.Chunk>) => ({
    sourcePort: 1,
    destinationPort: 2,
    verificationTag,
    chunks,
  })
  const check = (verificationTag: number, ...chunks: ReadonlyArray<Chunk.Chunk>) =>
    Packet.checkVerificationTag(packet(verificationTag, ...chunks), tags)

  it("an ordinary packet must carry my tag", () => {
    expect(check(tags.myTag, sack)).toEqual({ _tag: "Accept" })
    expect(check(tags.peerTag, sack)).toEqual({ _tag: "Drop", reason: "TagMismatch" })
    expect(check(0, sack)).toEqual({ _tag: "Drop", reason: "ZeroTagWithoutInit" })
  })

  it("INIT must carry tag 0 and be alone (A)", () => {
    expect(check(0, init)).toEqual({ _tag: "Init" })
    expect(check(tags.myTag, init)).toEqual({ _tag: "Drop", reason: "InitWithNonZeroTag" })
    expect(check(0, init, sack)).toEqual({ _tag: "Drop", reason: "InitNotAlone" })
  })

  it("ABORT: my tag with T clear, the peer's tag with T set (B)", () => {
    const abort = (reflected: boolean): Chunk.Chunk => ({ _tag: "Abort", reflected, causes: [] })
    expect(check(tags.myTag, abort(false))).toEqual({ _tag: "Accept" })
    expect(check(tags.peerTag, abort(true))).toEqual({ _tag: "Accept" })
    expect(check(tags.peerTag, abort(false))).toEqual({
      _tag: "Drop",
      reason: "ReflectedTagMismatch",
    })
    expect(check(tags.myTag, abort(true))).toEqual({ _tag: "Drop", reason: "ReflectedTagMismatch" })
    // Bundled after other chunks, the ABORT still decides.
    expect(check(tags.peerTag, sack, abort(true))).toEqual({ _tag: "Accept" })
    // A T-bit ABORT reflecting tag 0 (a peer tag not yet known) is dropped: tag 0 is INIT's.
    expect(
      Packet.checkVerificationTag(packet(0, abort(true)), { myTag: tags.myTag, peerTag: 0 }),
    ).toEqual({ _tag: "Drop", reason: "ZeroTagWithoutInit" })
  })

  it("SHUTDOWN COMPLETE follows the same T-bit rule (C)", () => {
    const complete = (reflected: boolean): Chunk.Chunk => ({ _tag: "ShutdownComplete", reflected })
    expect(check(tags.myTag, complete(false))).toEqual({ _tag: "Accept" })
    expect(check(tags.peerTag, complete(true))).toEqual({ _tag: "Accept" })
    expect(check(tags.myTag, complete(true))).toEqual({
      _tag: "Drop",
      reason: "ReflectedTagMismatch",
    })
  })

  it("COOKIE ECHO is left to the State Cookie (D)", () => {
    const echo: Chunk.Chunk = { _tag: "CookieEcho", cookie: Uint8Array.of(1) }
    expect(check(0x33333333, echo)).toEqual({ _tag: "CookieEcho" })
    expect(check(0x33333333, echo, sack)).toEqual({ _tag: "CookieEcho" })
  })

  it("as a property: a packet without INIT, ABORT, SHUTDOWN COMPLETE or leading COOKIE ECHO is accepted iff its tag is mine", () => {
    const plain = Arbitrary.chunk.filter(
      (c) => !["Init", "Abort", "ShutdownComplete", "CookieEcho"].includes(c._tag),
    )
    fc.assert(
      fc.property(
        fc.array(plain, { minLength: 1, maxLength: 4 }),
        Arbitrary.u32,
        fc.boolean(),
        (chunks, tag, mine) => {
          const verificationTag = mine ? tags.myTag : tag
          const result = Packet.checkVerificationTag(packet(verificationTag, ...chunks), tags)
          expect(result._tag).toBe(verificationTag === tags.myTag ? "Accept" : "Drop")
        },
      ),
    )
  })
})
