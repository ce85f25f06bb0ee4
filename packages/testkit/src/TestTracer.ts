/**
 * A tracer for tests: it keeps every span a program starts (name, attributes, parent and
 * status, which change as the span runs and ends), so a test can check which spans ended,
 * with what outcome, under which parent. Provide it with `recorder.provide(effect)`, or as
 * `recorder.layer` (a Promise facade's `layer` option).
 *
 * @since 0.1.0
 */
import { Effect, Layer, Option, Tracer } from "effect"

/**
 * The spans one tracer started and a way to provide it.
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
  /** This tracer as a layer. */
  readonly layer: Layer.Layer<never>
}

/**
 * A new recorder, with no spans yet.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (): Recorder => {
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
