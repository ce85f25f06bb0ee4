import { describe, expect, it } from "@effect/vitest"
import * as Seeds from "../src/Seeds.ts"

describe("Seeds", () => {
  it("gives count consecutive seeds from 1 by default", () => {
    expect(Seeds.seeds(4, {})).toEqual([1, 2, 3, 4])
    expect(Seeds.isReplay({})).toBe(false)
  })

  it("starts from UNDERSTUDY_SEEDS", () => {
    expect(Seeds.seeds(3, { UNDERSTUDY_SEEDS: "1000" })).toEqual([1000, 1001, 1002])
  })

  it("replays only UNDERSTUDY_SEED when set", () => {
    expect(Seeds.seeds(1_000, { UNDERSTUDY_SEED: "4242", UNDERSTUDY_SEEDS: "7" })).toEqual([4242])
    expect(Seeds.isReplay({ UNDERSTUDY_SEED: "4242" })).toBe(true)
  })

  it("rejects seeds that are not integers", () => {
    expect(() => Seeds.seeds(1, { UNDERSTUDY_SEED: "abc" })).toThrow(
      /UNDERSTUDY_SEED must be an integer/,
    )
    expect(() => Seeds.seeds(1, { UNDERSTUDY_SEEDS: "1.5" })).toThrow(/UNDERSTUDY_SEEDS/)
  })
})
