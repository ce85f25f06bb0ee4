/**
 * docs/store.md, "A lock that dies with its holder", with Promises: the same lock, taken
 * from async code with the store's Promise facade. `createStoreServer` serves a memory store
 * on loopback, `createStore` is a client of it; a refused call rejects with its typed error.
 */
import { randomBytes } from "node:crypto"
import { createStore, createStoreServer } from "@understudy/store"

export const main = async () => {
  const clusterKey = new Uint8Array(randomBytes(32))
  // One process serves a memory store on loopback (here, this one); its log lines go to
  // `logger` instead of the console.
  const server = await createStoreServer({
    listen: "tcp://127.0.0.1:0",
    clusterKey,
    logger: () => {},
  })
  const store = await createStore({ backend: { remote: server.address }, clusterKey })
  try {
    const lease = await store.grantLease(1_000)
    await store.put("/locks/build", "worker-1", { lease: lease.id, ifModRevision: 0 })
    const second = await store.put("/locks/build", "worker-2", { ifModRevision: 0 }).then(
      () => "taken",
      // The Promise rejects with the typed error: here a `Conflict`.
      (error: { readonly _tag?: string }) => error._tag ?? "unknown",
    )
    // worker-1 dies: nobody keeps its lease alive, and the lock goes with it.
    await store.revokeLease(lease.id)
    const after = await store.get("/locks/build")
    return { second, lockedAfter: after !== undefined }
  } finally {
    await store.close()
    await server.close()
  }
}

if (import.meta.main) {
  main().then((result) => console.log(result))
}
