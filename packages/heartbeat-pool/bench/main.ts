/**
 * `npm run bench`: what the pool costs and how fast clients come back, against a
 * lease-per-client baseline on the embedded store, measured in the same run. Prints a table,
 * then one JSON line.
 *
 * - Re-attachment after the leader's crash, 1,000 clients: the pool machines and client
 *   machines on the FastSim network (1–5 ms links, 100 ms heartbeats), the leader crashed at
 *   6 s; per client, the time from the crash to its `Reattached` event. Simulated time: it
 *   measures the protocol (detection, check, election, walk of the priority list), not the
 *   process or the kernel. 3 seeds; medians.
 * - CPU per 1,000 client heartbeats at the leader: the pool machine's `step` for `Beat`s of
 *   1,000 clients holding seats (token known, lease renewed), 100,000 beats, 3 runs.
 * - Memory per 1,000 clients: the leader's heap growth holding 10,000 allocations.
 * - Baseline: each client keeps its own TTL lease on the embedded `MemoryStore`
 *   (`keepAlive` per heartbeat): CPU per 1,000 keep-alives, same counts.
 *
 * The CPU comparison is uneven and said so: the pool figure is the pure machine step (no
 * socket, MAC or JSON), the baseline a store operation run through Effect.
 *
 * - Re-attachment after a real SIGKILL (`realProcesses.ts`): three server processes on
 *   loopback, 1,000 pool clients in two client processes (a `Client.run` each;
 *   `BENCH_CLIENT_GROUP=1` runs each process's in one `ClientGroup`), all starting at the leader (64
 *   per heartbeat interval per process), 500 ms heartbeats (the timings `license-server
 *   --heartbeat 500ms` derives); once
 *   every client holds, the leader of the moment is SIGKILLed; per client it held, kill to
 *   `Reattached`, in heartbeat intervals. Baseline, same run, same kill: 1,000 clients (in
 *   the same two processes) that each keep a TTL lease on the embedded store
 *   (`MemoryStore`, served by a store process beside each server process and
 *   killed with it), a keep-alive every interval, and re-acquire it at the next store in priority
 *   order once a keep-alive goes unanswered for 2 intervals. 3 runs: per run p50/p99; the
 *   figure is the median of the runs, with their min–max. Every run is shown, with whom the
 *   killed leader held (clients whose heartbeats went unanswered too long walk to a follower,
 *   which carries them), anyone not re-attached or lost, and the `Denied` events (by reason,
 *   before the kill and after it). A run whose clients do not all
 *   hold a seat within 4 leases is not measured (its leader is not killed): it is shown as
 *   FAILED, left out of the figures, and the bench exits 1. Per run, where the pool clients'
 *   time went (`Phases` in `realProcesses.ts`): from the kill to each client's first
 *   unanswered heartbeat, its first heartbeat after the kill, its walk (the port-unreachable
 *   report read), its first message to the server that took it, that server's step, its
 *   `Reattached` (p50 / p99, intervals), and the same cut as per-client gaps; the servers'
 *   milestones; each process's event-loop stalls and delay (`monitorEventLoopDelay`); and UDP
 *   datagrams the kernel dropped for full buffers. `BENCH_CPU_PROFILE_DIR=dir` writes a V8 CPU
 *   profile of each surviving process over the 5 s after each kill there (`s2.cpuprofile`,
 *   `clients-0.cpuprofile`: each run overwrites the last).
 *   How each pool client left the killed leader: on its port unreachable (`unreachable`: the
 *   clients' default `reportUnreachable`) or after `missLimit` unanswered messages (`timed`);
 *   `BENCH_REPORT_UNREACHABLE=0` turns the reports off, to compare. The 1-minute load average
 *   at each kill is shown with its run.
 *   `BENCH_CLIENT_RECEIVE_BUFFER_BYTES=212992` runs the servers with the system's default
 *   receive buffer instead of the pool's 4 MiB, to compare; `BENCH_SEPARATE_CLIENTS=1` runs the
 *   pool and the baseline clients in client processes of their own (two each); `BENCH_RETRY_MS=250`
 *   gives the pool clients that `retryIntervalMs` (the cap of the detection's waits; default the
 *   interval, 500 ms).
 */
