/**
 * The `server-group` program: `node src/main.ts serve --id 1 --peers ... --http ... --store ...`,
 * `nameserver --listen ...`, `load --store ...`. See `--help`.
 *
 * @since 0.1.0
 */
import { Cli } from "@understudy/app-kit"
import { ClusterKey, Observability } from "@understudy/transport"
import { Effect } from "effect"
import { type Invocation, parse, programName } from "./cli.ts"
import { exitCode, line, runUntilSignal } from "./common.ts"
import { load } from "./load.ts"
import { nameserver } from "./nameserver.ts"
import { serve } from "./serve.ts"

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
    case "Serve":
      return runUntilSignal(serve(invocation).pipe(observed))
    case "NameServer":
      return runUntilSignal(nameserver(invocation).pipe(observed))
    case "Load":
      return load(invocation)
    case "KeyGen": {
      const written = await Effect.runPromise(
        Effect.result(ClusterKey.generateFile(invocation.out)),
      )
      if (written._tag === "Success") {
        line({ t: "key", path: invocation.out })
        return exitCode.ok
      }
      process.stderr.write(`${programName}: ${written.failure.message}\n`)
      return exitCode.failure
    }
  }
}

Cli.exitWith(programName, main)
