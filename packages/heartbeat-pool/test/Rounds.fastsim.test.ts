/**
 * The pool on FastSim through rounds of single failures, the shape of the real-process test:
 * the leader SIGKILLed and restarted, the leader SIGSTOPped and continued, the busiest
 * follower SIGKILLed and restarted, each round starting as soon as the previous failover is
 * over (see `runRounds`). Every client keeps its seat, seats held never exceed the license,
 * one leader per term. Replay a seed with
 * `UNDERSTUDY_SEED=<n> npx vitest run test/Rounds.fastsim.test.ts`; run another number of
 * schedules with `POOL_ROUND_SCHEDULES=<count>`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Seeds } from "@understudy/testkit"
import { makeWorld, runRoundsOver } from "./support/sim.ts"

const schedules = Number(process.env.POOL_ROUND_SCHEDULES ?? 60)
const rounds = 30

/** Every seat taken, more clients than seats; every 4th schedule 50 clients on 40 seats. */
const worldFor = (seed: number) => (seed % 4 === 0 ? makeWorld(3, 50, 40) : makeWorld(3, 25, 20))

describe("heartbeat pool through rounds of single failures", () => {
  const seeds = Seeds.seeds(schedules)
  it(`no client loses its seat, seats within the license, over ${seeds.length} schedules of ${rounds} rounds`, () => {
    // Every schedule runs all its rounds: none is cut short by the run's time.
    const done = runRoundsOver(seeds, worldFor, rounds).rounds
    expect(done).toBe(seeds.length * rounds)
  }, 300_000)
})
