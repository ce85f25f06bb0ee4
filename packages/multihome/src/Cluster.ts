/**
 * One SCTP endpoint served by two nodes (seed 001): the primary node and the secondary node
 * each bind their own address (e.g. 127.0.0.2 and 127.0.0.3, same UDP and SCTP port), and
 * both addresses are listed in every INIT ACK, so the peer sees one endpoint with two
 * addresses. The primary runs the associations; a synchronisation process (`Replication`)
 * keeps their state on the secondary over an intra-cluster link (a transport connection,
 * authenticated with the cluster key, with keep-alive), or in a `Store` on a third node.
 *
 * While the primary lives, the secondary answers the peer's HEARTBEATs to its address from
 * its copy (the peer confirms the address) and forwards every other packet that reaches
 * it to the primary. When the link closes or times out (the primary died or hung), the
 * secondary takes every association over (`Association.takeOver`): from then on it answers
 * from its own address, and the peer, whose retransmissions move to its alternate address
 * after one RTO, sees only a path change.
 *
 * Services are synchronous (`Service`): the replies to a message are queued in the same
 * update as the message's arrival, so under `every-update` the secondary has the message
 * and its replies before the peer sees the SACK — an echo is never lost or doubled.
 *
 * Without `fence`, the link is the failure detector: a partition between two live nodes
 * (or a primary paused past the keep-alive) would make both active. With it, the role is
 * held in a store (`Fence`): nothing is transmitted without the proof of a live lease.
 *
 * @since 0.1.0
 */

import { randomBytes } from "node:crypto"
import { Machine } from "@understudy/machine"
import type { Store } from "@understudy/store"
import {
  Address,
  type Connection,
  Datagram,
  Transport,
  Options as TransportOptions,
} from "@understudy/transport"
import {
  Cause,
  Clock,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Metric,
  Option,
  PubSub,
  Queue,
  type Redacted,
  Result,
  Schedule,
  Schema,
  Scope,
  Stream,
} from "effect"
import * as Asconf from "./Asconf.ts"
import * as Association from "./Association.ts"
import * as ClusterRole from "./ClusterRole.ts"
import * as Endpoint from "./Endpoint.ts"
import * as Fence from "./Fence.ts"
import { addressParameter } from "./internal/association-support.ts"
import { associationConfig } from "./internal/endpoint/options.ts"
import * as Metrics from "./Metrics.ts"
import * as Packet from "./Packet.ts"
import * as Replication from "./Replication.ts"

// ---------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------

/**
 * A message to send back: what a {@link Service} answers.
 *
 * @since 0.1.0
 * @category models
 */
export interface Reply {
  readonly stream: number
  readonly ppid: number
  readonly data: Uint8Array
  readonly unordered: boolean
}

/**
 * The cluster's application: called once per delivered message, in order, inside the
 * update that delivered it. Returns the replies to queue at once.
 *
 * @since 0.1.0
 * @category models
 */
export type Service = (message: Endpoint.Message, association: number) => ReadonlyArray<Reply>

/**
 * The built-in services: `echo` sends every message back on its stream with its PPID and
 * ordering; `discard` drops it; `sink` counts what it received (see {@link Node.received}).
 *
 * @since 0.1.0
 * @category services
 */
export const services: Readonly<Record<"echo" | "discard" | "sink", Service>> = {
  echo: (message) => [
    {
      stream: message.stream,
      ppid: message.ppid,
      data: message.data,
      unordered: message.unordered,
    },
  ],
  discard: () => [],
  sink: () => [],
}

/**
 * @since 0.1.0
 * @category models
 */
export type Role = "primary" | "secondary"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly role: Role
  /** This node's UDP address (its IP and the encapsulation port). */
  readonly bind: Address.Udp
  /** The SCTP port of the endpoint (the same on both nodes). */
  readonly port: number
  /** Every node's IP, listed in INIT ACKs: the peer sees them as one endpoint's addresses. */
  readonly addresses: ReadonlyArray<string>
  /** The intra-cluster link: the secondary listens on it, the primary connects to it. */
  readonly link: Address.StreamAddress
  /**
   * Secondary: after it took over, where a node that rejoins as the new secondary (the old
   * primary, restarted) listens. The node connects there as the primary did and keeps the
   * newcomer in sync, so the cluster can fail over again. Without it, one failover only.
   */
  readonly standbyLink?: Address.StreamAddress
  /**
   * How the primary keeps the secondary's copy (see `Replication.Policy`); the `interval`
   * policy's `every` is a `Duration.Input` (`"100 millis"`), checked with the other durations.
   */
  readonly policy: Replication.Policy
  /** The application; default `echo`. */
  readonly service?: Service
  /** `state-node`: where the associations' state lives. */
  readonly store?: Store.Store["Service"]
  /** Key prefix in the store (default `/understudy/multihome/`). */
  readonly storePrefix?: string
  /**
   * Authenticates the link (HMAC over every frame): required, unless `insecure` says to
   * run the link unauthenticated (whoever reaches it reads every association's state and
   * cookie secrets, and can depose the primary).
   */
  readonly clusterKey?: Redacted.Redacted<Uint8Array | string>
  /** Run the link without a `clusterKey`, explicitly (logged as a warning). */
  readonly insecure?: boolean
  /**
   * Keep-alive of the link: how fast a hung node is noticed. Default 100 ms / 500 ms. A
   * secondary whose link ended also waits half an `interval` for its primary to link again
   * before it takes over (the end may be a starved node's, the primary alive).
   */
  readonly linkKeepAlive?: { readonly interval: Duration.Input; readonly timeout: Duration.Input }
  /**
   * The inexact policies: how long an update waits for the secondary's ack before going on
   * without it. Default 1 second. `every-update` never goes on without the ack while the
   * link is up (the link's keep-alive closes it when the secondary hangs); with the link
   * down it runs unprotected, and says so (`Unprotected`, {@link unprotectedMetric}).
   */
  readonly ackTimeout?: Duration.Input
  /** Polled every `healthEvery` (default 200 ms); `false` is an impending failure. */
  readonly healthCheck?: Effect.Effect<boolean>
  readonly healthEvery?: Duration.Input
  readonly config?: Endpoint.AssociationOptions
  readonly seed?: number
  /**
   * Fences the role in a store (see `Fence`): a node transmits as the primary only while
   * it can prove, by a lease kept alive in the store, that it holds the role; a secondary
   * takes over only once the old primary's lease ended, and bumps the epoch. Without it the
   * link's keep-alive is the only failure detector (a paused primary may come back active).
   */
  readonly fence?: { readonly store: Store.Store["Service"]; readonly lease?: Duration.Input }
  /**
   * How a secondary that takes over makes the peer's traffic reach it at once (default
   * `asconf`): `asconf`, an authenticated ASCONF Set Primary Address naming this node's
   * address (RFC 5061; a peer that did not negotiate ASCONF is not asked); `takeover`, the
   * node binds the old serving node's address (same UDP port) once it is free and takes in
   * what the peer still sends there, so a peer without ASCONF (Linux's `addip_enable = 0`)
   * never sees a path fail; `both`, the two; `none`, nothing: the peer moves when its
   * retransmission timers give up on the dead node's address.
   */
  readonly failover?: Failover
  /**
   * `takeover` across hosts: makes the old serving node's address this host's before it is
   * bound (add it to an interface, announce it with gratuitous ARP), and gives it back when
   * a standby links up. Without it the address is only bound (on one host, where every
   * loopback address is already the host's).
   */
  readonly addressClaim?: AddressClaim
  /**
   * `takeover`: how long the node waits for the old serving node's address to be free
   * (its socket gone) before it gives up, and how long a node waits for its own address
   * held by a node that took it over (until that one's link to it is up). Default 30 s.
   */
  readonly addressWait?: Duration.Input
}

/**
 * The ways a takeover can move the peer's traffic (see `Options.failover`).
 *
 * @since 0.1.0
 * @category models
 */
export type Failover = "asconf" | "takeover" | "both" | "none"

/**
 * Moves an IP address to this host and back (see `Options.addressClaim`).
 *
 * @since 0.1.0
 * @category models
 */
export interface AddressClaim {
  readonly claim: (host: string) => Effect.Effect<void, ClusterError>
  readonly release: (host: string) => Effect.Effect<void>
}

/**
 * The address takeover of a node (see `Options.failover`): the old serving node's address,
 * `waiting` to be free, `bound` (with the datagrams taken in there), `released` once a
 * standby linked up, or `failed`.
 *
 * @since 0.1.0
 * @category models
 */
export interface AddressTakeover {
  readonly host: string
  readonly state: "waiting" | "bound" | "released" | "failed"
  readonly packets: number
}

/** A packet that reached one node, on its way to the other. */
interface ForwardedPacket {
  readonly from: Association.PeerAddress
  readonly bytes: Uint8Array
}

/** What went wrong, for a log line or an event. */
const causeText = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  if (error instanceof ClusterError) return error.detail
  return error instanceof Error ? error.message : String(error)
}

/** Whether a takeover asks the peer, in an ASCONF, to make this node's address primary. */
const asksPeer = (failover: Failover): boolean => failover === "asconf" || failover === "both"

/** Whether a takeover binds the old serving node's address. */
const takesAddress = (failover: Failover): boolean => failover === "takeover" || failover === "both"

/** The takeover's request to the peer for this node's options. */
const askPeerForPrimary = (options: Options): Association.TakeOverOptions => {
  const failover = options.failover ?? "asconf"
  if (!asksPeer(failover)) return {}
  // `both`: the request waits until what the peer sent into the takeover's gap is filled. A
  // peer (usrsctp) fast-retransmits only on SACKs for what it sent to the same address: moved
  // at once, it would resend the chunk lost on the dead node's address only at its T3-rtx.
  return takesAddress(failover)
    ? { setPrimary: options.bind.host, setPrimaryOnceFilled: true }
    : { setPrimary: options.bind.host }
}

