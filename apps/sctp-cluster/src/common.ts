/**
 * What the commands share: JSON lines on stdout, exit codes, the cluster key file, and
 * running a command until a signal.
 *
 * @since 0.1.0
 */
import { ExitCode, JsonLines, Signals } from "@understudy/app-kit"
import { ClusterKey } from "@understudy/transport"
import { type Deferred, Effect, type Redacted } from "effect"
import { programName } from "./cli.ts"

/** 0 ok, 1 runtime error, 2 bad usage (every app's). @since 0.1.0 */
export const exitCode = ExitCode

/** One JSON object per line on stdout: what tests and the showcase read. @since 0.1.0 */
export const line = JsonLines.line

/** Logs go to stderr, so stdout holds only JSON lines. @since 0.1.0 */
export const stderrLogger = JsonLines.stderrLogger

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
export type StopReason = Signals.SignalReason | "HandedOver"

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
  Signals.runUntilStopped<StopReason>(program, {
    program: programName,
    stdinEofVariable: "SCTP_CLUSTER_EXIT_ON_STDIN_EOF",
  })

/**
 * Runs a short command to its end; failures are printed on stderr and give exit code 1.
 *
 * @since 0.1.0
 */
export const runToEnd = (program: Effect.Effect<number, unknown>): Promise<number> =>
  Signals.runToEnd(program, { program: programName })
