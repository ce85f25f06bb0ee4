import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { parse } from "../src/cli.ts"
import { scenarios } from "../src/scenarios/index.ts"
import { listScenarios } from "../src/showcase.ts"

const names = ["port-election", "staggered-election", "sctp-cluster"]
const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))

/** `node src/main.ts ...args` to its end (these never start a scenario). */
const run = (args: ReadonlyArray<string>) =>
  spawnSync(process.execPath, [main, ...args], { encoding: "utf8", timeout: 30_000 })

describe("showcase command line", () => {
  it("runs every scenario, in order, by default", () => {
    expect(parse([], names)).toEqual({
      _tag: "Run",
      scenarios: names,
      options: { sctpPeer: "auto" },
    })
  })

  it("--scenario runs the named ones, in the registry's order", () => {
    expect(parse(["--scenario", "sctp-cluster"], names)).toMatchObject({
      _tag: "Run",
      scenarios: ["sctp-cluster"],
    })
    expect(parse(["--scenario=sctp-cluster", "--scenario", "port-election"], names)).toMatchObject({
      scenarios: ["port-election", "sctp-cluster"],
    })
  })

  it("--sctp-peer chooses the outside SCTP peer", () => {
    expect(parse(["--sctp-peer", "understudy"], names)).toMatchObject({
      options: { sctpPeer: "understudy" },
    })
  })

  it("bad input is a usage error that says what is wrong", () => {
    expect(parse(["--scenario", "nope"], names)).toEqual({
      _tag: "UsageError",
      message:
        "unknown scenario 'nope' (there are: port-election, staggered-election, sctp-cluster)",
    })
    expect(parse(["--sctp-peer", "tcp"], names)).toEqual({
      _tag: "UsageError",
      message: "--sctp-peer must be one of auto, usrsctp, understudy, not 'tcp'",
    })
    expect(parse(["--bogus"], names)._tag).toBe("UsageError")
    expect(parse(["extra"], names)._tag).toBe("UsageError")
    expect(parse(["--scenario"], names)._tag).toBe("UsageError")
  })

  it("--help and --list win over everything else", () => {
    expect(parse(["--scenario", "sctp-cluster", "--help"], names)).toEqual({ _tag: "Help" })
    expect(parse(["-h"], names)).toEqual({ _tag: "Help" })
    expect(parse(["--list"], names)).toEqual({ _tag: "List" })
  })

  it("the program: --help names every scenario, --list lists them, a usage error exits 2", () => {
    const help = run(["--help"])
    expect(help.status).toBe(0)
    expect(help.stdout).toContain("Usage: npm start")
    for (const scenario of scenarios) expect(help.stdout).toContain(scenario.name)

    const list = run(["--list"])
    expect(list.status).toBe(0)
    expect(list.stdout).toBe(listScenarios(scenarios))
    expect(list.stdout.trim().split("\n")).toHaveLength(scenarios.length)

    const wrong = run(["--scenario", "nope"])
    expect(wrong.status).toBe(2)
    expect(wrong.stdout).toBe("")
    expect(wrong.stderr).toContain("unknown scenario 'nope'")
  })
})
