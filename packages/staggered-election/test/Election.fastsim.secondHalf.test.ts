/**
 * The second half of the staggered election's main FastSim schedules (the first, and what
 * they check, are in `Election.fastsim.test.ts`): a file of its own so that vitest's second
 * worker runs it alongside the first. Empty when one seed is replayed (`UNDERSTUDY_SEED`).
 */
import { describe, it } from "@effect/vitest"
import { checkSchedules, half, title } from "./support/schedules.ts"

describe("StaggeredElection under FastSim (second half)", () => {
  const seeds = half(2)
  it.skipIf(seeds.length === 0)(title(seeds), () => checkSchedules(seeds), 900_000)
})
