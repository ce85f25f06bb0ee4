/**
 * Real processes of `takeover-stream` for tests and the showcase: an embedded store, servers
 * over a directory of objects, and downloads; SIGKILLs at chosen offsets.
 */
import { createHash, randomBytes } from "node:crypto"
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { JsonLinesProcess, Ports } from "@understudy/testkit"
import { ClusterKey } from "@understudy/transport"
import { Effect } from "effect"

export const mainPath = fileURLToPath(new URL("../src/main.ts", import.meta.url))

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export interface Cluster {
  readonly dir: string
  readonly keyFile: string
  readonly servers: Array<{
    readonly id: string
    readonly address: string
    process: JsonLinesProcess.JsonLinesProcess
  }>
  readonly service: string
  /** How servers and commands reach the store: `--store ADDRESS` or `--etcd URL`. */
  readonly storeArgs: ReadonlyArray<string>
  /** Writes an object of `bytes` random bytes; returns its SHA-256. */
  readonly object: (name: string, bytes: number) => string
  readonly stop: () => Promise<void>
}

export const startCluster = async (options: {
  readonly servers: number
  readonly leaseMs: number
  readonly etcd?: string
  readonly everyBytes?: number
  /** Each server serves Prometheus text (`--metrics 127.0.0.1:0`): see `metricsUrl`. */
  readonly metrics?: boolean
}): Promise<Cluster> => {
  const dir = mkdtempSync(join(tmpdir(), "takeover-stream-"))
  // A dot file: never served as an object (names start with a letter or digit).
  const keyFile = join(dir, ".key")
  await Effect.runPromise(ClusterKey.generateFile(keyFile))
  const processes: Array<JsonLinesProcess.JsonLinesProcess> = []
  try {
    let storeArgs: Array<string>
    if (options.etcd === undefined) {
      const storePort = await Ports.freeTcpPort()
      const store = new JsonLinesProcess.JsonLinesProcess(mainPath, [
        "store",
        "--listen",
        `tcp://127.0.0.1:${storePort}`,
        "--key-file",
        keyFile,
      ])
      processes.push(store)
      await store.line("ready", 60_000)
      storeArgs = ["--store", `tcp://127.0.0.1:${storePort}`]
    } else storeArgs = ["--etcd", options.etcd]
    const servers: Cluster["servers"] = []
    for (let i = 0; i < options.servers; i++) {
      const id = `s${i + 1}`
      const address = `tcp://127.0.0.1:${await Ports.freeTcpPort()}`
      const args = [
        "serve",
        "--id",
        id,
        "--listen",
        address,
        "--dir",
        dir,
        ...storeArgs,
        "--key-file",
        keyFile,
        "--lease-ms",
        String(options.leaseMs),
      ]
      if (options.everyBytes !== undefined) args.push("--every-bytes", String(options.everyBytes))
      if (options.metrics === true) args.push("--metrics", "127.0.0.1:0")
      const process = new JsonLinesProcess.JsonLinesProcess(mainPath, args)
      processes.push(process)
      servers.push({ id, address, process })
    }
    // Generous: four processes start at once on a loaded 2-core machine.
    for (const server of servers) await server.process.line("ready", 60_000)
    return {
      dir,
      keyFile,
      servers,
      service: servers.map((s) => s.address).join(","),
      storeArgs,
      object: (name, bytes) => {
        const content = randomBytes(bytes)
        writeFileSync(join(dir, name), content)
        return createHash("sha256").update(content).digest("hex")
      },
      stop: async () => {
        for (const p of processes) p.kill("SIGKILL")
        await Promise.all(processes.map((p) => p.exit()))
        rmSync(dir, { recursive: true, force: true })
      },
    }
  } catch (error) {
    for (const p of processes) p.kill("SIGKILL")
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}

/** Where a server started with `metrics` serves them (it says so on stderr once ready). */
export const metricsUrl = async (server: Cluster["servers"][number]): Promise<string> => {
  // stderr and stdout are two pipes: the line may come just after "ready".
  for (let i = 0; i < 100; i++) {
    const url = /metrics on (http:\/\/\S+\/metrics)/.exec(server.process.stderr)?.[1]
    if (url !== undefined) return url
    await sleep(50)
  }
  throw new Error(`${server.id} told no metrics address: ${server.process.stderr}`)
}

/** The sum of a Prometheus sample's values (over its labels) on one server. */
export const scrape = async (
  server: Cluster["servers"][number],
  sample: RegExp,
): Promise<number> => {
  const text = await (await fetch(await metricsUrl(server))).text()
  let sum = 0
  for (const line of text.split("\n")) {
    const match = sample.exec(line)
    if (match !== null) sum += Number(match[1])
  }
  return sum
}

export interface Download {
  readonly sha256: string
  readonly bytes: number
  readonly resumed: ReadonlyArray<{
    readonly gapMs: number
    readonly offset: number
    readonly server: string
  }>
  readonly killedAt: ReadonlyArray<number>
}

/** Runs `takeover-stream handoff` against the cluster's store; resolves with its exit. */
export const handoff = async (cluster: Cluster, from: string, to: string): Promise<void> => {
  const command = new JsonLinesProcess.JsonLinesProcess(mainPath, [
    "handoff",
    "--from",
    from,
    "--to",
    to,
    ...cluster.storeArgs,
    "--key-file",
    cluster.keyFile,
  ])
  try {
    await command.line("handoff", 30_000)
  } finally {
    command.kill("SIGKILL")
    await command.exit()
  }
}

/**
 * Downloads `name`, SIGKILLing the serving server once the output reaches each of
 * `killOffsets` (bytes, ascending). Bounded by `deadlineMs`.
 */
export const download = async (
  cluster: Cluster,
  name: string,
  killOffsets: ReadonlyArray<number>,
  deadlineMs: number,
  /** Called with each victim, still alive, just before its SIGKILL (`kill`: 0, 1, ...). */
  beforeKill?: (victim: Cluster["servers"][number], kill: number) => Promise<void>,
): Promise<Download> => {
  const output = join(cluster.dir, `${name}.out-${randomBytes(4).toString("hex")}`)
  const get = new JsonLinesProcess.JsonLinesProcess(mainPath, [
    "get",
    name,
    "-o",
    output,
    "--service",
    cluster.service,
    "--key-file",
    cluster.keyFile,
  ])
  const killedAt: Array<number> = []
  const pending = [...killOffsets]
  let serving = cluster.servers[0]!.address
  const deadline = performance.now() + deadlineMs
  try {
    while (!get.exited && performance.now() < deadline) {
      const resumed = get.lines.filter((l) => l.t === "resumed")
      if (resumed.length > 0) serving = String(resumed[resumed.length - 1]!.server)
      const size = (() => {
        try {
          return statSync(output).size
        } catch {
          return 0
        }
      })()
      if (pending.length > 0 && size >= pending[0]! && resumed.length === killedAt.length) {
        pending.shift()
        const victim = cluster.servers.find((s) => s.address === serving)!
        await beforeKill?.(victim, killedAt.length)
        victim.process.kill("SIGKILL")
        killedAt.push(size)
      }
      await sleep(5)
    }
    const done = await get.line("done", Math.max(1, deadline - performance.now()))
    return {
      sha256: String(done.sha256),
      bytes: Number(done.bytes),
      resumed: get.lines.filter((l) => l.t === "resumed") as never,
      killedAt,
    }
  } finally {
    get.kill("SIGKILL")
    rmSync(output, { force: true })
  }
}
