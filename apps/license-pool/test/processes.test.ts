/**
 * The programs as real processes on loopback: 3 `license-server`s and 50 clients (five
 * `license-client --clients 10` processes, each client with its own socket and name) on a
 * 40-seat license, then 30 rounds, each one fault from a rotation:
 * - SIGKILL the leader, restarted with a newer license file (it spreads to the pool);
 * - SIGSTOP the leader for longer than the election time-out, then SIGCONT it: once deposed
 *   it grants nothing in its old term and rejoins as a follower;
 * - SIGKILL the busiest follower, restarted with a newer license file.
 * A round goes on events, not sleeps: a leader of a newer term (after a leader's fault), every
 * client of the victim re-attached elsewhere (then a killed victim is restarted), and the pool
 * settled (three servers answering, one leader, the newest license everywhere). Throughout, a
 * sampler asks each server its status (in this process, one datagram each) and checks the
 * leader's count of seats in use, and the clients holding a seat by their own events, against
 * the license. No client ever loses its seat. After the first leader's SIGKILL, a survivor's
 * `/metrics` shows the failover histogram move. The key, the vendor keys, the first license
 * and a last status come from `license-admin`.
 *
 * Timings derive from one heartbeat interval chosen generously for a loaded machine (400 ms;
 * `UNDERSTUDY_LICENSE_POOL_HEARTBEAT_MS` to change it): the servers' follower time-out is
 * 5 intervals and their leader lease 3.5, so a process starved for a second neither loses
 * its lease nor starts an election; a seat's lease is the servers' default, 30 intervals.
 * 250 ms (93 s instead of 125 s, quiet) lost seats in 3 of 4 runs at load 14-60: leaders
 * stepped down for want of a majority's acks within 875 ms (24 no-majority, 3 newer-term in 8
 * rounds) and seats expired unrenewed; 400 ms held at load 28-71.
 */

import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { promisify } from "node:util"
import { Admin, type Message, Signing } from "@understudy/heartbeat-pool"
import { JsonLinesProcess as Jl, Ports } from "@understudy/testkit"
import { ClusterKey, NodeDatagram } from "@understudy/transport"
import { Effect, type Redacted } from "effect"
import { afterAll, describe, expect, it } from "vitest"

const { JsonLinesProcess } = Jl
type JsonLinesProcess = Jl.JsonLinesProcess

const heartbeatMs = Number(process.env.UNDERSTUDY_LICENSE_POOL_HEARTBEAT_MS ?? 400)
const rounds = 30
const clientProcesses = 5
const clientsPerProcess = 10
const clientCount = clientProcesses * clientsPerProcess
const baseSeats = 40
/** Each newer license file adds a seat every 5 sequence numbers (never fewer than before). */
const seatsOf = (sequence: number) => baseSeats + Math.floor((sequence - 1) / 5)
const ids = ["s1", "s2", "s3"] as const

const app = join(import.meta.dirname, "..")
const script = (name: string) => join(app, "src", `${name}.ts`)
const dir = mkdtempSync(join(tmpdir(), "license-pool-"))
const key = join(dir, "pool.key")
const run = promisify(execFile)
const admin = async (...args: Array<string>): Promise<string> =>
  (await run(process.execPath, [script("admin"), ...args], { encoding: "utf8", timeout: 60_000 }))
    .stdout

const servers = new Map<string, JsonLinesProcess>()
/** Every server process started (a restarted server is a new one), in order. */
const serverRuns: Array<{ readonly id: string; readonly proc: JsonLinesProcess }> = []
const clientProcs: Array<JsonLinesProcess> = []
let pool = ""
let targets: Array<Admin.Target> = []
const metricsPort = new Map<string, number>()
let secret: Redacted.Redacted<Uint8Array>
let vendorPrivate = ""
let sampling = true

afterAll(() => {
  sampling = false
  Jl.killAll()
  rmSync(dir, { recursive: true, force: true })
})

const licenseFile = (sequence: number): string => {
  const path = join(dir, `license${sequence}.json`)
  const license = Signing.signLicense(vendorPrivate, {
    product: "cad",
    seats: seatsOf(sequence),
    expiresAtMs: Date.parse("2100-01-01"),
    sequence,
  })
  writeFileSync(path, `${JSON.stringify(license)}\n`)
  return path
}

