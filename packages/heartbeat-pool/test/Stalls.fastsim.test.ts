/**
 * The rounds of `Rounds.fastsim.test.ts` on a loaded machine: besides each round's fault, the
 * servers stall now and then (SIGSTOP-like, up to `POOL_STALL_MS`, datagrams and timers
 * waiting), as processes do at a load of ~30 (license-pool's processes.test once saw all 42
 * holders `Lost` in rounds 19-20 at that load). Replay a seed with
 * `UNDERSTUDY_SEED=<n> npx vitest run test/Stalls.fastsim.test.ts`; more schedules or longer
 * stalls by hand: `POOL_STALL_MS=700 POOL_STALL_SCHEDULES=60 npx vitest run test/Stalls.fastsim.test.ts`.
 *
 * A seat may be lost here honestly, by its cause: the server that held it did not run for the
 * whole lease; or a majority of the servers ran for at most half of it (2 s here, 20
 * intervals), too little for an election and a renewal; or the leaders of two terms failed
 * within it (killed, or stalled for a follower time-out or more: two failovers, so not a single
 * failure). The pool honours existing seats until they expire, and renews them only under a
 * leader's authority. Such a loss is counted and printed, not failed; any other loss fails:
 * refused, or expired while a majority ran for more than half the lease and at most one leader
 * failed. (At 700 ms, `UNDERSTUDY_SEED=3` once lost seats to two leaders each stalled 600 ms
 * within one lease: honest by the third cause.)
 *
 * `UNDERSTUDY_SEED=29` is always among the schedules: at 400 ms the whole pool's seats once
 * went at once there, as license-pool's processes.test once saw (43 seats at s3, 0-22 ms of
 * authority in their lease, while a majority ran for 1,250 ms of it; the rounds stopped at 7).
 * The leader s1 fell silent (the round's fault); s2's check was late by its stall, which ate
 * the priority stagger, so s2 and s3 both stood for term 7 at 8,300 ms and split the two votes;
 * s3 stood for term 8 at 9,100 ms while s2 was stalled, and s2, continued, stood for term 8
 * itself instead of voting: split again, and every lease ran out at 9.35 s. Now the candidate
 * higher in the priority list stands again at once when it hears the other's request for its
 * own term, and the other votes for it there. (Still so since the rounds wait for every seat
 * renewed since the last fault: without that change to the election, seed 29 fails with the
 * same loss, c22's seat at s3 in term 7 while a majority ran for 1,250 ms of its lease.)
 */
import { describe, expect, it } from "@effect/vitest"
import { Seeds } from "@understudy/testkit"
import { makeWorld, runRoundsOver } from "./support/sim.ts"

const schedules = Number(process.env.POOL_STALL_SCHEDULES ?? 7)
/** Schedules that once failed, run besides the numbered ones (not when replaying one seed). */
const regressions = [29]
const rounds = 30
const stallMs = Number(process.env.POOL_STALL_MS ?? 400)

describe("heartbeat pool through rounds of single failures on stalling servers", () => {
  const seeds = Seeds.isReplay()
    ? Seeds.seeds(schedules)
    : [...new Set([...Seeds.seeds(schedules), ...regressions])]
  it(`no seat lost but to an honest expiry, over ${seeds.length} schedules of ${rounds} rounds with stalls up to ${stallMs} ms`, () => {
    const { rounds: done, honestExpiries } = runRoundsOver(
      seeds,
      () => makeWorld(3, 50, 42),
      rounds,
      { every: 40, maxMs: stallMs },
    )
    console.log(
      `${done} rounds; ${honestExpiries.length} seats lost to honest expiries${honestExpiries.map((loss) => `\n  ${loss}`).join("")}`,
    )
    // Stalls slow the rounds down: fewer than all may fit in the run's time.
    expect(done).toBeGreaterThan(seeds.length * 20)
  }, 300_000)
})
