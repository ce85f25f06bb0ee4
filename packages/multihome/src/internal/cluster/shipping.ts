/**
 * The serving node's replication: each update shipped by the policy's plan (`Replication.Shipper`)
 * to the secondary, or written to the store (state-node), its outputs held until the
 * secondary's ack where the policy says so; the policies' timers and the impending failure's
 * last synchronisation; and whether the node serves unprotected.
 */
import type { Store } from "@understudy/store"
import { Deferred, Duration, Effect, Metric, type Scope } from "effect"
import * as Metrics from "../../Metrics.ts"
import * as Replication from "../../Replication.ts"
import type { NodeContext } from "./context.ts"
import { divertUpdate } from "./handover.ts"
import { unprotectedMetric, unprotectedUpdatesMetric } from "./metrics.ts"
import { stepRole } from "./role.ts"

/** Resolves the updates the secondary acknowledged. */
export const releaseAcked = Effect.fnUntraced(function* (node: NodeContext) {
  for (let index = node.ackWaiters.length - 1; index >= 0; index--) {
    const waiter = node.ackWaiters[index]!
    if (waiter.seq <= node.acknowledged) {
      node.ackWaiters.splice(index, 1)
      yield* Deferred.succeed(waiter.done, undefined)
    }
  }
})

/** Without a secondary there is nobody to wait for. */
export const releaseAll = Effect.fnUntraced(function* (node: NodeContext) {
  for (const waiter of node.ackWaiters.splice(0)) yield* Deferred.succeed(waiter.done, undefined)
})

/** Says when the node starts or stops serving with nobody holding its updates. */
export const protection = Effect.fnUntraced(function* (
  node: NodeContext,
  now_: boolean,
  reason: string,
) {
  if (node.unprotected === now_) return
  node.unprotected = now_
  yield* Metric.update(unprotectedMetric, now_ ? 1 : 0)
  const atMs = yield* node.now
  if (now_) {
    yield* node.logged(Effect.logWarning(`serving unprotected: ${reason}`))
    yield* node.publish({ _tag: "Unprotected", reason, atMs })
  } else yield* node.publish({ _tag: "Protected", atMs })
})

const linkBytesMetric = Metric.withAttributes(Metrics.replicationBytes, { target: "link" })

/** The replication metrics: bytes encoded for the link since the last call, and the lag. */
export const recordReplication = (node: NodeContext): Effect.Effect<void> =>
  Effect.suspend(() => {
    const bytes = node.linkBytes
    node.linkBytes = 0
    return Effect.andThen(
      bytes > 0 ? Metric.update(linkBytesMetric, bytes) : Effect.void,
      Metric.update(Metrics.replicationLag, Math.max(0, node.shipper.lastSeq - node.acknowledged)),
    )
  })

export const ship = (
  node: NodeContext,
  messages: ReadonlyArray<Replication.Message>,
): Effect.Effect<void> =>
  node.link === undefined || messages.length === 0
    ? Effect.void
    : Effect.andThen(Effect.ignore(node.link.sendAll(messages)), recordReplication(node))

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
export const waitForAck: (
  node: NodeContext,
  seq: number,
) => Effect.Effect<Deferred.Deferred<void> | undefined> = Effect.fnUntraced(function* (
  node: NodeContext,
  seq: number,
) {
  if (node.link === undefined || node.closing || node.acknowledged >= seq) return undefined
  const done = yield* Deferred.make<void>()
  node.ackWaiters.push({ seq, done })
  if (node.options.policy._tag === "EveryUpdate") return done
  yield* Deferred.await(done).pipe(Effect.timeoutOption(Duration.millis(node.timings.ackTimeoutMs)))
  return undefined
})

/**
 * state-node: each primary writes an association under its own epoch, so a late write
 * of a primary already fenced out never overwrites a newer one (see
 * `Replication.chooseStored`).
 */
export const storeKey = (node: NodeContext, association: number, epoch: number): string =>
  `${node.storePrefix}association/${association}/${epoch}`

/** state-node: the key of the epoch of the last primary that completed its takeover. */
export const servingEpochKey = (node: NodeContext): string => `${node.storePrefix}serving-epoch`

