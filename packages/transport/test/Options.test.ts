import { describe, expect, it } from "@effect/vitest"
import { Duration, Result } from "effect"
import * as Options from "../src/Options.ts"

describe("Options.positiveMillis", () => {
  it("reads a duration given as text, milliseconds or a Duration", () => {
    expect(Options.positiveMillis("t", "2 seconds")).toEqual(Result.succeed(2_000))
    expect(Options.positiveMillis("t", 250)).toEqual(Result.succeed(250))
    expect(Options.positiveMillis("t", Duration.minutes(1))).toEqual(Result.succeed(60_000))
  })

  it("refuses what is not a positive finite duration, naming the option", () => {
    for (const input of [
      0,
      -1,
      Number.POSITIVE_INFINITY,
      Number.NaN,
      "soon",
      "0 millis",
    ] as const) {
      const result = Options.positiveMillis("submitTimeout", input as Duration.Input)
      expect(Result.isFailure(result), String(input)).toBe(true)
      if (Result.isFailure(result))
        expect(result.failure).toMatch(/^submitTimeout: not a positive duration/)
    }
  })
})
