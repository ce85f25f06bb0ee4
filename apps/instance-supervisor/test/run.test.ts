import { createServer, type Server } from "node:net"
import { afterEach, describe, expect, it } from "vitest"
import {
  awaitExits,
  isAlive,
  killAll,
  makeWorkspace,
  maxOverlap,
  monotonicMs,
  readIntervals,
  recorder,
  runCli,
  slotArgs,
  spawnCli,
  statusJson,
  waitFor,
} from "./support.ts"

const workspaces: Array<ReturnType<typeof makeWorkspace>> = []
const servers: Array<Server> = []
const workspace = () => {
  const created = makeWorkspace()
  workspaces.push(created)
  return created
}

afterEach(async () => {
  await killAll()
  for (const server of servers.splice(0)) server.close()
  for (const created of workspaces.splice(0)) created.remove()
})

describe("instance-supervisor run", () => {
  it("never runs more than --slots commands at once, and runs them all", async () => {
    const { name, secret, log } = workspace()
    const clis = [0, 1, 2, 3, 4].map((i) =>
      spawnCli([
        "--name",
        name,
        "--slots",
        "2",
        "--secret",
        secret,
        "--",
        ...recorder(log, `c${i}`, 300),
      ]),
    )
    const exits = await Promise.all(clis.map((cli) => cli.exited))
    expect(exits).toEqual(clis.map(() => ({ code: 0, signal: null })))
    const intervals = readIntervals(log)
    expect(intervals.map((i) => i.label).sort()).toEqual(["c0", "c1", "c2", "c3", "c4"])
    expect(intervals.every((i) => i.endMs !== undefined)).toBe(true)
    expect(maxOverlap(intervals, Number.POSITIVE_INFINITY)).toBeLessThanOrEqual(2)
  })

  it("passes the command's exit code through, and 128+signal for a killed command", async () => {
    const { name, secret, log } = workspace()
    const seven = await runCli([
      "--name",
      name,
      "--secret",
      secret,
      "--",
      ...recorder(log, "e", 0, 7),
    ])
    expect(seven.code).toBe(7)
    const killed = await runCli([
      "--name",
      name,
      "--secret",
      secret,
      "--",
      process.execPath,
      "-e",
      'process.kill(process.pid, "SIGTERM")',
    ])
    expect(killed.code).toBe(128 + 15)
    const missing = await runCli(["--name", name, "--secret", secret, "--", "/nonexistent/command"])
    expect(missing.code).toBe(127)
  })

  it("prints usage errors, help and version", async () => {
    const bad = await runCli(["--name", "x", "--slots", "zero", "--", "true"])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain("instance-supervisor: --slots zero: expected an integer")
    expect(bad.stderr).toContain("--help")
    const help = await runCli(["--help"])
    expect(help.code).toBe(0)
    expect(help.stdout).toContain("Usage:")
    const version = await runCli(["--version"])
    expect(version.stdout).toBe("instance-supervisor 0.0.0\n")
  })

  it("says in one line that a stranger holds the address, and exits 3", async () => {
    const { name, secret } = workspace()
    const socketName = `understudy-test-stranger-${name}`
    const server = createServer((socket) => {
      socket.on("error", () => {})
      socket.end("HTTP/1.1 400 Bad Request\r\n\r\n")
    })
    servers.push(server)
    await new Promise<void>((resolve) => server.listen(`\0${socketName}`, resolve))
    const result = await runCli([
      "--name",
      name,
      "--secret",
      secret,
      "--address",
      `unix://@${socketName}`,
      "--",
      "true",
    ])
    expect(result.code).toBe(3)
    expect(result.stderr.trim().split("\n")).toHaveLength(1)
    expect(result.stderr).toContain("is held by something that is not an Understudy supervisor")
  })

  it("refuses a socket directory others may enter, in one line, and exits 3", async () => {
    const { name, secret, dir } = workspace()
    const { chmodSync, mkdirSync } = await import("node:fs")
    const shared = `${dir}/shared-runtime`
    mkdirSync(shared)
    chmodSync(shared, 0o755)
    const result = await runCli(["--name", name, "--secret", secret, "--", "true"], 15_000, shared)
    expect(result.code).toBe(3)
    expect(result.stderr.trim().split("\n")).toHaveLength(1)
    expect(result.stderr).toContain(`socket directory ${shared}: Insecure (mode 755`)
    expect(result.stderr).toContain("or choose an --address or --port")
  })

  it("reports an insecure secret file in one line, and exits 3", async () => {
    const { name, dir } = workspace()
    const { writeFileSync } = await import("node:fs")
    const insecure = `${dir}/insecure-secret`
    writeFileSync(insecure, "0123456789abcdef0123456789abcdef", { mode: 0o644 })
    const result = await runCli(["--name", name, "--secret", insecure, "--", "true"])
    expect(result.code).toBe(3)
    expect(result.stderr.trim().split("\n")).toHaveLength(1)
    expect(result.stderr).toContain("Insecure")
  })

  it("frees the slot of a SIGKILLed instance at once, and kills its command", async () => {
    const { name, secret, log } = workspace()
    const args = slotArgs({ name, secret, log })
    // The first one up supervises; the victim is a subordinate holding the other slot.
    const supervisor = spawnCli(args("supervisor", 20_000))
    await waitFor("the supervisor's command", () =>
      readIntervals(log).find((i) => i.label === "supervisor"),
    )
    const victim = spawnCli(args("victim", 20_000))
    const victimCommand = await waitFor("the victim's command", () =>
      readIntervals(log).find((i) => i.label === "victim"),
    )
    const waiter = spawnCli(args("waiter", 100))
    await waitFor("the waiter to queue", async () => {
      const status = await statusJson(name, secret)
      return status.instances.some((i) => i.pid === waiter.child.pid && i.state === "waiting")
        ? true
        : undefined
    })
    victim.child.kill("SIGKILL")
    // Promptly: a liveness bound only (the waiter's own grant, not a time-out, starts it).
    await waitFor(
      "the waiter's command",
      () => readIntervals(log).find((i) => i.label === "waiter"),
      5_000,
    )
    expect((await waiter.exited).code).toBe(0)
    await waitFor("the victim's command to die with it", () =>
      isAlive(victimCommand.pid) ? undefined : true,
    )
    expect(isAlive(victimCommand.pid)).toBe(false)
    expect(supervisor.child.exitCode).toBe(null)
  })

  it("never lets a third command start when the supervisor is SIGKILLed", async () => {
    const { name, secret, log } = workspace()
    const args = slotArgs({ name, secret, log })
    // A long command for the supervisor, so it surely holds a slot when it is killed.
    const first = spawnCli(args("first", 20_000))
    await waitFor("the first command", () => readIntervals(log).find((i) => i.label === "first"))
    const others = [1, 2, 3, 4, 5].map((i) => spawnCli(args(`other${i}`, 600), `other${i}`))
    const status = await waitFor("two holders and waiters", async () => {
      const current = await statusJson(name, secret)
      const holding = current.instances.filter((i) => i.state === "holding").length
      const waiting = current.instances.filter((i) => i.state === "waiting").length
      return holding === 2 && waiting >= 2 ? current : undefined
    })
    const supervisorRow = status.instances.find((i) => i.role === "supervisor")!
    expect(supervisorRow.pid).toBe(first.child.pid)
    expect(supervisorRow.state).toBe("holding")
    const firstCommand = readIntervals(log).find((i) => i.label === "first")!
    const killedAtMs = monotonicMs()
    first.child.kill("SIGKILL")
    const exits = await awaitExits(others, name, secret)
    expect(exits).toEqual(others.map(() => ({ code: 0, signal: null })))
    expect(isAlive(firstCommand.pid)).toBe(false)
    const intervals = readIntervals(log)
    expect(intervals.map((i) => i.label).sort()).toEqual([
      "first",
      "other1",
      "other2",
      "other3",
      "other4",
      "other5",
    ])
    // The killed supervisor's command never wrote its end: it died with its instance.
    expect(intervals.find((i) => i.label === "first")!.endMs).toBeUndefined()
    expect(maxOverlap(intervals, killedAtMs)).toBeLessThanOrEqual(2)
  })
})
