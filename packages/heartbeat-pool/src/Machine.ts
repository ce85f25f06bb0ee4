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
 * This module holds the machine's types, its configuration check and `make`; the steps are in
 * `internal/machine/`, one part per concept: `step` (the tick, and peer messages routed by
 * term and tag), `election` (roles, check-then-stand, becoming leader), `leader` (heartbeats,
 * shares, record merge), `follower` (its record, `Reserve` and the answers, carried clients),
 * `allocation` (fits, the leader's decision, grants, requests), `record` (this server's
 * record and the leader's tally), `clients` (client and admin messages), and `counting` (the
 * pure counts, re-exported here). `context` holds what they share.
 *
 * @since 0.1.0
 */
import { Machine as M } from "@understudy/machine"
import { HashMap, Schema } from "effect"
import { defaultLimits } from "./internal/defaultLimits.ts"
import { allocation } from "./internal/machine/allocation.ts"
import { clients } from "./internal/machine/clients.ts"
import {
  type Ctx,
  electionTimer,
  helpers,
  type Output,
  type Settings,
  tickTimer,
} from "./internal/machine/context.ts"
import { noStoredChanges } from "./internal/machine/counting.ts"
import { election } from "./internal/machine/election.ts"
import { follower } from "./internal/machine/follower.ts"
import { leader } from "./internal/machine/leader.ts"
import { record } from "./internal/machine/record.ts"
import { step } from "./internal/machine/step.ts"
import type * as Message from "./Message.ts"

export { electionTimer, termMax, tickTimer } from "./internal/machine/context.ts"
export {
  capacityAt,
  poolKey,
  poolRecord,
  poolSeatsInUse,
  seatsCounted,
  seatsHeld,
  shareLeft,
  shareOutstanding,
  sharesOutstanding,
  storedChangesKept,
  storedSince,
  tallyOf,
} from "./internal/machine/counting.ts"

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
  /**
   * Not seen, and a record of that server merged after the reservation did not show it either:
   * that record may have left before the grant, but a seat it never grants (its `Unused`
   * lost) is no longer counted for as long as the server lives (`countsUntil`).
   */
  readonly passedOver?: boolean | undefined
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
  const { servers, heartbeatIntervalMs, leaseMs } = config
  const settings: Settings = {
    servers,
    heartbeatIntervalMs,
    followerTimeoutMs: config.followerTimeoutMs,
    checkTimeoutMs: config.checkTimeoutMs,
    leaderLeaseMs: config.leaderLeaseMs,
    downAfterMs: config.downAfterMs,
    electionStaggerMs: config.electionStaggerMs,
    leaseMs,
    crypto: config.crypto,
    tokenTtlMs: config.tokenTtlMs ?? 4 * leaseMs,
    clientsMax: config.clientsPerServerMax ?? defaultLimits.clientsPerServerMax,
    seatsMax: config.seatsPerClientMax ?? defaultLimits.seatsPerClientMax,
    pendingMax: config.pendingReservationsMax ?? defaultLimits.pendingReservationsMax,
    partSize: config.recordPartSize ?? 100,
    shareMax: config.shareSeatsMax ?? defaultLimits.shareSeatsMax,
    majority: Math.floor(servers.length / 2) + 1,
    known: new Set(servers),
    priority: new Map(servers.map((server, index) => [server, index])),
  }
  // The parts call each other through the context, filled in before any step runs.
  const ctx = { ...settings } as Ctx
  for (const part of [helpers, record, election, leader, follower, allocation, clients, step])
    Object.assign(ctx, part(ctx))

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
          if (input.timer === tickTimer) return ctx.tick(state, input.nowMs)
          if (input.timer === electionTimer) {
            const outputs: Array<Output> = []
            return M.result(
              ctx.stand({ ...state, electionPending: false }, input.nowMs, outputs),
              outputs,
            )
          }
          return M.result(state)
        case "Receive":
          return ctx.receive(state, input.from, input.message, input.nowMs)
        case "Command":
          return ctx.fromClient(state, input.command.from, input.command.message, input.nowMs)
      }
    },
  }
  return machine
}
