import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["*.test.ts"],
    testTimeout: 60_000,
    // Packing, installing Node 22 (once per machine) and two projects.
    hookTimeout: 1_200_000,
  },
})
