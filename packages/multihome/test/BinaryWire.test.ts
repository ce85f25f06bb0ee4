/**
 * The link's binary forms of `Inputs` of received datagrams and of `Ack`
 * (`src/internal/binaryWire.ts`): they decode to exactly what the plain encoding gives,
 * refuse what they can not carry exactly (the codec then uses the plain encoding), and any
 * damaged bytes are a PlainDecodeError. Fuzzed with fixed fast-check seeds.
 */
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as fc from "fast-check"
import * as BinaryWire from "../src/internal/binaryWire.ts"
import { decodePlain, encodePlain, PlainDecodeError } from "../src/internal/plain.ts"
import * as Replication from "../src/Replication.ts"

const count = fc.nat({ max: 2 ** 40 })
const receive = fc.record({
  _tag: fc.constant("Receive" as const),
  host: fc.oneof(fc.ipV4(), fc.ipV6(), fc.string({ maxLength: 40 })),
  udpPort: fc.integer({ min: 0, max: 0xffff }),
  bytes: fc.uint8Array({ maxLength: 300 }),
  nowMs: fc.oneof(fc.nat(), fc.double({ noNaN: true, noDefaultInfinity: true })),
})
const inputs = fc.record({
  _tag: fc.constant("Inputs" as const),
  seq: count,
  epoch: count,
  association: count,
  inputs: fc.array(receive, { maxLength: 6 }),
})

const ack = fc.record({ _tag: fc.constant("Ack" as const), seq: count })
const binaryMessage = fc.oneof(inputs, ack)

const encoded = (message: Replication.Message): Uint8Array => {
  const bytes = BinaryWire.encode(message)
  if (bytes === undefined) throw new Error("expected the binary form")
  return bytes
}

/** Throws only PlainDecodeError, or returns. */
const decodeOrRefuse = (bytes: Uint8Array): void => {
  try {
    BinaryWire.decode(bytes)
  } catch (error) {
    expect(error).toBeInstanceOf(PlainDecodeError)
  }
}

describe("BinaryWire", () => {
  it("decodes to what the plain encoding decodes to, through the codec too", () => {
    fc.assert(
      fc.property(binaryMessage, (message) => {
        const bytes = encoded(message)
        expect(BinaryWire.isBinary(bytes)).toBe(true)
        const viaPlain = decodePlain(encodePlain(message))
        expect(BinaryWire.decode(bytes)).toStrictEqual(viaPlain)
        const viaCodec = Replication.codec.decode(
          Result.getOrThrow(Replication.codec.encode(message)),
        )
        expect(Result.getOrThrow(viaCodec)).toStrictEqual(viaPlain)
      }),
      { numRuns: 300, seed: 0x1f1e },
    )
  })

  it("leaves to the plain encoding what it can not carry exactly", () => {
    const base: Replication.Message = {
      _tag: "Inputs",
      seq: 1,
      epoch: 2,
      association: 3,
      inputs: [
        { _tag: "Receive", host: "127.0.0.1", udpPort: 9899, bytes: new Uint8Array(3), nowMs: 5 },
      ],
    }
    expect(BinaryWire.encode(base)).toBeDefined()
    const input = base.inputs[0]!
    const variants: ReadonlyArray<unknown> = [
      { ...base, inputs: [{ _tag: "TimerFired", timer: "t3", nowMs: 1 }] },
      { ...base, inputs: [{ ...input, host: "h".repeat(256) }] },
      { ...base, inputs: [{ ...input, udpPort: 70_000 }] },
      { ...base, inputs: [{ ...input, nowMs: Number.NaN }] },
      { ...base, inputs: [{ ...input, extra: 1 }] },
      { ...base, seq: Number.POSITIVE_INFINITY },
      { ...base, extra: 1 },
      { _tag: "Ack", seq: Number.NaN },
      { _tag: "Ack", seq: 1, extra: 1 },
      { _tag: "Gone", seq: 1, epoch: 1, association: 1 },
    ]
    for (const variant of variants) {
      expect(BinaryWire.encode(variant as Replication.Message)).toBeUndefined()
    }
  })

  it("every truncation and every bit flip is refused or decodes; never another error", () => {
    fc.assert(
      fc.property(binaryMessage, fc.nat(), fc.nat(7), (message, at, bit) => {
        const bytes = encoded(message)
        for (let length = 0; length < bytes.length; length++) {
          expect(() => BinaryWire.decode(bytes.subarray(0, length))).toThrow(PlainDecodeError)
        }
        const flipped = bytes.slice()
        const index = at % flipped.length
        flipped[index] = (flipped[index] as number) ^ (1 << bit)
        decodeOrRefuse(flipped)
        expect(() => BinaryWire.decode(new Uint8Array([...bytes, 0]))).toThrow(PlainDecodeError)
      }),
      { numRuns: 150, seed: 0x1f1f },
    )
  })

  it("arbitrary bytes behind the marker are refused or decode; the codec checks the result", () => {
    fc.assert(
      fc.property(fc.constantFrom(0xfe, 0xff), fc.uint8Array({ maxLength: 120 }), (first, tail) => {
        const bytes = new Uint8Array([first, 1, ...tail])
        decodeOrRefuse(bytes)
        // Through the codec: a failure or a well-formed message, never a throw.
        const decoded = Replication.codec.decode(bytes)
        if (Result.isSuccess(decoded)) {
          expect(decoded.success._tag).toBe(first === 0xff ? "Inputs" : "Ack")
        }
      }),
      { numRuns: 1_000, seed: 0x1f20 },
    )
  })
})
