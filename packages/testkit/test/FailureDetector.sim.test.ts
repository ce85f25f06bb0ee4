/**
 * The heartbeat failure detector under 200 seeded fault schedules: crashes and restarts,
 * partitions both ways and one way, degraded links (latency, loss, duplication, reordering).
 * Replay one seed with `UNDERSTUDY_SEED=<n> npx vitest run test/FailureDetector.sim.test.ts`.
 */
import { describe, expect, it } from "@effect/vitest"
import { FailureDetector } from "@understudy/machine"
import { Effect } from "effect"
import * as Seeds from "../src/Seeds.ts"
import * as Simulation from "../src/Simulation.ts"
import {
  accuracy,
  completeness,
  coverage,
  durationMs,
  faults,
  goodDelayMs,
  goodLink,
  nodes,
} from "./support/failureDetector.ts"

const simulate = (config: FailureDetector.Config, seed: number) =>
  Simulation.simulate({
    machine: FailureDetector.make(config),
    codec: FailureDetector.codec,
    nodes,
    seed,
    durationMs,
    link: goodLink,
    faults,
    invariants: [completeness(config), accuracy(config)],
    describeState: (state) =>
      Object.entries(state.peers)
        .map(([peer, view]) => `${peer}=${view.status}@${view.sinceMs}/heard ${view.lastHeardMs}`)
        .join(" "),
  })

// The detector's parameters leave room for the healthy delay: 40 ms < 400 - 100.
const config: FailureDetector.Config = { intervalMs: 100, timeoutMs: 400 }

describe("FailureDetector under simulation", () => {
  it("the schedule parameters keep the healthy delay within timeoutMs - intervalMs", () => {
    expect(goodDelayMs).toBeLessThan(config.timeoutMs - config.intervalMs)
  })

  // The wide run of this property is FastSim's, on 2,000 of the same schedules
  // (FastSim.test.ts); this simulator runs the Effect driver on SimNet, ten times slower per
  // schedule, so it takes the first 200.
  const seeds = Seeds.seeds(200)
  it.effect(
    `holds completeness and accuracy over ${seeds.length} seeded fault schedules`,
    () =>
      Effect.gen(function* () {
        const startedAt = performance.now()
        let steps = 0
        let faultsApplied = 0
        let crashes = 0
        for (const seed of seeds) {
          const report = yield* simulate(config, seed)
          steps += report.steps
          faultsApplied += report.schedule.length
          crashes += report.schedule.filter((item) => item.fault._tag === "Crash").length
          if (Seeds.isReplay()) console.log(Simulation.formatTrace(report))
        }
        const wallMs = Math.round(performance.now() - startedAt)
        console.log(
          `${seeds.length} schedules, ${faultsApplied} faults (${crashes} crashes), ${steps} steps in ${wallMs} ms of wall time`,
        )
        console.log(`premises met: ${JSON.stringify(coverage)}`)
        // The schedules really exercise the detector: crashes happen and nodes step a lot,
        // crashed nodes get suspected, faults cause suspicions, and after the final heal most
        // pairs are in the accuracy premise.
        if (!Seeds.isReplay()) {
          expect(crashes).toBeGreaterThan(seeds.length / 2)
          expect(steps).toBeGreaterThan(seeds.length * 500)
          expect(coverage.crashedAndSuspected).toBeGreaterThan(seeds.length)
          expect(coverage.suspectedExcused).toBeGreaterThan(seeds.length)
          expect(coverage.healthyAtEnd).toBeGreaterThan(seeds.length * 5)
        }
      }),
    300_000,
  )

  it.effect("catches a detector whose time-out is shorter than the link delay", () =>
    Effect.gen(function* () {
      // timeoutMs 60 > intervalMs 50, so the config is valid, but heartbeats 50 ms apart that
      // take 1..40 ms can arrive up to 89 ms apart: live peers get suspected.
      const broken: FailureDetector.Config = { intervalMs: 50, timeoutMs: 60 }
      const failure = yield* Effect.flip(simulate(broken, 7))
      expect(failure._tag).toBe("SimulationFailure")
      expect(failure.seed).toBe(7)
      expect(failure.invariant).toBe("accuracy")
      expect(failure.message).toMatch(/^SEED=7: invariant "accuracy" violated at \d+ ms/)
      expect(failure.message).toContain("UNDERSTUDY_SEED=7")
      // The trace shows the machine's steps interleaved with the network's events.
      expect(failure.message).toMatch(/note\s+n\d\s+timer timeout:n\d => EMIT \{"_tag":"Suspected"/)
      expect(failure.message).toMatch(/deliver\s+udp:\/\/n\d:7000 → udp:\/\/n\d:7000/)
      expect(failure.message.split("\n").length).toBeGreaterThan(50)
    }),
  )

  it.effect("catches a detector that never suspects anyone (completeness)", () =>
    Effect.gen(function* () {
      // Suspects nobody: its time-outs are far beyond the run.
      const lazy: FailureDetector.Config = { intervalMs: 100, timeoutMs: 60_000 }
      const failure = yield* Effect.flip(
        Simulation.simulate({
          machine: FailureDetector.make(lazy),
          codec: FailureDetector.codec,
          nodes,
          seed: 3,
          durationMs,
          link: goodLink,
          schedule: [{ atMs: 500, fault: { _tag: "Crash", node: "n2", mode: "host" } }],
          invariants: [completeness(config)],
        }),
      )
      expect(failure.invariant).toBe("completeness")
      expect(failure.detail).toMatch(/still trusts n2, down since 500 ms/)
      expect(failure.message).toContain("crash n2 (host)")
    }),
  )

  it.effect("the same seed gives the same trace; another seed another", () =>
    Effect.gen(function* () {
      const first = yield* simulate(config, 42)
      const again = yield* simulate(config, 42)
      const other = yield* simulate(config, 43)
      expect(Simulation.formatTrace(again)).toBe(Simulation.formatTrace(first))
      expect(again.schedule).toEqual(first.schedule)
      expect(first.trace.length).toBeGreaterThan(1_000)
      expect(Simulation.formatTrace(other)).not.toBe(Simulation.formatTrace(first))
    }),
  )
})
