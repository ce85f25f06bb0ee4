/**
 * The Runner's timer driver with many timers armed: a node arms `armed` timers at init, each
 * re-armed when it fires so that exactly one fires per simulated millisecond, and the
 * `TestClock` moves one millisecond at a time. The figure is wall-clock microseconds per
 * fired timer (one wake-up, one step, one re-arm). The baseline, measured in the same run, is
 * the same node with 10 timers armed: with a table that costs O(log n) per timer, the ratio
 * of the largest table to it stays near 1.
 *
 * Each size runs a warm-up round, then `rounds` measured rounds; the median is reported with
 * its min–max. The last line of output is one JSON object.
 */
import { Effect, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as Loop from "../src/internal/loop.ts"
import * as Machine from "../src/Machine.ts"

const sizes = [10, 1_000, 10_000]
const firesPerRound = 5_000
const rounds = 5

/** `armed` timers, timer i first due at i + 1 ms, each re-armed `armed` ms after it fires. */
const ticker = (armed: number): Machine.Machine<number, never, never, never> => ({
  init: () =>
    Machine.result(
      0,
      Array.from({ length: armed }, (_, i) => Machine.setTimer(`t${i}`, i + 1)),
    ),
  step: (fired, input) =>
    input._tag === "TimerFired"
      ? Machine.result(fired + 1, [Machine.setTimer(input.timer, armed)])
      : Machine.result(fired),
})

const round = (armed: number) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const loop = yield* Loop.start(
      ticker(armed),
      { self: "bench" },
      [],
      { send: () => Effect.void, peers: () => [] },
      "before-return",
    ).pipe(Scope.provide(scope))
    yield* TestClock.adjust(0)
    const started = performance.now()
    for (let ms = 0; ms < firesPerRound; ms++) yield* TestClock.adjust(1)
    const elapsedMs = performance.now() - started
    const fired = yield* loop.node.state
    yield* Scope.close(scope, Effect.void as never)
    if (fired !== firesPerRound) throw new Error(`expected ${firesPerRound} fires, saw ${fired}`)
    return (elapsedMs * 1_000) / firesPerRound
  }).pipe(Effect.provide(TestClock.layer()))

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

const main = Effect.gen(function* () {
  const results: Record<string, { median: number; min: number; max: number }> = {}
  // Warm the JIT on every size first, so the first size measured is not the coldest.
  for (const armed of sizes) yield* round(armed)
  console.log("timers armed | µs per fired timer (median of 5) | min–max")
  for (const armed of sizes) {
    const samples: Array<number> = []
    for (let r = 0; r < rounds; r++) samples.push(yield* round(armed))
    const figure = { median: median(samples), min: Math.min(...samples), max: Math.max(...samples) }
    results[armed] = figure
    console.log(
      `${String(armed).padStart(12)} | ${figure.median.toFixed(1).padStart(31)} | ${figure.min.toFixed(1)}–${figure.max.toFixed(1)}`,
    )
  }
  const largest = sizes[sizes.length - 1]!
  console.log(
    JSON.stringify({
      us_per_fire: Object.fromEntries(sizes.map((size) => [size, results[size]!.median])),
      baseline_us_per_fire: results[sizes[0]!]!.median,
      ratio: results[largest]!.median / results[sizes[0]!]!.median,
    }),
  )
})

Effect.runPromise(main)
