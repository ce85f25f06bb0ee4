/**
 * A tracer for tests: it keeps every span a program starts (name, attributes, parent and
 * status, which change as the span runs and ends), so a test can check which spans ended,
 * with what outcome, under which parent. Provide it with `recorder.provide(effect)`, or as
 * `recorder.layer` (a Promise facade's `layer` option).
 *
 * It is `@understudy/machine`'s `Spans.recorder`, so that machine's own tests (which cannot
 * depend on the test kit: it depends on machine) use the same one.
 *
 * @since 0.1.0
 */
import { Spans } from "@understudy/machine"

/**
 * The spans one tracer started and a way to provide it.
 *
 * @since 0.1.0
 * @category models
 */
export type Recorder = Spans.Recorder

/**
 * A new recorder, with no spans yet.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: () => Recorder = Spans.recorder

/**
 * A span's attributes as a plain object (for `toEqual`).
 *
 * @since 0.1.0
 * @category accessors
 */
export const attributes = Spans.attributes

/**
 * The name of a span's parent, or `undefined` for a root span (or one whose parent came
 * from outside the program, which has no name).
 *
 * @since 0.1.0
 * @category accessors
 */
export const parentName = Spans.parentName
