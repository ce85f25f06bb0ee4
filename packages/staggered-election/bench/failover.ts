/**
 * `npm run bench -w @understudy/staggered-election`: how long a failover takes.
 *
 * 1. Real processes (`apps/server-group` on loopback): for 3, 5 and 9 servers, SIGKILL of the
 *    master → the first write a new master answers, p50 / p99 over a few rounds; with read
 *    index (the default) and with the leader lease (`--reads lease`).
 * 2. Simulation (FastSim, seeded): for the same sizes and detection timings, 2,000 master
 *    crashes each, the staggered election against a Raft-style randomised election with the
 *    same detection (`raftStyle.ts`): mean / p99 failover (crash → one new master followed by
 *    every live server), the election messages it took, how often two or more servers stood.
 *
 *    With the leader lease on and off (`BENCH_PART=lease`): crash → a new master serves (its
 *    sync done; with the lease, its wait for the old lease too), the same seeds, as a ratio.
 * 3. Compaction (`compaction.ts`): writes/s through the machines at 10k, 100k and 500k
 *    entries appended over the log's life, and their ratios.
 * 4. Throughput (`throughput.ts`): writes/s and reads/s (linearizable) through the library
 *    with durability on, against a three-member etcd the bench starts, doing the same puts
 *    and linearizable gets in the same run: ratios, p50 / p99 latencies.
 *
 * Prints a table, then, last, one JSON line of named figures. Environment: `BENCH_ROUNDS`
 * (process rounds for 3 and 5 servers; 9 servers get 2/3 of it; default 10),
 * `BENCH_SIM_RUNS` (default 2,000), `BENCH_CLIENTS` and `BENCH_OPS` (throughput; 16 and
 * 3,000), `BENCH_PART=processes|sim|lease|compaction|throughput` to run one part.
 *
 * The staggered machine is imported from `src/`; the processes run `apps/server-group`,
 * which imports the package's build (`dist/`): rebuild it after changing `src/`.
 *
 * @since 0.1.0
 */

import * as Compaction from "./compaction.ts"
import { killAll, measure, startNameServer } from "./processes.ts"
import type { Variant } from "./simulate.ts"
import * as Sim from "./simulate.ts"
import * as Throughput from "./throughput.ts"

/** The app's defaults (`apps/server-group/src/cli.ts`), passed explicitly to every server. */
const timings = {
  detectionPeriodMs: 50,
  inquiryTimeoutMs: 250,
  baseDelayMs: 100,
  floorDelayMs: 40,
} as const
const sizes = [3, 5, 9] as const
const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 10))
const simRuns = Math.max(1, Number(process.env.BENCH_SIM_RUNS ?? 2_000))
const part = process.env.BENCH_PART
/** Loopback-like: 1–4 ms one way, nothing lost. */
const link = {
  latency: { _tag: "Uniform", minMs: 1, maxMs: 4 },
  loss: 0,
  duplicate: 0,
  reorder: 0,
} as const

const round0 = (value: number) => (Number.isFinite(value) ? Math.round(value) : null)
const round1 = (value: number) => (Number.isFinite(value) ? Math.round(value * 10) / 10 : null)
const pad = (text: string | number | null, width: number) => String(text ?? "-").padStart(width)

process.on("exit", killAll)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    killAll()
    process.exit(130)
  })
}

console.log(
  `timings: detection period ${timings.detectionPeriodMs} ms, inquiry time-out ${timings.inquiryTimeoutMs} ms, election base ${timings.baseDelayMs} ms, floor ${timings.floorDelayMs} ms`,
)

/** Every sample of a distribution, by series (the docs draw them; see the JSON line). */
const samples: Record<string, ReadonlyArray<number>> = {}
const figures: Record<string, number | null> = {
  detectionPeriodMs: timings.detectionPeriodMs,
  inquiryTimeoutMs: timings.inquiryTimeoutMs,
  baseDelayMs: timings.baseDelayMs,
  floorDelayMs: timings.floorDelayMs,
}

