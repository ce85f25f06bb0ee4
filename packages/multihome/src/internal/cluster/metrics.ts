/** The cluster's own metrics (the replication's and the failover's are in `Metrics`). */
import { Metric } from "effect"

/**
 * 1 while this node serves with no secondary holding its updates (a primary whose link is
 * down, a secondary that took over), else 0.
 *
 * @since 0.1.0
 * @category metrics
 */
export const unprotectedMetric = Metric.gauge("understudy_multihome_unprotected", {
  description: "1 while the node serves associations with no standby holding their state",
})

/**
 * Updates a primary released with no secondary to hold them.
 *
 * @since 0.1.0
 * @category metrics
 */
export const unprotectedUpdatesMetric = Metric.counter(
  "understudy_multihome_unprotected_updates_total",
  {
    description: "Association updates released while no standby held the state",
    incremental: true,
  },
)

/**
 * Replication messages a secondary refused because their epoch is older than the newest it
 * knows of (a primary the fence has moved past).
 *
 * @since 0.1.0
 * @category metrics
 */
export const staleReplicationMetric = Metric.counter(
  "understudy_multihome_stale_replication_total",
  { description: "Replication messages refused for a stale epoch", incremental: true },
)
