/**
 * The harness of the `tcp-repair` process tests and benchmark: one download by an
 * unmodified curl or wget from host A through A's death and B's takeover, each in a lab of
 * network namespaces of its own (client, A, B on one bridge). Root only.
 */
import { type ChildProcess, execFileSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { NetNs } from "@understudy/testkit"

export const hostScript = fileURLToPath(new URL("./TcpRepairHost.ts", import.meta.url))
/**
 * Namespaces of this process's labs start with `us14p<pid>-`: a run sweeps only what a dead
 * run left behind, never the labs of another run on the same machine (deleting a lab's
 * bridge namespace takes its hosts' links, and their addresses, with it).
 */
const labTag = `us14p${process.pid}`

/** Deletes the namespaces left by runs whose process is gone. */
export const sweepLeftovers = (): void => {
  const pids = new Set<number>()
  for (const line of execFileSync("ip", ["netns", "list"], { encoding: "utf8" }).split("\n")) {
    const pid = /^us14p(\d+)-/.exec(line)?.[1]
    if (pid !== undefined) pids.add(Number(pid))
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 0)
    } catch {
      NetNs.sweep(`us14p${pid}-`)
    }
  }
}
const serviceAddress = "10.77.0.100"
const port = 8080
export const rateBytesPerSecond = 4 * 1024 * 1024

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
  /**
   * The fractions of the object the client holds when each serving host dies, in order:
   * one per takeover (A to B, then B to C, ...).
   */
  readonly fractions: ReadonlyArray<number>
  /** A checkpoints only when the transfer starts: B finds a stale checkpoint. */
  readonly stale?: boolean
  readonly refillBytesMax?: number
  /** The servers' store lease (default 600 ms): how soon a dead server's transfers are claimed. */
  readonly leaseMs?: number
  /** A pcap file: tcpdump records the client's traffic there. */
  readonly capture?: string
}

/** The lab's hosts: the client, the shared checkpoint store, then the servers in order. */
const serverNames = ["a", "b", "c", "d"]

/** One download through its takeovers, in a lab of its own; retried when this test process was too slow to kill a server before the object went through. */
export const takeoverRun = async (run: Run) => {
  for (let attempt = 1; attempt <= 3; attempt++) {
    const result = await takeoverAttempt(run)
    if (result !== undefined) return result
    console.log(`attempt ${attempt}: the object went through before a server died; again`)
  }
  throw new Error("three attempts in a row finished before a server died")
}

/** A lab with a checkpoint store host running: `client`, `store` and `servers`. */
export const storeLab = async (
  servers: ReadonlyArray<string>,
  leaseMs = 600,
): Promise<{ lab: NetNs.Lab; storeAddress: string; node: Array<string> }> => {
  const lab = NetNs.Lab.create(labTag, ["client", "store", ...servers])
  const key = randomBytes(32).toString("hex")
  const storeAddress = `tcp://${lab.host("store").address}:7000`
  const env = [
    "env",
    `UNDERSTUDY_TCP_REPAIR_KEY=${key}`,
    `UNDERSTUDY_TCP_REPAIR_LEASE_MS=${leaseMs}`,
    process.execPath,
    hostScript,
  ]
  try {
    const store = watch(lab.spawn("store", [...env, "store", lab.host("store").address, "7000"]))
    await store.line("ready", 20_000)
  } catch (error) {
    lab.close()
    throw error
  }
  return { lab, storeAddress, node: env }
}

