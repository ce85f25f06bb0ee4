/**
 * The election's timing and limits, decoded by Schema from `ElectionOptions`: durations as
 * `Duration.Input` (milliseconds, or text such as `"3 seconds"`), limits as whole numbers,
 * each with its default. A value out of range fails `Election.make` with
 * `ElectionConfigError` naming the option, before anything is bound.
 *
 * @since 0.1.0
 */
import { Options } from "@understudy/transport"
import { Duration, Option, Result, Schema } from "effect"
import { ElectionConfigError } from "./ElectionError.ts"

const DurationInput = Schema.Union([
  Schema.Number.check(Schema.isGreaterThan(0), Schema.isFinite()),
  Schema.String.check(
    Schema.makeFilter((text: string) =>
      Option.isSome(Duration.fromInput(text as Duration.Input))
        ? undefined
        : `not a duration: ${JSON.stringify(text)} (try "500 millis" or "3 seconds")`,
    ),
  ),
])

const Whole = (maximum: number) =>
  Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 1, maximum }))

/** What `ElectionOptions` may carry of timing and limits. */
const Input = Schema.Struct({
  keepAlive: Schema.optionalKey(
    Schema.Struct({ interval: Options.PositiveDuration, timeout: Options.PositiveDuration }),
  ),
  requestTimeout: Schema.optionalKey(DurationInput),
  grace: Schema.optionalKey(DurationInput),
  attemptsMax: Schema.optionalKey(Whole(1_000_000)),
  eventsCapacity: Schema.optionalKey(Whole(1_000_000)),
})

/**
 * The decoded timing and limits, in milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export interface Config {
  readonly keepAlive: { readonly intervalMs: number; readonly timeoutMs: number }
  readonly requestTimeoutMs: number
  readonly graceMs: number
  readonly attemptsMax: number
  readonly eventsCapacity: number
}

const millis = (input: string | number): number =>
  Duration.toMillis(Duration.fromInputUnsafe(input as Duration.Input))

/**
 * Decodes the timing and limits of `options`, with their defaults.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode = (options: unknown): Result.Result<Config, ElectionConfigError> => {
  const picked =
    typeof options === "object" && options !== null
      ? Object.fromEntries(
          ["keepAlive", "requestTimeout", "grace", "attemptsMax", "eventsCapacity"].flatMap(
            (key) => {
              const value = (options as Record<string, unknown>)[key]
              return value === undefined ? [] : [[key, value]]
            },
          ),
        )
      : {}
  const decoded = Schema.decodeUnknownResult(Input)(picked)
  if (Result.isFailure(decoded)) {
    return Result.fail(new ElectionConfigError({ detail: decoded.failure.message }))
  }
  const value = decoded.success
  const keepAlive =
    value.keepAlive === undefined
      ? { intervalMs: 200, timeoutMs: 1_500 }
      : {
          intervalMs: Options.toMillis(value.keepAlive.interval),
          timeoutMs: Options.toMillis(value.keepAlive.timeout),
        }
  if (keepAlive.intervalMs >= keepAlive.timeoutMs) {
    return Result.fail(
      new ElectionConfigError({
        detail: `keepAlive: interval (${keepAlive.intervalMs} ms) must be below timeout (${keepAlive.timeoutMs} ms)`,
      }),
    )
  }
  // The keep-alive time-out (a holder notices a hung supervisor only then), then at least a
  // second to register again.
  const graceMs =
    value.grace === undefined
      ? keepAlive.timeoutMs + Math.max(1_000, keepAlive.timeoutMs)
      : Math.round(millis(value.grace))
  return Result.succeed({
    keepAlive,
    requestTimeoutMs:
      value.requestTimeout === undefined ? 5_000 : Math.round(millis(value.requestTimeout)),
    graceMs,
    attemptsMax: value.attemptsMax ?? 2_000,
    eventsCapacity: value.eventsCapacity ?? 1_024,
  })
}
