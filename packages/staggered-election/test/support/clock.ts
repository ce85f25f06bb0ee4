/**
 * Moving the TestClock for the driver tests on SimNet: simulated time passes only when the
 * test moves it, so a stall of a loaded machine cannot make a timer fire between two steps.
 */
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"

/** Moves the clock on by `ms`, 5 ms at a time (each step lets the fibers it woke run). */
export const advance = (ms: number) =>
  Effect.gen(function* () {
    for (let elapsed = 0; elapsed < ms; elapsed += 5) yield* TestClock.adjust(5)
  })

/**
 * Runs `effect` while the clock moves on, 5 ms at a time; a defect if it is not done
 * within `limitMs` of simulated time.
 */
export const driven = <A, E>(effect: Effect.Effect<A, E>, limitMs = 10_000) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.forkChild(effect)
    for (let elapsed = 0; elapsed < limitMs && fiber.pollUnsafe() === undefined; elapsed += 5)
      yield* TestClock.adjust(5)
    if (fiber.pollUnsafe() === undefined) {
      yield* Fiber.interrupt(fiber)
      return yield* Effect.die(new Error(`not done within ${limitMs} ms of simulated time`))
    }
    return yield* Fiber.join(fiber)
  })
