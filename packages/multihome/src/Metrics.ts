/**
 * The package's metrics: associations an endpoint holds, DATA retransmissions, takeovers
 * with their duration and how long the failure took to notice, how far the secondary is behind and how many bytes replication
 * moved, and what a node refused and why. The node's protection (`unprotected`) and stale
 * replication counters live with the cluster (`Cluster.unprotectedMetric` …).
 *
 * @since 0.1.0
 */
import { Metric } from "effect"

/**
 * @since 0.1.0
 * @category metrics
 */
export const associations = Metric.gauge("understudy_multihome_associations", {
  description: "Associations the process's endpoints hold (a node: those it serves)",
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const retransmissions = Metric.counter("understudy_multihome_retransmissions_total", {
  description: "DATA chunks sent again (T3-rtx or fast retransmit)",
  incremental: true,
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const takeovers = Metric.counter("understudy_multihome_takeovers_total", {
  description: "Takeovers a secondary completed, by trigger (link, stray)",
  incremental: true,
})

/**
 * From the moment a secondary decided to take over (its link closed, or the peer reached it
 * with no primary) to every association adopted: the fence's wait for the old lease included.
 *
 * @since 0.1.0
 * @category metrics
 */
export const takeoverMs = Metric.histogram("understudy_multihome_takeover_ms", {
  description: "From the decision to take over to every association adopted, in ms",
  boundaries: Metric.exponentialBoundaries({ start: 1, factor: 2, count: 16 }),
})

/**
 * How long a secondary took to notice that its primary was gone: from the last thing it
 * heard on the link (a message or a keep-alive ping) to the link's end, which starts the
 * takeover. The link's keep-alive time-out bounds it.
 *
 * @since 0.1.0
 * @category metrics
 */
export const failoverDetectionMs = Metric.histogram("understudy_multihome_failover_detection_ms", {
  description:
    "From the last word heard from the primary to the secondary's decision to take over, in ms",
  boundaries: Metric.exponentialBoundaries({ start: 1, factor: 2, count: 16 }),
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const replicationLag = Metric.gauge("understudy_multihome_replication_lag_messages", {
  description: "Replication messages the primary shipped that the secondary has not acknowledged",
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const replicationBytes = Metric.counter("understudy_multihome_replication_bytes_total", {
  description: "Bytes of association state a primary shipped, by target (link, store)",
  incremental: true,
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const refusals = Metric.counter("understudy_multihome_refusals_total", {
  description:
    "What a node refused, by reason (stale-epoch, stale-snapshot, damaged-replica, link-rejected)",
  incremental: true,
})

/**
 * One refusal of `reason`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const refused = (
  reason: "stale-epoch" | "stale-snapshot" | "damaged-replica" | "link-rejected",
) => Metric.update(Metric.withAttributes(refusals, { reason }), 1)