/**
 * Something the node did.
 *
 * @since 0.1.0
 * @category models
 */
export type ClusterEvent =
  | { readonly _tag: "LinkUp"; readonly atMs: number }
  /**
   * The primary serves with no secondary holding its updates (the link is down, or was never
   * up): what it acknowledges from now on dies with it. `Protected` ends it.
   */
  | { readonly _tag: "Unprotected"; readonly reason: string; readonly atMs: number }
  /** A secondary holds the primary's updates again (the link is up, the state resent). */
  | { readonly _tag: "Protected"; readonly atMs: number }
  | { readonly _tag: "LinkDown"; readonly reason: string; readonly atMs: number }
  /** `planned`: a handover the primary asked for (see {@link Node.handOver}), not a failure. */
  | {
      readonly _tag: "TookOver"
      readonly associations: number
      readonly planned: boolean
      readonly atMs: number
    }
  /** Planned handover: this primary stopped stepping packets and sends them to the secondary. */
  | { readonly _tag: "HandingOver"; readonly atMs: number }
  /**
   * Planned handover: this node fell silent; `confirmed`, the new primary said the peer
   * moved to it (its ASCONF-ACK came); `forwarded`, packets sent on to it meanwhile.
   */
  | {
      readonly _tag: "HandedOver"
      readonly confirmed: boolean
      readonly forwarded: number
      readonly atMs: number
    }
  /** The secondary took over while this primary was away (hung, partitioned): it fell silent. */
  | { readonly _tag: "Deposed"; readonly atMs: number }
  /** The node acquired the role in the store (see `Options.fence`), at this epoch. */
  | { readonly _tag: "Fenced"; readonly epoch: number; readonly atMs: number }
  /** The node could no longer prove it holds the role: it fell silent. */
  | { readonly _tag: "FencedOut"; readonly reason: string; readonly atMs: number }
  | { readonly _tag: "Synced"; readonly reason: "ImpendingFailure"; readonly messages: number }
  | { readonly _tag: "ReplicaRejected"; readonly detail: string }
  /** `state-node`: a snapshot could not be written; the update went out without it. */
  | { readonly _tag: "StoreWriteFailed"; readonly association: number }
  /** `takeover`: the old serving node's address is bound here; the peer's datagrams to it arrive. */
  | { readonly _tag: "AddressTaken"; readonly host: string; readonly atMs: number }
  /** `takeover`: the address is given back (a standby linked up: it may be the address's node). */
  | { readonly _tag: "AddressReleased"; readonly host: string; readonly atMs: number }
  /** `takeover`: the address could not be claimed or bound. */
  | { readonly _tag: "AddressTakeoverFailed"; readonly host: string; readonly detail: string }

/**
 * What a status display may show of an association: no verification tag, no TSN (with them,
 * anyone who reads the status could forge the association's packets).
 *
 * @since 0.1.0
 * @category models
 */
export type AssociationSummary = Omit<
  Association.Status,
  "myTag" | "peerTag" | "nextTsn" | "cumulativeTsnAcked" | "peerCumulativeTsn"
> & { readonly id: number }

/**
 * The summary of an association for {@link Status}: {@link Association.info} without its
 * secrets.
 *
 * @since 0.1.0
 * @category accessors
 */
export const summarise = (id: number, status: Association.Status): AssociationSummary => {
  const {
    myTag: _myTag,
    peerTag: _peerTag,
    nextTsn: _nextTsn,
    cumulativeTsnAcked: _cumulativeTsnAcked,
    peerCumulativeTsn: _peerCumulativeTsn,
    ...rest
  } = status
  return { ...rest, id }
}

/**
 * What `sctp-cluster status` shows: never a tag, a TSN or a secret.
 *
 * @since 0.1.0
 * @category models
 */
export interface Status {
  readonly role: ClusterRole.Role
  readonly policy: string
  readonly link: "up" | "down"
  /** A primary serving with no secondary holding its updates (see `Unprotected`). */
  readonly unprotected: boolean
  /** Primary: messages planned and acknowledged; secondary: applied. */
  readonly replication: {
    readonly shipped: number
    readonly acknowledged: number
    readonly applied: number
    /** Milliseconds since the last acknowledgement (primary) or message (secondary). */
    readonly lagMs: number | undefined
    /** Secondary: messages refused for an epoch older than the newest it knows of. */
    readonly staleRefused: number
  }
  readonly associations: ReadonlyArray<AssociationSummary>
  readonly replicas: number
  readonly received: { readonly messages: number; readonly bytes: number }
  readonly endpoint: Endpoint.Stats
  /** With `Options.fence`: the epoch held and the last successful keep-alive. */
  readonly fence: Fence.Status | undefined
  readonly failover: Failover
  /** `takeover` / `both`, once the node took over: the old serving node's address. */
  readonly addressTakeover: AddressTakeover | undefined
}

/**
 * A running node.
 *
 * @since 0.1.0
 * @category models
 */
export interface Node {
  /** Its endpoint; its `accept` is the cluster's: read {@link Node.accepted} instead. */
  readonly endpoint: Endpoint.Endpoint
  /** Associations the endpoint accepted from now on (the oldest dropped for a slow reader). */
  readonly accepted: Stream.Stream<Endpoint.AssociationHandle>
  readonly status: Effect.Effect<Status>
  readonly events: Stream.Stream<ClusterEvent>
  /**
   * One final synchronisation (claims 5–6), after which the node falls silent: SIGTERM or
   * a failing health check call it.
   */
  readonly impendingFailure: Effect.Effect<void>
  /** Messages and bytes the service was given on this node. */
  readonly received: Effect.Effect<{ readonly messages: number; readonly bytes: number }>
  /**
   * A planned handover, asked of the primary (claim: no retransmission at all). The primary
   * stops stepping what reaches its address and sends it to the secondary (`Forward`),
   * then tells it `HandOver` once everything stepped before is shipped; the secondary takes
   * over when it applied all of that: exact copies, nothing in flight resent, an ASCONF Set
   * Primary Address to the peer. The forwarded packets follow. Once the ASCONF-ACK came
   * (the peer sends to the new primary) the new primary says so (`Deposed`) and this node
   * falls silent (`handed-over`) for good: its role can not turn round in place (it
   * connected the link, the secondary listens), so it is restarted as the new standby, as
   * after a failure. Refused unless a primary with a linked secondary and no fence.
   */
  readonly handOver: Effect.Effect<HandOverReport, ClusterError>
}

/**
 * What a planned handover did, as the old primary saw it.
 *
 * @since 0.1.0
 * @category models
 */
export interface HandOverReport {
  /** The new primary said the peer moved to it (else the link ended, or the bound passed). */
  readonly confirmed: boolean
  /** Packets that reached this node meanwhile, sent on to the new primary. */
  readonly forwarded: number
  /** From the request to this node's silence. */
  readonly durationMs: number
}

/** The role's view of a `Deposed` from the link (an older sender names no node, its epoch 0 when absent). */
const deposedOf = (message: {
  readonly epoch?: number
  readonly node?: string
}): ClusterRole.Message => ({
  _tag: "Deposed",
  epoch: message.epoch ?? 0,
  ...(message.node !== undefined ? { node: message.node } : {}),
})

/**
 * What `probePartner` sends from `host`: an SCTP INIT for the partner's endpoint with `tag`
 * (never 0) as its Initiate Tag. A live endpoint answers an INIT from an unknown address with
 * an INIT ACK (a listening one) or an ABORT, both carrying `tag`, and keeps no state for it
 * (RFC 9260 §5.1: the state travels in the cookie, which the probe never echoes). The INIT
 * lists `host`: a loopback source that lists nothing is answered at the host's first other
 * address (`Endpoint`'s loopback alias, for usrsctp), which the probe socket never hears.
 */
const probeInit = (tag: number, port: number, host: string): Uint8Array =>
  Packet.encode({
    // A port no association of the partner's has with this host (an ephemeral one).
    sourcePort: 49_152 + (tag % 16_384),
    destinationPort: port,
    verificationTag: 0,
    chunks: [
      {
        _tag: "Init",
        initiateTag: tag,
        advertisedReceiverWindowCredit: 65_536,
        outboundStreams: 1,
        inboundStreams: 1,
        initialTsn: tag,
        parameters: [addressParameter(host)].filter((parameter) => parameter !== undefined),
      },
    ],
  })

/** Whether `bytes` is a live SCTP stack's answer to the probe INIT with `tag` (see `probeInit`). */
const answersProbe = (bytes: Uint8Array, tag: number): boolean => {
  const decoded = Packet.decode(bytes)
  if (Result.isFailure(decoded)) return false
  const first = decoded.success.chunks[0]
  return (
    decoded.success.verificationTag >>> 0 === tag &&
    (first?._tag === "InitAck" || (first?._tag === "Abort" && !first.reflected))
  )
}

/** How often `probePartner` sends its INIT. */
const probeEveryMs = 50

/** Planned handover: how long the new primary waits for the peer's ASCONF-ACK before it lets the old one go. */
const handOverConfirmMs = 5_000

/** The timings of `Options` in milliseconds. */
interface Timings {
  readonly linkKeepAlive: { readonly intervalMs: number; readonly timeoutMs: number }
  readonly ackTimeoutMs: number
  readonly healthEveryMs: number
  readonly addressWaitMs: number
  readonly fenceLeaseMs: number | undefined
  /** The `interval` policy's `every`. */
  readonly intervalMs: number | undefined
}

/**
 * `options`' durations in milliseconds with their defaults, or a message naming the one that
 * is not a positive, finite duration (`linkKeepAlive.timeout`, `fence.lease` …).
 */
