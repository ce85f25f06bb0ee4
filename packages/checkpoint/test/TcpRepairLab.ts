/**
 * The harness of the `tcp-repair` process tests and benchmark: one download by an
 * unmodified curl or wget from host A through A's death and B's takeover, each in a lab of
 * network namespaces of its own (client, A, B on one bridge). Root only.
 */
import type { ChildProcess } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { NetNs } from "@understudy/testkit"

export const hostScript = fileURLToPath(new URL("./TcpRepairHost.ts", import.meta.url))
export const prefix = "us14"
const serviceAddress = "10.77.0.100"
const port = 8080
export const rateBytesPerSecond = 4 * 1024 * 1024

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
export const sha256 = (file: string) =>
  createHash("sha256").update(fs.readFileSync(file)).digest("hex")
export const sizeOf = (file: string) => (fs.existsSync(file) ? fs.statSync(file).size : 0)

/** JSON lines of a child's stdout, and its stderr. */
export const watch = (child: ChildProcess) => {
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

const objectsByDir = new Map<string, Map<number, string>>()

export const objectOf = (workDir: string, size: number): string => {
  const objects = objectsByDir.get(workDir) ?? new Map<number, string>()
  objectsByDir.set(workDir, objects)
  const name = `object-${size}`
  if (!objects.has(size)) {
    fs.writeFileSync(path.join(workDir, "objects", name), randomBytes(size))
    objects.set(size, name)
  }
  return name
}

export interface Run {
  /** Where objects and outputs go; `objects/` in it must exist. */
  readonly workDir: string
  readonly client: "curl" | "wget"
  readonly size: number
  /** The fraction of the object the client holds when A dies. */
  readonly fraction: number
  /** Replace A's last checkpoint by its first (a stale one) before B reads it. */
  readonly stale?: boolean
  readonly refillBytesMax?: number
}

/** One download through one takeover, in a lab of its own; retried when this test process was too slow to kill A before the object went through. */
export const takeoverRun = async (run: Run) => {
  for (let attempt = 1; attempt <= 3; attempt++) {
    const result = await takeoverAttempt(run)
    if (result !== undefined) return result
    console.log(`attempt ${attempt}: the object went through before A died; again`)
  }
  throw new Error("three attempts in a row finished before A died")
}

const takeoverAttempt = async (run: Run) => {
  const workDir = run.workDir
  const name = objectOf(workDir, run.size)
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
    // At least 1.5 s of transfer (and the client's 1 MiB of buffer) left when A dies, so a
    // busy machine that wakes this process late still kills A mid-transfer.
    const killAt = Math.max(
      0,
      Math.min(
        Math.floor(run.size * run.fraction),
        run.size - 1.5 * rateBytesPerSecond - 1024 * 1024,
      ),
    )
    const deadline = performance.now() + 30_000
    while (sizeOf(out) < killAt && performance.now() < deadline) await sleep(2)
    if (sizeOf(out) < killAt)
      throw new Error(`the client got ${sizeOf(out)} bytes in 30 s, not ${killAt}`)
    lab.kill("a")
    const killedAtMs = Date.now()
    // On a loaded machine this process may wake after the whole object went through (A
    // then closed the connection and dropped its checkpoint): no takeover to test.
    if (fs.readdirSync(checkpoints).filter((file) => file.endsWith(".json")).length === 0) {
      console.log(
        `no checkpoint at A's death: size ${run.size}, killAt ${killAt}, out ${sizeOf(out)}, A ${JSON.stringify(a.lines)} ${a.stderr()}, client ${client.stderr()}`,
      )
      return undefined
    }
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
