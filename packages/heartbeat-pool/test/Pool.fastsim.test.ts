/**
 * The pool on FastSim over seeded fault schedules (crashes, restarts, partitions, loss,
 * delay, duplication, reordering among the servers), with the invariants of `support/sim.ts`
 * checked after every step. Replay a seed with
 * `UNDERSTUDY_SEED=<n> npx vitest run test/Pool.fastsim.test.ts`; run another number of
 * schedules with `POOL_SCHEDULES=<count>`.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastSim, Seeds } from "@understudy/testkit"
import { coverage, goodLink, invariants, makeWorld, run } from "./support/sim.ts"

const schedules = Number(process.env.POOL_SCHEDULES ?? 5_000)

/** Mostly small pools of clients, some short of seats; every 1,000th schedule 1,000 clients. */
const worldFor = (seed: number) => {
  if (seed % 1_000 === 0) return makeWorld(3, 1_000, 900)
  const clients = 2 + (seed % 7)
  const capacity = seed % 3 === 0 ? clients - 1 : clients + 1
  return makeWorld(seed % 4 === 0 ? 5 : 3, clients, capacity)
}

/**
 * Schedules past the first 5,000 that once broke an invariant, run with them: each exceeded
 * the license by a seat a follower cut off right after its reservation went on renewing.
 */
const regressions = [
  6108, 11288, 11856, 13599, 18378, 23356, 25176, 26943, 31869, 32973, 33084, 38904, 48100,
]

describe("heartbeat pool under FastSim", () => {
  const seeds = Seeds.isReplay()
    ? Seeds.seeds(schedules)
    : [...Seeds.seeds(schedules), ...regressions.filter((seed) => seed > schedules)]
  it(`seats held plus unused shares never above the license, one leader per term, re-attachments never refused, convergence, over ${seeds.length} schedules`, () => {
    const startedAt = performance.now()
    const cpuAt = process.cpuUsage()
    let steps = 0
    const failures: Array<FastSim.FastSimFailure> = []
    for (const seed of seeds) {
      try {
        const report = run(seed, worldFor(seed), Seeds.isReplay() ? { traceLines: 100_000 } : {})
        steps += report.steps
        if (Seeds.isReplay()) console.log(report.formatTrace())
      } catch (error) {
        if (!(error instanceof FastSim.FastSimFailure)) throw error
        failures.push(error)
      }
    }
    const wallMs = performance.now() - startedAt
    console.log(
      `FastSim: ${seeds.length} schedules, ${steps} steps in ${Math.round(wallMs)} ms (CPU ${Math.round(process.cpuUsage(cpuAt).user / 1000)} ms); ${JSON.stringify(coverage)}`,
    )
    if (failures.length > 0) {
      const list = failures
        .slice(0, 20)
        .map((failure) => `  SEED=${failure.seed}: ${failure.invariant}: ${failure.detail}`)
      throw new Error(
        `${failures[0]!.message}\n\n${failures.length} of ${seeds.length} schedules failed:\n${list.join("\n")}`,
      )
    }
    if (!Seeds.isReplay()) {
      expect(coverage.reattached).toBeGreaterThan(seeds.length)
      expect(coverage.leaderChanges).toBeGreaterThan(seeds.length * 2)
      expect(coverage.merged).toBeGreaterThan(seeds.length * 2)
      // Clients notice a silent server within a few round trips and are carried elsewhere, so
      // fewer lose their seats and ask again: fewer requests reach a follower with a share.
      expect(coverage.shareGrants).toBeGreaterThan(seeds.length / 10)
    }
  }, 900_000)

  it("with as many seats as clients and no fault, no client is ever refused for capacity (the last free seats may be out as shares)", () => {
    const waitsBefore = coverage.waits
    for (const seed of Seeds.seeds(5)) {
      const world = makeWorld(3, 100, 100)
      run(seed, world, {
        schedule: [],
        // Slow links: a lowered share stays counted until its acknowledgement comes back.
        link: { ...goodLink, latency: { _tag: "Uniform", minMs: 20, maxMs: 80 } },
        invariants: [
          ...invariants(world),
          {
            name: "a seat that fits is never refused for capacity",
            check: (view) => {
              for (const output of view.step?.outputs ?? []) {
                if (
                  output._tag === "Emit" &&
                  output.event._tag === "Denied" &&
                  output.event.reason === "capacity"
                )
                  return `${view.step!.node} refused for capacity by ${output.event.server}`
              }
              return undefined
            },
          },
        ],
      })
    }
    // The requests at the edge were told to wait (not refused, not left unanswered).
    if (!Seeds.isReplay()) expect(coverage.waits).toBeGreaterThan(waitsBefore)
  })
})
