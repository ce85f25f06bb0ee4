/**
 * Real processes: an embedded store, three servers and a download, the serving server
 * SIGKILLed at random offsets; then the same on etcd. Bounded: 3 transfers of 16 MiB with
 * 2 kills each on the embedded store (6 SIGKILLs), one transfer with 1 kill on etcd.
 */
import { createHash } from "node:crypto"
import { existsSync, statSync, truncateSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { EtcdServer, JsonLinesProcess } from "@understudy/testkit"
import { afterAll, describe, expect, it } from "vitest"
import { type Cluster, download, handoff, mainPath, scrape, startCluster } from "./support.ts"

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
    const resumedTotal =
      /^understudy_checkpoint_takeovers_total\{[^}]*outcome="resumed"[^}]*\} (\S+)$/
    const takeoverWrites =
      /^understudy_checkpoint_checkpoints_written_total\{[^}]*reason="takeover"[^}]*\} (\S+)$/
    // Fresh servers: no takeover yet, on any of them.
    for (const server of cluster.servers) expect(await scrape(server, resumedTotal)).toBe(0)
    // --metrics: the server that took transfer 0 over counts it, seen just before its own SIGKILL.
    const tookOver: Array<{ resumed: number; writes: number }> = []
    const scrapeTakeover = async (victim: Cluster["servers"][number], kill: number) => {
      if (kill === 1)
        tookOver.push({
          resumed: await scrape(victim, resumedTotal),
          writes: await scrape(victim, takeoverWrites),
        })
    }
    try {
      for (let transfer = 0; transfer < 3; transfer++) {
        const name = `object-${transfer}.bin`
        const sha256 = cluster.object(name, size)
        const kills = [offsetIn(size * 0.05, size * 0.25), offsetIn(size * 0.5, size * 0.9)]
        const result = await download(
          cluster,
          name,
          kills,
          40_000,
          transfer === 0 ? scrapeTakeover : undefined,
        )
        const context = `transfer ${transfer}, kills at ${result.killedAt.join(", ")}, resumed ${JSON.stringify(result.resumed)}`
        expect(result.sha256, context).toBe(sha256)
        expect(result.bytes).toBe(size)
        // The first kill (before 25% written) always finds bytes unsent: the client is at
        // most its queue (4 MiB) ahead of the file and the server its window (4 MiB) ahead; the
        // second may land after the last byte left its server: nothing to resume then.
        expect(result.killedAt.length, context).toBe(2)
        expect(result.resumed.length, context).toBeGreaterThanOrEqual(1)
        expect(result.resumed.length, context).toBeLessThanOrEqual(2)
        if (transfer === 0) {
          // The second kill's victim is the server that resumed the first: it counted it.
          expect(tookOver.length, context).toBe(1)
          expect(tookOver[0]!.resumed, context).toBeGreaterThanOrEqual(1)
          expect(tookOver[0]!.writes, context).toBeGreaterThanOrEqual(1)
        }
        // Fresh processes on new ports for the next transfer.
        if (transfer < 2) {
          await cluster.stop()
          Object.assign(
            cluster,
            await startCluster({ servers: 3, leaseMs: 300, everyBytes: 1024 * 1024 }),
          )
        }
      }
    } finally {
      await cluster.stop()
    }
  })

  it("a planned hand-off moves a live download to the named server; the first stays up", {
    timeout: 200_000,
  }, async () => {
    const cluster = await startCluster({ servers: 2, leaseMs: 1_000 })
    try {
      // Large enough that the transfer outlasts the hand-off command's start by far (the
      // session layer moves well under 100 MiB/s here); zeros: its SHA-256 is known.
      const size = 128 * 1024 * 1024
      writeFileSync(join(cluster.dir, "h.bin"), "")
      truncateSync(join(cluster.dir, "h.bin"), size)
      const sha256 = createHash("sha256").update(Buffer.alloc(size)).digest("hex")
      const output = join(cluster.dir, "h.out")
      const get = new JsonLinesProcess.JsonLinesProcess(mainPath, [
        "get",
        "h.bin",
        "-o",
        output,
        "--service",
        cluster.service,
        "--key-file",
        cluster.keyFile,
      ])
      try {
        const sizeNow = () => (existsSync(output) ? statSync(output).size : 0)
        for (let i = 0; i < 6_000 && sizeNow() < size / 50 && !get.exited; i++)
          await new Promise((resolve) => setTimeout(resolve, 10))
        await handoff(cluster, "s1", "s2")
        const done = await get.line("done", 150_000)
        const resumed = get.lines.filter((l) => l.t === "resumed")
        expect(done.sha256).toBe(sha256)
        expect(resumed.length, JSON.stringify(resumed)).toBe(1)
        expect(resumed[0]!.server).toBe(cluster.servers[1]!.address)
        expect(Number(resumed[0]!.offset)).toBeGreaterThan(0)
        expect(cluster.servers[0]!.process.exited).toBe(false)
      } finally {
        get.kill("SIGKILL")
        await get.exit()
      }
    } finally {
      await cluster.stop()
    }
  })

  it.skipIf(!existsSync("/usr/bin/etcd"))(
    "a SIGKILL mid-transfer on the etcd-backed store",
    { timeout: 60_000 },
    async () => {
      const etcd = await EtcdServer.startEtcd()
      try {
        const cluster = await startCluster({
          servers: 2,
          leaseMs: 1_000,
          etcd: etcd.endpoint,
          everyBytes: 1024 * 1024,
        })
        try {
          const sha256 = cluster.object("e.bin", size)
          const result = await download(
            cluster,
            "e.bin",
            [offsetIn(size * 0.2, size * 0.6)],
            40_000,
          )
          expect(result.sha256).toBe(sha256)
          expect(result.killedAt.length).toBe(1)
          expect(result.resumed.length).toBe(1)
        } finally {
          await cluster.stop()
        }
      } finally {
        await etcd.stop()
      }
    },
  )
})
