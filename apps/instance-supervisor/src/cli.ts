/**
 * The command line of `instance-supervisor`, on `effect/cli`: `parse` is a pure function
 * from argv to what to do, so every flag and every error is unit tested without a process.
 *
 * @since 0.1.0
 */
import { Cli } from "@understudy/app-kit"
import { SocketDirectory } from "@understudy/port-election"
import { Address, Observability } from "@understudy/transport"
import { Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
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

const parseInteger = (text: string, min: number, max: number): number | undefined => {
  if (!/^\d+$/.test(text)) return undefined
  const value = Number(text)
  return Number.isSafeInteger(value) && value >= min && value <= max ? value : undefined
}

/** The flags of both commands: which semaphore, and where its election runs. */
const targetFlags = {
  name: Flag.String("name").pipe(
    Flag.withMetavar("NAME"),
    Flag.withDescription("semaphore and election name: letters, digits, '.', '_', '-' (required)"),
    Flag.optional,
  ),
  address: Flag.String("address").pipe(
    Flag.withMetavar("URL"),
    Flag.withDescription(
      `election address (default: the socket file understudy-${programName}-NAME.sock in $XDG_RUNTIME_DIR, else in ~/.understudy; a directory only you may enter, so no other user can bind or reach it); unix://@NAME for an abstract socket`,
    ),
    Flag.optional,
  ),
  port: Flag.String("port").pipe(
    Flag.withMetavar("N"),
    Flag.withDescription("use tcp://127.0.0.1:N as the election address"),
    Flag.optional,
  ),
  secret: Flag.String("secret").pipe(
    Flag.withMetavar("PATH"),
    Flag.withDescription("per-user secret file (default ~/.understudy/secret)"),
    Flag.optional,
  ),
}

type TargetInput = { readonly [K in keyof typeof targetFlags]: Option.Option<string> }

/** A flag's value: absent, or not empty (`--name=` is refused, as `--name` alone is). */
const present = (
  flag: string,
  value: Option.Option<string>,
): string | undefined | Cli.UsageError =>
  Option.isNone(value)
    ? undefined
    : value.value === ""
      ? Cli.usageError(`--${flag} needs a value`)
      : value.value

const target = (input: TargetInput): Target | Cli.UsageError => {
  const name = present("name", input.name)
  if (name === undefined) return Cli.usageError("--name is required")
  if (typeof name === "object") return name
  if (!namePattern.test(name)) {
    return Cli.usageError(
      `--name ${JSON.stringify(name)}: use 1-64 letters, digits, '.', '_' or '-'`,
    )
  }
  const addressText = present("address", input.address)
  if (typeof addressText === "object") return addressText
  const portText = present("port", input.port)
  if (typeof portText === "object") return portText
  const secretPath = present("secret", input.secret)
  if (typeof secretPath === "object") return secretPath
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
    const port = parseInteger(portText, 1, 65535)
    if (port === undefined)
      return Cli.usageError(`--port ${portText}: expected an integer from 1 to 65535`)
    address = Address.tcp("127.0.0.1", port)
  }
  return { name, address, secretPath }
}

/**
 * The command tree; `command` is what followed `--` (effect/cli leaves it alone), so
 * only a run takes one.
 */
const commandLine = (command: ReadonlyArray<string> | undefined) => {
  const root = Command.make(programName, {
    slots: Flag.String("slots").pipe(
      Flag.withMetavar("N"),
      Flag.withDescription(`how many commands may run at once, 1..${slotsMax} (default 1)`),
      Flag.optional,
    ),
  }).pipe(
    Command.withDescription(Cli.description(description)),
    Command.withSharedFlags(targetFlags),
    Command.withHandler((input) => {
      const chosen = target(input)
      if ("_tag" in chosen) return Cli.choose(chosen)
      const slotsText = present("slots", input.slots)
      if (typeof slotsText === "object") return Cli.choose(slotsText)
      const slots = slotsText === undefined ? 1 : parseInteger(slotsText, 1, slotsMax)
      if (slots === undefined) {
        return Cli.choose(
          Cli.usageError(`--slots ${slotsText}: expected an integer from 1 to ${slotsMax}`),
        )
      }
      const [file, ...args] = command ?? []
      if (file === undefined || file === "")
        return Cli.choose(Cli.usageError("no command: give it after --"))
      return Cli.choose<Invocation>({
        _tag: "Run",
        target: chosen,
        slots,
        command: [file, ...args],
      })
    }),
  )
  const status = Command.make(
    "status",
    {
      json: Flag.Boolean("json").pipe(
        Flag.withDescription("print the registry as JSON"),
        Flag.withDefault(false),
      ),
    },
    ({ json }) =>
      Effect.gen(function* () {
        const chosen = target(yield* root)
        if ("_tag" in chosen) return yield* Cli.choose(chosen)
        if (command !== undefined)
          return yield* Cli.choose(Cli.usageError("status takes no command"))
        return yield* Cli.choose<Invocation>({ _tag: "Status", target: chosen, json })
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