// 1. Real processes.
const processRows: Array<string> = []
if (part === undefined || part === "processes") {
  console.log(
    "\n1. processes (apps/server-group on loopback): SIGKILL of the master → a new master answers a write",
  )
  const nameServer = await startNameServer()
  try {
    // Read index (the default) and the leader lease: with the lease, a new master answers
    // nothing until the old master's lease has run out, so its failover is that much longer.
    for (const reads of ["index", "lease"] as const) {
      for (const count of sizes) {
        const n = count === 9 ? Math.max(1, Math.round((rounds * 2) / 3)) : rounds
        const result = await measure({
          count,
          rounds: n,
          store: nameServer.store,
          timings,
          deadlineMs: 20_000,
          reads,
          log: (line) => console.log(line),
        })
        const sorted = [...result.failoverMs].sort((a, b) => a - b)
        const p50 = Sim.percentile(sorted, 0.5)
        const p99 = Sim.percentile(sorted, 0.99)
        const name = reads === "index" ? "processFailover" : "processLeaseFailover"
        figures[`${name}MsP50_n${count}`] = round0(p50)
        figures[`${name}MsP99_n${count}`] = round0(p99)
        figures[`${name}Rounds_n${count}`] = result.rounds
        figures[`${name}Failed_n${count}`] = result.failed
        samples[`${name}Ms_n${count}`] = result.failoverMs.map(Math.round)
        processRows.push(
          `${pad(count, 7)} ${reads.padStart(6)} ${pad(result.rounds, 6)} ${pad(result.failed, 6)} ${pad(round0(sorted[0] ?? Number.NaN), 7)} ${pad(round0(p50), 7)} ${pad(round0(p99), 7)} ${pad(round0(sorted[sorted.length - 1] ?? Number.NaN), 7)}`,
        )
      }
    }
  } finally {
    await nameServer.stop()
    killAll()
  }
}

// 2. Simulation.
const simRows: Array<string> = []
if (part === undefined || part === "sim") {
  console.log(
    `\n2. simulation (FastSim, seeds 1..${simRuns} per row, links ${link.latency.minMs}–${link.latency.maxMs} ms): master crash → one new master followed by every live server`,
  )
  for (const count of sizes) {
    const nodes = Array.from({ length: count }, (_, i) => `s${i + 1}`)
    const variants = [
      Sim.staggered(nodes, timings),
      Sim.raftStyle(nodes, timings, timings.baseDelayMs),
      Sim.raftStyle(nodes, timings, timings.floorDelayMs),
    ] as const
    for (const variant of variants) {
      // biome-ignore lint/suspicious/noExplicitAny: three variants of different state types share one runner.
      const s = Sim.summarise(variant as Variant<any, any, any>, nodes, timings, link, simRuns)
      const key = `${variant.name.startsWith("raft") ? `raft${variant.name.split("=")[1]}` : "staggered"}_n${count}`
      figures[`simFailoverMsMean_${key}`] = round1(s.failoverMsMean)
      figures[`simFailoverMsP99_${key}`] = round0(s.failoverMsP99)
      figures[`simElectionMsMean_${key}`] = round1(s.electionMsMean)
      figures[`simElectionMessagesMean_${key}`] = round1(s.electionMessagesMean)
      figures[`simContestedRatio_${key}`] = Number.isFinite(s.contestedRatio)
        ? Math.round(s.contestedRatio * 10_000) / 10_000
        : null
      figures[`simUnconverged_${key}`] = s.unconverged + s.unsettled
      samples[`simFailoverMs_${key}`] = s.failoversMs.map((ms) => Math.round(ms * 10) / 10)
      simRows.push(
        `${pad(count, 7)}  ${s.variant.padEnd(17)} ${pad(s.runs - s.unsettled - s.unconverged, 5)} ${pad(s.unsettled + s.unconverged, 5)} ${pad(round1(s.failoverMsMean), 8)} ${pad(round0(s.failoverMsP50), 6)} ${pad(round0(s.failoverMsP99), 6)} ${pad(round0(s.failoverMsMax), 6)} ${pad(round1(s.detectMsMean), 8)} ${pad(round1(s.electionMsMean), 9)} ${pad(round1(s.electionMessagesMean), 8)} ${pad(round0(s.electionMessagesP99), 7)} ${pad(`${(s.contestedRatio * 100).toFixed(1)}%`, 9)} ${pad(round0(s.wallMs), 7)}`,
      )
    }
  }
}

