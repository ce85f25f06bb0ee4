/**
 * Real processes of `sctp-cluster` for the tests: spawned with this Node, read as JSON lines,
 * every one killed (and waited for) by `killAll` in `afterEach`. The nodes' command lines
 * come from `src/launch.ts`, as the showcase's do.
 */
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { Eventually, JsonLinesProcess, Ports, Usrsctp } from "@understudy/testkit"
import { ClusterKey } from "@understudy/transport"
import { Effect } from "effect"
import { mainPath, nodeArgs, type PairPorts } from "../src/launch.ts"
import type { StatusReport } from "../src/report.ts"
import * as Capture from "./support/capture.ts"

export { nodeArgs } from "../src/launch.ts"

const started = new Set<JsonLinesProcess.JsonLinesProcess>()

/** `node src/main.ts ...args`, tracked for {@link killAll}. */
export const start = (args: ReadonlyArray<string>): JsonLinesProcess.JsonLinesProcess => {
  const app = new JsonLinesProcess.JsonLinesProcess(mainPath, args)
  started.add(app)
  return app
}

/** Runs a short command to its end (at most `timeoutMs`): exit code, stdout, stderr. */
export const run = (
  args: ReadonlyArray<string>,
  timeoutMs = 20_000,
): Promise<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, [mainPath, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      timeout: timeoutMs,
      killSignal: "SIGKILL",
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    child.on("close", (code) => resolve({ code, stdout, stderr }))
  })

/**
 * A node's `GET /status` (a TCP status address); undefined while it does not answer. Polled
 * over HTTP from this process: a `sctp-cluster status` process per poll took seconds to
 * start on a loaded machine (the command itself is run by node.test.ts and failover.test.ts).
 */
export const statusOf = async (address: string): Promise<StatusReport | undefined> => {
  try {
    const response = await fetch(`http://${address.replace("tcp://", "")}/status`, {
      signal: AbortSignal.timeout(5_000),
    })
    return response.ok ? ((await response.json()) as StatusReport) : undefined
  } catch {
    return undefined
  }
}

/**
 * SIGKILLs every app process, usrsctp program and capture still running and waits until they
 * are gone.
 */
export const killAll = async (): Promise<void> => {
  const apps = [...started]
  started.clear()
  for (const app of apps) if (!app.exited) app.kill("SIGKILL")
  await Promise.all([...apps.map((app) => app.exit()), Usrsctp.killAll(), Capture.stopAll()])
  for (const directory of keyDirectories) rmSync(directory, { recursive: true, force: true })
  keyDirectories.clear()
}

/** Directories of the key files `clusterPorts` wrote, removed by {@link killAll}. */
const keyDirectories = new Set<string>()

/** A new cluster key file (mode 0600) in a directory of its own, removed by {@link killAll}. */
export const newKeyFile = (): string => {
  const directory = mkdtempSync(join(tmpdir(), "sctp-cluster-key-"))
  keyDirectories.add(directory)
  const path = join(directory, "cluster.key")
  Effect.runSync(ClusterKey.generateFile(path))
  return path
}

/**
 * The ports of one cluster: UDP encapsulation (free on every address), link, usrsctp's;
 * and its cluster key file.
 */
export const clusterPorts = async () => {
  // Held together, so usrsctp's encapsulation port differs from ours.
  const [udpPort, clientEncapsPort] = (await Usrsctp.freeEncapsulationPorts(2)) as [number, number]
  const linkPort = await Ports.freeTcpPort("127.0.0.3")
  return { udpPort, clientEncapsPort, link: `tcp://127.0.0.3:${linkPort}`, keyFile: newKeyFile() }
}

/** A `store` node on a free loopback port, keyed with `keyFile`; its `started` line. */
export const startStore = async (keyFile: string) =>
  (await start(["store", "--listen", "tcp://127.0.0.1:0", "--cluster-key-file", keyFile]).line(
    "started",
    30_000,
  )) as { readonly listen: string }

/**
 * Starts the secondary, then the primary, under `policy` with the flags `extra` (see
 * `nodeArgs`), and waits for both `started` lines.
 */
