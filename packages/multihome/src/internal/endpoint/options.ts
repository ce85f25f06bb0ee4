/**
 * An endpoint's options decoded by Schema: counts, durations (`Duration.Input`) and the
 * association parameters, with a clear `EndpointConfigError` naming the option at fault.
 */
import { Duration, Effect, Result, Schema } from "effect"
import type * as Association from "../../Association.ts"
import type { AssociationOptions } from "../../Endpoint.ts"
import { EndpointConfigError } from "./errors.ts"

/** A count option: a whole number from 1 to 2^24. */
export const Count = Schema.Number.check(
  Schema.isInt(),
  Schema.isBetween({ minimum: 1, maximum: 2 ** 24 }),
)

/** A `Duration.Input` option: a `Duration`, milliseconds or text (`"5 seconds"`), positive and finite. */
export const PositiveDuration = Schema.Union([
  Schema.Duration,
  Schema.DurationFromMillis,
  Schema.DurationFromString,
]).check(
  Schema.makeFilter((duration: Duration.Duration) =>
    Duration.isFinite(duration) && Duration.isGreaterThan(duration, Duration.zero)
      ? undefined
      : 'not a positive finite duration (e.g. "5 seconds" or 5000)',
  ),
)

/** Decodes `value` (the option `option`) with `schema`, or fails naming the option. */
export const decodeOption = <S extends Schema.Top & { readonly DecodingServices: never }>(
  schema: S,
  option: string,
  value: unknown,
): Effect.Effect<S["Type"], EndpointConfigError> =>
  Schema.decodeUnknownEffect(schema)(value).pipe(
    Effect.mapError((error) => new EndpointConfigError({ option, detail: error.message })),
  )

/** Each duration option and the machine's field (milliseconds) it sets. */
const durationFields = {
  rtoInitial: "rtoInitialMs",
  rtoMin: "rtoMinMs",
  rtoMax: "rtoMsMax",
  heartbeatInterval: "heartbeatIntervalMs",
  validCookieLife: "validCookieLifeMs",
  sackDelay: "sackDelayMs",
} as const

/**
 * The machine's configuration: `base`, overridden by `options` (its durations decoded to
 * whole milliseconds, rounded up). A duration that is not positive and finite fails, naming
 * it (`config.rtoMin`).
 */
export const associationConfig = (
  base: Association.Config,
  options: AssociationOptions | undefined,
): Result.Result<Association.Config, EndpointConfigError> => {
  const { rtoInitial, rtoMin, rtoMax, heartbeatInterval, validCookieLife, sackDelay, ...rest } =
    options ?? {}
  const inputs = { rtoInitial, rtoMin, rtoMax, heartbeatInterval, validCookieLife, sackDelay }
  const config: { -readonly [K in keyof Association.Config]: Association.Config[K] } = {
    ...base,
    ...rest,
  }
  for (const option of Object.keys(durationFields) as Array<keyof typeof durationFields>) {
    // The machine's own millisecond fields are not options: one way to set each duration.
    if (Object.hasOwn(rest, durationFields[option])) {
      return Result.fail(
        new EndpointConfigError({
          option: `config.${durationFields[option]}`,
          detail: `not an option: use config.${option} (a Duration.Input, e.g. "1 second")`,
        }),
      )
    }
    const input = inputs[option]
    if (input === undefined) continue
    const decoded = Schema.decodeUnknownResult(PositiveDuration)(input)
    if (Result.isFailure(decoded)) {
      return Result.fail(
        new EndpointConfigError({ option: `config.${option}`, detail: decoded.failure.message }),
      )
    }
    config[durationFields[option]] = Math.ceil(Duration.toMillis(decoded.success))
  }
  return Result.succeed(config)
}
