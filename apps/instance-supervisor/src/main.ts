/**
 * The `instance-supervisor` program: `node src/main.ts --name builds --slots 2 -- make -j8`.
 *
 * @since 0.1.0
 */
import { Observability } from "@understudy/transport"
import { Effect } from "effect"
import { type Invocation, parse, programName, usage, version } from "./cli.ts"
import { complain, exitCode } from "./common.ts"
import { run } from "./run.ts"
import { status } from "./status.ts"

// --metrics and --otlp are every app's, parsed once for all of them.
const taken = Observability.takeFlags(process.argv.slice(2))
const invocation: Invocation =
  taken._tag === "Taken" ? parse(taken.argv) : { _tag: "UsageError", message: taken.message }
const observability = Observability.layer(
  taken._tag === "Taken" ? taken.flags : Observability.none,
  programName,
)

const main = async (): Promise<number> => {
  switch (invocation._tag) {
    case "Help":
      process.stdout.write(`${usage}\n`)
      return exitCode.ok
    case "Version":
      process.stdout.write(`${programName} ${version}\n`)
      return exitCode.ok
    case "UsageError":
      complain(invocation.message)
      process.stderr.write(`Try '${programName} --help'.\n`)
      return exitCode.usage
    case "Run":
      return Effect.runPromise(
        run(invocation).pipe(
          Effect.provide(observability),
          Effect.catch((error) =>
            Effect.sync(() => {
              complain(error.message)
              return exitCode.usage
            }),
          ),
        ),
      )
    case "Status":
      return Effect.runPromise(status(invocation))
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    // A defect: say what, and exit like an unexpected error.
    complain(
      `internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    )
    process.exit(70)
  },
)