const startServer = (id: string, license: string) => {
  const proc = new JsonLinesProcess(script("server"), [
    ...["--id", id, "--pool", pool, "--vendor-key", join(dir, "vendor.pub")],
    ...["--state-dir", join(dir, "state"), "--license", license],
    ...["--key-file", key, "--heartbeat", `${heartbeatMs}ms`, "--lease", `${30 * heartbeatMs}ms`],
    ...["--metrics", `127.0.0.1:${metricsPort.get(id)}`, "--json"],
  ])
  servers.set(id, proc)
  serverRuns.push({ id, proc })
}

/**
 * What each server process did about leadership, counted (its event lines have no time): why
 * leaders stepped down (`no-majority`: it heard too few followers for a leader lease, as when
 * processes starve; `newer-term`: another stood), how often it stood, checked and saw
 * followers go down.
 */
const leadershipEvents = () =>
  serverRuns.map(({ id, proc }, run) => {
    const counts = new Map<string, number>()
    for (const line of proc.lines) {
      if (line.type !== "event") continue
      const tag = String(line._tag)
      if (
        !["BecameLeader", "SteppedDown", "ElectionStarted", "CheckSent", "FollowerDown"].includes(
          tag,
        )
      )
        continue
      const what = line.reason === undefined ? tag : `${tag}(${String(line.reason)})`
      counts.set(what, (counts.get(what) ?? 0) + 1)
    }
    return `  ${id} (process ${run + 1}): ${[...counts].map(([what, count]) => `${what} ${count}`).join(", ") || "none"}`
  })

type Status = Extract<Message.ServerReply, { _tag: "StatusReply" }>
const statusOf = async (target: Admin.Target): Promise<Status | undefined> => {
  const replies = await Effect.runPromise(
    Admin.ask([target], { _tag: "Status" }, secret, 600).pipe(
      Effect.provide(NodeDatagram.layer),
      Effect.orElseSucceed(() => new Map<string, Message.ServerReply>()),
    ),
  )
  const reply = replies.get(target.id)
  return reply?._tag === "StatusReply" ? reply : undefined
}

/** Each client's seat events, in order, from every client process's lines. */
const seatEvents = () => {
  const byClient = new Map<string, Array<Record<string, unknown>>>()
  for (const proc of clientProcs)
    for (const line of proc.lines) {
      if (!["Granted", "Reattached", "Lost", "Released", "Denied"].includes(String(line.type)))
        continue
      const client = String(line.client)
      byClient.set(client, [...(byClient.get(client) ?? []), line])
    }
  return byClient
}
/** Per client holding a seat: the server it holds it at, and how often it re-attached. */
const holders = () => {
  const held = new Map<string, { readonly server: string; readonly reattached: number }>()
  for (const [client, events] of seatEvents()) {
    const last = events.filter((event) => event.type !== "Denied").at(-1)
    if (last?.type === "Granted" || last?.type === "Reattached")
      held.set(client, {
        server: String(last.server),
        reattached: events.filter((event) => event.type === "Reattached").length,
      })
  }
  return held
}

/**
 * The latest status of each server, asked one server at a time so that a dead or stopped one
 * delays no other; every leader's answer is a sample checked against the license.
 */
const violations: Array<string> = []
let samples = 0
const latest = new Map<string, { readonly reply: Status; readonly atMs: number }>()
/**
 * Each server's role and term as sampled, a line whenever they change (wall-clock ms, as the
 * events' `atMs`): a loss is then read against the leaders of its lease (an `expired` loss
 * is honest only if no leader held authority for about a lease).
 */
