import { Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { describe, expect, it } from "vitest"
import { Cli } from "../src/index.ts"

type Chosen = { readonly _tag: "Greet"; readonly name: string; readonly loud: boolean }

const greet = Command.make(
  "greet",
  {
    name: Flag.String("name").pipe(Flag.withDescription("Whom to greet")),
    loud: Flag.Boolean("loud").pipe(Flag.withDefault(false)),
  },
  ({ name, loud }) => Cli.choose<Chosen>({ _tag: "Greet", name, loud }),
).pipe(Command.withDescription(Cli.description("Says hello\n\nto whom --name says")))

const echo = Command.make(
  "echo",
  { words: Argument.String("word").pipe(Argument.variadic()) },
  ({ words }) => Cli.choose({ _tag: "Echo", words }),
)

const tool = Command.make("tool").pipe(Command.withSubcommands([greet, echo]))

const parse = (argv: ReadonlyArray<string>) =>
  Cli.parse<Chosen>(tool, argv, { version: "1.2.3", noCommand: "no command: greet or echo" })

describe("Cli.parse", () => {
  it("returns what the handler chose", () => {
    expect(parse(["greet", "--name", "Ada"])).toEqual({ _tag: "Greet", name: "Ada", loud: false })
    expect(parse(["greet", "--name=Ada", "--loud"])).toEqual({
      _tag: "Greet",
      name: "Ada",
      loud: true,
    })
    expect(parse(["echo", "a", "--", "-b"])).toEqual({ _tag: "Echo", words: ["a", "-b"] })
  })

  it("answers help and version by itself, with only --help and --version built in", () => {
    const help = parse(["greet", "--help"])
    expect(help._tag).toBe("Help")
    expect(help._tag === "Help" && help.text).toContain("  Says hello\n\n  to whom --name says")
    expect(help._tag === "Help" && help.text).toContain("--name")
    for (const absent of ["--wizard", "--completions", "--log-level"])
      expect(help._tag === "Help" && help.text).not.toContain(absent)
    expect(parse(["-h"])._tag).toBe("Help")
    expect(parse(["-V"])).toEqual({ _tag: "Version", text: "tool 1.2.3" })
    expect(Cli.parse(tool, ["--version"])).toMatchObject({ _tag: "UsageError" })
  })

  it("refuses bad command lines with a message naming the problem", () => {
    const message = (argv: ReadonlyArray<string>) => {
      const parsed = parse(argv)
      return parsed._tag === "UsageError" ? parsed.message : `not a usage error: ${parsed._tag}`
    }
    expect(message([])).toBe("no command: greet or echo")
    expect(message(["greet"])).toMatch(/--name/)
    expect(message(["greet", "--name", "a", "--bogus"])).toMatch(/--bogus/)
    expect(message(["greet", "--name", "a", "--name", "b"])).toMatch(/--name/)
    expect(message(["greet", "--name"])).toMatch(/--name/)
    expect(message(["frob"])).toMatch(/frob/)
    expect(Cli.parse(tool, [])).toEqual({ _tag: "UsageError", message: "no command given" })
  })

  it("answers --help without running the handler", () => {
    let ran = false
    const eager = Command.make("eager", {}, () =>
      Effect.sync(() => {
        ran = true
      }).pipe(Effect.andThen(Cli.choose({ _tag: "Done" }))),
    )
    expect(Cli.parse<{ _tag: "Done" }>(eager, ["--help"])._tag).toBe("Help")
    expect(ran).toBe(false)
  })
})

describe("Cli.repeated", () => {
  const pick = Command.make(
    "pick",
    { tag: Cli.repeated("tag", "TAG", "a tag to keep (repeatable)") },
    ({ tag }) => Cli.choose({ _tag: "Picked", tags: tag }),
  )
  const parsePick = (argv: ReadonlyArray<string>) =>
    Cli.parse<{ _tag: "Picked"; tags: ReadonlyArray<string> }>(pick, argv)

  it("gives each value in the order given, none when absent, and names its value in help", () => {
    expect(parsePick([])).toEqual({ _tag: "Picked", tags: [] })
    expect(parsePick(["--tag", "b", "--tag=a", "--tag", "b"])).toEqual({
      _tag: "Picked",
      tags: ["b", "a", "b"],
    })
    expect(parsePick(["--tag"])).toMatchObject({ _tag: "UsageError" })
    const help = parsePick(["--help"])
    expect(help._tag === "Help" && help.text).toContain("--tag TAG")
    expect(help._tag === "Help" && help.text).toContain("a tag to keep (repeatable)")
  })
})

describe("Cli.subcommands and Cli.given", () => {
  const flags = {
    listen: Cli.text("listen", "ADDRESS", "where to listen"),
    insecure: Cli.toggle("insecure", "run without a key"),
    out: Cli.text("out", "FILE", "where to write"),
  }
  // The app's check sees the flags given, by name: a toggle as "", an absent flag not at all.
  const check = (command: string, values: ReadonlyMap<string, string>) => ({
    _tag: "Checked" as const,
    command,
    values: Object.fromEntries(values),
  })
  const subcommand = Cli.subcommands(flags, check)
  const app = Command.make("app").pipe(
    Command.withSubcommands([
      subcommand("serve", ["listen", "insecure"], "Serves"),
      subcommand("keygen", ["out"], "Writes a key"),
    ]),
  )
  const parseApp = (argv: ReadonlyArray<string>) => Cli.parse<ReturnType<typeof check>>(app, argv)

  it("each subcommand takes only the flags it names, checked by the app", () => {
    expect(parseApp(["serve", "--listen", "tcp://x:1", "--insecure"])).toEqual({
      _tag: "Checked",
      command: "serve",
      values: { "--listen": "tcp://x:1", "--insecure": "" },
    })
    expect(parseApp(["serve"])).toEqual({ _tag: "Checked", command: "serve", values: {} })
    expect(parseApp(["keygen", "--out=k"])).toMatchObject({ values: { "--out": "k" } })
    expect(parseApp(["keygen", "--insecure"])).toEqual({
      _tag: "UsageError",
      message: "Unrecognized flag: --insecure in command app keygen",
    })
    const help = parseApp(["serve", "--help"])
    expect(help._tag === "Help" && help.text).toContain("--listen ADDRESS")
    expect(help._tag === "Help" && help.text).not.toContain("--out")
  })

  it("a value given empty is refused as a missing value", () => {
    expect(parseApp(["serve", "--listen="])).toEqual({
      _tag: "UsageError",
      message: "--listen needs a value",
    })
  })
})

describe("Cli.parseInteger and Cli.parseDuration", () => {
  it("read whole numbers within bounds, and durations up to a day", () => {
    expect(Cli.parseInteger("42", 1, 100)).toBe(42)
    for (const bad of ["0", "101", "2.5", "-1", "1e2", " 1", ""])
      expect(Cli.parseInteger(bad, 1, 100)).toBeUndefined()
    expect(Cli.parseDuration("10s")).toBe(10_000)
    expect(Cli.parseDuration("250ms")).toBe(250)
    expect(Cli.parseDuration("2m")).toBe(120_000)
    expect(Cli.parseDuration("1.5")).toBe(1_500)
    for (const bad of ["x", "0s", "25h", "1440.1m", "-1s", "1 s"])
      expect(Cli.parseDuration(bad)).toBeUndefined()
  })
})

describe("Cli.answer", () => {
  it("gives exit code 0 for help and 2 for a usage error", () => {
    const stdout = process.stdout.write
    const stderr = process.stderr.write
    const written: Array<string> = []
    process.stdout.write = ((text: string) => written.push(`out:${text}`) > 0) as never
    process.stderr.write = ((text: string) => written.push(`err:${text}`) > 0) as never
    try {
      expect(Cli.answer("tool", { _tag: "Help", text: "HELP" })).toBe(0)
      expect(Cli.answer("tool", Cli.usageError("no good"))).toBe(2)
    } finally {
      process.stdout.write = stdout
      process.stderr.write = stderr
    }
    expect(written).toEqual(["out:HELP\n", "err:tool: no good\nTry 'tool --help'.\n"])
  })
})
