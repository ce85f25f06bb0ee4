import { defineConfig } from "vitest/config"
import { twoPhases } from "../../vitest.phases.ts"

/** The CPU-bound FastSim suites: no process, socket or real timer. */
const simulations = ["test/**/*.fastsim.test.ts", "test/**/*.fastsim.*.test.ts"]

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // The two halves of Election.fastsim take most of the suite's time.
    ...twoPhases(
      { name: "simulations", include: simulations },
      { name: "the rest", include: ["test/**/*.test.ts"], exclude: simulations },
    ),
  },
})
