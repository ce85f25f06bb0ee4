/**
 * One etcd member (Debian's `etcd-server`, installed by scripts/ensure-system-deps.sh) on free
 * loopback ports with a temporary data dir, for the deployment example. `stop` ends it
 * (SIGTERM, then SIGKILL) and removes the data dir.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { mkdtemp, rm } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

const binary = "/usr/bin/etcd"

export const freeTcpPort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((resolve) => child.once("exit", () => resolve()))

export interface Etcd {
  readonly endpoint: string
  readonly stop: () => Promise<void>
}

/** Starts etcd and resolves once `/health` says so (within 20 s, else it is stopped and this rejects). */
export const startEtcd = async (): Promise<Etcd> => {
  if (!existsSync(binary)) {
    throw new Error("etcd is missing: bash scripts/ensure-system-deps.sh etcd-server")
  }
  const [clientPort, peerPort] = [await freeTcpPort(), await freeTcpPort()]
  const dataDir = await mkdtemp(join(tmpdir(), "understudy-docs-etcd-"))
  const client = `http://127.0.0.1:${clientPort}`
  const peer = `http://127.0.0.1:${peerPort}`
  const child = spawn(
    binary,
    [
      "--name=docs",
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=docs=${peer}`,
      "--initial-cluster-state=new",
      "--heartbeat-interval=10",
      "--election-timeout=100",
      "--log-level=error",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  )
  let stderr = ""
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString("utf8")).slice(-2_000)
  })
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM")
      const inTime = await Promise.race([
        exited(child).then(() => true),
        sleep(3_000).then(() => false),
      ])
      if (!inTime) {
        child.kill("SIGKILL")
        await exited(child)
      }
    }
    await rm(dataDir, { recursive: true, force: true })
  }
  const deadline = performance.now() + 20_000
  while (performance.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop()
      throw new Error(`etcd exited during start-up: ${stderr}`)
    }
    try {
      const response = await fetch(`${client}/health`, { signal: AbortSignal.timeout(1_000) })
      if (((await response.json()) as { health?: string }).health === "true") {
        return { endpoint: client, stop }
      }
    } catch {
      // Not listening yet.
    }
    await sleep(50)
  }
  await stop()
  throw new Error(`etcd was not healthy within 20 s: ${stderr}`)
}
