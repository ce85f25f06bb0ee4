import { type ChildProcess, spawn } from "node:child_process"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { afterEach, describe, expect, it } from "vitest"

const fixture = join(import.meta.dirname, "fixtures", "program.ts")
const children: Array<ChildProcess> = []
afterEach(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL")
})

interface Ended {
  readonly code: number | null
  readonly lines: ReadonlyArray<Record<string, unknown>>
  readonly stderr: string
}

/** Starts the fixture; `act` runs once it printed its first line. */
const run = (mode: string, act: (child: ChildProcess) => void, env: NodeJS.ProcessEnv = {}) =>
  new Promise<Ended>((resolve) => {
    const child = spawn(process.execPath, [fixture, mode], { env: { ...process.env, ...env } })
    children.push(child)
    const lines: Array<Record<string, unknown>> = []
    let stderr = ""
    child.stderr.on("data", (chunk) => {
      stderr += chunk
    })
    createInterface({ input: child.stdout }).on("line", (text) => {
      lines.push(JSON.parse(text))
      if (lines.length === 1) act(child)
    })
    child.on("exit", (code) => resolve({ code, lines, stderr }))
  })

describe("Signals", () => {
  it("runUntilSignal: SIGTERM interrupts the program, exit 0", async () => {
    const ended = await run("interrupt", (child) => child.kill("SIGTERM"))
    expect(ended.code).toBe(0)
    expect(ended.lines).toEqual([{ t: "started", wallMs: expect.any(Number) }])
  })

  it("runUntilStopped: SIGINT completes stop and the program ends its own way", async () => {
    const ended = await run("stop", (child) => child.kill("SIGINT"))
    expect(ended.code).toBe(3)
    expect(ended.lines.map((line) => line.reason)).toEqual([undefined, "SIGINT"])
  })

  it("the end of stdin stops the program when its variable says so", async () => {
    const ended = await run("stop", (child) => child.stdin?.end(), {
      FIXTURE_EXIT_ON_STDIN_EOF: "1",
    })
    expect(ended.code).toBe(3)
    expect(ended.lines[1]).toMatchObject({ t: "stopping", reason: "StdinClosed" })
  })

  it("a failure is said on stderr with the program's name, exit 1", async () => {
    const ended = await run("fail", () => {})
    expect(ended.code).toBe(1)
    expect(ended.stderr).toBe("fixture: it went wrong\n")
  })
})