// 2b. Failover with the leader lease on and off, to a serving master.
const leaseRows: Array<string> = []
if (part === undefined || part === "sim" || part === "lease") {
  for (const count of [3, 5] as const) {
    const nodes = Array.from({ length: count }, (_, i) => `s${i + 1}`)
    const off = Sim.summarise(
      Sim.staggered(nodes, timings, { serving: true }),
      nodes,
      timings,
      link,
      simRuns,
    )
    const on = Sim.summarise(
      Sim.staggered(nodes, timings, { serving: true, lease: {} }),
      nodes,
      timings,
      link,
      simRuns,
    )
    for (const [key, s] of [
      ["Off", off],
      ["On", on],
    ] as const) {
      figures[`leaseFailoverMsP50_${key}_n${count}`] = round0(s.failoverMsP50)
      figures[`leaseFailoverMsP99_${key}_n${count}`] = round0(s.failoverMsP99)
      figures[`leaseFailoverMsMean_${key}_n${count}`] = round1(s.failoverMsMean)
      figures[`leaseFailoverUnconverged_${key}_n${count}`] = s.unconverged + s.unsettled
      leaseRows.push(
        `${pad(count, 7)}  ${key === "On" ? "lease on " : "lease off"} ${pad(s.runs - s.unsettled - s.unconverged, 5)} ${pad(s.unsettled + s.unconverged, 5)} ${pad(round1(s.failoverMsMean), 8)} ${pad(round0(s.failoverMsP50), 6)} ${pad(round0(s.failoverMsP99), 6)} ${pad(round0(s.failoverMsMax), 6)}`,
      )
    }
    const ratio = on.failoverMsP50 / off.failoverMsP50
    figures[`leaseFailoverRatioP50_n${count}`] = Number.isFinite(ratio)
      ? Math.round(ratio * 1000) / 1000
      : null
    leaseRows.push(`${pad(count, 7)}  on/off p50 ${ratio.toFixed(3)}`)
  }
}

// 3. Compaction.
let compactionRows: Array<string> = []
if (part === undefined || part === "compaction") {
  const result = Compaction.run()
  compactionRows = result.rows
  Object.assign(figures, result.figures)
}

// 4. Throughput against etcd.
let throughputRows: Array<string> = []
if (part === undefined || part === "throughput") {
  const result = await Throughput.run()
  throughputRows = result.rows
  Object.assign(figures, result.figures)
}

if (processRows.length > 0) {
  console.log(
    "\nprocesses: SIGKILL → write answered by the new master (ms; p99 of few rounds ≈ max)",
  )
  console.log("servers  reads rounds failed     min     p50     p99     max")
  for (const row of processRows) console.log(row)
}
if (simRows.length > 0) {
  console.log(
    "\nsimulation: crash → accepted by all live (ms); election = failover − first detection; msgs = election messages (Declare/Revoke | RequestVote/Vote/Announce); contested = ≥2 servers stood",
  )
  console.log(
    "servers  variant              ok  fail     mean    p50    p99    max  detect  election     msgs msgsP99 contested  wallMs",
  )
  for (const row of simRows) console.log(row)
}
if (leaseRows.length > 0) {
  console.log(
    "\nfailover with the leader lease (simulation, same seeds): crash → a new master serves, followed by every live server (ms)",
  )
  console.log("servers  lease        ok  fail     mean    p50    p99    max")
  for (const row of leaseRows) console.log(row)
}
if (compactionRows.length > 0) {
  console.log(Compaction.heading)
  for (const row of compactionRows) console.log(row)
}
if (throughputRows.length > 0) {
  console.log(Throughput.heading)
  for (const row of throughputRows) console.log(row)
}
console.log(JSON.stringify({ ...figures, samples }))
