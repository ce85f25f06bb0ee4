/**
 * The cluster's models: its options, its application (`Service`), what a node does
 * (`ClusterEvent`), shows (`Status`) and offers (`Node`), and its error.
 */
import type { Store } from "@understudy/store"
import type { Address } from "@understudy/transport"
import { Cause, type Duration, type Effect, type Redacted, Schema, type Stream } from "effect"
import type * as Association from "../../Association.ts"
import type * as ClusterRole from "../../ClusterRole.ts"
import type * as Endpoint from "../../Endpoint.ts"
import type * as Fence from "../../Fence.ts"
import type * as Replication from "../../Replication.ts"

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
export interface ForwardedPacket {
  readonly from: Association.PeerAddress
  readonly bytes: Uint8Array
}

/** What went wrong, for a log line or an event. */
export const causeText = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  if (error instanceof ClusterError) return error.detail
  return error instanceof Error ? error.message : String(error)
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

/**
 * The link or the store failed in a way the node can not work around.
 *
 * @since 0.1.0
 * @category errors
 */
export class ClusterError extends Schema.TaggedError<ClusterError>()("ClusterError", {
  detail: Schema.String,
}) {}
