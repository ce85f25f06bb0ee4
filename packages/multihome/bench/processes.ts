/**
 * Our receivers as OS processes for the bench: `bench/receiver.ts` run with the current Node
 * binary (`process.execPath`), one process for a single endpoint, two for a cluster (the
 * secondary first, then the primary, which connects its link to it). Every process started
 * here is tracked; {@link killAll} SIGKILLs them and waits for their exit, and the bench
 * calls it after every run, on errors and at exit. A receiver also exits by itself when its
 * stdin closes, i.e. when the bench process is gone however it ended.
 */

import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { JsonLinesProcess, Ports, Usrsctp } from "@understudy/testkit"
import { ClusterKey } from "@understudy/transport"
import { Effect } from "effect"
import type * as Cluster from "../src/Cluster.ts"

const receiverScript = fileURLToPath(new URL("./receiver.ts", import.meta.url))

/** How long a receiver may take to start (Node, Effect, the bind; a primary: its link). */
const readyTimeoutMs = 60_000

/** The SCTP port our receivers listen on (an SCTP port is ours alone: no OS resource). */
export const sctpPort = Usrsctp.tsctpDefaultSctpPort

/** The cluster's two node addresses (loopback aliases, as in the interop tests). */
export const clusterHosts = { primary: "127.0.0.2", secondary: "127.0.0.3" } as const

/** Wall-clock milliseconds with sub-millisecond resolution, comparable with a receiver's `atMs`. */
export const wallMs = (): number => performance.timeOrigin + performance.now()

const running = new Set<Receiver>()

/** One receiver process and its JSON lines. */
export class Receiver {
  readonly process: JsonLinesProcess.JsonLinesProcess
  readonly name: string

  constructor(name: string, args: ReadonlyArray<string>) {
    this.name = name
    this.process = new JsonLinesProcess.JsonLinesProcess(receiverScript, args)
    running.add(this)
  }

  get exited(): boolean {
    return this.process.exited
  }

  /**
   * The `index`-th line (0 based) tagged `tag`, waiting at most `timeoutMs`; rejects early
   * when the process exits or reports an error.
   */
  async line(tag: string, timeoutMs: number, index = 0): Promise<Record<string, unknown>> {
    const deadline = performance.now() + timeoutMs
    for (;;) {
      let seen = 0
      for (const line of this.process.lines) {
        if (line.t === "error")
          throw new Error(`${this.name} failed: ${String(line.message)}\n${this.process.stderr}`)
        if (line.t === tag && seen++ === index) return line
      }
      if (this.process.exited)
        throw new Error(`${this.name} exited without a "${tag}" line\n${this.process.stderr}`)
      if (performance.now() >= deadline)
        throw new Error(
          `${this.name}: no "${tag}" line within ${timeoutMs} ms\n${this.process.stderr}`,
        )
      await sleep(5)
    }
  }

  /** The first line tagged `tag` so far, if any (no waiting). */
  find(tag: string): Record<string, unknown> | undefined {
    return this.process.lines.find((line) => line.t === tag)
  }

  /** The CPU time it has used so far (ms, user + system): asked with SIGUSR2. */
  async cpuMs(): Promise<number> {
    const asked = this.process.lines.filter((line) => line.t === "cpu").length
    this.process.kill("SIGUSR2")
    const line = await this.line("cpu", readyTimeoutMs, asked)
    return numberOf(line, "ms")
  }

  /** SIGKILL, resolved once it has exited. */
  async kill(): Promise<void> {
    if (!this.process.exited) this.process.kill("SIGKILL")
    await this.process.exit()
    running.delete(this)
  }
}

/** SIGKILLs every receiver still running and waits for their exit. */
export const killAll = async (): Promise<void> => {
  await Promise.all([...running].map((receiver) => receiver.kill()))
}

/** Last resort for `process.on("exit")`, where nothing can be awaited. */
export const killAllNow = (): void => {
  JsonLinesProcess.killAll()
}

const numberOf = (line: Record<string, unknown>, field: string): number => {
  const value = line[field]
  if (typeof value !== "number")
    throw new Error(`receiver line without ${field}: ${JSON.stringify(line)}`)
  return value
}

/** Our single discard endpoint (`Endpoint.make` with a discarding handler) on `host`. */
export const startSingle = async (
  host: string,
): Promise<{
  readonly receiver: Receiver
  readonly udpPort: number
}> => {
  const receiver = new Receiver("our receiver", [
    "--mode",
    "single",
    "--host",
    host,
    "--udp-port",
    "0",
    "--sctp-port",
    String(sctpPort),
  ])
  const ready = await receiver.line("ready", readyTimeoutMs)
  return { receiver, udpPort: numberOf(ready, "udpPort") }
}

/** A two-node discard cluster (primary 127.0.0.2, secondary 127.0.0.3, same UDP port). */
export interface ClusterProcesses {
  readonly primary: Receiver
  readonly secondary: Receiver
  readonly udpPort: number
}

/**
 * Starts the secondary, then the primary; resolves once the primary's link is up.
 * `observe` adds `--observe` to both (first DATA in, SACK out, message, HEARTBEAT ACK out).
 */
export const startCluster = async (options: {
  readonly policy: string
  readonly observe: boolean
  /** The nodes' service (default discard) and takeover (`--failover`, default asconf). */
  readonly service?: "discard" | "echo"
  readonly failover?: Cluster.Failover
}): Promise<ClusterProcesses> => {
  // Both nodes bind this UDP port on their own address; usrsctp's programs bind theirs on
  // 0.0.0.0, so it must be free there too.
  const udpPort = await Usrsctp.freeEncapsulationPort()
  const linkPort = await Ports.freeTcpPort(clusterHosts.secondary)
  // The link is keyed, as by default: the bench measures the cost of the HMAC too.
  const keyDirectory = mkdtempSync(join(tmpdir(), "multihome-bench-key-"))
  const keyFile = join(keyDirectory, "cluster.key")
  Effect.runSync(ClusterKey.generateFile(keyFile))
  const args = (role: "primary" | "secondary") => [
    "--mode",
    role,
    "--host",
    clusterHosts[role],
    "--udp-port",
    String(udpPort),
    "--sctp-port",
    String(sctpPort),
    "--addresses",
    `${clusterHosts.primary},${clusterHosts.secondary}`,
    "--link-host",
    clusterHosts.secondary,
    "--link-port",
    String(linkPort),
    "--policy",
    options.policy,
    "--cluster-key-file",
    keyFile,
    ...(options.observe ? ["--observe"] : []),
    ...(options.service !== undefined ? ["--service", options.service] : []),
    ...(options.failover !== undefined ? ["--failover", options.failover] : []),
  ]
  try {
    const secondary = new Receiver("our secondary", args("secondary"))
    await secondary.line("ready", readyTimeoutMs)
    const primary = new Receiver("our primary", args("primary"))
    await primary.line("ready", readyTimeoutMs)
    return { primary, secondary, udpPort }
  } finally {
    // Both read it at start.
    rmSync(keyDirectory, { recursive: true, force: true })
  }
}
