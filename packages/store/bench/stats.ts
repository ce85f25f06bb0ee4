/** Figures shared by the store benchmarks. */

export const median = (xs: ReadonlyArray<number>): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

export const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

let roundCounter = 0
/** A key prefix no earlier round used, so rounds do not see each other's keys. */
export const freshPrefix = (): string => `/bench/${++roundCounter}/`

/**
 * Every sample of a series for the JSON line's `samples` field (the docs draw their
 * distribution from it), in ms to the microsecond.
 */
export const samples = (xs: ReadonlyArray<number>): Array<number> =>
  xs.map((x) => Math.round(x * 1000) / 1000)
