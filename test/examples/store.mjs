// @understudy/store: put and get on the memory store; the etcd entry without etcd3 installed.
import { MemoryStore, Store } from "@understudy/store"
import { Effect, Option } from "effect"

const program = Effect.gen(function* () {
  const store = yield* Store.Store
  yield* store.put("/config/mode", new TextEncoder().encode("active"))
  const found = yield* store.get("/config/mode")
  return Option.map(found, (kv) => new TextDecoder().decode(kv.value))
}).pipe(Effect.provide(MemoryStore.layer))

const value = Option.getOrUndefined(await Effect.runPromise(program))
const etcd = await import("@understudy/store/etcd").then(
  () => "loaded",
  (error) => error.message,
)
console.log(JSON.stringify({ value, etcd }))
