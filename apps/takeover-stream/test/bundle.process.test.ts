/**
 * Real processes: a bundle (a control connection and two data connections) from `takeover-
 * stream bundle`, its serving server SIGKILLed twice mid-transfer while one transfer is
 * paused (from its GET on). The whole bundle moves each time; the paused transfer receives
 * nothing until RESUME (sent on the bundle's stdin); both SHA-256s match. Then a bundle
 * whose members go over TCP, UDP and to a multicast group (looped back on 127.0.0.1),
 * through two SIGKILLs of its server while the UDP ones are mid-way.
 */
import { existsSync, mkdirSync, statSync } from "node:fs"
import { join } from "node:path"
import { JsonLinesProcess } from "@understudy/testkit"
import { afterAll, describe, expect, it } from "vitest"
import { mainPath, startCluster } from "./support.ts"

const size = 8 * 1024 * 1024
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

afterAll(() => JsonLinesProcess.killAll())

describe("takeover-stream bundles", () => {
  it("two SIGKILLs move the whole bundle; a PAUSEd transfer stays paused; SHA-256s match", {
    timeout: 120_000,
  }, async () => {
    const cluster = await startCluster({ servers: 3, leaseMs: 1_000, everyBytes: 1024 * 1024 })
    const out = join(cluster.dir, "out")
    mkdirSync(out)
    const sha = { a: cluster.object("a.bin", size), b: cluster.object("b.bin", size) }
    const sizeOf = (name: string) =>
      existsSync(join(out, name)) ? statSync(join(out, name)).size : 0
    const bundle = new JsonLinesProcess.JsonLinesProcess(mainPath, [
      "bundle",
      "a.bin",
      "b.bin",
      "--paused",
      "b.bin",
      "-o",
      out,
      "--service",
      cluster.service,
      "--key-file",
      cluster.keyFile,
    ])
    try {
      const list = await bundle.line("list", 30_000)
      expect((list.objects as Array<{ name: string }>).map((o) => o.name).sort()).toEqual([
        "a.bin",
        "b.bin",
      ])
      for (
        let i = 0;
        i < 3_000 && bundle.lines.filter((l) => l.t === "transfer").length < 2 && !bundle.exited;
        i++
      )
        await sleep(10)
      const channelB = String(
        bundle.lines.find((l) => l.t === "transfer" && l.name === "b.bin")!.channel,
      )
      let serving = cluster.servers[0]!
      const pausedSizes: Array<number> = []
      for (const fraction of [0.3, 0.65]) {
        for (let i = 0; i < 6_000 && sizeOf("a.bin") < size * fraction && !bundle.exited; i++)
          await sleep(10)
        expect(bundle.exited).toBe(false)
        serving.process.kill("SIGKILL")
        const before = bundle.lines.filter((l) => l.t === "resumed").length
        for (
          let i = 0;
          i < 3_000 && bundle.lines.filter((l) => l.t === "resumed").length === before;
          i++
        )
          await sleep(10)
        const resumed = bundle.lines.filter((l) => l.t === "resumed")
        expect(resumed.length, JSON.stringify(bundle.lines)).toBe(before + 1)
        serving = cluster.servers.find((s) => s.address === resumed[resumed.length - 1]!.server)!
        pausedSizes.push(sizeOf("b.bin"))
      }
      const doneA = await bundle.line("done", 60_000)
      expect(doneA.name).toBe("a.bin")
      expect(doneA.sha256).toBe(sha.a)
      // Paused from its GET on, across both takeovers: not one byte of b.
      expect(pausedSizes).toEqual([0, 0])
      expect(sizeOf("b.bin")).toBe(0)
      bundle.child.stdin!.write(`resume ${channelB}\n`)
      await bundle.line("unpaused", 30_000)
      await bundle.line("finished", 60_000)
      const doneB = bundle.lines.find((l) => l.t === "done" && l.name === "b.bin")!
      expect(doneB.sha256).toBe(sha.b)
      expect(doneB.bytes).toBe(size)
    } finally {
      bundle.kill("SIGKILL")
      await bundle.exit()
      await cluster.stop()
    }
  })

  it("TCP, UDP and multicast members: two SIGKILLs move all of them; SHA-256s match", {
    timeout: 120_000,
  }, async () => {
    const cluster = await startCluster({ servers: 3, leaseMs: 1_000, everyBytes: 1024 * 1024 })
    const out = join(cluster.dir, "out")
    mkdirSync(out)
    const names = ["tcp.bin", "udp.bin", "multicast.bin"]
    // Twice the other test's objects: a loaded machine that wakes this process late still
    // kills the second server with megabytes to go.
    const size = 16 * 1024 * 1024
    const sha = Object.fromEntries(names.map((name) => [name, cluster.object(name, size)]))
    const sizeOf = (name: string) =>
      existsSync(join(out, name)) ? statSync(join(out, name)).size : 0
    const bundle = new JsonLinesProcess.JsonLinesProcess(mainPath, [
      "bundle",
      ...names,
      "--udp",
      "udp.bin",
      "--multicast",
      "multicast.bin",
      "--multicast-interface",
      "127.0.0.1",
      "-o",
      out,
      "--service",
      cluster.service,
      "--key-file",
      cluster.keyFile,
    ])
    try {
      await bundle.line("list", 30_000)
      let serving = cluster.servers[0]!
      const atKill: Array<Array<number>> = []
      for (const fraction of [0.2, 0.45]) {
        const slowest = () => Math.min(sizeOf("udp.bin"), sizeOf("multicast.bin"))
        for (let i = 0; i < 6_000 && slowest() < size * fraction && !bundle.exited; i++)
          await sleep(10)
        expect(bundle.exited).toBe(false)
        atKill.push(names.map(sizeOf))
        serving.process.kill("SIGKILL")
        const before = bundle.lines.filter((l) => l.t === "resumed").length
        for (
          let i = 0;
          i < 3_000 && bundle.lines.filter((l) => l.t === "resumed").length === before;
          i++
        )
          await sleep(10)
        const resumed = bundle.lines.filter((l) => l.t === "resumed")
        expect(resumed.length, JSON.stringify(bundle.lines)).toBe(before + 1)
        serving = cluster.servers.find((s) => s.address === resumed[resumed.length - 1]!.server)!
      }
      await bundle.line("finished", 60_000)
      const transports = bundle.lines.filter((l) => l.t === "transfer").map((l) => l.transport)
      expect(transports).toEqual(["tcp", "udp", "udp-multicast"])
      for (const name of names) {
        const done = bundle.lines.find((l) => l.t === "done" && l.name === name)
        expect(done?.sha256, name).toBe(sha[name])
      }
      // The UDP members were mid-way at the first SIGKILL.
      expect(atKill[0]![1]).toBeLessThan(size)
      expect(atKill[0]![2]).toBeLessThan(size)
      console.log(`tcp/udp/multicast bundle: sizes at the SIGKILLs ${JSON.stringify(atKill)}`)
    } finally {
      bundle.kill("SIGKILL")
      await bundle.exit()
      await cluster.stop()
    }
  })
})
