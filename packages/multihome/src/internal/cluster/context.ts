/**
 * One running node as its parts see it (`node.ts` builds it): what it was given and made at
 * start, and the state its parts share (the role, the link, the acks, the handover, the
 * address it took over). Each part of the node is a module of functions of this context:
 * `shipping.ts` (the primary's replication), `endpoint.ts` (the endpoint as the cluster sees
 * it), `role.ts` (the role machine's actions), `takeover.ts`, `address.ts`, `handover.ts`,
 * `link.ts`, `grace.ts` (the relink grace and its probe) and `status.ts`.
 */
import type { Machine } from "@understudy/machine"
import type {
  Connection,
  Datagram,
  Transport,
  Options as TransportOptions,
} from "@understudy/transport"
import type { Cause, Deferred, Effect, Fiber, Queue, Scope } from "effect"
import type * as Association from "../../Association.ts"
import * as ClusterRole from "../../ClusterRole.ts"
import type * as Endpoint from "../../Endpoint.ts"
import type * as Fence from "../../Fence.ts"
import type * as Replication from "../../Replication.ts"
import type {
  AddressTakeover,
  ClusterEvent,
  Failover,
  ForwardedPacket,
  Options,
  Service,
} from "./models.ts"
import type { Timings } from "./timings.ts"

/** The link to the other node. */
export type Link = Connection.Connection<Replication.Message>

export interface NodeContext {
  readonly options: Options
  readonly timings: Timings
  readonly transport: Transport.Transport["Service"]
  readonly datagram: Datagram.Datagram["Service"]
  readonly service: Service
  readonly linkOptions: TransportOptions.ConnectionOptions<Replication.Message>
  readonly storePrefix: string
  readonly isEveryUpdate: boolean
  readonly failover: Failover
  readonly nodeId: string
  readonly nodeScope: Scope.Scope
  readonly now: Effect.Effect<number>
  readonly publish: (event: ClusterEvent) => Effect.Effect<boolean>
  /** Every log line names the node, its role and its epoch as they are when it is written. */
  readonly logged: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly fence: Fence.Fence | undefined
  /** Resolved once this node holds the fence: it ships nothing before (its epoch is 0). */
  readonly fenceHeld: Deferred.Deferred<void>

  // The role (see `role.ts`).
  readonly roleMachine: Machine.Machine<
    ClusterRole.State,
    ClusterRole.Message,
    ClusterRole.Command,
    ClusterRole.Action
  >
  roleState: ClusterRole.State
  /** The role's timers: the generation of each one set (a timer set again replaces it). */
  readonly roleTimers: Map<string, number>
  roleTimersSet: number
  /**
   * The link end a secondary waits out (the relink grace): its reason, and how long after
   * the primary was last heard of it came. The failover, if one follows, is measured by it.
   */
  linkEnd: { readonly reason: string; readonly detectionMs: number } | undefined

  // Replication (see `shipping.ts`).
  link: Link | undefined
  readonly shipper: Replication.Shipper
  readonly replicas: Replication.Replicas
  /** Bytes of the primary's replication messages encoded for the link, not yet counted. */
  linkBytes: number
  acknowledged: number
  lastAckMs: number | undefined
  /** Updates waiting for the secondary: resolved when `acknowledged` reaches their seq. */
  readonly ackWaiters: Array<{ seq: number; done: Deferred.Deferred<void> }>
  lastAppliedMs: number | undefined
  /** Whether this node serves with nobody holding its updates (see `Unprotected`). */
  unprotected: boolean
  /** state-node: associations written at this node's epoch (safe to drop older copies of). */
  readonly storedAtEpoch: Set<number>
  /** The alias table the secondary was last sent (entries come and go with associations). */
  aliasesShipped: string

  // The endpoint (see `endpoint.ts`).
  /** Set once made; the hooks that read it run on its packets and updates, after. */
  endpoint: Endpoint.Endpoint
  /** Its own scope, so that a deposed primary can close it and fall silent. */
  endpointScope: Scope.Closeable
  readonly received: { messages: number; bytes: number }
  closing: boolean

  // Takeover (see `takeover.ts`, `address.ts`).
  /** When this secondary decided to take over (the start of the takeover's duration). */
  takeoverStartedMs: number | undefined
  /** A fence acquisition is under way (see the role's `AcquireFence`). */
  acquiringFence: boolean
  /** The takeover in progress or done is a planned handover. */
  plannedTakeOver: boolean
  /** The states adopted at the last takeover (the new primary watches their ASCONF). */
  adoptedStates: Array<Association.State>
  /**
   * The old serving node's address, bound by this node once it took over (`takeover`); its
   * socket, once bound (`state` still `waiting` until the datagrams there are taken in).
   */
  addressTakeover:
    | {
        host: string
        state: AddressTakeover["state"]
        packets: number
        scope: Scope.Closeable
        socket: Datagram.Endpoint | undefined
      }
    | undefined

  // Planned handover (see `handover.ts`), both halves.
  /** Old primary: the seq of the last message shipped before `HandOver`; later updates are forwarded. */
  handOverAfter: number | undefined
  /** Old primary: what reaches the node while it hands over, on its way to the secondary. */
  readonly diverted: Queue.Queue<ForwardedPacket, Cause.Done>
  forwardedCount: number
  handOverForwarder: Fiber.Fiber<void> | undefined
  /** Old primary: resolved when it fell silent; whether the new primary confirmed the peer moved. */
  readonly handOverEnded: Deferred.Deferred<boolean>
  /** Stepped for good: a handover's update is never performed here (held with no end). */
  readonly neverReleased: Deferred.Deferred<void>
  /** Secondary: the `HandOver` received, waiting for the messages shipped before it. */
  pendingHandOver: { readonly epoch: number; readonly after: number } | undefined
  /** Secondary: the link of the primary that hands over (told when it may stop). */
  handOverFrom: Link | undefined
  /** Secondary: packets forwarded during the handover, injected once it took over. */
  readonly heldForwards: Array<ForwardedPacket>
}

/** Whether this node runs the associations (and replicates them to a linked standby). */
export const serving = (node: NodeContext): boolean => ClusterRole.serving(node.roleState)
