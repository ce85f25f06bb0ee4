/**
 * Which seeds a simulation suite runs. By default `count` consecutive seeds from 1 (or from
 * `UNDERSTUDY_SEEDS`, to explore other schedules in CI); with `UNDERSTUDY_SEED` set, only
 * that one, to replay a failure:
 *
 * ```sh
 * UNDERSTUDY_SEED=4242 npx vitest run test/FailureDetector.sim.test.ts
 * UNDERSTUDY_SEEDS=100000 npm test   # run the next batch of seeds
 * ```
 *
 * A failing simulation prints `SEED=<n>` in its error message: that is the value to set.
 *
 * @since 0.1.0
 */

const parseSeed = (name: string, value: string): number => {
  const seed = Number(value)
  if (!Number.isSafeInteger(seed)) {
    throw new Error(`${name} must be an integer, got ${JSON.stringify(value)}`)
  }
  return seed
}

/**
 * The seeds to run: `[UNDERSTUDY_SEED]` when it is set, else `count` seeds starting at
 * `UNDERSTUDY_SEEDS` (default 1).
 *
 * @example
 * ```ts
 * import { Seeds } from "@understudy/testkit"
 * for (const seed of Seeds.seeds(1_000)) { ... }
 * ```
 * @since 0.1.0
 * @category constructors
 */
export const seeds = (
  count: number,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Array<number> => {
  const one = env.UNDERSTUDY_SEED
  if (one !== undefined && one !== "") return [parseSeed("UNDERSTUDY_SEED", one)]
  const base = env.UNDERSTUDY_SEEDS
  const first = base !== undefined && base !== "" ? parseSeed("UNDERSTUDY_SEEDS", base) : 1
  return Array.from({ length: Math.max(0, Math.floor(count)) }, (_, index) => first + index)
}

/**
 * True when one seed is being replayed (`UNDERSTUDY_SEED` is set): suites may then print
 * the full trace even when the run passes.
 *
 * @since 0.1.0
 * @category getters
 */
export const isReplay = (
  env: Readonly<Record<string, string | undefined>> = process.env,
): boolean => env.UNDERSTUDY_SEED !== undefined && env.UNDERSTUDY_SEED !== ""
