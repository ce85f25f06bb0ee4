/**
 * The intra-cluster link: the secondary listens, the serving node connects (again and again,
 * see `connectToStandby`); once up, the serving node resends what the secondary needs and
 * ships every update, and the secondary applies each message (if the role says so), acks it
 * and hears `Deposed`, `Forward` and `HandOver`. Its end may be the primary's failure.
 */
import { Machine } from "@understudy/machine"
import type { Address } from "@understudy/transport"
import { Deferred, Duration, Effect, Stream } from "effect"
import type * as ClusterRole from "../../ClusterRole.ts"
import * as Replication from "../../Replication.ts"
import { releaseAddress } from "./address.ts"
import { type Link, type NodeContext, serving } from "./context.ts"
import { probePartner } from "./grace.ts"
import { divertPacket, holdForward, takeOverIfCaughtUp } from "./handover.ts"
import { runRole, stepRole } from "./role.ts"
import {
  protection,
  recordReplication,
  releaseAcked,
  releaseAll,
  ship,
  shipAliasesIfGrown,
} from "./shipping.ts"
import { rejectReplica } from "./takeover.ts"

/** The role's view of a `Deposed` from the link (an older sender names no node, its epoch 0 when absent). */
const deposedOf = (message: {
  readonly epoch?: number
  readonly node?: string
}): ClusterRole.Message => ({
  _tag: "Deposed",
  epoch: message.epoch ?? 0,
  ...(message.node !== undefined ? { node: message.node } : {}),
})

/** Runs the link until it ends, either end. */
export const serveLink = (node: NodeContext, connection: Link) =>
  Effect.gen(function* () {
    const { fence, shipper, replicas } = node
    node.link = connection
    node.linkEnd = undefined
    yield* stepRole(node, { _tag: "LinkUp" }, connection)
    // A secondary learns the newest epoch from the store before it reads a word of the
    // primary's: a primary the fence has moved past is refused (see `ClusterRole`).
    if (fence !== undefined && node.roleState.role === "secondary") {
      yield* stepRole(node, { _tag: "EpochSeen", epoch: yield* fence.storeEpoch }, connection)
    }
    yield* node.logged(Effect.logInfo("the intra-cluster link is up"))
    yield* node.publish({ _tag: "LinkUp", atMs: yield* node.now })
    // A fenced node ships nothing before it holds the fence (its epoch would be 0).
    if (serving(node) && fence !== undefined) yield* Deferred.await(node.fenceHeld)
    if (serving(node)) {
      yield* releaseAddress(node)
      const listener = yield* node.endpoint.listenerSecrets
      node.aliasesShipped = ""
      yield* ship(node, [shipper.secrets(listener)])
      yield* shipAliasesIfGrown(node)
      yield* ship(node, shipper.resend())
      if (serving(node)) yield* protection(node, false, "")
    }
    const onMessage = Effect.fnUntraced(function* (message: Replication.Message) {
      if (message._tag === "Ack") {
        node.acknowledged = Math.max(node.acknowledged, message.seq)
        node.lastAckMs = yield* node.now
        yield* recordReplication(node)
        return yield* releaseAcked(node)
      }
      if (message._tag === "Deposed") {
        const deposed = deposedOf(message)
        yield* runRole(node, Machine.receive("link", deposed, yield* node.now), connection)
        return
      }
      if (message._tag === "Forward") {
        const forwarded = {
          from: { host: message.host, udpPort: message.udpPort },
          bytes: message.bytes,
        }
        // Crossed a handover on the way: back to the node that takes over.
        if (node.roleState.role === "handing-over") return divertPacket(node, forwarded)
        if (node.pendingHandOver !== undefined) return holdForward(node, forwarded)
        if (node.roleState.role === "secondary") return
        return yield* node.endpoint.inject(
          { host: message.host, udpPort: message.udpPort },
          message.bytes,
        )
      }
      if (message._tag === "HandOver") {
        if (node.roleState.role !== "secondary") return
        node.pendingHandOver = { epoch: message.epoch, after: message.after }
        node.handOverFrom = connection
        return yield* takeOverIfCaughtUp(node, connection)
      }
      const epoch = Replication.epochOf(message) ?? 0
      const verdict = yield* runRole(
        node,
        Machine.receive("link", { _tag: "Replicate", epoch }, yield* node.now),
        connection,
      )
      if (verdict.some((action) => action._tag === "Refused")) return yield* connection.close
      if (!verdict.some((action) => action._tag === "Apply")) return
      if (message._tag === "Aliases") yield* node.endpoint.addAliases(message.aliases)
      const rejected = replicas.apply(message)
      node.lastAppliedMs = yield* node.now
      if (rejected !== undefined) {
        yield* rejectReplica(node, "damaged-replica", rejected.detail)
        return yield* connection.close
      }
      yield* Effect.ignore(connection.send({ _tag: "Ack", seq: replicas.applied }))
      yield* takeOverIfCaughtUp(node, connection)
    })
    yield* Stream.runForEach(connection.messages, onMessage)
    const reason = yield* connection.closed
    node.link = undefined
    // A handover cut short: the takeover below is a failure's (the packets held go in).
    node.pendingHandOver = undefined
    yield* releaseAll(node)
    yield* node.logged(Effect.logInfo(`the intra-cluster link is down (${reason._tag})`))
    const downMs = yield* node.now
    yield* node.publish({ _tag: "LinkDown", reason: reason._tag, atMs: downMs })
    if (serving(node)) yield* protection(node, true, `the link closed (${reason._tag})`)
    if (takesOverOnLinkDown(node)) {
      // Perhaps the failure: the time since the primary was last heard of. The takeover
      // waits the relink grace (the role's timer, see `onRoleTimer`) for the primary.
      const detectionMs = Math.max(0, downMs - (yield* connection.lastHeardAtMs))
      node.linkEnd = { reason: reason._tag, detectionMs }
    }
    yield* stepRole(node, { _tag: "LinkDown", reason: reason._tag })
    if (node.roleState.awaitingRelink !== undefined) {
      yield* Effect.forkIn(probePartner(node), node.nodeScope)
    }
  })

