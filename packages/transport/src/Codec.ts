/**
 * A message codec: how one message becomes the payload of one frame and back. JSON through
 * an Effect `Schema` by default; `Codec.make` takes a compact binary encoding for hot paths.
 * Decoding is synchronous and total: bad bytes give a `CodecError`, never a throw.
 *
 * @since 0.1.0
 */
import { Result, Schema } from "effect"
import { CodecError } from "./TransportError.ts"

/** @since 0.1.0 @category models */
export interface Codec<A> {
  readonly name: string
  readonly encode: (message: A) => Result.Result<Uint8Array, CodecError>
  readonly decode: (payload: Uint8Array) => Result.Result<A, CodecError>
}

/**
 * A codec from two functions that may throw; a throw becomes a `CodecError`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <A>(options: {
  readonly name: string
  readonly encode: (message: A) => Uint8Array
  readonly decode: (payload: Uint8Array) => A
}): Codec<A> => ({
  name: options.name,
  encode: (message) => attempt(options.name, () => options.encode(message)),
  decode: (payload) => attempt(options.name, () => options.decode(payload)),
})

const attempt = <A>(codec: string, f: () => A): Result.Result<A, CodecError> => {
  try {
    return Result.succeed(f())
  } catch (error) {
    return Result.fail(new CodecError({ codec, detail: errorMessage(error) }))
  }
}

const errorMessage = (error: unknown): string => {
  if (error instanceof Error) return error.message
  try {
    return String(error)
  } catch {
    // Some thrown values (Object.create(null)) can not even be turned into a string.
    return "a value that is not an Error"
  }
}

/**
 * Raw bytes: the payload is the message.
 *
 * @since 0.1.0
 * @category codecs
 */
export const bytes: Codec<Uint8Array> = {
  name: "bytes",
  encode: (message) => Result.succeed(message),
  decode: (payload) => Result.succeed(payload),
}

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder("utf-8", { fatal: true })

/**
 * JSON text validated by a `Schema` in both directions: what is sent and what is accepted
 * must both match the schema.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Codec } from "@understudy/transport"
 * const Ping = Schema.Struct({ seq: Schema.Number })
 * const codec = Codec.json(Ping)
 * ```
 * @since 0.1.0
 * @category codecs
 */
export const json = <S extends Schema.Codec<unknown, unknown, never, never>>(
  schema: S,
  name = "json",
): Codec<S["Type"]> => {
  // The JSON form of the schema: values plain JSON can not carry (NaN, Infinity, bigints,
  // dates) get an explicit encoding, so whatever is sent can be decoded.
  const jsonSchema = Schema.toCodecJson(schema)
  const encodeSync = Schema.encodeUnknownSync(jsonSchema)
  const decodeSync = Schema.decodeUnknownSync(jsonSchema)
  return make({
    name,
    encode: (message) => textEncoder.encode(JSON.stringify(encodeSync(message))),
    decode: (payload) => decodeSync(JSON.parse(textDecoder.decode(payload))),
  })
}
