/**
 * The port election's machines, the supervisor's and the subordinate's, on FastSim (see
 * `support/sim.ts`): five instances through seeded schedules of crashes and restarts while
 * they contend for a mutex and a semaphore of 2.
 * Members stand by at the designated successor (pre-registered over a standby connection);
 * when the supervisor dies the successor takes over and welcomes them over it (about one
 * such takeover per schedule, each member confirming what it holds), or, when it is gone
 * too, any instance binds, a restarted one that never saw a registry included. Checked after
 * every step: never more permits held than a limit, one supervisor, no live holder ever
 * loses a permit; at the end, the supervisor's record of who holds what is exactly what every
 * instance holds. Replay a seed with
 * `UNDERSTUDY_SEED=<n> npx vitest run test/Machine.fastsim.test.ts`; run another number of
 * schedules with `PORT_ELECTION_SCHEDULES=<count>`.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastSim, Seeds } from "@understudy/testkit"
import { run } from "./support/sim.ts"

const schedules = Number(process.env.PORT_ELECTION_SCHEDULES ?? 1_000)

describe("the supervisor's machine under crashes and failovers", () => {
  const seeds = Seeds.seeds(schedules)
  it(`permits within limits, one supervisor, no grant lost, over ${seeds.length} schedules`, () => {
    const failures: Array<FastSim.FastSimFailure> = []
    let crashes = 0
    for (const seed of seeds) {
      try {
        const report = run(seed)
        crashes += report.schedule.filter((s) => s.fault._tag === "Crash").length
      } catch (error) {
        if (!(error instanceof FastSim.FastSimFailure)) throw error
        failures.push(error)
      }
    }
    if (failures.length > 0) {
      const list = failures
        .slice(0, 20)
        .map((failure) => `  SEED=${failure.seed}: ${failure.detail}`)
      throw new Error(
        `${failures[0]!.message}\n\n${failures.length} of ${seeds.length} schedules failed:\n${list.join("\n")}`,
      )
    }
    expect(crashes).toBeGreaterThan(seeds.length)
  }, 300_000)
})
