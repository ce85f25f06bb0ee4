/**
 * Waiting in a test until something holds, bounded in time: the one helper every test uses
 * (`effect` for Effect tests, `promise` for plain async ones), so a bound and its message
 * read the same everywhere.
 *
 * @since 0.1.0
 */
import { setTimeout as sleep } from "node:timers/promises"
import { Duration, Effect } from "effect"

/** @since 0.1.0 @category models */
export interface Options<R = never> {
  /** The longest wait before the test fails. */
  readonly within: Duration.Input
  /** Between two checks. Default 20 ms. */
  readonly every?: Duration.Input
  /**
   * How to let `every` pass: `Effect.sleep` on the clock in context by default; a test on a
   * `TestClock` that nothing else moves passes `TestClock.adjust`.
   */
  readonly wait?: (every: Duration.Duration) => Effect.Effect<void, never, R>
}

const everyOf = (options: { readonly every?: Duration.Input }) =>
  Duration.fromInputUnsafe(options.every ?? 20)

/**
 * Checks `condition` until it holds, waiting `every` between checks; dies naming `what`
 * once `within` has passed without it (a defect: the test fails with that message).
 *
 * @since 0.1.0
 * @category waiting
 */
export const effect = <E = never, R = never, RW = never>(
  what: string,
  condition: Effect.Effect<boolean, E, R> | (() => boolean),
  options: Options<RW>,
): Effect.Effect<void, E, R | RW> =>
  Effect.gen(function* () {
    const holds = Effect.isEffect(condition) ? condition : Effect.sync(condition)
    const every = everyOf(options)
    const withinMs = Duration.toMillis(Duration.fromInputUnsafe(options.within))
    const wait = options.wait ?? ((duration: Duration.Duration) => Effect.sleep(duration))
    const everyMs = Math.max(1, Duration.toMillis(every))
    for (let waitedMs = 0; !(yield* holds); waitedMs += everyMs) {
      if (waitedMs >= withinMs) {
        return yield* Effect.die(new Error(`not within ${withinMs} ms: ${what}`))
      }
      yield* wait(every)
    }
  })

/**
 * Calls `check` until it gives a value (not `undefined` nor `false`), waiting `every`
 * between calls, and resolves with it; rejects naming `what` once `within` has passed.
 *
 * @since 0.1.0
 * @category waiting
 */
export const promise = async <A>(
  what: string,
  check: () => A | undefined | false | Promise<A | undefined | false>,
  options: Omit<Options, "wait">,
): Promise<A> => {
  const everyMs = Math.max(1, Duration.toMillis(everyOf(options)))
  const withinMs = Duration.toMillis(Duration.fromInputUnsafe(options.within))
  const deadline = performance.now() + withinMs
  for (;;) {
    const value = await check()
    if (value !== undefined && value !== false) return value
    if (performance.now() > deadline) throw new Error(`not within ${withinMs} ms: ${what}`)
    await sleep(everyMs)
  }
}
