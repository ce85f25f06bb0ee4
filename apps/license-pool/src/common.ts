/**
 * What the three programs share: their command lines on `effect/cli` (help on stdout, usage
 * errors on stderr with exit code 2), the `--pool` list, the key file or `--insecure`, JSON
 * lines on stdout (logs on stderr), and running until a signal; what every app does so is
 * `@understudy/app-kit`'s.
 *
 * @since 0.1.0
 */
import { Cli, ExitCode, JsonLines, Signals } from "@understudy/app-kit"
import { ClusterKey } from "@understudy/transport"
import { Effect, type Option, type Redacted } from "effect"
import { type Command, Flag } from "effect/cli"

/** 0 ok, 1 runtime error, 2 bad usage (every app's). @since 0.1.0 */
export const exitCode = ExitCode

/** A server of the pool: its id, peer endpoint and client endpoint. @since 0.1.0 */
export interface PoolEntry {
  readonly id: string
  readonly host: string
  readonly peerPort: number
  readonly clientPort: number
}

const idPattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/

/** `s1=127.0.0.1:7001:7101,s2=...` (id=host:peer-port:client-port), in priority order. @since 0.1.0 */
export const parsePool = (text: string): ReadonlyArray<PoolEntry> | string => {
  const entries: Array<PoolEntry> = []
  for (const part of text.split(",")) {
    const match = /^([^=]+)=([0-9.]+):(\d+):(\d+)$/.exec(part)
    if (match === null)
      return `--pool entry ${JSON.stringify(part)}: expected ID=HOST:PEER_PORT:CLIENT_PORT`
    const [, id, host, peer, client] = match
    if (!idPattern.test(id!))
      return `--pool id ${JSON.stringify(id)}: use letters, digits, '_', '-'`
    if (entries.some((entry) => entry.id === id)) return `--pool lists ${id} twice`
    const peerPort = Number(peer)
    const clientPort = Number(client)
    if (peerPort < 1 || peerPort > 65535 || clientPort < 1 || clientPort > 65535)
      return `--pool ${id}: bad port`
    entries.push({ id: id!, host: host!, peerPort, clientPort })
  }
  return entries.length === 0 ? "--pool is empty" : entries
}

/** `30s`, `1500ms`, `2m`, or seconds. @since 0.1.0 */
export const parseDuration = Cli.parseDuration

/**
 * The pool secret from `--key-file`, or `"insecure"` with `--insecure` (warned about).
 *
 * @since 0.1.0
 */
export const poolSecret = (
  keyFile: string | undefined,
  insecure: boolean,
): Effect.Effect<Redacted.Redacted<Uint8Array> | "insecure", ClusterKey.ClusterKeyError> =>
  insecure
    ? Effect.sync(() => {
        process.stderr.write(
          "WARNING: --insecure: pool traffic is not authenticated and tokens are forgeable\n",
        )
        return "insecure" as const
      })
    : ClusterKey.readFile(keyFile ?? "pool.key")

/** One JSON object per line on stdout. @since 0.1.0 */
export const line = JsonLines.line

/** Logs go to stderr, so stdout holds only JSON lines. @since 0.1.0 */
export const stderrLogger = JsonLines.stderrLogger

/** The program `runCommand` runs, which names it in a failure's message. */
let programName = "license-pool"

/** Runs until the program ends or SIGINT / SIGTERM interrupts it. @since 0.1.0 */
export const runUntilSignal = (program: Effect.Effect<number, unknown>): Promise<number> =>
  Signals.runUntilSignal(program, { program: programName })

/** The flags every program that talks to the pool has. @since 0.1.0 */
export const poolFlags = {
  pool: Flag.String("pool").pipe(
    Flag.withMetavar("ID=HOST:PEER_PORT:CLIENT_PORT,..."),
    Flag.withDescription("The servers of the pool, in leader priority order"),
    Flag.optional,
  ),
  keyFile: Flag.String("key-file").pipe(
    Flag.withDescription("The pool key (default pool.key, from 'license-admin keygen')"),
    Flag.optional,
  ),
  insecure: Flag.Boolean("insecure").pipe(
    Flag.withDescription("Run without the pool key: traffic unauthenticated (warned about)"),
    Flag.withDefault(false),
  ),
  json: Flag.Boolean("json").pipe(
    Flag.withDescription("Print JSON lines"),
    Flag.withDefault(false),
  ),
}

/**
 * What a command's handler chose to run: the command line is parsed (and `--help` answered)
 * by `effect/cli` first, then the program runs on its own runtime (`runUntilSignal`).
 *
 * @since 0.1.0
 */
export interface Chosen {
  run?: () => Promise<number> | number
}

/** A handler's effect: it chooses `run` as what the program runs. @since 0.1.0 */
export const choose = (chosen: Chosen, run: () => Promise<number> | number): Effect.Effect<void> =>
  Effect.sync(() => {
    chosen.run = run
  })

/** A text flag with its description: optional, or with a default. @since 0.1.0 */
export function textFlag(name: string, description: string): Flag.Flag<Option.Option<string>>
export function textFlag(name: string, description: string, fallback: string): Flag.Flag<string>
export function textFlag(
  name: string,
  description: string,
  fallback?: string,
): Flag.Flag<Option.Option<string>> | Flag.Flag<string> {
  const flag = Flag.String(name).pipe(Flag.withDescription(description))
  return fallback === undefined ? flag.pipe(Flag.optional) : flag.pipe(Flag.withDefault(fallback))
}

/**
 * Parses `args` with `command` (whose handler fills `chosen`), then runs what it chose.
 * `--help` prints the help and exits 0; a usage error prints the error and a hint on stderr
 * and exits 2.
 *
 * @since 0.1.0
 */
export const runCommand = async <Name extends string, Input, ContextInput>(
  program: string,
  command: Command.Command<Name, Input, ContextInput, never, never>,
  chosen: Chosen,
  args: ReadonlyArray<string> = process.argv.slice(2),
): Promise<number> => {
  programName = program
  const answered = Cli.parse<undefined>(command, args, { version: "0.1.0" })
  if (answered !== undefined) return Cli.answer(program, answered)
  return chosen.run === undefined ? exitCode.ok : chosen.run()
}

/** Prints a usage error and returns the exit code. @since 0.1.0 */
export const usageError = (program: string, message: string): number =>
  Cli.answer(program, Cli.usageError(message))
