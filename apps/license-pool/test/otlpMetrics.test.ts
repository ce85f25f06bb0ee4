/**
 * `license-server --otlp URL` exports metrics (issue 18): two servers elect a leader; stopped
 * with SIGTERM, they flush their exporters, and the winner's `elections_total{outcome=won}`
 * has reached testkit's OpenTelemetry collector. Waits are for lines, bounded.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Signing } from "@understudy/heartbeat-pool"
import { Eventually, JsonLinesProcess as Jl, Otlp, Ports } from "@understudy/testkit"
import { afterAll, describe, expect, it } from "vitest"

const dir = mkdtempSync(join(tmpdir(), "license-otlp-metrics-"))
afterAll(() => {
  Jl.killAll()
  rmSync(dir, { recursive: true, force: true })
})

describe("license-server --otlp metrics", () => {
  it("exports the election counter to an OpenTelemetry collector", async () => {
    const collector = await Otlp.collector()
    try {
      const [a, b, c, d] = await Ports.freeUdpPorts(4)
      const vendorKey = join(dir, "vendor.pub")
      writeFileSync(vendorKey, Signing.generateVendorKeys().publicPem)
      const pool = `s1=127.0.0.1:${a}:${b},s2=127.0.0.1:${c}:${d}`
      const servers = ["s1", "s2"].map(
        (id) =>
          new Jl.JsonLinesProcess(join(import.meta.dirname, "..", "src", "server.ts"), [
            ...["--id", id, "--pool", pool, "--vendor-key", vendorKey, "--insecure"],
            ...["--state-dir", join(dir, id), "--otlp", collector.url, "--json"],
          ]),
      )
      await Eventually.promise(
        "a server becomes the leader",
        () => servers.some((server) => server.lines.some((line) => line._tag === "BecameLeader")),
        { within: "60 seconds", every: 50 },
      )
      for (const server of servers) server.kill("SIGTERM")
      await Promise.all(servers.map((server) => server.exit()))
      expect(
        collector.latest("understudy_pool_elections_total", { outcome: "won" })?.value,
      ).toBeGreaterThanOrEqual(1)
    } finally {
      await collector.close()
    }
  }, 120_000)
})
