/**
 * The package's metrics, updated from the events an instance emits: roles taken (an
 * election's outcome, by role), failovers (from the loss of the supervisor to this
 * instance's next role, as a duration histogram by role), members registered at a
 * supervisor, permits lost, and elections given up.
 *
 * @since 0.1.0
 */
import { Effect, Metric } from "effect"
import type { ElectionEvent } from "./Election.ts"

/** @since 0.1.0 @category metrics */
export const elections = Metric.counter("understudy_port_election_elections_total", {
  description: "Roles this instance took, by role (supervisor, subordinate)",
})

/** @since 0.1.0 @category metrics */
export const failoverMs = Metric.histogram("understudy_port_election_failover_ms", {
  description:
    "From the loss of the supervisor's connection to this instance's next role, in ms, by role",
  boundaries: Metric.exponentialBoundaries({ start: 1, factor: 2, count: 16 }),
})

/** @since 0.1.0 @category metrics */
export const supervisorsLost = Metric.counter("understudy_port_election_supervisor_lost_total", {
  description: "Times this instance lost its supervisor's connection",
})

/** @since 0.1.0 @category metrics */
export const members = Metric.gauge("understudy_port_election_members", {
  description: "Members registered at this instance while it is supervisor",
})

/** @since 0.1.0 @category metrics */
export const permitsLost = Metric.counter("understudy_port_election_permits_lost_total", {
  description: "Mutexes or semaphore permits lost across a failover, by resource",
})

/** @since 0.1.0 @category metrics */
export const electionsFailed = Metric.counter("understudy_port_election_failed_total", {
  description: "Elections given up, by error (StrangerOnAddress, NotPermitted, ...)",
})

/**
 * Records one instance's events; it remembers when the supervisor was lost, so that the
 * next role closes the failover's duration.
 *
 * @since 0.1.0
 * @category constructors
 */
export const recorder = () => {
  let lostAtMs: number | undefined
  return (event: ElectionEvent): Effect.Effect<void> =>
    Effect.suspend(() => {
      switch (event._tag) {
        case "SupervisorLost":
          lostAtMs = event.atMs
          return Metric.update(supervisorsLost, 1)
        case "Elected":
        case "BecameSubordinate": {
          const role = event._tag === "Elected" ? "supervisor" : "subordinate"
          const since = lostAtMs
          lostAtMs = undefined
          return Effect.andThen(
            Metric.update(Metric.withAttributes(elections, { role }), 1),
            since === undefined
              ? Effect.void
              : Metric.update(Metric.withAttributes(failoverMs, { role }), event.atMs - since),
          )
        }
        case "MemberJoined":
          return Metric.modify(members, 1)
        case "MemberLeft":
          return Metric.modify(members, -1)
        case "PermitLost":
          return Metric.update(Metric.withAttributes(permitsLost, { resource: event.resource }), 1)
        case "Failed":
          return Metric.update(
            Metric.withAttributes(electionsFailed, { error: event.error._tag }),
            1,
          )
      }
    })
}
