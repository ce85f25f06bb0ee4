/**
 * `--metrics HOST:PORT` on real processes: each instance serves Prometheus text; when the
 * supervisor is SIGKILLed, the survivor that takes over records the failover in
 * `understudy_port_election_failover_ms` (role supervisor) and how long it took to notice in
 * `understudy_port_election_detection_ms`, and with `--otlp URL` exports its takeover's span
 * to an OpenTelemetry collector.
 */
import { Otlp, Prometheus } from "@understudy/testkit"
import { afterEach, describe, expect, it } from "vitest"
import {
  killAll,
  makeWorkspace,
  readIntervals,
  runCli,
  type Spawned,
  slotArgs,
  spawnCli,
  waitFor,
} from "./support.ts"

const workspaces: Array<ReturnType<typeof makeWorkspace>> = []
afterEach(async () => {
  await killAll()
  for (const created of workspaces.splice(0)) created.remove()
})

/** The address the instance says it serves its metrics on (it binds port 0: any free one). */
const metricsUrl = (cli: Spawned) =>
  waitFor(`${cli.label}'s metrics address`, () => {
    const match = /metrics on (http:\/\/\S+\/metrics)/.exec(cli.stderr)
    return match?.[1]
  })

const { sample, scrape } = Prometheus

const failovers = 'understudy_port_election_failover_ms_count{role="supervisor"}'

describe("instance-supervisor --metrics", () => {
  it("serves Prometheus text; the failover histogram moves when the supervisor is SIGKILLed, and --otlp exports the takeover's span", async () => {
    const created = makeWorkspace()
    workspaces.push(created)
    const args = slotArgs(created, 1)
    const first = spawnCli(["--metrics", "127.0.0.1:0", ...args("first", 60_000)], "first")
    await waitFor("the first command", () =>
      readIntervals(created.log).find((i) => i.label === "first"),
    )
    const firstUrl = await metricsUrl(first)
    const firstText = await scrape(firstUrl)
    expect(firstText).toContain("# TYPE understudy_port_election_elections_total counter")
    expect(sample(firstText, 'understudy_port_election_elections_total{role="supervisor"}')).toBe(1)

    const collector = await Otlp.collector()
    const second = spawnCli(
      ["--metrics=127.0.0.1:0", "--otlp", collector.url, ...args("second", 100)],
      "second",
    )
    const secondUrl = await metricsUrl(second)
    await waitFor("the second to become a subordinate", async () =>
      sample(
        await scrape(secondUrl),
        'understudy_port_election_elections_total{role="subordinate"}',
      )
        ? true
        : undefined,
    )
    expect(sample(await scrape(secondUrl), failovers)).toBeUndefined()

    first.child.kill("SIGKILL")
    // The survivor binds the address, supervises, and records how long that took.
    const text = await waitFor(
      "the survivor's failover in its metrics",
      async () => {
        const scraped = await scrape(secondUrl)
        return sample(scraped, failovers) === 1 ? scraped : undefined
      },
      30_000,
    )
    expect(text).toContain("# TYPE understudy_port_election_failover_ms histogram")
    expect(
      sample(text, 'understudy_port_election_failover_ms_bucket{role="supervisor",le="+Inf"}'),
    ).toBe(1)
    expect(
      sample(text, 'understudy_port_election_failover_ms_sum{role="supervisor"}'),
    ).toBeGreaterThanOrEqual(0)
    expect(sample(text, "understudy_port_election_supervisor_lost_total")).toBe(1)
    // It noticed the loss once: the killed process's connection ended (End, or Reset with
    // data unread), and how long after it was last heard of is in the detection histogram.
    expect(text).toContain("# TYPE understudy_port_election_detection_ms histogram")
    const detections = ["End", "Reset", "Timeout"].map(
      (reason) =>
        sample(text, `understudy_port_election_detection_ms_count{reason="${reason}"}`) ?? 0,
    )
    expect(detections.reduce((a, b) => a + b, 0)).toBe(1)
    await waitFor("the second command", () =>
      readIntervals(created.log).find((i) => i.label === "second"),
    )
    expect((await second.exited).code).toBe(0)
    // Its exporter flushed when it exited: the takeover, from the bind to Elected, is a span.
    expect(collector.traces()).toContain("port-election.takeover")
    await collector.close()
  })

  it("refuses a bad --metrics address as a usage error", async () => {
    const result = await runCli(["--metrics", "9464", "--name", "x", "--", "true"])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain("--metrics 9464: expected HOST:PORT")
  })
})
