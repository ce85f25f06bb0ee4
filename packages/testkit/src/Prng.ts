/**
 * A small seeded pseudo-random generator (mulberry32 over a splitmix-style mixed seed), so
 * fault schedules are pure functions of their seed, independent of Effect's `Random` (which
 * the network simulator draws from during the run). Tests that draw their own schedule
 * (kills, pauses, sizes) use it too, so a printed seed replays it.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 @category models */
export interface Prng {
  /** A number in [0, 1). */
  readonly next: () => number
  /** An integer in [min, max], both included. */
  readonly int: (min: number, max: number) => number
  /** True with probability `p`. */
  readonly chance: (p: number) => boolean
  /** One element of a non-empty array. */
  readonly pick: <A>(items: ReadonlyArray<A>) => A
  /** A shuffled copy. */
  readonly shuffle: <A>(items: ReadonlyArray<A>) => Array<A>
}

const mix = (seed: number): number => {
  // Any finite number, including negatives and fractions, maps to 32 well-mixed bits.
  let h = Math.floor(seed) ^ Math.floor(seed / 0x1_0000_0000) ^ 0x9e3779b9
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

/** @since 0.1.0 @category constructors */
export const make = (seed: number): Prng => {
  let state = mix(seed)
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
  const int = (min: number, max: number): number => min + Math.floor(next() * (max - min + 1))
  const pick = <A>(items: ReadonlyArray<A>): A => {
    if (items.length === 0) throw new Error("pick from an empty array")
    return items[int(0, items.length - 1)]!
  }
  const shuffle = <A>(items: ReadonlyArray<A>): Array<A> => {
    const copy = [...items]
    for (let index = copy.length - 1; index > 0; index--) {
      const other = int(0, index)
      ;[copy[index], copy[other]] = [copy[other]!, copy[index]!]
    }
    return copy
  }
  return { next, int, chance: (p) => p > 0 && next() < p, pick, shuffle }
}
