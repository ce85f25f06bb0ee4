/**
 * docs/deployment.md, "One program, either store": a server registers as the group's master
 * in the `NameServer` and a client finds it. Only the layer says where the state lives: the
 * embedded store (one process serves it, the others reach it over a socket) or etcd.
 */
import { NameServer, RemoteStore } from "@understudy/store"
// The etcd backend has an entry point of its own (it needs `etcd3` installed beside it).
import { EtcdStore } from "@understudy/store/etcd"
import { type Address, NodeTransport } from "@understudy/transport"
import { Effect, Layer, Option } from "effect"

const program = Effect.gen(function* () {
  const names = yield* NameServer.NameServer
  // Kept alive while the scope is open; gone `ttl` after its holder dies.
  yield* names.register("kv/master", "server-1", 1, { ttl: "3 seconds" })
  const master = yield* names.resolve("kv/master")
  return Option.map(master, (holder) => `${holder.holder} at epoch ${holder.epoch}`)
}).pipe(Effect.scoped)

/** Every process on one machine: the embedded store, served at `address`. */
export const onEmbeddedStore = (address: Address.StreamAddress) =>
  program.pipe(
    Effect.provide(
      NameServer.layer.pipe(
        Layer.provide(RemoteStore.layer({ address })),
        Layer.provide(NodeTransport.layer),
      ),
    ),
  )

/** Servers on several machines: an etcd cluster (its client URLs). */
export const onEtcd = (endpoints: ReadonlyArray<string>) =>
  program.pipe(
    Effect.provide(
      NameServer.layer.pipe(Layer.provide(EtcdStore.layer({ endpoints, prefix: "/my-app/" }))),
    ),
  )

if (import.meta.main) {
  Effect.runPromise(onEtcd(["http://127.0.0.1:2379"])).then((master) => console.log(master))
}
