import { defineConfig } from "vitest/config"

/** The CPU-bound FastSim suites: no process, socket or real timer. */
const simulations = ["test/**/*.fastsim.test.ts", "test/**/*.fastsim.*.test.ts"]

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // vitest's default in `run` mode is one worker less than the cores: 1 on a 2-core machine.
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        // First, side by side: the two halves of Election.fastsim take most of the suite's time.
        test: { name: "simulations", include: simulations, sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        // Then one file at a time: tests on real time never share the cores with a simulation.
        test: {
          name: "the rest",
          include: ["test/**/*.test.ts"],
          exclude: simulations,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
})
