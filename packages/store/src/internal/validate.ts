/** Request checks shared by every backend, so each refuses the same inputs the same way. */
import { Effect } from "effect"
import { limits } from "../Store.ts"
import { InvalidRequest } from "../StoreError.ts"

const keyBytes = (key: string): number => Buffer.byteLength(key, "utf8")

export const key = (value: string): Effect.Effect<void, InvalidRequest> => {
  if (value.length === 0) return Effect.fail(new InvalidRequest({ detail: "empty key" }))
  const bytes = keyBytes(value)
  return bytes > limits.keyBytesMax
    ? Effect.fail(
        new InvalidRequest({ detail: `key of ${bytes} bytes is over ${limits.keyBytesMax}` }),
      )
    : Effect.void
}

/** A prefix may be empty (everything), but not longer than a key. */
export const prefix = (value: string): Effect.Effect<void, InvalidRequest> => {
  const bytes = keyBytes(value)
  return bytes > limits.keyBytesMax
    ? Effect.fail(
        new InvalidRequest({ detail: `prefix of ${bytes} bytes is over ${limits.keyBytesMax}` }),
      )
    : Effect.void
}

export const value = (bytes: Uint8Array): Effect.Effect<void, InvalidRequest> =>
  bytes.byteLength > limits.valueBytesMax
    ? Effect.fail(
        new InvalidRequest({
          detail: `value of ${bytes.byteLength} bytes is over ${limits.valueBytesMax}`,
        }),
      )
    : Effect.void

export const ttl = (ttlMs: number): Effect.Effect<void, InvalidRequest> =>
  Number.isInteger(ttlMs) && ttlMs >= limits.leaseTtlMsMin && ttlMs <= limits.leaseTtlMsMax
    ? Effect.void
    : Effect.fail(
        new InvalidRequest({
          detail: `lease TTL ${ttlMs} ms is not an integer from ${limits.leaseTtlMsMin} to ${limits.leaseTtlMsMax}`,
        }),
      )

export const revision = (name: string, rev: number): Effect.Effect<void, InvalidRequest> =>
  Number.isSafeInteger(rev) && rev >= 0
    ? Effect.void
    : Effect.fail(new InvalidRequest({ detail: `${name} ${rev} is not a revision` }))
