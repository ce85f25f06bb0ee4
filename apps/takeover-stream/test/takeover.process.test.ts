/**
 * Real processes: an embedded store, three servers and a download, the serving server
 * SIGKILLed at random offsets; a planned hand-off under load (three downloads and a bundle
 * live at once, the servers exporting to an OTLP collector of the test's); then both on
 * etcd. Bounded: 3 transfers of 16 MiB with 2 kills each on the embedded store (6 SIGKILLs;
 * the second transfer's client finds its servers through the store's name server),
 * one transfer with 1 kill on etcd, then a hand-off of a download and a bundle.
 */
import { setTimeout as sleep } from "node:timers/promises"
import { EtcdServer, Eventually, JsonLinesProcess, Otlp, Prometheus } from "@understudy/testkit"
import { afterAll, describe, expect, it } from "vitest"
import {
  type Cluster,
  download,
  handoffUnderLoad,
  metricsUrl,
  nameHolder,
  startCluster,
} from "./support.ts"

const size = 16 * 1024 * 1024
const offsetIn = (low: number, high: number) => low + Math.floor(Math.random() * (high - low))

afterAll(() => JsonLinesProcess.killAll())

describe("takeover-stream processes", () => {
  it("SIGKILLs of the serving server at random offsets: every SHA-256 matches (embedded store)", {
    timeout: 120_000,
  }, async () => {
    const cluster: Cluster = await startCluster({
      servers: 3,
      leaseMs: 300,
      everyBytes: 1024 * 1024,
      metrics: true,
    })
    const resumedTotal = 'understudy_checkpoint_takeovers_total{outcome="resumed"}'
    const takeoverWrites = 'understudy_checkpoint_checkpoints_written_total{reason="takeover"}'
    const takeoverDurations = "understudy_checkpoint_takeover_ms_count"
    /** One series on one server, 0 before its first update (the series is absent until then). */
    const scrape = async (server: Cluster["servers"][number], series: string) =>
      Prometheus.sample(await Prometheus.scrape(await metricsUrl(server)), series) ?? 0
    // Fresh servers: no takeover yet, on any of them.
    for (const server of cluster.servers) {
      expect(await scrape(server, resumedTotal)).toBe(0)
      expect(await scrape(server, takeoverDurations)).toBe(0)
    }
    // --metrics: the server that took transfer 0 over counts it and times it (the takeover
    // histogram), seen just before its own SIGKILL.
    const tookOver: Array<{ resumed: number; writes: number; durations: number }> = []
    const scrapeTakeover = async (victim: Cluster["servers"][number], kill: number) => {
      if (kill === 1)
        tookOver.push({
          resumed: await scrape(victim, resumedTotal),
          writes: await scrape(victim, takeoverWrites),
          durations: await scrape(victim, takeoverDurations),
        })
    }
    // The next transfer's fresh processes start while this one runs.
    let next: Promise<Cluster> | undefined
    try {
      for (let transfer = 0; transfer < 3; transfer++) {
        const name = `object-${transfer}.bin`
        const sha256 = cluster.object(name, size)
        if (transfer < 2) next = startCluster({ servers: 3, leaseMs: 300, everyBytes: 1024 * 1024 })
        const kills = [offsetIn(size * 0.05, size * 0.25), offsetIn(size * 0.5, size * 0.9)]
        // Transfer 1 finds the service through the store's name server (`get --store`): each
        // reconnection goes to the server that took the name over from the one killed.
        const discovery = transfer === 1 ? "name-server" : "service"
        if (discovery === "name-server")
          for (let i = 0; i < 1_000 && nameHolder(cluster) === undefined; i++) await sleep(10)
        const result = await download(
          cluster,
          name,
          kills,
          40_000,
          transfer === 0 ? scrapeTakeover : undefined,
          discovery,
        )
        const context = `transfer ${transfer}, kills at ${result.killedAt.join(", ")}, resumed ${JSON.stringify(result.resumed)}`
        expect(result.sha256, context).toBe(sha256)
        expect(result.bytes).toBe(size)
        expect(result.opened.size).toBe(size)
        // --progress, told the size by the server: a line per 10% step, ending at 100%.
        const percents = result.progress.map((l) => Number(/: (\d+)%/.exec(l)![1]))
        expect(percents, result.progress.join("\n")).toEqual([...percents].sort((x, y) => x - y))
        expect(new Set(percents.map((p) => Math.floor(p / 10))).size, context).toBe(percents.length)
        expect(result.progress.at(-1), context).toMatch(
          /^takeover-stream: 100% 16\.0 MiB of 16\.0 MiB, [\d.]+ MiB\/s$/,
        )
        // The first kill (before 25% written) always finds bytes unsent: the client is at
        // most its queue (4 MiB) ahead of the file and the server its window (4 MiB) ahead; the
        // second may land after the last byte left its server: nothing to resume then.
        expect(result.killedAt.length, context).toBe(2)
        expect(result.resumed.length, context).toBeGreaterThanOrEqual(1)
        expect(result.resumed.length, context).toBeLessThanOrEqual(2)
        if (discovery === "name-server") {
          // The transfer opened on, and every resume went to, a server that held the name.
          const named = cluster.servers.filter((server) =>
            server.process.lines.some((l) => l.t === "named"),
          )
          for (const r of [result.opened, ...result.resumed])
            expect(
              named.map((server) => server.address),
              context,
            ).toContain(r.server)
        }
        if (transfer === 0) {
          // The second kill's victim is the server that resumed the first: it counted it.
          expect(tookOver.length, context).toBe(1)
          expect(tookOver[0]!.resumed, context).toBeGreaterThanOrEqual(1)
          expect(tookOver[0]!.writes, context).toBeGreaterThanOrEqual(1)
          // Its failover histogram moved: one duration per takeover it resumed.
          expect(tookOver[0]!.durations, context).toBe(tookOver[0]!.resumed)
        }
        if (next !== undefined) {
          await cluster.stop()
          Object.assign(cluster, await next)
          next = undefined
        }
      }
    } finally {
      await cluster.stop()
      await next?.then((c) => c.stop()).catch(() => undefined)
    }
  })

  it("a planned hand-off under load moves every live transfer to the named server; the first stays up", {
    timeout: 200_000,
  }, async () => {
    const collector = await Otlp.collector()
    const cluster = await startCluster({ servers: 2, leaseMs: 1_000, otlp: collector.url })
    try {
      await handoffUnderLoad(cluster, { otlp: collector.url })
      // --otlp: the get's spans arrived when it exited (its exporter flushes then); the
      // server that resumed the transfers exports its takeover spans within a second.
      expect(collector.traces()).toContain("checkpoint.client.connect")
      await Eventually.promise(
        "the takeover spans exported",
        () => collector.traces().includes("checkpoint.takeover"),
        { within: "10 seconds", every: 10 },
      )
      expect(collector.traces()).toContain("takeover-stream")
    } finally {
      await cluster.stop()
      await collector.close()
    }
  })

  // etcd comes with `npm test` (scripts/ensure-system-deps.sh): a missing one fails here.
  it("a SIGKILL mid-transfer and a planned hand-off under load on the etcd-backed store", {
    timeout: 200_000,
  }, async () => {
    const etcd = await EtcdServer.startEtcd()
    try {
      const cluster = await startCluster({
        servers: 3,
        leaseMs: 1_000,
        etcd: etcd.endpoint,
        everyBytes: 1024 * 1024,
      })
      try {
        const sha256 = cluster.object("e.bin", size)
        // The client finds the service through the name server on etcd (`get --etcd`).
        for (let i = 0; i < 1_000 && nameHolder(cluster) === undefined; i++) await sleep(10)
        const result = await download(
          cluster,
          "e.bin",
          [offsetIn(size * 0.2, size * 0.6)],
          40_000,
          undefined,
          "name-server",
        )
        expect(result.sha256).toBe(sha256)
        // It opened on, and resumed on, servers that held the name.
        const named = cluster.servers.filter((server) =>
          server.process.lines.some((l) => l.t === "named"),
        )
        for (const r of [result.opened, ...result.resumed])
          expect(named.map((server) => server.address)).toContain(r.server)
        expect(result.killedAt.length).toBe(1)
        expect(result.resumed.length).toBe(1)
        // The planned hand-off on etcd too (a download and a bundle, lighter than on the
        // embedded store), between the two servers left (the name's holder was SIGKILLed,
        // whichever it was).
        const left = cluster.servers.filter((server) => !server.process.exited)
        expect(left.length).toBe(2)
        await handoffUnderLoad(
          { ...cluster, servers: left, service: left.map((s) => s.address).join(",") },
          { downloads: 1 },
        )
      } finally {
        await cluster.stop()
      }
    } finally {
      await etcd.stop()
    }
  })
})
