/**
 * The client of the pool as a pure `Machine`: it requests seats, heartbeats the server that
 * authorised it, and detects that server's death (or loss of authority) from missed or
 * unrenewed heartbeat replies (the source document's claim 7). It then walks the leader
 * priority list it got with its authorisation (claims 26, 34) and heartbeats the next server,
 * which, never having authorised it, turns the heartbeat into a request (claims 8–9). Every
 * reply names the message it answers (`seq`): one that answers an older message than a reply
 * already acted on is stale (a late `Denied` overtaken by a `Granted`) and is ignored. A
 * `Wait` (the seats fit once the leader has taken its followers' shares back) is asked again
 * at its hint, neither a miss nor a refusal. The application sees `Granted`, `Reattached`,
 * `Lost` and `Denied` events.
 *
 * @since 0.1.0
 */
import { Machine as M } from "@understudy/machine"
import type * as Message from "./Message.ts"

type Reply = Message.ServerReply
type Request = Message.ClientRequest

/** @since 0.1.0 @category models */
export interface Config {
  /** The servers to try first, in leader priority order (replaced by the list of a grant). */
  readonly servers: ReadonlyArray<string>
  readonly product: string
  readonly seats: number
  readonly heartbeatIntervalMs: number
  /** Replies missed in a row before the server counts as gone. Default 3. */
  readonly missLimit?: number
  /**
   * The longest wait for a reply before the message is sent again (default the interval: a
   * server whose replies came late may be given up to `missLimit` intervals).
   */
  readonly retryIntervalMs?: number
  /**
   * The shortest wait for a reply (default a sixth of the interval). Between the two, the
   * wait follows the replies' round-trip times as TCP's retransmission timer does (smoothed
   * time plus four deviations), so a dead server is noticed within `missLimit` short waits
   * while a slow one, whose replies come late, is given longer ones.
   */
  readonly minRetryIntervalMs?: number
  /** Where in `servers` to start (spreads clients over the pool). Default 0. */
  readonly firstServer?: number
}

/** @since 0.1.0 @category models */
export type Phase = "requesting" | "holding" | "reattaching" | "released"

/** @since 0.1.0 @category models */
export interface State {
  readonly self: string
  readonly phase: Phase
  /** Where requests and heartbeats go now. */
  readonly target: string
  /** The server that authorised the seat held (or last held). */
  readonly server: string | undefined
  readonly list: ReadonlyArray<string>
  readonly token: Message.Token | undefined
  readonly leaseUntilMs: number
  readonly term: number
  readonly seq: number
  /** The `seq` the latest reply acted on answered: a reply to an older message is stale. */
  readonly answered: number
  /** Heartbeats or requests sent since the last renewing reply. */
  readonly missed: number
  /** Send times of the latest messages (at most `missLimit + 1`), for round-trip times. */
  readonly sentAt: ReadonlyArray<{ readonly seq: number; readonly atMs: number }>
  /** Smoothed round-trip time of replies and its mean deviation (undefined: no reply yet). */
  readonly srttMs: number | undefined
  readonly rttVarMs: number
  /** When the wait for the last message's reply ends (undefined: answered, not waiting). */
  readonly waitUntilMs: number | undefined
  /** The wait was extended once already because this client itself ran late. */
  readonly graced: boolean
  /** Walks made on an `Unreachable` report since the last reply (bounded by the list). */
  readonly unreachableWalks: number
  readonly lastDenied: Message.DenyReason | undefined
}

/**
 * `Release`: the application gives its seats back. `Unreachable`: the driver heard that
 * `server`'s port is closed (an ICMP port unreachable: its process is gone, its host is up).
 *
 * @since 0.1.0
 * @category commands
 */
export type Command =
  | { readonly _tag: "Release" }
  | { readonly _tag: "Unreachable"; readonly server: string }

/** @since 0.1.0 @category events */
export type Event =
  | {
      readonly _tag: "Granted"
      readonly server: string
      readonly term: number
      readonly atMs: number
    }
  | {
      readonly _tag: "Reattached"
      readonly server: string
      readonly previous: string | undefined
      readonly term: number
      readonly atMs: number
    }
  | {
      readonly _tag: "Lost"
      readonly server: string | undefined
      /** The term of the last answer about the seat (the refusal's, when refused). */
      readonly term: number
      readonly reason: "expired" | "refused"
      readonly atMs: number
    }
  | {
      readonly _tag: "Denied"
      readonly server: string
      readonly term: number
      readonly reason: Message.DenyReason
      readonly atMs: number
    }
  | { readonly _tag: "Released"; readonly server: string | undefined; readonly atMs: number }

