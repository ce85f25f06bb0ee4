/**
 * The three programs as real processes on loopback: 3 servers and 20 clients on a 15-seat
 * license. One round each of: SIGKILL the leader, SIGKILL a follower, SIGSTOP the leader for
 * longer than the election time-out then SIGCONT it (once deposed it must grant nothing), and
 * a restart with a newer license file that spreads to the pool. Throughout, the leader's
 * count of seats in use (sampled with `license-admin status --json`) and the number of
 * clients holding a seat by their own events never exceed the license.
 *
 * Bounded for 2 shared cores: 20 client processes, not 50, and one round of each fault, not
 * 30 (each round costs an election and a lease); the seeded simulation covers the many.
 */
import { execFile, execFileSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { JsonLinesProcess as Jl, Ports } from "@understudy/testkit"

const { JsonLinesProcess } = Jl
type JsonLinesProcess = Jl.JsonLinesProcess

import { afterAll, describe, expect, it } from "vitest"

const app = join(import.meta.dirname, "..")
const script = (name: string) => join(app, "src", `${name}.ts`)
const dir = mkdtempSync(join(tmpdir(), "license-pool-"))
const key = join(dir, "pool.key")
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const admin = (...args: Array<string>) =>
  execFileSync(process.execPath, [script("admin"), ...args], { encoding: "utf8", timeout: 20_000 })

const seats = 15
const clientCount = 20
let pool = ""
const servers = new Map<string, JsonLinesProcess>()
const clients: Array<JsonLinesProcess> = []

afterAll(() => {
  Jl.killAll()
  rmSync(dir, { recursive: true, force: true })
})

const startServer = (id: string, license: string) => {
  const server = new JsonLinesProcess(script("server"), [
    "--id",
    id,
    "--pool",
    pool,
    "--vendor-key",
    join(dir, "vendor.pub"),
    "--state-dir",
    join(dir, "state"),
    "--license",
    license,
    "--key-file",
    key,
    "--heartbeat",
    "200ms",
    "--lease",
    "8s",
    "--json",
  ])
  servers.set(id, server)
  return server
}

interface Status {
  readonly leader: string | null
  readonly term: number | null
  readonly servers: ReadonlyArray<Record<string, unknown>>
}
const run = promisify(execFile)
/** Asynchronous, so the children's output keeps being read meanwhile. */
const status = async (): Promise<Status> => {
  const { stdout } = await run(
    process.execPath,
    [script("admin"), "status", "--pool", pool, "--key-file", key, "--json"],
    {
      encoding: "utf8",
      timeout: 60_000,
    },
  ).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? "" }))
  return JSON.parse(stdout) as Status
}

/** The leader's seats in use and its license's seats, at every status sample. */
const samples: Array<{ readonly used: number; readonly capacity: number }> = []
const sampleSeats = async (): Promise<Status> => {
  const now = await status()
  for (const server of now.servers) {
    if (server.role === "leader" && typeof server.poolSeatsInUse === "number") {
      samples.push({ used: server.poolSeatsInUse, capacity: Number(server.capacity) })
    }
  }
  return now
}

/** Clients holding a seat, by their last event. */
const holding = (): number =>
  clients.filter((client) => {
    const events = client.lines.filter((line: Record<string, unknown>) =>
      ["Granted", "Reattached", "Lost", "Released"].includes(String(line.type)),
    )
    const last = events.at(-1)
    return last !== undefined && (last.type === "Granted" || last.type === "Reattached")
  }).length

const waitFor = async (
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
) => {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (await check()) return
    await sleep(200)
  }
  throw new Error(`not within ${timeoutMs} ms: ${what}; status ${JSON.stringify(await status())}`)
}

const leaderNow = async (): Promise<string> => {
  let leader: string | null = null
  await waitFor(
    "a leader",
    async () => {
      leader = (await sampleSeats()).leader
      return leader !== null
    },
    40_000,
  )
  return leader!
}

