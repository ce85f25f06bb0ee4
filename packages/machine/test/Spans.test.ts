import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { TestClock } from "effect/testing"
import * as Spans from "../src/Spans.ts"

describe("Spans.end", () => {
  it.effect(
    "ends the span at the clock's time, successfully, with the outcome's attributes",
    () => {
      const recorder = Spans.recorder()
      return Effect.gen(function* () {
        const span = yield* Effect.makeSpan("pool.election")
        yield* TestClock.adjust(1_500)
        expect(recorder.spans[0]!.status._tag).toBe("Started")
        expect(recorder.ended("pool.election")).toEqual([])
        yield* Spans.end(span, { outcome: "lost", term: 4 })
        const [ended] = recorder.ended("pool.election")
        if (ended?.status._tag !== "Ended") return expect.unreachable("the span did not end")
        expect(ended.status.endTime - ended.status.startTime).toBe(1_500_000_000n)
        expect(Exit.isSuccess(ended.status.exit)).toBe(true)
        expect(Spans.attributes(ended)).toEqual({ outcome: "lost", term: 4 })
      }).pipe(recorder.provide)
    },
  )
})

describe("Spans.recorder", () => {
  it.effect("keeps every span with its parent; ended spans by name", () => {
    const recorder = Spans.recorder()
    return Effect.gen(function* () {
      yield* Effect.void.pipe(Effect.withSpan("inner"), Effect.withSpan("outer"))
      expect(recorder.spans.map((span) => span.name)).toEqual(["outer", "inner"])
      expect(recorder.ended("inner").map(Spans.parentName)).toEqual(["outer"])
      expect(recorder.ended("outer").map(Spans.parentName)).toEqual([undefined])
    }).pipe(recorder.provide)
  })
})
