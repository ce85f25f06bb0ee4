/**
 * The staggered election with replication under seeded fault schedules on SimNet: 5 servers,
 * crashes and restarts, partitions both ways and one way, degraded links (asymmetric delay,
 * loss, duplication, reordering), and a client submitting (and retrying) requests at
 * whichever server is master. Replay a seed with
 * `UNDERSTUDY_SEED=<n> npx vitest run test/Election.sim.test.ts`; run more schedules with
 * `STAGGERED_SIM_SCHEDULES=<count>`. This is the cross-check of `Election.fastsim.test.ts`
 * (the same machine and invariants over 10,000 schedules) through the real codec, network
 * and Runner, which cost ~2.4 s a schedule: 10 schedules by default (50 before, the suite's
 * largest cost for what FastSim already covers). With leader-lease reads, a server frozen
 * past the time-outs and every clock drifting (`withPause`, `withDrift`): no confirmed read
 * is stale, over `STAGGERED_SIM_LEASE_SCHEDULES` schedules (default 1: ~2.5 s each).
 */
import { describe, expect, it } from "@effect/vitest"
import { Seeds, Simulation } from "@understudy/testkit"
import { Effect } from "effect"
import * as Machine from "../src/Machine.ts"
import { pauseOf, withDrift, withPause } from "./support/faults.ts"
import {
  base,
  brokenMachine,
  type Client,
  type Config,
  codec,
  convergenceBoundMs,
  coverage,
  describeState,
  durationMs,
  faults,
  faultsEndMs,
  goodLink,
  invariants,
  makeClient,
  nodes,
  type Req,
  type Res,
  withClient,
} from "./support/invariants.ts"

/** One SimNet schedule of `machine` with `client` (a new one by default) and every invariant. */
const simulate = (
  machine: Machine.StaggeredElection<number, Req, Res>,
  seed: number,
  client: Client = makeClient(),
) =>
  Simulation.simulate({
    machine: withClient(machine, client),
    codec,
    nodes,
    seed,
    durationMs,
    link: goodLink,
    faults,
    invariants: invariants(client),
    traceSteps: Seeds.isReplay(),
    describeState,
  })

const schedules = Number(process.env.STAGGERED_SIM_SCHEDULES ?? 10)
const leaseSchedules = Number(process.env.STAGGERED_SIM_LEASE_SCHEDULES ?? 1)

describe("StaggeredElection under simulation", () => {
  it("the convergence bound comes from the configuration", () => {
    console.log(
      `convergence bound after the heal: ${convergenceBoundMs} ms; run ${durationMs} ms of simulated time`,
    )
    expect(convergenceBoundMs).toBeGreaterThan(base.inquiryTimeoutMs + base.baseDelayMs)
    expect(durationMs - faultsEndMs).toBeGreaterThanOrEqual(convergenceBoundMs)
  })

  const seeds = Seeds.seeds(schedules)
  it.effect(
    `one master per epoch, prefix-consistent applied sequences, no answered request lost, convergence, over ${seeds.length} schedules`,
    () =>
      Effect.gen(function* () {
        const startedAt = performance.now()
        let steps = 0
        let crashes = 0
        for (const seed of seeds) {
          const report = yield* simulate(Machine.make(base), seed)
          steps += report.steps
          crashes += report.schedule.filter((item) => item.fault._tag === "Crash").length
          if (Seeds.isReplay()) console.log(Simulation.formatTrace(report))
        }
        const wallMs = performance.now() - startedAt
        console.log(
          `${seeds.length} schedules, ${crashes} crashes, ${steps} steps in ${Math.round(wallMs)} ms: ${(wallMs / seeds.length).toFixed(1)} ms per schedule, ${((wallMs * 1000) / steps).toFixed(1)} µs per step`,
        )
        console.log(`premises met: ${JSON.stringify(coverage)}`)
        if (!Seeds.isReplay()) {
          expect(crashes).toBeGreaterThan(seeds.length / 2)
          expect(coverage.masterChanges).toBeGreaterThan(seeds.length * 2)
          expect(coverage.answered).toBeGreaterThan(seeds.length * 5)
        }
      }),
    600_000,
  )

  const drift = 0.05
  it.effect(
    `leader-lease reads, clocks drifting by ${drift * 100}%, a server frozen past the time-outs: the invariants hold and no confirmed read is stale, over ${leaseSchedules} schedules`,
    () =>
      Effect.gen(function* () {
        const machine = Machine.make({ ...base, lease: { clockDriftMax: drift } })
        const totals = { paused: 0, readsConfirmed: 0, readsAtOnce: 0 }
        for (const seed of Seeds.seeds(leaseSchedules)) {
          const client = makeClient()
          const paused = withPause(withDrift(machine, drift, seed), pauseOf(seed), client)
          yield* simulate(paused.machine, seed, client)
          totals.paused += paused.counts.paused
          totals.readsConfirmed += paused.counts.readsConfirmed
          totals.readsAtOnce += paused.counts.readsAtOnce
        }
        console.log(`SimNet lease: ${JSON.stringify(totals)}`)
        if (!Seeds.isReplay()) {
          expect(totals.paused).toBeGreaterThan(0)
          expect(totals.readsAtOnce).toBeGreaterThan(totals.readsConfirmed / 2)
        }
      }),
    600_000,
  )

  it.effect("catches a broken variant: equal election delays and no index comparison", () =>
    Effect.gen(function* () {
      // Same delays for all: servers that detect together declare together; with no index
      // comparison nothing resolves the conflict, so two masters remain after the heal.
      const broken: Config = base
      let found: Simulation.SimulationFailure | undefined
      for (const seed of Seeds.seeds(50)) {
        const result = yield* Effect.flip(brokenSimulate(broken, seed)).pipe(Effect.option)
        if (result._tag === "Some") {
          found = result.value
          break
        }
      }
      expect(found).toBeDefined()
      console.log(
        `broken variant caught: SEED=${found!.seed} ${found!.invariant}: ${found!.detail}`,
      )
      expect(found!.message).toMatch(/^SEED=\d+: invariant/)
    }),
  )
})

/** The broken variant (see `brokenMachine`) with its own client. */
const brokenSimulate = (config: Config, seed: number) => {
  const client = makeClient()
  return Simulation.simulate({
    machine: withClient(brokenMachine(config), client),
    codec,
    nodes,
    seed,
    durationMs,
    link: goodLink,
    faults,
    invariants: invariants(client),
    traceSteps: false,
  })
}
