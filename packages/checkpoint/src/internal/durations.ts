/**
 * Duration options, decoded the same way everywhere in this package: each is a positive,
 * finite `Duration.Input` (`"1 second"`, a number of milliseconds, a `Duration`: transport's
 * `Options.PositiveDuration`), read into milliseconds before anything is opened, bound or
 * dialled; one out of range is a `CheckpointConfigError` naming it.
 */
import { Options } from "@understudy/transport"
import { type Duration, Effect, Result, Schema } from "effect"
import { CheckpointConfigError } from "../CheckpointError.ts"

/**
 * The durations `keys` of `options`, in whole milliseconds, each absent one `undefined` (the
 * caller applies its default).
 */
export const millis = <K extends string>(
  options: { readonly [key in K]?: Duration.Input | undefined },
  keys: ReadonlyArray<K>,
): Effect.Effect<{ readonly [key in K]: number | undefined }, CheckpointConfigError> => {
  const given = keys.filter((key) => options[key] !== undefined)
  const schema = Schema.Struct(
    Object.fromEntries(given.map((key) => [key, Options.PositiveDuration])),
  )
  const decoded = Schema.decodeUnknownResult(schema)(
    Object.fromEntries(given.map((key) => [key, options[key]])),
  )
  if (Result.isFailure(decoded)) {
    return Effect.fail(new CheckpointConfigError({ detail: decoded.failure.message }))
  }
  const values = decoded.success as Record<string, Duration.Input>
  return Effect.succeed(
    Object.fromEntries(
      keys.map((key) => [key, key in values ? Options.toMillis(values[key]!) : undefined]),
    ) as { readonly [key in K]: number | undefined },
  )
}
