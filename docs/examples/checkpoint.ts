/**
 * Checkpoint guide: a connection's bundle with one layer ("app") that appends its state to
 * every checkpoint; the server that owns the bundle writes two checkpoints to the store.
 * The store here is in memory; a shared StoreServer or etcd lets another server take over.
 */
import { CheckpointStore, Contributor } from "@understudy/checkpoint"
import { MemoryStore } from "@understudy/store"
import { Effect } from "effect"

export const program = Effect.gen(function* () {
  const store = yield* CheckpointStore.make({
    serverId: "server-a",
    backend: "session",
    prefix: CheckpointStore.defaultPrefix("docs"),
  })
  const bundle = Contributor.makeBundle("session-1", "docs/1")
  // Each layer of the connection's stack contributes its state, and restores from it.
  yield* bundle.register({
    layer: "app",
    append: (draft) => Effect.succeed(Contributor.putLayer(draft, "app", Uint8Array.of(1, 2, 3))),
    // A takeover server restores each layer "unready" from the checkpoint, then readies it.
    restore: () => Effect.void,
    ready: Effect.void,
  })
  // Owning the bundle is a key on this server's lease: if the server dies, it lapses.
  const owned = yield* store.open(bundle)
  const taken = yield* store.take(bundle, owned, "on-demand")
  return { generation: taken.checkpoint.generation, layers: Object.keys(taken.checkpoint.layers) }
}).pipe(Effect.scoped, Effect.provide(MemoryStore.layer))

if (import.meta.main) {
  Effect.runPromise(program).then((result) => console.log(result))
}
