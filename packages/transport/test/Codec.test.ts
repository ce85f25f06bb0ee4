import { describe, expect, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import fc from "fast-check"
import * as Codec from "../src/Codec.ts"
import { CodecError } from "../src/TransportError.ts"

const Message = Schema.Struct({
  n: Schema.Number,
  text: Schema.String,
  tags: Schema.Array(Schema.String),
  kind: Schema.Literals(["a", "b"]),
})
const codec = Codec.json(Message, "message")

// JSON has no -0 (it becomes 0), so the round trip is over every other finite double.
const finite = fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Object.is(n, -0))
const message = fc.record({
  n: fc.oneof(fc.integer(), finite),
  text: fc.string({ unit: "binary", maxLength: 40 }),
  tags: fc.array(fc.string({ maxLength: 8 }), { maxLength: 4 }),
  kind: fc.constantFrom("a" as const, "b" as const),
})

const utf8 = (text: string) => new TextEncoder().encode(text)

/** Runs `f`, failing the test if it throws instead of returning a Result. */
const total = <A>(f: () => Result.Result<A, CodecError>): Result.Result<A, CodecError> => {
  let result: Result.Result<A, CodecError> | undefined
  expect(() => {
    result = f()
  }).not.toThrow()
  return result!
}

const failure = <A>(result: Result.Result<A, CodecError>): CodecError => {
  if (Result.isSuccess(result))
    throw new Error(`expected a CodecError, got ${JSON.stringify(result.success)}`)
  return result.failure
}

describe("Codec.json", () => {
  it("round trips every message of the schema", () => {
    fc.assert(
      fc.property(message, (m) => {
        const encoded = codec.encode(m)
        if (Result.isFailure(encoded)) throw new Error(encoded.failure.detail)
        const decoded = codec.decode(encoded.success)
        if (Result.isFailure(decoded)) throw new Error(decoded.failure.detail)
        expect(decoded.success).toEqual(m)
      }),
      { numRuns: 300 },
    )
  })

  it("random bytes give a CodecError or a message of the schema, never a throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        const result = total(() => codec.decode(bytes))
        if (Result.isSuccess(result)) expect(Schema.is(Message)(result.success)).toBe(true)
        else {
          expect(result.failure).toBeInstanceOf(CodecError)
          expect(result.failure.codec).toBe("message")
        }
      }),
      { numRuns: 500 },
    )
  })

  it("any JSON value is accepted only when it matches the schema", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const result = total(() => codec.decode(utf8(JSON.stringify(value))))
        expect(Result.isSuccess(result)).toBe(Schema.is(Message)(value))
      }),
      { numRuns: 300 },
    )
  })

  it("invalid UTF-8, invalid JSON and JSON of the wrong shape are CodecErrors", () => {
    const cases = [
      new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]),
      new Uint8Array(0),
      utf8('{"n":1,'),
      utf8("not json"),
      utf8('{"n":"1","text":"x","tags":[],"kind":"a"}'),
      utf8('{"n":1,"text":"x","tags":[],"kind":"c"}'),
      utf8('{"n":1,"text":"x","kind":"a"}'),
      utf8("null"),
      utf8('[{"n":1}]'),
    ]
    for (const bytes of cases) {
      const error = failure(total(() => codec.decode(bytes)))
      expect(error._tag).toBe("CodecError")
      expect(error.detail.length).toBeGreaterThan(0)
    }
  })

  it("a message that does not match the schema is refused on encode, not sent", () => {
    const bad = { n: "1", text: "x", tags: [], kind: "a" } as unknown as typeof Message.Type
    expect(failure(total(() => codec.encode(bad)))._tag).toBe("CodecError")
  })

  it("a message the encoder accepts is one the decoder accepts (non-finite numbers)", () => {
    // Schema.Number admits NaN and ±Infinity, which JSON.stringify writes as null: if the
    // encoder lets them through, the receiver refuses the frame and drops the connection.
    fc.assert(
      fc.property(
        fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY),
        (n) => {
          const m = { n, text: "x", tags: [], kind: "a" as const }
          const encoded = total(() => codec.encode(m))
          if (Result.isSuccess(encoded)) {
            const decoded = total(() => codec.decode(encoded.success))
            expect(Result.isSuccess(decoded) && decoded.success).toEqual(m)
          }
        },
      ),
      { numRuns: 3 },
    )
  })
})

describe("Codec.make", () => {
  const throwing = (thrown: () => unknown) =>
    Codec.make<string>({
      name: "throwing",
      encode: () => {
        throw thrown()
      },
      decode: () => {
        throw thrown()
      },
    })

  it("wraps a throw in a CodecError carrying the message", () => {
    const codecWithError = throwing(() => new RangeError("bad varint"))
    const encodeError = failure(total(() => codecWithError.encode("x")))
    expect(encodeError).toEqual(new CodecError({ codec: "throwing", detail: "bad varint" }))
    const decodeError = failure(total(() => codecWithError.decode(new Uint8Array([1]))))
    expect(decodeError).toEqual(new CodecError({ codec: "throwing", detail: "bad varint" }))
  })

  it("wraps a thrown non-Error value", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.integer(), fc.constant(undefined), fc.constant(null)),
        (value) => {
          const error = failure(total(() => throwing(() => value).decode(new Uint8Array(0))))
          expect(error.detail).toBe(String(value))
        },
      ),
      { numRuns: 100 },
    )
  })

  it("wraps a thrown value that can not even be turned into a string", () => {
    // Object.create(null) has no toString: String(value) itself throws.
    const error = failure(
      total(() => throwing(() => Object.create(null)).decode(new Uint8Array(0))),
    )
    expect(error._tag).toBe("CodecError")
  })

  it("passes results through when nothing throws", () => {
    const text = Codec.make<string>({
      name: "text",
      encode: (message) => utf8(message),
      decode: (payload) => new TextDecoder().decode(payload),
    })
    fc.assert(
      fc.property(fc.string(), (s) => {
        const encoded = text.encode(s)
        expect(Result.isSuccess(encoded)).toBe(true)
        const decoded = text.decode((encoded as Result.Success<Uint8Array, CodecError>).success)
        expect(Result.isSuccess(decoded) && decoded.success).toBe(s)
      }),
      { numRuns: 100 },
    )
    expect(text.name).toBe("text")
  })
})

describe("Codec.bytes", () => {
  it("is the identity", () => {
    fc.assert(
      fc.property(fc.uint8Array(), (bytes) => {
        const encoded = Codec.bytes.encode(bytes)
        expect(Result.isSuccess(encoded) && encoded.success).toBe(bytes)
        const decoded = Codec.bytes.decode(bytes)
        expect(Result.isSuccess(decoded) && decoded.success).toBe(bytes)
      }),
      { numRuns: 50 },
    )
  })
})
