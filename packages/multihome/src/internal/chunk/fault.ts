/**
 * Where and why a chunk, parameter or cause failed to decode.
 */
import type { MalformedReason } from "../../DecodeError.ts"

/**
 * Why a chunk could not be decoded, and where (a byte offset in the same buffer).
 *
 * @since 0.1.0
 * @category decoding
 */
export interface Fault {
  readonly _tag: "Fault"
  readonly reason: MalformedReason
  readonly offset: number
}

export const fault = (reason: MalformedReason, offset: number): Fault => ({
  _tag: "Fault",
  reason,
  offset,
})

/**
 * Whether a decoding result is a {@link Fault}.
 *
 * @since 0.1.0
 * @category decoding
 */
export const isFault = (result: unknown): result is Fault =>
  typeof result === "object" &&
  result !== null &&
  "_tag" in result &&
  (result as { readonly _tag: unknown })._tag === "Fault"
