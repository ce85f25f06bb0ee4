/**
 * The election across real OS processes (test/fixtures/instance.ts): one supervisor among
 * many started at once, failover after SIGKILL, keep-alive detection after SIGSTOP, a
 * randomised schedule of kills and restarts with invariants checked at every observation,
 * and the refusals (a stranger, another program, another user, a wrong secret).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { Ports, Prng, Seeds } from "@understudy/testkit"
import { Address, NodeTransport } from "@understudy/transport"
import { Effect } from "effect"
import * as Election from "../src/Election.ts"

const fixture = fileURLToPath(new URL("./fixtures/instance.ts", import.meta.url))
const packageDirectory = fileURLToPath(new URL("..", import.meta.url))

// ---- instances as processes ------------------------------------------------------------

type Line = { readonly t: string; readonly at: number; readonly pid: number } & Record<
  string,
  // biome-ignore lint/suspicious/noExplicitAny: JSON lines from the fixture, checked field by field
  any
>

interface Started {
  readonly instanceId: string
  readonly role: string
  readonly supervisorId: string
}

interface Status {
  readonly instanceId: string
  readonly role: string
  readonly supervisorId: string | null
  readonly members: ReadonlyArray<string>
}

let statusCounter = 0

/** Fixture lines are JSON; anything else on stdout (Effect's logger) is kept as a log line. */
const parseLine = (text: string): Line => {
  try {
    return JSON.parse(text) as Line
  } catch {
    return { t: "log", at: Date.now(), pid: 0, text }
  }
}

class Instance {
  readonly lines: Array<Line> = []
  readonly child: ChildProcess
  private readonly listeners = new Set<() => void>()
  exitCode: number | null | undefined = undefined
  signal: NodeJS.Signals | null = null
  /** Date.now() right after a SIGKILL was sent: nothing of it runs after this. */
  killedAt: number | undefined
  stopped = false
  instanceId = ""
  stderr = ""
  private buffer = ""

  constructor(config: Record<string, unknown>) {
    this.child = spawn(process.execPath, [fixture, JSON.stringify(config)], {
      cwd: packageDirectory,
      stdio: ["pipe", "pipe", "pipe"],
    })
    all.add(this)
    this.child.stdout!.setEncoding("utf8")
    this.child.stdout!.on("data", (chunk: string) => {
      this.buffer += chunk
      let newline = this.buffer.indexOf("\n")
      while (newline >= 0) {
        const text = this.buffer.slice(0, newline)
        this.buffer = this.buffer.slice(newline + 1)
        if (text.trim() !== "") this.lines.push(parseLine(text))
        newline = this.buffer.indexOf("\n")
      }
      this.notify()
    })
    this.child.stderr!.on("data", (chunk) => {
      this.stderr += chunk
    })
    this.child.on("exit", (code, signal) => {
      this.exitCode = code
      this.signal = signal
      this.notify()
    })
    // Writing to a dead child's stdin must not crash the test runner.
    this.child.stdin!.on("error", () => {})
  }

  get alive(): boolean {
    return this.exitCode === undefined && this.killedAt === undefined
  }

  private notify() {
    for (const listener of [...this.listeners]) listener()
  }

