/**
 * The apps' commands as `npm install` links them (node_modules/.bin, first on PATH under
 * `npm test`): each runs and prints its usage.
 */
import { spawnSync } from "node:child_process"
import { describe, expect, it } from "vitest"

describe("the apps' commands after npm install", () => {
  it.each([
    ["instance-supervisor", "instance-supervisor --name NAME"],
    ["server-group", "server-group serve --id ID"],
    ["sctp-cluster", "sctp-cluster node --role primary|secondary"],
  ])("%s --help prints its usage", (command, usage) => {
    const result = spawnSync(command, ["--help"], { encoding: "utf8", timeout: 30_000 })
    expect(result.error).toBe(undefined)
    expect(result.status).toBe(0)
    expect(result.stdout).toContain("Usage:")
    expect(result.stdout).toContain(usage)
  })
})
