import { describe, expect, it } from "vitest"
import { scenarios } from "../src/scenarios/index.ts"
import { maxConcurrent, runPortElection } from "../src/scenarios/portElection.ts"
import { formatTable } from "../src/table.ts"

describe("showcase", () => {
  it("lists the port-election scenario", () => {
    expect(scenarios.map((s) => s.name)).toContain("port-election")
  })

  it("counts overlapping holds, ends before starts at one instant", () => {
    expect(maxConcurrent([], 0)).toBe(0)
    expect(
      maxConcurrent(
        [
          { startMs: 0, endMs: 10 },
          { startMs: 10, endMs: 20 },
          { startMs: 5, endMs: 15 },
        ],
        100,
      ),
    ).toBe(2)
    expect(
      maxConcurrent(
        [
          { startMs: 0, endMs: undefined },
          { startMs: 1, endMs: 3 },
          { startMs: 2, endMs: 4 },
        ],
        50,
      ),
    ).toBe(3)
  })

  // The scenario waits for each failover up to its own bound (a row not ok past it).
  it("port-election: three failovers measured, one supervisor each time, never over 3 holders", async () => {
    const lines: Array<string> = []
    const rows = await runPortElection({ log: (line) => lines.push(line) })
    const table = formatTable(rows)
    expect(
      rows.filter((row) => !row.ok),
      table,
    ).toEqual([])
    const failovers = rows.filter((row) => row.failoverMs !== undefined)
    expect(failovers).toHaveLength(3)
    for (const row of failovers) {
      expect(row.failoverMs).toBeGreaterThan(0)
    }
    expect(rows.at(-1)!.invariant).toBe("the semaphore never had more than 3 holders at once")
    expect(lines.some((line) => line.includes("SIGKILL supervisor"))).toBe(true)
  }, 60_000)
})
