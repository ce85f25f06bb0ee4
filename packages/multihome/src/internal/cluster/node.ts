/**
 * One node of the cluster (`Cluster.make`): checks its options, builds its context
 * (`context.ts`), makes its endpoint, starts the link (listening on the secondary, dialling
 * on the primary), the fence and the policies' timers, and falls silent first when its scope
 * closes.
 */
import { Address, Datagram, Transport } from "@understudy/transport"
import {
  type Cause,
  Clock,
  Deferred,
  Duration,
  Effect,
  Exit,
  PubSub,
  Queue,
  Result,
  Scope,
  Stream,
} from "effect"
import * as Association from "../../Association.ts"
import * as ClusterRole from "../../ClusterRole.ts"
import type * as Endpoint from "../../Endpoint.ts"
import * as Fence from "../../Fence.ts"
import * as Replication from "../../Replication.ts"
import { associationConfig } from "../endpoint/options.ts"
import { releaseAddress } from "./address.ts"
import type { NodeContext } from "./context.ts"
import { start } from "./endpoint.ts"
import { handOver, handOverPacketsMax } from "./handover.ts"
import { connectToStandby, onIncoming } from "./link.ts"
import {
  ClusterError,
  type ClusterEvent,
  type ForwardedPacket,
  type Node,
  type Options,
  services,
} from "./models.ts"
import { performInitial, stepRole } from "./role.ts"
import { impendingFailure, protection, releaseAll, runPolicyTimers } from "./shipping.ts"
import { status } from "./status.ts"
import { decodeTimings } from "./timings.ts"

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
    const decoded = decodeTimings(options)
    if (Result.isFailure(decoded)) {
      return yield* new ClusterError({ detail: `invalid cluster options: ${decoded.failure}` })
    }
    const timings = decoded.success
    const { linkKeepAlive } = timings
    const transport = yield* Transport.Transport
    const datagram = yield* Datagram.Datagram
    // Counts the bytes of the primary's replication messages as they are encoded for the link.
    const countingCodec = {
      ...Replication.codec,
      encode: (message: Replication.Message) => {
        const encoded = Replication.codec.encode(message)
        if (encoded._tag === "Success" && Replication.epochOf(message) !== undefined) {
          node.linkBytes += encoded.success.length
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
    const now = Clock.currentTimeMillis
    const nodeScope = yield* Effect.scope

    // The role logic is the pure machine `ClusterRole`; `role.ts` performs its actions.
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
    const nodeId = Address.format(options.bind)
    // Its id breaks the tie between two serving nodes of one epoch (see `ClusterRole`).
    const initialRole = roleMachine.init({ self: nodeId, peers: ["link"], nowMs: yield* now })
    const endpointConfig: Endpoint.AssociationOptions = {
      ...options.config,
      localAddresses: options.addresses,
    }
    const decodedConfig = associationConfig(Association.defaultConfig, endpointConfig)
    if (Result.isFailure(decodedConfig)) {
      return yield* new ClusterError({ detail: decodedConfig.failure.message })
    }
    const config: Association.Config = { ...decodedConfig.success, localPort: options.port }
    const fenceHeld = yield* Deferred.make<void>()
    const diverted = yield* Queue.dropping<ForwardedPacket, Cause.Done>(handOverPacketsMax)
    const handOverEnded = yield* Deferred.make<boolean>()
    const fence =
      options.fence === undefined
        ? undefined
        : yield* Fence.make({
            store: options.fence.store,
            prefix: storePrefix,
            holder: `${options.role}@${Address.format(options.bind)}`,
            ...(timings.fenceLeaseMs !== undefined
              ? { lease: Duration.millis(timings.fenceLeaseMs) }
              : {}),
          }).pipe(Effect.mapError((error) => new ClusterError({ detail: error.message })))

    const node: NodeContext = {
      options,
      timings,
      transport,
      datagram,
      service: options.service ?? services.echo,
      linkOptions,
      storePrefix,
      isEveryUpdate: options.policy._tag === "EveryUpdate",
      failover: options.failover ?? "asconf",
      nodeId,
      nodeScope,
      now,
      publish: (event) => PubSub.publish(events, event),
      logged: (effect) =>
        Effect.suspend(() =>
          Effect.annotateLogs(effect, {
            node: nodeId,
            role: node.roleState.role,
            epoch: node.roleState.epoch,
          }),
        ),
      fence,
      fenceHeld,
      roleMachine,
      roleState: initialRole.state,
      roleTimers: new Map(),
      roleTimersSet: 0,
      linkEnd: undefined,
      link: undefined,
      shipper: new Replication.Shipper(options.policy),
      replicas: new Replication.Replicas(config),
      linkBytes: 0,
      acknowledged: 0,
      lastAckMs: undefined,
      ackWaiters: [],
      lastAppliedMs: undefined,
      unprotected: false,
      storedAtEpoch: new Set(),
      aliasesShipped: "",
      // Set by `start` below, before any hook that reads them can run.
      endpoint: undefined as unknown as Endpoint.Endpoint,
      endpointScope: undefined as unknown as Scope.Closeable,
      received: { messages: 0, bytes: 0 },
      closing: false,
      takeoverStartedMs: undefined,
      acquiringFence: false,
      plannedTakeOver: false,
      adoptedStates: [],
      addressTakeover: undefined,
      handOverAfter: undefined,
      diverted,
      forwardedCount: 0,
      handOverForwarder: undefined,
      handOverEnded,
      neverReleased: Deferred.makeUnsafe<void>(),
      pendingHandOver: undefined,
      handOverFrom: undefined,
      heldForwards: [],
    }

    // The secondary listens before it binds: a node that took its address over (`takeover`)
    // gives it back once its link to this node is up.
    const linkListener =
      options.role === "secondary"
        ? yield* transport
            .listen(options.link, linkOptions)
            .pipe(Effect.mapError((error) => new ClusterError({ detail: error.message })))
        : undefined
    const accepted = yield* start(node, endpointConfig, linkListener !== undefined)

    if (options.role === "primary") yield* protection(node, true, "no secondary linked yet")

    if (fence !== undefined) {
      // The primary acquires the fence at start (the machine's first action).
      yield* Effect.forkScoped(performInitial(node, initialRole.outputs))
      yield* Effect.forkScoped(
        Effect.gen(function* () {
          const reason = yield* Deferred.await(fence.lost)
          yield* stepRole(node, { _tag: "FenceLost", reason })
        }),
      )
    }

    if (linkListener !== undefined) {
      yield* Effect.forkScoped(
        Stream.runForEach(linkListener.connections, (connection) => onIncoming(node, connection)),
      )
    } else {
      yield* Effect.forkScoped(connectToStandby(node, options.link))
    }

    yield* runPolicyTimers(node)

    // Registered last, so it runs first when the node closes: it falls silent as a deposed
    // primary does, before its link and timers stop, so it neither takes in a packet nor
    // sends a SACK the secondary would never hear of. An update waiting for an ack holds the
    // endpoint's lock, which the endpoint's own finalizer needs: let it go first (its
    // outputs are gated by `mayTransmit`). An address it took over leaves this host with it
    // (as keepalived removes its virtual IPs on shutdown).
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        node.closing = true
        return releaseAll(node).pipe(
          Effect.andThen(Scope.close(node.endpointScope, Exit.void)),
          Effect.andThen(releaseAddress(node)),
        )
      }),
    )

    return {
      endpoint: node.endpoint,
      status: status(node),
      events: Stream.fromPubSub(events),
      accepted: Stream.fromPubSub(accepted),
      impendingFailure: impendingFailure(node),
      handOver: handOver(node),
      received: Effect.sync(() => ({ ...node.received })),
    } satisfies Node
  })
