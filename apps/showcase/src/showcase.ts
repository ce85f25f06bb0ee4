/**
 * Runs scenarios one after the other with live progress, and ends with the table. A
 * scenario that throws is one failed row, and the others still run.
 *
 * @since 0.1.0
 */
import type * as Progress from "./progress.ts"
import type { Options, Row, Scenario } from "./Scenario.ts"
import { formatTable } from "./table.ts"

/** The rows of every scenario, and the exit code: 0 if every check passed, else 1. @since 0.1.0 */
export interface Outcome {
  readonly rows: ReadonlyArray<Row>
  readonly exitCode: 0 | 1
}

/**
 * Runs `scenarios` in order, reporting to `progress`, then prints the table and a verdict.
 *
 * @since 0.1.0
 */
export const runScenarios = async (
  scenarios: ReadonlyArray<Scenario>,
  options: Options,
  progress: Progress.Progress,
): Promise<Outcome> => {
  const rows: Array<Row> = []
  for (const [index, scenario] of scenarios.entries()) {
    progress.begin(index + 1, scenarios.length, scenario.name, scenario.description)
    let scenarioRows: ReadonlyArray<Row>
    try {
      scenarioRows = await scenario.run({ log: progress.log, options })
    } catch (error) {
      scenarioRows = [
        {
          scenario: scenario.name,
          failoverMs: undefined,
          invariant: "the scenario ran to its end",
          ok: false,
          detail: error instanceof Error ? error.message : String(error),
        },
      ]
    }
    rows.push(...scenarioRows)
    progress.end(scenarioRows.length, scenarioRows.filter((row) => !row.ok).length)
  }
  progress.print(`\n${formatTable(rows)}\n`)
  const failed = rows.filter((row) => !row.ok)
  progress.print(
    failed.length === 0
      ? `\nall ${rows.length} checks passed\n`
      : `\n${failed.length} of ${rows.length} checks FAILED\n`,
  )
  return { rows, exitCode: failed.length === 0 ? 0 : 1 }
}

/** The scenarios' names and descriptions, one per line (`--list`). @since 0.1.0 */
export const listScenarios = (scenarios: ReadonlyArray<Scenario>): string => {
  const width = Math.max(...scenarios.map((scenario) => scenario.name.length))
  return scenarios
    .map((scenario) => `${scenario.name.padEnd(width)}  ${scenario.description}\n`)
    .join("")
}
