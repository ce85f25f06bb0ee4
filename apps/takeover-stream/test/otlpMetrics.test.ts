/**
 * `serve --otlp URL` exports metrics (issue 18): a server serves one download, writing
 * checkpoints as it goes; its checkpoint-write histogram reaches testkit's OpenTelemetry
 * collector with the writes counted (exports go every 5 s: a bounded wait).
 */
import { Eventually, Otlp } from "@understudy/testkit"
import { describe, expect, it } from "vitest"
import { download, startCluster } from "./support.ts"

describe("takeover-stream serve --otlp", () => {
  it("exports the checkpoint-write histogram over OTLP", { timeout: 120_000 }, async () => {
    const collector = await Otlp.collector()
    const cluster = await startCluster({ servers: 1, leaseMs: 1_000, otlp: collector.url })
    try {
      const sha256 = cluster.object("small.bin", 256 * 1024)
      const fetched = await download(cluster, "small.bin", [], 60_000)
      expect(fetched.sha256).toBe(sha256)
      const writes = await Eventually.promise(
        "the checkpoint writes exported",
        () => {
          const point = collector.latest("understudy_checkpoint_write_ms")
          return point !== undefined && point.value >= 1 ? point : undefined
        },
        { within: "30 seconds", every: 100 },
      )
      expect(writes.kind).toBe("histogram")
    } finally {
      await cluster.stop()
      await collector.close()
    }
  })
})
