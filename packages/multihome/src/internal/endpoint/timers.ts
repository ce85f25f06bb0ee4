/**
 * The endpoint's timer driver: the machine's `SetTimer` / `CancelTimer` outputs as one fiber
 * per (association, timer) sleeping on the Effect `Clock` (so `TestClock` drives it), whose
 * expiry is stepped under the endpoint's lock.
 */
import { Clock, Duration, Effect, type Fiber, type Scope } from "effect"

/**
 * One armed (or cancelled, still sleeping) timer of an association.
 */
export interface Timer {
  deadlineMs: number
  /** The deadline the fiber sleeps towards; a later `deadlineMs` makes it sleep again. */
  sleepingUntilMs: number
  /**
   * Cleared by `CancelTimer`: the fiber is not interrupted (a fork and an interrupt for
   * every delayed SACK cost more than a wake-up); it wakes, sees this and ends, unless a
   * `SetTimer` re-armed it meanwhile.
   */
  armed: boolean
  fiber: Fiber.Fiber<void> | undefined
  /** Its fiber fired or ended: a `SetTimer` must fork a new one. */
  finished: boolean
}

/** What owns timers: an association's entry. */
export interface Owner {
  readonly timers: Map<string, Timer>
}

/**
 * The timer driver of one endpoint: `set` arms a timer (an effect to run when a fiber must
 * be forked, else undefined), `cancel` disarms it, `stopAll` interrupts an association's.
 */
export const makeTimers = <E extends Owner>(options: {
  /** Where the timer fibers run. */
  readonly scope: Scope.Scope
  /** Runs an effect under the endpoint's lock. */
  readonly serialised: <A, Err>(effect: Effect.Effect<A, Err>) => Effect.Effect<A, Err>
  /** Whether the association takes no more input (its timers fire no more). */
  readonly ended: (entry: E) => boolean
  /** Under the lock: steps the machine with the timer's expiry. */
  readonly expire: (entry: E, name: string, nowMs: number) => Effect.Effect<unknown>
}) => {
  /** Forgets `timer` and its fiber (which ends): the next `SetTimer` forks anew. */
  const retire = (entry: Owner, name: string, timer: Timer): void => {
    timer.finished = true
    timer.fiber = undefined
    if (entry.timers.get(name) === timer) entry.timers.delete(name)
  }

  /**
   * Arms `name` at `atMs`. Synchronous (returns undefined) when the timer's fiber is asleep
   * towards an earlier or equal deadline, armed or cancelled: it wakes and sleeps on to the
   * new one, so restarting T3-rtx on every SACK, or the delayed-SACK timer on every other
   * packet, costs no new fiber. Otherwise the effect forks one.
   */
  const set = (entry: E, name: string, deadlineMs: number): Effect.Effect<void> | undefined => {
    // Whole milliseconds, rounded up: the clock ticks in them, and a deadline between two
    // ticks would never be reached (see `Association.setTimer`, which rounds its own).
    const atMs = Math.ceil(deadlineMs)
    const existing = entry.timers.get(name)
    if (
      existing !== undefined &&
      existing.fiber !== undefined &&
      !existing.finished &&
      atMs >= existing.sleepingUntilMs
    ) {
      existing.deadlineMs = atMs
      existing.armed = true
      return undefined
    }
    if (existing !== undefined) {
      existing.fiber?.interruptUnsafe()
      retire(entry, name, existing)
    }
    const timer: Timer = {
      deadlineMs: atMs,
      sleepingUntilMs: atMs,
      armed: true,
      fiber: undefined,
      finished: false,
    }
    entry.timers.set(name, timer)
    const run = Effect.gen(function* () {
      const clock = yield* Clock.Clock
      // Bounded: each round fires, ends (cancelled), or sleeps to a deadline that moved
      // later. The decisions below are synchronous, so no command interleaves with them.
      for (let round = 0; round < 1_000_000; round++) {
        if (!timer.armed || timer.finished) {
          retire(entry, name, timer)
          return
        }
        const nowMs = clock.currentTimeMillisUnsafe()
        if (nowMs < timer.deadlineMs) {
          timer.sleepingUntilMs = timer.deadlineMs
          yield* Effect.sleep(Duration.millis(timer.deadlineMs - nowMs))
          continue
        }
        if (yield* options.serialised(fire(entry, name, timer, clock))) return
      }
    })
    return Effect.forkIn(run, options.scope).pipe(
      Effect.flatMap((fiber) =>
        Effect.sync(() => {
          if (!timer.finished) timer.fiber = fiber
        }),
      ),
    )
  }

  /**
   * Under the lock: fires `timer` if it is still armed and due. Returns whether its fiber
   * is done (false: the deadline moved later while the fiber waited for the lock).
   */
  const fire = (entry: E, name: string, timer: Timer, clock: Clock.Clock): Effect.Effect<boolean> =>
    Effect.suspend(() => {
      // Replaced by another timer (its fiber interrupted too), or the association is gone.
      if (options.ended(entry) || timer.finished || entry.timers.get(name) !== timer) {
        return Effect.succeed(true)
      }
      if (!timer.armed) {
        retire(entry, name, timer)
        return Effect.succeed(true)
      }
      const nowMs = clock.currentTimeMillisUnsafe()
      if (nowMs < timer.deadlineMs) return Effect.succeed(false)
      retire(entry, name, timer)
      return options.expire(entry, name, nowMs).pipe(Effect.as(true))
    })

  /** Cancels without interrupting: the sleeping fiber ends when it wakes (see {@link Timer}). */
  const cancel = (entry: E, name: string) => {
    const timer = entry.timers.get(name)
    if (timer !== undefined) timer.armed = false
  }

  /** The association is gone: every fiber of its timers is interrupted. */
  const stopAll = (entry: E): void => {
    for (const timer of entry.timers.values()) timer.fiber?.interruptUnsafe()
    entry.timers.clear()
  }

  return { set, cancel, stopAll }
}
