/**
 * The role's shell: the role logic is the pure machine `ClusterRole`; this steps it and
 * performs its actions (acquire the fence, take over, hand over, fall silent …), its timers
 * and the one message it sends.
 */
import { Machine } from "@understudy/machine"
import { Deferred, Duration, Effect, Exit, Metric, Scope } from "effect"
import type * as ClusterRole from "../../ClusterRole.ts"
import * as Metrics from "../../Metrics.ts"
import { claimAddress, releaseAddress, takeAddress } from "./address.ts"
import type { Link, NodeContext } from "./context.ts"
import { onRoleTimer } from "./grace.ts"
import { beginHandOver, confirmHandOver, endHandOver } from "./handover.ts"
import { connectToStandby } from "./link.ts"
import { staleReplicationMetric } from "./metrics.ts"
import { protection, releaseAll } from "./shipping.ts"
import { adoptCopies, rejectReplica } from "./takeover.ts"

/** Performs one action of the role machine. */
const perform: (
  node: NodeContext,
  action: ClusterRole.Action,
  connection: Link | undefined,
) => Effect.Effect<void> = Effect.fnUntraced(function* (
  node: NodeContext,
  action: ClusterRole.Action,
  connection: Link | undefined,
) {
  const { options, fence } = node
  switch (action._tag) {
    case "AcquireFence": {
      // Nothing goes out before the old primary's lease ended and the epoch moved on.
      // One acquisition at a time: a takeover given up for a primary that linked again
      // (see `ClusterRole`) leaves its acquisition waiting; begun again, it waits on.
      if (fence === undefined || node.acquiringFence) return
      if (options.role === "secondary") node.takeoverStartedMs ??= yield* node.now
      node.acquiringFence = true
      const epoch = yield* fence.acquire
      node.acquiringFence = false
      return yield* stepRole(node, { _tag: "FenceAcquired", epoch })
    }
    case "Fenced":
      node.shipper.epoch = action.epoch
      yield* Deferred.succeed(node.fenceHeld, undefined)
      return yield* node.publish({ _tag: "Fenced", epoch: action.epoch, atMs: yield* node.now })
    case "TakeOver": {
      node.takeoverStartedMs ??= yield* node.now
      node.plannedTakeOver = action.planned
      // Its replication carries the epoch it serves (the fence's, or the takeover's own).
      node.shipper.epoch = node.roleState.epoch
      // The old primary is no standby: nothing waits for its acks from now on, the
      // takeover's own updates first (the connection stays open for its forwarded
      // packets and the word that it may stop).
      if (action.planned) {
        node.link = undefined
        yield* releaseAll(node)
      }
      // The dead node's address, bound before the first packet (see `claimAddress`); a
      // planned takeover's old node still holds it until it stops.
      if (!action.planned) yield* claimAddress(node)
      const adopted = yield* adoptCopies(node)
      yield* node.logged(Effect.logInfo(`took over ${adopted} associations: ${action.why}`))
      return yield* stepRole(node, { _tag: "TakenOver", associations: adopted })
    }
    case "TookOver": {
      const atMs = yield* node.now
      yield* Metric.update(Metrics.takeovers, 1)
      if (node.takeoverStartedMs !== undefined) {
        yield* Metric.update(Metrics.takeoverMs, atMs - node.takeoverStartedMs)
      }
      yield* node.publish({
        _tag: "TookOver",
        associations: action.associations,
        planned: node.plannedTakeOver,
        atMs,
      })
      // What the primary forwarded during its handover, in the order it came.
      for (const held of node.heldForwards.splice(0)) {
        yield* node.endpoint.inject(held.from, held.bytes)
      }
      if (node.plannedTakeOver && node.handOverFrom !== undefined) {
        yield* Effect.forkIn(confirmHandOver(node, node.handOverFrom), node.nodeScope)
      }
      yield* Effect.forkIn(takeAddress(node), node.nodeScope)
      return yield* protection(node, true, "took over: no standby behind this node")
    }
    case "HandOver":
      return yield* beginHandOver(node, connection ?? node.link)
    case "HandOverRefused":
      return
    case "ConnectStandby":
      if (options.standbyLink === undefined) return
      return yield* Effect.asVoid(
        Effect.forkIn(connectToStandby(node, options.standbyLink), node.nodeScope),
      )
    case "FallSilent": {
      node.closing = true
      yield* releaseAll(node)
      yield* Scope.close(node.endpointScope, Exit.void)
      // An address it took over is no longer this node's to hold: the node that serves
      // now, or the one restarted on it, binds it (kept, a fenced-out node's bind made
      // the restarted standby give up after `addressWait`).
      yield* releaseAddress(node)
      const atMs = yield* node.now
      const silent = `falls silent (${action.reason}): ${action.detail}`
      yield* node.logged(
        action.reason === "HandedOver" ? Effect.logInfo(silent) : Effect.logWarning(silent),
      )
      if (action.reason === "Deposed") yield* node.publish({ _tag: "Deposed", atMs })
      if (action.reason === "FencedOut") {
        yield* node.publish({ _tag: "FencedOut", reason: action.detail, atMs })
      }
      const open = connection ?? node.link
      if (node.handOverAfter !== undefined) return yield* endHandOver(node, open, action.detail)
      if (action.reason === "HandedOver") return
      if (open !== undefined) yield* open.close
      return
    }
    case "Refused":
      yield* Metric.update(staleReplicationMetric, 1)
      return yield* rejectReplica(
        node,
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

/** Performs the actions the role machine's `init` gave (the fenced primary's `AcquireFence`). */
export const performInitial = (
  node: NodeContext,
  outputs: ReadonlyArray<ClusterRole.Output>,
): Effect.Effect<void> =>
  Effect.asVoid(
    Effect.forEach(outputs, (output) =>
      output._tag === "Emit" ? perform(node, output.event, undefined) : Effect.void,
    ),
  )

/**
 * Steps the role machine and performs its outputs in order; returns its actions, some of
 * which are answers for the caller (`AcceptLink`, `Apply`, `Refused` …).
 */
export function runRole(
  node: NodeContext,
  input: Machine.Input<ClusterRole.Message, ClusterRole.Command>,
  connection?: Link,
): Effect.Effect<ReadonlyArray<ClusterRole.Action>> {
  // Per link message on a secondary: its generator function is made once (see `waitForAck`).
  return Effect.gen(() => runRoleSteps(node, input, connection))
}

function* runRoleSteps(
  node: NodeContext,
  input: Machine.Input<ClusterRole.Message, ClusterRole.Command>,
  connection: Link | undefined,
) {
  const { state, outputs } = node.roleMachine.step(node.roleState, input)
  node.roleState = state
  const actions: Array<ClusterRole.Action> = []
  for (const output of outputs) {
    if (output._tag === "Emit") {
      actions.push(output.event)
      yield* perform(node, output.event, connection)
    } else if (output._tag === "SetTimer") {
      const generation = ++node.roleTimersSet
      node.roleTimers.set(output.timer, generation)
      const timer = output.timer
      yield* Effect.forkIn(
        Effect.andThen(
          Effect.sleep(Duration.millis(output.afterMs)),
          Effect.suspend(() => {
            if (node.roleTimers.get(timer) !== generation) return Effect.void
            node.roleTimers.delete(timer)
            return onRoleTimer(node, timer)
          }),
        ),
        node.nodeScope,
      )
    } else if (output._tag === "CancelTimer") {
      node.roleTimers.delete(output.timer)
    } else if (output._tag === "Send") {
      // The one message the role sends: `Deposed`, to whoever is on the other end.
      const to = connection ?? node.link
      if (to !== undefined && output.message._tag === "Deposed") {
        const { epoch, node: id } = output.message
        yield* Effect.ignore(
          to.send({ _tag: "Deposed", epoch, ...(id !== undefined ? { node: id } : {}) }),
        )
      }
    }
  }
  return actions
}

/** Steps the role machine with `command` now. */
export function stepRole(
  node: NodeContext,
  command: ClusterRole.Command,
  connection?: Link,
): Effect.Effect<ReadonlyArray<ClusterRole.Action>> {
  return Effect.flatMap(node.now, (nowMs) =>
    runRole(node, Machine.command(command, nowMs), connection),
  )
}
