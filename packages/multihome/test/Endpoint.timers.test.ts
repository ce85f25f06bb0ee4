/**
 * The endpoint's timer driver on the TestClock: one table and one sleeper for every
 * association's timers, each expiry stepped once, in deadline order, at its deadline.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Semaphore } from "effect"
import { makeTimers, type TimerKey } from "../src/internal/endpoint/timers.ts"
import { advance } from "./support/endpoint-support.ts"

interface Association {
  readonly id: string
  readonly timers: Map<string, TimerKey>
  ended: boolean
}

type Timers = ReturnType<typeof makeTimers<Association>>

const association = (id: string): Association => ({ id, timers: new Map(), ended: false })

/**
 * A driver whose expiries are recorded as `id/name@ms`; `onExpire` may arm timers again, as
 * a machine's step does.
 */
const makeDriver = (
  onExpire?: (
    timers: Timers,
    owner: Association,
    name: string,
    nowMs: number,
  ) => Effect.Effect<void>,
) =>
  Effect.gen(function* () {
    const lock = yield* Semaphore.make(1)
    const fired: Array<string> = []
    const timers: Timers = makeTimers<Association>({
      scope: yield* Effect.scope,
      serialised: (effect) => Semaphore.withPermits(lock, 1)(effect),
      ended: (owner) => owner.ended,
      expire: (owner, name, nowMs) =>
        Effect.suspend(() => {
          fired.push(`${owner.id}/${name}@${nowMs}`)
          return onExpire?.(timers, owner, name, nowMs) ?? Effect.void
        }),
    })
    /** Arms under the lock, as the driver performs `SetTimer` outputs. */
    const arm = (owner: Association, name: string, atMs: number) =>
      Semaphore.withPermits(
        lock,
        1,
      )(Effect.suspend(() => timers.set(owner, name, atMs) ?? Effect.void))
    return { timers, fired, arm }
  })

describe("Endpoint timers", () => {
  it.effect("fire once each, in deadline order, at their deadlines; re-arming moves one", () =>
    Effect.gen(function* () {
      const { fired, arm } = yield* makeDriver()
      const a = association("a")
      const b = association("b")
      yield* arm(a, "heartbeat", 300)
      yield* arm(b, "heartbeat", 100)
      yield* arm(a, "T3-rtx", 200)
      yield* arm(a, "T3-rtx", 250)
      yield* advance(1_000)
      expect(fired).toEqual(["b/heartbeat@100", "a/T3-rtx@250", "a/heartbeat@300"])
    }),
  )

  it.effect("a deadline earlier than the sleeper's wakes it sooner", () =>
    Effect.gen(function* () {
      const { fired, arm } = yield* makeDriver()
      const a = association("a")
      const b = association("b")
      yield* arm(a, "heartbeat", 30_000)
      yield* advance(100)
      yield* arm(b, "delayed-sack", 300)
      yield* advance(400)
      expect(fired).toEqual(["b/delayed-sack@300"])
    }),
  )

  it.effect("a cancelled timer, an association's stopped ones and an ended one's never fire", () =>
    Effect.gen(function* () {
      const { timers, fired, arm } = yield* makeDriver()
      const a = association("a")
      const b = association("b")
      const c = association("c")
      const d = association("d")
      yield* arm(a, "T1-init", 100)
      yield* arm(b, "heartbeat", 100)
      yield* arm(b, "T3-rtx", 120)
      yield* arm(c, "heartbeat", 100)
      yield* arm(d, "heartbeat", 150)
      timers.cancel(a, "T1-init")
      timers.stopAll(b)
      c.ended = true
      yield* advance(1_000)
      expect(fired).toEqual(["d/heartbeat@150"])
    }),
  )

  it.effect("a timer armed by an expiry's step fires at its own deadline", () =>
    Effect.gen(function* () {
      const a = association("a")
      const b = association("b")
      let rounds = 0
      const { fired, arm } = yield* makeDriver((timers, owner, name, nowMs) =>
        Effect.suspend(() => {
          if (owner !== a || ++rounds >= 3) return Effect.void
          // Under the lock already, as in the endpoint: the step's SetTimer.
          return timers.set(owner, name, nowMs + 100) ?? Effect.void
        }),
      )
      yield* arm(a, "heartbeat", 100)
      yield* arm(b, "heartbeat", 250)
      yield* advance(1_000)
      expect(fired).toEqual([
        "a/heartbeat@100",
        "a/heartbeat@200",
        "b/heartbeat@250",
        "a/heartbeat@300",
      ])
    }),
  )

  it.effect("a step that dies stops only its sleeper: a timer armed afterwards still fires", () =>
    Effect.gen(function* () {
      const { fired, arm } = yield* makeDriver((_, owner) =>
        owner.id === "a" ? Effect.die(new Error("a defect in a step")) : Effect.void,
      )
      const a = association("a")
      const b = association("b")
      yield* arm(a, "T3-rtx", 100)
      yield* advance(200)
      yield* arm(b, "heartbeat", 300)
      yield* advance(200)
      expect(fired).toEqual(["a/T3-rtx@100", "b/heartbeat@300"])
    }),
  )
})
