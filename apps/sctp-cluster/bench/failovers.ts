/**
 * The failover bench: `npm run bench -w @understudy/app-sctp-cluster`. Runs 20 alternating
 * failovers (see `test/support/alternating.ts`: `sctp-cluster` nodes as processes on
 * 127.0.0.2 / 127.0.0.3 under every-update, keyed with a cluster key, tags, TSNs and
 * secrets from the OS CSPRNG as always; usrsctp's client as the peer) `--runs` times
 * (default 3) for each timer setting of the peer, and reports per run the failover time —
 * from just before the SIGKILL of the serving node to the peer's first message answered
 * (echoed) through the node that took over: the message is written right after the kill,
 * so its echo is the peer's first acknowledged message through the other node — as p50
 * and p99 over the 20 (nearest rank: with 20 samples p99 is the slowest), then the median
 * of the runs with their min–max. Prints a table, then one JSON line.
 *
 * `--timers tuned,defaults` (default both): `tuned` is the tune shim's short timers (RTO
 * 100–400 ms, initial 200, 2 retransmissions per path, HEARTBEAT every 200 ms); `defaults`
 * is usrsctp's own (RTO 1–60 s, initial 3 s, HEARTBEAT every 30 s): a round then waits for
 * the rejoined node to hold the copy rather than for the peer's next HEARTBEAT to reach it.
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
const timersIndex = process.argv.indexOf("--timers")
const timerSettings = (timersIndex === -1 ? "tuned,defaults" : process.argv[timersIndex + 1]!)
  .split(",")
  .map((name) => {
    if (name !== "tuned" && name !== "defaults") throw new Error("--timers: tuned and/or defaults")
    return name
  })

/** Nearest-rank percentile of `values`. */
const percentile = (values: ReadonlyArray<number>, p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!
}
const median = (values: ReadonlyArray<number>) => percentile(values, 50)

process.on("SIGINT", () => void App.killAll().then(() => process.exit(130)))

type Result = { readonly p50: number; readonly p99: number; readonly ok: boolean }
const results = new Map<string, Array<Result>>()
try {
  for (const timers of timerSettings) {
    const of: Array<Result> = []
    results.set(timers, of)
    for (let run = 1; run <= runs; run++) {
      const outcome = await Alternating.run({
        rounds,
        ...(timers === "defaults" ? { tune: "defaults" as const } : {}),
        log: (line) => console.log(`${timers} run ${run}: ${line}`),
      }).catch((error: unknown) => {
        console.log(`${timers} run ${run} failed: ${String(error).split("\n")[0]}`)
        return undefined
      })
      await App.killAll()
      if (outcome === undefined) {
        of.push({ p50: Number.NaN, p99: Number.NaN, ok: false })
        continue
      }
      const ok =
        outcome.echoed.length === outcome.sent &&
        outcome.echoed.every((n, i) => n === i + 1) &&
        !/SCTP_COMM_LOST|ABORT/.test(outcome.peerOutput)
      of.push({
        p50: percentile(outcome.failoverMs, 50),
        p99: percentile(outcome.failoverMs, 99),
        ok,
      })
      console.log(
        `${timers} run ${run}: p50 ${of.at(-1)!.p50.toFixed(0)} ms, p99 ${of.at(-1)!.p99.toFixed(0)} ms${ok ? "" : " (FAILED: echoes lost, doubled or out of order)"}`,
      )
    }
  }
} finally {
  await App.killAll()
}

// The figures are those of the runs that completed; `allRunsOk` says whether any failed.
const row = (name: string, values: ReadonlyArray<number>) =>
  `${name.padEnd(24)} ${median(values).toFixed(0).padStart(8)} ${Math.min(...values)
    .toFixed(0)
    .padStart(8)} ${Math.max(...values)
    .toFixed(0)
    .padStart(8)}`
const spread = (values: ReadonlyArray<number>) => ({
  median: median(values),
  min: Math.min(...values),
  max: Math.max(...values),
})
console.log(`\n${rounds} alternating failovers, ${runs} runs (ms): median, min, max of the runs`)
console.log(`${"".padEnd(24)} ${"median".padStart(8)} ${"min".padStart(8)} ${"max".padStart(8)}`)
const figures: Record<string, unknown> = {}
for (const [timers, of] of results) {
  const p50s = of.filter((r) => r.ok).map((r) => r.p50)
  const p99s = of.filter((r) => r.ok).map((r) => r.p99)
  console.log(row(`${timers}: failover p50`, p50s))
  console.log(row(`${timers}: failover p99`, p99s))
  const suffix = timers === "tuned" ? "TunedTimers" : "DefaultTimers"
  figures[`failoverP50Ms${suffix}`] = spread(p50s)
  figures[`failoverP99Ms${suffix}`] = spread(p99s)
}
const allRunsOk = [...results.values()].every((of) => of.every((r) => r.ok))
console.log(JSON.stringify({ bench: "sctp-cluster-failovers", rounds, runs, figures, allRunsOk }))
if (!allRunsOk) process.exitCode = 1