describe("license-pool processes", () => {
  it("keeps every seat through SIGKILL of the leader and a follower, a SIGSTOPped leader, and a newer license", async () => {
    admin("keygen", "--key-file", key)
    admin("vendor-keygen", "--out", dir)
    for (const [sequence, count] of [
      [1, seats],
      [2, seats + 1],
    ] as const) {
      admin(
        "sign-license",
        "--vendor-private",
        join(dir, "vendor.key"),
        "--product",
        "cad",
        "--seats",
        String(count),
        "--sequence",
        String(sequence),
        "--out",
        join(dir, `license${sequence}.json`),
      )
    }
    const ports = await Ports.freeUdpPorts(6)
    pool = ["s1", "s2", "s3"]
      .map((id, index) => `${id}=127.0.0.1:${ports[index]}:${ports[index + 3]}`)
      .join(",")
    for (const id of ["s1", "s2", "s3"]) startServer(id, join(dir, "license1.json"))
    let leader = await leaderNow()

    for (let index = 0; index < clientCount; index++) {
      clients.push(
        new JsonLinesProcess(script("client"), [
          "--pool",
          pool,
          "--product",
          "cad",
          "--hold",
          "120s",
          "--id",
          `c${index}`,
          "--first",
          String(index),
          "--heartbeat",
          "200ms",
          "--key-file",
          key,
          "--json",
        ]),
      )
    }
    await waitFor(
      `${seats} clients hold a seat`,
      async () => {
        await sampleSeats()
        return holding() === seats
      },
      60_000,
    )
    const denied = clients.filter((client) =>
      client.lines.some(
        (line: Record<string, unknown>) => line.type === "Denied" && line.reason === "capacity",
      ),
    )
    expect(denied.length).toBeGreaterThanOrEqual(clientCount - seats)

    // Round 1: SIGKILL the leader; every holder keeps or re-attaches its seat.
    const reattachedBefore = clients.map(
      (client) =>
        client.lines.filter((line: Record<string, unknown>) => line.type === "Reattached").length,
    )
    servers.get(leader)!.kill("SIGKILL")
    const killed = leader
    await waitFor(
      "a new leader",
      async () => {
        const now = await sampleSeats()
        return now.leader !== null && now.leader !== killed
      },
      40_000,
    )
    leader = await leaderNow()
    await waitFor(
      "every holder re-attached or kept its seat",
      async () => {
        await sampleSeats()
        return holding() === seats
      },
      60_000,
    )
    const reattached = clients.filter(
      (client, index) =>
        client.lines.filter((line: Record<string, unknown>) => line.type === "Reattached").length >
        reattachedBefore[index]!,
    )
    expect(reattached.length).toBeGreaterThan(0)
    expect(
      clients.filter((client) =>
        client.lines.some((line: Record<string, unknown>) => line.type === "Lost"),
      ),
    ).toEqual([])

    // Round 2: SIGKILL a follower.
    const follower = ["s1", "s2", "s3"].find((id) => id !== leader && id !== killed)!
    servers.get(follower)!.kill("SIGKILL")
    // Bring the first one back with the newer license (sequence 2): it spreads to the pool.
    startServer(killed, join(dir, "license2.json"))
    await waitFor(
      "every holder still holds",
      async () => {
        await sampleSeats()
        return holding() === seats
      },
      60_000,
    )
    startServer(follower, join(dir, "license1.json"))
    await waitFor(
      "license 2 everywhere",
      async () => {
        const now = await sampleSeats()
        return now.servers.every((server) => server.sequence === 2)
      },
      60_000,
    )

    // Round 3: SIGSTOP the leader past the election time-out, then SIGCONT it.
    leader = await leaderNow()
    const stopped = servers.get(leader)!
    const stoppedTerm = (await status()).term!
    stopped.kill("SIGSTOP")
    await waitFor(
      "a leader other than the stopped one",
      async () => {
        const now = await sampleSeats()
        return now.leader !== null && now.leader !== leader
      },
      40_000,
    )
    await sleep(1_000)
    const linesAtContinue = stopped.lines.length
    stopped.kill("SIGCONT")
    await waitFor(
      "every holder still holds",
      async () => {
        await sampleSeats()
        return holding() >= seats
      },
      60_000,
    )
    await sleep(1_000)
    const after = stopped.lines.slice(linesAtContinue)
    // Deposed: nothing granted in its old term once it continued.
    expect(
      after.filter(
        (line: Record<string, unknown>) => line._tag === "Allocated" && line.term === stoppedTerm,
      ),
    ).toEqual([])
    expect(
      after.some(
        (line: Record<string, unknown>) =>
          line._tag === "SteppedDown" ||
          (line._tag === "Allocated" && Number(line.term) > stoppedTerm) ||
          line._tag === "Voted",
      ),
    ).toBe(true)

    expect(samples.length).toBeGreaterThan(10)
    expect(
      samples.filter((sample) => sample.used > sample.capacity || sample.capacity > seats + 1),
    ).toEqual([])
    console.log(
      `seat samples: ${samples.length}, max ${Math.max(...samples.map((sample) => sample.used))}; clients holding ${holding()}`,
    )
  }, 240_000)
})
