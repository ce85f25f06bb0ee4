/**
 * Real processes of `takeover-stream` for tests and the showcase: an embedded store, servers
 * over a directory of objects, and downloads; SIGKILLs at chosen offsets.
 */
import { createHash, randomBytes } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { JsonLinesProcess, Ports } from "@understudy/testkit"
import { ClusterKey } from "@understudy/transport"
import { Effect } from "effect"
import { expect } from "vitest"

export const mainPath = fileURLToPath(new URL("../src/main.ts", import.meta.url))

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
  /** Each server exports traces and metrics there (`--otlp URL`). */
  readonly otlp?: string
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
      if (options.otlp !== undefined) args.push("--otlp", options.otlp)
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

export interface Download {
  readonly sha256: string
  readonly bytes: number
  readonly resumed: ReadonlyArray<{
    readonly gapMs: number
    readonly offset: number
    readonly server: string
  }>
  /** The get's `opened` line: the object's size, and the server that opened the transfer. */
  readonly opened: { readonly size: number; readonly server: string }
  readonly killedAt: ReadonlyArray<number>
  /** The get's `--progress` lines (stderr is a pipe: one plain line per 10%). */
  readonly progress: ReadonlyArray<string>
}

/** The server that holds the service's name now: the latest `named` of a live server. */
export const nameHolder = (cluster: Cluster): Cluster["servers"][number] | undefined => {
  let holder: { server: Cluster["servers"][number]; epoch: number } | undefined
  for (const server of cluster.servers) {
    if (server.process.exited) continue
    const changes = server.process.lines.filter((l) => l.t === "named" || l.t === "unnamed")
    const last = changes[changes.length - 1]
    if (last?.t === "named" && (holder === undefined || Number(last.epoch) > holder.epoch))
      holder = { server, epoch: Number(last.epoch) }
  }
  return holder?.server
}

/**
 * Starts `takeover-stream handoff --on-stdin` against the cluster's store and waits (bounded)
 * until it is ready: its start, seconds of CPU on a loaded machine, is then behind it, and
 * `go` hands off at once (one put) and resolves with its report.
 */
