/**
 * The final table of the showcase.
 *
 * @since 0.1.0
 */
import type { Row } from "./Scenario.ts"

/** Renders rows as an aligned text table. @since 0.1.0 @category formatting */
export const formatTable = (rows: ReadonlyArray<Row>): string => {
  const cells = [
    ["scenario", "failover", "invariant checked", "result"],
    ...rows.map((row) => [
      row.scenario,
      row.failoverMs === undefined ? "-" : `${row.failoverMs.toFixed(1)} ms`,
      row.invariant,
      `${row.ok ? "ok" : `FAILED (${row.detail})`}${row.note === undefined ? "" : `; ${row.note}`}`,
    ]),
  ]
  const widths = cells[0]!.map((_, column) => Math.max(...cells.map((row) => row[column]!.length)))
  const line = (row: ReadonlyArray<string>) =>
    row
      .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!)))
      .join(" | ")
      .trimEnd()
  const rule = widths.map((width) => "-".repeat(width)).join("-+-")
  return [line(cells[0]!), rule, ...cells.slice(1).map(line)].join("\n")
}
