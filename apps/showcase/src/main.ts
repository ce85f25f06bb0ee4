/**
 * `npm start`: runs every scenario as real OS processes on loopback, injects the failure
 * each is about, prints progress as it goes and a table at the end. Exits 1 if any
 * invariant failed.
 *
 * @since 0.1.0
 */
import type { Row } from "./Scenario.ts"
import { scenarios } from "./scenarios/index.ts"
import { formatTable } from "./table.ts"

const main = async (): Promise<number> => {
  const rows: Array<Row> = []
  const startedAtMs = performance.now()
  for (const scenario of scenarios) {
    process.stdout.write(`\n== ${scenario.name}: ${scenario.description}\n`)
    const log = (line: string) => {
      const seconds = ((performance.now() - startedAtMs) / 1000).toFixed(2).padStart(6)
      process.stdout.write(`[${seconds} s] [${scenario.name}] ${line}\n`)
    }
    try {
      rows.push(...(await scenario.run({ log })))
    } catch (error) {
      // A scenario that throws is a failed row, and the others still run.
      rows.push({
        scenario: scenario.name,
        failoverMs: undefined,
        invariant: "the scenario ran to its end",
        ok: false,
        detail: error instanceof Error ? error.message : String(error),
      })
    }
  }
  process.stdout.write(`\n${formatTable(rows)}\n`)
  const failed = rows.filter((row) => !row.ok)
  process.stdout.write(
    failed.length === 0
      ? `\nall ${rows.length} checks passed\n`
      : `\n${failed.length} of ${rows.length} checks FAILED\n`,
  )
  return failed.length === 0 ? 0 : 1
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`showcase: ${error instanceof Error ? error.stack : String(error)}\n`)
    process.exit(70)
  },
)
