import { defineConfig } from "vitest/config"

/** The suite of real instance processes killed and restarted: it runs alone, last. */
const alone = ["test/processes.test.ts"]

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two workers (vitest's default here is one less than the cores: 1 on a 2-core machine).
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        // First, two files at a time: each is short, and their bounds are seconds, not ms.
        test: {
          name: "in process",
          include: ["test/**/*.test.ts"],
          exclude: alone,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        // Then the process suite, with the machine to itself: it times failovers.
        test: { name: "processes", include: alone, sequence: { groupOrder: 1 } },
      },
    ],
  },
})