/**
 * A serving node's refused link: its `Deposed` answers are stepped until the dialler
 * hangs up, for at most a keep-alive time-out (a dialler that loses falls silent and
 * closes at once).
 */
const hearClaim = (node: NodeContext, connection: Link) =>
  Stream.runForEach(connection.messages, (message) =>
    message._tag === "Deposed"
      ? Effect.flatMap(node.now, (nowMs) =>
          runRole(node, Machine.receive("link", deposedOf(message), nowMs), connection),
        )
      : Effect.void,
  ).pipe(Effect.timeoutOption(Duration.millis(node.timings.linkKeepAlive.timeoutMs)), Effect.ignore)

/** Whether the link's end makes this node take over (a secondary with a primary's copy). */
const takesOverOnLinkDown = (node: NodeContext) =>
  node.roleState.role === "secondary" && node.roleState.primaryKnown

/** A connection that reached the listening node: served if the role accepts it. */
export const onIncoming = (node: NodeContext, connection: Link) =>
  Effect.gen(function* () {
    const answer = yield* stepRole(node, { _tag: "Incoming", from: "link" }, connection)
    if (answer.some((action) => action._tag === "AcceptLink")) {
      return yield* serveLink(node, connection)
    }
    // Refused by a serving node, which told the dialler its claim: a dialler that
    // outranks it answers with its own before it hangs up (see `ClusterRole`).
    if (serving(node)) yield* hearClaim(node, connection)
    yield* connection.close
  })

/**
 * The serving node keeps (re)connecting to its standby: at once after a link that was
 * up for a keep-alive interval or more (the standby waits only its relink grace, see
 * `ClusterRole`), else every 100 ms (a refused link ends at once); without one it runs
 * alone, and once deposed it stops.
 */
export function connectToStandby(
  node: NodeContext,
  address: Address.StreamAddress,
): Effect.Effect<void> {
  return Effect.gen(function* () {
    while (serving(node)) {
      let linkedAtMs: number | undefined
      yield* Effect.exit(
        Effect.scoped(
          Effect.flatMap(node.transport.connect(address, node.linkOptions), (connection) =>
            Effect.flatMap(node.now, (nowMs) => {
              linkedAtMs = nowMs
              return serveLink(node, connection)
            }),
          ),
        ),
      )
      const upMs = linkedAtMs === undefined ? 0 : (yield* node.now) - linkedAtMs
      if (upMs < node.timings.linkKeepAlive.intervalMs) yield* Effect.sleep(Duration.millis(100))
    }
  })
}
