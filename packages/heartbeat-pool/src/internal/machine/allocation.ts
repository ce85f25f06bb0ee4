/**
 * Allocation: whether seats fit in the license (shares counted), the leader's decision, grants,
 * and a request from a client at any server.
 */
import { Machine as M } from "@understudy/machine"
import { HashMap, Option } from "effect"
import type { Event, Held, State } from "../../Machine.ts"
import type * as Message from "../../Message.ts"
import type { Ctx, Output } from "./context.ts"
import {
  capacityAt,
  poolKey,
  poolSeatsInUse,
  seatsCounted,
  shareLeft,
  sharesOutstanding,
} from "./counting.ts"

type Peer = Message.Peer

/**
 * Seats that do not fit only because followers hold them as shares (perhaps unused: the
 * leader sees a grant from one only in the follower's next record) are no reason to refuse:
 * the leader takes the shares back and answers `Wait` (a follower's `Reserve`:
 * `WaitForShares`, which it passes on to its client as `Wait`); the client asks again at the
 * hint and is granted once the followers acknowledged the lower shares.
 */
export const awaitShares = "await-shares"

export const allocation = (
  ctx: Ctx,
): Pick<
  Ctx,
  | "reclaimShares"
  | "onRefusal"
  | "waitForSharesMs"
  | "reserve"
  | "grant"
  | "licenseProblem"
  | "request"
  | "shareNow"
> => {
  const { servers, heartbeatIntervalMs, leaseMs, clientsMax, seatsMax } = ctx
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
    if (state.role !== "leader" || leader === undefined || !ctx.hasAuthority(state, nowMs))
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
    return ctx.setPool(
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
    const token = ctx.tokenFor(state, client, seats, nowMs)
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
    ctx.reply(outputs, client, {
      _tag: "Granted",
      server: state.self,
      term: state.durable.term,
      seq,
      token,
      expiresAtMs: held.expiresAtMs,
      leaders: [...servers],
      reattached,
    })
    return ctx.hold(state, held)
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
    if (seats < 1 || seats > seatsMax) return "too-many-seats"
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
      ctx.deny(state, outputs, client, seq, problem)
      return state
    }
    if (!HashMap.has(state.record, client) && HashMap.size(state.record) >= clientsMax) {
      ctx.deny(state, outputs, client, seq, "too-many-clients")
      return state
    }
    if (state.role === "leader") {
      const decided = decide(state, state.self, client, seats, nowMs, reattach, heldAt)
      if (decided === awaitShares) {
        ctx.reply(outputs, client, {
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
        ctx.deny(state, outputs, client, seq, decided)
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
      const asked = ctx.askLeader(state, outputs, client, seq, seats, nowMs, false, undefined)
      if (asked === "queue-full") {
        ctx.deny(state, outputs, client, seq, "queue-full")
        return state
      }
      return asked
    }
    ctx.deny(state, outputs, client, seq, "electing")
    return state
  }

  /** What `Status` reports as this server's share. */
  const shareNow = (state: State, nowMs: number): number => {
    const leader = state.leaderState
    if (state.role !== "leader" || leader === undefined) return shareLeft(state, nowMs)
    if (!ctx.hasAuthority(state, nowMs) || nowMs < leader.settleUntilMs) return 0
    const committed =
      poolSeatsInUse(state, nowMs, leaseMs) + sharesOutstanding(state, nowMs, leaseMs)
    return Math.max(0, capacityAt(state, nowMs) - committed)
  }
  return {
    reclaimShares,
    onRefusal,
    waitForSharesMs,
    reserve,
    grant,
    licenseProblem,
    request,
    shareNow,
  }
}
