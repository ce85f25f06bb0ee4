/**
 * A pool of license servers (or of any leased resource) as one pure `Machine`: a leader and
 * followers. The leader heartbeats every follower and marks one down when its acknowledgement
 * stops coming (the source document's claim 21); a follower that misses the leader's
 * heartbeats first sends a check message and starts an election only if that goes unanswered
 * (claim 22); candidates stand in leader-priority-list order among the live servers (a lower
 * rank waits less) and need a majority of votes. A new leader heartbeats the followers, which
 * send it their records of distribution; it merges them into the record of the pool
 * (claims 7, 23, 40).
 *
 * Allocations are leases: a client holds seats until `expiresAtMs` and renews them with its
 * heartbeats. The leader accounts for every seat, so the pool never hands out more seats than
 * the license has: a follower grants only within the share of free seats the leader gave it
 * (in its heartbeats), or asks the leader (`Reserve`). Shares are counted as used by the
 * leader until the follower's record shows what it granted from them; the leader takes them
 * back by lowering them (as free seats run out, when a request fits only in them, when a follower
 * is down), counting the old share until the follower acknowledged the lower one or could no
 * longer use it; an election ends every share (they belong to a term). Safety rests on
 * leases, all on one time base (servers' clocks are assumed synchronised far better than the
 * margins below):
 * - the leader grants and renews only while a majority acknowledged a heartbeat sent less than
 *   `leaderLeaseMs` ago; a follower refuses to vote while it heard a leader less than
 *   `followerTimeoutMs` ago (> `leaderLeaseMs`), so a new leader is elected only after the old
 *   one stopped granting;
 * - a follower renews its clients only until the `authorityUntilMs` of the leader's last
 *   heartbeat (the leader's lease end), so any lease a server of an older term handed out ends
 *   at most `leaseMs` after the new leader was elected;
 * - a new leader grants no new seat for `leaseMs` after its election (no new allocation during
 *   an election and its settling; existing ones are honoured until they expire). Meanwhile it
 *   takes back clients that prove, with their token and an unexpired lease, that they already
 *   held a seat (the heartbeat-to-request conversion of claim 9): they were counted before.
 *
 * Terms: every peer message carries the sender's term, checked once before dispatch: an older
 * one is ignored (and the sender told, `Newer`), one above `termMax` is refused, never adopted.
 * A deposed leader that hears a newer term becomes a follower.
 *
 * Durable state (`Durable`: term, vote, license, and the record's membership, `stored`)
 * must be written before the outputs of the step that changed it are performed; the driver
 * does that in the `Runner`'s `onStep` hook. A restarted server gets it back through
 * `Config.durable` and counts its restored allocations until they may have expired.
 *
 * @since 0.1.0
 */
import { Machine as M } from "@understudy/machine"
import { HashMap, Option, Schema } from "effect"
import { defaultLimits } from "./internal/defaultLimits.ts"
import type * as Message from "./Message.ts"

type Peer = Message.Peer
type ClientRequest = Message.ClientRequest
type ServerReply = Message.ServerReply

/**
 * Signing and checking of authorisation tokens and license files. Pure functions of their
 * input (Ed25519 signatures are deterministic), so they may be called inside `step`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Crypto {
  readonly signToken: (claims: Omit<Message.Token, "signature">) => string
  readonly verifyToken: (token: Message.Token) => boolean
  readonly verifyLicense: (license: Message.License) => boolean
}

/**
 * What survives a restart.
 *
 * @since 0.1.0
 * @category models
 */
export interface Durable {
  readonly term: number
  readonly votedFor: string | null
  readonly license: Message.License | null
}

/** What a restarted server gets back. @since 0.1.0 @category models */
export interface Restored extends Durable {
  readonly record: ReadonlyArray<Message.Allocation>
}

/**
 * The configuration, the same on every server (except `durable`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Config {
  /** Every server, in leader priority order. */
  readonly servers: ReadonlyArray<string>
  readonly heartbeatIntervalMs: number
  /** A follower that heard no heartbeat for this long sends a check message. */
  readonly followerTimeoutMs: number
  /** A check message unanswered for this long starts the election. */
  readonly checkTimeoutMs: number
  /** A leader grants only while a majority acknowledged a heartbeat sent less than this ago. */
  readonly leaderLeaseMs: number
  /** A follower whose acknowledgements stopped for this long is marked down. */
  readonly downAfterMs: number
  /** Each rank in the priority list waits this much longer before standing. */
  readonly electionStaggerMs: number
  /** How long an allocation lasts without a heartbeat. */
  readonly leaseMs: number
  /** How long a token proves an authorisation; renewed with heartbeats. Default 4 × leaseMs. */
  readonly tokenTtlMs?: number
  /** Most clients one server holds in its record. Default 10,000. */
  readonly clientsPerServerMax?: number
  /** Most seats one client may hold. Default 64. */
  readonly seatsPerClientMax?: number
  /** Most requests a follower has waiting for the leader's answer. Default 1,000. */
  readonly pendingReservationsMax?: number
  /** Most unused seats the leader hands one follower as its share. Default 16; 0: no shares. */
  readonly shareSeatsMax?: number
  /** Allocations per `Record` message. Default 100. */
  readonly recordPartSize?: number
  readonly crypto: Crypto
  /** The license a server starts with when it has none stored. */
  readonly initialLicense?: Message.License | null
  /** What this server stored before a restart, if anything. */
  readonly durable?: (self: string) => Restored | undefined
}

/**
 * The configuration is unusable.
 *
 * @since 0.1.0
 * @category errors
 */
export class PoolInvalidConfig extends Schema.TaggedError<PoolInvalidConfig>()(
  "PoolInvalidConfig",
  { reason: Schema.String },
) {
  override get message(): string {
    return `invalid heartbeat pool config: ${this.reason}`
  }
}

/** @since 0.1.0 @category models */
export type Role = "leader" | "follower" | "candidate"

/** An allocation held by this server, with the client's last heartbeat number. @since 0.1.0 @category models */
export interface Held extends Message.Allocation {
  readonly lastSeq: number
  /** The signature of the token last issued for it: presenting it needs no verification. */
  readonly tokenSignature: string
  /**
   * False for an allocation restored after a restart or carried for a client that re-attached
   * here: it is honoured until it expires, and renewed only once the leader counts it here
   * (it reserved it, or merged a record of this server that showed it).
   */
  readonly renewable: boolean
  /** The record's `version` once it held this allocation (it has held it since). */
  readonly addedAtVersion?: number | undefined
  /** A carried allocation: the server of this term whose token the client showed. */
  readonly heldAt?: string | undefined
  /** Granted on the leader's reservation of this time (`Reserved.reservedAtMs`). */
  readonly reservedAtMs?: number | undefined
}

/** An allocation the leader counts at another server. @since 0.1.0 @category models */
export interface Elsewhere {
  readonly server: string
  readonly client: string
  /** In a record the server sent; false: reserved by the leader and not seen there yet. */
  readonly seen: boolean
  readonly seats: number
  readonly grantedAtMs: number
  readonly expiresAtMs: number
  /**
   * The client re-attached here holding a seat this server granted from its share (its record
   * did not show it yet): that share counts the seat no more, until its next record does.
   */
  readonly sharedBy?: string | undefined
}

/** What the leader knows of one follower. @since 0.1.0 @category models */
export interface FollowerView {
  /** Send time of the latest heartbeat it acknowledged. */
  readonly ackedSentAtMs: number
  readonly lastAckMs: number
  readonly version: number
  /** The record version merged into the pool record (-1: none). */
  readonly mergedVersion: number
  readonly down: boolean
  /** The latest `authorityUntilMs` sent to it. */
  readonly authoritySentUntilMs: number
  /** Record parts being collected, for `partsVersion`. */
  readonly partsVersion: number
  readonly parts: ReadonlyArray<ReadonlyArray<Message.Allocation> | undefined>
  /** The follower's latest life (`HeartbeatAck.life`; 0: not heard yet). */
  readonly life: number
  readonly share: ShareAccount
}