const decodeTimings = (options: Options): Result.Result<Timings, string> => {
  const problems: Array<string> = []
  const millis = (option: string, input: Duration.Input | undefined, fallbackMs: number) => {
    if (input === undefined) return fallbackMs
    const decoded = TransportOptions.positiveMillis(option, input)
    if (Result.isSuccess(decoded)) return decoded.success
    problems.push(decoded.failure)
    return fallbackMs
  }
  const keepAlive = options.linkKeepAlive
  const timings: Timings = {
    // The link's keep-alive unless `linkKeepAlive` says otherwise.
    linkKeepAlive: {
      intervalMs: millis("linkKeepAlive.interval", keepAlive?.interval, 100),
      timeoutMs: millis("linkKeepAlive.timeout", keepAlive?.timeout, 500),
    },
    ackTimeoutMs: millis("ackTimeout", options.ackTimeout, 1_000),
    healthEveryMs: millis("healthEvery", options.healthEvery, 200),
    addressWaitMs: millis("addressWait", options.addressWait, 30_000),
    fenceLeaseMs:
      options.fence?.lease === undefined
        ? undefined
        : millis("fence.lease", options.fence.lease, 1_500),
    intervalMs:
      options.policy._tag === "Interval"
        ? millis("policy.every", options.policy.every, 100)
        : undefined,
  }
  return problems.length === 0 ? Result.succeed(timings) : Result.fail(problems.join("; "))
}

/** Planned handover: how long the old primary waits for the new one before it ends the link. */
const handOverBoundMs = 10_000

/** Packets held on their way during a handover (the peer retransmits one dropped past it). */
const handOverPacketsMax = 4_096

/**
 * The link or the store failed in a way the node can not work around.
 *
 * @since 0.1.0
 * @category errors
 */
export class ClusterError extends Schema.TaggedError<ClusterError>()("ClusterError", {
  detail: Schema.String,
}) {}

// ---------------------------------------------------------------------------------------
// The node
// ---------------------------------------------------------------------------------------

/**
 * 1 while this node serves with no secondary holding its updates (a primary whose link is
 * down, a secondary that took over), else 0.
 *
 * @since 0.1.0
 * @category metrics
 */
export const unprotectedMetric = Metric.gauge("understudy_multihome_unprotected", {
  description: "1 while the node serves associations with no standby holding their state",
})

/**
 * Updates a primary released with no secondary to hold them.
 *
 * @since 0.1.0
 * @category metrics
 */
export const unprotectedUpdatesMetric = Metric.counter(
  "understudy_multihome_unprotected_updates_total",
  {
    description: "Association updates released while no standby held the state",
    incremental: true,
  },
)

/**
 * Replication messages a secondary refused because their epoch is older than the newest it
 * knows of (a primary the fence has moved past).
 *
 * @since 0.1.0
 * @category metrics
 */
export const staleReplicationMetric = Metric.counter(
  "understudy_multihome_stale_replication_total",
  { description: "Replication messages refused for a stale epoch", incremental: true },
)

const defaultStorePrefix = "/understudy/multihome/"

