/**
 * `npm start`: runs every scenario (or those `--scenario` names) as real OS processes on
 * loopback, injects the failure each is about, prints progress as it goes and a table at
 * the end. Exits 1 if any invariant failed, 2 on a usage error.
 *
 * @since 0.1.0
 */
import { parse, usage } from "./cli.ts"
import * as Progress from "./progress.ts"
import { scenarios } from "./scenarios/index.ts"
import { listScenarios, runScenarios } from "./showcase.ts"

const names = scenarios.map((scenario) => scenario.name)

const main = async (): Promise<number> => {
  const invocation = parse(process.argv.slice(2), names)
  switch (invocation._tag) {
    case "Help":
      process.stdout.write(`${usage(names)}\n`)
      return 0
    case "List":
      process.stdout.write(listScenarios(scenarios))
      return 0
    case "UsageError":
      process.stderr.write(`showcase: ${invocation.message}\nTry 'npm start -- --help'.\n`)
      return 2
    case "Run": {
      const chosen = scenarios.filter((scenario) => invocation.scenarios.includes(scenario.name))
      const progress = Progress.make(process.stdout)
      try {
        return (await runScenarios(chosen, invocation.options, progress)).exitCode
      } finally {
        progress.close()
      }
    }
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`showcase: ${error instanceof Error ? error.stack : String(error)}\n`)
    process.exit(70)
  },
)
