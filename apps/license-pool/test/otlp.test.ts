/**
 * `license-server --otlp URL` on real processes: a pool of two servers elects a leader (the
 * candidate's election is a span); when the servers are stopped (SIGTERM) their exporters
 * flush, and the election's span has reached testkit's OpenTelemetry collector. Waits are for
 * lines, bounded.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { Signing } from "@understudy/heartbeat-pool"
import { JsonLinesProcess as Jl, Otlp, Ports } from "@understudy/testkit"
import { afterAll, describe, expect, it } from "vitest"

const dir = mkdtempSync(join(tmpdir(), "license-otlp-"))
afterAll(() => {
  Jl.killAll()
  rmSync(dir, { recursive: true, force: true })
})

describe("license-server --otlp", () => {
  it("exports the server's election span to an OpenTelemetry collector", async () => {
    const collector = await Otlp.collector()
    try {
      const ports = await Ports.freeUdpPorts(4)
      const pool = `s1=127.0.0.1:${ports[0]}:${ports[1]},s2=127.0.0.1:${ports[2]}:${ports[3]}`
      const vendorKey = join(dir, "vendor.pub")
      writeFileSync(vendorKey, Signing.generateVendorKeys().publicPem)
      const servers = ["s1", "s2"].map(
        (id) =>
          new Jl.JsonLinesProcess(join(import.meta.dirname, "..", "src", "server.ts"), [
            ...["--id", id, "--pool", pool, "--vendor-key", vendorKey],
            ...["--state-dir", join(dir, id), "--insecure", "--otlp", collector.url, "--json"],
          ]),
      )
      const won = () =>
        servers.some((server) => server.lines.some((line) => line._tag === "BecameLeader"))
      for (let waited = 0; !won(); waited += 50) {
        if (waited > 60_000 || servers.some((server) => server.exited))
          throw new Error(`no BecameLeader line; stderr: ${servers.map((s) => s.stderr)}`)
        await sleep(50)
      }
      for (const server of servers) server.kill("SIGTERM")
      await Promise.all(servers.map((server) => server.exit()))
      expect(collector.traces()).toContain("heartbeat-pool.election")
    } finally {
      await collector.close()
    }
  })
})
