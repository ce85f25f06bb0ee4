/** What `Node.status` shows (`sctp-cluster status`): never a tag, a TSN or a secret. */
import { Effect, Option } from "effect"
import * as Replication from "../../Replication.ts"
import type { NodeContext } from "./context.ts"
import { type AddressTakeover, type AssociationSummary, type Status, summarise } from "./models.ts"

export const status = (node: NodeContext): Effect.Effect<Status> =>
  Effect.gen(function* () {
    const { options, endpoint, fence } = node
    const handles = yield* endpoint.associations
    const associations: Array<AssociationSummary> = []
    for (const handle of handles) {
      const info = yield* Effect.option(handle.status)
      if (Option.isSome(info)) associations.push(summarise(handle.id, info.value))
    }
    const nowMs = yield* node.now
    const last = options.role === "primary" ? node.lastAckMs : node.lastAppliedMs
    return {
      role: node.roleState.role,
      policy: Replication.formatPolicy(options.policy),
      link: node.link === undefined ? "down" : "up",
      unprotected: node.unprotected,
      replication: {
        shipped: node.shipper.lastSeq,
        acknowledged: node.acknowledged,
        applied: node.replicas.applied,
        lagMs: last === undefined ? undefined : nowMs - last,
        staleRefused: node.roleState.refused,
      },
      associations,
      replicas: node.replicas.states.size,
      received: { ...node.received },
      endpoint: yield* endpoint.stats,
      fence: fence === undefined ? undefined : yield* fence.status,
      failover: node.failover,
      addressTakeover: takeoverOf(node),
    } satisfies Status
  })

/** The address takeover as shown: without its scope and socket. */
const takeoverOf = (node: NodeContext): AddressTakeover | undefined => {
  const taken = node.addressTakeover
  return taken === undefined
    ? undefined
    : { host: taken.host, state: taken.state, packets: taken.packets }
}
