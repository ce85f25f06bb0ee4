/**
 * Write throughput against the log's lifetime length, with compaction (`Machine.Config.snapshot`):
 * three servers of the key-value state machine (a persistent map, 10,000 keys, 100 clients)
 * step in one process, every message delivered at once, so the figure is the machines' own
 * cost per write (what the log, the client table and compaction cost), not the network's.
 * At 10k, 100k and 500k entries appended over the group's life, 3 windows of `BENCH_WINDOW`
 * writes (default 2,000) each: writes/s, median with min–max, and the ratio of the 500k and
 * 100k medians to the 10k one (1 when a write costs the same whatever the log's age; before
 * compaction every write copied the whole log, and the app refused writes past 500,000).
 *
 * @since 0.1.0
 */
import { Machine as M } from "@understudy/machine"
import { HashMap, Option, Schema } from "effect"
import * as Machine from "../src/Machine.ts"
import type * as Message from "../src/Message.ts"
import * as Replication from "../src/Replication.ts"

type State = HashMap.HashMap<string, string>
type Req = { readonly key: string; readonly value: string }
type Res = { readonly previous: string | null }
type Msg = Message.Message<Req>

const ids = ["s1", "s2", "s3"]
const window = Math.max(100, Number(process.env.BENCH_WINDOW ?? 2_000))
/** Lifetime lengths measured at: `BENCH_COMPACTION_AT` (comma-separated), default 10k, 100k, 500k. */
const points = (process.env.BENCH_COMPACTION_AT ?? "10000,100000,500000")
  .split(",")
  .map(Number)
  .filter((n) => Number.isInteger(n) && n > 0)
  .sort((a, b) => a - b)

const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

/** Runs the measurement; returns the table's rows and the JSON figures. */
export const run = (): { rows: Array<string>; figures: Record<string, number> } => {
  const machine = Machine.make<State, Req, Res>({
    servers: ids.map((id, i) => ({ id, capacity: { cpu: 10 - i, bandwidthMbps: 1 } })),
    detectionPeriodMs: 100,
    inquiryTimeoutMs: 300,
    baseDelayMs: 50,
    initial: HashMap.empty(),
    apply: (state, request) => [
      HashMap.set(state, request.key, request.value),
      { previous: Option.getOrNull(HashMap.get(state, request.key)) },
    ],
    snapshot: Replication.snapshotCodec(
      Schema.HashMap(Schema.String, Schema.String),
      Schema.Struct({ previous: Schema.NullOr(Schema.String) }),
    ),
    compactEvery: 10_000,
    logEntriesMax: 100_000,
  })
  const states = new Map<string, Machine.State<State, Req, Res>>()
  let queue: Array<{ from: string; to: string; message: Msg }> = []
  let answered = 0
  const absorb = (
    node: string,
    result: M.Result<Machine.State<State, Req, Res>, Msg, Machine.Event<Res>>,
  ) => {
    states.set(node, result.state)
    for (const output of result.outputs) {
      if (output._tag === "Send") queue.push({ from: node, to: output.to, message: output.message })
      else if (output._tag === "Broadcast") {
        for (const to of ids)
          if (to !== node) queue.push({ from: node, to, message: output.message })
      } else if (output._tag === "Emit" && output.event._tag === "Answered") answered++
    }
  }
  let nowMs = 0
  const deliver = () => {
    while (queue.length > 0) {
      const batch = queue
      queue = []
      for (const { from, to, message } of batch) {
        absorb(to, machine.step(states.get(to)!, M.receive(from, message, nowMs)))
      }
    }
  }
  for (const id of ids)
    absorb(id, machine.init({ self: id, peers: ids.filter((p) => p !== id), nowMs }))
  deliver()
  nowMs = 50
  absorb("s1", machine.step(states.get("s1")!, M.timerFired(Machine.electionTimer, nowMs)))
  deliver()
  for (const id of ids) {
    absorb(id, machine.step(states.get(id)!, M.timerFired(Machine.detectTimer, nowMs)))
    deliver()
  }
  let written = 0
  const requestIds = new Map<string, number>()
  const write = () => {
    const clientId = `c${written % 100}`
    const requestId = (requestIds.get(clientId) ?? 0) + 1
    requestIds.set(clientId, requestId)
    const key = `k${written % 10_000}`
    written++
    absorb(
      "s1",
      machine.step(
        states.get("s1")!,
        M.command(
          { _tag: "Submit", clientId, requestId, request: { key, value: `v${written}` } },
          nowMs,
        ),
      ),
    )
    deliver()
    // Time moves on, inside the inquiry time-out: every backup stays live.
    nowMs += 0.01
  }
  const rows: Array<string> = []
  const figures: Record<string, number> = {}
  const medians: Record<number, number> = {}
  for (const at of points) {
    while (written < at) write()
    const rates: Array<number> = []
    for (let i = 0; i < 3; i++) {
      const started = performance.now()
      for (let n = 0; n < window; n++) write()
      rates.push(window / ((performance.now() - started) / 1_000))
    }
    const s1 = states.get("s1")!.replica
    medians[at] = median(rates)
    figures[`compactionWritesPerSec_${at / 1_000}k`] = Math.round(medians[at]!)
    figures[`compactionWritesPerSecMin_${at / 1_000}k`] = Math.round(Math.min(...rates))
    figures[`compactionWritesPerSecMax_${at / 1_000}k`] = Math.round(Math.max(...rates))
    rows.push(
      `${String(at).padStart(8)} ${String(Math.round(medians[at]!)).padStart(10)} ${`${Math.round(Math.min(...rates))}–${Math.round(Math.max(...rates))}`.padStart(14)} ${String(s1.log.length).padStart(8)} ${String(s1.base.seq).padStart(9)}`,
    )
  }
  if (answered !== written) throw new Error(`${written} writes, ${answered} answered`)
  const first = points[0]!
  for (const at of points.slice(1)) {
    figures[`compactionRatio_${at / 1_000}k_${first / 1_000}k`] =
      Math.round((medians[at]! / medians[first]!) * 100) / 100
  }
  return { rows, figures }
}

/** The table's heading. */
export const heading = `\ncompaction: writes/s through 3 machines (median of 3 windows of ${window}, min–max) at a lifetime log length; log = entries held, base = snapshot position\n entries   writes/s        min–max      log      base`
