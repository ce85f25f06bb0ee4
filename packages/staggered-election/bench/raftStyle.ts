/**
 * A Raft-style election as a pure machine, for the failover benchmark's comparison: the same
 * detection as the staggered election (each follower inquires of its leader every
 * `detectionPeriodMs`; an inquiry unanswered within `inquiryTimeoutMs` means the leader
 * failed), then Raft's election instead of the staggered one: a randomised election
 * time-out in `[T, 2T]`, `RequestVote` to every peer, one vote per term, a majority of the
 * configured group wins, a split vote times out and retries in a later term. The winner
 * tells everyone with one `Announce` (Raft's first empty AppendEntries).
 *
 * Only the election is modelled: no log (so no "up-to-date" check on votes) and no pre-vote
 * or leader stickiness, as in the basic algorithm of the Raft paper (§5.2).
 *
 * Randomness comes in through the configuration: `seed` seeds a small PRNG per node whose
 * state lives in the machine state, so the same seed gives the same run (the machine stays
 * pure).
 *
 * @since 0.1.0
 */
import { Machine as M } from "@understudy/machine"

/** @since 0.1.0 @category models */
export interface Config {
  readonly nodes: ReadonlyArray<string>
  readonly detectionPeriodMs: number
  readonly inquiryTimeoutMs: number
  /** `T`: the election time-out is drawn uniformly from `[T, 2T]`. */
  readonly electionTimeoutMs: number
  readonly seed: number
}

/** @since 0.1.0 @category models */
export type Message =
  | { readonly _tag: "Probe"; readonly term: number; readonly seq: number }
  | {
      readonly _tag: "ProbeReply"
      readonly term: number
      readonly seq: number
      readonly leader: boolean
    }
  | { readonly _tag: "RequestVote"; readonly term: number }
  | { readonly _tag: "Vote"; readonly term: number; readonly granted: boolean }
  | { readonly _tag: "Announce"; readonly term: number }

/** The messages of the election proper (not of detection). @since 0.1.0 @category models */
export const electionTags: ReadonlySet<Message["_tag"]> = new Set([
  "RequestVote",
  "Vote",
  "Announce",
])

/** @since 0.1.0 @category models */
export type Event =
  | { readonly _tag: "Detected"; readonly failed: string | undefined }
  | { readonly _tag: "Candidate"; readonly term: number }
  | { readonly _tag: "Leader"; readonly term: number }

/** @since 0.1.0 @category models */
export interface State {
  readonly self: string
  readonly role: "follower" | "candidate" | "leader"
  readonly term: number
  readonly leader: string | undefined
  readonly votedFor: string | undefined
  readonly votes: ReadonlyArray<string>
  readonly probeSeq: number
  readonly inquiry: number | undefined
  /** The PRNG's state (mulberry32). */
  readonly random: number
}

/** @since 0.1.0 @category timers */
export const detectTimer = "detect"
const inquiryTimer = "inquiry"
const electionTimer = "election"

const hash = (text: string, seed: number): number => {
  let h = (seed ^ 0x9e3779b9) >>> 0
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0
  return h
}

/** One mulberry32 draw: the next PRNG state and a number in [0, 1). */
const draw = (random: number): readonly [number, number] => {
  const next = (random + 0x6d2b79f5) >>> 0
  let t = next
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return [next, ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296]
}

