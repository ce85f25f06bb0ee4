/**
 * What the commands share: JSON lines on stdout, exit codes, ending on a signal.
 *
 * @since 0.1.0
 */
import { Cause, Effect, Fiber, Logger } from "effect"

/** @since 0.1.0 */
export const exitCode = { ok: 0, failure: 1, usage: 2 } as const

/** One JSON object per line on stdout: what tests and the showcase read. @since 0.1.0 */
export const line = (value: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ ...value, wallMs: Date.now() })}\n`)
}

/** Logs go to stderr, so stdout holds only JSON lines. @since 0.1.0 */
export const stderrLogger = Logger.layer([Logger.withConsoleError(Logger.formatLogFmt)])

/**
 * Runs a long-lived command until it ends or SIGINT / SIGTERM arrives (then it is
 * interrupted, so its scope closes cleanly). With SERVER_GROUP_EXIT_ON_STDIN_EOF=1 the end
 * of stdin ends it too: a parent that dies takes its children with it.
 *
 * @since 0.1.0
 */
export const runUntilSignal = (program: Effect.Effect<number, unknown>): Promise<number> =>
  new Promise((resolve) => {
    const fiber = Effect.runFork(program.pipe(Effect.provide(stderrLogger)))
    const stop = () => Effect.runFork(Fiber.interrupt(fiber))
    process.once("SIGINT", stop)
    process.once("SIGTERM", stop)
    if (process.env.SERVER_GROUP_EXIT_ON_STDIN_EOF === "1") {
      process.stdin.on("end", stop)
      process.stdin.on("error", stop)
      process.stdin.resume()
    }
    fiber.addObserver((exit) => {
      if (exit._tag === "Success") resolve(exit.value)
      else if (Cause.hasInterruptsOnly(exit.cause)) resolve(exitCode.ok)
      else {
        const error = Cause.squash(exit.cause)
        process.stderr.write(
          `server-group: ${error instanceof Error ? error.message : Cause.pretty(exit.cause)}\n`,
        )
        resolve(exitCode.failure)
      }
    })
  })
