/**
 * `takeover-stream serve --backend tcp-repair`: the HTTP/1.1 object server for unmodified
 * clients (curl, wget, a browser), on Linux's `TCP_REPAIR` (root or CAP_NET_ADMIN).
 *
 * Every server of the service runs the same program. The one that holds the service
 * address serves it and checkpoints each transfer in the shared store; the others are
 * standbys that watch the store. A transfer whose server's lease lapsed (its host died)
 * is claimed by one standby, which rebuilds the very TCP connection, takes the service
 * address (gratuitous ARP), finishes the object for the client at the exact byte, and
 * from then on serves the address itself.
 *
 * @since 0.1.0
 */
import { execFileSync } from "node:child_process"
import { networkInterfaces } from "node:os"
import { CheckpointStore, TcpRepair } from "@understudy/checkpoint"
import { Store } from "@understudy/store"
import { Clock, Effect, Exit, Layer } from "effect"

/** @since 0.1.0 */
export interface TcpRepairServeOptions {
  readonly id: string
  /** The service address: served when this host has it, taken over when its server dies. */
  readonly listen: { readonly host: string; readonly port: number }
  readonly dir: string
  /** The interface the service address goes on when this server takes it over. */
  readonly interfaceName: string
  readonly everyBytes: number
  readonly leaseTtlMs: number
  readonly store: Layer.Layer<Store.Store, unknown>
  readonly line: (value: Record<string, unknown>) => void
}

const prefix = CheckpointStore.defaultPrefix("takeover-stream-tcp-repair")

const hasAddress = (host: string) =>
  Object.values(networkInterfaces()).some((addresses) =>
    (addresses ?? []).some((address) => address.address === host),
  )

/** Bundles with a checkpoint whose owner key is gone: their server's lease lapsed. */
const orphans = (store: Store.Store["Service"]) =>
  Effect.map(store.range(CheckpointStore.keys(prefix).bundles), ({ items }) => {
    const bundles = CheckpointStore.keys(prefix).bundles
    const withCheckpoint = new Set<string>()
    const owned = new Set<string>()
    for (const item of items) {
      const [bundleId, kind] = item.key.slice(bundles.length).split("/")
      if (bundleId === undefined) continue
      if (kind === "checkpoint") withCheckpoint.add(bundleId)
      if (kind === "owner") owned.add(bundleId)
    }
    return [...withCheckpoint].filter((bundleId) => !owned.has(bundleId))
  })

/**
 * Serves (or stands by for) the service address until the scope closes.
 *
 * @since 0.1.0
 */
export const serve = (options: TcpRepairServeOptions) =>
  Effect.gen(function* () {
    yield* TcpRepair.available
    const libc = TcpRepair.probe()
    if (typeof libc === "string") return yield* Effect.die(new Error(libc))
    const context = yield* Layer.build(options.store)
    const store = yield* Effect.provide(
      Effect.gen(function* () {
        return yield* Store.Store
      }),
      context,
    )
    const checkpoints = yield* CheckpointStore.make({
      serverId: options.id,
      backend: "tcp-repair",
      prefix,
      leaseTtl: options.leaseTtlMs,
    }).pipe(Effect.provide(context))
    // The takeover's callbacks are synchronous: they read this fiber's Clock directly.
    const clock = yield* Clock.Clock
    const nowMs = () => clock.currentTimeMillisUnsafe()
    let listening = false
    const listen = Effect.promise(async () => {
      if (listening) return
      listening = true
      const server = await TcpRepair.serve({
        libc,
        serverId: options.id,
        host: options.listen.host,
        port: options.listen.port,
        source: { root: options.dir },
        store: checkpoints,
        checkpointEveryBytes: options.everyBytes,
        nowMs,
        sleep: (ms) => Effect.runPromise(Effect.sleep(ms)),
        onEvent: options.line,
      })
      options.line({ t: "serving", id: options.id, address: options.listen.host })
      return server
    })
    if (hasAddress(options.listen.host)) yield* listen
    else options.line({ t: "standby", id: options.id, address: options.listen.host })
    options.line({ t: "ready", id: options.id, pid: process.pid })

    const claimAddress = async () => {
      if (hasAddress(options.listen.host)) return
      execFileSync("ip", ["addr", "add", `${options.listen.host}/32`, "dev", options.interfaceName])
      TcpRepair.announce(libc, options.interfaceName, options.listen.host)
    }
    const takeOver = (bundleId: string) =>
      Effect.gen(function* () {
        const claimed = yield* Effect.exit(checkpoints.claim(bundleId, 0))
        if (Exit.isFailure(claimed)) return // another standby was first, or it finished
        const startedMs = yield* Clock.currentTimeMillis
        const outcome = yield* Effect.promise(() =>
          TcpRepair.takeover({
            libc,
            source: { root: options.dir },
            checkpoint: claimed.value.checkpoint,
            modRevision: claimed.value.modRevision,
            store: checkpoints,
            checkpointEveryBytes: options.everyBytes,
            onEvent: options.line,
            claimAddress,
            nowMs,
            sleep: (ms) => Effect.runPromise(Effect.sleep(ms)),
            probesMax: 8,
            refillBytesMax: 256 * 1024 * 1024,
          }),
        )
        if (outcome._tag === "Resumed") {
          options.line({
            t: "resumed",
            bundleId,
            objectOffset: outcome.objectOffset,
            refilledBytes: outcome.refilledBytes,
            tookMs: (yield* Clock.currentTimeMillis) - startedMs,
            atMs: yield* Clock.currentTimeMillis,
          })
          // The address is this host's now: new clients come here.
          yield* listen
        } else {
          yield* checkpoints.finish(bundleId)
          options.line({ t: "refused", bundleId, reason: outcome.reason, detail: outcome.detail })
        }
      })
    // A standby's failure detector is the store: a dead server's lease lapses, its owner
    // keys go, and its bundles turn up here.
    yield* orphans(store).pipe(
      Effect.flatMap((ids) => Effect.forEach(ids, takeOver, { discard: true })),
      Effect.catch((error) =>
        Effect.sync(() => options.line({ t: "warning", warning: String(error) })),
      ),
      Effect.andThen(Effect.sleep(Math.max(20, Math.floor(options.leaseTtlMs / 5)))),
      Effect.forever,
      Effect.forkScoped,
    )
  })
