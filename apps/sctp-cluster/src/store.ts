/**
 * `sctp-cluster store`: a `StoreServer` over a `MemoryStore`, the third node of the
 * `state-node` policy (claims 7, 18): both cluster nodes keep the associations' state there.
 * It prints one `started` JSON line with the address it listens on.
 *
 * @since 0.1.0
 */
import { MemoryStore, StoreServer } from "@understudy/store"
import { Address, NodeTransport } from "@understudy/transport"
import { Deferred, Effect, Layer } from "effect"
import type { Invocation } from "./cli.ts"
import { clusterKeyOf, exitCode, line, type StopReason } from "./common.ts"

/** Serves until a signal. @since 0.1.0 */
export const store = (
  invocation: Extract<Invocation, { readonly _tag: "Store" }>,
  stop: Deferred.Deferred<StopReason>,
): Effect.Effect<number, unknown> =>
  Effect.gen(function* () {
    const clusterKey = yield* clusterKeyOf(invocation.clusterKeyFile)
    const server = yield* StoreServer.serve(
      invocation.listen,
      clusterKey !== undefined ? { clusterKey } : {},
    )
    line({ t: "started", pid: process.pid, listen: Address.format(server.address) })
    const reason = yield* Deferred.await(stop)
    line({ t: "stopping", reason })
    return exitCode.ok
  }).pipe(Effect.scoped, Effect.provide(Layer.merge(MemoryStore.layer, NodeTransport.layer)))