const roleChanges: Array<{ readonly atMs: number; readonly line: string }> = []
const lastRole = new Map<string, string>()
const noteRole = (id: string, now: string) => {
  if (lastRole.get(id) === now) return
  lastRole.set(id, now)
  roleChanges.push({ atMs: Date.now(), line: `${id} ${now}` })
}
const samplers = () =>
  targets.map(async (target) => {
    while (sampling) {
      const reply = await statusOf(target)
      noteRole(
        target.id,
        reply === undefined
          ? "no answer"
          : `${reply.role} term ${reply.term} leader ${String(reply.leader)}`,
      )
      if (reply === undefined) latest.delete(target.id)
      else {
        latest.set(target.id, { reply, atMs: performance.now() })
        if (reply.role === "leader" && reply.poolSeatsInUse !== null) {
          samples++
          const holding = holders().size
          if (reply.poolSeatsInUse > reply.capacity)
            violations.push(`${reply.server}: ${reply.poolSeatsInUse} > ${reply.capacity}`)
          if (holding > reply.capacity)
            violations.push(`${holding} clients hold a seat, license ${reply.capacity}`)
        }
      }
      await sleep(100)
    }
  })

const startedAt = performance.now()
const replies = () => [...latest.values()].map((entry) => entry.reply)
const waitFor = async (what: string, check: () => boolean, timeoutMs = 90_000) => {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (check()) return
    await sleep(50)
  }
  throw new Error(
    `${Math.round((performance.now() - startedAt) / 1000)} s: not within ${timeoutMs} ms: ${what}; ${holders().size} holding; status ${JSON.stringify(replies())}`,
  )
}
/**
 * The leader when all three servers answered after `sinceMs`, agree on it and its term, and
 * have `sequence`.
 */
const settled = (sequence: number, sinceMs: number): Status | undefined => {
  const fresh = [...latest.values()].filter((entry) => entry.atMs > sinceMs)
  const leader = fresh.find((entry) => entry.reply.role === "leader")?.reply
  return fresh.length === 3 &&
    leader !== undefined &&
    fresh.every(
      ({ reply }) =>
        reply.term === leader.term && reply.leader === leader.server && reply.sequence === sequence,
    )
    ? leader
    : undefined
}

const failovers = async (id: string): Promise<number> => {
  const text = await fetch(`http://127.0.0.1:${metricsPort.get(id)}/metrics`).then(
    (response) => response.text(),
    () => "",
  )
  return text
    .split("\n")
    .filter((line) => line.startsWith("understudy_pool_failover_ms_count"))
    .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0)
}

