/**
 * The command line of `instance-supervisor`, parsed by hand: a pure function from argv to
 * what to do, so every flag and every error is unit tested without a process.
 *
 * @since 0.1.0
 */
import { SocketDirectory } from "@understudy/port-election"
import { Address, Observability } from "@understudy/transport"
import type { Effect } from "effect"

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
  | { readonly _tag: "Help" }
  | { readonly _tag: "Version" }
  | {
      readonly _tag: "Run"
      readonly target: Target
      readonly slots: number
      readonly command: readonly [string, ...Array<string>]
    }
  | { readonly _tag: "Status"; readonly target: Target; readonly json: boolean }
  | { readonly _tag: "UsageError"; readonly message: string }

/** @since 0.1.0 */
export const programName = "instance-supervisor"

/** @since 0.1.0 */
export const version = "0.0.0"

/** Slots beyond this are almost certainly a typo, and each waiter costs the supervisor memory. */
export const slotsMax = 1024

/** Names become part of a socket file name (at most 107 bytes with its directory). */
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

/** @since 0.1.0 */
export const usage = `Usage:
  ${programName} --name NAME [--slots N] [--address URL | --port N] [--secret PATH] -- COMMAND [ARG...]
  ${programName} status --name NAME [--address URL | --port N] [--secret PATH] [--json]
  ${programName} --help | --version

Runs COMMAND once a slot of the machine-wide semaphore NAME is free: at most N commands
(default 1) run at once across every invocation with the same NAME, whichever of them is
the supervisor. The command's exit code is passed through (128+signal if it was killed).
SIGINT and SIGTERM go to the command; if this process is killed, the kernel kills the
command too (Linux: setpriv --pdeathsig), so its slot is never used twice.

Options:
  --name NAME      semaphore and election name: letters, digits, '.', '_', '-' (required)
  --slots N        how many commands may run at once, 1..${slotsMax} (default 1)
  --address URL    election address (default: the socket file
                   understudy-${programName}-NAME.sock in $XDG_RUNTIME_DIR, else in
                   ~/.understudy; a directory only you may enter, so no other user can
                   bind or reach it); unix://@NAME for an abstract socket
  --port N         use tcp://127.0.0.1:N as the election address
  --secret PATH    per-user secret file (default ~/.understudy/secret)
  --json           status: print the registry as JSON
${Observability.usage}
  -h, --help       show this help
  -V, --version    show the version

Exit codes: the command's own; 2 bad usage; 3 election error; 4 slot lost; 130/143 stopped
while waiting.`

const fail = (message: string): Invocation => ({ _tag: "UsageError", message })

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

const flagsWithValue = new Set(["--name", "--slots", "--address", "--port", "--secret"])
const booleanFlags = new Set(["--json", "--help", "-h", "--version", "-V"])

/**
 * Parses the arguments after the program name. Never throws: bad input is a `UsageError`
 * whose message says what is wrong.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (argv: ReadonlyArray<string>): Invocation => {
  const values = new Map<string, string>()
  const switches = new Set<string>()
  let subcommand: "status" | undefined
  let command: Array<string> | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--") {
      command = argv.slice(i + 1)
      break
    }
    if (arg.startsWith("-")) {
      const equals = arg.indexOf("=")
      const flag = arg.startsWith("--") && equals > 0 ? arg.slice(0, equals) : arg
      if (booleanFlags.has(flag)) {
        if (flag !== arg) return fail(`${flag} takes no value`)
        switches.add(flag === "-h" ? "--help" : flag === "-V" ? "--version" : flag)
        continue
      }
      if (!flagsWithValue.has(flag)) return fail(`unknown option ${flag}`)
      if (values.has(flag)) return fail(`${flag} given twice`)
      let value: string | undefined
      if (flag !== arg) value = arg.slice(equals + 1)
      else {
        value = argv[i + 1]
        i++
      }
      if (value === undefined || value === "") return fail(`${flag} needs a value`)
      values.set(flag, value)
      continue
    }
    if (arg === "status" && subcommand === undefined) {
      subcommand = "status"
      continue
    }
    return fail(`unexpected argument ${JSON.stringify(arg)} (put the command after --)`)
  }

  // Help and version win over everything else, as users expect of any CLI.
  if (switches.has("--help")) return { _tag: "Help" }
  if (switches.has("--version")) return { _tag: "Version" }

  const name = values.get("--name")
  if (name === undefined) return fail("--name is required")
  if (!namePattern.test(name)) {
    return fail(`--name ${JSON.stringify(name)}: use 1-64 letters, digits, '.', '_' or '-'`)
  }

  const addressText = values.get("--address")
  const portText = values.get("--port")
  if (addressText !== undefined && portText !== undefined) {
    return fail("--address and --port exclude each other")
  }
  let address: Address.StreamAddress | undefined
  if (addressText !== undefined) {
    const parsed = Address.parseStream(addressText)
    if (parsed instanceof Address.InvalidAddress) {
      return fail(`--address ${addressText}: ${parsed.reason}`)
    }
    address = parsed
  }
  if (portText !== undefined) {
    const port = parseInteger(portText, 1, 65535)
    if (port === undefined) return fail(`--port ${portText}: expected an integer from 1 to 65535`)
    address = Address.tcp("127.0.0.1", port)
  }
  const target: Target = { name, address, secretPath: values.get("--secret") }

  if (subcommand === "status") {
    if (values.has("--slots")) return fail("status takes no --slots")
    if (command !== undefined) return fail("status takes no command")
    return { _tag: "Status", target, json: switches.has("--json") }
  }
  if (switches.has("--json")) return fail("--json is an option of status")

  const slotsText = values.get("--slots")
  const slots = slotsText === undefined ? 1 : parseInteger(slotsText, 1, slotsMax)
  if (slots === undefined) {
    return fail(`--slots ${slotsText}: expected an integer from 1 to ${slotsMax}`)
  }
  const [file, ...args] = command ?? []
  if (file === undefined || file === "") return fail("no command: give it after --")
  return { _tag: "Run", target, slots, command: [file, ...args] }
}
