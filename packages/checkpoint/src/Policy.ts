/**
 * When checkpoints are written: every N bytes sent, every T, at object boundaries, and on
 * demand (always available: before a planned hand-off). Schema-decoded, durations as
 * `Duration.Input` (`"250 millis"`, `"1 second"`, or a number of milliseconds).
 *
 * With `source` coverage, "every N bytes" is also the send horizon: the server never sends
 * more than N bytes past its latest durable checkpoint, so a client's acknowledgement above
 * the horizon is refused as `BeyondSent`. With `window` coverage the checkpoint is written
 * before bytes leave (write-ahead), at most `everyBytes` at a time.
 *
 * @since 0.1.0
 */
import { Duration, Option, Result, Schema } from "effect"
import { limits } from "./Checkpoint.ts"
import { CheckpointConfigError } from "./CheckpointError.ts"

/** A `Duration.Input` as config: milliseconds, or text such as `"250 millis"`. @since 0.1.0 @category schemas */
export const DurationInput = Schema.Union([
  Schema.Number.check(Schema.isGreaterThanOrEqualTo(0)),
  Schema.String.check(
    Schema.makeFilter((text: string) =>
      Option.isSome(Duration.fromInput(text as Duration.Input))
        ? undefined
        : `not a duration: ${text}`,
    ),
  ),
])

/** @since 0.1.0 @category schemas */
export const PolicyInput = Schema.Struct({
  /** Bytes sent between checkpoints (and the send horizon). Default 4 MiB; window coverage at most 256 KiB. */
  everyBytes: Schema.optionalKey(
    Schema.Number.check(
      Schema.isInt(),
      Schema.isBetween({ minimum: 1024, maximum: 1024 * 1024 * 1024 }),
    ),
  ),
  /** Time between checkpoints while bytes flow. Default 200 ms. */
  every: Schema.optionalKey(DurationInput),
  /** A checkpoint when an object starts. Default true. */
  objectBoundaries: Schema.optionalKey(Schema.Boolean),
})
/** @since 0.1.0 @category models */
export type PolicyInput = typeof PolicyInput.Type

/** A decoded policy. @since 0.1.0 @category models */
export interface Policy {
  readonly everyBytes: number
  readonly everyMs: number
  readonly objectBoundaries: boolean
}

/** @since 0.1.0 @category constructors */
export const defaultPolicy: Policy = {
  everyBytes: 4 * 1024 * 1024,
  everyMs: 200,
  objectBoundaries: true,
}

/**
 * Decodes a policy from unknown input (a config file, CLI flags).
 *
 * @example
 * ```ts
 * import { Policy } from "@understudy/checkpoint"
 * const policy = Policy.decode({ everyBytes: 1_048_576, every: "100 millis" })
 * ```
 * @since 0.1.0
 * @category constructors
 */
export const decode = (
  input: unknown,
  coverage: "window" | "source" = "source",
): Result.Result<Policy, CheckpointConfigError> => {
  const decoded = Schema.decodeUnknownResult(PolicyInput)(input ?? {})
  if (Result.isFailure(decoded))
    return Result.fail(new CheckpointConfigError({ detail: decoded.failure.message }))
  const value = decoded.success
  const everyBytes =
    value.everyBytes ?? (coverage === "window" ? limits.windowBytesMax : defaultPolicy.everyBytes)
  if (coverage === "window" && everyBytes > limits.windowBytesMax)
    return Result.fail(
      new CheckpointConfigError({
        detail: `everyBytes ${everyBytes} above ${limits.windowBytesMax}: a window checkpoint holds every unacknowledged byte`,
      }),
    )
  const everyMs =
    value.every === undefined
      ? defaultPolicy.everyMs
      : Duration.toMillis(value.every as Duration.Input)
  return Result.succeed({ everyBytes, everyMs, objectBoundaries: value.objectBoundaries ?? true })
}