export const startPair = async (
  ports: PairPorts,
  policy?: ReadonlyArray<string>,
  extra: ReadonlyArray<string> = [],
): Promise<{
  readonly primary: JsonLinesProcess.JsonLinesProcess
  readonly secondary: JsonLinesProcess.JsonLinesProcess
  readonly primaryStarted: Record<string, unknown>
  readonly secondaryStarted: Record<string, unknown>
}> => {
  const secondary = start(nodeArgs("secondary", ports, extra, policy))
  const primary = start(nodeArgs("primary", ports, extra, policy))
  const primaryStarted = await primary.line("started", 20_000)
  const secondaryStarted = await secondary.line("started", 20_000)
  return { primary, secondary, primaryStarted, secondaryStarted }
}

/** Waits (at most `timeoutMs`) for the node's `role` line that says its link is up. */
export const linkUp = (
  what: string,
  node: JsonLinesProcess.JsonLinesProcess,
  timeoutMs = 30_000,
): Promise<Record<string, unknown>> =>
  Eventually.promise(
    what,
    () => node.lines.find((line) => line.t === "role" && line.link === "up"),
    { within: timeoutMs },
  )

/** The numbers of the `n N` lines usrsctp's client printed (the echoes), in order. */
export const echoed = (output: string): Array<number> =>
  [...output.matchAll(/^n (\d+)$/gm)].map((match) => Number(match[1]))

/**
 * usrsctp's client connected to the loopback pair (127.0.0.2 first, SCTP port 7) with the
 * shim's timers `tune`, once its association is up and it confirmed the secondary's address;
 * `send(from, to)` writes `n from` … `n to` and waits (at most 20 s) until `to` echoes arrived.
 */
export const connectClient = async (
  ports: { readonly udpPort: number; readonly clientEncapsPort: number },
  /** usrsctp's timers (tune.so); undefined: its defaults. */
  tune: Usrsctp.ShimOptions["tune"],
  timeoutMs = 15_000,
): Promise<{
  readonly client: Usrsctp.UsrsctpProcess
  readonly send: (from: number, to: number) => Promise<void>
}> => {
  const client = await Usrsctp.startClient({
    host: "127.0.0.2",
    port: 7,
    localEncapsPort: ports.clientEncapsPort,
    remoteEncapsPort: ports.udpPort,
    ...(tune !== undefined ? { tune } : {}),
  })
  await client.waitFor(/SCTP_COMM_UP/, timeoutMs)
  await client.waitFor(/Peer address 127\.0\.0\.3 is now SCTP_ADDR_CONFIRMED/, timeoutMs)
  return { client, send: sender(client, 20_000) }
}

/**
 * A user's stream: usrsctp's client writes `n 1`, `n 2`, … 50 lines a second, up to `total`
 * (`limitTo` lowers it), from the call until `stop`; resolves once the first `firstEchoes`
 * echoes came back (at most 20 s).
 */
export const streamLines = async (
  client: Usrsctp.UsrsctpProcess,
  total: number,
  firstEchoes: number,
): Promise<{
  readonly written: () => number
  readonly total: () => number
  readonly limitTo: (count: number) => void
  readonly stop: () => void
}> => {
  let limit = total
  let written = 0
  const timer = setInterval(() => {
    if (written < limit) client.write(`n ${++written}\n`)
  }, 20)
  const stream = {
    written: () => written,
    total: () => limit,
    limitTo: (count: number) => {
      limit = Math.min(limit, count)
    },
    stop: () => clearInterval(timer),
  }
  try {
    await Eventually.promise(
      "the first echoes",
      () => (echoed(client.stdout()).length >= firstEchoes ? true : undefined),
      { within: 20_000 },
    )
  } catch (error) {
    stream.stop()
    throw error
  }
  return stream
}

/**
 * `send(from, to)` writes `n from` … `n to` to usrsctp's client, 10 ms apart, and waits (at
 * most `timeoutMs`) until `to` echoes arrived.
 */
export const sender =
  (client: Usrsctp.UsrsctpProcess, timeoutMs: number) =>
  async (from: number, to: number): Promise<void> => {
    for (let n = from; n <= to; n++) {
      client.write(`n ${n}\n`)
      await sleep(10)
    }
    await Eventually.promise(
      `echoes up to ${to}`,
      () => (echoed(client.stdout()).length >= to ? true : undefined),
      { within: timeoutMs },
    )
  }
