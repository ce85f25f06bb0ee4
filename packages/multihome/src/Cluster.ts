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
import type { Store } from "@understudy/store"
import { Address, type Connection, Transport } from "@understudy/transport"
import {
  Clock,
  Data,
  Deferred,
  Duration,
  Effect,
  Exit,
  Metric,
  Option,
  PubSub,
  type Redacted,
  Scope,
  Stream,
} from "effect"
import * as Association from "./Association.ts"
import type * as Chunk from "./Chunk.ts"
import * as Endpoint from "./Endpoint.ts"
import * as Fence from "./Fence.ts"
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
  /** Keep-alive of the link: how fast a hung node is noticed. Default 100 / 500 ms. */
  readonly linkKeepAlive?: { readonly intervalMs: number; readonly timeoutMs: number }
  /**
   * The inexact policies: how long an update waits for the secondary's ack before going on
   * without it. Default 1,000 ms. `every-update` never goes on without the ack while the
   * link is up (the link's keep-alive closes it when the secondary hangs); with the link
   * down it runs unprotected, and says so (`Unprotected`, {@link unprotectedMetric}).
   */
  readonly ackTimeoutMs?: number
  /** Polled every `healthEveryMs` (default 200); `false` is an impending failure. */
  readonly healthCheck?: Effect.Effect<boolean>
  readonly healthEveryMs?: number
  readonly config?: Partial<Association.Config>
  readonly seed?: number
  /**
   * Fences the role in a store (see `Fence`): a node transmits as the primary only while
   * it can prove, by a lease kept alive in the store, that it holds the role; a secondary
   * takes over only once the old primary's lease ended, and bumps the epoch. Without it the
   * link's keep-alive is the only failure detector (a paused primary may come back active).
   */
  readonly fence?: { readonly store: Store.Store["Service"]; readonly leaseMs?: number }
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
  | { readonly _tag: "TookOver"; readonly associations: number; readonly atMs: number }
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
  readonly role: Role | "active-secondary" | "deposed" | "handed-over"
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
  }
  readonly associations: ReadonlyArray<AssociationSummary>
  readonly replicas: number
  readonly received: { readonly messages: number; readonly bytes: number }
  readonly endpoint: Endpoint.Stats
  /** With `Options.fence`: the epoch held and the last successful keep-alive. */
  readonly fence: Fence.Status | undefined
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
}

/**
 * The link or the store failed in a way the node can not work around.
 *
 * @since 0.1.0
 * @category errors
 */
export class ClusterError extends Data.TaggedError("ClusterError")<{ readonly detail: string }> {}

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

const defaultStorePrefix = "/understudy/multihome/"

