/**
 * Running an app's program until it ends or a signal stops it, and turning how it ended
 * into an exit code: its own on success, 0 when a signal interrupted it, 1 (said on stderr)
 * on failure.
 *
 * @since 0.1.0
 */
import { Cause, Deferred, Effect, Exit, Fiber } from "effect"
import * as ExitCode from "./ExitCode.ts"
import { stderrLogger } from "./JsonLines.ts"

/** What asked a program to stop, as the kit tells it. @since 0.1.0 @category models */
export type SignalReason = "SIGTERM" | "SIGINT" | "StdinClosed"

/** @since 0.1.0 @category models */
export interface Options {
  /** The program's name: a failure is printed on stderr as `PROGRAM: message`. */
  readonly program: string
  /**
   * When this environment variable is `1`, the end of stdin stops the program too: a
   * parent that dies (closing the pipe) takes its children with it.
   */
  readonly stdinEofVariable?: string
}

/** The exit code of a program's exit; a failure is printed on stderr. @since 0.1.0 */
export const exitCodeOf = (program: string, exit: Exit.Exit<number, unknown>): number => {
  if (Exit.isSuccess(exit)) return exit.value
  if (Cause.hasInterruptsOnly(exit.cause)) return ExitCode.ok
  const error = Cause.squash(exit.cause)
  process.stderr.write(
    `${program}: ${error instanceof Error ? error.message : Cause.pretty(exit.cause)}\n`,
  )
  return ExitCode.failure
}

const start = <Reason extends string>(
  program: (stop: Deferred.Deferred<Reason | SignalReason>) => Effect.Effect<number, unknown>,
  options: Options,
  firstSignalInterrupts: boolean,
): Promise<number> =>
  new Promise((resolve) => {
    const stop = Deferred.makeUnsafe<Reason | SignalReason>()
    // The listeners come first: a program's first line may make its parent signal it at once.
    let fiber: Fiber.Fiber<number, unknown> | undefined
    let signals = 0
    const onStop = (reason: SignalReason) => () => {
      signals++
      if (signals === 1 && !firstSignalInterrupts) Deferred.doneUnsafe(stop, Exit.succeed(reason))
      else if (fiber !== undefined) Effect.runFork(Fiber.interrupt(fiber))
    }
    // Interrupted at the first signal, the program listens once: a second signal while it
    // closes its scopes ends the process the default way.
    const listen = firstSignalInterrupts ? process.once.bind(process) : process.on.bind(process)
    listen("SIGINT", onStop("SIGINT"))
    listen("SIGTERM", onStop("SIGTERM"))
    if (options.stdinEofVariable !== undefined && process.env[options.stdinEofVariable] === "1") {
      process.stdin.on("end", onStop("StdinClosed"))
      process.stdin.on("error", onStop("StdinClosed"))
      process.stdin.resume()
    }
    fiber = Effect.runFork(program(stop).pipe(Effect.provide(stderrLogger)))
    fiber.addObserver((exit) => resolve(exitCodeOf(options.program, exit)))
  })

/**
 * Runs a long-lived program; the first SIGINT / SIGTERM (or end of stdin, see
 * `stdinEofVariable`) interrupts it, so its scopes close cleanly. Logs go to stderr.
 *
 * @since 0.1.0
 */
export const runUntilSignal = (
  program: Effect.Effect<number, unknown>,
  options: Options,
): Promise<number> => start(() => program, options, true)

/**
 * Runs a long-lived program that ends its own way: the first SIGINT / SIGTERM (or end of
 * stdin) completes `stop`, which the program awaits; a second signal interrupts it.
 *
 * @since 0.1.0
 */
export const runUntilStopped = <Reason extends string = SignalReason>(
  program: (stop: Deferred.Deferred<Reason | SignalReason>) => Effect.Effect<number, unknown>,
  options: Options,
): Promise<number> => start(program, options, false)

/**
 * Runs a short program to its end, with logs on stderr; a failure is printed and gives 1.
 *
 * @since 0.1.0
 */
export const runToEnd = (
  program: Effect.Effect<number, unknown>,
  options: Pick<Options, "program">,
): Promise<number> =>
  Effect.runPromiseExit(program.pipe(Effect.provide(stderrLogger))).then((exit) =>
    exitCodeOf(options.program, exit),
  )
