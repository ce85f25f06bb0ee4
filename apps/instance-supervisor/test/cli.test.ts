import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Address } from "@understudy/transport"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { defaultAddress, type Invocation, parse, slotsMax } from "../src/cli.ts"

const usageError = (invocation: Invocation): string => {
  if (invocation._tag !== "UsageError")
    throw new Error(`expected a usage error, got ${invocation._tag}`)
  return invocation.message
}

describe("argument parsing", () => {
  it("parses a run with every option", () => {
    expect(
      parse(["--name", "builds", "--slots", "2", "--secret", "/s", "--", "make", "-j8"]),
    ).toEqual({
      _tag: "Run",
      target: { name: "builds", address: undefined, secretPath: "/s" },
      slots: 2,
      command: ["make", "-j8"],
    })
  })

  it("defaults to one slot on the name's socket file in the per-user directory", () => {
    const invocation = parse(["--name", "builds", "--", "make"])
    expect(invocation).toMatchObject({ _tag: "Run", slots: 1, command: ["make"] })
    const runtime = mkdtempSync(join(tmpdir(), "instance-supervisor-runtime-"))
    const saved = process.env.XDG_RUNTIME_DIR
    try {
      process.env.XDG_RUNTIME_DIR = runtime
      expect(Address.format(Effect.runSync(defaultAddress("builds")))).toBe(
        `unix://${runtime}/understudy-instance-supervisor-builds.sock`,
      )
    } finally {
      if (saved === undefined) delete process.env.XDG_RUNTIME_DIR
      else process.env.XDG_RUNTIME_DIR = saved
      rmSync(runtime, { recursive: true, force: true })
    }
  })

  it("accepts --flag=value, --address and --port", () => {
    expect(parse(["--name=a", "--slots=3", "--address=unix://@x", "--", "ls"])).toMatchObject({
      _tag: "Run",
      slots: 3,
      target: { name: "a", address: Address.abstract("x") },
    })
    expect(parse(["--name", "a", "--port", "47100", "--", "ls"])).toMatchObject({
      target: { address: Address.tcp("127.0.0.1", 47100) },
    })
    expect(parse(["--name", "a", "--address", "tcp://[::1]:9", "--", "ls"])).toMatchObject({
      target: { address: Address.tcp("::1", 9) },
    })
  })

  it("keeps everything after -- as the command, flags included", () => {
    expect(parse(["--name", "a", "--", "sh", "-c", "exit 7", "--help"])).toMatchObject({
      command: ["sh", "-c", "exit 7", "--help"],
    })
  })

  it("parses status, anywhere among the flags", () => {
    expect(parse(["status", "--name", "b"])).toEqual({
      _tag: "Status",
      target: { name: "b", address: undefined, secretPath: undefined },
      json: false,
    })
    expect(parse(["--name", "b", "status", "--json"])).toMatchObject({ _tag: "Status", json: true })
  })

  it("gives help and version precedence", () => {
    const help = parse(["--help"])
    expect(help._tag).toBe("Help")
    // The synopsis, then every flag with its description; only --help and --version built in.
    const text = help._tag === "Help" ? help.text : ""
    expect(text).toContain("Usage:")
    expect(text).toContain("instance-supervisor --name NAME [--slots N]")
    for (const flag of ["--name", "--slots", "--address", "--port", "--secret", "--metrics"])
      expect(text).toContain(flag)
    expect(text).toContain("Exit codes: the command's own; 2 bad usage; 3 election error")
    for (const absent of ["--wizard", "--completions", "--log-level"])
      expect(text).not.toContain(absent)
    expect(parse(["-h", "--bogus"])._tag).toBe("Help")
    expect(parse(["--name", "x", "-h"])._tag).toBe("Help")
    const statusHelp = parse(["status", "--help"])
    expect(statusHelp._tag === "Help" && statusHelp.text).toContain("--json")
    expect(parse(["--version"])).toEqual({ _tag: "Version", text: "instance-supervisor 0.0.0" })
    expect(parse(["-V"])).toEqual({ _tag: "Version", text: "instance-supervisor 0.0.0" })
  })

  it("rejects bad input with a message that names the problem", () => {
    expect(usageError(parse([]))).toBe("--name is required")
    expect(usageError(parse(["--name", "a"]))).toBe("no command: give it after --")
    expect(usageError(parse(["--name", "a", "--"]))).toBe("no command: give it after --")
    expect(usageError(parse(["--name", "a", "make"]))).toMatch(
      /Unknown subcommand "make" for "instance-supervisor" \(put the command after --\)/,
    )
    expect(usageError(parse(["--name"]))).toMatch(/Missing value for flag --name/)
    expect(usageError(parse(["--name="]))).toBe("--name needs a value")
    expect(usageError(parse(["--name", "a b", "--", "x"]))).toMatch(/--name "a b"/)
    expect(usageError(parse(["--name", "a".repeat(65), "--", "x"]))).toMatch(/1-64/)
    expect(usageError(parse(["--name", "a", "--slots", "0", "--", "x"]))).toMatch(/--slots 0/)
    expect(usageError(parse(["--name", "a", "--slots", "2.5", "--", "x"]))).toMatch(/integer/)
    expect(usageError(parse(["--name", "a", "--slots", String(slotsMax + 1), "--", "x"]))).toMatch(
      /--slots/,
    )
    expect(usageError(parse(["--name", "a", "--slots", "1", "--slots", "2", "--", "x"]))).toMatch(
      /--slots: "2 occurrences". Expected: at most 1 value/,
    )
    expect(usageError(parse(["--name", "a", "--name", "b", "--", "x"]))).toMatch(
      /--name: "2 occurrences"/,
    )
    expect(usageError(parse(["--name", "a", "--port", "70000", "--", "x"]))).toMatch(/--port/)
    expect(
      usageError(parse(["--name", "a", "--port", "1", "--address", "unix://@x", "--", "x"])),
    ).toBe("--address and --port exclude each other")
    expect(usageError(parse(["--name", "a", "--address", "udp://1.2.3.4:5", "--", "x"]))).toMatch(
      /expected a tcp:\/\/ or unix:\/\/ address/,
    )
    expect(usageError(parse(["--name", "a", "--address", "http://x", "--", "x"]))).toMatch(
      /unknown scheme/,
    )
    expect(usageError(parse(["--name", "a", "--json", "--", "x"]))).toBe(
      "Unrecognized flag: --json in command instance-supervisor",
    )
    expect(usageError(parse(["--bogus", "--name", "a"]))).toMatch(/Unrecognized flag: --bogus/)
    expect(usageError(parse(["status", "--name", "a", "--slots", "2"]))).toBe(
      "Unrecognized flag: --slots in command instance-supervisor status",
    )
    expect(usageError(parse(["status", "--name", "a", "--", "x"]))).toBe("status takes no command")
    expect(usageError(parse(["status", "status", "--name", "a"]))).toMatch(
      /Unexpected positional argument: "status"/,
    )
  })
})
