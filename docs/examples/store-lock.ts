/**
 * docs/store.md, "A lock that dies with its holder": a key created only if absent, on a
 * lease; a second process (here, a second client of the same StoreServer) is refused until
 * the first one's lease ends — and watches the whole story.
 */

import { MemoryStore, RemoteStore, Store, StoreServer } from "@understudy/store"
import { Address, NodeTransport } from "@understudy/transport"
import { Effect, Exit, Fiber, Layer, Stream } from "effect"

const text = (s: string) => new TextEncoder().encode(s)

export const program = Effect.gen(function* () {
  // One process serves a memory store on loopback; others reach it with RemoteStore.
  const server = yield* StoreServer.serve(Address.tcp("127.0.0.1", 0)).pipe(
    Effect.provide(MemoryStore.layer),
  )
  const client = Layer.provide(RemoteStore.layer({ address: server.address }), NodeTransport.layer)

  return yield* Effect.gen(function* () {
    const store = yield* Store.Store
    const history = yield* Effect.forkScoped(
      Stream.runCollect(Stream.take(store.watch("/locks/"), 2)),
    )
    const lease = yield* store.grantLease(1_000)
    yield* store.put("/locks/build", text("worker-1"), { lease: lease.id, ifModRevision: 0 })
    const second = yield* Effect.exit(
      store.put("/locks/build", text("worker-2"), { ifModRevision: 0 }),
    )
    // worker-1 dies: nobody keeps its lease alive, and the lock goes with it.
    yield* store.revokeLease(lease.id)
    const events = yield* Fiber.join(history)
    return {
      secondRefused: Exit.isFailure(second),
      events: events.map((event) => event._tag),
    }
  }).pipe(Effect.provide(client))
}).pipe(Effect.scoped, Effect.provide(NodeTransport.layer))

if (import.meta.main) {
  Effect.runPromise(program).then((result) => console.log(result))
}