  /** The first line from index `from` on that matches; fails after `timeoutMs`. */
  waitFor(predicate: (line: Line) => boolean, timeoutMs: number, from = 0): Promise<Line> {
    return new Promise((resolve, reject) => {
      let index = from
      const check = () => {
        for (; index < this.lines.length; index++) {
          if (predicate(this.lines[index]!)) {
            done()
            resolve(this.lines[index]!)
            return
          }
        }
        if (this.exitCode !== undefined) {
          done()
          reject(
            new Error(
              `instance ${this.child.pid} exited (${this.exitCode ?? this.signal}) ${this.stderr}`,
            ),
          )
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(
          new Error(
            `instance ${this.child.pid}: no matching line in ${timeoutMs} ms; last: ${JSON.stringify(this.lines.slice(-3))} ${this.stderr}`,
          ),
        )
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        this.listeners.delete(check)
      }
      this.listeners.add(check)
      check()
    })
  }

  send(command: Record<string, unknown>) {
    if (this.exitCode === undefined) this.child.stdin!.write(`${JSON.stringify(command)}\n`)
  }

  /**
   * The first role. The default bound is a hang guard, not a figure of the election: a Node
   * start takes seconds when several start at once on this 2-core machine under load.
   */
  async started(timeoutMs = 60_000): Promise<Started> {
    const line = await this.waitFor((l) => l.t === "started" || l.t === "failed", timeoutMs)
    if (line.t === "failed") throw new Error(`instance failed: ${JSON.stringify(line.error)}`)
    this.instanceId = line.instanceId
    return line as unknown as Started
  }

  async status(timeoutMs = 3_000): Promise<Status> {
    const id = ++statusCounter
    const from = this.lines.length
    this.send({ cmd: "status", id })
    return (await this.waitFor(
      (l) => l.t === "status" && l.id === id,
      timeoutMs,
      from,
    )) as unknown as Status
  }

  events(tag: string, from = 0): Array<Line> {
    return this.lines.slice(from).filter((l) => l.t === "event" && l.event._tag === tag)
  }

  kill(signal: NodeJS.Signals = "SIGKILL") {
    if (this.exitCode !== undefined) return
    if (signal === "SIGSTOP") this.stopped = true
    if (signal === "SIGCONT") this.stopped = false
    this.child.kill(signal)
    if (signal === "SIGKILL") this.killedAt ??= Date.now()
  }

  exited(timeoutMs = 5_000): Promise<void> {
    if (this.exitCode !== undefined) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`instance ${this.child.pid} did not exit`)),
        timeoutMs,
      )
      this.child.once("exit", () => {
        clearTimeout(timer)
        resolve()
      })
    })
  }
}

const all = new Set<Instance>()
let directory = ""
let secretPath = ""

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), "understudy-pe-proc-"))
  secretPath = join(directory, "secret")
})

afterEach(async () => {
  const instances = [...all]
  all.clear()
  for (const instance of instances) {
    if (instance.exitCode !== undefined) continue
    // A stopped process only dies once continued.
    instance.child.kill("SIGCONT")
    instance.child.kill("SIGKILL")
  }
  await Promise.all(instances.map((instance) => instance.exited().catch(() => undefined)))
  rmSync(directory, { recursive: true, force: true })
}, 30_000)

const uniqueAbstract = () => `unix://@understudy-pe-${randomBytes(6).toString("hex")}`

const fastKeepAlive = { interval: 100, timeout: 600 }

const startInstance = (address: string, extra: Record<string, unknown> = {}) =>
  new Instance({
    address,
    program: "proc-test",
    secret: secretPath,
    keepAlive: fastKeepAlive,
    graceMs: 2_000,
    requestTimeoutMs: 1_000,
    ...extra,
  })

/** Asks every live instance its status; instances that die meanwhile are left out. */
const statuses = async (instances: ReadonlyArray<Instance>, statusTimeoutMs?: number) => {
  const answers = await Promise.all(
    instances.map((instance) =>
      instance.alive && !instance.stopped
        ? instance.status(statusTimeoutMs).then(
            (status) => ({ instance, status }),
            (error: unknown) => {
              // Only an instance that died meanwhile may fail to answer.
              if (instance.alive) throw error
              return undefined
            },
          )
        : undefined,
    ),
  )
  return answers.filter((a) => a !== undefined)
}

/** Never two supervisors: asserted at every observation. */
const assertAtMostOneSupervisor = (answers: ReadonlyArray<{ readonly status: Status }>) => {
  const supervisors = answers.filter((a) => a.status.role === "Supervisor")
  expect(
    supervisors.length,
    `supervisors: ${supervisors.map((s) => s.status.instanceId)}`,
  ).toBeLessThanOrEqual(1)
}

