import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Chunk from "../src/Chunk.ts"
import * as Crc32c from "../src/Crc32c.ts"
import * as Packet from "../src/Packet.ts"
import * as Arbitrary from "./arbitraries.ts"

/** Bytes from rows of hex digits, one RFC layout row (32-bit words) per argument. */
const hex = (...rows: ReadonlyArray<string>): Uint8Array =>
  Uint8Array.from(Buffer.from(rows.join("").replaceAll(" ", ""), "hex"))

/** A packet from hand-written bytes: the 12-byte header with a zero checksum, then chunks. */
const handPacket = (...parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const bytes = Uint8Array.from(parts.flatMap((part) => Array.from(part)))
  Crc32c.write(bytes, Crc32c.ofPacket(bytes))
  return bytes
}

// Source port 5000 (0x1388), destination port 7, verification tag 0x01020304, checksum.
const header = hex("13 88 00 07", "01 02 03 04", "00 00 00 00")
const packetOf = (...chunks: ReadonlyArray<Chunk.Chunk>): Packet.Packet => ({
  sourcePort: 5000,
  destinationPort: 7,
  verificationTag: 0x01020304,
  chunks,
})

const decodeOk = (bytes: Uint8Array): Packet.Packet => {
  const result = Packet.decode(bytes)
  if (result._tag === "Failure") throw new Error(`expected a packet, got ${result.failure._tag}`)
  return result.success
}

const text = (value: string) => new TextEncoder().encode(value)

describe("Chunk round trips", () => {
  for (const [tag, arbitrary] of Object.entries(Arbitrary.chunkByTag)) {
    it(`${tag}: decode(encode(chunk)) is the chunk`, () => {
      fc.assert(
        fc.property(arbitrary as fc.Arbitrary<Chunk.Chunk>, (chunk) => {
          const packet = packetOf(chunk)
          const bytes = Packet.encode(packet)
          expect(bytes.length % 4).toBe(0)
          expect(bytes.length).toBe(Packet.size(packet))
          expect(decodeOk(bytes)).toEqual(packet)
        }),
        { numRuns: 200 },
      )
    })
  }

  it("every parameter type round-trips inside INIT and INIT ACK", () => {
    fc.assert(
      fc.property(Arbitrary.parameter, fc.boolean(), (parameter, ack) => {
        const chunk: Chunk.Chunk = {
          _tag: ack ? "InitAck" : "Init",
          initiateTag: 1,
          advertisedReceiverWindowCredit: 2,
          outboundStreams: 3,
          inboundStreams: 4,
          initialTsn: 5,
          parameters: [parameter, parameter],
        }
        expect(decodeOk(Packet.encode(packetOf(chunk)))).toEqual(packetOf(chunk))
      }),
      { numRuns: 300 },
    )
  })

  it("every error cause round-trips inside ABORT and ERROR", () => {
    fc.assert(
      fc.property(Arbitrary.cause, (cause) => {
        const abort: Chunk.Chunk = { _tag: "Abort", reflected: true, causes: [cause, cause] }
        const error: Chunk.Chunk = { _tag: "OperationError", causes: [cause] }
        expect(decodeOk(Packet.encode(packetOf(abort, error)))).toEqual(packetOf(abort, error))
      }),
      { numRuns: 300 },
    )
  })

  it("whole packets of bundled chunks round-trip", () => {
    fc.assert(
      fc.property(Arbitrary.packet, (packet) => {
        expect(decodeOk(Packet.encode(packet))).toEqual(packet)
      }),
      { numRuns: 300 },
    )
  })

  it("encodes an IPv4 or IPv6 address of the wrong size as exactly 4 or 16 bytes", () => {
    const init: Chunk.Init = {
      _tag: "Init",
      initiateTag: 1,
      advertisedReceiverWindowCredit: 1,
      outboundStreams: 1,
      inboundStreams: 1,
      initialTsn: 1,
      parameters: [
        { _tag: "Ipv4Address", address: Uint8Array.of(127, 0, 0, 1, 99) },
        { _tag: "Ipv6Address", address: Uint8Array.of(0xfe, 0x80) },
      ],
    }
    const decoded = decodeOk(Packet.encode(packetOf(init))).chunks[0] as Chunk.Init
    expect(decoded.parameters).toEqual([
      { _tag: "Ipv4Address", address: Uint8Array.of(127, 0, 0, 1) },
      { _tag: "Ipv6Address", address: Uint8Array.of(0xfe, 0x80, ...new Array(14).fill(0)) },
    ])
  })

  it("refuses to encode a chunk longer than 65,535 bytes (a caller defect)", () => {
    const data: Chunk.Data = {
      _tag: "Data",
      immediate: false,
      unordered: false,
      beginning: true,
      ending: true,
      tsn: 0,
      streamIdentifier: 0,
      streamSequenceNumber: 0,
      payloadProtocolIdentifier: 0,
      userData: new Uint8Array(Chunk.maxChunkLength - 15),
    }
    expect(() => Packet.encode(packetOf(data))).toThrow(RangeError)
    expect(Packet.encode(packetOf({ ...data, userData: data.userData.subarray(1) })).length).toBe(
      12 + 65_536,
    )
  })
})

