/**
 * Starting the `server-group` app as OS processes on loopback, for the app's process tests,
 * the root workspace's and staggered-election's failover benchmark: a name server, and a group
 * of servers whose UDP ports are picked free (`Ports`) and whose HTTP ports the OS picks.
 * `program` is the app's entry (its `server-group` bin, or `src/main.ts`). Every process ends
 * with the end of its stdin (`SERVER_GROUP_EXIT_ON_STDIN_EOF`), so nothing outlives the test
 * that started it; `JsonLinesProcess.killAll()` stops whatever is left.
 *
 * @since 0.1.0
 */
import { setTimeout as sleep } from "node:timers/promises"
import { Ports, ServerGroupCommand } from "@understudy/app-kit"
import * as JsonLinesProcess from "./JsonLinesProcess.ts"

/**
 * One `server-group` process. `linesMax` bounds the output lines kept (default: the kit's).
 *
 * @since 0.1.0
 * @category processes
 */
export const spawn = (
  program: string,
  args: ReadonlyArray<string>,
  linesMax?: number,
): JsonLinesProcess.JsonLinesProcess =>
  new JsonLinesProcess.JsonLinesProcess(program, args, {
    env: { SERVER_GROUP_EXIT_ON_STDIN_EOF: "1" },
    ...(linesMax === undefined ? {} : { linesMax }),
  })

/**
 * `server-group nameserver` on a port the OS picks: its process and its `tcp://` URL.
 * `args`: `--insecure` (the default) or `--cluster-key FILE`, as the group's servers have.
 *
 * @since 0.1.0
 * @category processes
 */
export const startNameServer = async (
  program: string,
  readyTimeoutMs = 30_000,
  args: ReadonlyArray<string> = ["--insecure"],
): Promise<{ readonly proc: JsonLinesProcess.JsonLinesProcess; readonly store: string }> => {
  const proc = spawn(program, ["nameserver", "--listen", "tcp://127.0.0.1:0", ...args])
  const store = (await proc.line("ready", readyTimeoutMs)).listen as string
  return { proc, store }
}

/** A running server: its process and its HTTP base URL. @since 0.1.0 @category models */
export interface Server {
  readonly proc: JsonLinesProcess.JsonLinesProcess
  readonly http: string
}

/** A group's configuration, and its servers as (re)started by `start`. @since 0.1.0 @category models */
export interface Group {
  readonly ids: ReadonlyArray<string>
  /** The `--peers` value: the first id is the most capable (index 1). */
  readonly peers: string
  readonly servers: Map<string, Server>
  /** Starts (or restarts) one server and waits for its `ready` line. */
  readonly start: (id: string) => Promise<void>
  /** The id of a server whose status says it is a serving, ready master, polled for up to `timeoutMs`. */
  readonly servingMaster: (timeoutMs: number) => Promise<string | undefined>
}

/** What the polls read of `GET /status`. */
interface Status {
  readonly role: "master" | "backup" | "waiting"
  readonly serving: boolean
  readonly ready: boolean
}

/**
 * The group `ids` (none started yet) using the name server at `store`; `args` are added to
 * every `serve` (`--insecure` or a key, `--data-dir`, timings...). `readyTimeoutMs` is a
 * liveness bound only: on a loaded machine a start can take a while.
 *
 * @since 0.1.0
 * @category processes
 */
export const group = async (options: {
  readonly program: string
  readonly ids: ReadonlyArray<string>
  readonly store: string
  readonly args: ReadonlyArray<string>
  /** Added to one server's `serve` (e.g. its own `--metrics` port). */
  readonly argsOf?: (id: string) => ReadonlyArray<string>
  readonly readyTimeoutMs: number
  readonly linesMax?: number
}): Promise<Group> => {
  const { ids, store } = options
  const ports = await Ports.freeUdpPorts(ids.length)
  const peers = ServerGroupCommand.peers(
    ids.map((id, i) => ({ id, port: ports[i]!, cpu: 100 - i, bandwidthMbps: 100 })),
  )
  const servers = new Map<string, Server>()
  const start = async (id: string) => {
    const proc = spawn(
      options.program,
      ServerGroupCommand.serve({
        id,
        peers,
        store,
        args: [...options.args, ...(options.argsOf?.(id) ?? [])],
      }),
      options.linesMax,
    )
    const ready = await proc.line("ready", options.readyTimeoutMs)
    servers.set(id, { proc, http: ready.http as string })
  }
  const servingMaster = async (timeoutMs: number) => {
    const deadline = performance.now() + timeoutMs
    while (performance.now() < deadline) {
      for (const [id, server] of servers) {
        const status = await Ports.getJson<Status>(`${server.http}/status`)
        if (status?.role === "master" && status.serving && status.ready) return id
      }
      await sleep(50)
    }
    return undefined
  }
  return { ids, peers, servers, start, servingMaster }
}
