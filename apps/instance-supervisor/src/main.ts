/**
 * The `instance-supervisor` program: `node src/main.ts --name builds --slots 2 -- make -j8`.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { parse, programName, usage, version } from "./cli.ts"
import { complain, exitCode } from "./common.ts"
import { run } from "./run.ts"
import { status } from "./status.ts"

const invocation = parse(process.argv.slice(2))

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
      return Effect.runPromise(run(invocation))
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
