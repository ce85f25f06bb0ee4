/**
 * The port election's machines, the election loop's, the supervisor's and the subordinate's,
 * on FastSim (see `support/sim.ts`): five instances through seeded schedules of crashes and
 * restarts while they contend for a mutex and a semaphore of 2. Each instance's elections,
 * back-offs and waits for a takeover are its `ElectionLoop` machine's, stepped by the
 * simulator; the kernel only answers its binds and connects.
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
 * A third world stops the supervisor now and then (up to 400 ms, then it continues): its
 * members time it out, find the address held but nobody answering and back off until it runs
 * again, and those standing by at a successor that lost the bind or is gone wait in vain for a
 * takeover; the supervisor, continued, reads their closes late and reserves their permits.
 *
 * Replay a seed with `UNDERSTUDY_SEED=<n> npx vitest run test/Machine.fastsim.test.ts`; run
 * another number of schedules with `PORT_ELECTION_SCHEDULES=<count>` (crashes) and
 * `PORT_ELECTION_CUT_SCHEDULES=<count>` (cuts) and `PORT_ELECTION_STALL_SCHEDULES=<count>` (stops).
 */
import { describe, expect, it } from "@effect/vitest"
import { FastSim, Seeds } from "@understudy/testkit"
import { crashes, partitioned, run, stalls, type World } from "./support/sim.ts"

const schedules = Number(process.env.PORT_ELECTION_SCHEDULES ?? 1_000)
const cutSchedules = Number(process.env.PORT_ELECTION_CUT_SCHEDULES ?? 300)
const stallSchedules = Number(process.env.PORT_ELECTION_STALL_SCHEDULES ?? 300)

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

/** What the instances' election loops went through, over all schedules. */
const electionSteps = (reports: ReadonlyArray<ReturnType<typeof run>>) => {
  const steps: Record<string, number> = { BackedOff: 0, TakenOver: 0, StandbyRanOut: 0 }
  for (const report of reports) {
    for (const { event } of report.events) {
      if (event._tag === "Election") steps[event.step] = (steps[event.step] ?? 0) + 1
    }
  }
  return steps
}

describe("the supervisor's machine under crashes and failovers", () => {
  const seeds = Seeds.seeds(schedules)
  it(`permits within limits, one supervisor, no grant lost, over ${seeds.length} schedules`, () => {
    const reports = runAll(seeds, crashes)
    expect(count(reports, "Crash")).toBeGreaterThan(seeds.length)
    // The premise: the election loop's machine, stepped by the simulator, serves the
    // successor's takeover over the standby link (2,449 in the first 1,000 schedules).
    const steps = electionSteps(reports)
    console.log(`election loops over ${seeds.length} schedules: ${JSON.stringify(steps)}`)
    expect(steps.TakenOver).toBeGreaterThan(seeds.length)
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

  const stallSeeds = Seeds.seeds(stallSchedules)
  it(`the same with stopped supervisors: members back off until it runs again, over ${stallSeeds.length} schedules`, () => {
    const reports = runAll(stallSeeds, stalls)
    const steps = electionSteps(reports)
    const gaveUp = reports.reduce(
      (sum, report) => sum + report.events.filter((e) => e.event._tag === "GaveUp").length,
      0,
    )
    console.log(`stalls: election loops ${JSON.stringify(steps)}, ${gaveUp} deadlines with permits`)
    // The premise: members found the address held by a stopped supervisor and backed off,
    // and waited in vain for a takeover by a successor that was stopped or lost the bind.
    expect(steps.BackedOff).toBeGreaterThan(stallSeeds.length)
    expect(steps.StandbyRanOut).toBeGreaterThan(0)
  }, 300_000)
})