/**
 * Runs one node until the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options,
): Effect.Effect<
  Node,
  ClusterError,
  Transport.Transport | import("@understudy/transport").Datagram.Datagram | Scope.Scope
> =>
  Effect.gen(function* () {
    const transport = yield* Transport.Transport
    const service = options.service ?? services.echo
    const linkOptions = {
      codec: Replication.codec,
      keepAlive: options.linkKeepAlive ?? { intervalMs: 100, timeoutMs: 500 },
      ...(options.clusterKey !== undefined ? { clusterKey: options.clusterKey } : {}),
    }
    const ackTimeoutMs = options.ackTimeoutMs ?? 1_000
    const storePrefix = options.storePrefix ?? defaultStorePrefix
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

    let role: Status["role"] = options.role
    /** Whether this node runs the associations (and replicates them to a linked standby). */
    const serving = () => role === "primary" || role === "active-secondary"
    let link: Connection.Connection<Replication.Message> | undefined
    const shipper = new Replication.Shipper(options.policy)
    let acknowledged = 0
    let lastAckMs: number | undefined
    /** Updates waiting for the secondary: resolved when `acknowledged` reaches their seq. */
    const ackWaiters: Array<{ seq: number; done: Deferred.Deferred<void> }> = []
    const received = { messages: 0, bytes: 0 }
    const config: Association.Config = {
      ...Association.defaultConfig,
      ...options.config,
      localPort: options.port,
      localAddresses: options.addresses,
    }
    const replicas = new Replication.Replicas(config)
    let lastAppliedMs: number | undefined
    let closing = false
    /** Whether a primary was ever linked: a secondary takes over only from one it knew. */
    let linkEverUp = false
    /** The secondary's takeover is complete: every copy is a live association. */
    let tookOver = false

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
          yield* Effect.logWarning(`serving unprotected: ${reason}`)
          yield* publish({ _tag: "Unprotected", reason, atMs })
        } else yield* publish({ _tag: "Protected", atMs })
      })

    const ship = (messages: ReadonlyArray<Replication.Message>) =>
      link === undefined || messages.length === 0
        ? Effect.void
        : Effect.ignore(link.sendAll(messages))

    const waitForAck = (seq: number) =>
      Effect.gen(function* () {
        if (link === undefined || closing || acknowledged >= seq) return
        const done = yield* Deferred.make<void>()
        ackWaiters.push({ seq, done })
        // every-update keeps its word: no SACK before the secondary has the update, unless
        // the link goes down (then `releaseAll`, and the node says it is unprotected).
        if (options.policy._tag === "EveryUpdate") yield* Deferred.await(done)
        else yield* Deferred.await(done).pipe(Effect.timeoutOption(Duration.millis(ackTimeoutMs)))
      })

    const storeKey = (association: number) => `${storePrefix}association/${association}`

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

    const beforeOutputs = (update: Replication.Update) =>
      Effect.gen(function* () {
        if (role === "secondary") return
        // A primary that can not prove its role ships nothing (its outputs are dropped too).
        if (fence !== undefined && !(yield* fence.holds)) return
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
            association: plan.store.association,
            snapshot: plan.store.snapshot,
          })
          // A snapshot that does not encode is a defect of the machine, not a store problem.
          if (encoded._tag === "Failure") return yield* Effect.die(encoded.failure)
          const written = yield* Effect.exit(
            options.store.put(storeKey(plan.store.association), encoded.success),
          )
          // The store is down: go on (like a primary whose secondary died) but say so.
          if (written._tag === "Failure") {
            yield* publish({ _tag: "StoreWriteFailed", association: plan.store.association })
          }
        }
        if (plan.forget !== undefined && options.store !== undefined) {
          yield* Effect.ignore(options.store.delete(storeKey(plan.forget)))
        }
        if (plan.waitForAck) yield* waitForAck(shipper.lastSeq)
      })

    const handler = (association: number, message: Endpoint.Message) => {
      received.messages++
      received.bytes += message.data.length
      return service(message, association)
    }

    // ---- the endpoint -------------------------------------------------------------------

    /** Packets that reach the secondary for no association of its own (see the module doc). */
    const intercept = (packet: Endpoint.Intercepted): Effect.Effect<boolean> =>
      Effect.gen(function* () {
        // Mid-takeover (the link just closed and the copies are being adopted): a packet for
        // a copy not adopted yet would look out of the blue and draw an ABORT. Drop it; the
        // peer retransmits.
        if (role === "active-secondary" && !tookOver) return true
        if (role !== "secondary") return false
        const copy = replicas.byTag(packet.packet.verificationTag)
        const chunks = packet.packet.chunks
        if (
          copy !== undefined &&
          chunks.length > 0 &&
          chunks.every((c: Chunk.Chunk) => c._tag === "Heartbeat")
        ) {
          // A peer on this machine may send from a loopback address it never listed (usrsctp
          // does): answer where the endpoint's alias table says it listens.
          yield* endpoint.addAliases(Endpoint.aliasesOf(copy))
          for (const chunk of chunks) {
            if (chunk._tag !== "Heartbeat") continue
            yield* endpoint.transmit(packet.from, {
              sourcePort: options.port,
              destinationPort: Association.peerPort(copy),
              verificationTag: Association.peerTag(copy),
              chunks: [{ _tag: "HeartbeatAck", info: chunk.info }],
            })
          }
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
          return true
        }
        // No primary has ever been linked to this node (it is starting, or restarted): it
        // has no copy to answer from, and taking over now would only make two active nodes.
        if (!linkEverUp) return true
        // With a fence, the takeover waits for the store (the old primary's lease): not
        // here, under the endpoint's lock; the link's end starts it.
        if (fence !== undefined) return true
        // Nobody to forward to: the primary is gone. Take over, then let the endpoint
        // handle the packet against the adopted association.
        yield* takeOver("the peer reached the secondary's address with no primary")
        return false
      })

    const fence =
      options.fence === undefined
        ? undefined
        : yield* Fence.make({
            store: options.fence.store,
            prefix: storePrefix,
            holder: `${options.role}@${Address.format(options.bind)}`,
            ...(options.fence.leaseMs !== undefined ? { leaseMs: options.fence.leaseMs } : {}),
          })
    /**
     * Asked before every datagram: the secondary's HEARTBEAT ACKs need no role; a node that
     * serves the associations needs the fence's proof.
     */
    const mayTransmit =
      fence === undefined
        ? undefined
        : Effect.suspend(() => (role === "secondary" ? Effect.succeed(true) : fence.holds))

    // Its own scope, so that a deposed primary can close it and fall silent.
    const endpointScope = yield* Scope.fork(yield* Effect.scope)
    const endpoint: Endpoint.Endpoint = yield* Endpoint.make({
      bind: options.bind,
      port: options.port,
      config,
      listen: true,
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      hooks: { beforeOutputs },
      handler,
      intercept,
      abortOnClose: false,
      ...(mayTransmit !== undefined ? { mayTransmit } : {}),
    }).pipe(
      Scope.provide(endpointScope),
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

    // Closing: an update waiting for an ack holds the endpoint's lock, which the endpoint's
    // own finalizer needs; nobody will ack any more, so let it go first.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closing = true
        return releaseAll
      }),
    )

    // ---- takeover ---------------------------------------------------------------------

    const takeOver = (why: string) =>
      Effect.gen(function* () {
        if (role !== "secondary") return
        role = "active-secondary"
        if (fence !== undefined) {
          // Nothing goes out before the old primary's lease ended and the epoch moved on.
          const epoch = yield* fence.acquire
          yield* publish({ _tag: "Fenced", epoch, atMs: yield* now })
        }
        if (options.policy._tag === "StateNode" && options.store !== undefined) {
          const stored = yield* Effect.result(options.store.range(`${storePrefix}association/`))
          if (stored._tag === "Success") {
            for (const entry of stored.success.items) {
              const decoded = Replication.codec.decode(entry.value)
              const rejected =
                decoded._tag === "Success"
                  ? replicas.apply(decoded.success)
                  : { detail: `${entry.key}: ${decoded.failure.message}` }
              if (rejected !== undefined) {
                yield* publish({ _tag: "ReplicaRejected", detail: rejected.detail })
              }
            }
          } else {
            yield* publish({
              _tag: "ReplicaRejected",
              detail: `the store did not answer: ${stored.failure.message}`,
            })
          }
        }
        if (replicas.listener !== undefined) yield* endpoint.adoptListenerSecrets(replicas.listener)
        // A copy kept by an inexact policy may be behind the primary: it resynchronises with
        // the peer (see `Replicas.takeOverOptions`); an exact copy goes on as it is.
        let adopted = 0
        for (const [association, state] of replicas.states) {
          if (Association.stateName(state) === "Closed") continue
          const takeOverOptions = replicas.takeOverOptions(options.policy, association)
          yield* endpoint.adopt(state, {
            takeOver: (state: Association.State, nowMs: number) =>
              Association.takeOver(state, nowMs, takeOverOptions),
          })
          adopted++
        }
        replicas.states.clear()
        replicas.cumulativeAcks.clear()
        tookOver = true
        yield* publish({ _tag: "TookOver", associations: adopted, atMs: yield* now })
        yield* protection(true, "took over: no standby behind this node")
        yield* Effect.logInfo(`took over ${adopted} associations: ${why}`)
        if (options.standbyLink !== undefined) {
          yield* Effect.forkIn(connectToStandby(options.standbyLink), nodeScope)
        }
      })

    // ---- the link -----------------------------------------------------------------------

    const serveLink = (connection: Connection.Connection<Replication.Message>) =>
      Effect.gen(function* () {
        link = connection
        linkEverUp = true
        yield* publish({ _tag: "LinkUp", atMs: yield* now })
        if (serving()) {
          const listener = yield* endpoint.listenerSecrets
          aliasesShipped = ""
          yield* ship([shipper.secrets(listener)])
          yield* shipAliasesIfGrown
          yield* ship(shipper.resend())
          if (serving()) yield* protection(false, "")
        }
        yield* Stream.runForEach(connection.messages, (message) =>
          Effect.gen(function* () {
            if (message._tag === "Ack") {
              acknowledged = Math.max(acknowledged, message.seq)
              lastAckMs = yield* now
              return yield* releaseAcked
            }
            if (message._tag === "Deposed") {
              if (!serving()) return
              role = "deposed"
              closing = true
              yield* releaseAll
              yield* Scope.close(endpointScope, Exit.void)
              yield* publish({ _tag: "Deposed", atMs: yield* now })
              return yield* connection.close
            }
            if (message._tag === "Forward") {
              if (role === "secondary") return
              return yield* endpoint.inject(
                { host: message.host, udpPort: message.udpPort },
                message.bytes,
              )
            }
            if (role !== "secondary") return
            if (message._tag === "Aliases") yield* endpoint.addAliases(message.aliases)
            const rejected = replicas.apply(message)
            lastAppliedMs = yield* now
            if (rejected !== undefined) {
              yield* publish({ _tag: "ReplicaRejected", detail: rejected.detail })
              return yield* connection.close
            }
            yield* Effect.ignore(connection.send({ _tag: "Ack", seq: replicas.applied }))
          }),
        )
        const reason = yield* connection.closed
        link = undefined
        yield* releaseAll
        yield* publish({ _tag: "LinkDown", reason: reason._tag, atMs: yield* now })
        if (serving()) yield* protection(true, `the link closed (${reason._tag})`)
        if (options.role === "secondary") yield* takeOver(`the link closed (${reason._tag})`)
      })

    if (options.role === "primary") yield* protection(true, "no secondary linked yet")

    /**
     * The serving node keeps (re)connecting to its standby (never faster than every 100 ms);
     * without one it runs alone, and once deposed it stops.
     */
    function connectToStandby(address: Address.StreamAddress): Effect.Effect<void> {
      return Effect.gen(function* () {
        while (serving()) {
          yield* Effect.exit(
            Effect.scoped(Effect.flatMap(transport.connect(address, linkOptions), serveLink)),
          )
          yield* Effect.sleep(Duration.millis(100))
        }
      })
    }

    /** Falls silent for good: the role went to another node, or may have. */
    const stepDown = (next: "deposed", event: ClusterEvent) =>
      Effect.gen(function* () {
        if (role !== "primary" && role !== "active-secondary") return
        role = next
        closing = true
        yield* releaseAll
        yield* Scope.close(endpointScope, Exit.void)
        yield* publish(event)
        if (link !== undefined) yield* link.close
      })

    if (fence !== undefined) {
      if (options.role === "primary") {
        yield* Effect.forkScoped(
          Effect.gen(function* () {
            const epoch = yield* fence.acquire
            yield* publish({ _tag: "Fenced", epoch, atMs: yield* now })
          }),
        )
      }
      yield* Effect.forkScoped(
        Effect.gen(function* () {
          const reason = yield* Deferred.await(fence.lost)
          yield* Effect.logWarning(`fenced out: ${reason}`)
          yield* stepDown("deposed", { _tag: "FencedOut", reason, atMs: yield* now })
        }),
      )
    }

    if (options.role === "secondary") {
      const listener = yield* transport
        .listen(options.link, linkOptions)
        .pipe(Effect.mapError((error) => new ClusterError({ detail: error.message })))
      yield* Effect.forkScoped(
        Stream.runForEach(listener.connections, (connection) =>
          role === "secondary" && link === undefined
            ? serveLink(connection)
            : role === "active-secondary"
              ? // After a takeover, a primary that comes back must fall silent.
                Effect.andThen(
                  Effect.ignore(connection.send({ _tag: "Deposed" })),
                  connection.close,
                )
              : connection.close,
        ),
      )
    } else {
      yield* Effect.forkScoped(connectToStandby(options.link))
    }

    // ---- timers of the policies -------------------------------------------------------

    if (options.policy._tag === "Interval") {
      const everyMs = options.policy.everyMs
      yield* Effect.forkScoped(
        Effect.forever(
          Effect.andThen(Effect.sleep(Duration.millis(everyMs)), () =>
            role === "primary" ? ship(shipper.onTick()) : Effect.void,
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
      if (role !== "primary") return
      const messages = shipper.onImpendingFailure()
      yield* ship(messages)
      yield* waitForAck(shipper.lastSeq)
      role = "handed-over"
      closing = true
      yield* releaseAll
      yield* Scope.close(endpointScope, Exit.void)
      yield* publish({ _tag: "Synced", reason: "ImpendingFailure", messages: messages.length })
    })

    if (options.healthCheck !== undefined) {
      const check = options.healthCheck
      const everyMs = options.healthEveryMs ?? 200
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
        role,
        policy: Replication.formatPolicy(options.policy),
        link: link === undefined ? "down" : "up",
        unprotected,
        replication: {
          shipped: shipper.lastSeq,
          acknowledged,
          applied: replicas.applied,
          lagMs: last === undefined ? undefined : nowMs - last,
        },
        associations,
        replicas: replicas.states.size,
        received: { ...received },
        endpoint: yield* endpoint.stats,
        fence: fence === undefined ? undefined : yield* fence.status,
      } satisfies Status
    })

    return {
      endpoint,
      status,
      events: Stream.fromPubSub(events),
      accepted: Stream.fromPubSub(accepted),
      impendingFailure,
      received: Effect.sync(() => ({ ...received })),
    } satisfies Node
  })
