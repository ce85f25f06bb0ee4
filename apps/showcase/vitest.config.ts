import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // The scenario suites run real processes with failover bounds: one file at a time, so
    // they never compete with each other for the CPU.
    fileParallelism: false,
  },
})
