/**
 * The license pool: `apps/license-pool` as 23 OS processes (3 license servers, 20 license
 * clients on a 15-seat license, so 5 are denied). The leader is SIGKILLed; once its clients
 * re-attached and a new leader is elected, it is restarted (on its state from disk) and
 * rejoins as a follower; then the follower holding the most clients is SIGKILLed (2 of 3
 * servers keep a majority). Shown: the new leader and its term, how many clients re-attached
 * and where. Measured: the time from each SIGKILL until every seat is held again. Checked:
 * every client that held a seat re-attached without losing it and still holds it a whole
 * lease after the last SIGKILL (renewed, not only honoured), and seats held never exceed 15
 * at any sample.
 *
 * @since 0.1.0
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { Ports } from "@understudy/app-kit"
import { commandPath } from "../apps.ts"
import { makeGroup, monotonicMs, waitFor } from "../processes.ts"
import type { Row, Scenario, ScenarioContext } from "../Scenario.ts"

const script = (name: "server" | "client" | "admin") =>
  commandPath("@understudy/app-license-pool", `license-${name}`)

const seats = 15
const clientCount = 20
const boundMs = 60_000
const leaseMs = 8_000

type Line = Record<string, unknown>

const run = async ({ log }: ScenarioContext): Promise<ReadonlyArray<Row>> => {
  const dir = mkdtempSync(join(tmpdir(), "showcase-license-pool-"))
  const group = makeGroup()
  try {
    const key = join(dir, "pool.key")
    const admin = (...args: Array<string>) =>
      execFileSync(process.execPath, [script("admin"), ...args], {
        encoding: "utf8",
        timeout: 30_000,
      })
    admin("keygen", "--key-file", key)
    admin("vendor-keygen", "--out", dir)
    admin(
      "sign-license",
      "--vendor-private",
      join(dir, "vendor.key"),
      "--product",
      "cad",
      "--seats",
      String(seats),
      "--sequence",
      "1",
      "--out",
      join(dir, "license.json"),
    )
    const ports = await Ports.freeUdpPorts(6)
    const ids = ["s1", "s2", "s3"]
    const pool = ids
      .map((id, index) => `${id}=127.0.0.1:${ports[index]}:${ports[index + 3]}`)
      .join(",")

    const serverLines = new Map<string, Array<Line>>()
    const servers = new Map<string, ReturnType<typeof group.spawnScript>>()
    /** Starts (or restarts, on its state from disk) server `id`; its lines from now on. */
    const startServer = (id: string) => {
      const lines: Array<Line> = []
      serverLines.set(id, lines)
      servers.set(
        id,
        group.spawnScript(
          id,
          script("server"),
          [
            ...["--id", id, "--pool", pool, "--vendor-key", join(dir, "vendor.pub")],
            ...["--state-dir", join(dir, "state"), "--license", join(dir, "license.json")],
            ...["--key-file", key, "--heartbeat", "200ms", "--lease", `${leaseMs}ms`, "--json"],
          ],
          (text) => text.startsWith("{") && lines.push(JSON.parse(text) as Line),
        ),
      )
    }
    for (const id of ids) startServer(id)
    const dead = new Set<string>()
    /**
     * The live server leading the highest term above `after`, by its lines: a `BecameLeader`
     * not followed by a `SteppedDown` of that term (a leader deposed under load says so).
     */
    const leader = (after = 0): { readonly id: string; readonly term: number } | undefined => {
      let best: { id: string; term: number } | undefined
      for (const [id, lines] of serverLines) {
        if (dead.has(id)) continue
        let led: number | undefined
        for (const line of lines) {
          if (line._tag === "BecameLeader") led = Number(line.term)
          else if (line._tag === "SteppedDown" && Number(line.term) === led) led = undefined
        }
        if (led !== undefined && led > after && (best === undefined || led > best.term))
          best = { id, term: led }
      }
      return best
    }
    const first = await waitFor("a leader", () => leader(), boundMs)
    log(
      `leader ${first.id} in term ${first.term}; starting ${clientCount} clients on a ${seats}-seat license`,
    )

    const clientLines: Array<Array<Line>> = []
    for (let index = 0; index < clientCount; index++) {
      const lines: Array<Line> = []
      clientLines.push(lines)
      group.spawnScript(
        `c${index}`,
        script("client"),
        [
          "--pool",
          pool,
          "--product",
          "cad",
          "--hold",
          "300s",
          "--id",
          `c${index}`,
          "--first",
          String(index),
          "--heartbeat",
          "200ms",
          "--key-file",
          key,
          "--json",
        ],
        (text) => text.startsWith("{") && lines.push(JSON.parse(text) as Line),
      )
    }
    const lastSeatEvent = (lines: Array<Line>) =>
      lines
        .filter((line) => ["Granted", "Reattached", "Lost", "Released"].includes(String(line.type)))
        .at(-1)
    let maxHeld = 0
    const held = () => {
      const count = clientLines.filter((lines) => {
        const last = lastSeatEvent(lines)
        return last !== undefined && (last.type === "Granted" || last.type === "Reattached")
      }).length
      maxHeld = Math.max(maxHeld, count)
      return count
    }
    await waitFor(`${seats} seats held`, () => (held() === seats ? true : undefined), boundMs)
    // The others are refused for capacity (once the leader is sure of every seat).
    const deniedNow = () =>
      clientLines.filter((lines) => {
        const last = lines.filter((line) => line.type === "Denied").at(-1)
        const holding = ["Granted", "Reattached"].includes(String(lastSeatEvent(lines)?.type))
        return !holding && last?.reason === "capacity"
      }).length
    const denied = await waitFor(
      "the others denied for capacity",
      () => (deniedNow() === clientCount - seats ? deniedNow() : undefined),
      boundMs,
    ).catch(deniedNow)
    log(`${held()} clients hold a seat; ${denied} others were denied for capacity`)

    const rows: Array<Row> = []
    for (const victim of ["leader", "follower"] as const) {
      // Clients re-attach to followers before an election ends: wait for the pool's leader.
      const current = await waitFor("a leader", () => leader(), boundMs)
      const heldAt = clientLines.map((lines) => lastSeatEvent(lines)?.server)
      const at = (id: string) => heldAt.filter((server) => server === id).length
      const target =
        victim === "leader"
          ? current.id
          : ids.filter((id) => id !== current.id).sort((a, b) => at(b) - at(a))[0]!
      const moved = at(target)
      const reattachedBefore = clientLines.map(
        (lines) => lines.filter((line) => line.type === "Reattached").length,
      )
      const killedAt = monotonicMs()
      servers.get(target)!.process.kill("SIGKILL")
      dead.add(target)
      log(`SIGKILL ${victim} ${target} (${moved} clients held their seat there)`)
      // Every client of the victim re-attached elsewhere, and the seats are all held again.
      const done = await waitFor(
        "every seat held again",
        () => {
          const count = held()
          const reattached = clientLines.every(
            (lines, index) =>
              heldAt[index] !== target ||
              lines.filter((line) => line.type === "Reattached").length > reattachedBefore[index]!,
          )
          return count === seats && reattached ? monotonicMs() : undefined
        },
        boundMs,
      ).catch(() => undefined)
      // Clients re-attach before the election ends: show the leader once there is one (of a
      // newer term than the one killed).
      const now = await waitFor(
        "a leader",
        () => leader(victim === "leader" ? current.term : 0),
        boundMs,
      ).catch(() => undefined)
      log(
        `leader now ${now === undefined ? "none" : `${now.id} (term ${now.term})`}; ${held()} seats held`,
      )
      if (victim === "leader") {
        // The killed leader comes back (2 of 3 servers keep a majority through the next
        // failure): on its state from disk, as a follower whose record the leader merges.
        const seen = now === undefined ? 0 : serverLines.get(now.id)!.length
        dead.delete(target)
        startServer(target)
        const back = await waitFor(
          `${target} back as a follower`,
          () =>
            now !== undefined &&
            serverLines
              .get(now.id)!
              .slice(seen)
              .some((line) => line._tag === "RecordMerged" && line.server === target)
              ? true
              : undefined,
          boundMs,
        ).catch(() => false)
        log(`${target} restarted, ${back ? "back as a follower" : "not back in time"}`)
      } else {
        // Kept, not only honoured: a whole lease later every seat is still held (renewed).
        await sleep(leaseMs + 1_000)
        log(`a lease (${leaseMs / 1000} s) later: ${held()} seats held`)
      }
      const lost = clientLines.filter((lines) => lines.some((line) => line.type === "Lost")).length
      rows.push({
        scenario: `license-pool: SIGKILL ${victim}`,
        failoverMs: done === undefined ? undefined : Math.round(done - killedAt),
        invariant: `every client re-attached and kept its seat; seats never above ${seats}`,
        ok: done !== undefined && lost === 0 && held() === seats && maxHeld <= seats,
        detail: `${moved} clients re-attached from ${target}; max seats held ${maxHeld}; lost ${lost}`,
      })
      await sleep(500)
    }
    return rows
  } finally {
    await group.killAll()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** @since 0.1.0 */
export const scenario: Scenario = {
  name: "license-pool",
  description: `3 license servers, ${clientCount} clients on a ${seats}-seat license; SIGKILL the leader (restarted), then a follower`,
  run,
}
