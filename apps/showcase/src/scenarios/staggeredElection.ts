/**
 * Seed 003, the staggered election with active replication: `apps/server-group` as 7 OS
 * processes (a name server, 5 servers of a replicated key-value store, a load client
 * writing 100 keys a second). The master is SIGKILLed twice. Shown: which servers entered
 * waiting and the election delay each computed (with its terms), who declared master and
 * when, relative to the kill. Measured: the time from each SIGKILL until a new master is
 * registered in the name server and serving. Checked: one master after each failover, and
 * every write the load client saw acknowledged is on the final master. The group is keyed
 * (`keygen`): the name server, the servers' datagrams, their HTTP API and the load client
 * all use the one cluster key.
 *
 * @since 0.1.0
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { Ports, ServerGroupCommand } from "@understudy/app-kit"
import { apiToken, tokenHeader } from "@understudy/app-server-group/http-token"
import { ClusterKey } from "@understudy/transport"
import { Effect, Redacted } from "effect"
import { commandPath } from "../apps.ts"
import { type Child, makeGroup, waitFor } from "../processes.ts"
import type { Row, Scenario, ScenarioContext } from "../Scenario.ts"

const mainPath = commandPath("@understudy/app-server-group", "server-group")

/** @since 0.1.0 @category models */
export interface Settings {
  readonly servers: number
  readonly kills: number
  readonly rate: number
  /** Load between failovers. */
  readonly steadyMs: number
  readonly failoverBoundMs: number
  readonly startBoundMs: number
}

/** @since 0.1.0 */
export const defaultSettings: Settings = {
  servers: 5,
  kills: 2,
  rate: 100,
  steadyMs: 1_000,
  failoverBoundMs: 5_000,
  startBoundMs: 20_000,
}

interface Status {
  readonly self: string
  readonly role: string
  readonly epoch: number
  readonly master: string | null
  readonly serving: boolean
  readonly ready: boolean
}

type Line = Record<string, unknown> & { readonly t?: string; readonly _tag?: string }

interface Server {
  readonly id: string
  readonly child: Child
  readonly lines: Array<Line>
  http: string | undefined
  dead: boolean
}

const parse = (text: string): Line | undefined => {
  try {
    return JSON.parse(text) as Line
  } catch {
    return undefined
  }
}

/**
 * Runs the scenario with `settings` (the showcase uses the defaults; tests may shorten).
 *
 * @since 0.1.0
 */
