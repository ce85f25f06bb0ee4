/**
 * The `tcp-repair` backend with real hosts: network namespaces (client, host A, host B on
 * one bridge), an unmodified curl or wget downloading from A, A's death (link down, then
 * SIGKILL: its kernel sends no FIN or RST), B taking the connection over from A's
 * checkpoint. Root only; elsewhere the availability test still runs.
 *
 * UNDERSTUDY_TCP_REPAIR_TAKEOVERS sets how many curl takeovers run (CI: 5).
 */
import { type ChildProcess, spawnSync } from "node:child_process"
import { createHash, randomBytes, randomInt } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { NetNs } from "@understudy/testkit"
import { Effect, Exit } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as TcpRepair from "../src/TcpRepair.ts"

const hostScript = fileURLToPath(new URL("./TcpRepairHost.ts", import.meta.url))
const prefix = "us14"
const serviceAddress = "10.77.0.100"
const port = 8080
const curlTakeovers = Number(process.env.UNDERSTUDY_TCP_REPAIR_TAKEOVERS ?? 5)
const rateBytesPerSecond = 8 * 1024 * 1024
const labUnavailable = NetNs.unavailableReason()
const repairUnavailable = TcpRepair.probe()
const skipReason =
  labUnavailable ?? (typeof repairUnavailable === "string" ? repairUnavailable : undefined)

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const sha256 = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex")
const sizeOf = (file: string) => (fs.existsSync(file) ? fs.statSync(file).size : 0)

/** JSON lines of a child's stdout, and its stderr. */
const watch = (child: ChildProcess) => {
  const lines: Array<Record<string, unknown>> = []
  let buffer = ""
  let stderr = ""
  child.stdout!.setEncoding("utf8")
  child.stdout!.on("data", (chunk: string) => {
    buffer += chunk
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      if (line.startsWith("{")) lines.push(JSON.parse(line) as Record<string, unknown>)
    }
  })
  child.stderr!.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-4000)
  })
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  const line = async (tag: string, timeoutMs: number) => {
    const deadline = performance.now() + timeoutMs
    while (performance.now() < deadline) {
      const found = lines.find((candidate) => candidate.t === tag)
      if (found !== undefined) return found
      await sleep(5)
    }
    throw new Error(`no ${tag} line within ${timeoutMs} ms; stderr: ${stderr}`)
  }
  return { lines, line, exited, stderr: () => stderr }
}

let workDir = ""
const objects = new Map<number, string>()

const objectOf = (size: number): string => {
  const name = `object-${size}`
  if (!objects.has(size)) {
    fs.writeFileSync(path.join(workDir, "objects", name), randomBytes(size))
    objects.set(size, name)
  }
  return name
}

interface Run {
  readonly client: "curl" | "wget"
  readonly size: number
  /** The fraction of the object the client holds when A dies. */
  readonly fraction: number
  /** Replace A's last checkpoint by its first (a stale one) before B reads it. */
  readonly stale?: boolean
  readonly refillBytesMax?: number
}

/** One download through one takeover, in a lab of its own; retried when this test process was too slow to kill A before the object went through. */
const takeoverRun = async (run: Run) => {
  for (let attempt = 1; attempt <= 3; attempt++) {
    const result = await takeoverAttempt(run)
    if (result !== undefined) return result
    console.log(`attempt ${attempt}: the object went through before A died; again`)
  }
  throw new Error("three attempts in a row finished before A died")
}

const takeoverAttempt = async (run: Run) => {
  const name = objectOf(run.size)
  const lab = NetNs.Lab.create(prefix, ["client", "a", "b"])
  const checkpoints = fs.mkdtempSync(path.join(workDir, "checkpoints-"))
  const out = path.join(workDir, `out-${randomBytes(4).toString("hex")}`)
  try {
    lab.exec("a", ["ip", "addr", "add", `${serviceAddress}/24`, "dev", "eth0"])
    // A client that buffers at most 1 MiB: the server's progress follows what it reads, so
    // A dies with the rest of the object still to send.
    lab.exec("client", ["sysctl", "-q", "-w", "net.ipv4.tcp_rmem=4096 131072 1048576"])
    const a = watch(
      lab.spawn("a", [
        process.execPath,
        hostScript,
        "serve",
        "A",
        serviceAddress,
        String(port),
        path.join(workDir, "objects"),
        checkpoints,
      ]),
    )
    await a.line("ready", 10_000)
    const bProcess = lab.spawn("b", [
      process.execPath,
      hostScript,
      "takeover",
      path.join(workDir, "objects"),
      checkpoints,
      serviceAddress,
      String(run.refillBytesMax ?? 64 * 1024 * 1024),
    ])
    const b = watch(bProcess)
    await b.line("standby", 20_000)
    const url = `http://${serviceAddress}:${port}/${name}`
    const client = watch(
      lab.spawn(
        "client",
        run.client === "curl"
          ? ["curl", "-sS", "--fail", "--limit-rate", String(rateBytesPerSecond), "-o", out, url]
          : ["wget", "-q", `--limit-rate=${rateBytesPerSecond}`, "-O", out, url],
      ),
    )
    await a.line("transfer", 10_000)
    const first = fs
      .readdirSync(checkpoints)
      .map((file) => fs.readFileSync(path.join(checkpoints, file)))
    const killAt = Math.min(Math.floor(run.size * run.fraction), run.size - 3 * 1024 * 1024)
    const deadline = performance.now() + 30_000
    while (sizeOf(out) < killAt && performance.now() < deadline) await sleep(2)
    expect(sizeOf(out)).toBeGreaterThanOrEqual(killAt)
    lab.kill("a")
    const killedAtMs = Date.now()
    // On a loaded machine this process may wake after the whole object went through (A
    // then closed the connection and dropped its checkpoint): no takeover to test.
    if (fs.readdirSync(checkpoints).filter((file) => file.endsWith(".json")).length === 0)
      return undefined
    if (run.stale === true)
      for (const file of fs.readdirSync(checkpoints))
        fs.writeFileSync(path.join(checkpoints, file), first[0]!)
    bProcess.stdin!.write("go\n")
    const done = await b.line("done", 20_000)
    const outcome = b.lines.find((line) => line.t === "resumed" || line.t === "refused")
    const exitCode = await Promise.race([client.exited, sleep(60_000).then(() => "timeout")])
    return {
      outcome,
      gapMs: Number(outcome?.atMs ?? done.atMs) - killedAtMs,
      startMs: Number(b.lines.find((line) => line.t === "started")?.atMs) - killedAtMs,
      exitCode,
      clientStderr: client.stderr(),
      out,
      object: path.join(workDir, "objects", name),
      killAt,
    }
  } finally {
    lab.close()
    fs.rmSync(checkpoints, { recursive: true, force: true })
  }
}