const takeoverAttempt = async (run: Run) => {
  const workDir = run.workDir
  const name = objectOf(workDir, run.size)
  const servers = serverNames.slice(0, run.fractions.length + 1)
  const { lab, storeAddress, node } = await storeLab(servers, run.leaseMs)
  const out = path.join(workDir, `out-${randomBytes(4).toString("hex")}`)
  const objects = path.join(workDir, "objects")
  try {
    lab.exec("a", ["ip", "addr", "add", `${serviceAddress}/24`, "dev", "eth0"])
    // A client that buffers at most 1 MiB: the server's progress follows what it reads, so
    // a server dies with the rest of the object still to send.
    lab.exec("client", ["sysctl", "-q", "-w", "net.ipv4.tcp_rmem=4096 131072 1048576"])
    if (run.capture !== undefined) {
      const dump = lab.spawn("client", [
        "tcpdump",
        "-i",
        "eth0",
        "-U",
        "-s",
        "128",
        "-w",
        run.capture,
        "tcp",
      ])
      let said = ""
      dump.stderr!.on("data", (chunk) => {
        said += chunk
      })
      const until = performance.now() + 10_000
      while (!said.includes("listening") && performance.now() < until) await sleep(10)
    }
    const everyBytes = run.stale === true ? 2 ** 40 : 4 * 1024 * 1024
    const a = watch(
      lab.spawn("a", [
        ...node,
        "serve",
        "A",
        serviceAddress,
        String(port),
        objects,
        storeAddress,
        String(everyBytes),
      ]),
    )
    // The standbys load while A does: each host's Node start costs seconds on a busy machine.
    const standbys = servers.slice(1).map((server) => {
      const child = lab.spawn(server, [
        ...node,
        "takeover",
        server.toUpperCase(),
        objects,
        storeAddress,
        serviceAddress,
        String(run.refillBytesMax ?? 64 * 1024 * 1024),
      ])
      return { child, lines: watch(child) }
    })
    await a.line("ready", 40_000)
    for (const standby of standbys) await standby.lines.line("standby", 40_000)
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
    const hops: Array<{
      killAt: number
      outcome: Record<string, unknown> | undefined
      gapMs: number
      startMs: number
      claimMs: number
    }> = []
    for (const [hop, fraction] of run.fractions.entries()) {
      // At least 1.5 s of transfer (and the client's 1 MiB of buffer) left when a server
      // dies, so a busy machine that wakes this process late still kills it mid-transfer.
      const killAt = Math.max(
        0,
        Math.min(
          Math.floor(run.size * fraction),
          run.size - 1.5 * rateBytesPerSecond - 1024 * 1024,
        ),
      )
      // 30 s, and twice the time the lab's rate takes to bring a large object's kill point.
      const waitMs = 30_000 + (2_000 * killAt) / rateBytesPerSecond
      const deadline = performance.now() + waitMs
      while (sizeOf(out) < killAt && performance.now() < deadline) await sleep(2)
      if (sizeOf(out) < killAt)
        throw new Error(`the client got ${sizeOf(out)} bytes in ${waitMs} ms, not ${killAt}`)
      lab.kill(servers[hop]!)
      const killedAtMs = Date.now()
      const clientHadAll = sizeOf(out) === run.size
      const next = standbys[hop]!
      next.child.stdin!.write("go\n")
      const done = await next.lines.line("done", 20_000)
      // On a loaded machine this process may wake after the whole object went through (the
      // server then closed the connection and finished its bundle, or the client closed
      // it): no takeover to test.
      if (done.found === 0 || clientHadAll) {
        console.log(
          `the object went through before ${servers[hop]}'s death: size ${run.size}, killAt ${killAt}, out ${sizeOf(out)}, found ${done.found}, client ${client.stderr()}`,
        )
        return undefined
      }
      const outcome = next.lines.lines.find(
        (line) => line.t === "resumed" || line.t === "refused" || line.t === "unclaimed",
      )
      // The same, found later: the client had the whole object and acknowledged the
      // server's FIN (one past the object's end) before the server died.
      if (outcome?.t === "refused" && outcome.reason === "BeyondSent") {
        const code = await Promise.race([client.exited, sleep(10_000).then(() => "timeout")])
        if (code === 0 && sizeOf(out) === run.size) {
          console.log(
            `the client had the whole object at ${servers[hop]}'s death: ${JSON.stringify(outcome)}`,
          )
          return undefined
        }
      }
      const at = (tag: string) =>
        Number(next.lines.lines.find((line) => line.t === tag)?.atMs) - killedAtMs
      hops.push({
        killAt,
        outcome,
        gapMs: Number(outcome?.atMs ?? done.atMs) - killedAtMs,
        startMs: at("started"),
        claimMs: at("claimed"),
      })
      if (outcome?.t !== "resumed") break
    }
    // 60 s, and twice the time the rest of a large object takes at the lab's rate.
    const exitWaitMs = 60_000 + (2_000 * run.size) / rateBytesPerSecond
    const exitCode = await Promise.race([client.exited, sleep(exitWaitMs).then(() => "timeout")])
    return {
      hops,
      /** The first hop's figures, for single takeovers. */
      outcome: hops[0]?.outcome,
      gapMs: hops[0]?.gapMs ?? Number.NaN,
      startMs: hops[0]?.startMs ?? Number.NaN,
      killAt: hops[0]?.killAt ?? 0,
      exitCode,
      clientStderr: client.stderr(),
      out,
      object: path.join(workDir, "objects", name),
    }
  } finally {
    lab.close()
  }
}

