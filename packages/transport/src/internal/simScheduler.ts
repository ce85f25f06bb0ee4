/**
 * The one event loop of a `SimNet`: every packet arrival, delivery and flush is an event at
 * a Clock time, run in order of (time, sequence number) by a single fiber. Events at the
 * same instant therefore always run in the order they were scheduled, which is what makes
 * a simulation replay byte for byte under `TestClock` and a seeded `Random`.
 *
 * Events are plain synchronous callbacks: they run inside the scheduler fiber and may
 * schedule further events, never block.
 */
import { type Clock, Effect } from "effect"
import { MinHeap } from "../Heap.ts"

/** Most events waiting at once; past it scheduling is a broken invariant (a defect). */
export const maxPendingEvents = 1_000_000

/** Most events run in one turn before the loop yields to other fibers. */
const maxEventsPerTurn = 10_000

interface Event {
  readonly atMs: number
  readonly seq: number
  readonly run: () => void
}

const before = (a: Event, b: Event): boolean =>
  a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq)

export interface SimScheduler {
  /** The current Clock time in milliseconds. */
  readonly nowMs: () => number
  /** Runs `run` at `atMs` (or as soon as possible when that is in the past). */
  readonly at: (atMs: number, run: () => void) => void
  /** The loop: fork it once, for the life of the network; it never completes. */
  readonly loop: Effect.Effect<never>
}

export const make = (clock: Clock.Clock): SimScheduler => {
  const heap = new MinHeap<Event>(before)
  let seq = 0
  // The loop's way to be woken early: set while it waits, taken by the first `at` that
  // needs an earlier wake-up than the one it sleeps for. `wakeRequested` covers an `at`
  // that comes after the loop chose its sleep but before its waker is registered.
  let waker: (() => void) | undefined
  let wakeRequested = false
  // While the loop runs events, nothing needs waking: it looks at the heap before waiting.
  let armedAtMs = Number.NEGATIVE_INFINITY

  const nowMs = (): number => clock.currentTimeMillisUnsafe()

  const at = (atMs: number, run: () => void): void => {
    if (heap.size >= maxPendingEvents) {
      throw new Error(`SimNet: more than ${maxPendingEvents} pending events`)
    }
    heap.push({ atMs, seq: seq++, run })
    if (atMs < armedAtMs) {
      wakeRequested = true
      const wake = waker
      waker = undefined
      wake?.()
    }
  }

  const waitWake = Effect.callback<void>((resume) => {
    if (wakeRequested) return resume(Effect.void)
    waker = () => resume(Effect.void)
    return Effect.sync(() => {
      waker = undefined
    })
  })

  /** Runs due events; returns whether it stopped at the per-turn limit. */
  const runDue = (): boolean => {
    const now = nowMs()
    for (let count = 0; count < maxEventsPerTurn; count++) {
      const next = heap.peek()
      if (next === undefined || next.atMs > now) return false
      heap.pop()
      next.run()
    }
    return true
  }

  const turn = Effect.suspend(() => {
    armedAtMs = Number.NEGATIVE_INFINITY
    waker = undefined
    if (runDue()) return Effect.yieldNow
    wakeRequested = false
    const next = heap.peek()
    if (next === undefined) {
      armedAtMs = Number.POSITIVE_INFINITY
      return waitWake
    }
    armedAtMs = next.atMs
    return Effect.raceFirst(Effect.sleep(next.atMs - nowMs()), waitWake)
  })

  // Runs for the life of the network's scope; each turn waits for the next event.
  const loop = Effect.forever(turn)

  return { nowMs, at, loop }
}
