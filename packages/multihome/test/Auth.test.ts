import { createHmac } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as fc from "fast-check"
import * as Auth from "../src/Auth.ts"
import * as Chunk from "../src/Chunk.ts"
import * as Packet from "../src/Packet.ts"
import { chunk as anyChunk } from "./arbitraries.ts"
import { usrsctpInitHex } from "./fixtures.ts"

const fromHex = (hex: string) => Uint8Array.from(Buffer.from(hex.replace(/\s+/g, ""), "hex"))

const usrsctpInit = (): Chunk.Init => {
  const decoded = Packet.decode(fromHex(usrsctpInitHex))
  if (!Result.isSuccess(decoded)) throw new Error("fixture does not decode")
  return decoded.success.chunks[0] as Chunk.Init
}

const negotiated = (sendHmacId: number, key: Uint8Array): Auth.Negotiated => ({
  key,
  sendHmacId,
  peerChunks: Uint8Array.of(Chunk.ChunkType.Asconf),
  localChunks: Uint8Array.of(Chunk.ChunkType.Asconf),
  asconf: true,
})

describe("Auth key vectors and the association shared key (RFC 4895 §6.1)", () => {
  it("a key vector is RANDOM, CHUNKS, HMAC-ALGO unpadded, in that order, whatever the wire order", () => {
    const init = usrsctpInit()
    const vector = Auth.keyVector(init.parameters)
    // usrsctp: RANDOM of 32 bytes (36), CHUNKS with 2 types (6), HMAC-ALGO with SHA-1 (6).
    expect(vector.length).toBe(36 + 6 + 6)
    expect([...vector.subarray(0, 4)]).toEqual([0x80, 0x02, 0x00, 0x24])
    expect([...vector.subarray(36, 42)]).toEqual([0x80, 0x03, 0x00, 0x06, 0x80, 0xc1])
    expect([...vector.subarray(42)]).toEqual([0x80, 0x04, 0x00, 0x06, 0x00, 0x01])
    const reversed = Auth.keyVector([...init.parameters].reverse())
    expect(reversed).toEqual(vector)
  })

  it("the numerically smaller vector comes first; equal numbers put the shorter first", () => {
    const small = Uint8Array.of(0, 0, 9)
    const large = Uint8Array.of(1, 0)
    expect([...Auth.associationKey(small, large)]).toEqual([0, 0, 9, 1, 0])
    expect([...Auth.associationKey(large, small)]).toEqual([0, 0, 9, 1, 0])
    // 0x0001 and 0x01 are the same number: the shorter goes first.
    expect([...Auth.associationKey(Uint8Array.of(0, 1), Uint8Array.of(1))]).toEqual([1, 0, 1])
    expect([...Auth.associationKey(Uint8Array.of(1), Uint8Array.of(0, 1))]).toEqual([1, 0, 1])
    expect([...Auth.associationKey(Uint8Array.of(5), Uint8Array.of(5), Uint8Array.of(7))]).toEqual([
      7, 5, 5,
    ])
  })

  it("negotiates with usrsctp's INIT: SHA-1 (its only HMAC), ASCONF on both sides", () => {
    const ours = [
      ...Auth.localParameters(new Uint8Array(32).fill(0xaa), [0xc1, 0x80]),
      { _tag: "SupportedExtensions" as const, chunkTypes: Uint8Array.of(0xc0, 0x0f, 0xc1, 0x80) },
    ]
    const init = usrsctpInit()
    const result = Auth.negotiate(ours, init.parameters)
    expect(result?.sendHmacId).toBe(Auth.HmacId.Sha1)
    expect(result?.asconf).toBe(true)
    expect([...(result?.peerChunks ?? [])].sort()).toEqual([0x80, 0xc1])
    // Both ends derive the same key whichever side computes it.
    expect(Auth.negotiate(init.parameters, ours)?.key).toEqual(result?.key)
    // Without the peer's RANDOM there is no AUTH, and no ASCONF.
    expect(
      Auth.negotiate(
        ours,
        init.parameters.filter((p) => p._tag !== "Random"),
      ),
    ).toBeUndefined()
    // Without ASCONF in our CHUNKS, AUTH only.
    const noAsconf = [...Auth.localParameters(new Uint8Array(32), []), ours[3]!]
    expect(Auth.negotiate(noAsconf, init.parameters)?.asconf).toBe(false)
  })
})