/**
 * Runs one node until the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options,
): Effect.Effect<Node, ClusterError, Transport.Transport | Datagram.Datagram | Scope.Scope> =>
  Effect.gen(function* () {
    // Checked before anything is bound or dialled.
    const timings = decodeTimings(options)
    if (Result.isFailure(timings)) {
      return yield* new ClusterError({ detail: `invalid cluster options: ${timings.failure}` })
    }
    const { linkKeepAlive, ackTimeoutMs, addressWaitMs } = timings.success
    const transport = yield* Transport.Transport
    const datagram = yield* Datagram.Datagram
    const service = options.service ?? services.echo
    /** Bytes of the primary's replication messages encoded for the link, not yet counted. */
    let linkBytes = 0
    const countingCodec = {
      ...Replication.codec,
      encode: (message: Replication.Message) => {
        const encoded = Replication.codec.encode(message)
        if (encoded._tag === "Success" && Replication.epochOf(message) !== undefined) {
          linkBytes += encoded.success.length
        }
        return encoded
      },
    }
    const linkOptions = {
      codec: countingCodec,
      keepAlive: { interval: linkKeepAlive.intervalMs, timeout: linkKeepAlive.timeoutMs },
      ...(options.clusterKey !== undefined ? { clusterKey: options.clusterKey } : {}),
    }
    const storePrefix = options.storePrefix ?? defaultStorePrefix
    const isEveryUpdate = options.policy._tag === "EveryUpdate"
    if (options.clusterKey === undefined && options.insecure !== true) {
      return yield* new ClusterError({
        detail:
          "the intra-cluster link needs a clusterKey (or insecure: true to run it unauthenticated)",
      })
    }
    if (options.clusterKey === undefined) {
      yield* Effect.logWarning("the intra-cluster link runs unauthenticated (insecure: true)")
    }
    if (options.policy._tag === "StateNode" && options.store === undefined) {
      return yield* new ClusterError({ detail: "the state-node policy needs a store" })
    }
    // A slow reader loses the oldest events, never the node's progress.
    const events = yield* PubSub.sliding<ClusterEvent>(1_024)
    const publish = (event: ClusterEvent) => PubSub.publish(events, event)
    const now = Clock.currentTimeMillis
    const nodeScope = yield* Effect.scope

    // The role logic is the pure machine `ClusterRole`; this shell performs its actions.
    const roleMachine = ClusterRole.make({
      role: options.role,
      fenced: options.fence !== undefined,
      standby: options.standbyLink !== undefined,
      // A link end is not always the primary's failure: a standby starved of CPU past the
      // keep-alive has its live link ended by the primary's keep-alive, or ends it with its
      // own. The live primary links again at once (see `connectToStandby`), but on a starved
      // machine that took 0.25–0.5 s (4 CPU hogs and more, load 17–22: with a 50 ms grace the
      // standby took over from a live primary, and both served). So its address is probed
      // (`probePartner`): each answer to the INIT starts the grace again, a port unreachable
      // ends it at once, and the grace decides only when nothing answers (a stopped process,
      // a host down or cut off).
      relinkGraceMs: 2 * linkKeepAlive.timeoutMs,
    })
    /** The role's timers: the generation of each one set (a timer set again replaces it). */
    const roleTimers = new Map<string, number>()
    let roleTimersSet = 0
    /**
     * The link end a secondary waits out (the relink grace): its reason, and how long after
     * the primary was last heard of it came. The failover, if one follows, is measured by it.
     */
    let linkEnd: { readonly reason: string; readonly detectionMs: number } | undefined
    const nodeId = Address.format(options.bind)
    // Its id breaks the tie between two serving nodes of one epoch (see `ClusterRole`).
    const initialRole = roleMachine.init({ self: nodeId, peers: ["link"], nowMs: yield* now })
    let roleState = initialRole.state
    /** Whether this node runs the associations (and replicates them to a linked standby). */
    const serving = () => ClusterRole.serving(roleState)
    /** Every log line names the node, its role and its epoch as they are when it is written. */
    const logged = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.suspend(() =>
        Effect.annotateLogs(effect, { node: nodeId, role: roleState.role, epoch: roleState.epoch }),
      )
    let link: Connection.Connection<Replication.Message> | undefined
    const shipper = new Replication.Shipper(options.policy)
    let acknowledged = 0
    let lastAckMs: number | undefined
    /** Updates waiting for the secondary: resolved when `acknowledged` reaches their seq. */
    const ackWaiters: Array<{ seq: number; done: Deferred.Deferred<void> }> = []
    const received = { messages: 0, bytes: 0 }
    const endpointConfig: Endpoint.AssociationOptions = {
      ...options.config,
      localAddresses: options.addresses,
    }
    const decodedConfig = associationConfig(Association.defaultConfig, endpointConfig)
    if (Result.isFailure(decodedConfig)) {
      return yield* new ClusterError({ detail: decodedConfig.failure.message })
    }
    const config: Association.Config = { ...decodedConfig.success, localPort: options.port }
    const replicas = new Replication.Replicas(config)
    let lastAppliedMs: number | undefined
    let closing = false
    /** When this secondary decided to take over (the start of the takeover's duration). */
    let takeoverStartedMs: number | undefined
    /** A fence acquisition is under way (see the role's `AcquireFence`). */
    let acquiringFence = false
    /** Resolved once this node holds the fence: it ships nothing before (its epoch is 0). */
    const fenceHeld = yield* Deferred.make<void>()

    // Planned handover (see `Node.handOver`), both halves.
    /** Old primary: the seq of the last message shipped before `HandOver`; later updates are forwarded. */
    let handOverAfter: number | undefined
    /** Old primary: what reaches the node while it hands over, on its way to the secondary. */
    const diverted = yield* Queue.dropping<ForwardedPacket, Cause.Done>(handOverPacketsMax)
    let forwardedCount = 0
    let handOverForwarder: Fiber.Fiber<void> | undefined
    /** Old primary: resolved when it fell silent; whether the new primary confirmed the peer moved. */
    const handOverEnded = yield* Deferred.make<boolean>()
    /** Secondary: the `HandOver` received, waiting for the messages shipped before it. */
    let pendingHandOver: { readonly epoch: number; readonly after: number } | undefined
    /** Secondary: the link of the primary that hands over (told when it may stop). */
    let handOverFrom: Connection.Connection<Replication.Message> | undefined
    /** Secondary: packets forwarded during the handover, injected once it took over. */
    const heldForwards: Array<ForwardedPacket> = []
    /** The takeover in progress or done is a planned handover. */
    let plannedTakeOver = false
    /** The states adopted at the last takeover (the new primary watches their ASCONF). */
    let adoptedStates: Array<Association.State> = []

    const releaseAcked = Effect.gen(function* () {
      for (let index = ackWaiters.length - 1; index >= 0; index--) {
        const waiter = ackWaiters[index]!
        if (waiter.seq <= acknowledged) {
          ackWaiters.splice(index, 1)
          yield* Deferred.succeed(waiter.done, undefined)
        }
      }
    })

    /** Without a secondary there is nobody to wait for. */
    const releaseAll = Effect.gen(function* () {
      for (const waiter of ackWaiters.splice(0)) yield* Deferred.succeed(waiter.done, undefined)
    })

    /** Whether this node serves with nobody holding its updates (see `Unprotected`). */
    let unprotected = false
    const protection = (now_: boolean, reason: string) =>
      Effect.gen(function* () {
        if (unprotected === now_) return
        unprotected = now_
        yield* Metric.update(unprotectedMetric, now_ ? 1 : 0)
        const atMs = yield* now
        if (now_) {
          yield* logged(Effect.logWarning(`serving unprotected: ${reason}`))
          yield* publish({ _tag: "Unprotected", reason, atMs })
        } else yield* publish({ _tag: "Protected", atMs })
      })

    const linkBytesMetric = Metric.withAttributes(Metrics.replicationBytes, { target: "link" })
    /** The replication metrics: bytes encoded for the link since the last call, and the lag. */
    const recordReplication = Effect.suspend(() => {
      const bytes = linkBytes
      linkBytes = 0
      return Effect.andThen(
        bytes > 0 ? Metric.update(linkBytesMetric, bytes) : Effect.void,
        Metric.update(Metrics.replicationLag, Math.max(0, shipper.lastSeq - acknowledged)),
      )
    })

    const ship = (messages: ReadonlyArray<Replication.Message>) =>
      link === undefined || messages.length === 0
        ? Effect.void
        : Effect.andThen(Effect.ignore(link.sendAll(messages)), recordReplication)

    /**
     * The update shipped as `seq` waits for the secondary's ack. Under every-update it is
     * answered to the endpoint, which holds the update's outputs until the ack and steps
     * what arrives meanwhile (one ack round trip covers many updates): no SACK before the
     * secondary has the update, unless the link goes down (then `releaseAll`, and the node
     * says it is unprotected). The other policies wait here, at most `ackTimeoutMs`.
     *
     * This, `beforeOutputs` and the link's message handler run per update or per message:
     * their generator functions are made once (`fnUntraced`), as an `Effect.gen` written
     * inside them would cost a new generator closure (about 2.5 us on Node 24) every call.
     */
    const waitForAck: (seq: number) => Effect.Effect<Deferred.Deferred<void> | undefined> =
      Effect.fnUntraced(function* (seq: number) {
        if (link === undefined || closing || acknowledged >= seq) return undefined
        const done = yield* Deferred.make<void>()
        ackWaiters.push({ seq, done })
        if (options.policy._tag === "EveryUpdate") return done
        yield* Deferred.await(done).pipe(Effect.timeoutOption(Duration.millis(ackTimeoutMs)))
        return undefined
      })

    /**
     * state-node: each primary writes an association under its own epoch, so a late write
     * of a primary already fenced out never overwrites a newer one (see
     * `Replication.chooseStored`).
     */
    const storeKey = (association: number, epoch: number) =>
      `${storePrefix}association/${association}/${epoch}`
    /** state-node: the epoch of the last primary that completed its takeover. */
    const servingEpochKey = `${storePrefix}serving-epoch`
    /** state-node: associations written at this node's epoch (safe to drop older copies of). */
    const storedAtEpoch = new Set<number>()

    /** The alias table the secondary was last sent (entries come and go with associations). */
    let aliasesShipped = ""
    const shipAliasesIfGrown = Effect.gen(function* () {
      const table = yield* endpoint.aliases
      const key = JSON.stringify(table)
      if (key === aliasesShipped || link === undefined) return
      aliasesShipped = key
      yield* ship([shipper.aliases(table)])
    })

    // ---- the primary's hooks ----------------------------------------------------------

    const beforeOutputs = Effect.fnUntraced(function* (update: Replication.Update) {
      if (roleState.role === "secondary") return
      // A primary that can not prove its role ships nothing (its outputs are dropped too).
      if (fence !== undefined && !(yield* fence.holds)) return
      // Handing over: checked in the same synchronous run as the seq is taken, so every
      // update is either shipped before `HandOver` (seq ≤ its `after`) or forwarded.
      if (handOverAfter !== undefined) return divertUpdate(update)
      const plan = shipper.onUpdate(update)
      if (unprotected && plan.messages.length > 0) {
        yield* Metric.update(unprotectedUpdatesMetric, 1)
      }
      if (update.created) yield* shipAliasesIfGrown
      yield* ship(plan.messages)
      if (plan.store !== undefined && options.store !== undefined) {
        const encoded = Replication.codec.encode({
          _tag: "Snapshot",
          seq: shipper.lastSeq,
          epoch: shipper.epoch,
          association: plan.store.association,
          snapshot: plan.store.snapshot,
        })
        // A snapshot that does not encode is a defect of the machine, not a store problem.
        if (encoded._tag === "Failure") return yield* Effect.die(encoded.failure)
        const written = yield* Effect.exit(
          options.store.put(storeKey(plan.store.association, shipper.epoch), encoded.success),
        )
        // The store is down: go on (like a primary whose secondary died) but say so.
        if (written._tag === "Failure") {
          yield* publish({ _tag: "StoreWriteFailed", association: plan.store.association })
        } else {
          storedAtEpoch.add(plan.store.association)
          yield* Metric.update(
            Metric.withAttributes(Metrics.replicationBytes, { target: "store" }),
            encoded.success.length,
          )
        }
      }
      if (plan.forget !== undefined && options.store !== undefined) {
        storedAtEpoch.delete(plan.forget)
        yield* forgetStored(options.store, plan.forget)
      }
      return plan.waitForAck ? yield* waitForAck(shipper.lastSeq) : undefined
    })

    /** Deletes every copy of an ended association, whichever epoch wrote it. */
    const forgetStored = (store: Store.Store["Service"], association: number) =>
      Effect.ignore(
        Effect.flatMap(store.range(`${storePrefix}association/${association}/`), (copies) =>
          Effect.forEach(copies.items, (copy) => store.delete(copy.key), { discard: true }),
        ),
      )

    const handler = (association: number, message: Endpoint.Message) => {
      received.messages++
      received.bytes += message.data.length
      return service(message, association)
    }

    // ---- the endpoint -------------------------------------------------------------------

    /** Packets that reach the secondary for no association of its own (see the module doc). */
    const intercept = (packet: Endpoint.Intercepted): Effect.Effect<boolean> =>
      Effect.gen(function* () {
        const copy = replicas.byTag(packet.packet.verificationTag)
        const chunks = packet.packet.chunks
        const answerable = ClusterRole.heartbeatsForCopy(copy, chunks)
        switch (ClusterRole.intercept(roleState, { heartbeatsForCopy: answerable })) {
          case "pass":
            return false
          case "drop":
            return true
          case "answer": {
            // A peer on this machine may send from a loopback address it never listed
            // (usrsctp does): answer where the endpoint's alias table says it listens.
            yield* endpoint.addAliases(Endpoint.aliasesOf(copy!))
            for (const answer of ClusterRole.heartbeatAnswers(copy!, options.port, chunks)) {
              yield* endpoint.transmit(packet.from, answer)
            }
            return true
          }
          case "forward":
            // The primary is handing over: this node serves what it holds once it took over.
            if (pendingHandOver !== undefined) {
              holdForward({ from: packet.from, bytes: packet.bytes })
              return true
            }
            if (link !== undefined) {
              yield* Effect.ignore(
                link.send({
                  _tag: "Forward",
                  host: packet.from.host,
                  udpPort: packet.from.udpPort,
                  bytes: packet.bytes,
                }),
              )
            }
            return true
          case "take-over":
            // Nobody to forward to: the primary is gone. Take over, then let the endpoint
            // handle the packet against the adopted association.
            yield* stepRole({ _tag: "Stray" }).pipe(
              Effect.withSpan("multihome.failover", {
                attributes: { "understudy.node": nodeId, "understudy.trigger": "stray" },
              }),
            )
            return false
        }
      })

    const fence =
      options.fence === undefined
        ? undefined
        : yield* Fence.make({
            store: options.fence.store,
            prefix: storePrefix,
            holder: `${options.role}@${Address.format(options.bind)}`,
            ...(timings.success.fenceLeaseMs !== undefined
              ? { lease: Duration.millis(timings.success.fenceLeaseMs) }
              : {}),
          }).pipe(Effect.mapError((error) => new ClusterError({ detail: error.message })))
    /**
     * Asked before every datagram: the secondary's HEARTBEAT ACKs need no role; a node that
     * serves the associations needs the fence's proof.
     */
    const mayTransmit = Effect.suspend(() =>
      // A closing node falls silent first: its finalizer lets the updates waiting for the
      // secondary's ack go (see below), and their SACKs must not tell the peer that data
      // the secondary never got is delivered.
      closing
        ? Effect.succeed(false)
        : fence === undefined || roleState.role === "secondary"
          ? Effect.succeed(true)
          : fence.holds,
    )

    // The secondary listens before it binds: a node that took its address over (`takeover`)
    // gives it back once its link to this node is up.
    const linkListener =
      options.role === "secondary"
        ? yield* transport
            .listen(options.link, linkOptions)
            .pipe(Effect.mapError((error) => new ClusterError({ detail: error.message })))
        : undefined

    /**
     * The endpoint's socket, seen through the handover: while this node hands over, what
     * reaches it goes to the secondary instead of the endpoint (see `beginHandOver`).
     */
    const divertingDatagram = Datagram.Datagram.of({
      bind: (address) =>
        Effect.map(datagram.bind(address), (socket) => ({
          address: socket.address,
          send: socket.send,
          messages: Stream.filter(socket.messages, (received) => {
            if (handOverAfter === undefined) return true
            divertPacket({
              from: { host: received.from.host, udpPort: received.from.port },
              bytes: received.bytes,
            })
            return false
          }),
        })),
    })

    // Its own scope, so that a deposed primary can close it and fall silent.
    const endpointScope = yield* Scope.fork(yield* Effect.scope)
    const bindDeadlineMs = (yield* now) + addressWaitMs
    const makeEndpoint = Endpoint.make({
      bind: options.bind,
      port: options.port,
      config: endpointConfig,
      listen: true,
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      hooks: { beforeOutputs },
      handler,
      intercept,
      abortOnClose: false,
      mayTransmit,
    }).pipe(
      Scope.provide(endpointScope),
      Effect.provideService(Datagram.Datagram, divertingDatagram),
    )
    const endpoint: Endpoint.Endpoint = yield* makeEndpoint.pipe(
      Effect.retry({
        while: (error) =>
          linkListener !== undefined &&
          error._tag === "ListenError" &&
          error.reason === "AddressInUse" &&
          Clock.currentTimeMillis.pipe(Effect.map((nowMs) => nowMs < bindDeadlineMs)),
        schedule: Schedule.spaced(Duration.millis(50)),
      }),
      Effect.mapError((error) => new ClusterError({ detail: error.message })),
    )

    // The service answers every association inside the endpoint's updates, so the cluster
    // takes them from `accept` itself (its bounded backlog would otherwise fill and refuse
    // the 129th), and shows them to whoever listens on `accepted` (a slow one misses some).
    const accepted = yield* PubSub.sliding<Endpoint.AssociationHandle>(1_024)
    yield* Effect.forkIn(
      Stream.runForEach(endpoint.accept, (association) => PubSub.publish(accepted, association)),
      endpointScope,
    )

    // ---- address takeover ---------------------------------------------------------------

    const failover = options.failover ?? "asconf"
    /**
     * The old serving node's address, bound by this node once it took over (`takeover`); its
     * socket, once bound (`state` still `waiting` until the datagrams there are taken in).
     */
    let addressTakeover:
      | {
          host: string
          state: AddressTakeover["state"]
          packets: number
          scope: Scope.Closeable
          socket: Datagram.Endpoint | undefined
        }
      | undefined

    const addressTakeoverFailed = (taken: { host: string; state: AddressTakeover["state"] }) =>
      Effect.fnUntraced(function* (detail: string) {
        taken.state = "failed"
        yield* logged(Effect.logWarning(`address takeover of ${taken.host} failed: ${detail}`))
        yield* publish({ _tag: "AddressTakeoverFailed", host: taken.host, detail })
      })

    /**
     * Claims the other node's address for this host (across hosts) and tries once to bind it
     * (same UDP port). A takeover does this before its first packet leaves: the peer answers
     * that packet (the HEARTBEATs, the SACK the dead node owed) with the DATA its bundling
     * held back, sent to its primary address, the dead node's; bound only after, that DATA
     * was lost and the peer resent it at its T3-rtx (1 s with usrsctp's defaults). Nothing is
     * read from the socket until the copies are adopted ({@link takeAddress}): what arrives
     * meanwhile waits in its buffer.
     */
    const claimAddress = Effect.gen(function* () {
      const host = options.addresses.find((address) => address !== options.bind.host)
      if (!takesAddress(failover) || host === undefined || addressTakeover !== undefined) return
      const taken = {
        host,
        state: "waiting" as AddressTakeover["state"],
        packets: 0,
        scope: yield* Scope.fork(nodeScope),
        socket: undefined as Datagram.Endpoint | undefined,
      }
      addressTakeover = taken
      if (options.addressClaim !== undefined) {
        const claimed = yield* Effect.exit(options.addressClaim.claim(host))
        if (Exit.isFailure(claimed))
          return yield* addressTakeoverFailed(taken)(causeText(claimed.cause))
      }
      const bound = yield* Effect.exit(
        datagram.bind(Address.udp(host, options.bind.port)).pipe(Scope.provide(taken.scope)),
      )
      if (Exit.isSuccess(bound)) taken.socket = bound.value
    })

    /**
     * Binds the other node's address once its socket is gone, unless {@link claimAddress}
     * already did, and hands every datagram the peer still sends there to the endpoint, as
     * the secondary's forwarded packets are. Replies leave from this node's own address: a
     * peer takes an association's chunks from any of its addresses.
     */
    const takeAddress = Effect.gen(function* () {
      yield* claimAddress
      const taken = addressTakeover
      if (taken === undefined || taken.state !== "waiting") return
      const deadlineMs = (yield* now) + addressWaitMs
      while (taken.socket === undefined) {
        if (taken.state !== "waiting" || closing) return
        yield* Effect.sleep(Duration.millis(50))
        const bound = yield* Effect.exit(
          datagram
            .bind(Address.udp(taken.host, options.bind.port))
            .pipe(Scope.provide(taken.scope)),
        )
        if (Exit.isSuccess(bound)) taken.socket = bound.value
        else if ((yield* now) >= deadlineMs)
          return yield* addressTakeoverFailed(taken)(
            `still not free after ${addressWaitMs} ms: ${causeText(bound.cause)}`,
          )
      }
      if (taken.state !== "waiting" || closing) return
      taken.state = "bound"
      yield* logged(Effect.logInfo(`took over the address ${taken.host}`))
      yield* publish({ _tag: "AddressTaken", host: taken.host, atMs: yield* now })
      yield* Stream.runForEach(taken.socket.messages, (received) => {
        taken.packets++
        return endpoint.inject(
          { host: received.from.host, udpPort: received.from.port },
          received.bytes,
        )
      })
    })

    /** Gives the address back: the standby that linked up may be the node it belongs to. */
    const releaseAddress = Effect.gen(function* () {
      const taken = addressTakeover
      if (taken === undefined || taken.state === "released" || taken.state === "failed") return
      taken.state = "released"
      yield* Scope.close(taken.scope, Exit.void)
      if (options.addressClaim !== undefined) yield* options.addressClaim.release(taken.host)
      yield* logged(Effect.logInfo(`gave the address ${taken.host} back`))
      yield* publish({ _tag: "AddressReleased", host: taken.host, atMs: yield* now })
    })

    // ---- takeover ---------------------------------------------------------------------

    /** Adopts every copy (the role machine's `TakeOver`): the node serves them from now on. */
    const adoptCopies = Effect.gen(function* () {
      const stored =
        options.policy._tag === "StateNode" && options.store !== undefined
          ? yield* readStored(options.store)
          : undefined
      for (const entry of stored?.adopt ?? []) {
        const rejected = replicas.apply(entry.message)
        if (rejected !== undefined) yield* rejectReplica("damaged-replica", rejected.detail)
      }
      if (replicas.listener !== undefined) yield* endpoint.adoptListenerSecrets(replicas.listener)
      // A copy kept by an inexact policy may be behind the primary: it resynchronises with
      // the peer (see `Replicas.takeOverOptions`); an exact copy goes on as it is.
      /** The primary's association id → this node's, for those adopted. */
      const adoptedAs = new Map<number, number>()
      const adopted: Array<Association.State> = []
      for (const [association, state] of replicas.states) {
        if (Association.stateName(state) === "Closed") continue
        // A handover's copy is exact (its last updates were shipped, or snapshotted): what
        // is in flight stays so, and the peer is always asked to send here.
        const takeOverOptions: Association.TakeOverOptions = plannedTakeOver
          ? { handover: true, setPrimary: options.bind.host }
          : {
              ...replicas.takeOverOptions(options.policy, association),
              ...askPeerForPrimary(options),
            }
        const handle = yield* endpoint.adopt(state, {
          takeOver: (state: Association.State, nowMs: number) =>
            Association.takeOver(state, nowMs, takeOverOptions),
        })
        adoptedAs.set(association, handle.id)
        adopted.push(state)
      }
      adoptedStates = adopted
      replicas.states.clear()
      replicas.cumulativeAcks.clear()
      if (stored !== undefined && options.store !== undefined) {
        yield* settleStore(options.store, stored, adoptedAs)
      }
      return adoptedAs.size
    }).pipe(
      Effect.withSpan("multihome.takeover", {
        attributes: { "understudy.node": nodeId, "understudy.policy": options.policy._tag },
      }),
    )

    /**
     * state-node, at takeover: the snapshots to adopt. One older than the epoch of the last
     * primary that completed its takeover, or than another snapshot of the same association,
     * was written late by a primary already fenced out: refused and counted
     * (`Replication.chooseStored`).
     */
    const readStored = (store: Store.Store["Service"]) =>
      Effect.gen(function* () {
        const none = { adopt: [], stale: [] } satisfies ReturnType<typeof Replication.chooseStored>
        const range = yield* Effect.result(store.range(`${storePrefix}association/`))
        if (range._tag === "Failure") {
          yield* publish({
            _tag: "ReplicaRejected",
            detail: `the store did not answer: ${range.failure.message}`,
          })
          return none
        }
        const floor = yield* store.get(servingEpochKey).pipe(
          Effect.map((current) =>
            Option.isSome(current) ? Number(new TextDecoder().decode(current.value.value)) || 0 : 0,
          ),
          Effect.orElseSucceed(() => 0),
        )
        const decoded: Array<Replication.Stored> = []
        for (const entry of range.success.items) {
          const message = Replication.codec.decode(entry.value)
          if (message._tag === "Success" && message.success._tag === "Snapshot") {
            decoded.push({ key: entry.key, message: message.success })
          } else {
            const why = message._tag === "Failure" ? message.failure.message : "not a snapshot"
            yield* rejectReplica("damaged-replica", `${entry.key}: ${why}`)
          }
        }
        const chosen = Replication.chooseStored(decoded, floor)
        for (const entry of chosen.stale) {
          yield* rejectReplica(
            "stale-snapshot",
            `${entry.key}: a snapshot of epoch ${entry.message.epoch} refused: a newer primary wrote after it (floor ${floor})`,
          )
        }
        return chosen
      })

    /**
     * state-node, after adopting: refused copies are deleted, and so is each adopted copy
     * once its association is written at this node's epoch (by the takeover's own update).
     * When every one is, this epoch becomes the floor below which a later takeover refuses
     * snapshots.
     */
    const settleStore = (
      store: Store.Store["Service"],
      stored: ReturnType<typeof Replication.chooseStored>,
      adoptedAs: ReadonlyMap<number, number>,
    ) =>
      Effect.gen(function* () {
        let settled = true
        for (const entry of stored.stale) yield* Effect.ignore(store.delete(entry.key))
        for (const entry of stored.adopt) {
          const id = adoptedAs.get(entry.message.association)
          if (id !== undefined && !storedAtEpoch.has(id)) {
            settled = false
            continue
          }
          if (id === undefined || entry.key !== storeKey(id, shipper.epoch)) {
            yield* Effect.ignore(store.delete(entry.key))
          }
        }
        if (settled && shipper.epoch > 0) {
          yield* Effect.ignore(
            store.put(servingEpochKey, new TextEncoder().encode(String(shipper.epoch))),
          )
        }
      })

    const rejectReplica = (
      reason: "damaged-replica" | "stale-snapshot" | "stale-epoch",
      detail: string,
    ) =>
      Effect.gen(function* () {
        yield* Metrics.refused(reason)
        yield* logged(Effect.logWarning(`replica refused (${reason}): ${detail}`))
        yield* publish({ _tag: "ReplicaRejected", detail })
      })

    /** Performs one action of the role machine. */
    const perform: (
      action: ClusterRole.Action,
      connection: Connection.Connection<Replication.Message> | undefined,
    ) => Effect.Effect<void> = Effect.fnUntraced(function* (
      action: ClusterRole.Action,
      connection: Connection.Connection<Replication.Message> | undefined,
    ) {
      switch (action._tag) {
        case "AcquireFence": {
          // Nothing goes out before the old primary's lease ended and the epoch moved on.
          // One acquisition at a time: a takeover given up for a primary that linked again
          // (see `ClusterRole`) leaves its acquisition waiting; begun again, it waits on.
          if (fence === undefined || acquiringFence) return
          if (options.role === "secondary") takeoverStartedMs ??= yield* now
          acquiringFence = true
          const epoch = yield* fence.acquire
          acquiringFence = false
          return yield* stepRole({ _tag: "FenceAcquired", epoch })
        }
        case "Fenced":
          shipper.epoch = action.epoch
          yield* Deferred.succeed(fenceHeld, undefined)
          return yield* publish({ _tag: "Fenced", epoch: action.epoch, atMs: yield* now })
        case "TakeOver": {
          takeoverStartedMs ??= yield* now
          plannedTakeOver = action.planned
          // Its replication carries the epoch it serves (the fence's, or the takeover's own).
          shipper.epoch = roleState.epoch
          // The old primary is no standby: nothing waits for its acks from now on, the
          // takeover's own updates first (the connection stays open for its forwarded
          // packets and the word that it may stop).
          if (action.planned) {
            link = undefined
            yield* releaseAll
          }
          // The dead node's address, bound before the first packet (see `claimAddress`); a
          // planned takeover's old node still holds it until it stops.
          if (!action.planned) yield* claimAddress
          const adopted = yield* adoptCopies
          yield* logged(Effect.logInfo(`took over ${adopted} associations: ${action.why}`))
          return yield* stepRole({ _tag: "TakenOver", associations: adopted })
        }
        case "TookOver": {
          const atMs = yield* now
          yield* Metric.update(Metrics.takeovers, 1)
          if (takeoverStartedMs !== undefined) {
            yield* Metric.update(Metrics.takeoverMs, atMs - takeoverStartedMs)
          }
          yield* publish({
            _tag: "TookOver",
            associations: action.associations,
            planned: plannedTakeOver,
            atMs,
          })
          // What the primary forwarded during its handover, in the order it came.
          for (const held of heldForwards.splice(0)) yield* endpoint.inject(held.from, held.bytes)
          if (plannedTakeOver && handOverFrom !== undefined) {
            yield* Effect.forkIn(confirmHandOver(handOverFrom), nodeScope)
          }
          yield* Effect.forkIn(takeAddress, nodeScope)
          return yield* protection(true, "took over: no standby behind this node")
        }
        case "HandOver":
          return yield* beginHandOver(connection ?? link)
        case "HandOverRefused":
          return
        case "ConnectStandby":
          if (options.standbyLink === undefined) return
          return yield* Effect.asVoid(
            Effect.forkIn(connectToStandby(options.standbyLink), nodeScope),
          )
        case "FallSilent": {
          closing = true
          yield* releaseAll
          yield* Scope.close(endpointScope, Exit.void)
          // An address it took over is no longer this node's to hold: the node that serves
          // now, or the one restarted on it, binds it (kept, a fenced-out node's bind made
          // the restarted standby give up after `addressWait`).
          yield* releaseAddress
          const atMs = yield* now
          const silent = `falls silent (${action.reason}): ${action.detail}`
          yield* logged(
            action.reason === "HandedOver" ? Effect.logInfo(silent) : Effect.logWarning(silent),
          )
          if (action.reason === "Deposed") yield* publish({ _tag: "Deposed", atMs })
          if (action.reason === "FencedOut") {
            yield* publish({ _tag: "FencedOut", reason: action.detail, atMs })
          }
          const open = connection ?? link
          if (handOverAfter !== undefined) return yield* endHandOver(open, action.detail)
          if (action.reason === "HandedOver") return
          if (open !== undefined) yield* open.close
          return
        }
        case "Refused":
          yield* Metric.update(staleReplicationMetric, 1)
          return yield* rejectReplica(
            "stale-epoch",
            `replication of epoch ${action.epoch} refused: epoch ${action.floor} is known`,
          )
        case "RejectLink":
          return yield* Metrics.refused("link-rejected")
        case "AcceptLink":
        case "Apply":
          // Answers to the caller of the step (see `runRole`).
          return
      }
    })

    /**
     * Steps the role machine and performs its outputs in order; returns its actions, some of
     * which are answers for the caller (`AcceptLink`, `Apply`, `Refused` …).
     */
    function runRole(
      input: Machine.Input<ClusterRole.Message, ClusterRole.Command>,
      connection?: Connection.Connection<Replication.Message>,
    ): Effect.Effect<ReadonlyArray<ClusterRole.Action>> {
      // Per link message on a secondary: its generator function is made once (see `waitForAck`).
      return Effect.gen(() => runRoleSteps(input, connection))
    }

    function* runRoleSteps(
      input: Machine.Input<ClusterRole.Message, ClusterRole.Command>,
      connection: Connection.Connection<Replication.Message> | undefined,
    ) {
      const { state, outputs } = roleMachine.step(roleState, input)
      roleState = state
      const actions: Array<ClusterRole.Action> = []
      for (const output of outputs) {
        if (output._tag === "Emit") {
          actions.push(output.event)
          yield* perform(output.event, connection)
        } else if (output._tag === "SetTimer") {
          const generation = ++roleTimersSet
          roleTimers.set(output.timer, generation)
          const timer = output.timer
          yield* Effect.forkIn(
            Effect.andThen(
              Effect.sleep(Duration.millis(output.afterMs)),
              Effect.suspend(() => {
                if (roleTimers.get(timer) !== generation) return Effect.void
                roleTimers.delete(timer)
                return onRoleTimer(timer)
              }),
            ),
            nodeScope,
          )
        } else if (output._tag === "CancelTimer") {
          roleTimers.delete(output.timer)
        } else if (output._tag === "Send") {
          // The one message the role sends: `Deposed`, to whoever is on the other end.
          const to = connection ?? link
          if (to !== undefined && output.message._tag === "Deposed") {
            const { epoch, node } = output.message
            yield* Effect.ignore(
              to.send({ _tag: "Deposed", epoch, ...(node !== undefined ? { node } : {}) }),
            )
          }
        }
      }
      return actions
    }

    function stepRole(
      command: ClusterRole.Command,
      connection?: Connection.Connection<Replication.Message>,
    ): Effect.Effect<ReadonlyArray<ClusterRole.Action>> {
      return Effect.flatMap(now, (nowMs) => runRole(Machine.command(command, nowMs), connection))
    }

    // ---- planned handover -------------------------------------------------------------

    /** Old primary: a packet that reached it while it hands over (dropped past the bound). */
    function divertPacket(packet: ForwardedPacket): void {
      Queue.offerUnsafe(diverted, packet)
    }

    /** Secondary: a packet forwarded while the handover is pending (dropped past the bound). */
    function holdForward(packet: ForwardedPacket): void {
      if (heldForwards.length < handOverPacketsMax) heldForwards.push(packet)
    }

    /** Stepped for good: a handover's update is never performed here (held with no end). */
    const neverReleased = Deferred.makeUnsafe<void>()

    /**
     * Old primary, an update after the handover began (the node had taken its packets in
     * before it diverted them): the packets go to the secondary, which steps them itself;
     * the outputs never leave.
     */
    function divertUpdate(update: Replication.Update): Deferred.Deferred<void> {
      for (const input of update.inputs) {
        const wire = Replication.toWire(input)
        if (wire._tag === "Receive") {
          divertPacket({ from: { host: wire.host, udpPort: wire.udpPort }, bytes: wire.bytes })
        }
      }
      return neverReleased
    }

    /**
     * Old primary, the role machine's `HandOver`: from now on what reaches the node goes to
     * the secondary, after `HandOver` (the link keeps order); the copy is made exact first
     * (every-update: it is; the other policies: one snapshot of everything).
     */
    const beginHandOver = (to: Connection.Connection<Replication.Message> | undefined) =>
      Effect.gen(function* () {
        const messages = isEveryUpdate ? [] : shipper.onImpendingFailure()
        const after = shipper.lastSeq
        handOverAfter = after
        takeoverStartedMs = yield* now
        yield* logged(Effect.logInfo(`handing over to the secondary after message ${after}`))
        yield* publish({ _tag: "HandingOver", atMs: takeoverStartedMs })
        if (to === undefined) return
        yield* ship(messages)
        yield* Effect.ignore(to.send({ _tag: "HandOver", epoch: shipper.epoch, after }))
        handOverForwarder = yield* Effect.forkIn(
          Stream.runForEach(Stream.fromQueue(diverted), (packet) => {
            forwardedCount++
            return Effect.ignore(
              to.send({
                _tag: "Forward",
                host: packet.from.host,
                udpPort: packet.from.udpPort,
                bytes: packet.bytes,
              }),
            )
          }),
          nodeScope,
        )
      })

    /**
     * Old primary, fallen silent during its handover: what is still on its way goes to the
     * new primary (the endpoint is closed: nothing more arrives), then the link ends.
     */
    const endHandOver = (
      open: Connection.Connection<Replication.Message> | undefined,
      detail: string,
    ) =>
      Effect.gen(function* () {
        yield* Queue.end(diverted)
        if (handOverForwarder !== undefined) {
          yield* Fiber.join(handOverForwarder).pipe(
            Effect.timeoutOption(Duration.millis(1_000)),
            Effect.ignore,
          )
        }
        const confirmed = detail === "the secondary took over"
        yield* publish({
          _tag: "HandedOver",
          confirmed,
          forwarded: forwardedCount,
          atMs: yield* now,
        })
        yield* Deferred.succeed(handOverEnded, confirmed)
        if (open !== undefined) yield* open.close
      })

    /**
     * Secondary: takes over once it applied every message the primary shipped before
     * `HandOver` (they may still be on their way when it arrives).
     */
    // Asked after every applied message: made once (see `waitForAck`).
    const takeOverIfCaughtUp = Effect.fnUntraced(function* (
      connection: Connection.Connection<Replication.Message>,
    ) {
      const pending = pendingHandOver
      if (pending === undefined || replicas.applied < pending.after) return
      pendingHandOver = undefined
      const handOver = { _tag: "HandOver" as const, epoch: pending.epoch }
      yield* runRole(Machine.receive("link", handOver, yield* now), connection).pipe(
        Effect.withSpan("multihome.failover", {
          attributes: { "understudy.node": nodeId, "understudy.trigger": "handover" },
        }),
      )
    })

    /**
     * New primary: once the peer acknowledged every takeover ASCONF (it sends here now), the
     * old primary may fall silent (`Deposed`). Without the ASCONF-ACK within
     * {@link handOverConfirmMs} (or with a peer that did not negotiate ASCONF) it is not
     * told: it forwards what still reaches it until its own bound ends the link
     * (`HandOverReport.confirmed` false).
     */
    const confirmHandOver = (to: Connection.Connection<Replication.Message>) =>
      Effect.gen(function* () {
        const deadlineMs = (yield* now) + handOverConfirmMs
        const moved = () => adoptedStates.every(Asconf.acknowledged)
        while (!moved() && (yield* now) < deadlineMs) yield* Effect.sleep(Duration.millis(10))
        if (!moved()) {
          return yield* logged(
            Effect.logWarning(
              `handover: no ASCONF-ACK within ${handOverConfirmMs} ms; the old primary forwards until its bound`,
            ),
          )
        }
        yield* logged(Effect.logInfo("handover: the peer moved here; the old primary may stop"))
        yield* Effect.ignore(to.send({ _tag: "Deposed", epoch: roleState.epoch }))
      })

    const handOver: Effect.Effect<HandOverReport, ClusterError> = Effect.gen(function* () {
      const startedMs = yield* now
      const answer = yield* stepRole({ _tag: "HandOver" })
      const refused = answer.find((action) => action._tag === "HandOverRefused")
      if (refused !== undefined) {
        return yield* new ClusterError({ detail: `no handover: ${refused.detail}` })
      }
      const ended = yield* Deferred.await(handOverEnded).pipe(
        Effect.timeoutOption(Duration.millis(handOverBoundMs)),
      )
      // No word from the new primary: ending the link makes it take over as after a failure.
      if (Option.isNone(ended) && link !== undefined) yield* link.close
      const confirmed = yield* Deferred.await(handOverEnded)
      return { confirmed, forwarded: forwardedCount, durationMs: (yield* now) - startedMs }
    }).pipe(Effect.withSpan("multihome.handover", { attributes: { "understudy.node": nodeId } }))

    // ---- the link -----------------------------------------------------------------------

    const serveLink = (connection: Connection.Connection<Replication.Message>) =>
      Effect.gen(function* () {
        link = connection
        linkEnd = undefined
        yield* stepRole({ _tag: "LinkUp" }, connection)
        // A secondary learns the newest epoch from the store before it reads a word of the
        // primary's: a primary the fence has moved past is refused (see `ClusterRole`).
        if (fence !== undefined && roleState.role === "secondary") {
          yield* stepRole({ _tag: "EpochSeen", epoch: yield* fence.storeEpoch }, connection)
        }
        yield* logged(Effect.logInfo("the intra-cluster link is up"))
        yield* publish({ _tag: "LinkUp", atMs: yield* now })
        // A fenced node ships nothing before it holds the fence (its epoch would be 0).
        if (serving() && fence !== undefined) yield* Deferred.await(fenceHeld)
        if (serving()) {
          yield* releaseAddress
          const listener = yield* endpoint.listenerSecrets
          aliasesShipped = ""
          yield* ship([shipper.secrets(listener)])
          yield* shipAliasesIfGrown
          yield* ship(shipper.resend())
          if (serving()) yield* protection(false, "")
        }
        const onMessage = Effect.fnUntraced(function* (message: Replication.Message) {
          if (message._tag === "Ack") {
            acknowledged = Math.max(acknowledged, message.seq)
            lastAckMs = yield* now
            yield* recordReplication
            return yield* releaseAcked
          }
          if (message._tag === "Deposed") {
            const deposed = deposedOf(message)
            yield* runRole(Machine.receive("link", deposed, yield* now), connection)
            return
          }
          if (message._tag === "Forward") {
            const forwarded = {
              from: { host: message.host, udpPort: message.udpPort },
              bytes: message.bytes,
            }
            // Crossed a handover on the way: back to the node that takes over.
            if (roleState.role === "handing-over") return divertPacket(forwarded)
            if (pendingHandOver !== undefined) return holdForward(forwarded)
            if (roleState.role === "secondary") return
            return yield* endpoint.inject(
              { host: message.host, udpPort: message.udpPort },
              message.bytes,
            )
          }
          if (message._tag === "HandOver") {
            if (roleState.role !== "secondary") return
            pendingHandOver = { epoch: message.epoch, after: message.after }
            handOverFrom = connection
            return yield* takeOverIfCaughtUp(connection)
          }
          const epoch = Replication.epochOf(message) ?? 0
          const verdict = yield* runRole(
            Machine.receive("link", { _tag: "Replicate", epoch }, yield* now),
            connection,
          )
          if (verdict.some((action) => action._tag === "Refused")) return yield* connection.close
          if (!verdict.some((action) => action._tag === "Apply")) return
          if (message._tag === "Aliases") yield* endpoint.addAliases(message.aliases)
          const rejected = replicas.apply(message)
          lastAppliedMs = yield* now
          if (rejected !== undefined) {
            yield* rejectReplica("damaged-replica", rejected.detail)
            return yield* connection.close
          }
          yield* Effect.ignore(connection.send({ _tag: "Ack", seq: replicas.applied }))
          yield* takeOverIfCaughtUp(connection)
        })
        yield* Stream.runForEach(connection.messages, onMessage)
        const reason = yield* connection.closed
        link = undefined
        // A handover cut short: the takeover below is a failure's (the packets held go in).
        pendingHandOver = undefined
        yield* releaseAll
        yield* logged(Effect.logInfo(`the intra-cluster link is down (${reason._tag})`))
        const downMs = yield* now
        yield* publish({ _tag: "LinkDown", reason: reason._tag, atMs: downMs })
        if (serving()) yield* protection(true, `the link closed (${reason._tag})`)
        if (takesOverOnLinkDown()) {
          // Perhaps the failure: the time since the primary was last heard of. The takeover
          // waits the relink grace (the role's timer, see `onRoleTimer`) for the primary.
          const detectionMs = Math.max(0, downMs - (yield* connection.lastHeardAtMs))
          linkEnd = { reason: reason._tag, detectionMs }
        }
        yield* stepRole({ _tag: "LinkDown", reason: reason._tag })
        if (roleState.awaitingRelink !== undefined) {
          yield* Effect.forkIn(probePartner, nodeScope)
        }
      })

    /**
     * Secondary, waiting the relink grace: whether its primary is alive. The primary's
     * address (the other one, same UDP port) is sent an SCTP INIT every 50 ms (`probeInit`)
     * from a socket of this node's that hears ICMP port unreachable. An INIT ACK (or ABORT)
     * with the probe's tag proves a live SCTP stack there: stepped as `PartnerAlive`, it
     * starts the grace again. A port unreachable means the process is gone: stepped as
     * `PartnerClosed`, the takeover begins at once. Silence — a stopped process, a host
     * crashed or cut off — leaves the grace to decide. Ends with the grace.
     */
    const probePartner = Effect.gen(function* () {
      const host = options.addresses.find((address) => address !== options.bind.host)
      if (host === undefined) return
      const to = Address.udp(host, options.bind.port)
      const socket = yield* datagram.bind(Address.udp(options.bind.host, 0), {
        reportUnreachable: true,
      })
      if (socket.unreachable === undefined) return
      const tag = randomBytes(4).readUInt32BE(0) || 1
      const init = probeInit(tag, options.port, options.bind.host)
      const waiting = () => roleState.awaitingRelink !== undefined
      // Each loop ends with the grace (bounded by it, or by the answers that restart it).
      yield* Effect.forkScoped(
        Effect.ignore(socket.send(to, init)).pipe(
          Effect.andThen(Effect.sleep(Duration.millis(probeEveryMs))),
          Effect.repeat({ while: waiting }),
        ),
      )
      yield* Effect.forkScoped(
        Stream.runForEachWhile(socket.messages, (received) =>
          !waiting()
            ? Effect.succeed(false)
            : answersProbe(received.bytes, tag)
              ? Effect.as(
                  Effect.flatMap(now, (nowMs) =>
                    runRole(Machine.command({ _tag: "PartnerAlive" }, nowMs)),
                  ),
                  true,
                )
              : Effect.succeed(true),
        ),
      )
      const graceEnded = Effect.sleep(Duration.millis(probeEveryMs)).pipe(
        Effect.repeat({ while: waiting }),
        Effect.as(Option.none<Address.Udp>()),
      )
      const closed = yield* Stream.runHead(socket.unreachable).pipe(Effect.raceFirst(graceEnded))
      if (Option.isSome(closed)) {
        yield* endGrace((nowMs) => Machine.command({ _tag: "PartnerClosed" }, nowMs))
      }
    }).pipe(Effect.scoped, Effect.ignore)

    /**
     * The role's one timer, the relink grace, ended with no link: the failure noticed at
     * the link's end (`linkEnd`), then the failover as a whole (the fence's wait, the
     * adoption) in one span.
     */
    function onRoleTimer(timer: string): Effect.Effect<void> {
      return endGrace((nowMs) => Machine.timerFired(timer, nowMs))
    }

    /** The relink grace ends with `input` (its timer, or `PartnerClosed`): see `onRoleTimer`. */
    function endGrace(
      input: (nowMs: number) => Machine.Input<ClusterRole.Message, ClusterRole.Command>,
    ): Effect.Effect<void> {
      return Effect.gen(function* () {
        if (roleState.awaitingRelink === undefined) return
        const end = linkEnd
        linkEnd = undefined
        const fired = Effect.flatMap(now, (nowMs) => runRole(input(nowMs)))
        if (end === undefined || roleState.role !== "secondary" || roleState.linked) {
          return yield* Effect.asVoid(fired)
        }
        yield* Metric.update(Metrics.failoverDetectionMs, end.detectionMs)
        yield* fired.pipe(
          Effect.withSpan("multihome.failover", {
            attributes: {
              "understudy.node": nodeId,
              "understudy.trigger": "link",
              "understudy.link_closed": end.reason,
              "understudy.detection_ms": end.detectionMs,
            },
          }),
        )
      })
    }

    /**
     * A serving node's refused link: its `Deposed` answers are stepped until the dialler
     * hangs up, for at most a keep-alive time-out (a dialler that loses falls silent and
     * closes at once).
     */
    const hearClaim = (connection: Connection.Connection<Replication.Message>) =>
      Stream.runForEach(connection.messages, (message) =>
        message._tag === "Deposed"
          ? Effect.flatMap(now, (nowMs) =>
              runRole(Machine.receive("link", deposedOf(message), nowMs), connection),
            )
          : Effect.void,
      ).pipe(Effect.timeoutOption(Duration.millis(linkKeepAlive.timeoutMs)), Effect.ignore)

    /** Whether the link's end makes this node take over (a secondary with a primary's copy). */
    const takesOverOnLinkDown = () => roleState.role === "secondary" && roleState.primaryKnown

    if (options.role === "primary") yield* protection(true, "no secondary linked yet")

    /**
     * The serving node keeps (re)connecting to its standby: at once after a link that was
     * up for a keep-alive interval or more (the standby waits only its relink grace, see
     * `ClusterRole`), else every 100 ms (a refused link ends at once); without one it runs
     * alone, and once deposed it stops.
     */
    function connectToStandby(address: Address.StreamAddress): Effect.Effect<void> {
      return Effect.gen(function* () {
        while (serving()) {
          let linkedAtMs: number | undefined
          yield* Effect.exit(
            Effect.scoped(
              Effect.flatMap(transport.connect(address, linkOptions), (connection) =>
                Effect.flatMap(now, (nowMs) => {
                  linkedAtMs = nowMs
                  return serveLink(connection)
                }),
              ),
            ),
          )
          const upMs = linkedAtMs === undefined ? 0 : (yield* now) - linkedAtMs
          if (upMs < linkKeepAlive.intervalMs) yield* Effect.sleep(Duration.millis(100))
        }
      })
    }

    if (fence !== undefined) {
      // The primary acquires the fence at start (the machine's first action).
      yield* Effect.forkScoped(
        Effect.forEach(initialRole.outputs, (output) =>
          output._tag === "Emit" ? perform(output.event, undefined) : Effect.void,
        ),
      )
      yield* Effect.forkScoped(
        Effect.gen(function* () {
          const reason = yield* Deferred.await(fence.lost)
          yield* stepRole({ _tag: "FenceLost", reason })
        }),
      )
    }

    if (linkListener !== undefined) {
      yield* Effect.forkScoped(
        Stream.runForEach(linkListener.connections, (connection) =>
          Effect.gen(function* () {
            const answer = yield* stepRole({ _tag: "Incoming", from: "link" }, connection)
            if (answer.some((action) => action._tag === "AcceptLink")) {
              return yield* serveLink(connection)
            }
            // Refused by a serving node, which told the dialler its claim: a dialler that
            // outranks it answers with its own before it hangs up (see `ClusterRole`).
            if (serving()) yield* hearClaim(connection)
            yield* connection.close
          }),
        ),
      )
    } else {
      yield* Effect.forkScoped(connectToStandby(options.link))
    }

    // ---- timers of the policies -------------------------------------------------------

    const everyMs = timings.success.intervalMs
    if (everyMs !== undefined) {
      yield* Effect.forkScoped(
        Effect.forever(
          Effect.andThen(Effect.sleep(Duration.millis(everyMs)), () =>
            roleState.role === "primary" ? ship(shipper.onTick()) : Effect.void,
          ),
        ),
      )
    }

    /**
     * Claims 5–6: one synchronisation when failure is near. The primary then falls silent
     * (its endpoint closes without a word to the peer), so the copy it just sent stays
     * exact: nothing it would do between the sync and its death can be lost.
     */
    const impendingFailure = Effect.gen(function* () {
      if (roleState.role !== "primary") return
      const messages = shipper.onImpendingFailure()
      yield* ship(messages)
      yield* waitForAck(shipper.lastSeq)
      yield* stepRole({ _tag: "HandedOver" })
      yield* publish({ _tag: "Synced", reason: "ImpendingFailure", messages: messages.length })
    })

    if (options.healthCheck !== undefined) {
      const check = options.healthCheck
      const everyMs = timings.success.healthEveryMs
      yield* Effect.forkScoped(
        Effect.gen(function* () {
          for (;;) {
            yield* Effect.sleep(Duration.millis(everyMs))
            if (!(yield* check)) return yield* impendingFailure
          }
        }),
      )
    }

    const status = Effect.gen(function* () {
      const handles = yield* endpoint.associations
      const associations: Array<AssociationSummary> = []
      for (const handle of handles) {
        const info = yield* Effect.option(handle.status)
        if (Option.isSome(info)) associations.push(summarise(handle.id, info.value))
      }
      const nowMs = yield* now
      const last = options.role === "primary" ? lastAckMs : lastAppliedMs
      return {
        role: roleState.role,
        policy: Replication.formatPolicy(options.policy),
        link: link === undefined ? "down" : "up",
        unprotected,
        replication: {
          shipped: shipper.lastSeq,
          acknowledged,
          applied: replicas.applied,
          lagMs: last === undefined ? undefined : nowMs - last,
          staleRefused: roleState.refused,
        },
        associations,
        replicas: replicas.states.size,
        received: { ...received },
        endpoint: yield* endpoint.stats,
        fence: fence === undefined ? undefined : yield* fence.status,
        failover,
        addressTakeover:
          addressTakeover === undefined
            ? undefined
            : {
                host: addressTakeover.host,
                state: addressTakeover.state,
                packets: addressTakeover.packets,
              },
      } satisfies Status
    })

    // Registered last, so it runs first when the node closes: it falls silent as a deposed
    // primary does, before its link and timers stop, so it neither takes in a packet nor
    // sends a SACK the secondary would never hear of. An update waiting for an ack holds the
    // endpoint's lock, which the endpoint's own finalizer needs: let it go first (its
    // outputs are gated by `mayTransmit`). An address it took over leaves this host with it
    // (as keepalived removes its virtual IPs on shutdown).
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closing = true
        return releaseAll.pipe(
          Effect.andThen(Scope.close(endpointScope, Exit.void)),
          Effect.andThen(releaseAddress),
        )
      }),
    )

    return {
      endpoint,
      status,
      events: Stream.fromPubSub(events),
      accepted: Stream.fromPubSub(accepted),
      impendingFailure,
      handOver,
      received: Effect.sync(() => ({ ...received })),
    } satisfies Node
  })
