import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import {
  encodedSize,
  encodeFrame,
  type Frame,
  FrameDecoder,
  type FrameError,
  lengthPrefixBytes,
  macBytes,
  writeFrame,
} from "../src/internal/frame.ts"

const maxBody = 1024

const frameArb = fc.record({
  type: fc.integer({ min: 0, max: 255 }),
  payload: fc.uint8Array({ maxLength: 200 }),
})

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.byteLength, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.byteLength
  }
  return out
}

/** Cuts `bytes` at the given points (any order, duplicates allowed). */
const split = (bytes: Uint8Array, cuts: ReadonlyArray<number>): Array<Uint8Array> => {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.byteLength + 1)))].sort((a, b) => a - b)
  const chunks: Array<Uint8Array> = []
  let from = 0
  for (const point of [...points, bytes.byteLength]) {
    chunks.push(bytes.slice(from, point))
    from = point
  }
  return chunks
}

const header = (bodyLength: number): Uint8Array => {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setUint32(0, bodyLength)
  return out
}

const isError = (result: Array<Frame> | FrameError): result is FrameError => !Array.isArray(result)

const plain = (frames: ReadonlyArray<Frame>) =>
  frames.map((frame) => ({ type: frame.type, body: Array.from(frame.body) }))

describe("FrameDecoder", () => {
  it("any split of a stream of valid frames gives the same frames, in order", () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (frames, cuts) => {
          const stream = concat(frames.map((f) => encodeFrame(f.type, f.payload)))
          const decoder = new FrameDecoder(maxBody)
          const got: Array<Frame> = []
          for (const chunk of split(stream, cuts)) {
            const result = decoder.push(chunk)
            if (isError(result)) throw new Error(`unexpected FrameError ${result.detail}`)
            got.push(...result)
          }
          expect(plain(got)).toEqual(
            frames.map((f) => ({ type: f.type, body: Array.from(f.payload) })),
          )
          expect(decoder.bufferedBytes).toBe(0)
        },
      ),
      { numRuns: 300 },
    )
  })

  it("random bytes never throw: they give frames or a FrameError, and buffer at most one frame", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 10 }), (chunks) => {
        const decoder = new FrameDecoder(maxBody)
        for (const chunk of chunks) {
          const result = decoder.push(chunk)
          if (isError(result)) {
            expect(result._tag).toBe("FrameError")
            expect(result.detail.length).toBeGreaterThan(0)
            return
          }
          for (const frame of result) {
            expect(frame.body.byteLength + 1).toBeLessThanOrEqual(maxBody)
          }
          expect(decoder.bufferedBytes).toBeLessThan(lengthPrefixBytes + maxBody)
        }
      }),
      { numRuns: 500 },
    )
  })

  it("a length over the maximum is refused from its header alone, before any body is buffered", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: maxBody + 1, max: 0xffffffff }),
        fc.array(frameArb, { maxLength: 5 }),
        (length, before) => {
          const decoder = new FrameDecoder(maxBody)
          const valid = concat(before.map((f) => encodeFrame(f.type, f.payload)))
          const result = decoder.push(concat([valid, header(length)]))
          if (!isError(result)) throw new Error("expected a FrameError")
          expect(result.detail).toContain("over the maximum")
          // The frames completed before the bad header are handed back with the error.
          expect(plain(result.frames)).toEqual(
            before.map((f) => ({ type: f.type, body: Array.from(f.payload) })),
          )
          expect(decoder.bufferedBytes).toBe(0)
        },
      ),
      { numRuns: 200 },
    )
  })

  it("the maximum itself is accepted, one byte more is not", () => {
    const atMax = new FrameDecoder(maxBody).push(encodeFrame(7, new Uint8Array(maxBody - 1)))
    expect(isError(atMax)).toBe(false)
    expect((atMax as Array<Frame>)[0]?.body.byteLength).toBe(maxBody - 1)
    const over = new FrameDecoder(maxBody).push(encodeFrame(7, new Uint8Array(maxBody)))
    expect(isError(over)).toBe(true)
  })

  it("a length raised later (after the handshake) takes effect for the next frame", () => {
    const decoder = new FrameDecoder(16)
    expect(isError(decoder.push(header(100)))).toBe(true)
    const raised = new FrameDecoder(16)
    raised.maxBodyBytes = 200
    const result = raised.push(encodeFrame(1, new Uint8Array(99)))
    expect(isError(result)).toBe(false)
  })

  it("a zero length is refused", () => {
    const result = new FrameDecoder(maxBody).push(header(0))
    expect(isError(result) && result.detail).toBe("empty frame")
    const afterFrames = new FrameDecoder(maxBody).push(
      concat([encodeFrame(3, new Uint8Array([9])), header(0)]),
    )
    if (!isError(afterFrames)) throw new Error("expected a FrameError")
    expect(plain(afterFrames.frames)).toEqual([{ type: 3, body: [9] }])
  })

  it("a truncated frame stays pending, with no output, until its last byte arrives", () => {
    fc.assert(
      fc.property(frameArb, (frame) => {
        const bytes = encodeFrame(frame.type, frame.payload)
        const decoder = new FrameDecoder(maxBody)
        for (let i = 0; i < bytes.byteLength - 1; i++) {
          const result = decoder.push(bytes.subarray(i, i + 1))
          expect(result).toEqual([])
          expect(decoder.bufferedBytes).toBe(i + 1)
        }
        const last = decoder.push(bytes.subarray(bytes.byteLength - 1))
        if (isError(last)) throw new Error(last.detail)
        expect(plain(last)).toEqual([{ type: frame.type, body: Array.from(frame.payload) }])
        expect(decoder.bufferedBytes).toBe(0)
      }),
      { numRuns: 200 },
    )
  })

  it("a partial frame held back is a copy: later writes into the chunk do not change it", () => {
    const bytes = encodeFrame(5, new Uint8Array([1, 2, 3, 4]))
    const chunk = bytes.slice(0, 6)
    const decoder = new FrameDecoder(maxBody)
    expect(decoder.push(chunk)).toEqual([])
    chunk.fill(0xee)
    const rest = decoder.push(bytes.slice(6))
    expect(plain(rest as Array<Frame>)).toEqual([{ type: 5, body: [1, 2, 3, 4] }])
  })
})

describe("writeFrame", () => {
  it("writes the declared size, and the MAC after the payload", () => {
    fc.assert(
      fc.property(frameArb, fc.uint8Array({ minLength: 32, maxLength: 32 }), (frame, mac) => {
        const size = encodedSize(frame.payload.byteLength, true)
        const out = new Uint8Array(size + 3)
        const end = writeFrame(out, 3, frame.type, frame.payload, (type, payload, into) => {
          expect(type).toBe(frame.type)
          expect(Array.from(payload)).toEqual(Array.from(frame.payload))
          expect(into.byteLength).toBe(macBytes)
          into.set(mac)
        })
        expect(end).toBe(size + 3)
        const decoded = new FrameDecoder(maxBody).push(out.subarray(3))
        if (isError(decoded)) throw new Error(decoded.detail)
        expect(decoded).toHaveLength(1)
        expect(Array.from(decoded[0]!.body)).toEqual([...frame.payload, ...mac])
      }),
      { numRuns: 200 },
    )
  })
})