/**
 * One upload (`curl -T`, HTTP PUT) to host A through A's death and B's takeover: A dies
 * once it has stored `fraction` of the body.
 */
export const uploadRun = async (run: UploadRun) => {
  for (let attempt = 1; attempt <= 3; attempt++) {
    const result = await uploadAttempt(run)
    if (result !== undefined) return result
    console.log(`attempt ${attempt}: the upload went through before A died; again`)
  }
  throw new Error("three uploads in a row finished before A died")
}

interface UploadRun {
  readonly workDir: string
  readonly size: number
  readonly fraction: number
}

const uploadAttempt = async (run: UploadRun) => {
  const objects = path.join(run.workDir, "objects")
  const source = path.join(objects, objectOf(run.workDir, run.size))
  const name = `upload-${randomBytes(4).toString("hex")}`
  const { lab, storeAddress, node } = await storeLab(["a", "b"])
  try {
    lab.exec("a", ["ip", "addr", "add", `${serviceAddress}/24`, "dev", "eth0"])
    const a = watch(
      lab.spawn("a", [
        ...node,
        "serve",
        "A",
        serviceAddress,
        String(port),
        objects,
        storeAddress,
        String(4 * 1024 * 1024),
      ]),
    )
    const b = lab.spawn("b", [
      ...node,
      "takeover",
      "B",
      objects,
      storeAddress,
      serviceAddress,
      String(64 * 1024 * 1024),
    ])
    const standby = watch(b)
    await a.line("ready", 40_000)
    await standby.line("standby", 40_000)
    const client = watch(
      lab.spawn("client", [
        "curl",
        "-sS",
        "--fail",
        "--limit-rate",
        String(rateBytesPerSecond),
        "-T",
        source,
        `http://${serviceAddress}:${port}/${name}`,
      ]),
    )
    const upload = await a.line("upload", 20_000)
    const partial = path.join(objects, `.upload-${String(upload.bundleId)}`)
    const killAt = Math.floor(run.size * run.fraction)
    const deadline = performance.now() + 30_000
    const stored = path.join(objects, name)
    while (sizeOf(partial) < killAt && !fs.existsSync(stored) && performance.now() < deadline)
      await sleep(2)
    const storedAtDeath = sizeOf(partial)
    lab.kill("a")
    // A loaded machine may wake this process after the whole body was stored.
    if (fs.existsSync(stored)) return undefined
    const killedAtMs = Date.now()
    b.stdin!.write("go\n")
    await standby.line("done", 20_000)
    const outcome = standby.lines.find(
      (line) => line.t === "resumed" || line.t === "refused" || line.t === "unclaimed",
    )
    const exitCode = await Promise.race([client.exited, sleep(60_000).then(() => "timeout")])
    return {
      outcome,
      storedAtDeath,
      gapMs: Number(outcome?.atMs) - killedAtMs,
      exitCode,
      clientStderr: client.stderr(),
      source,
      stored,
      partialsLeft: fs.readdirSync(objects).filter((file) => file.startsWith(".upload-")),
    }
  } finally {
    lab.close()
  }
}
