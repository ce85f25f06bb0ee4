import { describe, expect, it } from "@effect/vitest"
import { Cause, Clock, Effect, Exit } from "effect"
import { TestClock } from "effect/testing"
import * as Eventually from "../src/Eventually.ts"

describe("Eventually.effect", () => {
  it.effect("returns once the condition holds, checking every `every` on the clock", () =>
    Effect.gen(function* () {
      let checks = 0
      yield* Eventually.effect("the third check", () => ++checks === 3, {
        within: "1 second",
        every: "10 millis",
        wait: (every) => TestClock.adjust(every),
      })
      expect(checks).toBe(3)
      expect(yield* Clock.currentTimeMillis).toBe(20)
    }),
  )

  it.effect("dies naming what never happened once `within` has passed, after a bounded wait", () =>
    Effect.gen(function* () {
      let checks = 0
      const exit = yield* Effect.exit(
        Eventually.effect(
          "the peer answered",
          Effect.sync(() => {
            checks++
            return false
          }),
          { within: 100, every: 20, wait: (every) => TestClock.adjust(every) },
        ),
      )
      expect(Exit.isFailure(exit) && Cause.hasDies(exit.cause)).toBe(true)
      expect(String(Exit.isFailure(exit) ? Cause.squash(exit.cause) : "")).toContain(
        "not within 100 ms: the peer answered",
      )
      expect(checks).toBe(6)
    }),
  )

  it.effect("a failing condition fails with its own error", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Eventually.effect("x", Effect.fail("broken" as const), { within: 100 }),
      )
      expect(error).toBe("broken")
    }),
  )
})

describe("Eventually.promise", () => {
  it("resolves with the first value given", async () => {
    let calls = 0
    const value = await Eventually.promise(
      "the third call",
      () => (++calls >= 3 ? calls : undefined),
      {
        within: "2 seconds",
        every: 1,
      },
    )
    expect(value).toBe(3)
  })

  it("rejects naming what never happened once `within` has passed", async () => {
    await expect(
      Eventually.promise("never", () => false, { within: 30, every: 5 }),
    ).rejects.toThrow("not within 30 ms: never")
  })
})
