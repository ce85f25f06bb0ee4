/**
 * The `sctp-cluster` program: `node src/main.ts node --role primary --addresses
 * 127.0.0.2,127.0.0.3 --policy every-update`, `status --status ADDRESS`, `handover --status
 * ADDRESS`, `store --listen
 * ADDRESS`, `keygen --out FILE`. See `--help`.
 *
 * @since 0.1.0
 */
import { Cli } from "@understudy/app-kit"
import { ClusterKey, Observability } from "@understudy/transport"
import { Effect } from "effect"
import { type Invocation, parse, programName } from "./cli.ts"
import { exitCode, runToEnd, runUntilSignal } from "./common.ts"
import { handover } from "./handover.ts"
import { node } from "./node.ts"
import { status } from "./status.ts"
import { store } from "./store.ts"

// --metrics and --otlp are every app's, parsed once for all of them.
const taken = Observability.takeFlags(process.argv.slice(2))
const invocation: Invocation =
  taken._tag === "Taken" ? parse(taken.argv) : Cli.usageError(taken.message)
const observed = Effect.provide(
  Observability.layer(taken._tag === "Taken" ? taken.flags : Observability.none, programName),
)

const main = async (): Promise<number> => {
  switch (invocation._tag) {
    case "Help":
    case "Version":
    case "UsageError":
      return Cli.answer(programName, invocation)
    case "Node":
      return runUntilSignal((stop) => node(invocation, stop).pipe(observed))
    case "Store":
      return runUntilSignal((stop) => store(invocation, stop).pipe(observed))
    case "Status":
      return runToEnd(status(invocation))
    case "HandOver":
      return runToEnd(handover(invocation))
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

Cli.exitWith(programName, main)
