/**
 * The takeover: every copy the secondary holds (or, state-node, reads from the store) adopted
 * by its endpoint, exact or resynchronised by the policy, with the peer asked to send here
 * (`failover.ts`); and the replicas this node refuses.
 */
import type { Store } from "@understudy/store"
import { Effect, Option } from "effect"
import * as Association from "../../Association.ts"
import * as Metrics from "../../Metrics.ts"
import * as Replication from "../../Replication.ts"
import type { NodeContext } from "./context.ts"
import { askPeerForPrimary } from "./failover.ts"
import { servingEpochKey, storeKey } from "./shipping.ts"

/** Adopts every copy (the role machine's `TakeOver`): the node serves them from now on. */
export const adoptCopies = (node: NodeContext): Effect.Effect<number> =>
  Effect.gen(function* () {
    const { options, replicas } = node
    const stored =
      options.policy._tag === "StateNode" && options.store !== undefined
        ? yield* readStored(node, options.store)
        : undefined
    for (const entry of stored?.adopt ?? []) {
      const rejected = replicas.apply(entry.message)
      if (rejected !== undefined) yield* rejectReplica(node, "damaged-replica", rejected.detail)
    }
    if (replicas.listener !== undefined) {
      yield* node.endpoint.adoptListenerSecrets(replicas.listener)
    }
    // A copy kept by an inexact policy may be behind the primary: it resynchronises with
    // the peer (see `Replicas.takeOverOptions`); an exact copy goes on as it is.
    /** The primary's association id → this node's, for those adopted. */
    const adoptedAs = new Map<number, number>()
    const adopted: Array<Association.State> = []
    for (const [association, state] of replicas.states) {
      if (Association.stateName(state) === "Closed") continue
      // A handover's copy is exact (its last updates were shipped, or snapshotted): what
      // is in flight stays so, and the peer is always asked to send here.
      const takeOverOptions: Association.TakeOverOptions = node.plannedTakeOver
        ? { handover: true, setPrimary: options.bind.host }
        : {
            ...replicas.takeOverOptions(options.policy, association),
            ...askPeerForPrimary(options),
          }
      const handle = yield* node.endpoint.adopt(state, {
        takeOver: (state: Association.State, nowMs: number) =>
          Association.takeOver(state, nowMs, takeOverOptions),
      })
      adoptedAs.set(association, handle.id)
      adopted.push(state)
    }
    node.adoptedStates = adopted
    replicas.states.clear()
    replicas.cumulativeAcks.clear()
    if (stored !== undefined && options.store !== undefined) {
      yield* settleStore(node, options.store, stored, adoptedAs)
    }
    return adoptedAs.size
  }).pipe(
    Effect.withSpan("multihome.takeover", {
      attributes: {
        "understudy.node": node.nodeId,
        "understudy.policy": node.options.policy._tag,
      },
    }),
  )

/**
 * state-node, at takeover: the snapshots to adopt. One older than the epoch of the last
 * primary that completed its takeover, or than another snapshot of the same association,
 * was written late by a primary already fenced out: refused and counted
 * (`Replication.chooseStored`).
 */
const readStored = (node: NodeContext, store: Store.Store["Service"]) =>
  Effect.gen(function* () {
    const none = { adopt: [], stale: [] } satisfies ReturnType<typeof Replication.chooseStored>
    const range = yield* Effect.result(store.range(`${node.storePrefix}association/`))
    if (range._tag === "Failure") {
      yield* node.publish({
        _tag: "ReplicaRejected",
        detail: `the store did not answer: ${range.failure.message}`,
      })
      return none
    }
    const floor = yield* store.get(servingEpochKey(node)).pipe(
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
        yield* rejectReplica(node, "damaged-replica", `${entry.key}: ${why}`)
      }
    }
    const chosen = Replication.chooseStored(decoded, floor)
    for (const entry of chosen.stale) {
      yield* rejectReplica(
        node,
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
  node: NodeContext,
  store: Store.Store["Service"],
  stored: ReturnType<typeof Replication.chooseStored>,
  adoptedAs: ReadonlyMap<number, number>,
) =>
  Effect.gen(function* () {
    let settled = true
    for (const entry of stored.stale) yield* Effect.ignore(store.delete(entry.key))
    for (const entry of stored.adopt) {
      const id = adoptedAs.get(entry.message.association)
      if (id !== undefined && !node.storedAtEpoch.has(id)) {
        settled = false
        continue
      }
      if (id === undefined || entry.key !== storeKey(node, id, node.shipper.epoch)) {
        yield* Effect.ignore(store.delete(entry.key))
      }
    }
    if (settled && node.shipper.epoch > 0) {
      yield* Effect.ignore(
        store.put(servingEpochKey(node), new TextEncoder().encode(String(node.shipper.epoch))),
      )
    }
  })

/** A replica refused: counted, logged and told. */
export const rejectReplica = (
  node: NodeContext,
  reason: "damaged-replica" | "stale-snapshot" | "stale-epoch",
  detail: string,
) =>
  Effect.gen(function* () {
    yield* Metrics.refused(reason)
    yield* node.logged(Effect.logWarning(`replica refused (${reason}): ${detail}`))
    yield* node.publish({ _tag: "ReplicaRejected", detail })
  })