/**
 * Waits (bounded) until exactly one live instance supervises, every other live instance is
 * its subordinate, and its registry is exactly the live set. Returns the supervisor.
 */
const settled = async (
  instances: ReadonlyArray<Instance>,
  timeoutMs = 8_000,
  statusTimeoutMs?: number,
): Promise<Instance> => {
  const deadline = Date.now() + timeoutMs
  let last = ""
  for (let attempt = 0; attempt < 1_000 && Date.now() < deadline; attempt++) {
    const live = instances.filter((i) => i.alive && !i.stopped)
    const answers = await statuses(live, statusTimeoutMs)
    assertAtMostOneSupervisor(answers)
    const supervisor = answers.find((a) => a.status.role === "Supervisor")
    const liveIds = live.map((i) => i.instanceId).sort()
    if (
      supervisor !== undefined &&
      answers.length === live.length &&
      answers.every(
        (a) =>
          a === supervisor ||
          (a.status.role === "Subordinate" &&
            a.status.supervisorId === supervisor.status.instanceId),
      ) &&
      JSON.stringify([...supervisor.status.members].sort()) === JSON.stringify(liveIds)
    ) {
      return supervisor.instance
    }
    last = JSON.stringify(
      answers.map((a) => [a.status.instanceId, a.status.role, a.status.members.length]),
    )
    await sleep(40)
  }
  throw new Error(`not settled within ${timeoutMs} ms: ${last}`)
}

// ---- the tests -------------------------------------------------------------------------

