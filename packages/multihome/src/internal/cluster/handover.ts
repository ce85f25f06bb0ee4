/**
 * The planned handover (`Node.handOver`), both halves. The old primary stops stepping what
 * reaches it and forwards it, after `HandOver`, to the secondary; the secondary takes over
 * once it applied everything shipped before, injects what was forwarded, and tells the old
 * primary to stop once the peer acknowledged its ASCONF.
 */
import { Machine } from "@understudy/machine"
import { Deferred, Duration, Effect, Fiber, Option, Queue, Stream } from "effect"
import * as Asconf from "../../Asconf.ts"
import * as Replication from "../../Replication.ts"
import type { Link, NodeContext } from "./context.ts"
import { ClusterError, type ForwardedPacket, type HandOverReport } from "./models.ts"
import { runRole, stepRole } from "./role.ts"
import { ship } from "./shipping.ts"

/** Planned handover: how long the new primary waits for the peer's ASCONF-ACK before it lets the old one go. */
const handOverConfirmMs = 5_000

/** Planned handover: how long the old primary waits for the new one before it ends the link. */
const handOverBoundMs = 10_000

/** Packets held on their way during a handover (the peer retransmits one dropped past it). */
export const handOverPacketsMax = 4_096

/** Old primary: a packet that reached it while it hands over (dropped past the bound). */
export function divertPacket(node: NodeContext, packet: ForwardedPacket): void {
  Queue.offerUnsafe(node.diverted, packet)
}

/** Secondary: a packet forwarded while the handover is pending (dropped past the bound). */
export function holdForward(node: NodeContext, packet: ForwardedPacket): void {
  if (node.heldForwards.length < handOverPacketsMax) node.heldForwards.push(packet)
}

/**
 * Old primary, an update after the handover began (the node had taken its packets in
 * before it diverted them): the packets go to the secondary, which steps them itself;
 * the outputs never leave.
 */
export function divertUpdate(
  node: NodeContext,
  update: Replication.Update,
): Deferred.Deferred<void> {
  for (const input of update.inputs) {
    const wire = Replication.toWire(input)
    if (wire._tag === "Receive") {
      divertPacket(node, { from: { host: wire.host, udpPort: wire.udpPort }, bytes: wire.bytes })
    }
  }
  return node.neverReleased
}

/**
 * Old primary, the role machine's `HandOver`: from now on what reaches the node goes to
 * the secondary, after `HandOver` (the link keeps order); the copy is made exact first
 * (every-update: it is; the other policies: one snapshot of everything).
 */
export const beginHandOver = (node: NodeContext, to: Link | undefined) =>
  Effect.gen(function* () {
    const { shipper } = node
    const messages = node.isEveryUpdate ? [] : shipper.onImpendingFailure()
    const after = shipper.lastSeq
    node.handOverAfter = after
    const startedMs = yield* node.now
    node.takeoverStartedMs = startedMs
    yield* node.logged(Effect.logInfo(`handing over to the secondary after message ${after}`))
    yield* node.publish({ _tag: "HandingOver", atMs: startedMs })
    if (to === undefined) return
    yield* ship(node, messages)
    yield* Effect.ignore(to.send({ _tag: "HandOver", epoch: shipper.epoch, after }))
    node.handOverForwarder = yield* Effect.forkIn(
      Stream.runForEach(Stream.fromQueue(node.diverted), (packet) => {
        node.forwardedCount++
        return Effect.ignore(
          to.send({
            _tag: "Forward",
            host: packet.from.host,
            udpPort: packet.from.udpPort,
            bytes: packet.bytes,
          }),
        )
      }),
      node.nodeScope,
    )
  })

/**
 * Old primary, fallen silent during its handover: what is still on its way goes to the
 * new primary (the endpoint is closed: nothing more arrives), then the link ends.
 */
export const endHandOver = (node: NodeContext, open: Link | undefined, detail: string) =>
  Effect.gen(function* () {
    yield* Queue.end(node.diverted)
    if (node.handOverForwarder !== undefined) {
      yield* Fiber.join(node.handOverForwarder).pipe(
        Effect.timeoutOption(Duration.millis(1_000)),
        Effect.ignore,
      )
    }
    const confirmed = detail === "the secondary took over"
    yield* node.publish({
      _tag: "HandedOver",
      confirmed,
      forwarded: node.forwardedCount,
      atMs: yield* node.now,
    })
    yield* Deferred.succeed(node.handOverEnded, confirmed)
    if (open !== undefined) yield* open.close
  })

/**
 * Secondary: takes over once it applied every message the primary shipped before
 * `HandOver` (they may still be on their way when it arrives).
 */
// Asked after every applied message: made once (see `waitForAck`).
export const takeOverIfCaughtUp = Effect.fnUntraced(function* (
  node: NodeContext,
  connection: Link,
) {
  const pending = node.pendingHandOver
  if (pending === undefined || node.replicas.applied < pending.after) return
  node.pendingHandOver = undefined
  const handOver = { _tag: "HandOver" as const, epoch: pending.epoch }
  yield* runRole(node, Machine.receive("link", handOver, yield* node.now), connection).pipe(
    Effect.withSpan("multihome.failover", {
      attributes: { "understudy.node": node.nodeId, "understudy.trigger": "handover" },
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
export const confirmHandOver = (node: NodeContext, to: Link) =>
  Effect.gen(function* () {
    const deadlineMs = (yield* node.now) + handOverConfirmMs
    const moved = () => node.adoptedStates.every(Asconf.acknowledged)
    while (!moved() && (yield* node.now) < deadlineMs) yield* Effect.sleep(Duration.millis(10))
    if (!moved()) {
      return yield* node.logged(
        Effect.logWarning(
          `handover: no ASCONF-ACK within ${handOverConfirmMs} ms; the old primary forwards until its bound`,
        ),
      )
    }
    yield* node.logged(Effect.logInfo("handover: the peer moved here; the old primary may stop"))
    yield* Effect.ignore(to.send({ _tag: "Deposed", epoch: node.roleState.epoch }))
  })

/** Old primary: `Node.handOver`. */
export const handOver = (node: NodeContext): Effect.Effect<HandOverReport, ClusterError> =>
  Effect.gen(function* () {
    const startedMs = yield* node.now
    const answer = yield* stepRole(node, { _tag: "HandOver" })
    const refused = answer.find((action) => action._tag === "HandOverRefused")
    if (refused !== undefined) {
      return yield* new ClusterError({ detail: `no handover: ${refused.detail}` })
    }
    const ended = yield* Deferred.await(node.handOverEnded).pipe(
      Effect.timeoutOption(Duration.millis(handOverBoundMs)),
    )
    // No word from the new primary: ending the link makes it take over as after a failure.
    if (Option.isNone(ended) && node.link !== undefined) yield* node.link.close
    const confirmed = yield* Deferred.await(node.handOverEnded)
    return {
      confirmed,
      forwarded: node.forwardedCount,
      durationMs: (yield* node.now) - startedMs,
    }
  }).pipe(Effect.withSpan("multihome.handover", { attributes: { "understudy.node": node.nodeId } }))
