/**
 * The rounds of `Rounds.fastsim.test.ts` on a loaded machine: besides each round's fault, the
 * servers stall now and then (SIGSTOP-like, up to `POOL_STALL_MS`, datagrams and timers
 * waiting), as processes do at a load of ~30 (license-pool's processes.test once saw all 42
 * holders `Lost` in rounds 19-20 at that load). Run by hand only (it needs `POOL_STALL_MS`):
 * `POOL_STALL_MS=400 POOL_STALL_SCHEDULES=60 npx vitest run test/Stalls.fastsim.test.ts`.
 *
 * Not in the suite because it fails and its check is not yet the right one: with stalls of
 * 400 ms (4 intervals) 5 of 60 schedules lose a seat, with 700 ms 5 of 60, with 1,500 ms most;
 * every loss seen so far is `expired`, after close to a whole lease (2 s here, 20 intervals)
 * in which no leader held authority for long: the stalls land on the round's survivors or on
 * successive leaders (a second failure), elections split or are cut short, and a carried
 * client is renewed only once a leader of its term merged the record that shows it. Measured
 * (the loss's "a leader held authority for N ms of the last lease", 16:12 UTC run): 400 ms
 * SEEDs 29/31/53/55/59 had 22/298/364/210/98 ms of 2,000; 700 ms SEEDs 3/22/41/48/56 had
 * 167/24/68/212/24 ms: all honest expiries, none under a settled leader. What is
 * missing is an invariant that tells such an honest expiry from a defect (e.g. "no loss while
 * a leader held authority for more than half the lease"), then this test in the suite.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastSim, Seeds } from "@understudy/testkit"
import { makeWorld, runRounds } from "./support/sim.ts"

const schedules = Number(process.env.POOL_STALL_SCHEDULES ?? 40)
const rounds = 30
const stallMs = Number(process.env.POOL_STALL_MS ?? 300)

describe.skipIf(process.env.POOL_STALL_MS === undefined)(
  "heartbeat pool through rounds of single failures on stalling servers",
  () => {
    const seeds = Seeds.seeds(schedules)
    it(`no client loses its seat over ${seeds.length} schedules of ${rounds} rounds`, () => {
      const failures: Array<FastSim.FastSimFailure> = []
      let done = 0
      for (const seed of seeds) {
        try {
          const report = runRounds(
            seed,
            makeWorld(3, 50, 42),
            rounds,
            {},
            { every: 40, maxMs: stallMs },
          )
          done += report.rounds
        } catch (error) {
          if (!(error instanceof FastSim.FastSimFailure)) throw error
          failures.push(error)
        }
      }
      if (failures.length > 0) {
        const list = failures.map((failure) => `  SEED=${failure.seed}: ${failure.detail}`)
        throw new Error(
          `${failures[0]!.message}\n\n${failures.length} of ${seeds.length} schedules failed:\n${list.join("\n")}`,
        )
      }
      // Stalls slow the rounds down: fewer than all may fit in the run's time.
      expect(done).toBeGreaterThan(seeds.length * 20)
    }, 300_000)
  },
)
