/**
 * The failover bench: `npm run bench -w @understudy/app-sctp-cluster`. Runs 20 alternating
 * failovers (see `test/support/alternating.ts`: `sctp-cluster` nodes as processes on
 * 127.0.0.2 / 127.0.0.3, usrsctp's client with short timers as the peer) `--runs` times
 * (default 3) and reports, per run, the failover time — from just before the SIGKILL of the
 * serving node to the echo of the message sent right after it, through the node that took
 * over — as p50 and p99 over the 20 (nearest rank: with 20 samples p99 is the slowest),
 * then the median of the runs with their min–max. Prints a table, then one JSON line.
 *
 * Only the tuned timers: with usrsctp's defaults the peer probes a restored address every
 * 30 s, so one run of 20 would take over ten minutes.
 */

import * as Alternating from "../test/support/alternating.ts"
import * as App from "../test/support.ts"

const argument = (name: string, fallback: number): number => {
  const index = process.argv.indexOf(name)
  const value = index === -1 ? fallback : Number(process.argv[index + 1])
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a whole number`)
  return value
}
const runs = argument("--runs", 3)
const rounds = argument("--rounds", 20)

/** Nearest-rank percentile of `values`. */
const percentile = (values: ReadonlyArray<number>, p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!
}
const median = (values: ReadonlyArray<number>) => percentile(values, 50)

process.on("SIGINT", () => void App.killAll().then(() => process.exit(130)))

const results: Array<{ p50: number; p99: number; ok: boolean }> = []
try {
  for (let run = 1; run <= runs; run++) {
    const outcome = await Alternating.run({ rounds, log: (line) => console.log(line) }).catch(
      (error: unknown) => {
        console.log(`run ${run} failed: ${String(error).split("\n")[0]}`)
        return undefined
      },
    )
    if (outcome === undefined) {
      results.push({ p50: Number.NaN, p99: Number.NaN, ok: false })
      await App.killAll()
      continue
    }
    const ok =
      outcome.echoed.length === outcome.sent &&
      outcome.echoed.every((n, i) => n === i + 1) &&
      !/SCTP_COMM_LOST|ABORT/.test(outcome.peerOutput)
    results.push({
      p50: percentile(outcome.failoverMs, 50),
      p99: percentile(outcome.failoverMs, 99),
      ok,
    })
    await App.killAll()
    console.log(
      `run ${run}: p50 ${results.at(-1)!.p50.toFixed(0)} ms, p99 ${results.at(-1)!.p99.toFixed(0)} ms${ok ? "" : " (FAILED: echoes lost, doubled or out of order)"}`,
    )
  }
} finally {
  await App.killAll()
}

// The figures are those of the runs that completed; `allRunsOk` says whether any failed.
const p50s = results.filter((r) => r.ok).map((r) => r.p50)
const p99s = results.filter((r) => r.ok).map((r) => r.p99)
const row = (name: string, values: ReadonlyArray<number>) =>
  `${name.padEnd(14)} ${median(values).toFixed(0).padStart(8)} ${Math.min(...values)
    .toFixed(0)
    .padStart(8)} ${Math.max(...values)
    .toFixed(0)
    .padStart(8)}`
console.log(`\n${rounds} alternating failovers, ${runs} runs (ms): median, min, max of the runs`)
console.log(`${"".padEnd(14)} ${"median".padStart(8)} ${"min".padStart(8)} ${"max".padStart(8)}`)
console.log(row("failover p50", p50s))
console.log(row("failover p99", p99s))
console.log(
  JSON.stringify({
    bench: "sctp-cluster-failovers",
    rounds,
    runs,
    figures: {
      failoverP50Ms: { median: median(p50s), min: Math.min(...p50s), max: Math.max(...p50s) },
      failoverP99Ms: { median: median(p99s), min: Math.min(...p99s), max: Math.max(...p99s) },
    },
    allRunsOk: results.every((r) => r.ok),
  }),
)
if (!results.every((r) => r.ok)) process.exitCode = 1
