/**
 * Roles and the election: stepping down to follower, standing after the rank's delay once the
 * check message went unanswered (claim 22), and becoming leader (claim 23).
 */
import { Machine as M } from "@understudy/machine"
import { HashMap } from "effect"
import type { Event, FollowerView, State } from "../../Machine.ts"
import type * as Message from "../../Message.ts"
import { type Ctx, electionTimer, type Output, termMax } from "./context.ts"
import { tallyOf } from "./counting.ts"

type Peer = Message.Peer

export const election = (
  ctx: Ctx,
): Pick<Ctx, "becomeFollower" | "scheduleElection" | "stand" | "becomeLeader"> => {
  const { servers, followerTimeoutMs, electionStaggerMs, leaseMs, majority } = ctx
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
      ...ctx.setDurable(state, { term, votedFor: state.self }),
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
    return ctx.sendHeartbeats(next, nowMs, outputs)
  }
  return { becomeFollower, scheduleElection, stand, becomeLeader }
}
