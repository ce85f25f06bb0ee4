/**
 * `server-group nameserver`: the embedded name server, a `StoreServer` over a
 * `MemoryStore`. It prints one `ready` JSON line with the address it listens on.
 *
 * @since 0.1.0
 */
import { MemoryStore, StoreServer } from "@understudy/store"
import { Address, NodeTransport } from "@understudy/transport"
import { Effect } from "effect"
import type { Invocation } from "./cli.ts"
import { exitCode, line } from "./common.ts"

/** Serves until interrupted. @since 0.1.0 */
export const nameserver = (
  invocation: Extract<Invocation, { readonly _tag: "NameServer" }>,
): Effect.Effect<number, unknown> =>
  Effect.gen(function* () {
    const server = yield* StoreServer.serve(invocation.listen)
    line({ t: "ready", pid: process.pid, listen: Address.format(server.address) })
    return yield* Effect.never
  }).pipe(
    Effect.scoped,
    Effect.provide([MemoryStore.layer, NodeTransport.layer]),
    Effect.as(exitCode.ok),
  )
