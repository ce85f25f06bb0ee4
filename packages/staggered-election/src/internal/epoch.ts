/**
 * Epochs and terms: `epoch = term * 4096 + (4095 - index)`, unique per server, and within a
 * term a smaller index is newer; how far a server lets a newer term raise its own.
 */

const indexSpan = 4096

/** @since 0.1.0 @category epochs */
export const epochOf = (term: number, index: number): number =>
  term * indexSpan + (indexSpan - 1 - index)
/** @since 0.1.0 @category epochs */
export const termOf = (epoch: number): number => Math.floor(epoch / indexSpan)
/** The index of the master an epoch names. @since 0.1.0 @category epochs */
export const masterIndexOf = (epoch: number): number => indexSpan - 1 - (epoch % indexSpan)

/**
 * No term reaches this: `epochOf` stays exact (below 2^53) for every term up to it. A newer
 * term is adopted only below it and within `termReach` of the server's own (see
 * `reachableTerm`), so a server can always declare the next one.
 *
 * @since 0.1.0
 * @category epochs
 */
export const termMax = 2 ** 40

/**
 * How far past its own term a server may be told of a newer one at once; beyond that the
 * allowance grows by one term per millisecond since its term last rose. Honest terms grow by
 * one per declaration (at most one per election delay per server) or revocation, far slower:
 * a forged epoch can raise a server's term no faster than that, so the `termMax - 1` left
 * after any adopted term take over 30 years of forging to use up.
 *
 * @since 0.1.0
 * @category epochs
 */
export const termReach = 1_024

/**
 * The highest term a server with term `term` (raised at `raisedMs`) adopts at `nowMs`. A
 * server that knows no term yet (just started, nothing persisted) adopts any term below
 * `termMax`: the group it joins may be of any age.
 *
 * @since 0.1.0
 * @category epochs
 */
export const reachableTerm = (term: number, raisedMs: number, nowMs: number): number =>
  term === 0
    ? termMax - 1
    : Math.min(termMax - 1, term + termReach + Math.max(0, Math.floor(nowMs - raisedMs)))
