/**
 * A host's program for the `tcp-repair` process tests, run inside a network namespace.
 * One JSON line per event on stdout. The hosts share one checkpoint store: a `StoreServer`
 * on a host of its own (the key, hex, in UNDERSTUDY_TCP_REPAIR_KEY). Each server's store lease
 * lasts UNDERSTUDY_TCP_REPAIR_LEASE_MS (default 600): a dead server's transfers are claimed
 * once it lapses.
 *
 *   node TcpRepairHost.ts probe
 *   node TcpRepairHost.ts store <host> <port>
 *   node TcpRepairHost.ts serve <serverId> <host> <port> <objectDir> <store> <everyBytes> [plain]
 *   node TcpRepairHost.ts takeover <serverId> <objectDir> <store> <serviceAddress> <refillBytesMax>
 *
 * `takeover` is a standby: loaded and connected, it takes over when told (a line on
 * stdin), as its failure detector would tell it, then serves on (and checkpoints) what it
 * took over.
 */

import { execFileSync } from "node:child_process"
import { setTimeout as sleep } from "node:timers/promises"
import { MemoryStore, RemoteStore, Store, StoreServer } from "@understudy/store"
import { Address, NodeTransport } from "@understudy/transport"
import { Effect, Layer, Redacted, Scope } from "effect"
import * as CheckpointStore from "../src/CheckpointStore.ts"
import * as TcpRepair from "../src/TcpRepair.ts"

const print = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(event)}\n`)
const libc = TcpRepair.probe()
if (typeof libc === "string") {
  print({ t: "unavailable", reason: libc })
  process.exit(2)
}
const clusterKey = Redacted.make(
  Uint8Array.from(Buffer.from(process.env.UNDERSTUDY_TCP_REPAIR_KEY ?? "", "hex")),
)
const checkpointPrefix = CheckpointStore.defaultPrefix("tcp-repair-test")
const leaseTtlMs = Number(process.env.UNDERSTUDY_TCP_REPAIR_LEASE_MS ?? 600)
const scope = await Effect.runPromise(Scope.make())
const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) =>
  Effect.runPromise(Scope.provide(scope)(effect))

/**
 * The shared store, and this server's checkpoint store on it; they live as long as the
 * process. Requests may take long on a loaded machine: they fail only after 15 s.
 */
const connect = async (store: string, serverId: string) => {
  const address = Address.parseStream(store)
  if (address instanceof Address.InvalidAddress) throw new Error(address.reason)
  const context = await run(
    Layer.build(
      RemoteStore.layer({ address, clusterKey, requestTimeout: 15_000 }).pipe(
        Layer.provide(NodeTransport.layer),
      ),
    ),
  )
  const checkpoints = await run(
    CheckpointStore.make({
      serverId,
      backend: "tcp-repair",
      prefix: checkpointPrefix,
      leaseTtl: leaseTtlMs,
    }).pipe(Effect.provide(context)),
  )
  const raw = await run(
    Effect.provide(
      Effect.gen(function* () {
        return yield* Store.Store
      }),
      context,
    ),
  )
  return { checkpoints, raw }
}

const [mode, ...args] = process.argv.slice(2)
if (mode === "probe") {
  print({ t: "available" })
} else if (mode === "store") {
  const [host, port] = args as [string, string]
  await run(
    StoreServer.serve(Address.tcp(host, Number(port)), { clusterKey }).pipe(
      Effect.provide(Layer.merge(MemoryStore.layer, NodeTransport.layer)),
    ),
  )
  print({ t: "ready" })
} else if (mode === "serve") {
  const [serverId, host, port, objects, store, everyBytes, plain] = args as [
    string,
    string,
    string,
    string,
    string,
    string,
    string | undefined,
  ]
  const { checkpoints } = await connect(store, serverId)
  await TcpRepair.serve({
    // "plain": the same server without checkpoints, the benchmark's baseline.
    libc: plain === "plain" ? undefined : libc,
    serverId,
    host,
    port: Number(port),
    source: { root: objects },
    store: checkpoints,
    checkpointEveryBytes: Number(everyBytes),
    nowMs: () => Date.now(),
    sleep,
    onEvent: print,
  })
  print({ t: "ready" })
} else if (mode === "takeover") {
  const [serverId, objects, store, serviceAddress, refillBytesMax] = args as [
    string,
    string,
    string,
    string,
    string,
  ]
  const { checkpoints, raw } = await connect(store, serverId)
  print({ t: "standby", atMs: Date.now() })
  await new Promise<void>((resolve) => process.stdin.once("data", () => resolve()))
  print({ t: "started", atMs: Date.now() })
  const bundles = CheckpointStore.keys(checkpointPrefix).bundles
  const { items } = await run(raw.range(bundles))
  const ids = items
    .map((kv) => kv.key.slice(bundles.length).split("/"))
    .filter((parts) => parts[1] === "checkpoint")
    .map((parts) => parts[0]!)
  let claimed = false
  for (const bundleId of ids) {
    // Waits for the dead server's lease to lapse: the store's own failure detection. A
    // store request that failed (a loaded machine) is asked again, a few times.
    let held = await run(Effect.result(checkpoints.claim(bundleId, 10 * leaseTtlMs)))
    for (
      let retry = 0;
      retry < 3 && held._tag === "Failure" && held.failure._tag === "CheckpointWriteFailed";
      retry++
    ) {
      print({ t: "claim-retry", bundleId, detail: held.failure.detail })
      held = await run(Effect.result(checkpoints.claim(bundleId, 10 * leaseTtlMs)))
    }
    if (held._tag === "Failure") {
      print({
        t: "unclaimed",
        bundleId,
        reason: held.failure._tag,
        detail: "detail" in held.failure ? held.failure.detail : "",
        atMs: Date.now(),
      })
      continue
    }
    const connection = held.success.checkpoint.connections[0]
    print({
      t: "claimed",
      bundleId,
      atMs: Date.now(),
      checkpoint: {
        server: held.success.checkpoint.serverId,
        ...connection,
        layers: Object.fromEntries(
          Object.entries(connection?.layers ?? {}).map(([k, v]) => [
            k,
            new TextDecoder().decode(v),
          ]),
        ),
      },
    })
    const outcome = await TcpRepair.takeover({
      libc,
      source: { root: objects },
      checkpoint: held.success.checkpoint,
      modRevision: held.success.modRevision,
      store: checkpoints,
      checkpointEveryBytes: 4 * 1024 * 1024,
      onEvent: print,
      claimAddress: async () => {
        if (claimed) return
        claimed = true
        execFileSync("ip", ["addr", "add", `${serviceAddress}/24`, "dev", "eth0"])
        TcpRepair.announce(libc, "eth0", serviceAddress)
      },
      nowMs: () => Date.now(),
      sleep,
      probesMax: 8,
      refillBytesMax: Number(refillBytesMax),
    })
    if (outcome._tag === "Resumed") {
      print({
        t: "resumed",
        bundleId,
        objectOffset: outcome.objectOffset,
        refilledBytes: outcome.refilledBytes,
        atMs: Date.now(),
      })
      outcome.socket.on("close", () => print({ t: "closed", bundleId }))
    } else {
      // The connection is gone (reset, or never heard): so is its bundle.
      await run(checkpoints.finish(bundleId))
      print({
        t: "refused",
        bundleId,
        reason: outcome.reason,
        detail: outcome.detail,
        reset: outcome.reset,
      })
    }
  }
  print({ t: "done", atMs: Date.now(), found: ids.length })
}
