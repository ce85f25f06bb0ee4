/**
 * Command lines on `effect/cli`, parsed without running anything: `parse` turns argv into
 * what a command's handler chose (`choose`), or into what the command line answers by
 * itself (help, version, a usage error). Apps keep `parse` pure, so every flag and every
 * message is unit tested without a process, and print the answer with `answer`.
 *
 * @since 0.1.0
 */
import {
  Context,
  Effect,
  Exit,
  FileSystem,
  Layer,
  Option,
  Path,
  Sink,
  Stdio,
  Stream,
  Terminal,
} from "effect"
import { CliConfig, CliError, CliOutput, Command, Flag, GlobalFlag } from "effect/cli"
import { ChildProcessSpawner } from "effect/process"
import * as ExitCode from "./ExitCode.ts"

/** `--help` / `-h`: the help of the command named (on stdout, exit 0). @since 0.1.0 @category models */
export interface Help {
  readonly _tag: "Help"
  readonly text: string
}

/** `--version` / `-V`: the program's name and version. @since 0.1.0 @category models */
export interface Version {
  readonly _tag: "Version"
  readonly text: string
}

/** A command line refused, with what is wrong (on stderr, exit 2). @since 0.1.0 @category models */
export interface UsageError {
  readonly _tag: "UsageError"
  readonly message: string
}

/** What a command line answers by itself, without running the app. @since 0.1.0 @category models */
export type Answer = Help | Version | UsageError

/** A usage error with this message. @since 0.1.0 @category constructors */
export const usageError = (message: string): UsageError => ({ _tag: "UsageError", message })

/**
 * Where a command's handler puts what it chose; `parse` provides a fresh one per command
 * line.
 *
 * @since 0.1.0
 * @category services
 */
export class Choice extends Context.Service<Choice, { value: unknown }>()(
  "@understudy/app-kit/Cli/Choice",
) {}

/** A handler's effect: `value` is what the command line asks for. @since 0.1.0 */
export const choose = <A>(value: A): Effect.Effect<void, never, Choice> =>
  Effect.gen(function* () {
    const choice = yield* Choice
    choice.value = value
  })

/**
 * A command's description as `--help` shows it: effect/cli indents its first line only, so
 * the others are indented here to match.
 *
 * @since 0.1.0
 */
export const description = (text: string): string => text.replaceAll(/\n(?=.)/g, "\n  ")

/**
 * An optional flag with a value, checked by the app (so its message is the app's): absent
 * is `Option.none()`.
 *
 * @since 0.1.0
 * @category flags
 */
export const text = (
  name: string,
  metavar: string,
  description: string,
): Flag.Flag<Option.Option<string>> =>
  Flag.String(name).pipe(
    Flag.withMetavar(metavar),
    Flag.withDescription(description),
    Flag.optional,
  )

/**
 * A flag with a value, given any number of times (`--udp a --udp b`): the values in the
 * order given, none when absent.
 *
 * @since 0.1.0
 * @category flags
 */
export const repeated = (
  name: string,
  metavar: string,
  description: string,
): Flag.Flag<ReadonlyArray<string>> =>
  Flag.String(name).pipe(
    Flag.withMetavar(metavar),
    Flag.withDescription(description),
    Flag.atLeast(0),
  )

/** A flag without a value: false unless given. @since 0.1.0 @category flags */
export const toggle = (name: string, description: string): Flag.Flag<boolean> =>
  Flag.Boolean(name).pipe(Flag.withDescription(description), Flag.withDefault(false))

/**
 * The flags given, by their names (`--name`), for checks that look at several at once: a
 * given toggle maps to `""`, an absent flag is not there. A value given empty
 * (`--name=`) is refused as `--name needs a value`.
 *
 * @since 0.1.0
 */
export const given = (
  input: Readonly<Record<string, Option.Option<string> | boolean>>,
): ReadonlyMap<string, string> | UsageError => {
  const values = new Map<string, string>()
  for (const [name, value] of Object.entries(input)) {
    if (value === true) values.set(`--${name}`, "")
    else if (typeof value === "object" && Option.isSome(value)) {
      if (value.value === "") return usageError(`--${name} needs a value`)
      values.set(`--${name}`, value.value)
    }
  }
  return values
}

/**
 * A whole number written in decimal digits (no sign, no exponent) from `min` to `max`, or
 * `undefined`.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseInteger = (text: string, min: number, max: number): number | undefined => {
  if (!/^\d+$/.test(text)) return undefined
  const value = Number(text)
  return Number.isSafeInteger(value) && value >= min && value <= max ? value : undefined
}

/**
 * Milliseconds of a duration as the apps' flags take it: `10s`, `1500ms`, `2m`, or a bare
 * number of seconds; more than 0 and at most a day, else `undefined`.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseDuration = (text: string): number | undefined => {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text)
  if (match === null) return undefined
  const value = Number(match[1])
  const unit = match[2] ?? "s"
  const ms = unit === "ms" ? value : unit === "s" ? value * 1000 : value * 60_000
  return ms > 0 && ms <= 24 * 3_600_000 ? Math.round(ms) : undefined
}

/** A flag an app checks itself: a text or a toggle. @since 0.1.0 @category flags */
export type CheckedFlag = Flag.Flag<Option.Option<string>> | Flag.Flag<boolean>

/**
 * Subcommands over one table of flags: each takes the flags it names, and its handler
 * chooses what `check` makes of the flags given (by name, as `given` maps them), so the
 * app checks values and flags together in one place.
 *
 * @since 0.1.0
 * @category constructors
 */
