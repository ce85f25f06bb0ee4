/**
 * Congestion control of one destination address (RFC 9260 §7.2): cwnd, ssthresh and
 * partial_bytes_acked, in bytes. Pure functions over a small record.
 *
 * RFC 9260 counts in PMDCS (Path Maximum DATA Chunk Size, §1.3: the largest DATA chunk,
 * header included, that fits a packet within the path MTU); the parameter called `mtu`
 * below is that PMDCS (for an SCTP packet size P with only DATA: P − 12, the common
 * header). Byte counts are DATA chunk sizes including chunk header and padding (§7.2).
 *
 * @since 0.1.0
 */

/**
 * The per-path control variables (§7.2). Plain data: it is its own snapshot.
 *
 * @since 0.1.0
 * @category models
 */
export interface CongestionState {
  readonly cwnd: number
  readonly ssthresh: number
  readonly partialBytesAcked: number
}

/**
 * What one SACK did on this path, for {@link onAck}.
 *
 * @since 0.1.0
 * @category models
 */
export interface AckInfo {
  /** Bytes of DATA chunks newly acknowledged on this path (cumulative ack, gap blocks, and
   * §7.2.2's duplicates). */
  readonly bytesAcked: number
  /** The path's PMDCS. */
  readonly mtu: number
  /** The path's flight size before this SACK arrived. */
  readonly flightSizeBefore: number
  /** Whether the SACK advanced the Cumulative TSN Ack Point. RFC 9260 no longer makes
   * this a condition of cwnd growth (errata of RFC 4960 folded in §7.2.1); kept for the
   * caller's bookkeeping and ignored here. */
  readonly cumulativeAdvanced: boolean
  /** §7.2.1: no slow-start growth while in Fast Recovery (§7.2.4). Default false. */
  readonly inFastRecovery?: boolean
  /** The path's flight size after this SACK: 0 resets partial_bytes_acked (§7.2.2, "all
   * of the data transmitted … acknowledged"). Default: not 0. */
  readonly flightSizeAfter?: number
}

/**
 * The initial cwnd (§7.2.1): min(4·PMDCS, max(2·PMDCS, 4404)) for an IPv4 peer address,
 * 4344 instead of 4404 for IPv6. ssthresh starts "arbitrarily high": `ssthresh`, by default
 * the largest advertisable window (2^32 − 1); pass the peer's a_rwnd to follow the
 * RFC's example.
 *
 * @since 0.1.0
 * @category constructors
 */
export const initial = (
  mtu: number,
  options?: { readonly family?: "ipv4" | "ipv6"; readonly ssthresh?: number },
): CongestionState => ({
  cwnd: initialCwnd(mtu, options?.family ?? "ipv4"),
  ssthresh: options?.ssthresh ?? 0xffff_ffff,
  partialBytesAcked: 0,
})

/**
 * The initial cwnd of §7.2.1 alone (also the value §7.2 "Reinitialization" resets to).
 *
 * @since 0.1.0
 * @category constructors
 */
export const initialCwnd = (mtu: number, family: "ipv4" | "ipv6" = "ipv4"): number =>
  Math.min(4 * mtu, Math.max(2 * mtu, family === "ipv4" ? 4404 : 4344))

/**
 * Applies a SACK's acknowledgements to the path (§7.2.1 slow start when
 * cwnd ≤ ssthresh, §7.2.2 congestion avoidance otherwise).
 *
 * Slow start grows cwnd by min(bytesAcked, L·PMDCS), L = 1, only when the window was fully
 * used (flight size before ≥ cwnd) and not in Fast Recovery. Congestion avoidance adds
 * bytesAcked to partial_bytes_acked; if that reaches cwnd: with the window not fully used,
 * partial_bytes_acked is capped at cwnd; with it fully used, partial_bytes_acked −= cwnd
 * and then cwnd += PMDCS. Finally partial_bytes_acked = 0 once everything is acknowledged.
 *
 * @since 0.1.0
 * @category mutations
 */
