/**
 * Spans that a machine's driver opens when a step starts something (an election, a
 * failover) and ends when a later step decides its outcome: they outlive the Effect that
 * made them, so they are ended by hand, here, at the time on the Effect `Clock` (the
 * `TestClock` in simulations) and with the outcome as attributes. And a tracer that records
 * every span, to check them (`recorder`).
 *
 * @since 0.1.0
 */
import { Clock, Effect, Exit, Layer, Option, Tracer } from "effect"

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

/**
 * The spans one tracer started, and a way to provide it: see {@link recorder}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Recorder {
  readonly tracer: Tracer.Tracer
  /** Every span started, in the order they started. */
  readonly spans: ReadonlyArray<Tracer.NativeSpan>
  /** The ended spans named `name`, in the order they started. */
  readonly ended: (name: string) => Array<Tracer.NativeSpan>
  /** `effect` with this tracer as its tracer. */
  readonly provide: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** This tracer as a layer (a Promise facade's `layer` option). */
  readonly layer: Layer.Layer<never>
}

/**
 * A tracer that keeps every span a program starts (name, attributes, parent and status,
 * which change as the span runs and ends), so that a test can check which spans ended, with
 * what outcome, under which parent. `@understudy/testkit`'s `TestTracer` is this one.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Spans } from "@understudy/machine"
 *
 * const recorder = Spans.recorder()
 * await Effect.runPromise(recorder.provide(Effect.withSpan(Effect.void, "pool.election")))
 * recorder.ended("pool.election").length // 1
 * ```
 * @since 0.1.0
 * @category constructors
 */
export const recorder = (): Recorder => {
  const spans: Array<Tracer.NativeSpan> = []
  const tracer = Tracer.make({
    span: (options) => {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    },
  })
  return {
    tracer,
    spans,
    ended: (name) => spans.filter((span) => span.name === name && span.status._tag === "Ended"),
    provide: (effect) => Effect.withTracer(effect, tracer),
    layer: Layer.succeed(Tracer.Tracer, tracer),
  }
}

/**
 * A span's attributes as a plain object (for `toEqual`).
 *
 * @since 0.1.0
 * @category accessors
 */
export const attributes = (span: Tracer.NativeSpan): Record<string, unknown> =>
  Object.fromEntries(span.attributes)

/**
 * The name of a span's parent, or `undefined` for a root span (or one whose parent came
 * from outside the program, which has no name).
 *
 * @since 0.1.0
 * @category accessors
 */
export const parentName = (span: Tracer.NativeSpan): string | undefined => {
  const parent = Option.getOrUndefined(span.parent)
  return parent?._tag === "Span" ? parent.name : undefined
}