describe("byte-exact packets built from the RFC 9260 layouts", () => {
  it("DATA (§3.3.1): B and E set, 5 bytes of user data, 3 bytes of padding", () => {
    const bytes = handPacket(
      header,
      hex(
        "00 03 00 15", // type 0, flags B|E, length 21
        "00 00 00 01", // TSN 1
        "00 02 00 03", // stream 2, SSN 3
        "00 00 00 33", // PPID 51
        "68 65 6c 6c 6f 00 00 00", // "hello" + padding
      ),
    )
    const packet = packetOf({
      _tag: "Data",
      immediate: false,
      unordered: false,
      beginning: true,
      ending: true,
      tsn: 1,
      streamIdentifier: 2,
      streamSequenceNumber: 3,
      payloadProtocolIdentifier: 51,
      userData: text("hello"),
    })
    expect(Packet.encode(packet)).toEqual(bytes)
    expect(decodeOk(bytes)).toEqual(packet)
  })

  it("DATA flags: I is 0x08, U is 0x04", () => {
    const bytes = Packet.encode(
      packetOf({
        _tag: "Data",
        immediate: true,
        unordered: true,
        beginning: false,
        ending: false,
        tsn: 0xffffffff,
        streamIdentifier: 0xffff,
        streamSequenceNumber: 0,
        payloadProtocolIdentifier: 0x80000000,
        userData: Uint8Array.of(1),
      }),
    )
    expect(bytes[13]).toBe(0x0c)
    expect(Array.from(bytes.subarray(16, 20))).toEqual([0xff, 0xff, 0xff, 0xff])
  })

  it("INIT (§3.3.2): the last parameter's padding is outside the chunk length", () => {
    const bytes = handPacket(
      hex("13 88 00 07", "00 00 00 00", "00 00 00 00"), // ports 5000 → 7, tag 0, checksum
      hex(
        "01 00 00 2a", // INIT, length 42 = 4 + 16 + 8 + 8 + 6
        "de ad be ef", // initiate tag
        "00 01 00 00", // a_rwnd 65536
        "00 0a 08 00", // OS 10, MIS 2048
        "00 00 00 2a", // initial TSN 42
        "00 05 00 08 7f 00 00 01", // IPv4 Address 127.0.0.1
        "00 09 00 08 00 00 27 10", // Cookie Preservative 10,000 ms
        "00 0c 00 06 00 05 00 00", // Supported Address Types [IPv4] + padding
      ),
    )
    const packet: Packet.Packet = {
      sourcePort: 5000,
      destinationPort: 7,
      verificationTag: 0,
      chunks: [
        {
          _tag: "Init",
          initiateTag: 0xdeadbeef,
          advertisedReceiverWindowCredit: 65536,
          outboundStreams: 10,
          inboundStreams: 2048,
          initialTsn: 42,
          parameters: [
            { _tag: "Ipv4Address", address: Uint8Array.of(127, 0, 0, 1) },
            { _tag: "CookiePreservative", lifeSpanIncrementMs: 10_000 },
            { _tag: "SupportedAddressTypes", addressTypes: [5] },
          ],
        },
      ],
    }
    expect(Packet.encode(packet)).toEqual(bytes)
    expect(decodeOk(bytes)).toEqual(packet)
  })

  it("INIT ACK (§3.3.3): a State Cookie after an odd-length unknown parameter", () => {
    const bytes = handPacket(
      header,
      hex(
        "02 00 00 28", // INIT ACK, length 40 = 4 + 16 + 12 + 8
        "00 00 00 07", // initiate tag 7
        "00 00 10 00", // a_rwnd 4096
        "00 01 00 01", // OS 1, MIS 1
        "00 00 00 00", // initial TSN 0
        "80 01 00 09 c0 0f c1 80 82 00 00 00", // 0x8001 (unknown here), 5 bytes of value, padded
        "00 07 00 08 01 02 03 04", // State Cookie
      ),
    )
    const packet = packetOf({
      _tag: "InitAck",
      initiateTag: 7,
      advertisedReceiverWindowCredit: 4096,
      outboundStreams: 1,
      inboundStreams: 1,
      initialTsn: 0,
      parameters: [
        {
          _tag: "UnknownParameter",
          type: 0x8001,
          value: Uint8Array.of(0xc0, 0x0f, 0xc1, 0x80, 0x82),
        },
        { _tag: "StateCookie", cookie: Uint8Array.of(1, 2, 3, 4) },
      ],
    })
    expect(Packet.encode(packet)).toEqual(bytes)
    expect(decodeOk(bytes)).toEqual(packet)
  })

  it("SACK (§3.3.4) with one gap ack block and one duplicate TSN", () => {
    const bytes = handPacket(
      header,
      hex(
        "03 00 00 18", // SACK, length 24
        "00 00 00 64", // cumulative TSN ack 100
        "00 00 80 00", // a_rwnd 32768
        "00 01 00 01", // 1 gap block, 1 duplicate
        "00 02 00 05", // gap 2..5
        "00 00 00 63", // duplicate TSN 99
      ),
    )
    const packet = packetOf({
      _tag: "Sack",
      cumulativeTsnAck: 100,
      advertisedReceiverWindowCredit: 32768,
      gapAckBlocks: [{ start: 2, end: 5 }],
      duplicateTsns: [99],
    })
    expect(Packet.encode(packet)).toEqual(bytes)
    expect(decodeOk(bytes)).toEqual(packet)
  })

  it("HEARTBEAT and HEARTBEAT ACK (§3.3.5–3.3.6) carry the Heartbeat Info verbatim", () => {
    const heartbeat = (type: string) =>
      handPacket(
        header,
        hex(
          `${type} 00 00 0b`, // length 11 = 4 + 4 + 3
          "00 01 00 07 aa bb cc 00", // Heartbeat Info, 3 bytes + padding
        ),
      )
    const info = Uint8Array.of(0xaa, 0xbb, 0xcc)
    expect(Packet.encode(packetOf({ _tag: "Heartbeat", info }))).toEqual(heartbeat("04"))
    expect(Packet.encode(packetOf({ _tag: "HeartbeatAck", info }))).toEqual(heartbeat("05"))
    expect(decodeOk(heartbeat("05"))).toEqual(packetOf({ _tag: "HeartbeatAck", info }))
  })

  it("ABORT (§3.3.7) with the T bit and two causes, the last unpadded in the length", () => {
    const bytes = handPacket(
      header,
      hex(
        "06 01 00 11", // ABORT, T, length 17 = 4 + 8 + 5
        "00 01 00 08 00 09 00 00", // Invalid Stream Identifier 9, reserved
        "00 0d 00 05 78 00 00 00", // Protocol Violation "x" + padding
      ),
    )
    const packet = packetOf({
      _tag: "Abort",
      reflected: true,
      causes: [
        { _tag: "InvalidStreamIdentifier", streamIdentifier: 9 },
        { _tag: "ProtocolViolation", information: text("x") },
      ],
    })
    expect(Packet.encode(packet)).toEqual(bytes)
    expect(decodeOk(bytes)).toEqual(packet)
  })

  it("SHUTDOWN, SHUTDOWN ACK, COOKIE ACK, SHUTDOWN COMPLETE (§3.3.8, 3.3.9, 3.3.12, 3.3.13)", () => {
    const body = (chunk: Chunk.Chunk) => Packet.encode(packetOf(chunk)).subarray(12)
    expect(body({ _tag: "Shutdown", cumulativeTsnAck: 0x01020304 })).toEqual(
      hex("07 00 00 08", "01 02 03 04"),
    )
    expect(body({ _tag: "ShutdownAck" })).toEqual(hex("08 00 00 04"))
    expect(body({ _tag: "CookieAck" })).toEqual(hex("0b 00 00 04"))
    expect(body({ _tag: "ShutdownComplete", reflected: true })).toEqual(hex("0e 01 00 04"))
  })

  it("ERROR (§3.3.10): Missing Mandatory Parameter, Stale Cookie, No User Data, Out of Resource", () => {
    const bytes = handPacket(
      header,
      hex(
        "09 00 00 24", // ERROR, length 36 = 4 + 12 + 8 + 8 + 4
        "00 02 00 0c 00 00 00 02 00 07 00 09", // missing: 2 types, 7 and 9
        "00 03 00 08 00 0f 42 40", // Stale Cookie, 1,000,000 µs
        "00 09 00 08 00 00 00 05", // No User Data, TSN 5
        "00 04 00 04", // Out of Resource
      ),
    )
    const packet = packetOf({
      _tag: "OperationError",
      causes: [
        { _tag: "MissingMandatoryParameter", missingTypes: [7, 9] },
        { _tag: "StaleCookie", stalenessUs: 1_000_000 },
        { _tag: "NoUserData", tsn: 5 },
        { _tag: "OutOfResource" },
      ],
    })
    expect(Packet.encode(packet)).toEqual(bytes)
    expect(decodeOk(bytes)).toEqual(packet)
  })

  it("COOKIE ECHO (§3.3.11) and an unknown chunk keep their bytes and flags", () => {
    const bytes = handPacket(
      header,
      hex(
        "0a 00 00 07 09 08 07 00", // COOKIE ECHO, 3-byte cookie + padding
        "c7 5a 00 06 01 02 00 00", // type 0xC7 (unassigned), flags 0x5a, 2 bytes + padding
      ),
    )
    const packet = packetOf(
      { _tag: "CookieEcho", cookie: Uint8Array.of(9, 8, 7) },
      { _tag: "UnknownChunk", type: 0xc7, flags: 0x5a, value: Uint8Array.of(1, 2) },
    )
    expect(Packet.encode(packet)).toEqual(bytes)
    expect(decodeOk(bytes)).toEqual(packet)
  })

  it("FORWARD TSN (RFC 3758 §3.2): new cumulative TSN, then (stream, SSN) pairs", () => {
    const bytes = handPacket(
      header,
      hex(
        "c0 00 00 10", // type 192, flags 0, length 16
        "ff ff ff fe", // New Cumulative TSN
        "00 02 00 07", // stream 2, SSN 7
        "ff ff 00 00", // stream 65535, SSN 0
      ),
    )
    const packet = packetOf({
      _tag: "ForwardTsn",
      newCumulativeTsn: 0xffff_fffe,
      streams: [
        { stream: 2, ssn: 7 },
        { stream: 0xffff, ssn: 0 },
      ],
    })
    expect(Packet.encode(packet)).toEqual(bytes)
    expect(decodeOk(bytes)).toEqual(packet)
    const bare = handPacket(header, hex("c0 00 00 08", "00 00 00 05"))
    expect(decodeOk(bare).chunks).toEqual([
      { _tag: "ForwardTsn", newCumulativeTsn: 5, streams: [] },
    ])
  })

  it("FORWARD TSN with a length that is not 8 + 4n is malformed", () => {
    expect(
      Packet.decode(handPacket(header, hex("c0 00 00 0a", "00 00 00 05", "00 01 00 00")))._tag,
    ).toBe("Failure")
    expect(Packet.decode(handPacket(header, hex("c0 00 00 04")))._tag).toBe("Failure")
  })

  it("Forward-TSN-Supported (RFC 3758 §3.1) is a 4-byte parameter with no value", () => {
    expect(Chunk.encodeParameter({ _tag: "ForwardTsnSupported" })).toEqual(hex("c0 00 00 04"))
    const init: Chunk.Init = {
      _tag: "Init",
      initiateTag: 1,
      advertisedReceiverWindowCredit: 2,
      outboundStreams: 3,
      inboundStreams: 4,
      initialTsn: 5,
      parameters: [{ _tag: "ForwardTsnSupported" }],
    }
    expect(decodeOk(Packet.encode(packetOf(init))).chunks).toEqual([init])
    // Known, so never reported as unrecognized.
    expect(Chunk.processUnknownParameters(init.parameters).report).toEqual([])
  })
})

