import { afterEach, describe, expect, it } from "vitest"
import {
  killAll,
  makeWorkspace,
  readIntervals,
  recorder,
  runCli,
  runtimeDir,
  spawnCli,
  statusJson,
  waitFor,
} from "./support.ts"

const workspaces: Array<ReturnType<typeof makeWorkspace>> = []

afterEach(async () => {
  await killAll()
  for (const created of workspaces.splice(0)) created.remove()
})

describe("instance-supervisor status", () => {
  it("says there are no instances when nobody runs", async () => {
    const created = makeWorkspace()
    workspaces.push(created)
    const result = await runCli(["status", "--name", created.name, "--secret", created.secret])
    expect(result.code).toBe(0)
    expect(result.stdout).toBe(
      `${created.name}: no instances (unix://${runtimeDir}/understudy-instance-supervisor-${created.name}.sock)\n`,
    )
  })

  it("lists every instance with its role, pid, state and command", async () => {
    const created = makeWorkspace()
    workspaces.push(created)
    const { name, secret, log } = created
    const args = (label: string) => [
      "--name",
      name,
      "--secret",
      secret,
      "--",
      ...recorder(log, label, 20_000),
    ]
    const first = spawnCli(args("first"))
    await waitFor("the first command", () => readIntervals(log).find((i) => i.label === "first"))
    const second = spawnCli(args("second"))
    const third = spawnCli(args("third"))
    await waitFor("three instances", async () =>
      (await statusJson(name, secret)).instances.length === 3 ? true : undefined,
    )
    const result = await runCli(["status", "--name", name, "--secret", secret])
    expect(result.code).toBe(0)
    const lines = result.stdout.trim().split("\n")
    expect(lines[0]).toBe(
      `${name}: 3 instances, 1 of 1 slots held, 2 waiting (unix://${runtimeDir}/understudy-instance-supervisor-${name}.sock)`,
    )
    expect(lines[1]).toMatch(/^INSTANCE\s+ROLE\s+PID\s+STATE\s+STARTED\s+COMMAND$/)
    const rowOf = (pid: number | undefined) => lines.find((line) => line.includes(` ${pid} `))
    expect(rowOf(first.child.pid)).toMatch(/supervisor\s+\d+\s+holding/)
    expect(rowOf(first.child.pid)).toContain(" first 20000 0")
    expect(rowOf(second.child.pid)).toMatch(/subordinate\s+\d+\s+waiting/)
    expect(rowOf(third.child.pid)).toMatch(/subordinate\s+\d+\s+waiting/)
    expect(lines).toHaveLength(5)
  })
})