/** @since 0.1.0 @category models */
export type Client = M.Machine<State, Reply, Command, Event>

/** @since 0.1.0 @category timers */
export const beatTimer = "beat"

/**
 * The server after `after` in the priority list `list` (the first when `after` is not in
 * it): where a walk goes.
 *
 * @since 0.1.0
 * @category getters
 */
export const nextServer = (list: ReadonlyArray<string>, after: string): string => {
  const index = list.indexOf(after)
  return list[(index + 1) % list.length] ?? after
}

/** True while the client holds an unexpired seat. @since 0.1.0 @category getters */
export const holds = (state: State, nowMs: number): boolean =>
  (state.phase === "holding" || state.phase === "reattaching") && state.leaseUntilMs > nowMs

/**
 * The client machine. Its peers are the servers; it sends `ClientRequest`s and receives
 * `ServerReply`s.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (config: Config): M.Machine<State, Reply | Request, Command, Event> => {
  const missLimit = config.missLimit ?? 3
  const retryIntervalMs = config.retryIntervalMs ?? config.heartbeatIntervalMs
  /** The pace of asking again a server that answers without renewing (it waits for a leader). */
  const refusedRetryMs = Math.min(retryIntervalMs, config.heartbeatIntervalMs / 2)
  const minRetryIntervalMs = Math.min(
    retryIntervalMs,
    config.minRetryIntervalMs ?? config.heartbeatIntervalMs / 6,
  )
  /** Lease left below which an honouring (not renewing) server is walked past. */
  const walkMarginMs = (missLimit + 1) * config.heartbeatIntervalMs
  /**
   * The longest a `Wait` holds the client back: a server's hint is advice, and no longer than
   * the walk past a dead one would take.
   */
  const waitMaxMs = missLimit * retryIntervalMs
  type Output = M.Output<Reply | Request, Event>

  /** How long to wait for the reply to a message: RFC 6298's timer within the bounds. */
  const replyTimeout = (state: State): number =>
    state.srttMs === undefined
      ? retryIntervalMs
      : Math.min(retryIntervalMs, Math.max(minRetryIntervalMs, state.srttMs + 4 * state.rttVarMs))

  /**
   * A reply from the server asked: its round trip updates the estimate (a late reply, to a
   * message already given up on, lengthens the next waits: the back-off for a slow server),
   * and the timer is set for the next heartbeat, the retry pace, or a `Wait`'s hint (ms).
   */
  const answered = (
    state: State,
    seq: number,
    nowMs: number,
    outputs: Array<Output>,
    next: "beat" | "retry" | number,
  ): State => {
    const sent = state.sentAt.find((entry) => entry.seq === seq)
    let { srttMs, rttVarMs } = state
    if (sent !== undefined) {
      const sample = nowMs - sent.atMs
      if (srttMs === undefined) {
        srttMs = sample
        rttVarMs = sample / 2
      } else {
        rttVarMs = 0.75 * rttVarMs + 0.25 * Math.abs(srttMs - sample)
        srttMs = 0.875 * srttMs + 0.125 * sample
      }
    }
    // The next heartbeat an interval after the one answered; a retry at the retry pace.
    const afterMs =
      typeof next === "number"
        ? next
        : next === "retry"
          ? refusedRetryMs
          : Math.max(0, (sent?.atMs ?? nowMs) + config.heartbeatIntervalMs - nowMs)
    outputs.push(M.setTimer(beatTimer, afterMs))
    return { ...state, srttMs, rttVarMs, waitUntilMs: undefined, unreachableWalks: 0 }
  }

  const send = (state: State, outputs: Array<Output>, nowMs: number): State => {
    const seq = state.seq + 1
    if (state.phase === "requesting") {
      outputs.push(
        M.send<Request>(state.target, {
          _tag: "Request",
          client: state.self,
          seq,
          product: config.product,
          seats: config.seats,
        }),
      )
    } else if (state.token !== undefined) {
      outputs.push(
        M.send<Request>(state.target, {
          _tag: "Beat",
          client: state.self,
          seq,
          token: state.token,
          leaseUntilMs: state.leaseUntilMs,
        }),
      )
    }
    const sentAt = [...state.sentAt, { seq, atMs: nowMs }]
    if (sentAt.length > missLimit + 1) sentAt.shift()
    const waitMs = replyTimeout(state)
    outputs.push(M.setTimer(beatTimer, waitMs))
    return {
      ...state,
      seq,
      missed: state.missed + 1,
      sentAt,
      waitUntilMs: nowMs + waitMs,
      graced: false,
    }
  }

  const lose = (
    state: State,
    nowMs: number,
    reason: "expired" | "refused",
    outputs: Array<Output>,
  ): State => {
    outputs.push(
      M.emit<Event>({ _tag: "Lost", server: state.server, term: state.term, reason, atMs: nowMs }),
    )
    return {
      ...state,
      phase: "requesting",
      token: undefined,
      leaseUntilMs: 0,
      missed: 0,
      lastDenied: undefined,
      target: state.list[0] ?? state.target,
    }
  }

  const beat = (state: State, nowMs: number): M.Result<State, Reply | Request, Event> => {
    if (state.phase === "released") return M.result(state)
    // Either the next heartbeat is due, or the last message's reply did not come in time: sent
    // again (the timer is then the wait for its reply).
    const outputs: Array<Output> = []
    // The timer came late: this process was stalled (a loaded machine), and a reply that came
    // meanwhile may be waiting behind the timer. Not evidence against the server: one more
    // short wait, once per message, before it counts as missed.
    if (
      state.waitUntilMs !== undefined &&
      !state.graced &&
      nowMs - state.waitUntilMs > minRetryIntervalMs / 2
    ) {
      outputs.push(M.setTimer(beatTimer, minRetryIntervalMs))
      return M.result({ ...state, graced: true }, outputs)
    }
    let current = state
    if (
      (current.phase === "holding" || current.phase === "reattaching") &&
      current.leaseUntilMs <= nowMs
    ) {
      current = lose(current, nowMs, "expired", outputs)
    }
    // The server is gone or cannot renew: walk the priority list.
    if (current.missed >= missLimit) current = walk(current)
    return M.result(send(current, outputs, nowMs), outputs)
  }

  /** Walks the priority list past the current target (claims 26, 34). */
  const walk = (state: State): State => ({
    ...state,
    phase: state.phase === "holding" ? "reattaching" : state.phase,
    target: nextServer(state.list, state.target),
    missed: 0,
    sentAt: [],
  })

  /**
   * The server asked is known dead (its port is closed): no need to wait `missLimit` times
   * for replies that cannot come, walk on now. A stopped or cut-off server sends no such
   * report and keeps the timed path. Once per other server of the list between replies, so a
   * pool that is all down is asked at the timed pace, not in a loop of reports.
   */
  const unreachable = (
    state: State,
    server: string,
    nowMs: number,
  ): M.Result<State, Reply | Request, Event> => {
    if (server !== state.target || state.unreachableWalks >= state.list.length - 1)
      return M.result(state)
    const outputs: Array<Output> = []
    const walked = { ...walk(state), unreachableWalks: state.unreachableWalks + 1 }
    return M.result(send(walked, outputs, nowMs), outputs)
  }

  const receive = (
    state: State,
    from: string,
    reply: Reply,
    nowMs: number,
  ): M.Result<State, Reply | Request, Event> => {
    const outputs: Array<Output> = []
    if (state.phase === "released") return M.result(state)
    switch (reply._tag) {
      case "Granted": {
        if (reply.token.client !== state.self || reply.seq < state.answered) return M.result(state)
        // A repeated answer from the server that holds the seat: nothing new happened.
        const repeated = state.phase === "holding" && state.server === from
        const moved = state.phase !== "requesting"
        if (!repeated) {
          outputs.push(
            M.emit<Event>(
              moved
                ? {
                    _tag: "Reattached",
                    server: from,
                    previous: state.server,
                    term: reply.term,
                    atMs: nowMs,
                  }
                : { _tag: "Granted", server: from, term: reply.term, atMs: nowMs },
            ),
          )
        }
        const next = answered(state, reply.seq, nowMs, outputs, "beat")
        return M.result(
          {
            ...next,
            phase: "holding",
            target: from,
            server: from,
            list: reply.leaders.length > 0 ? reply.leaders : state.list,
            token: reply.token,
            leaseUntilMs: reply.expiresAtMs,
            term: reply.term,
            answered: reply.seq,
            missed: 0,
            lastDenied: undefined,
          },
          outputs,
        )
      }
      case "BeatAck": {
        // A lease already over is lost; the next beat says so.
        if (
          from !== state.target ||
          reply.client !== state.self ||
          reply.seq < state.answered ||
          state.phase === "requesting" ||
          state.leaseUntilMs <= nowMs
        ) {
          return M.result(state)
        }
        // Honoured, not renewed (the server waits for a leader): it holds this client, so
        // stay while the lease lasts; near its end, count it as missed so that a server cut
        // off from the leader is walked past.
        if (!reply.extended && state.leaseUntilMs - nowMs <= walkMarginMs) {
          const next = answered(state, reply.seq, nowMs, outputs, "retry")
          return M.result(next, outputs)
        }
        // Another server that still held this client answers: the client moved there.
        const moved = state.server !== from
        const next = answered(state, reply.seq, nowMs, outputs, "beat")
        return M.result(
          {
            ...next,
            phase: "holding",
            server: from,
            leaseUntilMs: reply.extended
              ? Math.max(state.leaseUntilMs, reply.expiresAtMs)
              : state.leaseUntilMs,
            token: reply.token ?? state.token,
            term: reply.term,
            answered: reply.seq,
            missed: 0,
          },
          moved
            ? [
                ...outputs,
                M.emit<Event>({
                  _tag: "Reattached",
                  server: from,
                  previous: state.server,
                  term: reply.term,
                  atMs: nowMs,
                }),
              ]
            : outputs,
        )
      }
      case "Denied": {
        if (from !== state.target || reply.client !== state.self || reply.seq < state.answered)
          return M.result(state)
        // A seat held is not lost to "electing" (a server waiting for its leader): asked again
        // at the retry pace, walked past after `missLimit` of them.
        if (state.phase !== "requesting" && reply.reason === "electing")
          return M.result(answered(state, reply.seq, nowMs, outputs, "retry"), outputs)
        if (reply.reason !== state.lastDenied) {
          outputs.push(
            M.emit<Event>({
              _tag: "Denied",
              server: from,
              term: reply.term,
              reason: reply.reason,
              atMs: nowMs,
            }),
          )
        }
        // "electing" keeps counting as missed: a server cut off from the leader is walked past
        // (asked again at the retry pace); after any other refusal, asked again an interval on.
        let current: State = {
          ...answered(
            state,
            reply.seq,
            nowMs,
            outputs,
            reply.reason === "electing" ? "retry" : "beat",
          ),
          term: reply.term,
          answered: reply.seq,
          lastDenied: reply.reason,
          missed: reply.reason === "electing" ? state.missed : 0,
        }
        if (current.phase !== "requesting") current = lose(current, nowMs, "refused", outputs)
        return M.result({ ...current, lastDenied: reply.reason }, outputs)
      }
      case "Wait": {
        // The server is there and the seats fit: ask it again at its hint, not walked past.
        if (from !== state.target || reply.client !== state.self || reply.seq < state.answered)
          return M.result(state)
        const afterMs = Math.min(waitMaxMs, Math.max(minRetryIntervalMs, reply.retryAfterMs))
        const next = answered(state, reply.seq, nowMs, outputs, afterMs)
        return M.result({ ...next, answered: reply.seq, missed: 0 }, outputs)
      }
      case "Released":
      case "PublishReply":
      case "StatusReply":
        return M.result(state)
    }
  }

  return {
    init: (context) => {
      const list = config.servers.length > 0 ? config.servers : context.peers
      const first = list[(config.firstServer ?? 0) % list.length]!
      const state: State = {
        self: context.self,
        phase: "requesting",
        target: first,
        server: undefined,
        list,
        token: undefined,
        leaseUntilMs: 0,
        term: 0,
        seq: 0,
        answered: 0,
        missed: 0,
        sentAt: [],
        srttMs: undefined,
        rttVarMs: 0,
        waitUntilMs: undefined,
        graced: false,
        unreachableWalks: 0,
        lastDenied: undefined,
      }
      const outputs: Array<Output> = []
      return M.result(send(state, outputs, context.nowMs), outputs)
    },
    step: (state, input) => {
      switch (input._tag) {
        case "TimerFired":
          return input.timer === beatTimer ? beat(state, input.nowMs) : M.result(state)
        case "Receive":
          if ("_tag" in input.message && isReply(input.message)) {
            return receive(state, input.from, input.message, input.nowMs)
          }
          return M.result(state)
        case "Command": {
          if (state.phase === "released") return M.result(state)
          if (input.command._tag === "Unreachable")
            return unreachable(state, input.command.server, input.nowMs)
          const outputs: Array<Output> = [M.cancelTimer(beatTimer)]
          if (state.server !== undefined && state.phase !== "requesting") {
            outputs.push(
              M.send<Request>(state.server, {
                _tag: "Release",
                client: state.self,
                seq: state.seq + 1,
              }),
            )
          }
          outputs.push(M.emit<Event>({ _tag: "Released", server: state.server, atMs: input.nowMs }))
          return M.result(
            { ...state, phase: "released", seq: state.seq + 1, leaseUntilMs: 0 },
            outputs,
          )
        }
      }
    },
  }
}

const replyTags = new Set([
  "Granted",
  "BeatAck",
  "Denied",
  "Wait",
  "Released",
  "PublishReply",
  "StatusReply",
])
const isReply = (message: Reply | Request): message is Reply => replyTags.has(message._tag)
