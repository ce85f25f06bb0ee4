import { defineConfig } from "vitest/config"

/** The TCP_REPAIR suite (real sockets in namespaces, curl and wget as peers): alone, last. */
const alone = ["test/TcpRepair.test.ts"]

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two workers (vitest's default here is one less than the cores: 1 on a 2-core machine).
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        // First, two files at a time: simulations and loopback sessions, each short.
        test: {
          name: "sessions",
          include: ["test/**/*.test.ts"],
          exclude: alone,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        // Then the TCP_REPAIR takeovers, with the machine to themselves.
        test: { name: "tcp repair", include: alone, sequence: { groupOrder: 1 } },
      },
    ],
  },
})
