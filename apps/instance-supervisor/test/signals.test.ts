import { Ports } from "@understudy/testkit"
import { afterEach, describe, expect, it } from "vitest"
import {
  isAlive,
  killAll,
  makeWorkspace,
  readIntervals,
  recorder,
  runCli,
  slotArgs,
  spawnCli,
  statusJson,
  waitFor,
} from "./support.ts"

const workspaces: Array<ReturnType<typeof makeWorkspace>> = []
const workspace = () => {
  const created = makeWorkspace()
  workspaces.push(created)
  return created
}

afterEach(async () => {
  await killAll()
  for (const created of workspaces.splice(0)) created.remove()
})

describe("instance-supervisor signals and failures", () => {
  it("forwards SIGTERM to the running command and exits with its code", async () => {
    const { name, secret, log } = workspace()
    const cli = spawnCli([
      "--name",
      name,
      "--secret",
      secret,
      "--",
      process.execPath,
      "-e",
      `const fs = require("node:fs")
fs.appendFileSync(process.argv[1], "start trap " + process.pid + " 0\\n")
process.on("SIGTERM", () => { fs.appendFileSync(process.argv[1], "end trap " + process.pid + " 1\\n"); process.exit(42) })
setTimeout(() => process.exit(1), 20000)`,
      log,
    ])
    await waitFor("the command", () => readIntervals(log).find((i) => i.label === "trap"))
    cli.child.kill("SIGTERM")
    expect(await cli.exited).toEqual({ code: 42, signal: null })
    expect(readIntervals(log).find((i) => i.label === "trap")!.endMs).toBe(1)
  })

  it("stops waiting on SIGINT, exits 130, and leaves the slot to others", async () => {
    const { name, secret, log } = workspace()
    const holder = spawnCli([
      "--name",
      name,
      "--secret",
      secret,
      "--",
      ...recorder(log, "h", 20_000),
    ])
    await waitFor("the holder's command", () => readIntervals(log).find((i) => i.label === "h"))
    const waiter = spawnCli(["--name", name, "--secret", secret, "--", ...recorder(log, "w", 10)])
    await waitFor("the waiter to queue", async () =>
      (await statusJson(name, secret)).instances.some(
        (i) => i.pid === waiter.child.pid && i.state === "waiting",
      )
        ? true
        : undefined,
    )
    waiter.child.kill("SIGINT")
    expect(await waiter.exited).toEqual({ code: 130, signal: null })
    expect(readIntervals(log).some((i) => i.label === "w")).toBe(false)
    const status = await statusJson(name, secret)
    expect(status.instances.map((i) => i.pid)).toEqual([holder.child.pid])
  })

  it("runs on a loopback TCP port with --port", async () => {
    const { name, secret, log } = workspace()
    const port = String(await Ports.freeTcpPort())
    const result = await runCli([
      "--name",
      name,
      "--port",
      port,
      "--secret",
      secret,
      "--",
      ...recorder(log, "tcp", 0, 5),
    ])
    expect(result.code).toBe(5)
    expect(readIntervals(log).map((i) => i.label)).toEqual(["tcp"])
  })

  it("kills the command and exits 4 when its slot was lost in a failover", async () => {
    const { name, secret, log } = workspace()
    const args = slotArgs({ name, secret, log })
    const supervisor = spawnCli(args("supervisor", 20_000))
    await waitFor("the supervisor's command", () =>
      readIntervals(log).find((i) => i.label === "supervisor"),
    )
    const stopped = spawnCli(args("stopped", 20_000))
    const stoppedCommand = await waitFor("the second command", () =>
      readIntervals(log).find((i) => i.label === "stopped"),
    )
    const waiters = [spawnCli(args("w1", 20_000)), spawnCli(args("w2", 20_000))]
    await waitFor("two waiters", async () =>
      (await statusJson(name, secret)).instances.filter((i) => i.state === "waiting").length === 2
        ? true
        : undefined,
    )
    // A hung instance cannot re-register its permit; after the grace period the new
    // supervisor gives both slots away, and the hung one learns it when it wakes.
    stopped.child.kill("SIGSTOP")
    supervisor.child.kill("SIGKILL")
    await waitFor(
      "both waiters' commands after the grace period",
      () =>
        readIntervals(log).filter((i) => i.label.startsWith("w")).length === 2 ? true : undefined,
      10_000,
    )
    stopped.child.kill("SIGCONT")
    const exit = await stopped.exited
    expect(exit).toEqual({ code: 4, signal: null })
    expect(stopped.stderr).toContain(`lost the slot of ${name}`)
    expect(isAlive(stoppedCommand.pid)).toBe(false)
    expect(waiters.every((w) => w.child.exitCode === null)).toBe(true)
  })
})
