/**
 * The showcase's command line, parsed by `node:util`'s `parseArgs`: a pure function from
 * argv to what to do, so every flag and every error is tested without a process.
 *
 * @since 0.1.0
 */
import { parseArgs } from "node:util"
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
  let parsed: ReturnType<typeof parseOptions>
  try {
    parsed = parseOptions(argv)
  } catch (error) {
    return { _tag: "UsageError", message: error instanceof Error ? error.message : String(error) }
  }
  const { values } = parsed
  if (values.help === true) return { _tag: "Help" }
  if (values.list === true) return { _tag: "List" }
  const chosen = values.scenario ?? []
  const unknown = chosen.filter((name) => !names.includes(name))
  if (unknown.length > 0)
    return {
      _tag: "UsageError",
      message: `unknown scenario ${unknown.map((name) => `'${name}'`).join(", ")} (there are: ${names.join(", ")})`,
    }
  const peer = values["sctp-peer"] ?? "auto"
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

const parseOptions = (argv: ReadonlyArray<string>) =>
  parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      scenario: { type: "string", multiple: true },
      list: { type: "boolean" },
      "sctp-peer": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  })

const isPeer = (value: string): value is Options["sctpPeer"] =>
  (sctpPeers as ReadonlyArray<string>).includes(value)
