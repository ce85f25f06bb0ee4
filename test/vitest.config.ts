import { defineConfig } from "vitest/config"

/**
 * The two suites of real server-group processes under faults (jepsen, serverGroup.processes)
 * bound failovers in wall-clock time: they never run at the same time.
 */
const alone = ["serverGroup.processes.test.ts"]

export default defineConfig({
  test: {
    testTimeout: 60_000,
    // Packing, installing Node 22 (once per machine) and two projects.
    hookTimeout: 1_200_000,
    // vitest's default in `run` mode is one worker less than the cores: 1 on a 2-core machine.
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        // First, the Jepsen runs on one worker, packaging and the static checks on the other.
        test: {
          name: "jepsen and the rest",
          include: ["*.test.ts"],
          exclude: alone,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        // Then the other process suite, alone.
        test: { name: "alone", include: alone, maxWorkers: 1, sequence: { groupOrder: 1 } },
      },
    ],
  },
})