/** Sends the secondary the endpoint's alias table if it changed since last sent. */
export const shipAliasesIfGrown = Effect.fnUntraced(function* (node: NodeContext) {
  const table = yield* node.endpoint.aliases
  const key = JSON.stringify(table)
  if (key === node.aliasesShipped || node.link === undefined) return
  node.aliasesShipped = key
  yield* ship(node, [node.shipper.aliases(table)])
})

/** The endpoint's hook, after each update and before its outputs (see `waitForAck`). */
export const beforeOutputs = Effect.fnUntraced(function* (
  node: NodeContext,
  update: Replication.Update,
) {
  const { options, shipper } = node
  if (node.roleState.role === "secondary") return
  // A primary that can not prove its role ships nothing (its outputs are dropped too).
  if (node.fence !== undefined && !(yield* node.fence.holds)) return
  // Handing over: checked in the same synchronous run as the seq is taken, so every
  // update is either shipped before `HandOver` (seq ≤ its `after`) or forwarded.
  if (node.handOverAfter !== undefined) return divertUpdate(node, update)
  const plan = shipper.onUpdate(update)
  if (node.unprotected && plan.messages.length > 0) {
    yield* Metric.update(unprotectedUpdatesMetric, 1)
  }
  if (update.created) yield* shipAliasesIfGrown(node)
  yield* ship(node, plan.messages)
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
      options.store.put(storeKey(node, plan.store.association, shipper.epoch), encoded.success),
    )
    // The store is down: go on (like a primary whose secondary died) but say so.
    if (written._tag === "Failure") {
      yield* node.publish({ _tag: "StoreWriteFailed", association: plan.store.association })
    } else {
      node.storedAtEpoch.add(plan.store.association)
      yield* Metric.update(
        Metric.withAttributes(Metrics.replicationBytes, { target: "store" }),
        encoded.success.length,
      )
    }
  }
  if (plan.forget !== undefined && options.store !== undefined) {
    node.storedAtEpoch.delete(plan.forget)
    yield* forgetStored(node, options.store, plan.forget)
  }
  return plan.waitForAck ? yield* waitForAck(node, shipper.lastSeq) : undefined
})

/** Deletes every copy of an ended association, whichever epoch wrote it. */
const forgetStored = (node: NodeContext, store: Store.Store["Service"], association: number) =>
  Effect.ignore(
    Effect.flatMap(store.range(`${node.storePrefix}association/${association}/`), (copies) =>
      Effect.forEach(copies.items, (copy) => store.delete(copy.key), { discard: true }),
    ),
  )

/**
 * Claims 5–6: one synchronisation when failure is near. The primary then falls silent
 * (its endpoint closes without a word to the peer), so the copy it just sent stays
 * exact: nothing it would do between the sync and its death can be lost.
 */
export const impendingFailure = (node: NodeContext): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (node.roleState.role !== "primary") return
    const messages = node.shipper.onImpendingFailure()
    yield* ship(node, messages)
    yield* waitForAck(node, node.shipper.lastSeq)
    yield* stepRole(node, { _tag: "HandedOver" })
    yield* node.publish({ _tag: "Synced", reason: "ImpendingFailure", messages: messages.length })
  })

/**
 * The policies' own timers, until the scope closes: `interval`'s snapshots of what changed,
 * and the health check whose `false` is an impending failure.
 */
export const runPolicyTimers = (node: NodeContext): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const everyMs = node.timings.intervalMs
    if (everyMs !== undefined) {
      yield* Effect.forkScoped(
        Effect.forever(
          Effect.andThen(Effect.sleep(Duration.millis(everyMs)), () =>
            node.roleState.role === "primary" ? ship(node, node.shipper.onTick()) : Effect.void,
          ),
        ),
      )
    }
    if (node.options.healthCheck !== undefined) {
      const check = node.options.healthCheck
      const everyMs = node.timings.healthEveryMs
      yield* Effect.forkScoped(
        Effect.gen(function* () {
          for (;;) {
            yield* Effect.sleep(Duration.millis(everyMs))
            if (!(yield* check)) return yield* impendingFailure(node)
          }
        }),
      )
    }
  })
