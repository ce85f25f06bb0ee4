// @understudy/store from CommonJS: require() of the CJS build (effect itself is ESM).
const { MemoryStore, Store } = require("@understudy/store")
const { Effect, Option } = require("effect")

const program = Effect.gen(function* () {
  const store = yield* Store.Store
  yield* store.put("k", new TextEncoder().encode("v"))
  return Option.getOrUndefined(yield* store.get("k"))
}).pipe(Effect.provide(MemoryStore.layer))

Effect.runPromise(program).then((kv) =>
  console.log(JSON.stringify({ value: new TextDecoder().decode(kv.value) })),
)
