/**
 * docs/store.md, "A lock that dies with its holder", with Promises: the same lock, taken
 * from async code. A `ManagedRuntime` holds a client of the store (`RemoteStore`); each
 * call runs one Effect and gives back a Promise, a refusal rejects it.
 */
import { MemoryStore, RemoteStore, Store, StoreServer } from "@understudy/store"
import { Address, NodeTransport } from "@understudy/transport"
import { Effect, Exit, Layer, ManagedRuntime, Option, Scope } from "effect"

const text = (s: string) => new TextEncoder().encode(s)

export const main = async () => {
  // One process serves a memory store on loopback (here, this one).
  const serverScope = Scope.makeUnsafe()
  const server = await Effect.runPromise(
    StoreServer.serve(Address.tcp("127.0.0.1", 0)).pipe(
      Effect.provide(Layer.merge(MemoryStore.layer, NodeTransport.layer)),
      Scope.provide(serverScope),
    ),
  )
  const runtime = ManagedRuntime.make(
    Layer.provide(RemoteStore.layer({ address: server.address }), NodeTransport.layer),
  )
  const store = await runtime.runPromise(
    Effect.gen(function* () {
      return yield* Store.Store
    }),
  )
  try {
    const lease = await runtime.runPromise(store.grantLease(1_000))
    await runtime.runPromise(
      store.put("/locks/build", text("worker-1"), { lease: lease.id, ifModRevision: 0 }),
    )
    const second = await runtime
      .runPromise(store.put("/locks/build", text("worker-2"), { ifModRevision: 0 }))
      .then(
        () => "taken",
        // The Promise rejects with the typed error: here a `Conflict`.
        (error: { readonly _tag?: string }) => error._tag ?? "unknown",
      )
    // worker-1 dies: nobody keeps its lease alive, and the lock goes with it.
    await runtime.runPromise(store.revokeLease(lease.id))
    const after = await runtime.runPromise(store.get("/locks/build"))
    return { second, lockedAfter: Option.isSome(after) }
  } finally {
    await runtime.dispose()
    await Effect.runPromise(Scope.close(serverScope, Exit.void))
  }
}

if (import.meta.main) {
  main().then((result) => console.log(result))
}
