/**
 * What a leader's durable write costs per step, with `n` clients holding seats and each step
 * granting `k` new seats and taking `k` back (`2k` changes). Before: the whole state written
 * per step (`writeAtomic` of every allocation: a temporary file, fsync, rename, directory
 * fsync). Now: the step's changes appended to the journal and fdatasynced, the snapshot
 * written again only when the journal outgrows it (`StateFiles.persistStep`). Both on the same
 * machine states, in the same run, alternating rounds (so the machine's load falls on both), in
 * the system's temporary directory (state files are small: fsync cost dominates). A table, then
 * one JSON line. Run: `npm exec -- node bench/durableWrite.ts` (a quiet machine for figures;
 * the load average is printed). `BENCH_SIZES=1000,10000`, `BENCH_CHANGES=1,64`.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { Machine as M } from "@understudy/machine"
import { writeAtomic } from "../src/internal/durableFile.ts"
import * as StateFiles from "../src/internal/stateFiles.ts"
import * as Machine from "../src/Machine.ts"
import type * as Message from "../src/Message.ts"
import { electedLeader, fakeCrypto, license, timing } from "../test/support/sim.ts"

const sizes = (process.env.BENCH_SIZES ?? "1000,10000").split(",").map(Number)
const changes = (process.env.BENCH_CHANGES ?? "1,64").split(",").map(Number)
const steps = 100
const rounds = 3
const dir = mkdtempSync(join(tmpdir(), "heartbeat-pool-durable-bench-"))

const pool = Machine.make({
  servers: ["s1", "s2", "s3"],
  ...timing,
  crypto: fakeCrypto,
  initialLicense: license(1_000_000),
  shareSeatsMax: 0,
  clientsPerServerMax: 100_000,
})
const request = (client: string): M.Input<Message.Peer, Machine.Command> =>
  M.command(
    {
      _tag: "FromClient",
      from: client,
      message: { _tag: "Request", client, seq: 1, product: "cad", seats: 1 },
    },
    3_000,
  )
const release = (client: string): M.Input<Message.Peer, Machine.Command> =>
  M.command(
    { _tag: "FromClient", from: client, message: { _tag: "Release", client, seq: 2 } },
    3_000,
  )

/** The leader holding `n` clients, then `steps` steps of `k` grants and `k` releases each. */
const scenario = (n: number, k: number) => {
  let state = electedLeader(pool)
  for (let index = 0; index < n; index++) state = pool.step(state, request(`c${index}`)).state
  const states = [state]
  for (let step = 0; step < steps; step++) {
    for (let index = 0; index < k; index++) {
      state = pool.step(state, request(`c${n + step * k + index}`)).state
      state = pool.step(state, release(`c${step * k + index}`)).state
    }
    states.push(state)
  }
  return states
}

/** Milliseconds per step of `write(before, after)` over the states, after a first write. */
const time = (
  states: ReadonlyArray<Machine.State>,
  write: (before: Machine.State | undefined, after: Machine.State) => void,
) => {
  write(undefined, states[0]!)
  const startedAt = performance.now()
  for (let step = 1; step < states.length; step++) write(states[step - 1], states[step]!)
  return (performance.now() - startedAt) / (states.length - 1)
}

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

const rows: Array<{
  clients: number
  changesPerStep: number
  wholeMs: number
  journalMs: number
  ratio: number
}> = []
const loadBefore = loadavg()[0]!
for (const n of sizes) {
  for (const k of changes) {
    const states = scenario(n, k)
    const whole: Array<number> = []
    const journal: Array<number> = []
    for (let round = 0; round < rounds; round++) {
      const path = join(dir, `${n}-${k}-${round}`)
      whole.push(
        time(states, (_before, after) =>
          writeAtomic(`${path}.whole.json`, JSON.stringify(StateFiles.wholeOf(after))),
        ),
      )
      const files = StateFiles.open(`${path}.state.json`)
      journal.push(time(states, (before, after) => StateFiles.persistStep(files, before, after)))
      files.close()
    }
    const wholeMs = median(whole)
    const journalMs = median(journal)
    rows.push({ clients: n, changesPerStep: 2 * k, wholeMs, journalMs, ratio: wholeMs / journalMs })
  }
}
rmSync(dir, { recursive: true, force: true })

const load = [loadBefore, loadavg()[0]!].map((value) => Number(value.toFixed(1)))
console.log(
  `durable write per step, median of ${rounds} rounds of ${steps} steps (load ${load.join(" -> ")})`,
)
console.log(
  `${"clients".padEnd(9)}${"changes/step".padEnd(14)}${"whole (ms)".padEnd(12)}${"journal (ms)".padEnd(14)}whole / journal`,
)
for (const row of rows)
  console.log(
    `${String(row.clients).padEnd(9)}${String(row.changesPerStep).padEnd(14)}${row.wholeMs.toFixed(3).padEnd(12)}${row.journalMs.toFixed(3).padEnd(14)}${row.ratio.toFixed(1)}x`,
  )
console.log(
  JSON.stringify({
    bench: "durable-write",
    loadavg1: load,
    rows: rows.map((row) => ({
      ...row,
      wholeMs: Number(row.wholeMs.toFixed(3)),
      journalMs: Number(row.journalMs.toFixed(3)),
      ratio: Number(row.ratio.toFixed(2)),
    })),
  }),
)
