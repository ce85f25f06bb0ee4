/**
 * The package's metrics, updated from the events an instance emits: roles taken (an
 * election's outcome, by role), failovers (from the loss of the supervisor to this
 * instance's next role, as a duration histogram by role), members registered at a
 * supervisor, permits lost, and elections given up; at the supervisor, the permits held
 * and waited for, by resource; and, at a subordinate, how long it took to notice that its
 * supervisor was gone (the detection time).
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

/**
 * How long a subordinate took to notice that its supervisor was gone: from the last thing it
 * heard on the supervisor's connection (a message or a keep-alive) to that connection's end
 * (`End`, `Reset`) or keep-alive time-out (`Timeout`), by that reason; not counted when the
 * supervisor said it was stopping before its connection ended. The keep-alive's time-out
 * bounds it.
 *
 * @since 0.1.0
 * @category metrics
 */
export const detectionMs = Metric.histogram("understudy_port_election_detection_ms", {
  description:
    "From the last word heard from the supervisor to noticing its loss (connection ended or timed out), in ms, by reason",
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
export const permitsHeld = Metric.gauge("understudy_port_election_permits_held", {
  description:
    "Mutex or semaphore permits held by all members, by resource, at this instance while it is supervisor",
})

/** @since 0.1.0 @category metrics */
export const permitsWaiting = Metric.gauge("understudy_port_election_permits_waiting", {
  description:
    "Requests waiting for a mutex or semaphore permit, by resource, at this instance while it is supervisor",
})

/** Held and waiting permits of one resource. */
export interface PermitCounts {
  readonly held: number
  readonly waiting: number
}

/**
 * Sets the permit gauges of a supervisor from its grants; each resource it reported before
 * and no longer has (or every one, when its term ends: `current` empty) goes to zero. Returns
 * what it reported, for the next call.
 *
 * @since 0.1.0
 * @category constructors
 */
export const recordPermits = (
  current: ReadonlyMap<string, PermitCounts>,
  previous: ReadonlyMap<string, PermitCounts>,
): Effect.Effect<ReadonlyMap<string, PermitCounts>> =>
  Effect.gen(function* () {
    for (const [resource, counts] of current) {
      const before = previous.get(resource)
      if (before?.held === counts.held && before.waiting === counts.waiting) continue
      yield* Metric.update(Metric.withAttributes(permitsHeld, { resource }), counts.held)
      yield* Metric.update(Metric.withAttributes(permitsWaiting, { resource }), counts.waiting)
    }
    for (const resource of previous.keys()) {
      if (current.has(resource)) continue
      yield* Metric.update(Metric.withAttributes(permitsHeld, { resource }), 0)
      yield* Metric.update(Metric.withAttributes(permitsWaiting, { resource }), 0)
    }
    return current
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
