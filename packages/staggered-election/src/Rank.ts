/**
 * The static server group and each server's index (claims 19–21): servers are ranked by
 * declared capacity, computational power first, then bandwidth, both descending, ties broken
 * by id ascending. Index 1 is the most capable server. A smaller index wins every conflict
 * between two servers that both claim mastership.
 *
 * @example
 * ```ts
 * import { Rank } from "@understudy/staggered-election"
 *
 * const ranking = Rank.rank([
 *   { id: "a", capacity: { cpu: 4, bandwidthMbps: 100 } },
 *   { id: "b", capacity: { cpu: 8, bandwidthMbps: 10 } },
 * ])
 * // ranking is a Result: b gets index 1, a index 2
 * ```
 * @since 0.1.0
 */
import { Result, Schema } from "effect"

/** What a server declares it can do. @since 0.1.0 @category models */
export interface Capacity {
  /** Computational power, in any unit shared by the group (cores, benchmark score). */
  readonly cpu: number
  readonly bandwidthMbps: number
}

/** One member of the group, as configured on every server. @since 0.1.0 @category models */
export interface Server {
  readonly id: string
  readonly capacity: Capacity
}

/** A server with its index (1 = most capable). @since 0.1.0 @category models */
export interface Ranked extends Server {
  readonly index: number
}

/**
 * The most servers a group may have: the index must fit in the low 12 bits of an epoch.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxServers = 4095

/**
 * The group configuration is unusable; `reason` says why.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidGroup extends Schema.TaggedError<InvalidGroup>()("InvalidGroup", {
  reason: Schema.Literals(["empty", "too-many-servers", "duplicate-id", "bad-capacity"]),
  detail: Schema.String,
}) {
  override get message(): string {
    return `invalid server group (${this.reason}): ${this.detail}`
  }
}

/**
 * The servers in index order (the first has index 1), or why the group is invalid.
 *
 * @since 0.1.0
 * @category constructors
 */
export const rank = (
  servers: ReadonlyArray<Server>,
): Result.Result<ReadonlyArray<Ranked>, InvalidGroup> => {
  if (servers.length === 0) {
    return Result.fail(new InvalidGroup({ reason: "empty", detail: "no servers configured" }))
  }
  if (servers.length > maxServers) {
    return Result.fail(
      new InvalidGroup({
        reason: "too-many-servers",
        detail: `${servers.length} servers, at most ${maxServers}`,
      }),
    )
  }
  const seen = new Set<string>()
  for (const server of servers) {
    if (seen.has(server.id)) {
      return Result.fail(new InvalidGroup({ reason: "duplicate-id", detail: server.id }))
    }
    seen.add(server.id)
    const { cpu, bandwidthMbps } = server.capacity
    if (!Number.isFinite(cpu) || cpu < 0 || !Number.isFinite(bandwidthMbps) || bandwidthMbps < 0) {
      return Result.fail(
        new InvalidGroup({
          reason: "bad-capacity",
          detail: `${server.id}: cpu ${cpu}, bandwidthMbps ${bandwidthMbps}`,
        }),
      )
    }
  }
  const sorted = [...servers].sort(
    (a, b) =>
      b.capacity.cpu - a.capacity.cpu ||
      b.capacity.bandwidthMbps - a.capacity.bandwidthMbps ||
      (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
  )
  return Result.succeed(sorted.map((server, position) => ({ ...server, index: position + 1 })))
}

/**
 * True when a server with index `own` wins a conflict against one with index `other`
 * (claims 18–19: the receiver wins when the other's index is greater).
 *
 * @since 0.1.0
 * @category predicates
 */
export const wins = (own: number, other: number): boolean => other > own