import { loadavg } from "node:os"
import { Machine as M } from "@understudy/machine"
import { MemoryStore, Store } from "@understudy/store"
import { Effect } from "effect"
import * as Machine from "../src/Machine.ts"
import type * as Message from "../src/Message.ts"
import { electedLeader, fakeCrypto, license, makeWorld, run, timing } from "../test/support/sim.ts"
import { type Kind, type RealRun, realRun } from "./realProcesses.ts"

const median = (values: ReadonlyArray<number>) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}
const runs = 3

// ---- re-attachment after the leader's crash (simulated) ----------------------------------
const crashAtMs = 6_000
const reattach: Array<{ p50: number; p99: number; count: number; of: number }> = []
/** Every re-attachment time of every seed, ms (the docs draw their distribution). */
const reattachSimMs: Array<number> = []
for (let seed = 1; seed <= runs; seed++) {
  const world = makeWorld(3, 1_000, 1_000)
  const report = run(seed, world, {
    schedule: [{ atMs: crashAtMs, fault: { _tag: "Crash", node: "s1", mode: "process" } }],
    durationMs: 12_000,
    collectEvents: true,
    check: "end",
    invariants: [],
  })
  const firstLeader = report.events.find((event) => event.event._tag === "BecameLeader")
  if (firstLeader?.node !== "s1") throw new Error(`seed ${seed}: s1 was not the first leader`)
  // The clients whose seat was at s1 when it crashed, and when each re-attached.
  const server = new Map<string, string>()
  const latency = new Map<string, number>()
  for (const { node, atMs, event } of report.events) {
    if (atMs < crashAtMs && (event._tag === "Granted" || event._tag === "Reattached"))
      server.set(node, event.server)
    if (atMs >= crashAtMs && event._tag === "Reattached" && !latency.has(node))
      latency.set(node, atMs - crashAtMs)
  }
  const victims = [...server].flatMap(([client, at]) => (at === "s1" ? [client] : []))
  const latencies = victims.flatMap((client) => latency.get(client) ?? [])
  reattachSimMs.push(...latencies)
  reattach.push({
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    count: latencies.length,
    of: victims.length,
  })
}

// ---- CPU per 1,000 heartbeats at the leader, and memory per 1,000 clients -----------------
const servers = ["s1", "s2", "s3"]
const leaderWith = (clients: number) => {
  const pool = Machine.make({
    servers,
    ...timing,
    crypto: fakeCrypto,
    initialLicense: license(clients),
    clientsPerServerMax: clients,
    // Every seat held at the leader (none handed out as shares): its step for `Beat`s is measured.
    shareSeatsMax: 0,
  })
  let state = electedLeader(pool)
  const tokens: Array<Message.Token> = []
  for (let index = 0; index < clients; index++) {
    const client = `c${index}`
    const result = pool.step(
      state,
      M.command(
        {
          _tag: "FromClient",
          from: client,
          message: { _tag: "Request", client, seq: 1, product: "cad", seats: 1 },
        },
        3_000,
      ),
    )
    state = result.state
    const granted = M.events(result.outputs).find((event) => event._tag === "Reply")
    if (granted?._tag !== "Reply" || granted.message._tag !== "Granted")
      throw new Error(`no grant for ${client}`)
    tokens.push(granted.message.token)
  }
  return { pool, state, tokens }
}

const cpuPerThousand: Array<number> = []
for (let round = 0; round < runs; round++) {
  let { pool, state, tokens } = leaderWith(1_000)
  const beats = 100_000
  const started = process.cpuUsage()
  for (let index = 0; index < beats; index++) {
    const client = index % 1_000
    const token = tokens[client]!
    state = pool.step(
      state,
      M.command(
        {
          _tag: "FromClient",
          from: token.client,
          message: {
            _tag: "Beat",
            client: token.client,
            seq: 2 + Math.floor(index / 1_000),
            token,
            leaseUntilMs: 9_000,
          },
        },
        3_000,
      ),
    ).state
  }
  const used = process.cpuUsage(started)
  cpuPerThousand.push((used.user + used.system) / 1_000 / (beats / 1_000))
}

const gc = (globalThis as { gc?: () => void }).gc
gc?.()
const heapBefore = process.memoryUsage().heapUsed
const big = leaderWith(10_000)
gc?.()
const memoryPerThousandKiB = (process.memoryUsage().heapUsed - heapBefore) / 10 / 1024
void big.state

