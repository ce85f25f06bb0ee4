/**
 * The lease baseline's embedded store (`MemoryStore` through a `StoreServer` on the port given
 * as the one argument) as an OS process of its own, beside each pool server's process: the
 * bench SIGKILLs the leader's pool server and its store together, and neither system's
 * reconnecting clients then share the other's event loop. Prints `{"t":"ready"}` once it
 * listens, and `stall` lines (`stalls.ts`).
 */
import { MemoryStore, StoreServer } from "@understudy/store"
import { Address, NodeTransport } from "@understudy/transport"
import { Effect, Layer } from "effect"
import { watchStalls } from "./stalls.ts"

const port = Number(process.argv[2])
watchStalls()
await new Promise<void>((resolve, reject) =>
  Effect.runFork(
    // Keep-alive pings off: the clients' lease keep-alives come every heartbeat interval.
    StoreServer.serve(Address.tcp("127.0.0.1", port), { keepAlive: false }).pipe(
      Effect.tap(() => Effect.sync(resolve)),
      Effect.andThen(Effect.never),
      Effect.scoped,
      Effect.provide(Layer.merge(MemoryStore.layer, NodeTransport.layer)),
      Effect.tapCause((cause) => Effect.sync(() => reject(new Error(String(cause))))),
    ),
  ),
)
process.stdout.write(`${JSON.stringify({ t: "ready" })}\n`)