describe("unknown parameter types (§3.2.1)", () => {
  const unknown = (type: number): Chunk.UnknownParameter => ({
    _tag: "UnknownParameter",
    type,
    value: Uint8Array.of(type & 0xff),
  })
  const cookie: Chunk.Parameter = { _tag: "StateCookie", cookie: Uint8Array.of(1) }

  it("classifies by the upper two bits", () => {
    expect(Chunk.parameterTypeAction(0x0001)).toBe("Stop")
    expect(Chunk.parameterTypeAction(0x4001)).toBe("StopAndReport")
    expect(Chunk.parameterTypeAction(0x8000)).toBe("Skip")
    expect(Chunk.parameterTypeAction(0xc000)).toBe("SkipAndReport")
  })

  it("classifies usrsctp's extension parameters as RFC 9260 says", () => {
    // Forward-TSN-Supported and Adaptation Layer Indication: skip and report.
    expect(Chunk.parameterTypeAction(0xc000)).toBe("SkipAndReport")
    expect(Chunk.parameterTypeAction(0xc006)).toBe("SkipAndReport")
    // Supported Extensions, Random, Chunk List, Requested HMAC Algorithm, ECN: skip.
    for (const type of [0x8008, 0x8002, 0x8003, 0x8004, 0x8000]) {
      expect(Chunk.parameterTypeAction(type)).toBe("Skip")
    }
  })

  it("00 stops without reporting; 01 stops and reports; later parameters are not processed", () => {
    expect(Chunk.processUnknownParameters([cookie, unknown(0x0077), cookie])).toEqual({
      stop: true,
      process: [cookie],
      report: [],
    })
    expect(
      Chunk.processUnknownParameters([unknown(0xc000), unknown(0x4077), cookie, unknown(0xc001)]),
    ).toEqual({ stop: true, process: [], report: [unknown(0xc000), unknown(0x4077)] })
  })

  it("10 skips silently; 11 skips and reports; processing goes on", () => {
    expect(
      Chunk.processUnknownParameters([unknown(0x8008), cookie, unknown(0xc006), cookie]),
    ).toEqual({ stop: false, process: [cookie, cookie], report: [unknown(0xc006)] })
  })

  it("as a property: stop iff an unknown 0x/01 type is present; reports are exactly the 01/11 ones before it", () => {
    fc.assert(
      fc.property(fc.array(Arbitrary.parameter, { maxLength: 10 }), (parameters) => {
        const result = Chunk.processUnknownParameters(parameters)
        const stopAt = parameters.findIndex(
          (p) => p._tag === "UnknownParameter" && p.type >>> 15 === 0,
        )
        expect(result.stop).toBe(stopAt >= 0)
        const seen = stopAt >= 0 ? parameters.slice(0, stopAt + 1) : parameters
        expect(result.report).toEqual(
          seen.filter((p) => p._tag === "UnknownParameter" && ((p.type >>> 14) & 1) === 1),
        )
        expect(result.process).toEqual(seen.filter((p) => p._tag !== "UnknownParameter"))
      }),
    )
  })

  it("reports an unrecognized parameter in INIT ACK and in ERROR with its original bytes", () => {
    const parameter = unknown(0xc006)
    const reported = Chunk.unrecognizedParameter({ ...parameter, value: Uint8Array.of(1, 2, 3) })
    expect(reported.parameter).toEqual(Uint8Array.of(0xc0, 0x06, 0x00, 0x07, 1, 2, 3))
    const cause = Chunk.unrecognizedParameters([parameter, parameter])
    expect(cause.parameters).toEqual(
      Uint8Array.of(0xc0, 0x06, 0x00, 0x05, 0x06, 0, 0, 0, 0xc0, 0x06, 0x00, 0x05, 0x06),
    )
  })

  it("refuses a Host Name Address with an Unresolvable Address cause (§5.1.2)", () => {
    const hostName: Chunk.Parameter = { _tag: "HostNameAddress", hostName: text("peer\0") }
    expect(Chunk.refuseHostNameAddress([cookie])).toBeUndefined()
    expect(Chunk.refuseHostNameAddress([cookie, hostName])).toEqual({
      _tag: "UnresolvableAddress",
      address: Uint8Array.of(0x00, 0x0b, 0x00, 0x09, ...text("peer\0")),
    })
  })
})