// ---- baseline: a TTL lease per client on the embedded store --------------------------------
const baselineCpu: Array<number> = []
const held = new TextEncoder().encode("held")
for (let round = 0; round < runs; round++) {
  const ms = await Effect.runPromise(
    Effect.gen(function* () {
      const store = yield* Store.Store
      const leases: Array<string> = []
      for (let index = 0; index < 1_000; index++) {
        // A TTL no stall of a loaded machine outlasts (the cost of a keep-alive is the same).
        const lease = yield* store.grantLease(600_000)
        yield* store.put(`seat/c${index}`, held, { lease: lease.id })
        leases.push(lease.id)
      }
      const started = process.cpuUsage()
      for (let index = 0; index < 100_000; index++) yield* store.keepAlive(leases[index % 1_000]!)
      const used = process.cpuUsage(started)
      return (used.user + used.system) / 1_000 / 100
    }).pipe(Effect.provide(MemoryStore.layer), Effect.scoped),
  )
  baselineCpu.push(ms)
}

// ---- re-attachment after a real SIGKILL of the leader process -----------------------------
const realClients = 1_000
const realHeartbeatMs = 500
const allReal: Array<RealRun> = []
for (let round = 0; round < runs; round++) allReal.push(await realRun(realClients, realHeartbeatMs))
/** Runs whose clients were not all granted by the deadline measured nothing: shown, not used. */
const failedRuns = allReal.flatMap((run) => (run.failed === undefined ? [] : [run.failed]))
const real = allReal.filter((run) => run.failed === undefined)
if (failedRuns.length > 0) process.exitCode = 1
/** One run's percentile, or undefined when the killed leader held no such client. */
const runPercentile = (kind: Kind, p: number) =>
  kind.intervals.length === 0 ? undefined : percentile(kind.intervals, p)
/** Median and min–max over the runs that had such clients (the table says which did not). */
const realFigure = (pick: (run: RealRun) => Kind, p: number) => {
  const values = real.flatMap((run) => runPercentile(pick(run), p) ?? [])
  return values.length === 0
    ? { median: Number.NaN, min: Number.NaN, max: Number.NaN, runs: 0 }
    : {
        median: median(values),
        min: Math.min(...values),
        max: Math.max(...values),
        runs: values.length,
      }
}
const realP50 = realFigure((run) => run.pool, 50)
const realP99 = realFigure((run) => run.pool, 99)
const leaseP50 = realFigure((run) => run.lease, 50)
const leaseP99 = realFigure((run) => run.lease, 99)
/** One run's clients of one kind, for the JSON line. */
const runFigures = (kind: Kind) => ({
  reattached: kind.intervals.length,
  of: kind.victims,
  lost: kind.lost,
  denied: kind.denied,
  p50: runPercentile(kind, 50) ?? null,
  p99: runPercentile(kind, 99) ?? null,
})
/** `Denied` counts by reason, for the table: `electing 3, capacity 1`, or `0`. */
const denials = (counts: Readonly<Record<string, number>>) =>
  Object.entries(counts)
    .map(([reason, count]) => `${reason} ${count}`)
    .join(", ") || "0"
const range = (figure: { min: number; max: number; runs: number }) =>
  `min–max ${figure.min.toFixed(2)}–${figure.max.toFixed(2)}${figure.runs < runs ? ` (${figure.runs} of ${runs} runs)` : ""}`
const perRun = (kind: (run: RealRun) => Kind) =>
  real
    .map((run) => {
      const of = kind(run)
      const p50 = runPercentile(of, 50)
      const p99 = runPercentile(of, 99)
      return `${of.intervals.length}/${of.victims}${p50 === undefined ? "" : ` p50 ${p50.toFixed(2)} p99 ${p99!.toFixed(2)}`}${of.lost > 0 ? ` lost ${of.lost}` : ""} denied ${denials(of.denied)}`
    })
    .join("; ")

