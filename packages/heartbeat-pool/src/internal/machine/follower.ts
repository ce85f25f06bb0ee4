/**
 * A follower: its record sent to the leader, its clients' requests asked of the leader (`Reserve`)
 * and the answers, and clients carried for a server that died (claim 9).
 */
import { Machine as M } from "@understudy/machine"
import { HashMap, Option } from "effect"
import type { Event, Held, State } from "../../Machine.ts"
import type * as Message from "../../Message.ts"
import type { Ctx, Output } from "./context.ts"

type Peer = Message.Peer

export const follower = (
  ctx: Ctx,
): Pick<
  Ctx,
  | "sendRecord"
  | "reserved"
  | "waitForShares"
  | "askLeader"
  | "carry"
  | "countedByLeader"
  | "heldAtOf"
> => {
  const { servers, checkTimeoutMs, leaseMs, clientsMax, pendingMax, partSize } = ctx
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

  /**
   * The request pending here that `from`'s answer about `client` answers: only a follower's,
   * only from its leader, only for the seats it asked; undefined when the answer is not for it.
   */
  const pendingAnswered = (state: State, from: string, client: string, seats: number) => {
    const waiting = HashMap.get(state.pending, client)
    return state.role === "follower" &&
      state.leader === from &&
      Option.isSome(waiting) &&
      waiting.value.seats === seats
      ? waiting.value
      : undefined
  }

  const reserved = (
    state: State,
    from: string,
    message: Extract<Peer, { _tag: "Reserved" }>,
    nowMs: number,
    outputs: Array<Output>,
  ): State => {
    const waiting = pendingAnswered(state, from, message.client, message.seats)
    const usable = waiting !== undefined
    // A duplicate answer for a client granted already changes nothing.
    if (HashMap.has(state.record, message.client) && !usable) return state
    if (!usable || !ctx.hasAuthority(state, nowMs)) {
      if (usable) ctx.deny(state, outputs, message.client, waiting.seq, "electing")
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
    const seq = waiting.seq
    const next = { ...state, pending: HashMap.remove(state.pending, message.client) }
    if (message.refused !== null) {
      ctx.deny(next, outputs, message.client, seq, message.refused)
      return next
    }
    return ctx.grant(
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
    const waiting = pendingAnswered(state, from, message.client, message.seats)
    if (waiting === undefined) return state
    // A carried client had its answer (to its heartbeat): only a requester waits for one.
    if (!HashMap.has(state.record, message.client))
      ctx.reply(outputs, message.client, {
        _tag: "Wait",
        server: state.self,
        client: message.client,
        term: state.durable.term,
        seq: waiting.seq,
        retryAfterMs: message.retryAfterMs,
      })
    return { ...state, pending: HashMap.remove(state.pending, message.client) }
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
    if (Option.isNone(waiting) && HashMap.size(state.pending) >= pendingMax) return "queue-full"
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
    if (HashMap.size(state.record) >= clientsMax) {
      ctx.deny(state, outputs, client, seq, "too-many-clients")
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
    ctx.reply(outputs, client, {
      _tag: "Granted",
      server: state.self,
      term: state.durable.term,
      seq,
      token,
      expiresAtMs: held.expiresAtMs,
      leaders: [...servers],
      reattached: true,
    })
    const next = ctx.hold(state, held)
    const asked = ctx.hasAuthority(next, nowMs)
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
  return { sendRecord, reserved, waitForShares, askLeader, carry, countedByLeader, heldAtOf }
}
