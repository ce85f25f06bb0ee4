/**
 * What the parts of one server's machine share: the configuration's settings, the timers,
 * and the small helpers they all call (replies, tokens, the leader's lease, authority). Each
 * part (`record`, `election`, `leader`, `follower`, `allocation`, `clients`, `step`) is a
 * function of the `Ctx` that returns its functions, and calls the other parts' through it.
 */
import { Machine as M } from "@understudy/machine"
import type { HashMap } from "effect"
import type {
  Config,
  Durable,
  Elsewhere,
  Event,
  FollowerView,
  Held,
  LeaderState,
  ShareAccount,
  State,
} from "../../Machine.ts"
import type * as Message from "../../Message.ts"
import type { awaitShares } from "./allocation.ts"

type Peer = Message.Peer
type ClientRequest = Message.ClientRequest
type ServerReply = Message.ServerReply

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

export type Output = M.Output<Peer, Event>
export type Step = M.Result<State, Peer, Event>

/** The configuration with its defaults applied, and what follows from it. */
export interface Settings
  extends Pick<
    Config,
    | "servers"
    | "heartbeatIntervalMs"
    | "followerTimeoutMs"
    | "checkTimeoutMs"
    | "leaderLeaseMs"
    | "downAfterMs"
    | "electionStaggerMs"
    | "leaseMs"
    | "crypto"
  > {
  readonly tokenTtlMs: number
  readonly clientsMax: number
  readonly seatsMax: number
  readonly pendingMax: number
  /** Allocations per `Record` message. */
  readonly partSize: number
  readonly shareMax: number
  readonly majority: number
  readonly known: ReadonlySet<string>
  /** Each server's place in the leader priority list (0 first). */
  readonly priority: ReadonlyMap<string, number>
}

/** The settings, and the functions each part offers the others (its own helpers stay private). */
export interface Ctx extends Settings {
  // helpers (this module)
  readonly reply: (outputs: Array<Output>, to: string, message: ServerReply) => void
  readonly deny: (
    state: State,
    outputs: Array<Output>,
    client: string,
    seq: number,
    reason: Message.DenyReason,
  ) => void
  readonly tokenFor: (state: State, client: string, seats: number, nowMs: number) => Message.Token
  readonly leaseUntil: (leader: LeaderState, nowMs: number) => number
  readonly hasAuthority: (state: State, nowMs: number) => boolean
  readonly liveServers: (state: State, nowMs: number) => Array<string>
  readonly setDurable: (state: State, changes: Partial<Durable>) => State
  // record
  readonly setPool: (
    state: State,
    key: string,
    client: string,
    entry: Elsewhere | undefined,
  ) => State
  readonly withPool: (
    state: State,
    leader: LeaderState,
    pool: HashMap.HashMap<string, Elsewhere>,
  ) => LeaderState
  readonly hold: (state: State, held: Held) => State
  readonly drop: (state: State, client: string) => State
  readonly expire: (state: State, nowMs: number, outputs: Array<Output>) => State
  // election
  readonly becomeFollower: (
    state: State,
    leader: string | undefined,
    nowMs: number,
    outputs: Array<Output>,
    reason?: "newer-term" | "no-majority",
  ) => State
  readonly scheduleElection: (state: State, outputs: Array<Output>) => State
  readonly stand: (state: State, nowMs: number, outputs: Array<Output>) => State
  readonly becomeLeader: (state: State, nowMs: number, outputs: Array<Output>) => State
  // leader
  readonly sendHeartbeats: (state: State, nowMs: number, outputs: Array<Output>) => State
  readonly endingSoon: (state: State, nowMs: number) => Array<string>
  readonly expirePool: (leader: LeaderState, nowMs: number) => HashMap.HashMap<string, Elsewhere>
  readonly newLife: (view: FollowerView, life: number) => FollowerView
  readonly acked: (account: ShareAccount, seq: number, used: number) => ShareAccount
  readonly receiveRecord: (
    state: State,
    from: string,
    message: Extract<Peer, { _tag: "Record" }>,
    _nowMs: number,
    outputs: Array<Output>,
  ) => State
  // follower
  readonly sendRecord: (state: State, to: string, outputs: Array<Output>) => void
  readonly reserved: (
    state: State,
    from: string,
    message: Extract<Peer, { _tag: "Reserved" }>,
    nowMs: number,
    outputs: Array<Output>,
  ) => State
  readonly waitForShares: (
    state: State,
    from: string,
    message: Extract<Peer, { _tag: "WaitForShares" }>,
    outputs: Array<Output>,
  ) => State
  readonly askLeader: (
    state: State,
    outputs: Array<Output>,
    client: string,
    seq: number,
    seats: number,
    nowMs: number,
    reattach: boolean,
    heldAt: string | undefined,
  ) => State | "queue-full"
  readonly carry: (
    state: State,
    outputs: Array<Output>,
    token: Message.Token,
    leaseUntilMs: number,
    seq: number,
    nowMs: number,
  ) => State
  readonly countedByLeader: (state: State, held: Held) => boolean
  readonly heldAtOf: (state: State, token: Message.Token) => string | undefined
  // allocation
  readonly reclaimShares: (state: State, nowMs: number) => State
  readonly onRefusal: (state: State, reason: Message.DenyReason, nowMs: number) => State
  readonly waitForSharesMs: (state: State, nowMs: number) => number
  readonly reserve: (
    state: State,
    from: string,
    message: Extract<Peer, { _tag: "Reserve" }>,
    nowMs: number,
  ) => State | Message.DenyReason | typeof awaitShares
  readonly grant: (
    state: State,
    outputs: Array<Output>,
    client: string,
    seq: number,
    seats: number,
    nowMs: number,
    reattached: boolean,
    fromShare?: boolean,
    reservedAtMs?: number,
  ) => State
  readonly licenseProblem: (
    state: State,
    product: string,
    seats: number,
    nowMs: number,
  ) => Message.DenyReason | undefined
  readonly request: (
    state: State,
    outputs: Array<Output>,
    client: string,
    seq: number,
    product: string,
    seats: number,
    nowMs: number,
    reattach: boolean,
    heldAt?: string,
  ) => State
  readonly shareNow: (state: State, nowMs: number) => number
  // clients
  readonly offerLicense: (
    state: State,
    from: string,
    license: Message.License,
    outputs: Array<Output>,
  ) => { readonly state: State; readonly reason: "adopted" | "bad-signature" | "not-newer" }
  readonly fromClient: (state: State, from: string, message: ClientRequest, nowMs: number) => Step
  // step
  readonly tick: (state: State, nowMs: number) => Step
  readonly receive: (state: State, from: string, message: Peer, nowMs: number) => Step
}

export const helpers = (
  ctx: Ctx,
): Pick<
  Ctx,
  "reply" | "deny" | "tokenFor" | "leaseUntil" | "hasAuthority" | "liveServers" | "setDurable"
> => {
  const { servers, leaderLeaseMs, downAfterMs, crypto, tokenTtlMs, majority } = ctx
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
  return { reply, deny, tokenFor, leaseUntil, hasAuthority, liveServers, setDurable }
}
