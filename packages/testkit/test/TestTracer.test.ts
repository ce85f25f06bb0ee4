import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as TestTracer from "../src/TestTracer.ts"

describe("TestTracer", () => {
  it.effect("records each span with its name, attributes, parent and how it ended", () => {
    const recorder = TestTracer.make()
    return Effect.gen(function* () {
      const exit = yield* Effect.exit(
        Effect.gen(function* () {
          yield* Effect.annotateCurrentSpan("outcome", "won")
          yield* Effect.void.pipe(Effect.withSpan("inner", { attributes: { step: 1 } }))
          return yield* Effect.fail("refused")
        }).pipe(Effect.withSpan("outer", { attributes: { server: "s1" } })),
      )
      expect(Exit.isFailure(exit)).toBe(true)
      expect(recorder.spans.map((span) => span.name)).toEqual(["outer", "inner"])
      const [outer] = recorder.ended("outer")
      expect(TestTracer.attributes(outer!)).toEqual({ server: "s1", outcome: "won" })
      expect(TestTracer.parentName(outer!)).toBeUndefined()
      expect(outer!.status._tag === "Ended" && Exit.isFailure(outer!.status.exit)).toBe(true)
      const [inner] = recorder.ended("inner")
      expect(TestTracer.attributes(inner!)).toEqual({ step: 1 })
      expect(TestTracer.parentName(inner!)).toBe("outer")
      expect(recorder.ended("absent")).toEqual([])
    }).pipe(recorder.provide)
  })

  it.effect("its layer provides the same recorder", () => {
    const recorder = TestTracer.make()
    return Effect.gen(function* () {
      yield* Effect.void.pipe(Effect.withSpan("layered"))
      expect(recorder.ended("layered").map((span) => span.name)).toEqual(["layered"])
    }).pipe(Effect.provide(recorder.layer))
  })

  it.effect("ended leaves out a span still running", () => {
    const recorder = TestTracer.make()
    return Effect.gen(function* () {
      yield* Effect.gen(function* () {
        expect(recorder.spans.map((span) => span.name)).toEqual(["running"])
        expect(recorder.ended("running")).toEqual([])
      }).pipe(Effect.withSpan("running"))
      expect(recorder.ended("running")).toHaveLength(1)
    }).pipe(recorder.provide)
  })
})
