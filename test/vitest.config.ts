import { defineConfig } from "vitest/config"
import { twoPhases } from "../vitest.phases.ts"

/**
 * The two suites of real server-group processes under faults (jepsen, serverGroup.processes)
 * never run at the same time: side by side at load 30-45 one bound its 50 rounds out (310 s),
 * and restarted servers found their UDP port taken while they were down (2 runs, 2 failures).
 */
const alone = ["serverGroup.processes.test.ts"]

export default defineConfig({
  test: {
    testTimeout: 60_000,
    // Packing, installing Node 22 (once per machine) and two projects.
    hookTimeout: 1_200_000,
    // The Jepsen runs on one worker, packaging and the static checks on the other.
    ...twoPhases(
      { name: "jepsen and the rest", include: ["*.test.ts"], exclude: alone },
      { name: "alone", include: alone },
    ),
  },
})
