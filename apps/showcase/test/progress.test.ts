import { afterEach, describe, expect, it } from "vitest"
import * as Progress from "../src/progress.ts"
import type { Row, Scenario } from "../src/Scenario.ts"
import { runScenarios } from "../src/showcase.ts"

const collect = (isTTY: boolean) => {
  let text = ""
  return {
    output: { write: (chunk: string) => (text += chunk), isTTY, columns: 60 },
    text: () => text,
  }
}

/** A clock the test moves by hand: 1.5 s per reading. */
const clock = () => {
  let now = 0
  return () => (now += 1_500)
}

const row = (scenario: string, ok: boolean): Row => ({
  scenario,
  failoverMs: ok ? 12.5 : undefined,
  invariant: "something held",
  ok,
  detail: ok ? "fine" : "it broke",
})

const scenarios: ReadonlyArray<Scenario> = [
  {
    name: "first",
    description: "runs fine",
    run: async ({ log }) => {
      log("step one")
      log("step two")
      return [row("first", true)]
    },
  },
  {
    name: "second",
    description: "throws",
    run: async () => {
      throw new Error("no such thing")
    },
  },
]

let progress: Progress.Progress | undefined
afterEach(() => progress?.close())

describe("showcase progress", () => {
  it("piped: one plain line per step, no cursor movement", async () => {
    const out = collect(false)
    progress = Progress.make(out.output, clock())
    const outcome = await runScenarios(scenarios, { sctpPeer: "auto" }, progress)
    const text = out.text()
    expect(text.includes("\r")).toBe(false)
    expect(text.includes("\u001b[")).toBe(false)
    expect(text).toContain("== [1/2] first: runs fine\n")
    // The clock reads 1.5 s later at every look: started at 1.5, steps at 3.0 and 4.5.
    expect(text).toContain("[   3.0 s] [first] step one\n[   4.5 s] [first] step two\n")
    expect(text).toContain("== first: 1 checks ok in 4.5 s\n")
    expect(text).toContain("== second: 1 of 1 FAILED in 1.5 s\n")
    // A scenario that throws is one failed row; the table and the verdict follow.
    expect(outcome.exitCode).toBe(1)
    expect(outcome.rows.map((r) => [r.scenario, r.ok])).toEqual([
      ["first", true],
      ["second", false],
    ])
    expect(text).toContain("FAILED (no such thing)")
    expect(text).toContain("1 of 2 checks FAILED")
  })

  it("on a terminal: a status line redrawn in place under the steps, fitted to the width", async () => {
    const out = collect(true)
    progress = Progress.make(out.output, clock())
    const outcome = await runScenarios([scenarios[0]!], { sctpPeer: "auto" }, progress)
    progress.close()
    const text = out.text()
    expect(outcome.exitCode).toBe(0)
    // Every write starts by clearing the status line and returning to its start.
    expect(text.startsWith("\r\x1b[2K")).toBe(true)
    expect(text).toContain("    step one\n")
    // The status line, redrawn after a step, shows the scenario and its latest step.
    expect(text).toMatch(/\[1\/1\] first \d+\.\d s · step one/)
    expect(text).toMatch(/✓ \[1\/1\] first \d+\.\d s · 1 checks ok\n/)
    expect(text).toContain("all 1 checks passed")
  })

  it("a status line longer than the terminal is cut with an ellipsis", () => {
    const out = collect(true)
    progress = Progress.make(out.output, clock())
    progress.begin(1, 1, "long", "x")
    progress.log("y".repeat(200))
    const status = out.text().split("\n").at(-1)!
    expect(status.length).toBe(59)
    expect(status.endsWith("…")).toBe(true)
  })
})
