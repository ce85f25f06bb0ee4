/**
 * A real etcd for tests and benchmarks: one member on free loopback ports, a temporary
 * data dir, fast raft timings (so a restart elects itself in well under a second), and
 * `kill` / `restart` on the same ports and data for fault tests. Every process started
 * here is stopped by `stop` (SIGTERM, then SIGKILL), and its data dir removed.
 *
 * @since 0.1.0
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { Ports } from "@understudy/app-kit"
import { Effect, type Scope } from "effect"

export const etcdBinary = "/usr/bin/etcd"
export const notInstalledMessage =
  "etcd is not installed: run `apt-get install -y etcd-server` as root"

export interface EtcdServer {
  /** `http://127.0.0.1:<port>`, for `EtcdStore.layer({ endpoints: [endpoint] })`. */
  readonly endpoint: string
  /** SIGKILL the server; its ports and data dir stay reserved for `restart`. */
  readonly kill: () => Promise<void>
  /** Start it again on the same ports and data dir; resolves once it is healthy. */
  readonly restart: () => Promise<void>
  /** Stop it for good (SIGTERM, then SIGKILL) and remove the data dir. */
  readonly stop: () => Promise<void>
}

const healthyWithinMs = 15_000
const stopWithinMs = 3_000

const exited = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once("exit", () => resolve()))

/** Ends a child: `signal` first, SIGKILL if it has not exited within `stopWithinMs`. */
const end = async (child: ChildProcess, signal: NodeJS.Signals): Promise<void> => {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill(signal)
  const done = exited(child)
  const inTime = await Promise.race([done.then(() => true), sleep(stopWithinMs).then(() => false)])
  if (!inTime) {
    child.kill("SIGKILL")
    await done
  }
}

/** Starts one etcd member and waits (bounded) until `/health` says it is healthy. */
export const startEtcd = async (): Promise<EtcdServer> => {
  if (!existsSync(etcdBinary)) throw new Error(notInstalledMessage)
  const clientPort = await Ports.freeTcpPort()
  const peerPort = await Ports.freeTcpPort()
  const dataDir = await mkdtemp(join(tmpdir(), "understudy-etcd-"))
  const clientUrl = `http://127.0.0.1:${clientPort}`
  const peerUrl = `http://127.0.0.1:${peerPort}`
  const args = [
    "--name=understudy",
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=understudy=${peerUrl}`,
    "--initial-cluster-state=new",
    "--heartbeat-interval=10",
    "--election-timeout=100",
    "--logger=zap",
    "--log-level=error",
  ]
  let child: ChildProcess | undefined
  let stderrTail = ""

  const launch = async () => {
    const spawned = spawn(etcdBinary, args, { stdio: ["ignore", "ignore", "pipe"] })
    child = spawned
    spawned.stderr?.on("data", (chunk: Buffer) => {
      stderrTail = (stderrTail + chunk.toString("utf8")).slice(-4_000)
    })
    const deadline = performance.now() + healthyWithinMs
    while (performance.now() < deadline) {
      if (spawned.exitCode !== null || spawned.signalCode !== null) {
        throw new Error(
          `etcd exited during start-up (${spawned.exitCode ?? spawned.signalCode}): ${stderrTail}`,
        )
      }
      try {
        const response = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(1_000) })
        const body = (await response.json()) as { health?: string }
        if (body.health === "true") return
      } catch {
        // Not listening yet: try again below.
      }
      await sleep(50)
    }
    await end(spawned, "SIGKILL")
    throw new Error(`etcd was not healthy within ${healthyWithinMs} ms: ${stderrTail}`)
  }

  try {
    await launch()
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true })
    throw error
  }

  return {
    endpoint: clientUrl,
    kill: async () => {
      if (child !== undefined) await end(child, "SIGKILL")
    },
    restart: async () => {
      if (child !== undefined) await end(child, "SIGKILL")
      await launch()
    },
    stop: async () => {
      if (child !== undefined) await end(child, "SIGTERM")
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}

/** `startEtcd` as a scoped Effect: the server is stopped when the scope closes. */
export const etcdServer: Effect.Effect<EtcdServer, Error, Scope.Scope> = Effect.acquireRelease(
  Effect.tryPromise({
    try: startEtcd,
    catch: (error) => (error instanceof Error ? error : new Error(String(error))),
  }),
  (server) => Effect.promise(server.stop),
)

/**
 * For vitest files: starts etcd in `beforeAll`, stops it in `afterAll`, and returns a
 * getter for the running server (valid inside tests).
 */
export const useEtcdServer = (hooks: {
  readonly beforeAll: (fn: () => Promise<void>, timeoutMs?: number) => void
  readonly afterAll: (fn: () => Promise<void>, timeoutMs?: number) => void
}): (() => EtcdServer) => {
  let server: EtcdServer | undefined
  hooks.beforeAll(async () => {
    server = await startEtcd()
  }, healthyWithinMs + 5_000)
  hooks.afterAll(async () => {
    await server?.stop()
  }, stopWithinMs * 2)
  return () => {
    if (server === undefined) throw new Error("etcd server is not running (beforeAll failed?)")
    return server
  }
}
