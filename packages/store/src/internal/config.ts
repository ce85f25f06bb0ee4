/**
 * Layer options decoded by Schema, the same way for every backend: a value out of range
 * fails the layer with `StoreConfigError` naming the option, before anything is opened.
 */
import { Options } from "@understudy/transport"
import { type Duration, Effect, Result, Schedule, Schema } from "effect"
import { StoreConfigError } from "../StoreError.ts"

/** A positive, finite `Duration.Input` ("2 seconds", milliseconds, a `Duration`). */
export const duration = Schema.optionalKey(Options.PositiveDuration)

/** An Effect `Schedule`. */
export const schedule = Schema.optionalKey(
  Schema.declare(
    (input: unknown): input is Schedule.Schedule<unknown> => Schedule.isSchedule(input),
    { expected: "a Schedule" },
  ),
)

/** A whole number of at least 1. */
export const whole = Schema.optionalKey(
  Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(1)),
)

/** The fields of `options` that `schema` (a struct) names, checked; the rest is not looked at. */
export const decode = <S extends Schema.Struct<Schema.Struct.Fields>>(
  what: string,
  schema: S,
  options: object,
): Effect.Effect<S["Type"], StoreConfigError> => {
  const given = options as Record<string, unknown>
  const picked = Object.fromEntries(
    Object.keys(schema.fields).flatMap((key) =>
      given[key] === undefined ? [] : [[key, given[key]]],
    ),
  )
  const decoded = Schema.decodeUnknownResult(schema as unknown as Schema.Codec<S["Type"]>)(picked)
  return Result.isFailure(decoded)
    ? Effect.fail(new StoreConfigError({ detail: `${what}: ${decoded.failure.message}` }))
    : Effect.succeed(decoded.success)
}

/** A decoded duration in whole milliseconds, or `fallback` when it was not given. */
export const millis = (input: Duration.Input | undefined, fallback: number): number =>
  input === undefined ? fallback : Options.toMillis(input)
