import { defineConfig } from "vitest/config"
import { twoPhases } from "../vitest.phases.ts"

/** The examples run for real: elections, pools and SCTP failovers on loopback, on real timers. */
const examples = ["test/examples.test.ts"]

export default defineConfig({
  test: {
    testTimeout: 30_000,
    // The pages, the site in Chromium and the scripts, then the examples.
    ...twoPhases(
      { name: "pages", include: ["test/**/*.test.ts"], exclude: examples },
      { name: "examples", include: examples },
    ),
  },
})
