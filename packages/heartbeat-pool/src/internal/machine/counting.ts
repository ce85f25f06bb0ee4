/**
 * The counts the leader decides by, as pure functions of a server's state: seats held here and in the
 * pool, shares out, the capacity, and the changes of what must survive a restart.
 */
import { HashMap, Option } from "effect"
import type {
  Elsewhere,
  FollowerView,
  Held,
  LeaderState,
  State,
  StoredChanges,
  Tally,
} from "../../Machine.ts"

/**
 * The tally of `record` and `pool` counted from scratch (each change keeps it otherwise).
 *
 * @since 0.1.0
 * @category getters
 */
export const tallyOf = (
  record: HashMap.HashMap<string, Held>,
  pool: HashMap.HashMap<string, Elsewhere>,
): Tally => {
  const seats = new Map<string, number>()
  for (const held of HashMap.values(record)) seats.set(held.client, held.seats)
  const moved: Record<string, number> = {}
  for (const entry of HashMap.values(pool)) {
    seats.set(entry.client, Math.max(seats.get(entry.client) ?? 0, entry.seats))
    if (entry.sharedBy !== undefined)
      moved[entry.sharedBy] = (moved[entry.sharedBy] ?? 0) + entry.seats
  }
  let total = 0
  for (const count of seats.values()) total += count
  return { seats: HashMap.fromIterable(seats), total, moved }
}

/** @since 0.1.0 @category constants */
export const storedChangesKept = 4_096

export const noStoredChanges: StoredChanges = {
  recent: undefined,
  recentCount: 0,
  older: undefined,
}

/** `changes` after `client`'s change made `stored` this. */
export const storedChange = (
  changes: StoredChanges,
  stored: number,
  client: string,
): StoredChanges =>
  changes.recentCount >= storedChangesKept
    ? {
        recent: { stored, client, before: undefined },
        recentCount: 1,
        older: changes.recent,
      }
    : {
        ...changes,
        recent: { stored, client, before: changes.recent },
        recentCount: changes.recentCount + 1,
      }

/**
 * The clients whose stored allocation changed after `stored` was `since` (newest first, a
 * client once per change), or undefined when those changes are no longer all listed.
 *
 * @since 0.1.0
 * @category getters
 */
export const storedSince = (state: State, since: number): ReadonlyArray<string> | undefined => {
  if (since > state.stored) return undefined
  const clients: Array<string> = []
  let reached = state.stored + 1
  for (const list of [state.storedChanges.recent, state.storedChanges.older]) {
    for (let change = list; change !== undefined && change.stored > since; change = change.before) {
      clients.push(change.client)
      reached = change.stored
    }
  }
  return reached === since + 1 ? clients : undefined
}

/** Seats in use in this server's own record at `nowMs`. @since 0.1.0 @category getters */
export const seatsHeld = (state: State, nowMs: number): number => {
  let seats = 0
  for (const held of HashMap.values(state.record)) if (held.expiresAtMs > nowMs) seats += held.seats
  return seats
}

/** The capacity of the license at `nowMs` (0 without a valid one). @since 0.1.0 @category getters */
export const capacityAt = (state: State, nowMs: number): number => {
  const license = state.durable.license
  return license !== null && license.expiresAtMs > nowMs ? license.seats : 0
}

/**
 * The leader's count of seats in use in the whole pool at `nowMs`: its own unexpired
 * allocations and every allocation known at another server that may still be renewed there,
 * each client counted once (a client that moved may linger in two records until one expires).
 *
 * @since 0.1.0
 * @category getters
 */
export const poolSeatsInUse = (
  state: State,
  nowMs: number,
  leaseMs: number,
  except?: string,
): number => {
  const seats = new Map<string, number>()
  for (const held of HashMap.values(state.record)) {
    if (held.expiresAtMs > nowMs && held.client !== except) seats.set(held.client, held.seats)
  }
  const leader = state.leaderState
  if (leader !== undefined) {
    for (const entry of HashMap.values(leader.pool)) {
      if (entry.client === except || countsUntil(leader, entry, leaseMs) <= nowMs) continue
      seats.set(entry.client, Math.max(seats.get(entry.client) ?? 0, entry.seats))
    }
  }
  let total = 0
  for (const count of seats.values()) total += count
  return total
}

/** The most seats `client`'s allocations that still count at `nowMs` hold (the leader's view). */
export const countingSeats = (
  state: State,
  client: string,
  nowMs: number,
  leaseMs: number,
): number => {
  const held = HashMap.get(state.record, client)
  let seats = Option.isSome(held) && held.value.expiresAtMs > nowMs ? held.value.seats : 0
  const leader = state.leaderState
  if (leader === undefined) return seats
  for (const server in leader.followers) {
    const entry = HashMap.get(leader.pool, poolKey(server, client))
    if (Option.isSome(entry) && countsUntil(leader, entry.value, leaseMs) > nowMs)
      seats = Math.max(seats, entry.value.seats)
  }
  return seats
}

