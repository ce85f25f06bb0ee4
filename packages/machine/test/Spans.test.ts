import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Tracer } from "effect"
import { TestClock } from "effect/testing"
import * as Spans from "../src/Spans.ts"

describe("Spans.end", () => {
  it.effect(
    "ends the span at the clock's time, successfully, with the outcome's attributes",
    () => {
      const spans: Array<Tracer.NativeSpan> = []
      const tracer = Tracer.make({
        span: (options) => {
          const span = new Tracer.NativeSpan(options)
          spans.push(span)
          return span
        },
      })
      return Effect.gen(function* () {
        const span = yield* Effect.makeSpan("pool.election")
        yield* TestClock.adjust(1_500)
        expect(spans[0]!.status._tag).toBe("Started")
        yield* Spans.end(span, { outcome: "lost", term: 4 })
        const ended = spans[0]!
        expect(ended.status._tag).toBe("Ended")
        if (ended.status._tag !== "Ended") return
        expect(ended.status.endTime - ended.status.startTime).toBe(1_500_000_000n)
        expect(Exit.isSuccess(ended.status.exit)).toBe(true)
        expect(Object.fromEntries(ended.attributes)).toEqual({ outcome: "lost", term: 4 })
      }).pipe(Effect.withTracer(tracer))
    },
  )
})
