import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // One file at a time (vitest's default here): nearly every test waits on CLI processes
    // starting, ~0.4 s of CPU each, 10 s and more of wall time at load 40 on 2 cores. With two
    // files at once, waits on two starts ran past their 20 s bounds at load 30-45.
  },
})
