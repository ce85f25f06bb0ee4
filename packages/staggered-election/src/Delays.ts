/**
 * The staggered election delay of claims 10–13, as a pure function of the measured delays:
 *
 * ```
 * electionDelay(i) = base + Σ_{j ∈ B, index(j) < index(i)}  max_{k ∈ B, index(k) ≥ index(i)} d(j, k)
 * ```
 *
 * where `B`, "the back-up servers", is every server but the one detected failed. Each term is
 * the longest time a declaration from the more capable server `j` can take to reach the
 * servers that would otherwise declare after it, so a server waits for every more capable
 * one to have had its chance to declare and be heard.
 *
 * `d(j, k)` is a round-trip time (a conservative estimate of the one-way delay): the larger of
 * what `j` measured to `k` and what `k` measured to `j`; a pair nobody measured counts as
 * `unknownDelayMs`; every `d` is at least `floorDelayMs`.
 *
 * @since 0.1.0
 */
import type { Ranked } from "./Rank.ts"

/**
 * Measured delays: `matrix[j][k]` is what server `j` measured to server `k`, in ms.
 *
 * @since 0.1.0
 * @category models
 */
export type Matrix = Readonly<Record<string, Readonly<Record<string, number>>>>

/** @since 0.1.0 @category models */
export interface Parameters {
  readonly baseDelayMs: number
  readonly floorDelayMs: number
  readonly unknownDelayMs: number
}

/** What a delay is computed from. @since 0.1.0 @category models */
export interface Inputs extends Parameters {
  /** The group in index order. */
  readonly servers: ReadonlyArray<Ranked>
  readonly self: string
  /** The server detected failed; `undefined` when none is (a restart, a cold start). */
  readonly failed: string | undefined
  readonly matrix: Matrix
}

/**
 * One term of the sum: the delay from the more capable backup `from` to the farthest backup
 * `to` of those not more capable than this server.
 *
 * @since 0.1.0
 * @category models
 */
export interface Term {
  readonly from: string
  readonly fromIndex: number
  readonly to: string
  readonly toIndex: number
  readonly delayMs: number
  /** True when no one measured the pair and `unknownDelayMs` was used. */
  readonly unknown: boolean
}

/** The delay with its terms, for logs and tests. @since 0.1.0 @category models */
export interface Explanation {
  readonly self: string
  readonly index: number
  readonly failed: string | undefined
  readonly baseDelayMs: number
  readonly terms: ReadonlyArray<Term>
  readonly totalMs: number
  /** One line: `n3 (index 3) = base 50 + d(n1→n4) 12 + d(n2→n3) 7? = 69 ms`, `?` for unknown. */
  readonly text: string
}

/**
 * `d(j, k)`: the larger of the two directions measured, or `undefined` when neither is.
 *
 * @since 0.1.0
 * @category getters
 */
export const measured = (matrix: Matrix, j: string, k: string): number | undefined => {
  const forward = matrix[j]?.[k]
  const backward = matrix[k]?.[j]
  if (forward === undefined) return backward
  if (backward === undefined) return forward
  return Math.max(forward, backward)
}

/**
 * The election delay of `self` with each term of its sum.
 *
 * @since 0.1.0
 * @category constructors
 */
export const explain = (inputs: Inputs): Explanation => {
  const { servers, self, failed, matrix, baseDelayMs, floorDelayMs, unknownDelayMs } = inputs
  const backups = servers.filter((server) => server.id !== failed)
  const own = servers.find((server) => server.id === self)
  const index = own?.index ?? servers.length + 1
  const later = backups.filter((server) => server.index >= index)
  const terms: Array<Term> = []
  for (const j of backups) {
    if (j.index >= index) continue
    let worst: Term | undefined
    for (const k of later) {
      const value = measured(matrix, j.id, k.id)
      const delayMs = Math.max(floorDelayMs, value ?? unknownDelayMs)
      if (worst === undefined || delayMs > worst.delayMs) {
        worst = {
          from: j.id,
          fromIndex: j.index,
          to: k.id,
          toIndex: k.index,
          delayMs,
          unknown: value === undefined,
        }
      }
    }
    if (worst !== undefined) terms.push(worst)
  }
  const totalMs = terms.reduce((sum, term) => sum + term.delayMs, baseDelayMs)
  const parts = terms.map(
    (term) => ` + d(${term.from}→${term.to}) ${term.delayMs}${term.unknown ? "?" : ""}`,
  )
  const text = `${self} (index ${index}) = base ${baseDelayMs}${parts.join("")} = ${totalMs} ms`
  return { self, index, failed, baseDelayMs, terms, totalMs, text }
}

/**
 * The election delay of `self`, in ms.
 *
 * @since 0.1.0
 * @category getters
 */
export const electionDelay = (inputs: Inputs): number => explain(inputs).totalMs

/**
 * The largest election delay any server can get when every pair is at most `maxDelayMs`
 * (or unknown): the last server's delay with every term at `max(maxDelayMs, unknownDelayMs)`.
 * For liveness bounds.
 *
 * @since 0.1.0
 * @category getters
 */
export const worstCase = (serverCount: number, parameters: Parameters, maxDelayMs: number) =>
  parameters.baseDelayMs +
  Math.max(0, serverCount - 1) *
    Math.max(parameters.floorDelayMs, parameters.unknownDelayMs, maxDelayMs)
