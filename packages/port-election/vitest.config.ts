import { defineConfig } from "vitest/config"
import { twoPhases } from "../../vitest.phases.ts"

/** The suite of real instance processes killed and restarted: it times failovers. */
const alone = ["test/processes.test.ts"]

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // The in-process files are short, and their bounds are seconds, not ms.
    ...twoPhases(
      { name: "in process", include: ["test/**/*.test.ts"], exclude: alone },
      { name: "processes", include: alone },
    ),
  },
})