const interval = timing.heartbeatIntervalMs
const p50 = median(reattach.map((r) => r.p50))
const p99 = median(reattach.map((r) => r.p99))
const ms = (intervals: number) => `${Math.round(intervals * realHeartbeatMs)} ms`
const rows = [
  [
    "re-attach after leader crash, p50 (1,000 clients, sim)",
    `${p50} ms`,
    `${(p50 / interval).toFixed(1)} heartbeat intervals`,
    `runs ${reattach.map((r) => r.p50).join(", ")}`,
  ],
  [
    "re-attach after leader crash, p99 (1,000 clients, sim)",
    `${p99} ms`,
    `${(p99 / interval).toFixed(1)} heartbeat intervals`,
    `runs ${reattach.map((r) => r.p99).join(", ")}`,
  ],
  [
    "clients of the crashed leader re-attached, per run",
    reattach.map((r) => `${r.count}/${r.of}`).join(", "),
    "",
    "",
  ],
  [
    `real SIGKILL, ${realClients} clients: re-attach p50 (intervals of ${realHeartbeatMs} ms)`,
    realP50.runs === 0 ? "not measured" : `${realP50.median.toFixed(2)} (${ms(realP50.median)})`,
    range(realP50),
    `lease baseline ${leaseP50.median.toFixed(2)} (${range(leaseP50)}), ratio ${(realP50.median / leaseP50.median).toFixed(2)}`,
  ],
  [
    `real SIGKILL, ${realClients} clients: re-attach p99 (intervals of ${realHeartbeatMs} ms)`,
    realP99.runs === 0 ? "not measured" : `${realP99.median.toFixed(2)} (${ms(realP99.median)})`,
    range(realP99),
    `lease baseline ${leaseP99.median.toFixed(2)} (${range(leaseP99)}), ratio ${(realP99.median / leaseP99.median).toFixed(2)}`,
  ],
  [
    "real SIGKILL, pool: re-attached/held by the killed leader, per run",
    perRun((run) => run.pool),
    "",
    "",
  ],
  [
    "real SIGKILL, lease baseline: re-acquired/held there, per run",
    perRun((run) => run.lease),
    "",
    "",
  ],
  [
    "real SIGKILL: where clients held at the kill, per run",
    real
      .map(
        (run) =>
          `killed ${run.killed} (placed at ${run.placedAt}, ${run.electionsBeforeKill} election(s), ${run.lostBeforeKill} lost before, denied before ${denials(run.deniedBeforeKill)}): ${Object.entries(
            run.heldAtKill,
          )
            .sort()
            .map(([where, count]) => `${where} ${count}`)
            .join(", ")}`,
      )
      .join("; "),
    "",
    "",
  ],
  ...real.flatMap((run, index) => {
    const phases = run.phases
    if (phases === undefined) return []
    const at = (ms: number) => (ms / realHeartbeatMs).toFixed(2)
    const clientPhases = Object.entries(phases.client)
      .map(([name, p]) => `${name} ${at(p.p50)}/${at(p.p99)}`)
      .join(", ")
    const milestones = Object.entries(phases.servers)
      .filter(([server]) => server !== run.killed)
      .map(
        ([server, m]) =>
          `${server}: ${Object.entries(m)
            .filter(([, value]) => value !== undefined)
            .map(([name, value]) =>
              name === "carried" || name === "allocatedReattached"
                ? `${name} ${value}`
                : `${name} ${at(value!)}`,
            )
            .join(" ")}`,
      )
      .join("; ")
    const gaps = Object.entries(phases.gaps)
      .map(([name, p]) => `${name} ${at(p.p50)}/${at(p.p99)}`)
      .join(", ")
    const stalls = Object.entries(phases.stalls)
      .map(([proc, stall]) => `${proc} ${stall.totalMs}/${stall.maxMs} ms`)
      .join(", ")
    const delay = Object.entries(phases.delay)
      .map(([proc, d]) => `${proc} ${d.p50Ms}/${d.p99Ms}/${d.maxMs}`)
      .join(", ")
    return [
      [
        `real SIGKILL run ${index + 1}: pool phases from the kill, p50/p99 (intervals)`,
        clientPhases,
        "",
        `load ${run.loadAtKill.toFixed(1)} at the kill; killed process gone after ${phases.exitedMs} ms; left the killed leader ${Object.entries(
          run.detectedBy,
        )
          .map(([how, count]) => `${how} ${count}`)
          .join(
            ", ",
          )}; walks ${phases.walksPerClient.p50}/${phases.walksPerClient.p99}, waits of the detection ${phases.retryWaitMs.p50}/${phases.retryWaitMs.p99} ms, timers late ${phases.timerLateMs.p50}/${phases.timerLateMs.p99} ms`,
      ],
      [
        `real SIGKILL run ${index + 1}: per-client gaps between phases, p50/p99 (intervals)`,
        gaps,
        "",
        "",
      ],
      [`real SIGKILL run ${index + 1}: servers after the kill (intervals)`, milestones, "", ""],
      [
        `real SIGKILL run ${index + 1}: stalls in the 5 s after the kill (total/longest)`,
        stalls,
        "",
        `UDP receive-buffer drops ${phases.udpReceiveBufferErrors}`,
      ],
      [
        `real SIGKILL run ${index + 1}: event-loop delay in the 5 s after the kill, p50/p99/max ms`,
        delay,
        "",
        "",
      ],
    ]
  }),
  [
    `real SIGKILL: runs FAILED (not measured), ${failedRuns.length} of ${runs}`,
    failedRuns.length === 0 ? "none" : failedRuns.join("; "),
    "",
    "",
  ],
  [
    "leader CPU per 1,000 client heartbeats",
    `${median(cpuPerThousand).toFixed(2)} ms`,
    `min–max ${Math.min(...cpuPerThousand).toFixed(2)}–${Math.max(...cpuPerThousand).toFixed(2)}`,
    "",
  ],
  [
    "baseline: store keep-alive CPU per 1,000 leases",
    `${median(baselineCpu).toFixed(2)} ms`,
    `min–max ${Math.min(...baselineCpu).toFixed(2)}–${Math.max(...baselineCpu).toFixed(2)}`,
    `pool/baseline ${(median(cpuPerThousand) / median(baselineCpu)).toFixed(2)}`,
  ],
  [
    "load average at the end (1, 5, 15 min)",
    loadavg()
      .map((load) => load.toFixed(1))
      .join(", "),
    "",
    "",
  ],
  [
    "leader heap per 1,000 clients",
    `${memoryPerThousandKiB.toFixed(0)} KiB`,
    gc === undefined ? "(run with --expose-gc for exact)" : "",
    "",
  ],
]
for (const row of rows)
  console.log(`${row[0]!.padEnd(66)} ${row[1]!.padEnd(16)} ${row[2]!.padEnd(34)} ${row[3]}`)
