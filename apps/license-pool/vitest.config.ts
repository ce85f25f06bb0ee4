import { defineConfig } from "vitest/config"
import { twoPhases } from "../../vitest.phases.ts"

/** 30 rounds of SIGKILLed and SIGSTOPped servers under 50 clients, with failovers timed. */
const processes = ["test/processes.test.ts"]

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // The short files (usage, key files, one election, a resource of 2 slots) first.
    ...twoPhases(
      { name: "short", include: ["test/**/*.test.ts"], exclude: processes },
      { name: "processes", include: processes },
    ),
  },
})
