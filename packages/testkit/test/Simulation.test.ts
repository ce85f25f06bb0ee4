import { describe, expect, it } from "@effect/vitest"
import { Machine } from "@understudy/machine"
import { Codec } from "@understudy/transport"
import { Effect, Schema } from "effect"
import * as Simulation from "../src/Simulation.ts"

/** Every node broadcasts a tick every 10 ms and counts the ticks it receives. */
const Tick = Schema.Struct({ tick: Schema.Number })
const codec = Codec.json(Tick)
const ticker = (throwAt?: number): Machine.Machine<number, typeof Tick.Type> => ({
  init: () => Machine.result(0, [Machine.setTimer("tick", 10)]),
  step: (count, input) => {
    if (input._tag === "TimerFired") {
      return Machine.result(count, [
        Machine.broadcast({ tick: input.nowMs }),
        Machine.setTimer("tick", 10),
      ])
    }
    if (input._tag === "Receive") {
      if (count + 1 === throwAt) throw new Error(`refusing tick number ${throwAt}`)
      return Machine.result(count + 1)
    }
    return Machine.result(count)
  },
})

const nodes = ["a", "b", "c"]

describe("Simulation", () => {
  it.effect("reports a node that dies of a defect, with the seed", () =>
    Effect.gen(function* () {
      const failure = yield* Effect.flip(
        Simulation.simulate({
          machine: ticker(5),
          codec,
          nodes,
          seed: 12,
          durationMs: 500,
          invariants: [],
        }),
      )
      expect(failure.invariant).toBe("no node fails")
      expect(failure.detail).toContain("refusing tick number 5")
      expect(failure.message).toMatch(/^SEED=12: invariant "no node fails"/)
    }),
  )

  it.effect("checks after every step by default, only at the end with check: end", () =>
    Effect.gen(function* () {
      const quietUntilTheEnd: Simulation.Invariant<number> = {
        name: "nothing received before the end",
        check: (view) =>
          view.final || [...view.states.values()].every((count) => count === 0)
            ? undefined
            : `received ${[...view.states.values()].join(",")} at ${view.nowMs} ms`,
      }
      const options = {
        machine: ticker(),
        codec,
        nodes,
        seed: 1,
        durationMs: 200,
        invariants: [quietUntilTheEnd],
      }
      const failure = yield* Effect.flip(Simulation.simulate(options))
      // The first tick goes out at 10 ms and arrives 1 ms later.
      expect(failure.atMs).toBe(11)
      const report = yield* Simulation.simulate({ ...options, check: "end" })
      expect(report.steps).toBeGreaterThan(3 * 20)
    }),
  )

  it.effect("views hold the live states, the faults so far and the network", () =>
    Effect.gen(function* () {
      const seen: Array<string> = []
      const report = yield* Simulation.simulate({
        machine: ticker(),
        codec,
        nodes,
        seed: 2,
        durationMs: 300,
        schedule: [
          { atMs: 100, fault: { _tag: "Crash", node: "b", mode: "host" } },
          { atMs: 150, fault: { _tag: "Partition", side: ["a"], other: ["c"], oneWay: true } },
        ],
        invariants: [
          {
            name: "records what it sees at the end",
            check: (view) => {
              if (view.final) {
                seen.push(`live ${[...view.states.keys()].sort().join(",")}`)
                seen.push(
                  `history ${view.history.map((item) => `${item.atMs}:${item.fault._tag}`).join(",")}`,
                )
                seen.push(`b ${JSON.stringify(view.network.node("b"))}`)
                seen.push(
                  `a->c cut ${view.network.link("a", "c").cut}, c->a cut ${view.network.link("c", "a").cut}`,
                )
              }
              return undefined
            },
          },
        ],
      })
      expect(seen).toEqual([
        "live a,c",
        "history 100:Crash,150:Partition",
        'b {"up":false,"sinceMs":100}',
        "a->c cut true, c->a cut false",
      ])
      expect(Simulation.formatTrace(report)).toMatch(/100 ms {2}crash {12}b {2}host/)
    }),
  )
})
