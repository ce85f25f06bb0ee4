/**
 * `serve --otlp URL` exports metrics (issue 18): a group of one server elects itself master;
 * stopped with SIGTERM, it flushes its exporter, and its term and role gauges have reached
 * testkit's OpenTelemetry collector with the server's id.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { JsonLinesProcess, Otlp } from "@understudy/testkit"
import { group, startNameServer } from "./support/group.ts"

afterAll(() => JsonLinesProcess.killAll())

describe("server-group serve --otlp", () => {
  it("exports the master's term and role gauges over OTLP", async () => {
    const { proc: nameServer, store } = await startNameServer(60_000)
    const collector = await Otlp.collector()
    try {
      const { servers, start, servingMaster } = await group({
        ids: ["1"],
        store,
        args: ["--insecure", "--otlp", collector.url],
        readyTimeoutMs: 60_000,
      })
      await start("1")
      // 30 s: a liveness bound on a loaded machine.
      expect(await servingMaster(30_000)).toBe("1")
      for (const { proc } of servers.values()) proc.kill("SIGTERM")
      await Promise.all([...servers.values()].map(({ proc }) => proc.exit()))
      expect(
        collector.latest("understudy_staggered_election_term", { server: "1" })?.value,
      ).toBeGreaterThanOrEqual(1)
      expect(
        collector.latest("understudy_staggered_election_role", { server: "1", role: "master" })
          ?.value,
      ).toBe(1)
    } finally {
      nameServer.kill("SIGTERM")
      await nameServer.exit()
      await collector.close()
    }
  }, 120_000)
})