describe("license-pool processes", () => {
  it(`keeps every seat through ${rounds} rounds of SIGKILLed leaders and followers, SIGSTOPped leaders, and newer license files`, async () => {
    await Promise.all([admin("keygen", "--key-file", key), admin("vendor-keygen", "--out", dir)])
    await admin(
      ...["sign-license", "--vendor-private", join(dir, "vendor.key"), "--product", "cad"],
      ...["--seats", String(seatsOf(1)), "--sequence", "1", "--out", join(dir, "license1.json")],
    )
    vendorPrivate = readFileSync(join(dir, "vendor.key"), "utf8")
    secret = await Effect.runPromise(ClusterKey.readFile(key))
    const ports = await Ports.freeUdpPorts(6)
    pool = ids.map((id, index) => `${id}=127.0.0.1:${ports[index]}:${ports[index + 3]}`).join(",")
    targets = ids.map((id, index) => ({
      id,
      address: { _tag: "Udp", host: "127.0.0.1", port: ports[index + 3]! },
    }))
    for (const id of ids) metricsPort.set(id, await Ports.freeTcpPort())
    for (const id of ids) startServer(id, join(dir, "license1.json"))
    const sampled = samplers()
    await waitFor("the pool settled", () => settled(1, startedAt) !== undefined)
    // The clients boot while the new leader settles (it grants no new seat for a lease).
    for (let index = 0; index < clientProcesses; index++) {
      clientProcs.push(
        new JsonLinesProcess(script("client"), [
          ...["--pool", pool, "--product", "cad", "--hold", "1800s", "--id", `p${index}`],
          ...["--clients", String(clientsPerProcess), "--first", String(index)],
          ...["--heartbeat", `${heartbeatMs}ms`, "--key-file", key, "--json"],
        ]),
      )
    }
    await waitFor(`${baseSeats} clients hold a seat`, () => holders().size === baseSeats)
    await waitFor(`${clientCount - baseSeats} clients refused for capacity`, () => {
      const refused = [...seatEvents().values()].filter((events) =>
        events.some((event) => event.type === "Denied" && event.reason === "capacity"),
      )
      return refused.length >= clientCount - baseSeats
    })

    let reattachments = 0
    let sequence = 1
    let roundEndedAt = performance.now()
    /** Wall-clock time (the events' `atMs`) of each round's fault. */
    const roundStarts: Array<number> = []
    for (let round = 0; round < rounds; round++) {
      await waitFor(
        `round ${round}: the pool settled`,
        () => settled(sequence, roundEndedAt) !== undefined,
      )
      const leader = settled(sequence, roundEndedAt)!
      const fault = (["kill-leader", "stop-leader", "kill-follower"] as const)[round % 3]!
      const before = holders()
      // A follower's fault matters most where most clients are.
      const atServer = (id: string) =>
        [...before.values()].filter((held) => held.server === id).length
      const victim =
        fault === "kill-follower"
          ? ids.filter((id) => id !== leader.server).sort((a, b) => atServer(b) - atServer(a))[0]!
          : leader.server
      const moved = [...before].flatMap(([client, held]) =>
        held.server === victim ? [client] : [],
      )
      const failoversBefore =
        round === 0 ? await Promise.all(ids.filter((id) => id !== victim).map(failovers)) : []
      const proc = servers.get(victim)!

      const faultAt = performance.now()
      roundStarts.push(Date.now())
      const phases: Array<string> = []
      const phase = (what: string) =>
        phases.push(`${what} ${((performance.now() - faultAt) / 1000).toFixed(1)} s`)
      if (fault === "stop-leader") proc.kill("SIGSTOP")
      else {
        proc.kill("SIGKILL")
        await proc.exit()
      }
      const reattached = () => {
        const now = holders()
        return moved.every(
          (client) => (now.get(client)?.reattached ?? 0) > before.get(client)!.reattached,
        )
      }
      const newLeader = () =>
        replies().some(
          (reply) =>
            reply.role === "leader" &&
            reply.term > leader.term &&
            (fault !== "stop-leader" || reply.server !== victim),
        )
      // The victim's clients re-attach at the next live server at once, election or not.
      await waitFor(
        `round ${round} (${fault} ${victim}): its ${moved.length} clients re-attached`,
        reattached,
      )
      phase("re-attached")
      // Restarted once its clients are elsewhere (sooner, some would just hold on there), while
      // the others elect a leader.
      if (fault !== "stop-leader") {
        sequence++
        startServer(victim, licenseFile(sequence))
      }
      if (fault !== "kill-follower") {
        await waitFor(`round ${round}: a leader of a term after ${leader.term}`, newLeader)
        phase("new leader")
      }
      reattachments += moved.length
      if (round === 0) {
        // The survivors' failover histogram moved (the check message, then a new leader).
        const survivors = ids.filter((id) => id !== victim)
        const total = async () =>
          (await Promise.all(survivors.map(failovers))).reduce((a, b) => a + b, 0)
        const was = failoversBefore.reduce((a, b) => a + b, 0)
        let now = await total()
        for (let tries = 0; now <= was && tries < 100; tries++) {
          await sleep(200)
          now = await total()
        }
        expect(now).toBeGreaterThan(was)
      }
      if (fault === "stop-leader") {
        const linesAtContinue = proc.lines.length
        const continuedAt = performance.now()
        // A grant stepped just before the SIGSTOP may be printed after the SIGCONT: what counts
        // is the time of its step (the same clock as ours).
        const continuedAtWallMs = Date.now()
        proc.kill("SIGCONT")
        await waitFor(`round ${round}: ${victim} back as a follower`, () => {
          const entry = latest.get(victim)
          return (
            entry !== undefined &&
            entry.atMs > continuedAt &&
            entry.reply.role === "follower" &&
            entry.reply.term > leader.term
          )
        })
        phase("back as follower")
        // Deposed: nothing granted in its old term once it continued.
        expect(
          proc.lines
            .slice(linesAtContinue)
            .filter(
              (line) =>
                line._tag === "Allocated" &&
                line.term === leader.term &&
                !(Number(line.atMs) < continuedAtWallMs),
            ),
        ).toEqual([])
      }
      roundEndedAt = performance.now()
      console.log(
        `${Math.round((roundEndedAt - startedAt) / 1000)} s: round ${round} ${fault} ${victim}: ${moved.length} moved, ${holders().size} holding, ${samples} samples (${phases.join(", ")})`,
      )
    }
    await waitFor(
      "the pool settled at the end",
      () => settled(sequence, roundEndedAt) !== undefined,
    )
    sampling = false
    await Promise.all(sampled)

    const status = JSON.parse(
      await admin("status", "--pool", pool, "--key-file", key, "--json"),
    ) as {
      readonly leader: string | null
      readonly servers: ReadonlyArray<{ sequence: number }>
    }
    expect(status.leader).not.toBeNull()
    expect(status.servers.map((server) => server.sequence)).toEqual([sequence, sequence, sequence])

    // Every loss with why: the client's reason (`expired`: its lease ran out; `refused`: the
    // server it asked denied it), the server and term of the seat, and the answer that ended it
    // (the `Denied` just before, with its reason, server and term), plus the event before that
    // (where the seat was last granted or re-attached), with the round it fell in.
    const roundAt = (atMs: unknown) =>
      typeof atMs === "number" ? roundStarts.filter((started) => started <= atMs).length - 1 : -1
    const brief = (event: Record<string, unknown> | undefined) =>
      event === undefined
        ? "-"
        : `${String(event.type)}${event.reason === undefined ? "" : `(${String(event.reason)})`} at ${String(event.server)} term ${String(event.term)} ${String(event.atMs)}`
    const losses = [...seatEvents()].flatMap(([client, events]) =>
      events.flatMap((event, index) => {
        if (event.type !== "Lost") return []
        const before = events.slice(0, index)
        const denial = before.at(-1)?.type === "Denied" ? before.at(-1) : undefined
        const held = before.filter((e) => e.type === "Granted" || e.type === "Reattached").at(-1)
        return [
          `${client}: round ${roundAt(event.atMs)} Lost(${String(event.reason)}) seat at ${String(event.server)} term ${String(event.term)} at ${String(event.atMs)}; answer ${brief(denial)}; held since ${brief(held)}`,
        ]
      }),
    )
    const firstLossMs = Math.min(
      ...[...seatEvents().values()]
        .flat()
        .filter((event) => event.type === "Lost")
        .map((event) => Number(event.atMs)),
    )
    if (losses.length > 0) {
      const byWhy = new Map<string, number>()
      for (const loss of losses) {
        const why = loss
          .replace(/^[^:]*: /, "")
          .replace(/ at \d+(\.\d+)?/g, "")
          .replace(/; held since.*$/, "")
        byWhy.set(why, (byWhy.get(why) ?? 0) + 1)
      }
      console.error(
        `${losses.length} seats lost, by cause:\n${[...byWhy].map(([why, count]) => `  ${count} x ${why}`).join("\n")}\nround starts (ms): ${JSON.stringify(roundStarts)}\nservers' roles from a lease before the first loss:\n${roleChanges
          .filter((change) => change.atMs >= firstLossMs - 30 * heartbeatMs - 2_000)
          .map((change) => `  ${change.atMs} ${change.line}`)
          .join(
            "\n",
          )}\nleadership events of each server process:\n${leadershipEvents().join("\n")}`,
      )
    }
    expect(losses).toEqual([])
    // Every grant, re-attachment, loss and denial names its server, term and time.
    const unnamed = [...seatEvents().values()]
      .flat()
      .filter(
        (event) =>
          event.type !== "Released" &&
          (typeof event.server !== "string" ||
            typeof event.term !== "number" ||
            typeof event.atMs !== "number"),
      )
    expect(unnamed).toEqual([])
    expect(holders().size).toBeGreaterThanOrEqual(baseSeats)
    expect(reattachments).toBeGreaterThan(0)
    expect(samples).toBeGreaterThan(rounds)
    expect(violations).toEqual([])
  }, 600_000)
})
