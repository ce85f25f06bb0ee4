/**
 * This server's record of distribution: allocations held and dropped, with the leader's running
 * tally of seats kept with each change, and the periodic expiry.
 */
import { Machine as M } from "@understudy/machine"
import { HashMap, Option } from "effect"
import type { Elsewhere, Event, Held, LeaderState, State } from "../../Machine.ts"
import type { Ctx, Output } from "./context.ts"
import { poolKey, storedChange, tallyOf } from "./counting.ts"

export const record = (
  ctx: Ctx,
): Pick<Ctx, "setPool" | "withPool" | "hold" | "drop" | "expire"> => {
  const { servers, checkTimeoutMs } = ctx
  /** The most seats any allocation of `client` holds, here or at another server. */
  const seatsOf = (
    record: HashMap.HashMap<string, Held>,
    pool: HashMap.HashMap<string, Elsewhere>,
    client: string,
  ): number => {
    const held = HashMap.get(record, client)
    let seats = Option.isSome(held) ? held.value.seats : 0
    for (const server of servers) {
      const entry = HashMap.get(pool, poolKey(server, client))
      if (Option.isSome(entry)) seats = Math.max(seats, entry.value.seats)
    }
    return seats
  }

  /** The leader's tally after a change to `client`'s allocations (O(servers · log n)). */
  const retally = (state: State, client: string): State => {
    const leader = state.leaderState
    if (leader === undefined) return state
    const { tally } = leader
    const before = Option.getOrElse(HashMap.get(tally.seats, client), () => 0)
    const after = seatsOf(state.record, leader.pool, client)
    if (after === before) return state
    const seats =
      after === 0 ? HashMap.remove(tally.seats, client) : HashMap.set(tally.seats, client, after)
    return {
      ...state,
      leaderState: { ...leader, tally: { ...tally, seats, total: tally.total - before + after } },
    }
  }

  /** Sets (or, `undefined`, removes) one entry of the leader's pool, keeping its tally. */
  const setPool = (
    state: State,
    key: string,
    client: string,
    entry: Elsewhere | undefined,
  ): State => {
    const leader = state.leaderState!
    const old = HashMap.get(leader.pool, key)
    const moved = { ...leader.tally.moved }
    if (Option.isSome(old) && old.value.sharedBy !== undefined)
      moved[old.value.sharedBy] = (moved[old.value.sharedBy] ?? 0) - old.value.seats
    if (entry?.sharedBy !== undefined)
      moved[entry.sharedBy] = (moved[entry.sharedBy] ?? 0) + entry.seats
    const pool =
      entry === undefined ? HashMap.remove(leader.pool, key) : HashMap.set(leader.pool, key, entry)
    return retally(
      { ...state, leaderState: { ...leader, pool, tally: { ...leader.tally, moved } } },
      client,
    )
  }

  /** Replaces the leader's pool wholesale, its tally counted again (O(n), as the change). */
  const withPool = (
    state: State,
    leader: LeaderState,
    pool: HashMap.HashMap<string, Elsewhere>,
  ): LeaderState => ({ ...leader, pool, tally: tallyOf(state.record, pool) })

  const hold = (state: State, held: Held): State => {
    const before = HashMap.get(state.record, held.client)
    const addedAtVersion = Option.isSome(before) ? before.value.addedAtVersion : state.version + 1
    const stores = held.renewable && (Option.isNone(before) || !before.value.renewable)
    return retally(
      {
        ...state,
        record: HashMap.set(state.record, held.client, { ...held, addedAtVersion }),
        recordSeats:
          state.recordSeats - (Option.isSome(before) ? before.value.seats : 0) + held.seats,
        version: Option.isSome(before) ? state.version : state.version + 1,
        stored: stores ? state.stored + 1 : state.stored,
        storedChanges: stores
          ? storedChange(state.storedChanges, state.stored + 1, held.client)
          : state.storedChanges,
      },
      held.client,
    )
  }

  const drop = (state: State, client: string): State => {
    const held = HashMap.get(state.record, client)
    return Option.isSome(held)
      ? retally(
          {
            ...state,
            record: HashMap.remove(state.record, client),
            recordSeats: state.recordSeats - held.value.seats,
            version: state.version + 1,
            stored: state.stored + 1,
            storedChanges: storedChange(state.storedChanges, state.stored + 1, client),
          },
          client,
        )
      : state
  }

  const expire = (state: State, nowMs: number, outputs: Array<Output>): State => {
    let next = state
    for (const held of HashMap.values(state.record)) {
      if (held.expiresAtMs <= nowMs) {
        next = drop(next, held.client)
        outputs.push(M.emit<Event>({ _tag: "Released", client: held.client, expired: true }))
      }
    }
    let pending = next.pending
    for (const [client, waiting] of HashMap.entries(pending)) {
      if (nowMs - waiting.sentAtMs >= checkTimeoutMs) pending = HashMap.remove(pending, client)
    }
    return pending === next.pending ? next : { ...next, pending }
  }
  return { setPool, withPool, hold, drop, expire }
}