export const onAck = (state: CongestionState, ack: AckInfo): CongestionState => {
  let { cwnd, partialBytesAcked } = state
  const fullyUtilized = ack.flightSizeBefore >= cwnd
  if (cwnd <= state.ssthresh) {
    if (fullyUtilized && ack.inFastRecovery !== true && ack.bytesAcked > 0) {
      cwnd += Math.min(ack.bytesAcked, ack.mtu)
    }
  } else {
    partialBytesAcked += ack.bytesAcked
    if (partialBytesAcked > cwnd && !fullyUtilized) {
      partialBytesAcked = cwnd
    } else if (partialBytesAcked >= cwnd && fullyUtilized) {
      partialBytesAcked -= cwnd
      cwnd += ack.mtu
    }
  }
  if (ack.flightSizeAfter === 0) partialBytesAcked = 0
  return { cwnd, ssthresh: state.ssthresh, partialBytesAcked }
}

/** §7.2.3: ssthresh = max(cwnd/2, 4·PMDCS), cwnd/2 rounded down to whole bytes. */
const reducedSsthresh = (cwnd: number, mtu: number): number =>
  Math.max(Math.floor(cwnd / 2), 4 * mtu)

/**
 * T3-rtx expiry on this path (§6.3.3 E1, §7.2.3): ssthresh = max(cwnd/2, 4·PMDCS),
 * cwnd = 1·PMDCS, partial_bytes_acked = 0. The caller then keeps a single packet in
 * flight on the path until an acknowledgement arrives.
 *
 * @since 0.1.0
 * @category mutations
 */
export const onRetransmissionTimeout = (state: CongestionState, mtu: number): CongestionState => ({
  cwnd: mtu,
  ssthresh: reducedSsthresh(state.cwnd, mtu),
  partialBytesAcked: 0,
})

/**
 * Loss detected by gap reports, entering Fast Recovery (§7.2.4 step 2, §7.2.3):
 * ssthresh = max(cwnd/2, 4·PMDCS), cwnd = ssthresh, partial_bytes_acked = 0. Call it only
 * when not already in Fast Recovery (§7.2.4: no further reduction inside it).
 * `flightSize` is accepted for the caller's convenience; RFC 9260 halves cwnd, not the
 * flight size.
 *
 * @since 0.1.0
 * @category mutations
 */
export const onFastRetransmit = (
  state: CongestionState,
  mtu: number,
  _flightSize?: number,
): CongestionState => {
  const ssthresh = reducedSsthresh(state.cwnd, mtu)
  return { cwnd: ssthresh, ssthresh, partialBytesAcked: 0 }
}

/**
 * An idle path (§7.2.1, §7.2.2): "while the endpoint does not transmit data on a given
 * transport address, the cwnd … SHOULD be adjusted to max(cwnd/2, 4·PMDCS) once per RTO",
 * and "before the first cwnd adjustment, the ssthresh … SHOULD be set to the cwnd".
 * `rtoPeriods` is the number of whole RTOs the path has been idle since the last
 * adjustment (default 1); at most 64 halvings are applied (more change nothing).
 * `firstAdjustment` (default true) says whether this idle period has not been adjusted
 * yet, so that ssthresh is set to the cwnd first. cwnd/2 is rounded down to whole bytes.
 * Taken literally, the rule raises a cwnd below 4·PMDCS (e.g. right after a T3-rtx
 * timeout) to 4·PMDCS; that is what this does.
 *
 * @since 0.1.0
 * @category mutations
 */
export const onIdle = (
  state: CongestionState,
  mtu: number,
  rtoPeriods = 1,
  firstAdjustment = true,
): CongestionState => {
  if (rtoPeriods < 1) return state
  const ssthresh = firstAdjustment ? state.cwnd : state.ssthresh
  let cwnd = state.cwnd
  const periods = Math.min(64, Math.floor(rtoPeriods))
  for (let period = 0; period < periods; period++) cwnd = Math.max(Math.floor(cwnd / 2), 4 * mtu)
  return { cwnd, ssthresh, partialBytesAcked: state.partialBytesAcked }
}
