/**
 * `--otlp URL` exports metrics (issue 18): one instance elects itself supervisor, runs its
 * command to the end and exits, flushing its exporter; the election's counter has reached
 * testkit's OpenTelemetry collector with its value and role.
 */
import { Otlp } from "@understudy/testkit"
import { afterEach, describe, expect, it } from "vitest"
import { killAll, makeWorkspace, runCli, slotArgs } from "./support.ts"

const workspaces: Array<ReturnType<typeof makeWorkspace>> = []
afterEach(async () => {
  await killAll()
  for (const created of workspaces.splice(0)) created.remove()
})

describe("instance-supervisor --otlp", () => {
  it("exports the election counter over OTLP when it exits", async () => {
    const created = makeWorkspace()
    workspaces.push(created)
    const collector = await Otlp.collector()
    try {
      const run = await runCli(["--otlp", collector.url, ...slotArgs(created, 1)("only", 10)])
      expect(run.code, run.stderr).toBe(0)
      expect(
        collector.latest("understudy_port_election_elections_total", { role: "supervisor" })?.value,
      ).toBe(1)
    } finally {
      await collector.close()
    }
  }, 60_000)
})