describe("AUTH chunk HMAC (RFC 4895 §6.2–6.3)", () => {
  const key = Uint8Array.from({ length: 48 }, (_, i) => i)
  const asconf: Chunk.Asconf = {
    _tag: "Asconf",
    serialNumber: 7,
    address: { _tag: "Ipv4Address", address: Uint8Array.of(127, 0, 0, 3) },
    parameters: [
      {
        _tag: "SetPrimaryAddress",
        correlationId: 7,
        address: { _tag: "Ipv4Address", address: Uint8Array.of(127, 0, 0, 3) },
      },
    ],
  }

  it("covers the AUTH chunk with its HMAC zeroed and every chunk after it, as encoded", () => {
    for (const hmacId of [Auth.HmacId.Sha1, Auth.HmacId.Sha256]) {
      const auth = Auth.sign(negotiated(hmacId, key), [asconf])
      expect(auth.hmac.length).toBe(hmacId === Auth.HmacId.Sha1 ? 20 : 32)
      // An independent computation over the wire bytes.
      const wire = Packet.encode({
        sourcePort: 1,
        destinationPort: 2,
        verificationTag: 3,
        chunks: [auth, asconf],
      })
      const covered = wire.slice(Packet.headerLength)
      covered.fill(0, 8, 8 + auth.hmac.length)
      const expected = createHmac(hmacId === Auth.HmacId.Sha1 ? "sha1" : "sha256", key)
        .update(covered)
        .digest()
      expect(Buffer.from(auth.hmac)).toEqual(expected)
      expect(Auth.verify(negotiated(hmacId, key), auth, [asconf])).toBe("Valid")
    }
  })

  it("rejects a changed chunk, another key, an HMAC never offered, a key id other than 0", () => {
    const n = negotiated(Auth.HmacId.Sha1, key)
    const auth = Auth.sign(n, [asconf])
    expect(Auth.verify(n, auth, [{ ...asconf, serialNumber: 8 }])).toBe("BadHmac")
    expect(Auth.verify({ ...n, key: key.map((b) => b ^ 1) }, auth, [asconf])).toBe("BadHmac")
    expect(Auth.verify(n, { ...auth, hmac: auth.hmac.subarray(1) }, [asconf])).toBe("BadHmac")
    expect(Auth.verify(n, { ...auth, hmacId: 2 }, [asconf])).toBe("UnsupportedHmac")
    expect(Auth.verify(n, { ...auth, sharedKeyId: 1 }, [asconf])).toBe("UnknownKey")
    const cause = Auth.unsupportedHmacCause(2)
    expect(Chunk.encodeChunk({ _tag: "OperationError", causes: [cause] }).subarray(4, 10)).toEqual(
      Uint8Array.of(0x01, 0x05, 0x00, 0x06, 0x00, 0x02),
    )
  })

  it("fuzz: any AUTH chunk over any chunks verifies only when signed with the key", () => {
    fc.assert(
      fc.property(
        fc.record({
          sharedKeyId: fc.integer({ min: 0, max: 3 }),
          hmacId: fc.constantFrom(0, 1, 2, 3, 0xffff),
          hmac: fc.uint8Array({ maxLength: 40 }),
        }),
        fc.array(anyChunk, { maxLength: 3 }),
        fc.constantFrom(Auth.HmacId.Sha1, Auth.HmacId.Sha256),
        (fields, after, sendHmacId) => {
          const n = negotiated(sendHmacId, key)
          const forged: Chunk.Auth = { _tag: "Auth", ...fields }
          expect(Auth.verify(n, forged, after)).not.toBe("Valid")
          expect(Auth.verify(n, Auth.sign(n, after), after)).toBe("Valid")
        },
      ),
      { numRuns: 300 },
    )
  })
})
