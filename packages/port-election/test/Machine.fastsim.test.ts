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
 * instance holds.
 *
 * A second world cuts the network too (both ways or one way, healed later) while holders keep
 * their permits for ~half a second: members cut off a live supervisor past the keep-alive
 * time-out still hold permits at their cut-off deadline, give them up there, and the
 * supervisor grants them again after the grace period. Without it no deadline ever fires
 * with a permit held (every failover is over first), so a deadline never armed, one that
 * keeps the permits, or one counted from the notice instead of the last keep-alive passed
 * every crash-only schedule.
 *
 * Replay a seed with `UNDERSTUDY_SEED=<n> npx vitest run test/Machine.fastsim.test.ts`; run
 * another number of schedules with `PORT_ELECTION_SCHEDULES=<count>` (crashes) and
 * `PORT_ELECTION_CUT_SCHEDULES=<count>` (cuts).
 */
import { describe, expect, it } from "@effect/vitest"
import { FastSim, Seeds } from "@understudy/testkit"
import { crashes, partitioned, run, type World } from "./support/sim.ts"

const schedules = Number(process.env.PORT_ELECTION_SCHEDULES ?? 1_000)
const cutSchedules = Number(process.env.PORT_ELECTION_CUT_SCHEDULES ?? 300)

/** Runs every seed in `world`; throws with the failing seeds, else gives the reports. */
const runAll = (seeds: ReadonlyArray<number>, world: World) => {
  const failures: Array<FastSim.FastSimFailure> = []
  const reports: Array<ReturnType<typeof run>> = []
  for (const seed of seeds) {
    try {
      reports.push(run(seed, world))
    } catch (error) {
      if (!(error instanceof FastSim.FastSimFailure)) throw error
      failures.push(error)
    }
  }
  if (failures.length > 0) {
    const list = failures.slice(0, 20).map((failure) => `  SEED=${failure.seed}: ${failure.detail}`)
    throw new Error(
      `${failures[0]!.message}\n\n${failures.length} of ${seeds.length} schedules failed:\n${list.join("\n")}`,
    )
  }
  return reports
}

const count = (reports: ReadonlyArray<ReturnType<typeof run>>, tag: string) =>
  reports.reduce(
    (sum, report) => sum + report.schedule.filter((s) => s.fault._tag === tag).length,
    0,
  )

describe("the supervisor's machine under crashes and failovers", () => {
  const seeds = Seeds.seeds(schedules)
  it(`permits within limits, one supervisor, no grant lost, over ${seeds.length} schedules`, () => {
    const reports = runAll(seeds, crashes)
    expect(count(reports, "Crash")).toBeGreaterThan(seeds.length)
  }, 300_000)

  const cutSeeds = Seeds.seeds(cutSchedules)
  it(`the same with cuts of the network: permits given up at the cut-off deadline, over ${cutSeeds.length} schedules`, () => {
    const reports = runAll(cutSeeds, partitioned)
    expect(count(reports, "Partition")).toBeGreaterThan(cutSeeds.length)
    // The premise: deadlines fire with permits held (134 in the first 300 schedules).
    const gaveUp = reports.reduce(
      (sum, report) => sum + report.events.filter((e) => e.event._tag === "GaveUp").length,
      0,
    )
    expect(gaveUp).toBeGreaterThan(cutSeeds.length / 5)
  }, 300_000)
})
