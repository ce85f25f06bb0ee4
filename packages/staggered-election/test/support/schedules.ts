/**
 * The main FastSim check of the staggered election (see `Election.fastsim.test.ts`): seeded
 * schedules, each with a server frozen past the time-outs and resumed, every other one with
 * durable restarts and disk faults, every `forgeEvery`th with forged traffic; all the
 * invariants of `invariants.ts`. The schedules are cut in two halves, one per test file
 * (`Election.fastsim.test.ts`, `Election.fastsim.secondHalf.test.ts`): vitest runs files, not
 * tests, on its two workers, so the halves run at once on the two cores.
 */
import { randomBytes } from "node:crypto"
import { expect } from "@effect/vitest"
import { Authentication } from "@understudy/machine"
import { FastSim, Prng, Seeds } from "@understudy/testkit"
import * as Machine from "../../src/Machine.ts"
import { diskFaultChance, durableMachine } from "./disk.ts"
import { forgery, pauseOf, withForgery, withPause } from "./faults.ts"
import { base, coverage, makeClient, runSchedule as run } from "./invariants.ts"

export const schedules = Number(process.env.STAGGERED_SCHEDULES ?? 10_000)
export const forgeEvery = Number(process.env.STAGGERED_FORGE_EVERY ?? 10)

/**
 * Half `part` of `Seeds.seeds(schedules)`: the first half, or the rest. A replayed seed
 * (`UNDERSTUDY_SEED`) is the whole list, so it lands in the first half.
 */
export const half = (part: 1 | 2): Array<number> => {
  const all = Seeds.seeds(schedules)
  const cut = Math.ceil(all.length / 2)
  return part === 1 ? all.slice(0, cut) : all.slice(cut)
}

export const title = (seeds: ReadonlyArray<number>): string =>
  `one master per epoch, prefix-consistent applied sequences, no answered request lost, no stale read, convergence, under pauses, disk faults (every other schedule) and forgery (every ${forgeEvery === 1 ? "" : `${forgeEvery}th `}schedule), over ${seeds.length} schedules (seeds ${seeds[0]}–${seeds[seeds.length - 1]})`

/** Runs every schedule of `seeds` (even after a failure, to list every failing seed), then checks the premises were met in proportion to their count. */
export const checkSchedules = (seeds: ReadonlyArray<number>): void => {
  const amnesiac = Machine.make(base)
  const key = Authentication.keyed(new Uint8Array(randomBytes(32)))
  const startedAt = performance.now()
  let steps = 0
  let crashes = 0
  const pauses = { paused: 0, mastersResumedBehind: 0, readsConfirmed: 0 }
  const cuts = { cut: 0, lostTail: 0, torn: 0, zeroFilled: 0, partial: 0 }
  let restoredWithLog = 0
  let forged = 0
  // Every schedule runs even after a failure, so one run lists every failing seed.
  const failures: Array<string> = []
  let first: string | undefined
  for (const seed of seeds) {
    const durable =
      seed % 2 === 1
        ? durableMachine(base, {
            random: Prng.make(seed).next,
            chance: diskFaultChance,
            counts: cuts,
          })
        : undefined
    const client = makeClient()
    const inner = durable?.machine ?? amnesiac
    const forging = seed % forgeEvery === 0
    if (forging) forged++
    const paused = withPause(
      forging ? withForgery(inner, key, Prng.make(-seed).next) : inner,
      pauseOf(seed),
      client,
    )
    const acceptedBefore = forgery.accepted
    try {
      const report = run(paused.machine, seed, {
        client,
        ...(Seeds.isReplay() ? { traceLines: 1_000_000 } : {}),
      })
      steps += report.steps
      crashes += report.schedule.filter((item) => item.fault._tag === "Crash").length
      if (Seeds.isReplay()) console.log(report.formatTrace())
    } catch (error) {
      const failure =
        error instanceof FastSim.FastSimFailure
          ? `SEED=${error.seed}: ${error.invariant}: ${error.detail}`
          : `SEED=${seed}: ${error instanceof Error ? error.message : String(error)}`
      first ??= error instanceof Error ? error.message : failure
      failures.push(failure)
    }
    if (forgery.accepted > acceptedBefore) {
      failures.push(`SEED=${seed}: ${forgery.accepted - acceptedBefore} forged datagrams accepted`)
    }
    pauses.paused += paused.counts.paused
    pauses.mastersResumedBehind += paused.counts.mastersResumedBehind
    pauses.readsConfirmed += paused.counts.readsConfirmed
    restoredWithLog += durable?.counts.restoredWithLog ?? 0
  }
  const wallMs = performance.now() - startedAt
  console.log(
    `FastSim: ${seeds.length} schedules, ${crashes} crashes, ${steps} steps in ${Math.round(wallMs)} ms: ${(wallMs / seeds.length).toFixed(2)} ms per schedule, ${Math.round(steps / (wallMs / 1_000))} steps/s with invariants`,
  )
  console.log(
    `premises met: ${JSON.stringify(coverage)}; pauses ${JSON.stringify(pauses)}; durable restarts with a log ${restoredWithLog}, disk faults ${JSON.stringify(cuts)}; forgery over ${forged} schedules ${JSON.stringify(forgery)}`,
  )
  if (failures.length > 0) {
    throw new Error(
      `${first ?? failures[0]}\n\n${failures.length} of ${seeds.length} schedules failed:\n  ${failures.join("\n  ")}`,
    )
  }
  if (!Seeds.isReplay()) {
    const n = seeds.length
    expect(crashes).toBeGreaterThan(n / 2)
    expect(coverage.masterChanges).toBeGreaterThan(n * 2)
    expect(coverage.answered).toBeGreaterThan(n * 5)
    expect(pauses.paused).toBeGreaterThan(n / 2)
    expect(pauses.mastersResumedBehind).toBeGreaterThan(0)
    expect(pauses.readsConfirmed).toBeGreaterThan(n * 10)
    expect(restoredWithLog).toBeGreaterThan(n / 8)
    // Every kind of cut, some keeping whole new records.
    expect(cuts.lostTail).toBeGreaterThan(n / 16)
    expect(cuts.torn).toBeGreaterThan(n / 16)
    expect(cuts.zeroFilled).toBeGreaterThan(n / 16)
    expect(cuts.partial).toBeGreaterThan(n / 80)
    // Genuine sealed traffic captured, and every kind of forgery dropped.
    expect(forgery.genuineSealed).toBeGreaterThan(forged * 20)
    expect(forgery.dropped.Replayed).toBeGreaterThan(forged)
    expect(forgery.dropped.Unauthenticated).toBeGreaterThan(forged * 10)
  }
}
