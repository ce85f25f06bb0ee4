import { defineConfig } from "vitest/config"

/**
 * The files on real sockets, real time or real peers (usrsctp's client, etcd): they run one
 * at a time, after the rest. Everything else runs on simulated time or none.
 */
const realTime = [
  "test/interop*.test.ts",
  "test/Cluster.interop.test.ts",
  "test/Fence.etcd.test.ts",
  "test/Endpoint.test.ts",
  "test/Association.loopback.test.ts",
  "test/Listener.test.ts",
]

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two workers (vitest's default here is one less than the cores: 1 on a 2-core machine).
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        // First, side by side: pure and simulated files (Cluster.sim takes most of the time).
        test: {
          name: "simulated",
          include: ["test/**/*.test.ts"],
          exclude: realTime,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        // Then one file at a time: nothing else competes with a real peer's timers.
        test: {
          name: "real time",
          include: realTime,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
})