/**
 * The leader's account of one follower's share, for one life of it: the seats it may grant
 * from it are `limit - consumed`, until it acknowledges a lower limit (`sent`).
 *
 * @since 0.1.0
 * @category models
 */
export interface ShareAccount {
  readonly life: number
  /** The limit in the latest heartbeats. */
  readonly limit: number
  /** `shareUsed` of the latest record merged: those grants are counted as allocations. */
  readonly consumed: number
  /** The highest `shareUsed` acknowledged: grants from the share, merged or not. */
  readonly used: number
  /**
   * Limits sent, as (first heartbeat carrying it, limit), not yet superseded by an
   * acknowledgement: the follower may be using any of them.
   */
  readonly sent: ReadonlyArray<{ readonly seq: number; readonly limit: number }>
}

/** @since 0.1.0 @category models */
export interface LeaderState {
  readonly electedAtMs: number
  /** No new allocation before this (only reattachments). */
  readonly settleUntilMs: number
  readonly seq: number
  /** Send times of recent heartbeats by sequence number. */
  readonly sentAt: ReadonlyArray<{ readonly seq: number; readonly atMs: number }>
  readonly followers: Readonly<Record<string, FollowerView>>
  /**
   * Allocations held at other servers, by server and client (`poolKey`): a client that moved
   * lingers in its old server's record until it expires there, and counts once meanwhile.
   */
  readonly pool: HashMap.HashMap<string, Elsewhere>
  /** `record` and `pool` summed up, kept with each change of them. */
  readonly tally: Tally
  /** A request was refused for capacity while shares were out: no shares until then. */
  readonly reclaimUntilMs: number
  /**
   * The clients with an allocation whose count ends by the next tick or the one after (as of
   * the last tick): at the edge of the capacity, what stopped counting since is looked for
   * among them only (`seatsCounted`).
   */
  readonly endingSoon: ReadonlyArray<string>
}

/**
 * The leader's running sums over its `record` and `pool`, kept with each change so that a
 * request is decided without counting every client: per client, the most seats any of its
 * allocations holds (here or at another server, expired or not: the periodic expiry drops
 * those), their sum, and per follower the seats of `pool` entries taken out of its share
 * (`sharedBy`). `total` is never below `poolSeatsInUse`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Tally {
  readonly seats: HashMap.HashMap<string, number>
  readonly total: number
  readonly moved: Readonly<Record<string, number>>
}

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

/**
 * One change of what must survive a restart: `client`'s allocation was added or dropped, and
 * `stored` became this. Newest first, each linked to the one before.
 *
 * @since 0.1.0
 * @category models
 */
export interface StoredChange {
  readonly stored: number
  readonly client: string
  readonly before: StoredChange | undefined
}

/**
 * The latest changes of `stored`, so a driver writes what changed rather than the record:
 * `recent` (at most `storedChangesKept`) and the `older` ones before them; beyond those they
 * are forgotten (the driver then writes the whole record).
 *
 * @since 0.1.0
 * @category models
 */
export interface StoredChanges {
  readonly recent: StoredChange | undefined
  readonly recentCount: number
  readonly older: StoredChange | undefined
}

/** @since 0.1.0 @category constants */
export const storedChangesKept = 4_096

const noStoredChanges: StoredChanges = { recent: undefined, recentCount: 0, older: undefined }

/** `changes` after `client`'s change made `stored` this. */
const storedChange = (changes: StoredChanges, stored: number, client: string): StoredChanges =>
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

/** @since 0.1.0 @category models */
export interface State {
  readonly self: string
  readonly role: Role
  readonly durable: Durable
  readonly leader: string | undefined
  readonly lastLeaderHeardMs: number
  /** When the pending check message went out. */
  readonly checkSentMs: number | undefined
  /** A follower's permission to renew leases, from the leader's heartbeat. */
  readonly authorityUntilMs: number
  readonly lastLeaderSeq: number
  /** The live servers as the last leader said. */
  readonly live: ReadonlyArray<string>
  /** This server's record of distribution. */
  readonly record: HashMap.HashMap<string, Held>
  /**
   * The seats of `record`, kept with each change of it (so a gauge reads it in O(1)): those
   * that expired count until the tick drops them, a heartbeat interval at most.
   */
  readonly recordSeats: number
  /** Changes with every change of the record's membership (what the leader fetches). */
  readonly version: number
  /**
   * Changes when what must survive a restart changes: a renewable allocation added, any
   * dropped. Not for a carried one (`carry`): it adds no seat, so a restart may forget it.
   */
  readonly stored: number
  /** The clients whose change made `stored` what it is now, for `storedSince`. */
  readonly storedChanges: StoredChanges
  /**
   * A follower's requests waiting for the leader, by client, with the client's latest `seq`
   * (what the answer names).
   */
  readonly pending: HashMap.HashMap<
    string,
    { readonly seats: number; readonly sentAtMs: number; readonly seq: number }
  >
  /** Names this run of the server (a restart forgets its share). */
  readonly life: number
  /**
   * The latest version of this server's record the leader of `term` said it merged (-1:
   * none): the leader counts what that record shows here.
   */
  readonly merged: { readonly term: number; readonly version: number }
  /** A follower's share from the leader of `term`: it may grant `limit - used` seats. */
  readonly share: { readonly term: number; readonly limit: number; readonly used: number }
  /** A candidate's votes. */
  readonly votes: ReadonlyArray<string>
  readonly electionPending: boolean
  readonly leaderState: LeaderState | undefined
}

/**
 * A client's message. The server gives those that arrived together to the runner together
 * (`commandAll`), so it writes the durable state once per step for all the grants among them
 * (one fsync, not one per grant, when many clients ask at once).
 *
 * @since 0.1.0
 * @category commands
 */
export type Command = {
  readonly _tag: "FromClient"
  readonly from: string
  readonly message: ClientRequest
}

/** @since 0.1.0 @category events */
export type Event =
  | { readonly _tag: "Reply"; readonly to: string; readonly message: ServerReply }
  | { readonly _tag: "BecameLeader"; readonly term: number }
  | {
      readonly _tag: "SteppedDown"
      readonly term: number
      readonly reason: "newer-term" | "no-majority"
    }
  | { readonly _tag: "FollowerDown"; readonly server: string; readonly term: number }
  | { readonly _tag: "FollowerUp"; readonly server: string; readonly term: number }
  | { readonly _tag: "CheckSent"; readonly leader: string; readonly term: number }
  | { readonly _tag: "LeaderConfirmed"; readonly leader: string; readonly term: number }
  | { readonly _tag: "ElectionStarted"; readonly term: number }
  | { readonly _tag: "Voted"; readonly candidate: string; readonly term: number }
  | {
      readonly _tag: "RecordMerged"
      readonly server: string
      readonly version: number
      readonly allocations: number
    }
  | {
      readonly _tag: "Allocated"
      readonly client: string
      readonly seats: number
      readonly term: number
      readonly reattached: boolean
      /** Granted by a follower from its share, without asking the leader. */
      readonly fromShare: boolean
      /** The time of the step that granted it (a line printed later still names it). */
      readonly atMs: number
    }
  | {
      /**
       * A client that proved its seat (a valid token, an unexpired lease) is honoured here
       * until that lease ends: no seat is added, and it is renewed only once the leader
       * counts it here (not a grant).
       */
      readonly _tag: "Carried"
      readonly client: string
      readonly seats: number
      readonly term: number
      readonly atMs: number
    }
  | { readonly _tag: "Released"; readonly client: string; readonly expired: boolean }
  | { readonly _tag: "Refused"; readonly client: string; readonly reason: Message.DenyReason }
  | { readonly _tag: "LicenseAdopted"; readonly sequence: number; readonly from: string }
  | {
      readonly _tag: "LicenseRefused"
      readonly sequence: number
      readonly from: string
      readonly reason: "bad-signature" | "not-newer"
    }
  | {
      readonly _tag: "Ignored"
      readonly from: string
      readonly reason:
        | "stale-term"
        | "bad-term"
        | "unknown-sender"
        | "leader-alive"
        | "replayed"
        | "bad-token"
        | "not-leader"
    }