console.log(
  JSON.stringify({
    reattachP50Ms: p50,
    reattachP99Ms: p99,
    reattachP50Intervals: p50 / interval,
    reattachP99Intervals: p99 / interval,
    heartbeatIntervalMs: interval,
    reattachedOfVictimsSim: reattach.map((r) => [r.count, r.of]),
    realClients,
    realHeartbeatIntervalMs: realHeartbeatMs,
    realReattachP50Intervals: realP50,
    realReattachP99Intervals: realP99,
    realBaselineP50Intervals: leaseP50,
    realBaselineP99Intervals: leaseP99,
    realP50RatioToBaseline: realP50.median / leaseP50.median,
    realP99RatioToBaseline: realP99.median / leaseP99.median,
    realRunsFailed: failedRuns,
    realRuns: real.map((run) => ({
      killed: run.killed,
      placedAt: run.placedAt,
      electionsBeforeKill: run.electionsBeforeKill,
      loadAtKill: run.loadAtKill,
      detectedBy: run.detectedBy,
      heldAtKill: run.heldAtKill,
      lostBeforeKill: run.lostBeforeKill,
      deniedBeforeKill: run.deniedBeforeKill,
      pool: runFigures(run.pool),
      lease: runFigures(run.lease),
      phases: run.phases ?? null,
    })),
    leaderCpuMsPer1000Heartbeats: median(cpuPerThousand),
    baselineStoreCpuMsPer1000KeepAlives: median(baselineCpu),
    cpuRatioPoolToBaseline: median(cpuPerThousand) / median(baselineCpu),
    leaderHeapKiBPer1000Clients: Math.round(memoryPerThousandKiB),
    loadAverage: loadavg().map((load) => Number(load.toFixed(2))),
    // Every sample, for the docs' distributions; the baseline is the lease-per-client one.
    samples: {
      reattachSimMs,
      realReattachIntervals: real.flatMap((run) => run.pool.intervals),
      realBaselineReattachIntervals: real.flatMap((run) => run.lease.intervals),
    },
  }),
)