describe("port election across processes", () => {
  it("one supervisor among 16 started at once, on tcp://127.0.0.1", async () => {
    const port = await Ports.freeTcpPort()
    const address = `tcp://127.0.0.1:${port}`
    // Nothing here hangs or dies, so a long keep-alive time-out changes no outcome, while
    // 600 ms would drop members of processes that 16 starts at once leave without a CPU.
    const keepAlive = { interval: 500, timeout: 10_000 }
    const instances = Array.from({ length: 16 }, () => startInstance(address, { keepAlive }))
    // Hang guards only, none a figure of the election: 16 Node starts share 2 cores (14 s
    // in all at load 11, over 30 s at load 19), and so do the status round trips.
    const started = await Promise.all(instances.map((i) => i.started(120_000)))
    const supervisors = started.filter((s) => s.role === "Supervisor")
    expect(supervisors).toHaveLength(1)
    const supervisorId = supervisors[0]!.instanceId
    const subordinates = started.filter((s) => s.role === "Subordinate")
    expect(subordinates).toHaveLength(15)
    for (const subordinate of subordinates) expect(subordinate.supervisorId).toBe(supervisorId)
    const supervisor = instances[started.indexOf(supervisors[0]!)]!
    // Registrations may still be arriving: wait (bounded) for all 16.
    const boss = await settled(instances, 60_000, 30_000)
    expect(boss).toBe(supervisor)
    const status = await supervisor.status(30_000)
    expect([...status.members].sort()).toEqual(started.map((s) => s.instanceId).sort())
  }, 240_000)

  it("SIGKILL of the supervisor: exactly one successor, every survivor registered with it", async () => {
    const address = uniqueAbstract()
    const instances = Array.from({ length: 6 }, () => startInstance(address))
    await Promise.all(instances.map((i) => i.started()))
    const first = await settled(instances)
    const marks = new Map(instances.map((i) => [i, i.lines.length]))
    first.kill("SIGKILL")
    const survivors = instances.filter((i) => i !== first)
    const second = await settled(survivors)
    expect(second).not.toBe(first)
    // Exactly one survivor was elected, and each one lost the old supervisor first.
    const elected = survivors.filter((i) => i.events("Elected", marks.get(i)).length > 0)
    expect(elected).toEqual([second])
    for (const survivor of survivors) {
      const lost = survivor.events("SupervisorLost", marks.get(survivor))
      expect(lost.length).toBeGreaterThanOrEqual(1)
      expect(lost[0]!.event.supervisorId).toBe(first.instanceId)
    }
    const status = await second.status()
    expect([...status.members].sort()).toEqual(survivors.map((s) => s.instanceId).sort())
    expect(status.members).not.toContain(first.instanceId)
  }, 60_000)

  it("SIGKILL of subordinates: the registry drops them", async () => {
    const address = uniqueAbstract()
    const instances = Array.from({ length: 5 }, () => startInstance(address))
    await Promise.all(instances.map((i) => i.started()))
    const supervisor = await settled(instances)
    const victims = instances.filter((i) => i !== supervisor).slice(0, 2)
    const mark = supervisor.lines.length
    for (const victim of victims) victim.kill("SIGKILL")
    for (const victim of victims) {
      const left = await supervisor.waitFor(
        (l) =>
          l.t === "event" &&
          l.event._tag === "MemberLeft" &&
          l.event.member.instanceId === victim.instanceId,
        5_000,
        mark,
      )
      expect(
        ["End", "LocalClose"].includes(left.event.reason) || left.event.reason.startsWith("Reset"),
      ).toBe(true)
    }
    expect(await settled(instances)).toBe(supervisor)
    const status = await supervisor.status()
    expect(status.members).toHaveLength(3)
    for (const victim of victims) expect(status.members).not.toContain(victim.instanceId)
  }, 60_000)

  it("SIGSTOP of the supervisor: subordinates notice by keep-alive, keep trying, and elect after it dies", async () => {
    const address = uniqueAbstract()
    const instances = Array.from({ length: 4 }, () => startInstance(address))
    await Promise.all(instances.map((i) => i.started()))
    const supervisor = await settled(instances)
    const others = instances.filter((i) => i !== supervisor)
    const marks = new Map(others.map((i) => [i, i.lines.length]))
    supervisor.kill("SIGSTOP")
    for (const other of others) {
      const lost = await other.waitFor(
        (l) => l.t === "event" && l.event._tag === "SupervisorLost",
        5_000,
        marks.get(other),
      )
      expect(lost.event.supervisorId).toBe(supervisor.instanceId)
      expect(lost.event.reason).toMatch(/^Timeout/)
    }
    // The stopped supervisor still holds the address: nobody can bind it, and nobody
    // takes its place, for as long as it is stopped.
    for (let check = 0; check < 5; check++) {
      const answers = await statuses(others)
      expect(answers).toHaveLength(3)
      for (const answer of answers) expect(answer.status.role).toBe("Electing")
      await sleep(200)
    }
    supervisor.kill("SIGCONT")
    supervisor.kill("SIGKILL")
    const successor = await settled(others)
    expect(others).toContain(successor)
    expect((await successor.status()).members).toHaveLength(3)
  }, 60_000)

  it("SIGCONT of a supervisor its members timed out: they come back to it, keeping their permits", async () => {
    const address = uniqueAbstract()
    const instances = Array.from({ length: 4 }, () => startInstance(address))
    await Promise.all(instances.map((i) => i.started()))
    const supervisor = await settled(instances)
    const others = instances.filter((i) => i !== supervisor)
    for (const other of others) {
      const mark = other.lines.length
      other.send({ cmd: "hold", resource: "slots", limit: 3, holdMs: 60_000, gapMs: 0 })
      await other.waitFor((l) => l.t === "acquired", 5_000, mark)
    }
    const marks = new Map(others.map((i) => [i, i.lines.length]))
    supervisor.kill("SIGSTOP")
    for (const other of others) {
      await other.waitFor(
        (l) => l.t === "event" && l.event._tag === "SupervisorLost",
        5_000,
        marks.get(other),
      )
    }
    // They connect again at once; the supervisor, continued, reads those connections and
    // the old ones' closes in no particular order.
    supervisor.kill("SIGCONT")
    expect(await settled(instances)).toBe(supervisor)
    expect([...(await supervisor.status()).members].sort()).toEqual(
      instances.map((i) => i.instanceId).sort(),
    )
    for (const other of others) {
      const since = other.lines.slice(marks.get(other))
      expect(since.filter((l) => l.t === "lost" || l.t === "failed")).toEqual([])
      expect(other.alive).toBe(true)
    }
  }, 60_000)

  it("SIGSTOP of a supervisor elected by a takeover: its members notice by keep-alive too", async () => {
    const address = uniqueAbstract()
    const instances = Array.from({ length: 4 }, () => startInstance(address))
    await Promise.all(instances.map((i) => i.started()))
    const first = await settled(instances)
    // Time for the successor's designation and the standby connections to it, so that the
    // second supervisor's members come to it over those.
    await sleep(1_000)
    first.kill("SIGKILL")
    const survivors = instances.filter((i) => i !== first)
    const second = await settled(survivors)
    const others = survivors.filter((i) => i !== second)
    const marks = new Map(others.map((i) => [i, i.lines.length]))
    second.kill("SIGSTOP")
    for (const other of others) {
      const lost = await other.waitFor(
        (l) => l.t === "event" && l.event._tag === "SupervisorLost",
        5_000,
        marks.get(other),
      )
      expect(lost.event.supervisorId).toBe(second.instanceId)
      expect(lost.event.reason).toMatch(/^Timeout/)
    }
    second.kill("SIGCONT")
    second.kill("SIGKILL")
    const third = await settled(others)
    expect(others).toContain(third)
    expect((await third.status()).members).toHaveLength(2)
  }, 60_000)

  it("SIGSTOP of a subordinate: the supervisor drops it by keep-alive; it rejoins once continued", async () => {
    const address = uniqueAbstract()
    const instances = Array.from({ length: 4 }, () => startInstance(address))
    await Promise.all(instances.map((i) => i.started()))
    const supervisor = await settled(instances)
    const victim = instances.find((i) => i !== supervisor)!
    const mark = supervisor.lines.length
    victim.kill("SIGSTOP")
    const left = await supervisor.waitFor(
      (l) =>
        l.t === "event" &&
        l.event._tag === "MemberLeft" &&
        l.event.member.instanceId === victim.instanceId,
      5_000,
      mark,
    )
    expect(left.event.reason).toMatch(/^Timeout/)
    expect(await settled(instances)).toBe(supervisor)
    expect((await supervisor.status()).members).not.toContain(victim.instanceId)
    victim.kill("SIGCONT")
    expect(await settled(instances)).toBe(supervisor)
    expect((await supervisor.status()).members).toContain(victim.instanceId)
  }, 60_000)

  it("a stranger on the address: StrangerOnAddress, with the address", async () => {
    const sockets = new Set<net.Socket>()
    const server = net.createServer((socket) => {
      sockets.add(socket)
      socket.on("error", () => {})
      socket.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    try {
      const address = `tcp://127.0.0.1:${(server.address() as net.AddressInfo).port}`
      const instance = startInstance(address)
      const failed = await instance.waitFor((l) => l.t === "failed" || l.t === "started", 10_000)
      expect(failed.t).toBe("failed")
      expect(failed.error._tag).toBe("StrangerOnAddress")
      expect(failed.error.address).toBe(address)
      await instance.exited()
      expect(instance.exitCode).toBe(3)
      expect(sockets.size).toBeGreaterThanOrEqual(1)
    } finally {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    }
  }, 30_000)

  it("another program on the address: OtherProgramOnAddress DifferentProgram; not registered", async () => {
    const address = uniqueAbstract()
    const alpha = startInstance(address, { program: "alpha" })
    expect((await alpha.started()).role).toBe("Supervisor")
    const beta = startInstance(address, { program: "beta" })
    const failed = await beta.waitFor((l) => l.t === "failed" || l.t === "started", 10_000)
    expect(failed.t).toBe("failed")
    expect(failed.error._tag).toBe("OtherProgramOnAddress")
    expect(failed.error.reason).toBe("DifferentProgram")
    expect(failed.error.program).toBe("alpha")
    expect(failed.error.address).toBe(address)
    const status = await alpha.status()
    expect(status.members).toEqual([alpha.instanceId])
  }, 30_000)

  it("another user's instance is refused (NotPermitted) and never registered", async (context) => {
    const uid = Number(execFileSync("id", ["-u"]).toString().trim())
    if (uid !== 0) {
      console.warn("SKIPPED: spawning as user nobody needs root; this runs as uid", uid)
      context.skip()
      return
    }
    const address = uniqueAbstract()
    const owner = startInstance(address)
    expect((await owner.started()).role).toBe("Supervisor")
    // The temporary directory is root's 0700: let nobody through to its own home.
    chmodSync(directory, 0o711)
    const home = join(directory, "nobody-home")
    mkdirSync(home, { mode: 0o700 })
    chownSync(home, 65534, 65534)
    const mark = owner.lines.length
    // It starts as root and drops to nobody once loaded: the clone may be under a 0700 directory.
    const stranger = new Instance({
      address,
      program: "proc-test",
      keepAlive: fastKeepAlive,
      requestTimeoutMs: 1_000,
      runAs: { uid: 65534, gid: 65534, home },
    })
    const failed = await stranger.waitFor((l) => l.t === "failed" || l.t === "started", 15_000)
    expect(failed.t).toBe("failed")
    expect(failed.error._tag).toBe("NotPermitted")
    expect(failed.error.address).toBe(address)
    // It made its own secret, under its own home.
    expect(failed.pid).toBe(stranger.child.pid)
    const status = await owner.status()
    expect(status.members).toEqual([owner.instanceId])
    expect(owner.events("MemberJoined", mark)).toEqual([])
  }, 30_000)

  it("a wrong secret file, in-process: NotPermitted", async () => {
    const address = uniqueAbstract()
    const owner = startInstance(address)
    expect((await owner.started()).role).toBe("Supervisor")
    const otherSecret = join(directory, "other-secret")
    writeFileSync(otherSecret, randomBytes(32), { mode: 0o600 })
    const parsed = Address.parseStream(address)
    if (parsed instanceof Address.InvalidAddress) throw parsed
    const error = await Effect.runPromise(
      Election.make({
        program: "proc-test",
        address: parsed,
        secret: { path: otherSecret },
        requestTimeout: 1_000,
      }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer), Effect.flip),
    )
    expect(error._tag).toBe("NotPermitted")
    expect((await owner.status()).members).toEqual([owner.instanceId])
  }, 30_000)

  it("100 seeded rounds of kills and restarts: one supervisor, registry = live set, semaphore never over 2", async () => {
    // testkit's Seeds: UNDERSTUDY_SEED=<n> replays one, UNDERSTUDY_SEEDS=<n> starts elsewhere.
    const [seed = 1] = Seeds.seeds(1)
    console.log(`randomised rounds: SEED=${seed}`)
    const { next: random, pick } = Prng.make(seed)
    const address = uniqueAbstract()
    const hold = { cmd: "hold", resource: "slot", limit: 2, holdMs: 25, gapMs: 25 }
    const everyone: Array<Instance> = []
    const spawnOne = () => {
      const instance = startInstance(address, { graceMs: 3_000 })
      everyone.push(instance)
      return instance
    }
    const live = () => everyone.filter((i) => i.alive)
    const initial = Array.from({ length: 7 }, spawnOne)
    await Promise.all(initial.map((i) => i.started()))
    for (const instance of initial) instance.send(hold)
    await settled(live())
    let supervisorKills = 0
    for (let round = 0; round < 100; round++) {
      const current = live()
      const supervisor = await settled(current).catch((error: unknown) => {
        throw new Error(`SEED=${seed}, round ${round}: ${String(error)}`)
      })
      const newcomers: Array<Instance> = []
      const action =
        current.length <= 6
          ? "spawn"
          : current.length >= 8
            ? "kill"
            : pick(["kill", "spawn", "both"])
      if (action === "kill" || action === "both") {
        const victim = random() < 0.5 ? supervisor : pick(current)
        if (victim === supervisor) supervisorKills++
        victim.kill("SIGKILL")
      }
      if (action === "spawn" || action === "both") newcomers.push(spawnOne())
      // Observe right away, while the failover (if any) is under way.
      assertAtMostOneSupervisor(await statuses(live().filter((i) => !newcomers.includes(i))))
      for (const newcomer of newcomers) {
        await newcomer.started()
        newcomer.send(hold)
      }
      assertAtMostOneSupervisor(await statuses(live()))
    }
    await settled(live())
    for (const instance of live()) instance.send({ cmd: "stop-hold" })
    await Promise.all(live().map((i) => i.waitFor((l) => l.t === "stopped-hold", 5_000)))

    // Hold intervals from every instance, dead ones included: a killed holder held at most
    // until it was killed. The supervisor's view of a permit contains the holder's view.
    const intervals: Array<{ start: number; end: number; pid: number }> = []
    let lostCount = 0
    for (const instance of everyone) {
      let open: number | undefined
      for (const line of instance.lines) {
        if (line.t === "acquired") open = line.at
        else if ((line.t === "released" || line.t === "lost") && open !== undefined) {
          if (line.t === "lost") lostCount++
          intervals.push({ start: open, end: line.at, pid: instance.child.pid! })
          open = undefined
        }
      }
      if (open !== undefined) {
        expect(
          instance.killedAt,
          `instance ${instance.child.pid} still holds after stop-hold`,
        ).toBeDefined()
        intervals.push({ start: open, end: instance.killedAt!, pid: instance.child.pid! })
      }
    }
    const points = intervals.flatMap((interval) => [
      { at: interval.start, delta: 1, interval },
      { at: interval.end, delta: -1, interval },
    ])
    // At equal times releases first: ms stamps can not order a hand-over within one ms.
    points.sort((a, b) => a.at - b.at || a.delta - b.delta)
    let holding = 0
    let most = 0
    const current = new Set<(typeof intervals)[number]>()
    let violation = ""
    for (const point of points) {
      holding += point.delta
      if (point.delta > 0) current.add(point.interval)
      else current.delete(point.interval)
      most = Math.max(most, holding)
      if (holding > 2 && violation === "") {
        // What each holder and the supervisors saw around the moment: for the report.
        const around = (line: Line) => Math.abs(line.at - point.at) < 1_500 && line.t !== "status"
        violation = [...current]
          .map((interval) => {
            const instance = everyone.find((i) => i.child.pid === interval.pid)!
            return `pid ${interval.pid} ${interval.start}..${interval.end} killedAt=${instance.killedAt}\n  ${instance.lines
              .filter(around)
              .map((l) => JSON.stringify(l))
              .join("\n  ")}`
          })
          .join("\n")
      }
    }
    if (violation !== "") console.log(`semaphore over its limit:\n${violation}`)
    console.log(
      `SEED=${seed}: ${everyone.length} instances, ${supervisorKills} supervisor kills, ${intervals.length} holds, ${lostCount} lost, at most ${most} at once`,
    )
    expect(intervals.length).toBeGreaterThan(100)
    expect(most, `SEED=${seed}`).toBeLessThanOrEqual(2)
    expect(most).toBe(2)
  }, 240_000)
})
