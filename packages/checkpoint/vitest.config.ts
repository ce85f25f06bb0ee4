import { defineConfig } from "vitest/config"
import { twoPhases } from "../../vitest.phases.ts"

/** The TCP_REPAIR suite: real sockets in namespaces, curl and wget as peers. */
const alone = ["test/TcpRepair.test.ts"]

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Simulations and loopback sessions, each short, then the TCP_REPAIR takeovers.
    ...twoPhases(
      { name: "sessions", include: ["test/**/*.test.ts"], exclude: alone },
      { name: "tcp repair", include: alone },
    ),
  },
})
