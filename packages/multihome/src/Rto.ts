/**
 * The retransmission timeout of one path (RFC 9260 §6.3.1 and §6.3.3 E2), in
 * milliseconds, with RTO.Alpha = 1/8, RTO.Beta = 1/4 (§16) and a clock granularity
 * G = 1 ms. Pure functions over a small record; Karn's algorithm and "one measurement per
 * round trip" (C4, C5) are the caller's, which decides when a measurement is taken.
 *
 * @since 0.1.0
 */

/**
 * RTO.Initial, RTO.Min and RTO.Max (§16 defaults: 1000, 1000, 60000 ms).
 *
 * @since 0.1.0
 * @category models
 */
export interface RtoConfig {
  readonly rtoInitialMs: number
  readonly rtoMinMs: number
  readonly rtoMsMax: number
}

/**
 * SRTT and RTTVAR (undefined until the first measurement) and the current RTO, all in
 * milliseconds. Plain data: it is its own snapshot.
 *
 * @since 0.1.0
 * @category models
 */
export interface RtoState {
  readonly srtt: number | undefined
  readonly rttvar: number | undefined
  readonly rto: number
}

/**
 * RTO.Alpha (§16).
 *
 * @since 0.1.0
 * @category constants
 */
export const alpha = 1 / 8

/**
 * RTO.Beta (§16).
 *
 * @since 0.1.0
 * @category constants
 */
export const beta = 1 / 4

/**
 * The clock granularity G, in ms: the unit of every time this package is given.
 *
 * @since 0.1.0
 * @category constants
 */
export const granularityMs = 1

/** C6 (RTO.Min) then C7 (RTO.Max). */
const clamp = (rto: number, config: RtoConfig): number =>
  Math.min(config.rtoMsMax, Math.max(config.rtoMinMs, rto))

/**
 * C1: before any measurement, RTO = RTO.Initial.
 *
 * @since 0.1.0
 * @category constructors
 */
export const initial = (config: RtoConfig): RtoState => ({
  srtt: undefined,
  rttvar: undefined,
  rto: config.rtoInitialMs,
})

/**
 * Folds in an RTT measurement `rttMs` (≥ 0): C2 for the first one (SRTT = R,
 * RTTVAR = R/2), C3 afterwards (RTTVAR from the old SRTT, then SRTT); RTTVAR = 0 becomes G;
 * RTO = SRTT + 4·RTTVAR, rounded up to RTO.Min (C6) and capped at RTO.Max (C7).
 *
 * @since 0.1.0
 * @category mutations
 */
export const measured = (state: RtoState, rttMs: number, config: RtoConfig): RtoState => {
  const r = Math.max(0, rttMs)
  let srtt: number
  let rttvar: number
  if (state.srtt === undefined || state.rttvar === undefined) {
    srtt = r
    rttvar = r / 2
  } else {
    // C3: "The value of SRTT used in the update to RTTVAR is its value before updating SRTT".
    rttvar = (1 - beta) * state.rttvar + beta * Math.abs(state.srtt - r)
    srtt = (1 - alpha) * state.srtt + alpha * r
  }
  // §6.3.1: "Whenever RTTVAR is computed, if RTTVAR == 0, then adjust RTTVAR = G."
  if (rttvar === 0) rttvar = granularityMs
  return { srtt, rttvar, rto: clamp(srtt + 4 * rttvar, config) }
}

/**
 * E2 (§6.3.3): on T3-rtx expiry (and, by §6.3.3's reference from T1-init / T1-cookie
 * and heartbeat loss, §5.1, §8.3) RTO = RTO·2, bounded by RTO.Max. SRTT and RTTVAR are
 * kept: the next measurement recomputes RTO from them.
 *
 * @since 0.1.0
 * @category mutations
 */
export const backoff = (state: RtoState, config: RtoConfig): RtoState => ({
  srtt: state.srtt,
  rttvar: state.rttvar,
  rto: Math.min(config.rtoMsMax, state.rto * 2),
})
