/**
 * The cost of re-arming a timer in a `TimerTable` that holds many: what an SCTP endpoint
 * does on every packet (its delayed-SACK timer armed by one packet and cancelled by the
 * next one's SACK; T3-rtx restarted by every SACK), with 1,000 other timers armed. Two
 * patterns, each `opsPerRound` operations per round, 5 measured rounds after a warm-up:
 *
 * - `restart`: one timer re-armed to a later deadline, over and over (T3-rtx).
 * - `sack`: one timer armed and cancelled in turn, each arming later than the last.
 *
 * The figures are nanoseconds per operation (median, min–max) and young-generation garbage
 * collections per million operations (a collection runs when the new space fills up, so it
 * counts what was allocated). With `--compare-with DIR` (another copy of this package, e.g.
 * `git archive` of an older commit unpacked with `node_modules` linked) the same patterns run
 * on that copy's table in the same process, interleaved round by round, and the JSON line
 * gives the ratio of this table to that one (below 1: this one is cheaper).
 *
 * `npm exec -- node bench/timerTable.ts [--compare-with DIR]`. Prints a table, then one JSON
 * line as the last line.
 */
import { PerformanceObserver } from "node:perf_hooks"
import { setTimeout as sleep } from "node:timers/promises"
import { TimerTable } from "../src/TimerTable.ts"

interface Table {
  set(key: string, dueMs: number): void
  cancel(key: string): boolean
  next(): number | undefined
}
type Constructor = new () => Table

const othersArmed = 1_000
const opsPerRound = 1_000_000
const rounds = 5

const patterns: Record<string, (table: Table) => void> = {
  restart: (table) => {
    for (let op = 0; op < opsPerRound; op++) table.set("t3", 1_000_000 + op)
  },
  sack: (table) => {
    for (let op = 0; op < opsPerRound; op++) {
      if (op % 2 === 0) table.set("sack", 1_000_000 + op)
      else table.cancel("sack")
    }
  },
}

// Young-generation collections seen by the observer (its entries come a few turns later).
let scavenges = 0
new PerformanceObserver((list) => {
  for (const entry of list.getEntries())
    if ((entry as unknown as { detail?: { kind?: number } }).detail?.kind === 1) scavenges++
}).observe({ entryTypes: ["gc"] })

const round = async (Table: Constructor, pattern: (table: Table) => void) => {
  const table = new Table()
  for (let i = 0; i < othersArmed; i++) table.set(`other${i}`, 2_000_000 + i)
  await sleep(20)
  const scavengesBefore = scavenges
  const started = process.hrtime.bigint()
  pattern(table)
  const elapsedNs = Number(process.hrtime.bigint() - started)
  // The table still answers: the re-armed timer is not lost among the others.
  if (table.next() === undefined) throw new Error("no timer armed after the round")
  await sleep(20)
  return {
    nsPerOp: elapsedNs / opsPerRound,
    scavengesPerMillion: ((scavenges - scavengesBefore) * 1_000_000) / opsPerRound,
  }
}

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

const comparedIndex = process.argv.indexOf("--compare-with")
const compared: Constructor | undefined =
  comparedIndex < 0
    ? undefined
    : (
        (await import(`${process.argv[comparedIndex + 1]}/src/TimerTable.ts`)) as {
          TimerTable: Constructor
        }
      ).TimerTable
const tables: ReadonlyArray<[string, Constructor]> = [
  ["this", TimerTable as unknown as Constructor],
  ...(compared === undefined ? [] : [["compared", compared] as [string, Constructor]]),
]

const figures: Record<string, { ns: Array<number>; scavenges: Array<number> }> = {}
for (const [name, Table] of tables)
  for (const pattern of Object.keys(patterns)) {
    figures[`${pattern} ${name}`] = { ns: [], scavenges: [] }
    await round(Table, patterns[pattern]!) // warm-up
  }
for (let r = 0; r < rounds; r++)
  for (const pattern of Object.keys(patterns))
    for (const [name, Table] of tables) {
      const { nsPerOp, scavengesPerMillion } = await round(Table, patterns[pattern]!)
      figures[`${pattern} ${name}`]!.ns.push(nsPerOp)
      figures[`${pattern} ${name}`]!.scavenges.push(scavengesPerMillion)
    }

console.log(
  `${othersArmed} other timers armed, ${opsPerRound} operations per round, ${rounds} rounds`,
)
console.log("pattern, table     | ns per op (median) | min–max     | scavenges per million ops")
const json: Record<string, number> = {}
for (const [label, { ns, scavenges: counts }] of Object.entries(figures)) {
  const [pattern, name] = label.split(" ") as [string, string]
  console.log(
    `${label.padEnd(18)} | ${median(ns).toFixed(1).padStart(18)} | ${`${Math.min(...ns).toFixed(1)}–${Math.max(...ns).toFixed(1)}`.padEnd(11)} | ${median(counts).toFixed(1)}`,
  )
  json[`${pattern}_ns_${name}`] = median(ns)
  json[`${pattern}_scavenges_per_million_${name}`] = median(counts)
}
if (compared !== undefined)
  for (const pattern of Object.keys(patterns))
    json[`${pattern}_ratio`] = json[`${pattern}_ns_this`]! / json[`${pattern}_ns_compared`]!
console.log(JSON.stringify(json))
