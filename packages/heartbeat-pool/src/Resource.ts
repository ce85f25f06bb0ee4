/**
 * A leased resource defined in code: the pool leases out anything with a capacity (worker
 * slots, connections, GPU seats), not only vendor-licensed software. A resource is a name, a
 * capacity and an optional expiry, given to every server instead of a vendor-signed license
 * file and a vendor key. The pool key signs it, so only holders of the pool key can define or
 * change it; a higher `version` given to any server (at a restart) spreads to the pool as a
 * newer license file does, and an older one is refused.
 *
 * @example
 * ```ts
 * import { Resource } from "@understudy/heartbeat-pool"
 *
 * const workers: Resource.Resource = { name: "render-slot", capacity: 8 }
 * // Server.run({ ..., resource: workers }); clients ask for product "render-slot".
 * ```
 * @since 0.1.0
 */
import { type Redacted, Result, Schema } from "effect"
import { type Crypto, PoolInvalidConfig } from "./Machine.ts"
import type { License } from "./Message.ts"
import * as Signing from "./Signing.ts"

/** @since 0.1.0 @category models */
export interface Resource {
  /** What clients ask for (their `product`). */
  readonly name: string
  /** Units (seats) that may be held at once in the whole pool. */
  readonly capacity: number
  /** When the pool stops granting and renewing it. Default never. */
  readonly expiresAt?: Date
  /** Raise it to change the resource on a running pool: the highest spreads. Default 1. */
  readonly version?: number
}

const ValidDate = Schema.declare(
  (input: unknown): input is Date => input instanceof Date && Number.isFinite(input.getTime()),
  { expected: "a valid Date" },
)

/**
 * What a `Resource` must be: a name of 1 to 128 characters, a whole capacity, a valid date,
 * a whole version of at least 1.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ResourceSchema = Schema.Struct({
  name: Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(128)),
  capacity: Schema.Number.check(
    Schema.isInt(),
    Schema.isBetween({ minimum: 0, maximum: 1_000_000_000 }),
  ),
  expiresAt: Schema.optionalKey(ValidDate),
  version: Schema.optionalKey(
    Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 1, maximum: 2 ** 48 })),
  ),
})

/** The latest time a `Date` holds: "never expires". */
const neverMs = 8.64e15

const secretOf = (poolSecret: Redacted.Redacted<Uint8Array> | "insecure") =>
  poolSecret === "insecure" ? new Uint8Array(32) : poolSecret

/**
 * The resource as the pool carries it (a license signed with the pool key), or
 * `PoolInvalidConfig` naming what is wrong with it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const sign = (
  poolSecret: Redacted.Redacted<Uint8Array> | "insecure",
  resource: Resource,
): Result.Result<License, PoolInvalidConfig> => {
  const decoded = Schema.decodeUnknownResult(ResourceSchema)(resource)
  if (Result.isFailure(decoded))
    return Result.fail(new PoolInvalidConfig({ reason: `resource: ${decoded.failure.message}` }))
  const keys = Signing.poolKeys(secretOf(poolSecret))
  return Result.succeed(
    Signing.signLicense(keys.resourcePrivate, {
      product: resource.name,
      seats: resource.capacity,
      expiresAtMs: resource.expiresAt?.getTime() ?? neverMs,
      sequence: resource.version ?? 1,
    }),
  )
}

/**
 * What the pool machine needs in a pool of resources: tokens signed with the pool key, and
 * resources (as licenses) checked with the pool key too, never a vendor's.
 *
 * @since 0.1.0
 * @category constructors
 */
export const crypto = (keys: Signing.PoolKeys): Crypto => ({
  signToken: (claims) => Signing.signToken(keys, claims),
  verifyToken: Signing.cachingVerifier((token) => Signing.verifyToken(keys, token)),
  verifyLicense: (license) => Signing.verifyLicense(keys.resourcePublic, license),
})
