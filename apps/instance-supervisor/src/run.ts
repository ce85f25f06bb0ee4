/**
 * `instance-supervisor --name N --slots K -- COMMAND`: join the election, take one permit of
 * semaphore N (limit K), run the command while holding it, release it when the command
 * exits, and exit with the command's code.
 *
 * @since 0.1.0
 */
import { type ChildProcess, spawn } from "node:child_process"
import { accessSync, constants as fsConstants } from "node:fs"
import { constants as osConstants } from "node:os"
import { Election, type Secret, type SocketDirectory } from "@understudy/port-election"
import { NodeTransport } from "@understudy/transport"
import { Deferred, Effect, Stream } from "effect"
import {
  complain,
  describeElectionError,
  electionOptions,
  exitCode,
  kindKey,
  type RunInvocation,
  shellQuote,
} from "./common.ts"

/**
 * `setpriv --pdeathsig KILL` makes the kernel kill the command when this process dies, even
 * by SIGKILL. Without it a killed instance's command would run on after its slot was
 * freed, and one more command than `--slots` would run at once.
 */
const setprivPath = "/usr/bin/setpriv"

const hasSetpriv = (): boolean => {
  if (process.platform !== "linux") return false
  try {
    accessSync(setprivPath, fsConstants.X_OK)
    return true
  } catch {
    return false
  }
}

type Outcome =
  | { readonly _tag: "Exited"; readonly code: number | null; readonly signal: string | null }
  | { readonly _tag: "SpawnFailed"; readonly message: string }
  | { readonly _tag: "Lost" }
  | { readonly _tag: "Failed"; readonly message: string }

/** The exit code of a shell for a command that exited with `code` or died of `signal`. */
export const exitCodeOf = (code: number | null, signal: string | null): number => {
  if (code !== null) return code
  const number = signal === null ? undefined : osConstants.signals[signal as NodeJS.Signals]
  return 128 + (number ?? 0)
}

const spawnCommand = (command: RunInvocation["command"]): ChildProcess => {
  const [file, ...args] = command
  return hasSetpriv()
    ? spawn(setprivPath, ["--pdeathsig", "KILL", "--", file, ...args], { stdio: "inherit" })
    : spawn(file, args, { stdio: "inherit" })
}

/**
 * Runs the invocation to its end and gives the process exit code. Never fails: every
 * error is printed as one line and becomes an exit code.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (invocation: RunInvocation): Effect.Effect<number> =>
  Effect.gen(function* () {
    const { target, slots, command } = invocation
    // A signal before the command runs stops the wait; once it runs, it goes to the command.
    const stopped = yield* Deferred.make<NodeJS.Signals>()
    let child: ChildProcess | undefined
    const onSignal = (signal: NodeJS.Signals) => {
      if (child !== undefined && child.exitCode === null && child.signalCode === null) {
        child.kill(signal)
      } else {
        Deferred.doneUnsafe(stopped, Effect.succeed(signal))
      }
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        process.on("SIGINT", onSignal)
        process.on("SIGTERM", onSignal)
      }),
      () =>
        Effect.sync(() => {
          process.off("SIGINT", onSignal)
          process.off("SIGTERM", onSignal)
        }),
    )

    const options = yield* electionOptions(target, {
      [kindKey]: "run",
      command: shellQuote(command),
      slots: String(slots),
    })
    const election = yield* Election.make(options).pipe(
      // The options come from electionOptions, never out of range: a bug, not a user error.
      Effect.catchTag("ElectionConfigError", (error) => Effect.die(error)),
      Effect.provide(NodeTransport.layer),
    )

    const failed = yield* Deferred.make<string>()
    yield* Effect.forkScoped(
      Stream.runForEach(election.events, (event) =>
        event._tag === "Failed"
          ? Deferred.succeed(failed, describeElectionError(event.error))
          : Effect.void,
      ),
    )

    const waited = yield* Effect.raceFirst(
      election
        .acquire(target.name, { limit: slots })
        .pipe(Effect.map((permit) => ({ _tag: "Acquired" as const, permit }))),
      Effect.raceFirst(
        Effect.map(Deferred.await(stopped), (signal) => ({ _tag: "Stopped" as const, signal })),
        Effect.map(Deferred.await(failed), (message) => ({ _tag: "Failed" as const, message })),
      ),
    )
    if (waited._tag === "Stopped") return exitCodeOf(null, waited.signal)
    if (waited._tag === "Failed") {
      complain(waited.message)
      return exitCode.election
    }

    const outcome = yield* Deferred.make<Outcome>()
    const running = spawnCommand(command)
    child = running
    running.once("exit", (code, signal) =>
      Deferred.doneUnsafe(outcome, Effect.succeed({ _tag: "Exited", code, signal })),
    )
    running.once("error", (error) =>
      Deferred.doneUnsafe(outcome, Effect.succeed({ _tag: "SpawnFailed", message: error.message })),
    )
    const result = yield* Effect.raceFirst(
      Deferred.await(outcome),
      Effect.raceFirst(
        Effect.as(waited.permit.lost, { _tag: "Lost" } as const),
        Effect.map(Deferred.await(failed), (message) => ({ _tag: "Failed" as const, message })),
      ),
    )
    switch (result._tag) {
      case "Exited":
        return exitCodeOf(result.code, result.signal)
      case "SpawnFailed":
        complain(`cannot run ${command[0]}: ${result.message}`)
        return 127
      case "Lost":
      case "Failed": {
        // The slot may already be someone else's: stop the command at once, not politely.
        running.kill("SIGKILL")
        yield* Deferred.await(outcome)
        complain(
          result._tag === "Lost"
            ? `lost the slot of ${target.name} in a failover (a new supervisor gave it away); killed ${command[0]}`
            : `${result.message}; killed ${command[0]}`,
        )
        return result._tag === "Lost" ? exitCode.lost : exitCode.election
      }
    }
  }).pipe(
    Effect.scoped,
    Effect.catchTags({
      AcquireRefused: (error) => {
        complain(
          error.detail === "LimitMismatch"
            ? `${error.resource} is in use with another --slots; every invocation must give the same`
            : error.message,
        )
        return Effect.succeed(exitCode.election)
      },
      StrangerOnAddress: (error) => Effect.succeed(reportElectionError(error)),
      OtherProgramOnAddress: (error) => Effect.succeed(reportElectionError(error)),
      NotPermitted: (error) => Effect.succeed(reportElectionError(error)),
      ElectionFailed: (error) => Effect.succeed(reportElectionError(error)),
      SecretError: (error) => Effect.succeed(reportElectionError(error)),
      SocketDirectoryError: (error) => Effect.succeed(reportElectionError(error)),
    }),
  )

const reportElectionError = (
  error: Election.ElectionError | Secret.SecretError | SocketDirectory.SocketDirectoryError,
): number => {
  complain(describeElectionError(error))
  return exitCode.election
}
