import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // vitest's default in `run` mode is cores − 1 workers: 1 on a 2-core machine. Two let a
    // file that waits on its processes run beside another.
    maxWorkers: 2,
  },
})
