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
import { FastSim, Seeds } from "@understudy/testkit"
import { makeWorld, runRounds } from "./support/sim.ts"

const schedules = Number(process.env.POOL_ROUND_SCHEDULES ?? 60)
const rounds = 30

/** Every seat taken, more clients than seats; every 4th schedule 50 clients on 40 seats. */
const worldFor = (seed: number) => (seed % 4 === 0 ? makeWorld(3, 50, 40) : makeWorld(3, 25, 20))

describe("heartbeat pool through rounds of single failures", () => {
  const seeds = Seeds.seeds(schedules)
  it(`no client loses its seat, seats within the license, over ${seeds.length} schedules of ${rounds} rounds`, () => {
    const failures: Array<FastSim.FastSimFailure> = []
    let done = 0
    for (const seed of seeds) {
      try {
        const report = runRounds(seed, worldFor(seed), rounds)
        if (report.rounds < rounds) throw new Error(`SEED=${seed}: only ${report.rounds} rounds`)
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
    expect(done).toBe(seeds.length * rounds)
  }, 300_000)
})
