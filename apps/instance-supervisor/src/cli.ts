/**
 * The command line of `instance-supervisor`, on `effect/cli`: `parse` is a pure function
 * from argv to what to do, so every flag and every error is unit tested without a process.
 *
 * @since 0.1.0
 */
import { Cli } from "@understudy/app-kit"
import { SocketDirectory } from "@understudy/port-election"
import { Address, Observability } from "@understudy/transport"
import { Effect } from "effect"
import { Command } from "effect/cli"
/** @since 0.1.0 @category models */
export interface Target {
  /** The semaphore's name; also names the election address unless one is given. */
  readonly name: string
  /**
   * `--address` or `--port`; undefined for the default, a socket file in the per-user
   * socket directory (`defaultAddress`), which only this user can bind or reach.
   */
  readonly address: Address.StreamAddress | undefined
  /** The per-user secret file; the library's default (`~/.understudy/secret`) if absent. */
  readonly secretPath: string | undefined
}

/** @since 0.1.0 @category models */
export type Invocation =
  | Cli.Answer
  | {
      readonly _tag: "Run"
      readonly target: Target
      readonly slots: number
      readonly command: readonly [string, ...Array<string>]
    }
  | { readonly _tag: "Status"; readonly target: Target; readonly json: boolean }

/** @since 0.1.0 */
export const programName = "instance-supervisor"

/** @since 0.1.0 */
export const version = "0.0.0"

/** Slots beyond this are almost certainly a typo, and each waiter costs the supervisor memory. */
export const slotsMax = 1024

/** Names become part of a socket file name (at most 107 bytes with its directory). */
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

/** What `--help` says before the flags. */
const description = `Usage:
  ${programName} --name NAME [--slots N] [--address URL | --port N] [--secret PATH] -- COMMAND [ARG...]
  ${programName} status --name NAME [--address URL | --port N] [--secret PATH] [--json]
  ${programName} --help | --version

Runs COMMAND once a slot of the machine-wide semaphore NAME is free: at most N commands
(default 1) run at once across every invocation with the same NAME, whichever of them is
the supervisor. The command's exit code is passed through (128+signal if it was killed).
SIGINT and SIGTERM go to the command; if this process is killed, the kernel kills the
command too (Linux: setpriv --pdeathsig), so its slot is never used twice.

Also:
${Observability.usage}

Exit codes: the command's own; 2 bad usage; 3 election error; 4 slot lost; 130/143 stopped
while waiting.`

/**
 * The address an invocation uses when none is given: one socket file per name in the
 * per-user socket directory. Not an abstract socket: those have no permissions, and any
 * local user who bound the name first would block every election on it.
 */
export const defaultAddress = (
  name: string,
): Effect.Effect<Address.Unix, SocketDirectory.SocketDirectoryError> =>
  SocketDirectory.defaultAddress(programName, name)

/** The flags of both commands: which semaphore, and where its election runs. */
const targetFlags = {
  name: Cli.text(
    "name",
    "NAME",
    "semaphore and election name: letters, digits, '.', '_', '-' (required)",
  ),
  address: Cli.text(
    "address",
    "URL",
    `election address (default: the socket file understudy-${programName}-NAME.sock in $XDG_RUNTIME_DIR, else in ~/.understudy; a directory only you may enter, so no other user can bind or reach it); unix://@NAME for an abstract socket`,
  ),
  port: Cli.text("port", "N", "use tcp://127.0.0.1:N as the election address"),
  secret: Cli.text("secret", "PATH", "per-user secret file (default ~/.understudy/secret)"),
}

const target = (values: ReadonlyMap<string, string>): Target | Cli.UsageError => {
  const name = values.get("--name")
  if (name === undefined) return Cli.usageError("--name is required")
  if (!namePattern.test(name)) {
    return Cli.usageError(
      `--name ${JSON.stringify(name)}: use 1-64 letters, digits, '.', '_' or '-'`,
    )
  }
  const addressText = values.get("--address")
  const portText = values.get("--port")
  if (addressText !== undefined && portText !== undefined) {
    return Cli.usageError("--address and --port exclude each other")
  }
  let address: Address.StreamAddress | undefined
  if (addressText !== undefined) {
    const parsed = Address.parseStream(addressText)
    if (parsed instanceof Address.InvalidAddress) {
      return Cli.usageError(`--address ${addressText}: ${parsed.reason}`)
    }
    address = parsed
  }
  if (portText !== undefined) {
    const port = Cli.parseInteger(portText, 1, 65535)
    if (port === undefined)
      return Cli.usageError(`--port ${portText}: expected an integer from 1 to 65535`)
    address = Address.tcp("127.0.0.1", port)
  }
  return { name, address, secretPath: values.get("--secret") }
}

/** A run: the target, its slots and the command after `--`. */
const runOf = (
  values: ReadonlyMap<string, string>,
  command: ReadonlyArray<string> | undefined,
): Invocation => {
  const chosen = target(values)
  if ("_tag" in chosen) return chosen
  const slotsText = values.get("--slots")
  const slots = slotsText === undefined ? 1 : Cli.parseInteger(slotsText, 1, slotsMax)
  if (slots === undefined) {
    return Cli.usageError(`--slots ${slotsText}: expected an integer from 1 to ${slotsMax}`)
  }
  const [file, ...args] = command ?? []
  if (file === undefined || file === "") return Cli.usageError("no command: give it after --")
  return { _tag: "Run", target: chosen, slots, command: [file, ...args] }
}

/** A status query: the target, and no command. */
const statusOf = (
  values: ReadonlyMap<string, string>,
  json: boolean,
  command: ReadonlyArray<string> | undefined,
): Invocation => {
  const chosen = target(values)
  if ("_tag" in chosen) return chosen
  if (command !== undefined) return Cli.usageError("status takes no command")
  return { _tag: "Status", target: chosen, json }
}

/**
 * The command tree; `command` is what followed `--` (effect/cli leaves it alone), so
 * only a run takes one.
 */
const commandLine = (command: ReadonlyArray<string> | undefined) => {
  const root = Command.make(programName, {
    slots: Cli.text("slots", "N", `how many commands may run at once, 1..${slotsMax} (default 1)`),
  }).pipe(
    Command.withDescription(Cli.description(description)),
    Command.withSharedFlags(targetFlags),
    Command.withHandler((input) => {
      const values = Cli.given(input)
      return Cli.choose(values instanceof Map ? runOf(values, command) : values)
    }),
  )
  const status = Command.make(
    "status",
    { json: Cli.toggle("json", "print the registry as JSON") },
    ({ json }) =>
      Effect.gen(function* () {
        const values = Cli.given(yield* root)
        return yield* Cli.choose(values instanceof Map ? statusOf(values, json, command) : values)
      }),
  ).pipe(
    Command.withDescription(
      "Prints the semaphore's registry: the supervisor, each run invocation and its slot",
    ),
  )
  return root.pipe(Command.withSubcommands([status]))
}

/**
 * Parses the arguments after the program name. Never throws: bad input is a `UsageError`
 * whose message says what is wrong.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (argv: ReadonlyArray<string>): Invocation => {
  const dash = argv.indexOf("--")
  const parsed = Cli.parse<Invocation>(
    commandLine(dash === -1 ? undefined : argv.slice(dash + 1)),
    dash === -1 ? argv : argv.slice(0, dash),
    { version },
  )
  // A command given without `--` reads as an unknown subcommand: say where it goes.
  return parsed._tag === "UsageError" && parsed.message.startsWith("Unknown subcommand")
    ? Cli.usageError(`${parsed.message} (put the command after --)`)
    : parsed
}