describe("unknown chunk types (§3.2)", () => {
  const unknown = (type: number): Chunk.UnknownChunk => ({
    _tag: "UnknownChunk",
    type,
    flags: 0,
    value: Uint8Array.of(type),
  })
  const ack: Chunk.Chunk = { _tag: "CookieAck" }

  it("classifies by the upper two bits", () => {
    expect(Chunk.chunkTypeAction(0x0f)).toBe("Stop")
    expect(Chunk.chunkTypeAction(0x40)).toBe("StopAndReport")
    expect(Chunk.chunkTypeAction(0x84)).toBe("Skip")
    expect(Chunk.chunkTypeAction(0xc0)).toBe("SkipAndReport")
  })

  it("00 discards it and the rest of the packet; 01 also reports it", () => {
    expect(Chunk.processUnknownChunks([ack, unknown(0x0f), ack])).toEqual({
      stop: true,
      process: [ack],
      report: [],
    })
    expect(Chunk.processUnknownChunks([unknown(0xc0), unknown(0x40), ack])).toEqual({
      stop: true,
      process: [],
      report: [unknown(0xc0), unknown(0x40)],
    })
  })

  it("10 skips; 11 skips and reports", () => {
    expect(Chunk.processUnknownChunks([unknown(0x84), ack, unknown(0xc1), ack])).toEqual({
      stop: false,
      process: [ack, ack],
      report: [unknown(0xc1)],
    })
  })

  it("an unknown chunk decoded from the wire is reported as it was received", () => {
    const bytes = handPacket(header, hex("c2 07 00 05 ee 00 00 00"))
    const { report } = Chunk.processUnknownChunks(decodeOk(bytes).chunks)
    expect(report).toHaveLength(1)
    const cause = Chunk.unrecognizedChunkType(report[0] as Chunk.UnknownChunk)
    expect(cause.chunk).toEqual(Uint8Array.of(0xc2, 0x07, 0x00, 0x05, 0xee))
  })
})