describe("TcpRepair availability", () => {
  it("says why when the process lacks CAP_NET_ADMIN", () => {
    const capsh = spawnSync("capsh", ["--help"], { stdio: "ignore" })
    if (process.getuid?.() !== 0 || capsh.error !== undefined) {
      // Not root: this process itself lacks the capability.
      const exit = Effect.runSyncExit(TcpRepair.available)
      expect(Exit.isFailure(exit)).toBe(true)
      return
    }
    const dropped = spawnSync(
      "capsh",
      ["--drop=cap_net_admin", "--", "-c", `"${process.execPath}" "${hostScript}" probe`],
      { encoding: "utf8" },
    )
    expect(dropped.status).toBe(2)
    const line = JSON.parse(dropped.stdout.trim()) as { t: string; reason: string }
    expect(line.t).toBe("unavailable")
    expect(line.reason).toMatch(/CAP_NET_ADMIN/)
    // And with the capability, the same check passes.
    const kept = spawnSync(process.execPath, [hostScript, "probe"], { encoding: "utf8" })
    expect(JSON.parse(kept.stdout.trim())).toEqual({ t: "available" })
  })
})

describe.skipIf(skipReason !== undefined)("TcpRepair takeover of a live TCP connection", () => {
  beforeAll(() => {
    NetNs.sweep(`${prefix}-`)
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), "us14-"))
    fs.mkdirSync(path.join(workDir, "objects"))
  })
  afterAll(() => {
    NetNs.sweep(`${prefix}-`)
    if (workDir !== "") fs.rmSync(workDir, { recursive: true, force: true })
  })

  it(
    `curl finishes every download through ${curlTakeovers} takeovers at random offsets, byte for byte`,
    async () => {
      for (let i = 0; i < curlTakeovers; i++) {
        const size = randomInt(4, 17) * 1024 * 1024 + randomInt(0, 1024 * 1024)
        const fraction = randomInt(10, 90) / 100
        const result = await takeoverRun({ client: "curl", size, fraction })
        console.log(
          `curl takeover ${i + 1}: ${size} bytes, A died at ${result.killAt}, outcome ${JSON.stringify(result.outcome)}, gap ${result.gapMs} ms (B told ${result.startMs} ms after)`,
        )
        expect(result.outcome?.t).toBe("resumed")
        expect(result.exitCode).toBe(0)
        expect(result.clientStderr).toBe("")
        expect(sha256(result.out)).toBe(sha256(result.object))
      }
    },
    curlTakeovers * 40_000,
  )

  it("wget finishes its download through a takeover, byte for byte", async () => {
    const size = randomInt(4, 13) * 1024 * 1024 + randomInt(0, 1024 * 1024)
    const result = await takeoverRun({ client: "wget", size, fraction: randomInt(20, 80) / 100 })
    console.log(
      `wget takeover: ${size} bytes, outcome ${JSON.stringify(result.outcome)}, gap ${result.gapMs} ms`,
    )
    expect(result.outcome?.t).toBe("resumed")
    expect(result.exitCode).toBe(0)
    expect(sha256(result.out)).toBe(sha256(result.object))
  }, 60_000)

  it("resets the client, with a typed refusal, when the checkpoint can not cover its acknowledgement", async () => {
    const size = 8 * 1024 * 1024
    // B finds only A's first checkpoint (the client is megabytes past it) and may put back
    // at most 64 KiB: it must refuse, reset the client, and never send a byte.
    const result = await takeoverRun({
      client: "curl",
      size,
      fraction: 0.5,
      stale: true,
      refillBytesMax: 64 * 1024,
    })
    expect(result.outcome, JSON.stringify(result.outcome)).toMatchObject({
      t: "refused",
      reason: "TooOld",
      reset: true,
    })
    expect(result.exitCode).not.toBe(0)
    expect(result.clientStderr).toMatch(/reset/i)
    // What curl wrote is a prefix of the object: no wrong byte.
    const got = fs.readFileSync(result.out)
    const object = fs.readFileSync(result.object)
    expect(got.length).toBeLessThan(object.length)
    expect(got.equals(object.subarray(0, got.length))).toBe(true)
  }, 60_000)
})
