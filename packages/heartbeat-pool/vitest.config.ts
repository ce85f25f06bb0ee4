import { defineConfig } from "vitest/config"

/** The CPU-bound simulations over seeded schedules: no process, socket or real timer. */
const simulations = ["test/**/*.fastsim.test.ts"]

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two workers (vitest's default here is one less than the cores: 1 on a 2-core machine).
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        // First, side by side: the simulations take most of the suite's time.
        test: { name: "simulations", include: simulations, sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        // Then one file at a time: tests on real time and real processes must not share the
        // 2 cores with a CPU-bound simulation, nor with each other.
        test: {
          name: "processes",
          include: ["test/**/*.test.ts"],
          exclude: simulations,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
})
