/**
 * The endpoint's timer driver: the machines' `SetTimer` / `CancelTimer` outputs in one
 * `TimerTable` per endpoint (arming O(log n), cancelling O(1)) and one sleeper fiber on the
 * Effect `Clock` (so `TestClock` drives it) waiting for the earliest deadline, whose
 * expiries are stepped under the endpoint's lock. A thousand idle associations with a
 * HEARTBEAT timer per path cost one fiber, not one each.
 */
import { TimerTable } from "@understudy/machine"
import { Clock, Effect, type Fiber, type Scope } from "effect"

/**
 * One timer of one association: the table's key, made the first time the name is armed and
 * kept (an association arms a few names, per path at most): re-arming makes no new key (the
 * table still makes an entry per arm).
 */
interface Key<E> {
  readonly owner: E
  readonly name: string
}

/** A timer's key in the endpoint's table. */
export type TimerKey = Key<Owner>

/** What owns timers: an association's entry, with its keys in the table. */
export interface Owner {
  readonly timers: Map<string, TimerKey>
}

/** Expiries stepped per hold of the lock: the others' datagrams and commands go between. */
const firedPerLockMax = 256

/**
 * The timer driver of one endpoint: `set` arms a timer (an effect to run when the sleeper
 * must be forked anew, else undefined), `cancel` disarms it, `stopAll` an association's.
 * Only the holder of the endpoint's lock calls them.
 */
export const makeTimers = <E extends Owner>(options: {
  /** Where the sleeper runs. */
  readonly scope: Scope.Scope
  /** Runs an effect under the endpoint's lock. */
  readonly serialised: <A, Err>(effect: Effect.Effect<A, Err>) => Effect.Effect<A, Err>
  /** Whether the association takes no more input (its timers fire no more). */
  readonly ended: (entry: E) => boolean
  /** Under the lock: steps the machine with the timer's expiry. */
  readonly expire: (entry: E, name: string, nowMs: number) => Effect.Effect<unknown>
}) => {
  const table = new TimerTable.TimerTable<Key<E>>()
  /**
   * The sleeper: `untilMs` is the deadline it sleeps towards, `-Infinity` once it is awake
   * (it looks at the table again before it sleeps or ends, so nothing armed meanwhile needs
   * it replaced). A replaced sleeper that still runs sees it is not `current` and ends.
   */
  interface Sleeper {
    untilMs: number
    fiber: Fiber.Fiber<void> | undefined
  }
  let current: Sleeper | undefined

  /**
   * Under the lock: steps the timers due at `nowMs`, in deadline order (ties: armed
   * first), at most `firedPerLockMax`. A timer of an ended association is dropped.
   */
  const fireDue = (nowMs: number): Effect.Effect<void> =>
    Effect.gen(function* () {
      for (let fired = 0; fired < firedPerLockMax; fired++) {
        const key = table.due(nowMs)
        if (key === undefined) return
        if (options.ended(key.owner)) continue
        yield* options.expire(key.owner, key.name, nowMs)
      }
    })

  const sleep = (sleeper: Sleeper): Effect.Effect<void> =>
    Effect.gen(function* () {
      const clock = yield* Clock.Clock
      // Each round fires (what was due leaves the table) or sleeps to the next deadline,
      // until the table is empty or a sleeper for an earlier deadline replaced this one.
      // The decisions between the yields are synchronous: no `set` interleaves with them.
      while (current === sleeper) {
        const nextMs = table.next()
        if (nextMs === undefined) {
          current = undefined
          return
        }
        const nowMs = clock.currentTimeMillisUnsafe()
        if (nowMs < nextMs) {
          sleeper.untilMs = nextMs
          yield* Effect.sleep(nextMs - nowMs)
          sleeper.untilMs = Number.NEGATIVE_INFINITY
          continue
        }
        yield* options.serialised(
          Effect.suspend(() =>
            current === sleeper ? fireDue(clock.currentTimeMillisUnsafe()) : Effect.void,
          ),
        )
      }
    })

  /** A new sleeper for the earliest deadline, replacing (interrupting) the current one. */
  const wake = (): Effect.Effect<void> => {
    const previous = current
    const sleeper: Sleeper = { untilMs: Number.NEGATIVE_INFINITY, fiber: undefined }
    current = sleeper
    previous?.fiber?.interruptUnsafe()
    // A sleeper that died (a defect in a step) is not left as the current one: the next
    // `set` starts another, rather than every timer of the endpoint stopping for good.
    const run = sleep(sleeper).pipe(
      Effect.ensuring(
        Effect.sync(() => {
          if (current === sleeper) current = undefined
        }),
      ),
    )
    return Effect.forkIn(run, options.scope).pipe(
      Effect.flatMap((fiber) =>
        Effect.sync(() => {
          sleeper.fiber = fiber
        }),
      ),
    )
  }

  /**
   * Arms `name` of `entry` at `deadlineMs`. Synchronous (returns undefined) unless no
   * sleeper wakes by then: restarting T3-rtx on every SACK, or the delayed-SACK timer on
   * every other packet, costs a heap push and no fiber.
   */
  const set = (entry: E, name: string, deadlineMs: number): Effect.Effect<void> | undefined => {
    // Whole milliseconds, rounded up: the clock ticks in them, and a deadline between two
    // ticks would never be reached (see `Association.setTimer`, which rounds its own).
    const atMs = Math.ceil(deadlineMs)
    let key = entry.timers.get(name) as Key<E> | undefined
    if (key === undefined) {
      key = { owner: entry, name }
      entry.timers.set(name, key)
    }
    table.set(key, atMs)
    if (current !== undefined && current.untilMs <= atMs) return undefined
    return wake()
  }

  /** Disarms `name` of `entry`; a sleeper waiting for it wakes to nothing and sleeps on. */
  const cancel = (entry: E, name: string): void => {
    const key = entry.timers.get(name) as Key<E> | undefined
    if (key !== undefined) table.cancel(key)
  }

  /** The association is gone: its timers are disarmed. */
  const stopAll = (entry: E): void => {
    for (const key of entry.timers.values()) table.cancel(key as Key<E>)
    entry.timers.clear()
  }

  return { set, cancel, stopAll }
}
