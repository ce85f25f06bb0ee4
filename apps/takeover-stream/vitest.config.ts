import { defineConfig } from "vitest/config"
import { twoPhases } from "../../vitest.phases.ts"

/** Servers SIGKILLed at byte offsets, hand-offs under load, TCP_REPAIR in namespaces. */
const processes = ["test/**/*.process.test.ts"]

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 30_000,
    ...twoPhases(
      { name: "short", include: ["test/**/*.test.ts"], exclude: processes },
      { name: "processes", include: processes },
    ),
  },
})