export const runStaggeredElection = async (
  context: ScenarioContext,
  settings: Settings = defaultSettings,
): Promise<ReadonlyArray<Row>> => {
  const { log } = context
  // The app's processes end when our stdin pipe to them closes (this process died).
  process.env.SERVER_GROUP_EXIT_ON_STDIN_EOF = "1"
  const group = makeGroup()
  const dir = mkdtempSync(join(tmpdir(), "understudy-showcase-sg-"))
  const rows: Array<Row> = []
  const servers: Array<Server> = []
  try {
    // One key for the whole group (mode 0600, as `server-group keygen --out FILE` writes it).
    const keyFile = join(dir, "cluster.key")
    const key = await Effect.runPromise(ClusterKey.generateFile(keyFile))
    const token = apiToken(Redacted.value(key))
    const nsLines: Array<Line> = []
    group.spawnScript(
      "nameserver",
      mainPath,
      ["nameserver", "--listen", "tcp://127.0.0.1:0", "--cluster-key", keyFile],
      (text) => {
        const line = parse(text)
        if (line !== undefined) nsLines.push(line)
      },
    )
    const store = await waitFor(
      "the name server listening",
      () => nsLines.find((line) => line.t === "ready")?.listen as string | undefined,
      settings.startBoundMs,
    )
    const ids = Array.from({ length: settings.servers }, (_, i) => String(i + 1))
    const ports = await Ports.freeUdpPorts(ids.length)
    // Capacities: server 1 is the most capable (index 1), the last the least.
    const peers = ServerGroupCommand.peers(
      ids.map((id, i) => ({ id, port: ports[i]!, cpu: ids.length * 2 - i, bandwidthMbps: 1000 })),
    )
    for (const id of ids) {
      const lines: Array<Line> = []
      const server: Server = {
        id,
        lines,
        http: undefined,
        dead: false,
        child: group.spawnScript(
          `server ${id}`,
          mainPath,
          ServerGroupCommand.serve({ id, peers, store, args: ["--cluster-key", keyFile] }),
          (text) => {
            const line = parse(text)
            if (line === undefined) return
            lines.push(line)
            if (line.t === "ready") server.http = line.http as string
          },
        ),
      }
      servers.push(server)
    }
    log(
      `name server ${store} (keyed); ${ids.length} servers on UDP ports ${ports.join(", ")}, one cluster key`,
    )

    const statuses = async () =>
      (
        await Promise.all(
          servers
            .filter((s) => !s.dead && s.http !== undefined)
            .map((s) => Ports.getJson<Status>(`${s.http}/status`)),
        )
      ).filter((s): s is Status => s !== undefined)
    const settled = async (aboveEpoch: number, timeoutMs: number) => {
      const deadline = performance.now() + timeoutMs
      while (performance.now() < deadline) {
        const all = await statuses()
        const masters = all.filter((s) => s.role === "master")
        const m = masters[0]
        const alive = servers.filter((s) => !s.dead).length
        if (
          masters.length === 1 &&
          m!.serving &&
          m!.ready &&
          m!.epoch > aboveEpoch &&
          all.length === alive &&
          all.every((s) => s.master === m!.self && s.epoch === m!.epoch)
        ) {
          return m!
        }
        await sleep(10)
      }
      throw new Error(`no single serving master within ${timeoutMs} ms`)
    }

    let master = await settled(0, settings.startBoundMs)
    log(`first election: server ${master.self} is master at epoch ${master.epoch}`)
    rows.push({
      scenario: "staggered-election: first election",
      failoverMs: undefined,
      invariant: "exactly one master, registered in the name server, every server following it",
      ok: true,
      detail: `master ${master.self}, epoch ${master.epoch}`,
    })

    const record = join(dir, "acked.jsonl")
    const loadLines: Array<Line> = []
    const load = group.spawnScript(
      "load",
      mainPath,
      [
        "load",
        "--store",
        store,
        "--duration",
        "600s",
        "--rate",
        String(settings.rate),
        "--concurrency",
        "4",
        "--record",
        record,
        "--cluster-key",
        keyFile,
      ],
      (text) => {
        const line = parse(text)
        if (line !== undefined) loadLines.push(line)
      },
    )
    log(`load: ${settings.rate} writes/s to the master the name server names`)
    await sleep(settings.steadyMs)

    for (let kill = 1; kill <= settings.kills; kill++) {
      const victim = servers.find((s) => s.id === master.self)!
      const marks = new Map(servers.map((s) => [s.id, s.lines.length]))
      const killedWallMs = Date.now()
      const killedAt = performance.now()
      victim.child.process.kill("SIGKILL")
      victim.dead = true
      log(
        `SIGKILL ${kill}/${settings.kills}: master ${victim.id} (pid ${victim.child.pid}) at epoch ${master.epoch}`,
      )
      let next: Status | undefined
      let error: string | undefined
      try {
        next = await settled(master.epoch, settings.failoverBoundMs)
      } catch (e) {
        error = e instanceof Error ? e.message : String(e)
      }
      const failoverMs = next === undefined ? undefined : performance.now() - killedAt
      // What each survivor said since the kill: waiting (with its delay), declared, acknowledged.
      for (const server of servers.filter((s) => !s.dead)) {
        for (const line of server.lines.slice(marks.get(server.id))) {
          const at = `+${Math.max(0, Number(line.wallMs) - killedWallMs)} ms`
          if (line._tag === "Waiting") {
            log(`  ${at} server ${server.id} waiting ${line.delayMs} ms: ${line.explain}`)
          } else if (line._tag === "BecameMaster") {
            log(`  ${at} server ${server.id} DECLARED master, epoch ${line.epoch}`)
          } else if (line._tag === "Revoked") {
            log(
              `  ${at} server ${server.id} revoked index ${line.revokedIndex}, epoch ${line.epoch}`,
            )
          } else if (line._tag === "Registered") {
            log(`  ${at} server ${server.id} registered in the name server, epoch ${line.epoch}`)
          } else if (line._tag === "Acknowledged") {
            log(`  ${at} server ${server.id} acknowledged master ${line.master}`)
          }
        }
      }
      if (next !== undefined) {
        log(
          `  server ${next.self} is master at epoch ${next.epoch}, serving after ${failoverMs!.toFixed(1)} ms`,
        )
        master = next
      }
      rows.push({
        scenario: `staggered-election: SIGKILL master ${kill}/${settings.kills}`,
        failoverMs,
        invariant:
          "one new master at a newer epoch, registered and serving, every survivor following it",
        ok: next !== undefined && next.self !== victim.id,
        detail: error ?? `new master ${next!.self} at epoch ${next!.epoch}`,
      })
      if (next === undefined) break
      await sleep(settings.steadyMs)
    }

    load.process.kill("SIGINT")
    const summary = await waitFor(
      "the load client's summary",
      () => loadLines.find((line) => line.t === "summary"),
      20_000,
    )
    const final = await settled(0, settings.failoverBoundMs)
    const http = servers.find((s) => s.id === final.self)!.http!
    const dump = await fetch(`${http}/kv`, {
      headers: { [tokenHeader]: token },
      signal: AbortSignal.timeout(5_000),
    })
      .then((response) => response.json() as Promise<{ entries: Record<string, string> }>)
      .catch(() => undefined)
    const acked = readFileSync(record, "utf8")
      .split("\n")
      .filter((text) => text.length > 0)
      .map((text) => JSON.parse(text) as { key: string; value: string })
    const lost = acked.filter((write) => dump?.entries[write.key] !== write.value)
    log(
      `load: ${summary.acknowledged} writes acknowledged, ${summary.errors} failed, ` +
        `${(summary.unavailable as Array<unknown>).length} unavailability windows (longest ${summary.maxUnavailableMs} ms); ` +
        `${acked.length - lost.length} of ${acked.length} found on master ${final.self}`,
    )
    rows.push({
      scenario: "staggered-election: acknowledged writes",
      failoverMs: undefined,
      invariant: "every acknowledged write is on the final master (none lost)",
      ok: dump !== undefined && lost.length === 0 && acked.length > 0,
      detail: `${acked.length} acknowledged, ${lost.length} lost, longest unavailability ${summary.maxUnavailableMs} ms`,
    })
    return rows
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    const stderr = servers
      .map((s) => s.child.stderr().trim())
      .filter((text) => text.length > 0)
      .slice(0, 1)
      .join(" | ")
    rows.push({
      scenario: "staggered-election",
      failoverMs: undefined,
      invariant: "the scenario ran to its end",
      ok: false,
      detail: stderr.length > 0 ? `${message}; server stderr: ${stderr.slice(-500)}` : message,
    })
    return rows
  } finally {
    await group.killAll()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** @since 0.1.0 */
export const scenario: Scenario = {
  name: "staggered-election",
  description:
    "5 servers of a replicated key-value store under load elect a master by staggered delays; the master is SIGKILLed twice",
  run: (context) => runStaggeredElection(context),
}
