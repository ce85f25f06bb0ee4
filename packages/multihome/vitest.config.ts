import { defineConfig } from "vitest/config"
import { twoPhases } from "../../vitest.phases.ts"

/**
 * The files on real sockets, real time or real peers (usrsctp's client, etcd). Everything else
 * runs on simulated time or none (Cluster.sim takes most of the time).
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
    ...twoPhases(
      { name: "simulated", include: ["test/**/*.test.ts"], exclude: realTime },
      { name: "real time", include: realTime },
    ),
  },
})