export const readyHandoff = async (cluster: Cluster, from: string, to: string) => {
  const command = new JsonLinesProcess.JsonLinesProcess(mainPath, [
    "handoff",
    "--from",
    from,
    "--to",
    to,
    ...cluster.storeArgs,
    "--key-file",
    cluster.keyFile,
    "--on-stdin",
  ])
  const stop = async () => {
    command.kill("SIGKILL")
    await command.exit()
  }
  try {
    await command.line("ready", 30_000)
  } catch (error) {
    await stop()
    throw error
  }
  return {
    go: async () => {
      try {
        command.child.stdin!.write("go\n")
        await command.line("handoff", 30_000)
      } finally {
        await stop()
      }
    },
    stop,
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
  /** Find the service through the store's name server (`get --store`), not `--service`. */
  discovery: "service" | "name-server" = "service",
): Promise<Download> => {
  const output = join(cluster.dir, `${name}.out-${randomBytes(4).toString("hex")}`)
  const get = new JsonLinesProcess.JsonLinesProcess(mainPath, [
    "get",
    name,
    "-o",
    output,
    ...(discovery === "service" ? ["--service", cluster.service] : cluster.storeArgs),
    "--key-file",
    cluster.keyFile,
    "--progress",
  ])
  const killedAt: Array<number> = []
  const pending = [...killOffsets]
  // The server that opened the transfer (its `opened` line), then the latest to resume it.
  let serving: string | undefined
  const deadline = performance.now() + deadlineMs
  try {
    while (!get.exited && performance.now() < deadline) {
      const resumed = get.lines.filter((l) => l.t === "resumed")
      serving = String(
        resumed.at(-1)?.server ?? get.lines.find((l) => l.t === "opened")?.server ?? "",
      )
      const size = (() => {
        try {
          return statSync(output).size
        } catch {
          return 0
        }
      })()
      if (
        pending.length > 0 &&
        size >= pending[0]! &&
        resumed.length === killedAt.length &&
        serving !== ""
      ) {
        pending.shift()
        const victim = cluster.servers.find((s) => s.address === serving)
        if (victim === undefined)
          throw new Error(`no server at ${serving}: ${JSON.stringify(get.lines)}`)
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
      opened: get.lines.find((l) => l.t === "opened") as never,
      killedAt,
      progress: get.stderr.split("\n").filter((l) => /^takeover-stream: \d+% /.test(l)),
    }
  } finally {
    get.kill("SIGKILL")
    rmSync(output, { force: true })
  }
}

/**
 * A planned hand-off under load: `downloads` (default 3) and a bundle (one member paused: it is
 * live whatever the machine's speed) running on `servers[0]` at once, then `takeover-stream
 * handoff` from it to `servers[1]`. Every transfer moves once, to `servers[1]`, at a byte
 * past the start; every SHA-256 matches; the first server stays up. With `otlp`, the first
 * download exports its spans there (flushed as it exits).
 */
export const handoffUnderLoad = async (
  cluster: Cluster,
  options: { readonly downloads?: number; readonly otlp?: string } = {},
): Promise<void> => {
  const { downloads = 3, otlp } = options
  const [from, to] = [cluster.servers[0]!, cluster.servers[1]!]
  // The hand-off command is started and ready before the downloads begin, so they need only
  // outlast its one put and the server's watch of it. Sized for a hand-off at 2% of each:
  // the session layer moves well under 100 MiB/s here, shared by all (96 MiB in all).
  const size = Math.ceil((96 * 1024 * 1024) / downloads / 4096) * 4096
  const names = Array.from({ length: downloads }, (_, i) => `h${i}.bin`)
  const sha = Object.fromEntries(names.map((name) => [name, cluster.object(name, size)]))
  const bundleSha = { a: cluster.object("ha.bin", size / 4), p: cluster.object("hp.bin", 1 << 20) }
  const out = join(cluster.dir, `handoff-${randomBytes(4).toString("hex")}`)
  mkdirSync(out)
  const sizeOf = (name: string) =>
    existsSync(join(out, name)) ? statSync(join(out, name)).size : 0
  const auth = ["--service", cluster.service, "--key-file", cluster.keyFile]
  const command = await readyHandoff(cluster, from.id, to.id)
  const gets = names.map(
    (name, i) =>
      new JsonLinesProcess.JsonLinesProcess(mainPath, [
        "get",
        name,
        "-o",
        join(out, name),
        ...auth,
        "--sha256",
        sha[name]!,
        ...(i === 0 && otlp !== undefined ? ["--otlp", otlp] : []),
      ]),
  )
  const bundle = new JsonLinesProcess.JsonLinesProcess(mainPath, [
    "bundle",
    "ha.bin",
    "hp.bin",
    "--paused",
    "hp.bin",
    "-o",
    join(out, "bundle"),
    ...auth,
  ])
  mkdirSync(join(out, "bundle"))
  const all = [...gets, bundle]
  try {
    const transfers = () => bundle.lines.filter((l) => l.t === "transfer").length
    for (
      let i = 0;
      i < 6_000 &&
      (names.some((name) => sizeOf(name) < size / 50) || transfers() < 2) &&
      !all.some((p) => p.exited);
      i++
    )
      await sleep(10)
    const context = `sizes at the hand-off: ${JSON.stringify(names.map(sizeOf))}`
    expect(
      all.filter((p) => p.exited).map((p) => p.stderr),
      context,
    ).toEqual([])
    await command.go()
    // A download that finished before the put reached its server was not live when it ran:
    // every other one must have moved.
    const finishedFirst = gets.map((get) => get.lines.some((l) => l.t === "done"))
    const offsets: Array<number> = []
    for (const [i, get] of gets.entries()) {
      const done = await get.line("done", 150_000)
      const resumed = get.lines.filter((l) => l.t === "resumed")
      expect(done.sha256, `${names[i]}: ${context}`).toBe(sha[names[i]!])
      expect(done.match).toBe(true)
      if (finishedFirst[i] === true && resumed.length === 0) continue
      expect(resumed.length, `${names[i]}: ${JSON.stringify(resumed)}`).toBe(1)
      expect(resumed[0]!.server).toBe(to.address)
      expect(Number(resumed[0]!.offset)).toBeGreaterThan(0)
      offsets.push(Number(resumed[0]!.offset))
    }
    expect(offsets.length, "downloads moved by the hand-off").toBeGreaterThan(0)
    console.log(`hand-off under load: the downloads moved at ${offsets.join(", ")} of ${size}`)
    // The bundle moved as a whole, once, its paused member still paused; then resumed.
    await bundle.line("resumed", 30_000)
    const channel = String(
      bundle.lines.find((l) => l.t === "transfer" && l.name === "hp.bin")!.channel,
    )
    expect(sizeOf("bundle/hp.bin")).toBe(0)
    bundle.child.stdin!.write(`resume ${channel}\n`)
    await bundle.line("finished", 60_000)
    const resumed = bundle.lines.filter((l) => l.t === "resumed")
    expect(resumed.length, JSON.stringify(resumed)).toBe(1)
    expect(resumed[0]!.server).toBe(to.address)
    for (const [name, hash] of [
      ["ha.bin", bundleSha.a],
      ["hp.bin", bundleSha.p],
    ] as const)
      expect(bundle.lines.find((l) => l.t === "done" && l.name === name)?.sha256, name).toBe(hash)
    expect(from.process.exited).toBe(false)
    // The downloads exit on their own (their exporters flush on the way out), with 0.
    await Promise.all(gets.map((get) => get.exit()))
    expect(gets.map((get) => get.child.exitCode)).toEqual(gets.map(() => 0))
    // --sha256 other than the object's: the download says so and exits with 1.
    const wrong = new JsonLinesProcess.JsonLinesProcess(mainPath, [
      "get",
      "hp.bin",
      "-o",
      join(out, "wrong"),
      ...auth,
      "--sha256",
      "0".repeat(64),
    ])
    all.push(wrong)
    expect(await wrong.line("done", 60_000)).toMatchObject({ sha256: bundleSha.p, match: false })
    await wrong.exit()
    expect(wrong.child.exitCode).toBe(1)
  } finally {
    await command.stop()
    for (const p of all) p.kill("SIGKILL")
    await Promise.all(all.map((p) => p.exit()))
    rmSync(out, { recursive: true, force: true })
  }
}
