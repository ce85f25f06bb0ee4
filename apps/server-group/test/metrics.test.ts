/**
 * `serve --metrics HOST:PORT` on real processes: a name server and 3 servers on loopback,
 * each serving Prometheus text on a port it picks. The master is SIGKILLed; the survivor that
 * takes over records the failover in `understudy_staggered_election_failover_ms` (role
 * master), and its term gauge rises; with `--otlp` its takeover and failover spans reach the
 * collector.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { JsonLinesProcess, Otlp, Ports, Prometheus } from "@understudy/testkit"
import { group, startNameServer } from "./support/group.ts"

afterAll(() => JsonLinesProcess.killAll())

const failovers = 'understudy_staggered_election_failover_ms_count{role="master"}'
const term = (id: string) => `understudy_staggered_election_term{server="${id}"}`
const role = (id: string) => `understudy_staggered_election_role{server="${id}",role="master"}`

describe("server-group serve --metrics", () => {
  it("serves Prometheus text; after the master is SIGKILLed the new master's failover histogram and term move", async () => {
    const { proc: nameServer, store } = await startNameServer(60_000)
    const collector = await Otlp.collector()
    const ids = ["1", "2", "3"]
    const metricsPorts = new Map<string, number>()
    for (const id of ids) metricsPorts.set(id, await Ports.freeTcpPort())
    const { servers, start, servingMaster } = await group({
      ids,
      store,
      args: ["--insecure", "--otlp", collector.url],
      argsOf: (id) => ["--metrics", `127.0.0.1:${metricsPorts.get(id)}`],
      readyTimeoutMs: 60_000,
    })
    await Promise.all(ids.map(start))
    const urls = new Map(ids.map((id) => [id, `http://127.0.0.1:${metricsPorts.get(id)}/metrics`]))

    // 30 s: a liveness bound on a loaded machine.
    const first = await servingMaster(30_000)
    expect(first).toBeDefined()
    const before = await Prometheus.scrape(urls.get(first!)!)
    expect(before).toContain("# TYPE understudy_staggered_election_term gauge")
    expect(Prometheus.sample(before, role(first!))).toBe(1)
    const termBefore = Prometheus.sample(before, term(first!))
    expect(termBefore).toBeGreaterThanOrEqual(1)
    // What each survivor recorded before (a loaded machine may have made it suspect the
    // master already): the kill must move the new master's figures past these.
    const survivors = ids.filter((id) => id !== first)
    const earlier = new Map<string, string>()
    for (const id of survivors) earlier.set(id, await Prometheus.scrape(urls.get(id)!))

    servers.get(first!)!.proc.kill("SIGKILL")
    await servers.get(first!)!.proc.exit()
    servers.delete(first!)
    const second = await servingMaster(30_000)
    expect(second).toBeDefined()
    expect(survivors).toContain(second)
    const was = earlier.get(second!)!
    const after = await Prometheus.scrape(urls.get(second!)!)
    expect(after).toContain("# TYPE understudy_staggered_election_failover_ms histogram")
    const moved = (series: string) =>
      (Prometheus.sample(after, series) ?? 0) - (Prometheus.sample(was, series) ?? 0)
    expect(moved(failovers)).toBeGreaterThanOrEqual(1)
    expect(moved('understudy_staggered_election_failover_ms_bucket{role="master",le="+Inf"}')).toBe(
      moved(failovers),
    )
    // At least the inquiry time-out (250 ms by default) went by before the loss was declared.
    expect(
      moved('understudy_staggered_election_failover_ms_sum{role="master"}'),
    ).toBeGreaterThanOrEqual(250)
    expect(moved("understudy_staggered_election_detection_ms_count")).toBeGreaterThanOrEqual(1)
    expect(Prometheus.sample(after, term(second!))).toBeGreaterThan(termBefore!)
    expect(Prometheus.sample(after, role(second!))).toBe(1)

    // Spans are exported every second: wait for them (bounded, 10 s).
    const spans = ["staggered-election.failover", "staggered-election.takeover"]
    for (let i = 0; i < 200 && !spans.every((span) => collector.traces().includes(span)); i++)
      await new Promise((resolve) => setTimeout(resolve, 50))
    for (const span of spans) expect(collector.traces()).toContain(span)

    for (const { proc } of servers.values()) proc.kill("SIGTERM")
    nameServer.kill("SIGTERM")
    await Promise.all([...servers.values(), { proc: nameServer }].map(({ proc }) => proc.exit()))
    await collector.close()
  }, 120_000)
})
