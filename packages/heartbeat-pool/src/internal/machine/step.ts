/**
 * The machine's inputs routed: the periodic tick, and a peer message checked for its term once,
 * then dispatched to the role that handles it.
 */
import { Machine as M } from "@understudy/machine"
import { HashMap, Option } from "effect"
import type { Event, FollowerView, State } from "../../Machine.ts"
import type * as Message from "../../Message.ts"
import { awaitShares } from "./allocation.ts"
import { type Ctx, type Output, type Step, termMax, tickTimer } from "./context.ts"
import { poolKey, seatsHeld } from "./counting.ts"

type Peer = Message.Peer

export const step = (ctx: Ctx): Pick<Ctx, "tick" | "receive"> => {
  const {
    heartbeatIntervalMs,
    followerTimeoutMs,
    checkTimeoutMs,
    leaderLeaseMs,
    downAfterMs,
    majority,
    known,
    priority,
  } = ctx
  const tick = (state: State, nowMs: number): Step => {
    const outputs: Array<Output> = [M.setTimer(tickTimer, heartbeatIntervalMs)]
    let next = ctx.expire(state, nowMs, outputs)
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
        leaderState: ctx.withPool(next, { ...leader, followers }, ctx.expirePool(leader, nowMs)),
      }
      next = {
        ...next,
        leaderState: { ...next.leaderState!, endingSoon: ctx.endingSoon(next, nowMs) },
      }
      // Without a majority for a whole follower time-out, a new leader may exist: step down.
      if (
        ctx.leaseUntil(next.leaderState!, nowMs) + (followerTimeoutMs - leaderLeaseMs) <= nowMs &&
        nowMs - leader.electedAtMs >= followerTimeoutMs
      ) {
        return M.result(ctx.becomeFollower(next, undefined, nowMs, outputs, "no-majority"), outputs)
      }
      return M.result(ctx.sendHeartbeats(next, nowMs, outputs), outputs)
    }
    if (next.role === "candidate" || next.electionPending) return M.result(next, outputs)
    // Follower (claim 22): missed heartbeats, then a check message, then an election.
    if (next.checkSentMs !== undefined) {
      if (nowMs - next.checkSentMs >= checkTimeoutMs) next = ctx.scheduleElection(next, outputs)
    } else if (nowMs - next.lastLeaderHeardMs >= followerTimeoutMs) {
      if (next.leader === undefined) next = ctx.scheduleElection(next, outputs)
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
        (state.role === "leader" && ctx.hasAuthority(state, nowMs)) ||
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
      next = ctx.becomeFollower(
        next,
        message._tag === "Heartbeat" ? from : undefined,
        nowMs,
        outputs,
      )
      next = ctx.setDurable(next, { term: message.term, votedFor: null })
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
            ? ctx.becomeFollower(state, from, nowMs, outputs)
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
        if (message.wantRecord) ctx.sendRecord(next, from, outputs)
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
        const view = ctx.newLife(known, message.life)
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
              ? ctx.acked(view.share, message.seq, message.shareUsed)
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
          next = ctx.setDurable(state, { votedFor: from })
        }
        outputs.push(M.send<Peer>(from, { _tag: "Vote", term, granted }))
        // A split vote: a server lower in the priority list stands for this term too (its
        // stagger was eaten, by a stall or a late check), so neither may win it. It may not vote
        // in the term it stood for, but it will in the next: stand for it at once rather than
        // wait out the retry, in which the same split may repeat the other way round. Only the
        // higher of the two does, so they cannot keep outbidding each other.
        if (state.role === "candidate" && priority.get(from)! > priority.get(state.self)!)
          return ctx.stand(next, nowMs, outputs)
        return next
      }
      case "Vote": {
        if (state.role !== "candidate" || !message.granted || state.votes.includes(from))
          return state
        const next = { ...state, votes: [...state.votes, from] }
        return next.votes.length >= majority ? ctx.becomeLeader(next, nowMs, outputs) : next
      }
      case "Record":
        return ctx.receiveRecord(state, from, message, nowMs, outputs)
      case "Reserve": {
        const decided = ctx.reserve(state, from, message, nowMs)
        if (decided === awaitShares) {
          outputs.push(
            M.send<Peer>(from, {
              _tag: "WaitForShares",
              term,
              client: message.client,
              seats: message.seats,
              retryAfterMs: ctx.waitForSharesMs(state, nowMs),
            }),
          )
          return ctx.reclaimShares(state, nowMs)
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
        return refused === null ? (decided as State) : ctx.onRefusal(state, refused, nowMs)
      }
      case "Reserved":
        return ctx.reserved(state, from, message, nowMs, outputs)
      case "WaitForShares":
        return ctx.waitForShares(state, from, message, outputs)
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
        return ctx.setPool(state, key, message.client, undefined)
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
        return ctx.offerLicense(state, from, message.license, outputs).state
      case "Newer":
        return state // the term check above already adopted it
    }
  }
  return { tick, receive }
}