/** @since 0.1.0 @category models */
export type Pool = M.Machine<State, Peer, Command, Event>

/** @since 0.1.0 @category timers */
export const tickTimer = "tick"
/** @since 0.1.0 @category timers */
export const electionTimer = "election"

/**
 * Terms beyond this are refused: a forged huge term would otherwise stop every election
 * (terms must grow). 2^32 elections is more than any pool will hold.
 *
 * @since 0.1.0
 * @category terms
 */
export const termMax = 2 ** 32

/**
 * Checks a configuration.
 *
 * @since 0.1.0
 * @category constructors
 */
export const validate = (
  config: Pick<
    Config,
    | "servers"
    | "heartbeatIntervalMs"
    | "followerTimeoutMs"
    | "checkTimeoutMs"
    | "leaderLeaseMs"
    | "downAfterMs"
    | "electionStaggerMs"
    | "leaseMs"
  >,
): PoolInvalidConfig | undefined => {
  const fail = (reason: string) => new PoolInvalidConfig({ reason })
  if (config.servers.length === 0) return fail("no servers")
  if (new Set(config.servers).size !== config.servers.length) return fail("duplicate server id")
  if (config.servers.length > 64) return fail("at most 64 servers")
  for (const [name, value] of Object.entries({
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    followerTimeoutMs: config.followerTimeoutMs,
    checkTimeoutMs: config.checkTimeoutMs,
    leaderLeaseMs: config.leaderLeaseMs,
    downAfterMs: config.downAfterMs,
    electionStaggerMs: config.electionStaggerMs,
    leaseMs: config.leaseMs,
  })) {
    if (!Number.isFinite(value) || value <= 0) return fail(`${name} must be positive, got ${value}`)
  }
  if (config.leaderLeaseMs >= config.followerTimeoutMs) {
    return fail("leaderLeaseMs must be below followerTimeoutMs (a deposed leader must stop first)")
  }
  if (config.heartbeatIntervalMs >= config.leaderLeaseMs) {
    return fail("heartbeatIntervalMs must be below leaderLeaseMs")
  }
  return undefined
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
const countingSeats = (state: State, client: string, nowMs: number, leaseMs: number): number => {
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
 * Until when the leader counts a seat held elsewhere. One its follower's record showed, for as
 * long as that follower may still renew it (its authority, and a lease past it). One the leader
 * reserved and no record showed yet, for the reservation's own lease only: a follower that
 * granted it shows it in its next record, well within a lease, while one granted and given
 * back between two records never shows up, and would otherwise hold the seat for ever.
 */
const countsUntil = (leader: LeaderState, entry: Elsewhere, leaseMs: number): number =>
  entry.seen
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

/**
 * The machine of one server. Throws `PoolInvalidConfig` for a configuration `validate`
 * rejects: a bad configuration is a programming error.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (config: Config): Pool => {
  const invalid = validate(config)
  if (invalid !== undefined) throw invalid
  const {
    servers,
    heartbeatIntervalMs,
    followerTimeoutMs,
    checkTimeoutMs,
    leaderLeaseMs,
    downAfterMs,
    electionStaggerMs,
    leaseMs,
    crypto,
  } = config
  const tokenTtlMs = config.tokenTtlMs ?? 4 * leaseMs
  const maxClients = config.clientsPerServerMax ?? defaultLimits.clientsPerServerMax
  const maxSeats = config.seatsPerClientMax ?? defaultLimits.seatsPerClientMax
  const maxPending = config.pendingReservationsMax ?? defaultLimits.pendingReservationsMax
  const partSize = config.recordPartSize ?? 100
  const maxShare = config.shareSeatsMax ?? defaultLimits.shareSeatsMax
  const majority = Math.floor(servers.length / 2) + 1
  const known = new Set(servers)
  /** Each server's place in the leader priority list (0 first). */
  const priority = new Map(servers.map((server, index) => [server, index]))

  type Output = M.Output<Peer, Event>
  type Step = M.Result<State, Peer, Event>

  const reply = (outputs: Array<Output>, to: string, message: ServerReply) =>
    outputs.push(M.emit<Event>({ _tag: "Reply", to, message }))

  /** Refuses the client's message `seq`. */
  const deny = (
    state: State,
    outputs: Array<Output>,
    client: string,
    seq: number,
    reason: Message.DenyReason,
  ) => {
    outputs.push(M.emit<Event>({ _tag: "Refused", client, reason }))
    reply(outputs, client, {
      _tag: "Denied",
      server: state.self,
      client,
      term: state.durable.term,
      seq,
      reason,
    })
  }

  const tokenFor = (state: State, client: string, seats: number, nowMs: number): Message.Token => {
    const claims = {
      client,
      server: state.self,
      term: state.durable.term,
      product: state.durable.license?.product ?? "",
      seats,
      validUntilMs: nowMs + tokenTtlMs,
    }
    return { ...claims, signature: crypto.signToken(claims) }
  }

  /** The leader's lease: until when a majority's acknowledgements let it grant. */
  const leaseUntil = (leader: LeaderState, nowMs: number): number => {
    const sent = [nowMs]
    for (const server in leader.followers) sent.push(leader.followers[server]!.ackedSentAtMs)
    sent.sort((a, b) => b - a)
    const start = sent[majority - 1]
    return start === undefined ? 0 : start + leaderLeaseMs
  }

  /** May this server renew (and a leader grant) now? */
  const hasAuthority = (state: State, nowMs: number): boolean =>
    state.role === "leader"
      ? state.leaderState !== undefined && leaseUntil(state.leaderState, nowMs) > nowMs
      : state.role === "follower" && state.authorityUntilMs > nowMs

  const liveServers = (state: State, nowMs: number): Array<string> => {
    const leader = state.leaderState
    if (leader === undefined) return [...servers]
    return servers.filter(
      (server) =>
        server === state.self ||
        (leader.followers[server] !== undefined &&
          !leader.followers[server]!.down &&
          nowMs - leader.followers[server]!.lastAckMs < downAfterMs),
    )
  }

  const setDurable = (state: State, changes: Partial<Durable>): State => ({
    ...state,
    durable: { ...state.durable, ...changes },
  })

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

  // ---- roles -------------------------------------------------------------------------------

  const becomeFollower = (
    state: State,
    leader: string | undefined,
    nowMs: number,
    outputs: Array<Output>,
    reason: "newer-term" | "no-majority" = "newer-term",
  ): State => {
    if (state.role === "leader") {
      outputs.push(M.emit<Event>({ _tag: "SteppedDown", term: state.durable.term, reason }))
    }
    if (state.role === "candidate" || state.electionPending)
      outputs.push(M.cancelTimer(electionTimer))
    return {
      ...state,
      role: "follower",
      leader,
      lastLeaderHeardMs: nowMs,
      checkSentMs: undefined,
      authorityUntilMs: leader === state.leader ? state.authorityUntilMs : 0,
      lastLeaderSeq: 0,
      votes: [],
      electionPending: false,
      leaderState: undefined,
      pending: leader === state.leader ? state.pending : HashMap.empty(),
    }
  }

  const rankAmongLive = (state: State, failed: string | undefined): number => {
    const candidates = (state.live.length > 0 ? state.live : servers).filter(
      (server) => server !== failed,
    )
    const rank = candidates.indexOf(state.self)
    return rank === -1 ? candidates.length : rank
  }

  /** The check went unanswered (or there was no leader): stand after our rank's delay. */
  const scheduleElection = (state: State, outputs: Array<Output>): State => {
    if (state.electionPending) return state
    const rank = rankAmongLive(state, state.leader)
    outputs.push(M.setTimer(electionTimer, rank * electionStaggerMs))
    return { ...state, electionPending: true, checkSentMs: undefined }
  }

  const stand = (state: State, nowMs: number, outputs: Array<Output>): State => {
    const term = state.durable.term + 1
    if (term > termMax) return state
    outputs.push(M.emit<Event>({ _tag: "ElectionStarted", term }))
    let next: State = {
      ...setDurable(state, { term, votedFor: state.self }),
      role: "candidate",
      leader: undefined,
      votes: [state.self],
      electionPending: true,
      authorityUntilMs: 0,
      pending: HashMap.empty(),
    }
    outputs.push(M.broadcast<Peer>({ _tag: "VoteRequest", term }))
    // Retry later if this term yields no leader (split vote, lost messages).
    outputs.push(
      M.setTimer(
        electionTimer,
        followerTimeoutMs + rankAmongLive(state, undefined) * electionStaggerMs,
      ),
    )
    if (next.votes.length >= majority) next = becomeLeader(next, nowMs, outputs)
    return next
  }

  const becomeLeader = (state: State, nowMs: number, outputs: Array<Output>): State => {
    const followers: Record<string, FollowerView> = {}
    for (const server of servers) {
      if (server === state.self) continue
      followers[server] = {
        ackedSentAtMs: 0,
        lastAckMs: nowMs,
        version: 0,
        mergedVersion: -1,
        down: false,
        authoritySentUntilMs: 0,
        partsVersion: -1,
        parts: [],
        life: 0,
        share: { life: 0, limit: 0, consumed: 0, used: 0, sent: [] },
      }
    }
    outputs.push(
      M.cancelTimer(electionTimer),
      M.emit<Event>({ _tag: "BecameLeader", term: state.durable.term }),
    )
    const next: State = {
      ...state,
      role: "leader",
      leader: state.self,
      votes: [],
      electionPending: false,
      pending: HashMap.empty(),
      leaderState: {
        electedAtMs: nowMs,
        settleUntilMs: nowMs + leaseMs,
        seq: 0,
        sentAt: [],
        followers,
        pool: HashMap.empty(),
        tally: tallyOf(state.record, HashMap.empty()),
        reclaimUntilMs: 0,
        endingSoon: [],
      },
    }
    // Claim 23: the new leader heartbeats the remaining followers at once.
    return sendHeartbeats(next, nowMs, outputs)
  }

  /** May the leader hand `view`'s follower a share now? */
  const shareable = (leader: LeaderState, view: FollowerView, nowMs: number, until: number) =>
    maxShare > 0 &&
    until > nowMs &&
    nowMs >= leader.settleUntilMs &&
    nowMs >= leader.reclaimUntilMs &&
    view.mergedVersion !== -1 &&
    !view.down &&
    view.life !== 0 &&
    view.share.life === view.life

  /**
   * The shares of this heartbeat: free seats split evenly between the leader and the
   * followers that may have one (at most `maxShare` each); a share only grows into seats no
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
      maxShare,
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
    const until = leaseUntil(leader, nowMs)
    const live = liveServers(state, nowMs)
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

  // ---- the periodic tick: heartbeats, failure detection, expiry ------------------------------

  const tick = (state: State, nowMs: number): Step => {
    const outputs: Array<Output> = [M.setTimer(tickTimer, heartbeatIntervalMs)]
    let next = expire(state, nowMs, outputs)
    if (next.role === "leader") {
      const leader = next.leaderState!
      // Claim 21: a follower whose acknowledgements stopped is marked down.
      let followers = leader.followers
      for (const server in followers) {
        const view = followers[server]!
        const down = nowMs - view.lastAckMs >= downAfterMs
        if (down !== view.down) {
          outputs.push(
            M.emit<Event>({
              _tag: down ? "FollowerDown" : "FollowerUp",
              server,
              term: next.durable.term,
            }),
          )
          followers = { ...followers, [server]: { ...view, down } }
        }
      }
      next = {
        ...next,
        leaderState: withPool(next, { ...leader, followers }, expirePool(leader, nowMs)),
      }
      next = { ...next, leaderState: { ...next.leaderState!, endingSoon: endingSoon(next, nowMs) } }
      // Without a majority for a whole follower time-out, a new leader may exist: step down.
      if (
        leaseUntil(next.leaderState!, nowMs) + (followerTimeoutMs - leaderLeaseMs) <= nowMs &&
        nowMs - leader.electedAtMs >= followerTimeoutMs
      ) {
        return M.result(becomeFollower(next, undefined, nowMs, outputs, "no-majority"), outputs)
      }
      return M.result(sendHeartbeats(next, nowMs, outputs), outputs)
    }
    if (next.role === "candidate" || next.electionPending) return M.result(next, outputs)
    // Follower (claim 22): missed heartbeats, then a check message, then an election.
    if (next.checkSentMs !== undefined) {
      if (nowMs - next.checkSentMs >= checkTimeoutMs) next = scheduleElection(next, outputs)
    } else if (nowMs - next.lastLeaderHeardMs >= followerTimeoutMs) {
      if (next.leader === undefined) next = scheduleElection(next, outputs)
      else {
        outputs.push(
          M.send<Peer>(next.leader, { _tag: "Check", term: next.durable.term }),
          M.emit<Event>({ _tag: "CheckSent", leader: next.leader, term: next.durable.term }),
        )
        next = { ...next, checkSentMs: nowMs }
      }
    }
    return M.result(next, outputs)
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

  // ---- peer messages ----------------------------------------------------------------------

  const receive = (state: State, from: string, message: Peer, nowMs: number): Step => {
    const outputs: Array<Output> = []
    const ignore = (reason: Extract<Event, { _tag: "Ignored" }>["reason"]) =>
      M.result(state, [M.emit<Event>({ _tag: "Ignored", from, reason })])
    if (!known.has(from) || from === state.self) return ignore("unknown-sender")
    // The term, checked once before dispatch.
    if (message.term > termMax) return ignore("bad-term")
    let next = state
    if (message._tag === "VoteRequest" && message.term > state.durable.term) {
      // A server that hears its leader does not help unseat it (nor adopts the term).
      const leaderAlive =
        (state.role === "leader" && hasAuthority(state, nowMs)) ||
        (state.role === "follower" &&
          state.leader !== undefined &&
          nowMs - state.lastLeaderHeardMs < followerTimeoutMs)
      if (leaderAlive) return ignore("leader-alive")
    }
    if (message.term < state.durable.term) {
      if (message._tag === "Newer" || message._tag === "Vote") return ignore("stale-term")
      return M.result(state, [
        M.emit<Event>({ _tag: "Ignored", from, reason: "stale-term" }),
        M.send<Peer>(from, { _tag: "Newer", term: state.durable.term }),
      ])
    }
    if (message.term > state.durable.term) {
      // Step down first, so `SteppedDown` names the term this server led.
      next = becomeFollower(next, message._tag === "Heartbeat" ? from : undefined, nowMs, outputs)
      next = setDurable(next, { term: message.term, votedFor: null })
    }
    const result = dispatch(next, from, message, nowMs, outputs)
    return M.result(result, outputs)
  }

  const dispatch = (
    state: State,
    from: string,
    message: Peer,
    nowMs: number,
    outputs: Array<Output>,
  ): State => {
    const term = state.durable.term
    switch (message._tag) {
      case "Heartbeat": {
        if (state.role === "leader") return state // two leaders in one term cannot happen
        let next =
          state.role === "candidate" || state.leader !== from || state.electionPending
            ? becomeFollower(state, from, nowMs, outputs)
            : state
        if (next.checkSentMs !== undefined)
          outputs.push(M.emit<Event>({ _tag: "LeaderConfirmed", leader: from, term }))
        next = { ...next, leader: from, lastLeaderHeardMs: nowMs, checkSentMs: undefined }
        if (message.seq > next.lastLeaderSeq || state.leader !== from) {
          next = {
            ...next,
            lastLeaderSeq: message.seq,
            authorityUntilMs: message.authorityUntilMs,
            live: message.live,
            // A share is for one term and one life of this server.
            share: {
              term,
              limit: message.shareLife === next.life ? message.shareLimit : 0,
              used: next.share.term === term ? next.share.used : 0,
            },
          }
        }
        outputs.push(
          M.send<Peer>(from, {
            _tag: "HeartbeatAck",
            term,
            seq: message.seq,
            version: next.version,
            used: seatsHeld(next, nowMs),
            sequence: next.durable.license?.sequence ?? 0,
            life: next.life,
            shareUsed: next.share.term === term ? next.share.used : 0,
          }),
        )
        // Merged versions only grow (a heartbeat may overtake a later one).
        if (message.merged !== null && message.merged.life === next.life) {
          const before = next.merged.term === term ? next.merged.version : -1
          next = { ...next, merged: { term, version: Math.max(before, message.merged.version) } }
        }
        if (message.wantRecord) sendRecord(next, from, outputs)
        if (message.sequence > (next.durable.license?.sequence ?? 0)) {
          outputs.push(M.send<Peer>(from, { _tag: "LicenseRequest", term }))
        }
        return next
      }
      case "HeartbeatAck": {
        const leader = state.leaderState
        if (state.role !== "leader" || leader === undefined) return state
        const known = leader.followers[from]
        if (known === undefined || message.life < known.life) return state
        const view = newLife(known, message.life)
        const sent = leader.sentAt.find((entry) => entry.seq === message.seq)
        if (view.down) outputs.push(M.emit<Event>({ _tag: "FollowerUp", server: from, term }))
        const updated: FollowerView = {
          ...view,
          ackedSentAtMs: Math.max(view.ackedSentAtMs, sent?.atMs ?? 0),
          lastAckMs: nowMs,
          version: message.version,
          down: false,
          share:
            view.share.life === message.life
              ? acked(view.share, message.seq, message.shareUsed)
              : view.share,
        }
        if (message.sequence > (state.durable.license?.sequence ?? 0)) {
          // Claims 10, 19: a server with a newer license file spreads it through the leader.
          outputs.push(M.send<Peer>(from, { _tag: "LicenseRequest", term }))
        }
        return {
          ...state,
          leaderState: { ...leader, followers: { ...leader.followers, [from]: updated } },
        }
      }
      case "Check": {
        if (state.role === "leader") outputs.push(M.send<Peer>(from, { _tag: "CheckReply", term }))
        return state
      }
      case "CheckReply": {
        if (state.role !== "follower" || state.leader !== from) return state
        outputs.push(M.emit<Event>({ _tag: "LeaderConfirmed", leader: from, term }))
        return { ...state, lastLeaderHeardMs: nowMs, checkSentMs: undefined }
      }
      case "VoteRequest": {
        const granted =
          state.role !== "leader" &&
          (state.durable.votedFor === null || state.durable.votedFor === from)
        let next = state
        if (granted) {
          outputs.push(M.emit<Event>({ _tag: "Voted", candidate: from, term }))
          next = setDurable(state, { votedFor: from })
        }
        outputs.push(M.send<Peer>(from, { _tag: "Vote", term, granted }))
        // A split vote: a server lower in the priority list stands for this term too (its
        // stagger was eaten, by a stall or a late check), so neither may win it. It may not vote
        // in the term it stood for, but it will in the next: stand for it at once rather than
        // wait out the retry, in which the same split may repeat the other way round. Only the
        // higher of the two does, so they cannot keep outbidding each other.
        if (state.role === "candidate" && priority.get(from)! > priority.get(state.self)!)
          return stand(next, nowMs, outputs)
        return next
      }
      case "Vote": {
        if (state.role !== "candidate" || !message.granted || state.votes.includes(from))
          return state
        const next = { ...state, votes: [...state.votes, from] }
        return next.votes.length >= majority ? becomeLeader(next, nowMs, outputs) : next
      }
      case "Record":
        return receiveRecord(state, from, message, nowMs, outputs)
      case "Reserve": {
        const decided = reserve(state, from, message, nowMs)
        if (decided === awaitShares) {
          outputs.push(
            M.send<Peer>(from, {
              _tag: "WaitForShares",
              term,
              client: message.client,
              seats: message.seats,
              retryAfterMs: waitForSharesMs(state, nowMs),
            }),
          )
          return reclaimShares(state, nowMs)
        }
        const refused = typeof decided === "string" ? decided : null
        outputs.push(
          M.send<Peer>(from, {
            _tag: "Reserved",
            term,
            client: message.client,
            seats: message.seats,
            refused,
            reservedAtMs: nowMs,
          }),
        )
        return refused === null ? (decided as State) : onRefusal(state, refused, nowMs)
      }
      case "Reserved":
        return reserved(state, from, message, nowMs, outputs)
      case "WaitForShares":
        return waitForShares(state, from, message, outputs)
      case "Unused": {
        const leader = state.leaderState
        if (leader === undefined) return state
        const key = poolKey(from, message.client)
        const entry = HashMap.get(leader.pool, key)
        if (Option.isNone(entry)) return state
        // Only that very reservation: a later one for the same client may have been used.
        if (
          entry.value.server !== from ||
          entry.value.seen ||
          entry.value.grantedAtMs !== message.reservedAtMs
        )
          return state
        return setPool(state, key, message.client, undefined)
      }
      case "LicenseRequest": {
        if (state.durable.license !== null) {
          outputs.push(
            M.send<Peer>(from, { _tag: "LicenseOffer", term, license: state.durable.license }),
          )
        }
        return state
      }
      case "LicenseOffer":
        return offerLicense(state, from, message.license, outputs).state
      case "Newer":
        return state // the term check above already adopted it
    }
  }

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

  const sendRecord = (state: State, to: string, outputs: Array<Output>) => {
    const allocations = Array.from(HashMap.values(state.record), (held) => ({
      client: held.client,
      seats: held.seats,
      grantedAtMs: held.grantedAtMs,
      expiresAtMs: held.expiresAtMs,
    }))
    const parts = Math.max(1, Math.ceil(allocations.length / partSize))
    for (let part = 0; part < parts; part++) {
      outputs.push(
        M.send<Peer>(to, {
          _tag: "Record",
          term: state.durable.term,
          version: state.version,
          life: state.life,
          shareUsed: state.share.term === state.durable.term ? state.share.used : 0,
          part,
          parts,
          allocations: allocations.slice(part * partSize, (part + 1) * partSize),
        }),
      )
    }
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
    if (message.part >= message.parts || message.parts > Math.ceil(maxClients / partSize) + 1)
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
      // Its record counts what it granted from its share now (`shareUsed`).
      (entry) => (entry.sharedBy === from ? { ...entry, sharedBy: undefined } : entry),
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
        ...withPool(state, leader, pool),
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

  // ---- allocation ---------------------------------------------------------------------------

  /**
   * Do `seats` more for `client` (`moved` of them out of a share already counted) fit in the
   * license? The tally is an upper bound of the seats in use (it still counts what expired
   * since the last tick): under it, they fit, decided in O(servers · log n). Only at the edge
   * of the capacity is what stopped counting since the last tick taken off, looked for among the
   * allocations the tick found ending soon (`seatsCounted`), not among all of them.
   */
  const fits = (
    state: State,
    client: string,
    seats: number,
    nowMs: number,
    moved: number,
  ): boolean => {
    const { tally } = state.leaderState!
    const capacity = capacityAt(state, nowMs)
    const shares = sharesOutstanding(state, nowMs, leaseMs)
    const others = tally.total - Option.getOrElse(HashMap.get(tally.seats, client), () => 0)
    if (others + shares + seats - moved <= capacity) return true
    return seatsCounted(state, nowMs, leaseMs, client) + shares + seats - moved <= capacity
  }

  /**
   * A client that shows a token of this term from a server whose record does not show it yet
   * holds a seat that server granted from its share: counted there, as share. How many of
   * its seats, if so.
   */
  const fromShare = (
    state: State,
    client: string,
    seats: number,
    nowMs: number,
    heldAt: string | undefined,
  ): number => {
    const leader = state.leaderState
    if (heldAt === undefined || leader?.followers[heldAt] === undefined) return 0
    if (HashMap.has(leader.pool, poolKey(heldAt, client))) return 0
    return Math.min(seats, sharesOutstanding(state, nowMs, leaseMs, heldAt))
  }

  /** Takes every share back: none for a lease, so the seats freed come to the leader. */
  const reclaimShares = (state: State, nowMs: number): State => {
    const leader = state.leaderState
    if (leader === undefined || sharesOutstanding(state, nowMs, leaseMs) === 0) return state
    return { ...state, leaderState: { ...leader, reclaimUntilMs: nowMs + leaseMs } }
  }

  /**
   * The leader refused `reason`: if seats are out as shares while a request waits, take them
   * back.
   */
  const onRefusal = (state: State, reason: Message.DenyReason, nowMs: number): State =>
    reason === "capacity" ? reclaimShares(state, nowMs) : state

  /**
   * Seats that do not fit only because followers hold them as shares (perhaps unused: the
   * leader sees a grant from one only in the follower's next record) are no reason to refuse:
   * the leader takes the shares back and answers `Wait` (a follower's `Reserve`:
   * `WaitForShares`, which it passes on to its client as `Wait`); the client asks again at the
   * hint and is granted once the followers acknowledged the lower shares.
   */
  const awaitShares = "await-shares"

  /**
   * The hint of a `Wait`: the lowered shares go out with the next heartbeat, and the
   * followers' acknowledgements come back within half an interval more.
   */
  const waitForSharesMs = (state: State, nowMs: number): number => {
    const sentAt = state.leaderState?.sentAt ?? []
    const lastMs = sentAt[sentAt.length - 1]?.atMs ?? nowMs
    return Math.max(0, lastMs + heartbeatIntervalMs - nowMs) + heartbeatIntervalMs / 2
  }

  /**
   * The leader decides a new allocation for `client` at `server`: the new state with the seat
   * counted, or false. `reattach`: the client proved it held a seat (allowed while settling).
   */
  const decide = (
    state: State,
    server: string,
    client: string,
    seats: number,
    nowMs: number,
    reattach: boolean,
    heldAt?: string,
  ): State | Message.DenyReason | typeof awaitShares => {
    const leader = state.leaderState
    if (state.role !== "leader" || leader === undefined || !hasAuthority(state, nowMs))
      return "electing"
    const alreadyThere = HashMap.has(leader.pool, poolKey(server, client))
    if (!reattach && !alreadyThere && nowMs < leader.settleUntilMs) return "electing"
    const moved = reattach ? fromShare(state, client, seats, nowMs, heldAt) : 0
    if (!fits(state, client, seats, nowMs, moved)) {
      // Without any share out (`moved` is part of them), would they fit?
      return seatsCounted(state, nowMs, leaseMs, client) + seats <= capacityAt(state, nowMs)
        ? awaitShares
        : "capacity"
    }
    if (server === state.self) {
      if (moved === 0) return state
      // Held here from now on: taken out of that server's share, as its record would. (Not
      // for a reservation at a follower, which may yet be `Unused`.)
      const view = leader.followers[heldAt!]!
      const share = { ...view.share, consumed: view.share.consumed + moved }
      const followers = { ...leader.followers, [heldAt!]: { ...view, share } }
      return { ...state, leaderState: { ...leader, followers } }
    }
    const key = poolKey(server, client)
    const known = HashMap.get(leader.pool, key)
    // Seen in that server's record already: it stays counted as such (an `Unused` for this
    // reservation must not drop what the record shows).
    return setPool(
      state,
      key,
      client,
      Option.isSome(known) && known.value.seen
        ? {
            ...known.value,
            seats: Math.max(seats, known.value.seats),
            expiresAtMs: Math.max(known.value.expiresAtMs, nowMs + leaseMs),
            sharedBy: moved > 0 ? heldAt : known.value.sharedBy,
          }
        : {
            server,
            client,
            seen: false,
            seats,
            grantedAtMs: nowMs,
            expiresAtMs: nowMs + leaseMs,
            sharedBy: moved > 0 ? heldAt : undefined,
          },
    )
  }

  const reserve = (
    state: State,
    from: string,
    message: Extract<Peer, { _tag: "Reserve" }>,
    nowMs: number,
  ): State | Message.DenyReason | typeof awaitShares => {
    const view = state.leaderState?.followers[from]
    // Only a follower whose record is merged: what it holds is counted.
    if (view === undefined || view.mergedVersion === -1) return "electing"
    const { client, seats, reattach, heldAt } = message
    return decide(state, from, client, seats, nowMs, reattach, heldAt ?? undefined)
  }

  const grant = (
    state: State,
    outputs: Array<Output>,
    client: string,
    seq: number,
    seats: number,
    nowMs: number,
    reattached: boolean,
    fromShare = false,
    reservedAtMs?: number,
  ): State => {
    const existing = HashMap.get(state.record, client)
    const token = tokenFor(state, client, seats, nowMs)
    const held: Held = {
      client,
      seats,
      grantedAtMs: Option.isSome(existing) ? existing.value.grantedAtMs : nowMs,
      expiresAtMs: nowMs + leaseMs,
      lastSeq: Option.isSome(existing) ? existing.value.lastSeq : 0,
      renewable: true,
      tokenSignature: token.signature,
      reservedAtMs,
    }
    outputs.push(
      M.emit<Event>({
        _tag: "Allocated",
        client,
        seats,
        term: state.durable.term,
        reattached,
        fromShare,
        atMs: nowMs,
      }),
    )
    reply(outputs, client, {
      _tag: "Granted",
      server: state.self,
      term: state.durable.term,
      seq,
      token,
      expiresAtMs: held.expiresAtMs,
      leaders: [...servers],
      reattached,
    })
    return hold(state, held)
  }

  const reserved = (
    state: State,
    from: string,
    message: Extract<Peer, { _tag: "Reserved" }>,
    nowMs: number,
    outputs: Array<Output>,
  ): State => {
    const waiting = HashMap.get(state.pending, message.client)
    const usable =
      state.role === "follower" &&
      state.leader === from &&
      Option.isSome(waiting) &&
      waiting.value.seats === message.seats
    // A duplicate answer for a client granted already changes nothing.
    if (HashMap.has(state.record, message.client) && !usable) return state
    if (!usable || !hasAuthority(state, nowMs)) {
      if (usable) deny(state, outputs, message.client, waiting.value.seq, "electing")
      // The leader counted a seat this server will not grant: say so, or it stays counted.
      if (message.refused === null) {
        outputs.push(
          M.send<Peer>(from, {
            _tag: "Unused",
            term: state.durable.term,
            client: message.client,
            reservedAtMs: message.reservedAtMs,
          }),
        )
        return { ...state, pending: HashMap.remove(state.pending, message.client) }
      }
      return state
    }
    const seq = waiting.value.seq
    const next = { ...state, pending: HashMap.remove(state.pending, message.client) }
    if (message.refused !== null) {
      deny(next, outputs, message.client, seq, message.refused)
      return next
    }
    return grant(
      next,
      outputs,
      message.client,
      seq,
      message.seats,
      nowMs,
      false,
      false,
      message.reservedAtMs,
    )
  }

  /**
   * The leader will have the seats once its shares are back: the waiting client is told when
   * to ask again (`Wait`), and forgotten here, so that its next message asks the leader at
   * once rather than a check time-out after this `Reserve`.
   */
  const waitForShares = (
    state: State,
    from: string,
    message: Extract<Peer, { _tag: "WaitForShares" }>,
    outputs: Array<Output>,
  ): State => {
    const waiting = HashMap.get(state.pending, message.client)
    if (
      state.role !== "follower" ||
      state.leader !== from ||
      Option.isNone(waiting) ||
      waiting.value.seats !== message.seats
    )
      return state
    // A carried client had its answer (to its heartbeat): only a requester waits for one.
    if (!HashMap.has(state.record, message.client))
      reply(outputs, message.client, {
        _tag: "Wait",
        server: state.self,
        client: message.client,
        term: state.durable.term,
        seq: waiting.value.seq,
        retryAfterMs: message.retryAfterMs,
      })
    return { ...state, pending: HashMap.remove(state.pending, message.client) }
  }

  const licenseProblem = (
    state: State,
    product: string,
    seats: number,
    nowMs: number,
  ): Message.DenyReason | undefined => {
    const license = state.durable.license
    if (license === null) return "no-license"
    if (license.expiresAtMs <= nowMs) return "license-expired"
    if (license.product !== product) return "wrong-product"
    if (seats < 1 || seats > maxSeats) return "too-many-seats"
    return undefined
  }

  /** A request for seats (or a stranger's heartbeat turned into one). */
  const request = (
    state: State,
    outputs: Array<Output>,
    client: string,
    seq: number,
    product: string,
    seats: number,
    nowMs: number,
    reattach: boolean,
    heldAt?: string,
  ): State => {
    const problem = licenseProblem(state, product, seats, nowMs)
    if (problem !== undefined) {
      deny(state, outputs, client, seq, problem)
      return state
    }
    if (!HashMap.has(state.record, client) && HashMap.size(state.record) >= maxClients) {
      deny(state, outputs, client, seq, "too-many-clients")
      return state
    }
    if (state.role === "leader") {
      const decided = decide(state, state.self, client, seats, nowMs, reattach, heldAt)
      if (decided === awaitShares) {
        reply(outputs, client, {
          _tag: "Wait",
          server: state.self,
          client,
          term: state.durable.term,
          seq,
          retryAfterMs: waitForSharesMs(state, nowMs),
        })
        return reclaimShares(state, nowMs)
      }
      if (typeof decided === "string") {
        deny(state, outputs, client, seq, decided)
        return onRefusal(state, decided, nowMs)
      }
      return grant(decided, outputs, client, seq, seats, nowMs, reattach)
    }
    if (shareLeft(state, nowMs) >= seats) {
      // Within the share the leader gave: counted there already, no need to ask (an answer
      // to an earlier question for this client is then a duplicate).
      const next = {
        ...state,
        pending: HashMap.remove(state.pending, client),
        share: { ...state.share, used: state.share.used + seats },
      }
      return grant(next, outputs, client, seq, seats, nowMs, false, true)
    }
    if (state.role === "follower" && state.leader !== undefined) {
      const asked = askLeader(state, outputs, client, seq, seats, nowMs, false, undefined)
      if (asked === "queue-full") {
        deny(state, outputs, client, seq, "queue-full")
        return state
      }
      return asked
    }
    deny(state, outputs, client, seq, "electing")
    return state
  }

  /**
   * A follower asks its leader to count `client` here (`Reserve`), at most once per check
   * time-out while the answer is awaited; the answer goes to the client's message `seq` (its
   * latest).
   */
  const askLeader = (
    state: State,
    outputs: Array<Output>,
    client: string,
    seq: number,
    seats: number,
    nowMs: number,
    reattach: boolean,
    heldAt: string | undefined,
  ): State | "queue-full" => {
    if (state.role !== "follower" || state.leader === undefined) return state
    const waiting = HashMap.get(state.pending, client)
    if (Option.isSome(waiting) && nowMs - waiting.value.sentAtMs < checkTimeoutMs)
      return { ...state, pending: HashMap.set(state.pending, client, { ...waiting.value, seq }) }
    if (Option.isNone(waiting) && HashMap.size(state.pending) >= maxPending) return "queue-full"
    outputs.push(
      M.send<Peer>(state.leader, {
        _tag: "Reserve",
        term: state.durable.term,
        client,
        seats,
        reattach,
        heldAt: heldAt ?? null,
      }),
    )
    return {
      ...state,
      pending: HashMap.set(state.pending, client, { seats, sentAtMs: nowMs, seq }),
    }
  }

  /**
   * A follower (or a candidate) takes in a client that proved it holds a seat counted
   * elsewhere, typically at a server that just died, without waiting for the leader or an
   * election: it adds no seat to the pool (the client held one, and the leader counts each
   * client once) and is honoured only until the lease the client already had ends, never
   * renewed here until the leader has counted it here (`Reserve` with `reattach`). This is
   * what makes a re-attachment take a few heartbeats rather than an election.
   */
  const carry = (
    state: State,
    outputs: Array<Output>,
    token: Message.Token,
    leaseUntilMs: number,
    seq: number,
    nowMs: number,
  ): State => {
    const client = token.client
    if (HashMap.size(state.record) >= maxClients) {
      deny(state, outputs, client, seq, "too-many-clients")
      return state
    }
    const held: Held = {
      client,
      seats: token.seats,
      grantedAtMs: nowMs,
      expiresAtMs: Math.min(leaseUntilMs, token.validUntilMs, nowMs + leaseMs),
      lastSeq: seq,
      tokenSignature: token.signature,
      renewable: false,
      heldAt: heldAtOf(state, token),
    }
    outputs.push(
      M.emit<Event>({
        _tag: "Carried",
        client,
        seats: held.seats,
        term: state.durable.term,
        atMs: nowMs,
      }),
    )
    reply(outputs, client, {
      _tag: "Granted",
      server: state.self,
      term: state.durable.term,
      seq,
      token,
      expiresAtMs: held.expiresAtMs,
      leaders: [...servers],
      reattached: true,
    })
    const next = hold(state, held)
    const asked = hasAuthority(next, nowMs)
      ? askLeader(next, outputs, client, seq, held.seats, nowMs, true, held.heldAt)
      : next
    return asked === "queue-full" ? next : asked
  }

  /**
   * A carried or restored allocation that the leader counts here: this server has held it
   * since before a record the leader of this term said it merged. (So a client that
   * re-attached here, before the election or after, is renewed once the leader merged a
   * record that shows it, without a `Reserve` round trip: a second failure soon after then
   * finds it renewed.)
   */
  const countedByLeader = (state: State, held: Held): boolean =>
    state.role === "follower" &&
    state.merged.term === state.durable.term &&
    held.addedAtVersion !== undefined &&
    held.addedAtVersion <= state.merged.version

  /** The server a token of this term names (another term's grants are no share of this one). */
  const heldAtOf = (state: State, token: Message.Token): string | undefined =>
    token.term === state.durable.term && token.server !== state.self ? token.server : undefined

  const beat = (
    state: State,
    outputs: Array<Output>,
    message: Extract<ClientRequest, { _tag: "Beat" }>,
    nowMs: number,
  ): State => {
    const { client, token } = message
    const ignore = (reason: Extract<Event, { _tag: "Ignored" }>["reason"]) => {
      outputs.push(M.emit<Event>({ _tag: "Ignored", from: client, reason }))
      return state
    }
    const held = HashMap.get(state.record, client)
    // An Ed25519 verification costs ~50 µs: a token this server issued is known already.
    const issuedHere = Option.isSome(held) && held.value.tokenSignature === token.signature
    if (
      token.client !== client ||
      token.term > termMax ||
      (!issuedHere && !crypto.verifyToken(token))
    ) {
      outputs.push(M.emit<Event>({ _tag: "Ignored", from: client, reason: "bad-token" }))
      deny(state, outputs, client, message.seq, "bad-token")
      return state
    }
    if (Option.isSome(held) && message.seq <= held.value.lastSeq) return ignore("replayed")
    if (Option.isSome(held) && (held.value.renewable || state.role !== "leader")) {
      const authority = hasAuthority(state, nowMs)
      // Only while unexpired: the leader counted it from its merge on, and before that it was
      // counted where the client held it, until the end of the lease it carried here.
      const counted =
        held.value.renewable ||
        (held.value.expiresAtMs > nowMs && countedByLeader(state, held.value))
      const renew = counted && authority && capacityAt(state, nowMs) > 0
      const expiresAtMs = renew ? nowMs + leaseMs : held.value.expiresAtMs
      const fresh =
        renew && token.validUntilMs - nowMs < tokenTtlMs / 2
          ? tokenFor(state, client, held.value.seats, nowMs)
          : null
      const updated = hold(state, {
        ...held.value,
        lastSeq: message.seq,
        expiresAtMs,
        renewable: held.value.renewable || renew,
        tokenSignature: fresh?.signature ?? held.value.tokenSignature,
      })
      // Carried or restored here, not yet counted here by the leader: ask it to.
      const asked =
        !counted && authority && held.value.expiresAtMs > nowMs
          ? askLeader(
              updated,
              outputs,
              client,
              message.seq,
              held.value.seats,
              nowMs,
              true,
              held.value.heldAt,
            )
          : updated
      const next = asked === "queue-full" ? updated : asked
      reply(outputs, client, {
        _tag: "BeatAck",
        server: state.self,
        client,
        term: state.durable.term,
        seq: message.seq,
        expiresAtMs,
        extended: renew,
        token: fresh,
      })
      return next
    }
    // Claim 9: a heartbeat from a client this server never authorised becomes a request. The
    // client proves it held a seat (valid token, unexpired lease): then it was counted, and may
    // come back even while a new leader settles.
    const proven = token.validUntilMs > nowMs && message.leaseUntilMs > nowMs
    if (
      proven &&
      state.role !== "leader" &&
      licenseProblem(state, token.product, token.seats, nowMs) === undefined
    )
      return carry(state, outputs, token, message.leaseUntilMs, message.seq, nowMs)
    const next = request(
      state,
      outputs,
      client,
      message.seq,
      token.product,
      token.seats,
      nowMs,
      proven,
      heldAtOf(state, token),
    )
    const now = HashMap.get(next.record, client)
    return Option.isSome(now) ? hold(next, { ...now.value, lastSeq: message.seq }) : next
  }

  const offerLicense = (
    state: State,
    from: string,
    license: Message.License,
    outputs: Array<Output>,
  ): { readonly state: State; readonly reason: "adopted" | "bad-signature" | "not-newer" } => {
    if (!crypto.verifyLicense(license)) {
      outputs.push(
        M.emit<Event>({
          _tag: "LicenseRefused",
          sequence: license.sequence,
          from,
          reason: "bad-signature",
        }),
      )
      return { state, reason: "bad-signature" }
    }
    if (license.sequence <= (state.durable.license?.sequence ?? -1)) {
      if (license.sequence < (state.durable.license?.sequence ?? -1)) {
        outputs.push(
          M.emit<Event>({
            _tag: "LicenseRefused",
            sequence: license.sequence,
            from,
            reason: "not-newer",
          }),
        )
      }
      return { state, reason: "not-newer" }
    }
    outputs.push(M.emit<Event>({ _tag: "LicenseAdopted", sequence: license.sequence, from }))
    return { state: setDurable(state, { license }), reason: "adopted" }
  }

  /** What `Status` reports as this server's share. */
  const shareNow = (state: State, nowMs: number): number => {
    const leader = state.leaderState
    if (state.role !== "leader" || leader === undefined) return shareLeft(state, nowMs)
    if (!hasAuthority(state, nowMs) || nowMs < leader.settleUntilMs) return 0
    const committed =
      poolSeatsInUse(state, nowMs, leaseMs) + sharesOutstanding(state, nowMs, leaseMs)
    return Math.max(0, capacityAt(state, nowMs) - committed)
  }

  const fromClient = (state: State, from: string, message: ClientRequest, nowMs: number): Step => {
    const outputs: Array<Output> = []
    switch (message._tag) {
      case "Request": {
        if (message.client !== from)
          return M.result(state, [
            M.emit<Event>({ _tag: "Ignored", from, reason: "unknown-sender" }),
          ])
        const held = HashMap.get(state.record, message.client)
        if (
          Option.isSome(held) &&
          held.value.renewable &&
          held.value.seats === message.seats &&
          held.value.expiresAtMs > nowMs
        ) {
          // A repeated request (its answer was lost): the same grant again.
          reply(outputs, from, {
            _tag: "Granted",
            server: state.self,
            term: state.durable.term,
            seq: message.seq,
            token: tokenFor(state, from, held.value.seats, nowMs),
            expiresAtMs: held.value.expiresAtMs,
            leaders: [...servers],
            reattached: false,
          })
          return M.result(state, outputs)
        }
        return M.result(
          request(state, outputs, from, message.seq, message.product, message.seats, nowMs, false),
          outputs,
        )
      }
      case "Beat":
        if (message.client !== from)
          return M.result(state, [
            M.emit<Event>({ _tag: "Ignored", from, reason: "unknown-sender" }),
          ])
        return M.result(beat(state, outputs, message, nowMs), outputs)
      case "Release": {
        const held = HashMap.get(state.record, from)
        if (message.client !== from || Option.isNone(held) || message.seq <= held.value.lastSeq)
          return M.result(state)
        outputs.push(M.emit<Event>({ _tag: "Released", client: from, expired: false }))
        reply(outputs, from, { _tag: "Released", server: state.self, client: from })
        // The leader counts a seat it reserved here until a record shows it, or for the
        // reservation's lease if none will: give it back at once (a record that showed it
        // drops it as soon as the leader merges the next one, and `Unused` is ignored then).
        const reservedAtMs = held.value.reservedAtMs
        if (state.role === "follower" && state.leader !== undefined && reservedAtMs !== undefined)
          outputs.push(
            M.send<Peer>(state.leader, {
              _tag: "Unused",
              term: state.durable.term,
              client: from,
              reservedAtMs,
            }),
          )
        return M.result(drop(state, from), outputs)
      }
      case "Publish": {
        const offered = offerLicense(state, from, message.license, outputs)
        reply(outputs, from, {
          _tag: "PublishReply",
          server: state.self,
          accepted: offered.reason === "adopted",
          reason: offered.reason,
          sequence: offered.state.durable.license?.sequence ?? 0,
        })
        return M.result(offered.state, outputs)
      }
      case "Status": {
        reply(outputs, from, {
          _tag: "StatusReply",
          server: state.self,
          role: state.role,
          term: state.durable.term,
          leader: state.leader ?? null,
          seatsInUse: seatsHeld(state, nowMs),
          clients: HashMap.size(state.record),
          poolSeatsInUse: state.role === "leader" ? poolSeatsInUse(state, nowMs, leaseMs) : null,
          capacity: capacityAt(state, nowMs),
          share: shareNow(state, nowMs),
          product: state.durable.license?.product ?? null,
          sequence: state.durable.license?.sequence ?? 0,
        })
        return M.result(state, outputs)
      }
    }
  }

  const machine: Pool = {
    init: (context) => {
      const restored = config.durable?.(context.self)
      let record = HashMap.empty<string, Held>()
      // Versions of different lives differ, so the leader fetches a restarted server's record.
      const version = Math.floor(context.nowMs) + (restored?.record.length ?? 0)
      // Restored allocations may have been renewed until the crash: count them a full lease.
      for (const allocation of restored?.record ?? []) {
        record = HashMap.set(record, allocation.client, {
          ...allocation,
          expiresAtMs: context.nowMs + leaseMs,
          lastSeq: 0,
          renewable: false,
          tokenSignature: "",
          addedAtVersion: version,
        })
      }
      let recordSeats = 0
      for (const held of HashMap.values(record)) recordSeats += held.seats
      const state: State = {
        self: context.self,
        role: "follower",
        durable: {
          term: restored?.term ?? 0,
          votedFor: restored?.votedFor ?? null,
          license: restored?.license ?? config.initialLicense ?? null,
        },
        leader: undefined,
        lastLeaderHeardMs: context.nowMs,
        checkSentMs: undefined,
        authorityUntilMs: 0,
        lastLeaderSeq: 0,
        live: [],
        record,
        recordSeats,
        version,
        stored: 0,
        storedChanges: noStoredChanges,
        pending: HashMap.empty(),
        life: Math.floor(context.nowMs) + 1,
        merged: { term: -1, version: -1 },
        share: { term: -1, limit: 0, used: 0 },
        votes: [],
        electionPending: false,
        leaderState: undefined,
      }
      return M.result(state, [M.setTimer(tickTimer, heartbeatIntervalMs)])
    },
    step: (state, input) => {
      switch (input._tag) {
        case "TimerFired":
          if (input.timer === tickTimer) return tick(state, input.nowMs)
          if (input.timer === electionTimer) {
            const outputs: Array<Output> = []
            return M.result(
              stand({ ...state, electionPending: false }, input.nowMs, outputs),
              outputs,
            )
          }
          return M.result(state)
        case "Receive":
          return receive(state, input.from, input.message, input.nowMs)
        case "Command":
          return fromClient(state, input.command.from, input.command.message, input.nowMs)
      }
    },
  }
  return machine
}