/**
 * `poolSeatsInUse` as the leader decides at the edge of the capacity, in O(k · servers · log n)
 * for the k clients of `endingSoon` (at most O(n), when most end soon) rather than O(n): its
 * tally less what stopped counting
 * since the last tick among those. What stopped counting without being among them (in a record
 * merged since, or past a late tick) is still counted: the count is never below
 * `poolSeatsInUse`, and equals it but for those until the next tick.
 *
 * @since 0.1.0
 * @category getters
 */
export const seatsCounted = (
  state: State,
  nowMs: number,
  leaseMs: number,
  except?: string,
): number => {
  const leader = state.leaderState
  if (leader === undefined) return seatsHeld(state, nowMs)
  const servers = Object.keys(leader.followers).length + 1
  // Most allocations end soon (many clients left at once): counting them all is cheaper.
  if (leader.endingSoon.length * servers > HashMap.size(leader.tally.seats))
    return poolSeatsInUse(state, nowMs, leaseMs, except)
  const tallied = (client: string) =>
    Option.getOrElse(HashMap.get(leader.tally.seats, client), () => 0)
  let seats = leader.tally.total - (except === undefined ? 0 : tallied(except))
  const seen = new Set<string>()
  for (const client of leader.endingSoon) {
    if (client === except || seen.has(client)) continue
    seen.add(client)
    seats -= tallied(client) - countingSeats(state, client, nowMs, leaseMs)
  }
  return seats
}

/** The key of an allocation in the leader's pool record. @since 0.1.0 @category getters */
export const poolKey = (server: string, client: string): string => `${server}\u0000${client}`

/**
 * Seats the leader must count for a follower's share at `nowMs`: what it may still grant
 * from the highest limit it may be using, and what it granted from it (under any earlier
 * limit) that no merged record shows yet. Once it can no longer renew (its authority ended a lease ago), only the current
 * limit counts.
 *
 * @since 0.1.0
 * @category getters
 */
export const shareOutstanding = (view: FollowerView, nowMs: number, leaseMs: number): number => {
  let limit = view.share.limit
  if (view.authoritySentUntilMs + leaseMs > nowMs) {
    limit = Math.max(limit, view.share.used)
    for (const sent of view.share.sent) limit = Math.max(limit, sent.limit)
  }
  return Math.max(0, limit - view.share.consumed)
}

/**
 * The leader's count of seats handed out as shares at `nowMs`, or of one follower's share: a
 * seat granted from a share whose client re-attached elsewhere is counted there instead.
 *
 * @since 0.1.0
 * @category getters
 */
export const sharesOutstanding = (
  state: State,
  nowMs: number,
  leaseMs: number,
  only?: string,
): number => {
  const leader = state.leaderState
  if (leader === undefined) return 0
  let seats = 0
  for (const server in leader.followers) {
    if (only !== undefined && server !== only) continue
    const outstanding = shareOutstanding(leader.followers[server]!, nowMs, leaseMs)
    seats += Math.max(0, outstanding - (leader.tally.moved[server] ?? 0))
  }
  return seats
}

/** A follower's unused share at `nowMs` (0 without authority). @since 0.1.0 @category getters */
export const shareLeft = (state: State, nowMs: number): number =>
  state.role === "follower" &&
  state.share.term === state.durable.term &&
  state.authorityUntilMs > nowMs
    ? Math.max(0, state.share.limit - state.share.used)
    : 0

/**
 * Until when the leader counts a seat held elsewhere: for as long as the follower may still
 * renew it (its authority, and a lease past it), whether its record showed the seat or no
 * record of it came since the reservation (a follower cut off right after granting goes on
 * renewing the seat under the authority it has, and its record never arrives). Only a
 * reservation a record merged after it passed over counts for its own lease alone: a follower
 * that granted it shows it in its next record, while a seat granted and given back between two
 * records (or never granted, its `Unused` lost) would otherwise hold the seat for ever.
 */
export const countsUntil = (leader: LeaderState, entry: Elsewhere, leaseMs: number): number =>
  entry.seen || entry.passedOver !== true
    ? Math.max(
        entry.expiresAtMs,
        (leader.followers[entry.server]?.authoritySentUntilMs ?? 0) + leaseMs,
      )
    : entry.expiresAtMs

/**
 * The clients in the pool record as the leader holds it.
 *
 * @since 0.1.0
 * @category getters
 */
export const poolRecord = (state: State): Set<string> => {
  const record = new Set<string>(HashMap.keys(state.record))
  if (state.leaderState !== undefined) {
    for (const entry of HashMap.values(state.leaderState.pool)) record.add(entry.client)
  }
  return record
}
