/**
 * The `sctp-cluster` program: `node src/main.ts node --role primary --addresses
 * 127.0.0.2,127.0.0.3 --policy every-update`, `status --status ADDRESS`, `store --listen
 * ADDRESS`, `keygen --out FILE`. See `--help`.
 *
 * @since 0.1.0
 */
import { ClusterKey } from "@understudy/transport"
import { Effect } from "effect"
import { parse, programName, usage } from "./cli.ts"
import { exitCode, runToEnd, runUntilSignal } from "./common.ts"
import { node } from "./node.ts"
import { status } from "./status.ts"
import { store } from "./store.ts"

const invocation = parse(process.argv.slice(2))

const main = async (): Promise<number> => {
  switch (invocation._tag) {
    case "Help":
      process.stdout.write(`${usage}\n`)
      return exitCode.ok
    case "UsageError":
      process.stderr.write(`${programName}: ${invocation.message}\nTry '${programName} --help'.\n`)
      return exitCode.usage
    case "Node":
      return runUntilSignal((stop) => node(invocation, stop))
    case "Store":
      return runUntilSignal((stop) => store(invocation, stop))
    case "Status":
      return runToEnd(status(invocation))
    case "Keygen":
      return runToEnd(
        ClusterKey.generateFile(invocation.out).pipe(
          Effect.map(() => {
            process.stdout.write(`${invocation.out}\n`)
            return exitCode.ok
          }),
        ),
      )
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(
      `${programName}: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    )
    process.exit(70)
  },
)
