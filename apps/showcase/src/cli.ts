/**
 * The showcase's command line, on `effect/cli` (through the apps' kit): a pure function
 * from argv to what to do, so every flag and every error is tested without a process.
 *
 * @since 0.1.0
 */
import { Cli } from "@understudy/app-kit"
import { Option } from "effect"
import { Command, Flag } from "effect/cli"
import { type Options, sctpPeers } from "./Scenario.ts"

/** @since 0.1.0 @category models */
export type Invocation =
  | { readonly _tag: "Help" }
  | { readonly _tag: "List" }
  | { readonly _tag: "Run"; readonly scenarios: ReadonlyArray<string>; readonly options: Options }
  | { readonly _tag: "UsageError"; readonly message: string }

/** The help text, naming the scenarios there are. @since 0.1.0 */
export const usage = (names: ReadonlyArray<string>): string =>
  `Usage: npm start [-- OPTIONS]

Runs Understudy's scenarios as real processes on loopback, kills what each is about, and
prints a table: scenario, failover time, invariant checked, result. Exits 1 if an
invariant failed, 2 on a usage error.

Options:
  --scenario NAME        run only this scenario (repeatable): ${names.join(", ")}
  --list                 list the scenarios and exit
  --sctp-peer PEER       the outside SCTP peer of sctp-cluster: ${sctpPeers.join(", ")}
                         (auto: usrsctp's client when installed, installed first when
                         root, else Understudy's own SCTP endpoint; default auto)
  -h, --help             this help

Examples:
  npm start
  npm start -- --scenario port-election
  npm start -- --list`

/**
 * What `argv` (without node and the script) asks for, given the scenarios' names.
 *
 * @since 0.1.0
 */
export const parse = (argv: ReadonlyArray<string>, names: ReadonlyArray<string>): Invocation => {
  const parsed = Cli.parse<Given | Cli.Answer>(commandLine, argv)
  switch (parsed._tag) {
    // The showcase prints its own usage, which names the scenarios there are; it offers
    // no --version (none is given to the kit), so that answer never comes.
    case "Help":
    case "Version":
      return { _tag: "Help" }
    case "UsageError":
      return parsed
    case "Given":
      return check(parsed, names)
  }
}

/** The flags as given, before they are checked against the scenarios there are. */
interface Given {
  readonly _tag: "Given"
  readonly scenarios: ReadonlyArray<string>
  readonly list: boolean
  readonly sctpPeer: string | undefined
}

const commandLine = Command.make(
  "showcase",
  {
    scenario: Flag.String("scenario").pipe(
      Flag.withMetavar("NAME"),
      Flag.withDescription("run only this scenario (repeatable)"),
      Flag.atLeast(0),
    ),
    list: Cli.toggle("list", "list the scenarios and exit"),
    "sctp-peer": Cli.text("sctp-peer", "PEER", "the outside SCTP peer of sctp-cluster"),
  },
  (input) =>
    Cli.choose<Given>({
      _tag: "Given",
      scenarios: input.scenario,
      list: input.list,
      sctpPeer: Option.getOrUndefined(input["sctp-peer"]),
    }),
)

const check = (given: Given, names: ReadonlyArray<string>): Invocation => {
  if (given.list) return { _tag: "List" }
  const chosen = given.scenarios
  const unknown = chosen.filter((name) => !names.includes(name))
  if (unknown.length > 0)
    return {
      _tag: "UsageError",
      message: `unknown scenario ${unknown.map((name) => `'${name}'`).join(", ")} (there are: ${names.join(", ")})`,
    }
  const peer = given.sctpPeer ?? "auto"
  if (!isPeer(peer))
    return {
      _tag: "UsageError",
      message: `--sctp-peer must be one of ${sctpPeers.join(", ")}, not '${peer}'`,
    }
  return {
    _tag: "Run",
    // In the registry's order, each once.
    scenarios: chosen.length === 0 ? names : names.filter((name) => chosen.includes(name)),
    options: { sctpPeer: peer },
  }
}

const isPeer = (value: string): value is Options["sctpPeer"] =>
  (sctpPeers as ReadonlyArray<string>).includes(value)
