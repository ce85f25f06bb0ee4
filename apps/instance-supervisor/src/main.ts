/**
 * The `instance-supervisor` program: `node src/main.ts --name builds --slots 2 -- make -j8`.
 *
 * @since 0.1.0
 */
import { Cli } from "@understudy/app-kit"
import { Observability } from "@understudy/transport"
import { Effect } from "effect"
import { type Invocation, parse, programName } from "./cli.ts"
import { complain, exitCode } from "./common.ts"
import { run } from "./run.ts"
import { status } from "./status.ts"

// --metrics and --otlp are every app's, parsed once for all of them.
const taken = Observability.takeFlags(process.argv.slice(2))
const invocation: Invocation =
  taken._tag === "Taken" ? parse(taken.argv) : Cli.usageError(taken.message)
const observability = Observability.layer(
  taken._tag === "Taken" ? taken.flags : Observability.none,
  programName,
)

const main = async (): Promise<number> => {
  switch (invocation._tag) {
    case "Help":
    case "Version":
    case "UsageError":
      return Cli.answer(programName, invocation)
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

Cli.exitWith(programName, main)
