/**
 * `server-group nameserver`: the embedded name server, a `StoreServer` over a
 * `MemoryStore`. With `--cluster-key FILE` only clients that prove the key (the transport's
 * HMAC handshake) are served; `--insecure` serves anyone, with a warning. It prints one
 * `ready` JSON line with the address it listens on.
 *
 * @since 0.1.0
 */
import { MemoryStore, StoreServer } from "@understudy/store"
import { Address, ClusterKey, NodeTransport } from "@understudy/transport"
import { Effect } from "effect"
import type { Invocation } from "./cli.ts"
import { exitCode, line } from "./common.ts"

/** Serves until interrupted. @since 0.1.0 */
export const nameserver = (
  invocation: Extract<Invocation, { readonly _tag: "NameServer" }>,
): Effect.Effect<number, unknown> =>
  Effect.gen(function* () {
    // Read first: a missing or group-readable key file ends the command before it listens.
    const clusterKey =
      invocation.clusterKey === undefined
        ? undefined
        : yield* ClusterKey.readFile(invocation.clusterKey)
    if (invocation.insecure) {
      process.stderr.write(
        "server-group: WARNING: --insecure: the name server authenticates no client; anyone who reaches its port can register a master and redirect the group's clients\n",
      )
    }
    const server = yield* StoreServer.serve(
      invocation.listen,
      clusterKey === undefined ? {} : { clusterKey },
    )
    line({
      t: "ready",
      pid: process.pid,
      listen: Address.format(server.address),
      authenticated: clusterKey !== undefined,
    })
    return yield* Effect.never
  }).pipe(
    Effect.scoped,
    Effect.provide([MemoryStore.layer, NodeTransport.layer]),
    Effect.as(exitCode.ok),
  )
