import { defineConfig } from "vitest/config"
import { twoPhases } from "../../vitest.phases.ts"

/** The CPU-bound simulations over seeded schedules: no process, socket or real timer. */
const simulations = ["test/**/*.fastsim.test.ts"]

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // The simulations take most of the suite's time.
    ...twoPhases(
      { name: "simulations", include: simulations },
      { name: "processes", include: ["test/**/*.test.ts"], exclude: simulations },
    ),
  },
})
