/**
 * Spans that a machine's driver opens when a step starts something (an election, a
 * failover) and ends when a later step decides its outcome: they outlive the Effect that
 * made them, so they are ended by hand, here, at the time on the Effect `Clock` (the
 * `TestClock` in simulations) and with the outcome as attributes.
 *
 * @since 0.1.0
 */
import { Clock, Effect, Exit, type Tracer } from "effect"

/**
 * Sets `attributes` on `span` and ends it now, successfully (the outcome is in the
 * attributes: an election `won` or `lost` is not an error).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Spans } from "@understudy/machine"
 *
 * const election = Effect.gen(function* () {
 *   const span = yield* Effect.makeSpan("pool.election")
 *   // ... later, in the step where the votes are in:
 *   yield* Spans.end(span, { outcome: "won", term: 4 })
 * })
 * ```
 * @since 0.1.0
 * @category combinators
 */
export const end = (
  span: Tracer.Span,
  attributes: Readonly<Record<string, unknown>>,
): Effect.Effect<void> =>
  Effect.flatMap(Clock.currentTimeNanos, (now) =>
    Effect.sync(() => {
      for (const [key, value] of Object.entries(attributes)) span.attribute(key, value)
      span.end(now, Exit.void)
    }),
  )
