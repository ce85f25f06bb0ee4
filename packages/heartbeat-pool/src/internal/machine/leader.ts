/**
 * The leader: heartbeats with the followers' shares of free seats, failure detection's
 * bookkeeping, and the merge of the followers' records into the pool record (claims 7, 21, 23,
 * 40).
 */
import { Machine as M } from "@understudy/machine"
import { HashMap } from "effect"
import type {
  Elsewhere,
  Event,
  FollowerView,
  LeaderState,
  ShareAccount,
  State,
} from "../../Machine.ts"
import type * as Message from "../../Message.ts"
import type { Ctx, Output } from "./context.ts"
import {
  capacityAt,
  countsUntil,
  poolKey,
  poolSeatsInUse,
  shareOutstanding,
  sharesOutstanding,
} from "./counting.ts"

type Peer = Message.Peer

export const leader = (
  ctx: Ctx,
): Pick<
  Ctx,
  "sendHeartbeats" | "endingSoon" | "expirePool" | "newLife" | "acked" | "receiveRecord"
> => {
  const { heartbeatIntervalMs, leaseMs, clientsMax, partSize, shareMax } = ctx
  /** May the leader hand `view`'s follower a share now? */
  const shareable = (leader: LeaderState, view: FollowerView, nowMs: number, until: number) =>
    shareMax > 0 &&
    until > nowMs &&
    nowMs >= leader.settleUntilMs &&
    nowMs >= leader.reclaimUntilMs &&
    view.mergedVersion !== -1 &&
    !view.down &&
    view.life !== 0 &&
    view.share.life === view.life

  /**
   * The shares of this heartbeat: free seats split evenly between the leader and the
   * followers that may have one (at most `shareMax` each); a share only grows into seats no
   * one counts, and shrinks (taken back) as free seats run out or when the follower may not
   * have one.
   */
  const shareLimits = (
    state: State,
    nowMs: number,
    until: number,
  ): Record<string, ShareAccount> => {
    const leader = state.leaderState!
    const used = poolSeatsInUse(state, nowMs, leaseMs)
    const capacity = capacityAt(state, nowMs)
    let free = capacity - used - sharesOutstanding(state, nowMs, leaseMs)
    const eligible = Object.keys(leader.followers).filter((server) =>
      shareable(leader, leader.followers[server]!, nowMs, until),
    )
    const each = Math.min(
      shareMax,
      Math.max(0, Math.floor((capacity - used) / (eligible.length + 1))),
    )
    const accounts: Record<string, ShareAccount> = {}
    for (const server in leader.followers) {
      const view = leader.followers[server]!
      const account = view.share
      const counted = account.consumed + shareOutstanding(view, nowMs, leaseMs)
      const want = account.consumed + (eligible.includes(server) ? each : 0)
      // Growing beyond what is counted takes free seats; shrinking is immediate here, but the
      // old limit stays counted (`sent`) until acknowledged.
      const limit = want > counted ? Math.min(want, counted + Math.max(0, free)) : want
      if (limit > counted) free -= limit - counted
      const last = account.sent[account.sent.length - 1]
      let sent = account.sent
      if (last === undefined || last.limit !== limit) {
        sent = [...sent, { seq: leader.seq + 1, limit }]
        // Bounded: two oldest limits merge into the higher one (counts more, never less).
        if (sent.length > 64)
          sent = [
            { seq: sent[0]!.seq, limit: Math.max(sent[0]!.limit, sent[1]!.limit) },
            ...sent.slice(2),
          ]
      }
      accounts[server] = { ...account, limit, sent }
    }
    return accounts
  }

  const sendHeartbeats = (state: State, nowMs: number, outputs: Array<Output>): State => {
    const leader = state.leaderState!
    const seq = leader.seq + 1
    const until = ctx.leaseUntil(leader, nowMs)
    const live = ctx.liveServers(state, nowMs)
    const shares = shareLimits(state, nowMs, until)
    const followers: Record<string, FollowerView> = {}
    for (const server in leader.followers) {
      const view = leader.followers[server]!
      const share = shares[server]!
      // Renewal at a follower is allowed only once a record of it is merged in this term: then
      // what it renews is counted (later grants there were reserved here; restored ones are
      // never renewed).
      const authorityUntilMs = view.mergedVersion !== -1 && until > nowMs ? until : 0
      outputs.push(
        M.send<Peer>(server, {
          _tag: "Heartbeat",
          term: state.durable.term,
          seq,
          sequence: state.durable.license?.sequence ?? 0,
          authorityUntilMs,
          wantRecord: view.mergedVersion !== view.version || view.mergedVersion === -1,
          live,
          shareLife: share.life,
          shareLimit: share.limit,
          merged:
            view.mergedVersion === -1 ? null : { life: view.life, version: view.mergedVersion },
        }),
      )
      followers[server] = {
        ...view,
        authoritySentUntilMs: Math.max(view.authoritySentUntilMs, authorityUntilMs),
        share,
      }
    }
    const sentAt = [...leader.sentAt, { seq, atMs: nowMs }]
    if (sentAt.length > 64) sentAt.shift()
    return { ...state, leaderState: { ...leader, seq, sentAt, followers } }
  }

  /** The clients with an allocation whose count ends by the tick after next (see `LeaderState`). */
  const endingSoon = (state: State, nowMs: number): Array<string> => {
    const leader = state.leaderState!
    const horizonMs = nowMs + 2 * heartbeatIntervalMs
    const clients: Array<string> = []
    for (const held of HashMap.values(state.record))
      if (held.expiresAtMs <= horizonMs) clients.push(held.client)
    for (const entry of HashMap.values(leader.pool))
      if (countsUntil(leader, entry, leaseMs) <= horizonMs) clients.push(entry.client)
    return clients
  }

  const expirePool = (leader: LeaderState, nowMs: number): HashMap.HashMap<string, Elsewhere> =>
    HashMap.filter(leader.pool, (entry) => countsUntil(leader, entry, leaseMs) > nowMs)

  /**
   * A follower that restarted has forgotten its share and the records merged of it: fetch
   * its record again. Its old share stays counted until then (what it granted from it is in
   * the record it restored).
   */
  const newLife = (view: FollowerView, life: number): FollowerView =>
    life > view.life ? { ...view, life, mergedVersion: -1, partsVersion: -1, parts: [] } : view

  /**
   * The follower acknowledged heartbeat `seq` having granted `used` seats from its share: it
   * grants more only within the limit of that heartbeat or a later one.
   */
  const acked = (account: ShareAccount, seq: number, used: number): ShareAccount => {
    let first = 0
    while (first + 1 < account.sent.length && account.sent[first + 1]!.seq <= seq) first++
    return { ...account, used: Math.max(account.used, used), sent: account.sent.slice(first) }
  }

  /** Claim 40: the leader amends the pool record with a follower's record of distribution. */
  const receiveRecord = (
    state: State,
    from: string,
    message: Extract<Peer, { _tag: "Record" }>,
    _nowMs: number,
    outputs: Array<Output>,
  ): State => {
    const leader = state.leaderState
    if (state.role !== "leader" || leader === undefined) return state
    const known = leader.followers[from]
    if (known === undefined || message.life < known.life) return state
    const view = newLife(known, message.life)
    if (message.part >= message.parts || message.parts > Math.ceil(clientsMax / partSize) + 1)
      return state
    // An older record than the one merged is stale (versions grow, also across restarts).
    if (message.version <= view.mergedVersion && view.parts.length === 0) return state
    if (message.version < view.mergedVersion) return state
    const parts =
      message.version === view.partsVersion && view.parts.length > 0
        ? [...view.parts]
        : new Array(message.parts).fill(undefined)
    if (parts.length !== message.parts) return state
    parts[message.part] = message.allocations
    if (parts.some((part) => part === undefined)) {
      return {
        ...state,
        leaderState: {
          ...leader,
          followers: {
            ...leader.followers,
            [from]: { ...view, partsVersion: message.version, parts },
          },
        },
      }
    }
    // Complete: replace what was known at this follower by its record, except seats reserved
    // for it that its record does not show yet (the record may have left before it granted
    // them; `Unused` drops one it will not grant).
    const inRecord = new Set<string>()
    for (const part of parts as Array<ReadonlyArray<Message.Allocation>>)
      for (const allocation of part) inRecord.add(allocation.client)
    let pool = HashMap.map(
      HashMap.filter(
        leader.pool,
        (entry) => entry.server !== from || (!entry.seen && !inRecord.has(entry.client)),
      ),
      (entry) => {
        // Its record counts what it granted from its share now (`shareUsed`).
        const counted = entry.sharedBy === from ? { ...entry, sharedBy: undefined } : entry
        // What is left of this follower's is a reservation its record passed over.
        return counted.server === from ? { ...counted, passedOver: true } : counted
      },
    )
    let count = 0
    for (const part of parts as Array<ReadonlyArray<Message.Allocation>>) {
      for (const allocation of part) {
        count++
        pool = HashMap.set(pool, poolKey(from, allocation.client), {
          server: from,
          client: allocation.client,
          seen: true,
          seats: allocation.seats,
          grantedAtMs: allocation.grantedAtMs,
          expiresAtMs: allocation.expiresAtMs,
        })
      }
    }
    outputs.push(
      M.emit<Event>({
        _tag: "RecordMerged",
        server: from,
        version: message.version,
        allocations: count,
      }),
    )
    return {
      ...state,
      leaderState: {
        ...ctx.withPool(state, leader, pool),
        followers: {
          ...leader.followers,
          [from]: {
            ...view,
            mergedVersion: message.version,
            partsVersion: message.version,
            parts: [],
            // What it granted from its share is in this record now, counted as allocations.
            share:
              view.share.life === message.life
                ? { ...view.share, consumed: Math.max(view.share.consumed, message.shareUsed) }
                : {
                    life: message.life,
                    limit: message.shareUsed,
                    consumed: message.shareUsed,
                    used: message.shareUsed,
                    sent: [],
                  },
          },
        },
      },
    }
  }
  return {
    sendHeartbeats,
    endingSoon,
    expirePool,
    newLife,
    acked,
    receiveRecord,
  }
}
