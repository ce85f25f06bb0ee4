/**
 * What the commands share: JSON lines on stdout, exit codes, the cluster key file, and
 * running a command until a signal.
 *
 * @since 0.1.0
 */
import { ClusterKey } from "@understudy/transport"
import { Cause, Deferred, Effect, Fiber, Logger, type Redacted } from "effect"
import { programName } from "./cli.ts"

/** @since 0.1.0 */
export const exitCode = { ok: 0, failure: 1, usage: 2 } as const

/** One JSON object per line on stdout: what tests and the showcase read. @since 0.1.0 */
export const line = (value: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ ...value, wallMs: Date.now() })}\n`)
}

/** Logs go to stderr, so stdout holds only JSON lines. @since 0.1.0 */
export const stderrLogger = Logger.layer([Logger.withConsoleError(Logger.formatLogFmt)])

/**
 * The cluster key of `--cluster-key-file` (refused when others may read it), or, without
 * one (the explicit `--insecure`), nothing: said on stderr and in a `warning` line, every
 * time the node starts.
 *
 * @since 0.1.0
 */
export const clusterKeyOf = (
  path: string | undefined,
): Effect.Effect<Redacted.Redacted<Uint8Array> | undefined, ClusterKey.ClusterKeyError> =>
  path !== undefined
    ? ClusterKey.readFile(path)
    : Effect.sync(() => {
        const warning =
          "--insecure: the intra-cluster link and the store are not authenticated; anyone who reaches them can read every association's state and depose the primary"
        process.stderr.write(`${programName}: warning: ${warning}\n`)
        line({ t: "warning", warning })
        return undefined
      })

/**
 * What asked a long-running command to stop (`HandedOver`: a primary's planned handover is
 * done). @since 0.1.0 @category models
 */
export type StopReason = "SIGTERM" | "SIGINT" | "StdinClosed" | "HandedOver"

/**
 * Runs a long-lived command. The first SIGTERM / SIGINT (or, with
 * SCTP_CLUSTER_EXIT_ON_STDIN_EOF=1, the end of stdin: a parent that dies takes its children
 * with it) completes `stop`, which the command awaits to end its own way; a second signal
 * interrupts it. Failures are printed on stderr and give exit code 1.
 *
 * @since 0.1.0
 */
export const runUntilSignal = (
  program: (stop: Deferred.Deferred<StopReason>) => Effect.Effect<number, unknown>,
): Promise<number> =>
  new Promise((resolve) => {
    const stop = Deferred.makeUnsafe<StopReason>()
    const fiber = Effect.runFork(program(stop).pipe(Effect.provide(stderrLogger)))
    let signals = 0
    const onStop = (reason: StopReason) => () => {
      signals++
      if (signals === 1) Deferred.doneUnsafe(stop, Effect.succeed(reason))
      else Effect.runFork(Fiber.interrupt(fiber))
    }
    process.on("SIGINT", onStop("SIGINT"))
    process.on("SIGTERM", onStop("SIGTERM"))
    if (process.env.SCTP_CLUSTER_EXIT_ON_STDIN_EOF === "1") {
      process.stdin.on("end", onStop("StdinClosed"))
      process.stdin.on("error", onStop("StdinClosed"))
      process.stdin.resume()
    }
    fiber.addObserver((exit) => {
      if (exit._tag === "Success") resolve(exit.value)
      else if (Cause.hasInterruptsOnly(exit.cause)) resolve(exitCode.ok)
      else resolve(reportFailure(exit.cause))
    })
  })

/**
 * Runs a short command to its end; failures are printed on stderr and give exit code 1.
 *
 * @since 0.1.0
 */
export const runToEnd = (program: Effect.Effect<number, unknown>): Promise<number> =>
  Effect.runPromiseExit(program.pipe(Effect.provide(stderrLogger))).then((exit) =>
    exit._tag === "Success" ? exit.value : reportFailure(exit.cause),
  )

const reportFailure = (cause: Cause.Cause<unknown>): number => {
  const error = Cause.squash(cause)
  process.stderr.write(
    `${programName}: ${error instanceof Error ? error.message : Cause.pretty(cause)}\n`,
  )
  return exitCode.failure
}