export const subcommands =
  <Flags extends Readonly<Record<string, CheckedFlag>>, A>(
    flags: Flags,
    check: (command: string, values: ReadonlyMap<string, string>) => A,
  ) =>
  (name: string, names: ReadonlyArray<keyof Flags & string>, description: string) => {
    const taken: Record<string, CheckedFlag> = {}
    for (const flag of names) taken[flag] = flags[flag]!
    return Command.make(name, taken, (input) => {
      const values = given(input)
      return choose(values instanceof Map ? check(name, values) : values)
    }).pipe(Command.withDescription(description))
  }

/** @since 0.1.0 @category models */
export interface Options {
  /** With a version, `--version` / `-V` prints `NAME VERSION`; without, there is no such flag. */
  readonly version?: string
  /**
   * The usage error when the command line names no subcommand of a command that has no
   * handler of its own (default `no command given`; `effect/cli` would print the help).
   */
  readonly noCommand?: string
}

/**
 * The only built-in flags: `--help` (`-h`), and `--version` (`-V`) when the app has one.
 * No wizard, completions or log level: the apps' command lines are what they document.
 */
const versionFlag = GlobalFlag.Action({
  flag: Flag.Boolean("version").pipe(
    Flag.withAlias("V"),
    Flag.withDescription("Show the version"),
    Flag.withDefault(false),
  ),
  run: (_, { command, version }) =>
    Effect.gen(function* () {
      const presenter = yield* CliOutput.Presenter
      yield* presenter.present({ _tag: "Version", name: command.name, version })
    }),
})

/**
 * What parsing needs of the platform: the arguments and a terminal width for the help; no
 * files, terminal input or child processes (no flag reads a file or prompts). Whatever the
 * command line answers is kept in `answered`, not printed.
 */
const environment = (options: Options, answered: { answer?: Answer }) =>
  Layer.mergeAll(
    FileSystem.layerNoop({}),
    Path.layer,
    Layer.succeed(
      Stdio.Stdio,
      Stdio.make({
        args: Effect.succeed([]),
        stdout: () => Sink.drain,
        stderr: () => Sink.drain,
        stdin: Stream.empty,
      }),
    ),
    Layer.succeed(
      Terminal.Terminal,
      Terminal.make({
        columns: Effect.succeed(100),
        rows: Effect.succeed(24),
        size: Effect.die("no terminal size"),
        readInput: Effect.die("no terminal input"),
        readLine: Effect.die("no terminal input"),
        display: () => Effect.die("no terminal output"),
      }),
    ),
    Layer.succeed(
      ChildProcessSpawner.ChildProcessSpawner,
      ChildProcessSpawner.make(() => Effect.die("no child processes")),
    ),
    CliConfig.layer({
      builtIns: options.version === undefined ? [GlobalFlag.Help] : [GlobalFlag.Help, versionFlag],
    }),
    CliOutput.layer(CliOutput.defaultFormatter({ colors: false })),
    CliOutput.layerPresenter({
      present: (event) =>
        Effect.gen(function* () {
          const formatter = yield* CliOutput.Formatter
          switch (event._tag) {
            case "Help":
              answered.answer =
                event.reason === "Implicit"
                  ? usageError(options.noCommand ?? "no command given")
                  : { _tag: "Help", text: formatter.formatHelpDoc(event.helpDoc) }
              return
            case "Version":
              answered.answer = { _tag: "Version", text: `${event.name} ${event.version}` }
              return
            case "InvalidInvocation":
              answered.answer = usageError(event.errors.map((error) => error.message).join("\n"))
              return
          }
        }),
    }),
  )

/**
 * Parses `argv` (the arguments after the program name) with `command`, whose handlers
 * `choose` what to do. Never throws for bad input: that is a `UsageError` saying what is
 * wrong. Synchronous: a handler only chooses, it runs nothing.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = <A>(
  // biome-ignore lint/suspicious/noExplicitAny: any command whose handlers only choose
  command: Command.Command<any, any, any, never, Choice>,
  argv: ReadonlyArray<string>,
  options: Options = {},
): A | Answer => {
  const choice: { value: unknown } = { value: undefined }
  const answered: { answer?: Answer } = {}
  const exit = Effect.runSyncExit(
    Command.runWith(command, { version: options.version ?? "" })(argv).pipe(
      Effect.provide(environment(options, answered)),
      Effect.provideService(Choice, choice),
    ),
  )
  if (answered.answer !== undefined) return answered.answer
  if (Exit.isFailure(exit)) {
    const error = Exit.findErrorOption(exit)
    if (error._tag === "Some" && CliError.isCliError(error.value))
      return usageError(error.value.message)
    throw new Error("command line parsing failed", { cause: exit.cause })
  }
  return choice.value as A
}

/**
 * Prints what the command line answered (help and version on stdout; a usage error on
 * stderr as `PROGRAM: message` and a hint) and returns the exit code.
 *
 * @since 0.1.0
 */
export const answer = (program: string, answered: Answer): number => {
  switch (answered._tag) {
    case "Help":
    case "Version":
      process.stdout.write(`${answered.text}\n`)
      return ExitCode.ok
    case "UsageError":
      process.stderr.write(`${program}: ${answered.message}\nTry '${program} --help'.\n`)
      return ExitCode.usage
  }
}

/** Whether `value` is something the command line answered by itself. @since 0.1.0 */
export const isAnswer = (value: { readonly _tag: string }): value is Answer =>
  value._tag === "Help" || value._tag === "Version" || value._tag === "UsageError"

/**
 * Ends the process with the exit code `main` resolves to; a defect (a rejection) is said
 * on stderr and exits 70.
 *
 * @since 0.1.0
 */
export const exitWith = (program: string, main: () => Promise<number> | number): void => {
  Promise.resolve()
    .then(main)
    .then(
      (code) => process.exit(code),
      (error: unknown) => {
        process.stderr.write(
          `${program}: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
        )
        process.exit(ExitCode.internal)
      },
    )
}