/**
 * The machine of one node.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (config: Config): M.Machine<State, Message, never, Event> => {
  const { detectionPeriodMs, inquiryTimeoutMs, electionTimeoutMs } = config
  const majority = Math.floor(config.nodes.length / 2) + 1
  type Output = M.Output<Message, Event>

  /** Arms the election timer at a fresh random time-out in [T, 2T]. */
  const armElection = (state: State, outputs: Array<Output>): State => {
    const [random, u] = draw(state.random)
    outputs.push(M.setTimer(electionTimer, electionTimeoutMs + Math.floor(u * electionTimeoutMs)))
    return { ...state, random }
  }

  /** A newer term: follow nobody yet, vote for nobody yet, and keep an election pending. */
  const adoptTerm = (state: State, term: number, outputs: Array<Output>): State => {
    const wasFollowing = state.role === "follower" && state.leader !== undefined
    const next: State = {
      ...state,
      role: "follower",
      term,
      leader: undefined,
      votedFor: undefined,
      votes: [],
      inquiry: undefined,
    }
    if (wasFollowing || state.role === "leader") {
      outputs.push(M.cancelTimer(inquiryTimer))
      return armElection(next, outputs)
    }
    return next
  }

  const follow = (state: State, leader: string, term: number, outputs: Array<Output>): State => {
    outputs.push(M.cancelTimer(electionTimer), M.cancelTimer(inquiryTimer))
    return {
      ...state,
      role: "follower",
      term,
      leader,
      votedFor: state.term === term ? state.votedFor : undefined,
      votes: [],
      inquiry: undefined,
    }
  }

  const init = (context: M.Context): M.Result<State, Message, Event> => {
    const outputs: Array<Output> = [M.setTimer(detectTimer, detectionPeriodMs)]
    const state: State = {
      self: context.self,
      role: "follower",
      term: 0,
      leader: undefined,
      votedFor: undefined,
      votes: [],
      probeSeq: 0,
      inquiry: undefined,
      random: hash(context.self, config.seed + context.nowMs),
    }
    return M.result(armElection(state, outputs), outputs)
  }

  const onReceive = (
    state: State,
    from: string,
    message: Message,
  ): M.Result<State, Message, Event> => {
    const outputs: Array<Output> = []
    let next = state
    if (message.term > next.term) next = adoptTerm(next, message.term, outputs)
    switch (message._tag) {
      case "Probe":
        outputs.push(
          M.send<Message>(from, {
            _tag: "ProbeReply",
            term: next.term,
            seq: message.seq,
            leader: next.role === "leader",
          }),
        )
        break
      case "ProbeReply":
        if (
          next.role === "follower" &&
          next.leader === from &&
          message.leader &&
          message.term === next.term &&
          next.inquiry !== undefined &&
          message.seq >= next.inquiry
        ) {
          outputs.push(M.cancelTimer(inquiryTimer))
          next = { ...next, inquiry: undefined }
        }
        break
      case "RequestVote": {
        const granted =
          message.term === next.term &&
          next.role !== "leader" &&
          (next.votedFor === undefined || next.votedFor === from)
        if (granted) {
          // Raft resets the election time-out on granting a vote.
          next = armElection({ ...next, votedFor: from }, outputs)
        }
        outputs.push(M.send<Message>(from, { _tag: "Vote", term: next.term, granted }))
        break
      }
      case "Vote":
        if (
          next.role === "candidate" &&
          message.term === next.term &&
          message.granted &&
          !next.votes.includes(from)
        ) {
          const votes = [...next.votes, from]
          next = { ...next, votes }
          if (votes.length >= majority) {
            outputs.push(
              M.cancelTimer(electionTimer),
              M.broadcast<Message>({ _tag: "Announce", term: next.term }),
              M.emit<Event>({ _tag: "Leader", term: next.term }),
            )
            next = { ...next, role: "leader", leader: next.self }
          }
        }
        break
      case "Announce":
        if (message.term === next.term && next.role !== "leader") {
          next = follow(next, from, message.term, outputs)
        }
        break
    }
    return M.result(next, outputs)
  }

  const step = (state: State, input: M.Input<Message, never>): M.Result<State, Message, Event> => {
    switch (input._tag) {
      case "Receive":
        return onReceive(state, input.from, input.message)
      case "Command":
        return M.result(state)
      case "TimerFired": {
        const outputs: Array<Output> = []
        switch (input.timer) {
          case detectTimer: {
            outputs.push(M.setTimer(detectTimer, detectionPeriodMs))
            if (state.role !== "follower" || state.leader === undefined) {
              return M.result(state, outputs)
            }
            const seq = state.probeSeq + 1
            outputs.push(M.send<Message>(state.leader, { _tag: "Probe", term: state.term, seq }))
            if (state.inquiry !== undefined) return M.result({ ...state, probeSeq: seq }, outputs)
            outputs.push(M.setTimer(inquiryTimer, inquiryTimeoutMs))
            return M.result({ ...state, probeSeq: seq, inquiry: seq }, outputs)
          }
          case inquiryTimer: {
            if (state.role !== "follower" || state.inquiry === undefined) return M.result(state)
            outputs.push(M.emit<Event>({ _tag: "Detected", failed: state.leader }))
            const next = armElection({ ...state, leader: undefined, inquiry: undefined }, outputs)
            return M.result(next, outputs)
          }
          case electionTimer: {
            if (state.role === "leader" || state.leader !== undefined) return M.result(state)
            const term = state.term + 1
            outputs.push(
              M.broadcast<Message>({ _tag: "RequestVote", term }),
              M.emit<Event>({ _tag: "Candidate", term }),
            )
            const next = armElection(
              { ...state, role: "candidate", term, votedFor: state.self, votes: [state.self] },
              outputs,
            )
            return M.result(next, outputs)
          }
          default:
            return M.result(state)
        }
      }
    }
  }

  return { init, step }
}
