import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // The real-time facade test must not share the 2 cores with the CPU-bound simulation.
    fileParallelism: false,
  },
})
