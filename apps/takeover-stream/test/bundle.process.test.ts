/**
 * Real processes: a bundle (a control connection and two data connections) from `takeover-
 * stream bundle`, its serving server SIGKILLed twice mid-transfer while one transfer is
 * paused (from its GET on). The whole bundle moves each time; the paused transfer receives
 * nothing until RESUME (sent on the bundle's stdin); both SHA-256s match. Then bundles
 * whose members go over TCP, UDP and to a multicast group (looped back on 127.0.0.1),
 * through SIGKILLs of their server at random offsets while the UDP ones are mid-way.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { JsonLinesProcess, Prng } from "@understudy/testkit"
import { afterAll, describe, expect, it } from "vitest"
import { mainPath, startCluster } from "./support.ts"

const size = 8 * 1024 * 1024
/**
 * SIGKILLs of the TCP/UDP/multicast bundle test, two per bundle (CI: 2). The issue's full
 * run, 50 SIGKILLs at random offsets (about 25 bundles of 3 x 16 MiB):
 *   UNDERSTUDY_TAKEOVER_STREAM_SIGKILLS=50 npx vitest run test/bundle.process.test.ts
 * The offsets come from UNDERSTUDY_SEED when set (a failure prints the one it used).
 */
const sigkills = Number(process.env.UNDERSTUDY_TAKEOVER_STREAM_SIGKILLS ?? 2)
if (!(Number.isSafeInteger(sigkills) && sigkills >= 1))
  throw new Error("UNDERSTUDY_TAKEOVER_STREAM_SIGKILLS is a positive integer")
const seed = Number(process.env.UNDERSTUDY_SEED || Math.floor(Math.random() * 2 ** 31))

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

  it(`TCP, UDP and multicast members: ${sigkills} SIGKILLs at random offsets move all of them; SHA-256s match`, {
    timeout: 60_000 * Math.ceil(sigkills / 2),
  }, async () => {
    const random = Prng.make(seed)
    // Shown with any failure, a timeout's included: the offsets replay from it.
    console.log(`offsets from UNDERSTUDY_SEED=${seed}`)
    // Two SIGKILLs per bundle (three servers: the third finishes it); fresh processes each.
    for (let round = 0, killed = 0; killed < sigkills; round++) {
      const kills = Math.min(2, sigkills - killed)
      // Random offsets, as a fraction of the member furthest behind: the first in 10-35 %,
      // the second in 40-60 %, so each finds the UDP members mid-way (TCP mostly too).
      const fractions = [0.1 + 0.25 * random.next(), 0.4 + 0.2 * random.next()].slice(0, kills)
      const context = `UNDERSTUDY_SEED=${seed}, bundle ${round}, kills at ${fractions.map((f) => f.toFixed(3)).join(", ")}`
      const { atKill, moves } = await mixedBundle(fractions, context)
      killed += kills
      console.log(
        `tcp/udp/multicast bundle ${round}: ${kills} SIGKILLs, ${moves} moves, sizes at the SIGKILLs ${JSON.stringify(atKill)}`,
      )
    }
  })
})

/**
 * A bundle of TCP, UDP and multicast members (looped back on 127.0.0.1) from a fresh cluster
 * of three servers; its serving server SIGKILLed once every member has reached each of
 * `fractions` of its object. Every member resumes each time and ends with its SHA-256. Returns each
 * member's size at each SIGKILL, and how many times the bundle moved.
 */
const mixedBundle = async (
  fractions: ReadonlyArray<number>,
  context: string,
): Promise<{ readonly atKill: Array<Array<number>>; readonly moves: number }> => {
  const cluster = await startCluster({ servers: 3, leaseMs: 1_000, everyBytes: 1024 * 1024 })
  const out = join(cluster.dir, "out")
  mkdirSync(out)
  const names = ["tcp.bin", "udp.bin", "multicast.bin"]
  // Twice the other test's objects: a loaded machine that wakes this process late still
  // kills the second server with megabytes to go. TCP moves about four times as fast as
  // the UDP flows here: its object is three times theirs, mostly mid-way at the SIGKILLs too.
  const size = 16 * 1024 * 1024
  const sizes = [3 * size, size, size]
  const sha = Object.fromEntries(names.map((name, i) => [name, cluster.object(name, sizes[i]!)]))
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
    const atKill: Array<Array<number>> = []
    const resumes = () => bundle.lines.filter((l) => l.t === "resumed")
    // Everything the processes said, for a failure's message.
    const said = () =>
      `${JSON.stringify(bundle.lines)}\n${cluster.servers.map((s) => `${s.id}: ${s.process.stderr}`).join("\n")}`
    for (const fraction of fractions) {
      const slowest = () => Math.min(...names.map((name, i) => sizeOf(name) / sizes[i]!))
      for (let i = 0; i < 6_000 && slowest() < fraction && !bundle.exited; i++) await sleep(10)
      expect(bundle.exited, context).toBe(false)
      atKill.push(names.map(sizeOf))
      // The server the bundle last resumed on (the first server before any takeover).
      const last = resumes().at(-1)?.server ?? cluster.servers[0]!.address
      const serving = cluster.servers.find((s) => s.address === last)!
      expect(serving.process.exited, `${context}: ${said()}`).toBe(false)
      serving.process.kill("SIGKILL")
      const before = resumes().length
      for (let i = 0; i < 3_000 && resumes().length === before; i++) await sleep(10)
      expect(resumes().length, `${context}: ${said()}`).toBeGreaterThan(before)
    }
    await bundle.line("finished", 60_000)
    const transports = bundle.lines.filter((l) => l.t === "transfer").map((l) => l.transport)
    expect(transports, context).toEqual(["tcp", "udp", "udp-multicast"])
    for (const [i, name] of names.entries()) {
      const done = bundle.lines.find((l) => l.t === "done" && l.name === name)
      if (done?.sha256 !== sha[name]) {
        // Where the copy first differs from the object, for the failure's message.
        const [copy, object] = [
          readFileSync(join(out, name)),
          readFileSync(join(cluster.dir, name)),
        ]
        let at = 0
        while (at < copy.length && at < object.length && copy[at] === object[at]) at++
        expect.fail(
          `${context}: ${name}: ${copy.length} bytes of ${sizes[i]}, first different byte at ${at}; ${said()}`,
        )
      }
    }
    // The UDP members were mid-way at every SIGKILL.
    for (const at of atKill) {
      expect(at[1], context).toBeLessThan(size)
      expect(at[2], context).toBeLessThan(size)
    }
    return { atKill, moves: resumes().length }
  } finally {
    bundle.kill("SIGKILL")
    await bundle.exit()
    await cluster.stop()
  }
}
