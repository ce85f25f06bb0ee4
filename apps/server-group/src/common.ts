/**
 * What the commands share: JSON lines on stdout, exit codes, ending on a signal.
 *
 * @since 0.1.0
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import { RemoteStore, type Store } from "@understudy/store"
import { NodeTransport } from "@understudy/transport"
import { Cause, Effect, Fiber, Layer, Logger, type Redacted } from "effect"
import type { StoreLocation } from "./cli.ts"

/**
 * The header that authenticates an HTTP API request to a keyed group: a token derived from
 * the cluster key (HMAC-SHA256 of a fixed label), so the key itself never travels. A custom
 * header, not `authorization`: clients keep it on redirects to another server.
 *
 * @since 0.1.0
 */
export const tokenHeader = "x-cluster-token"

/** The HTTP API token of a cluster key. @since 0.1.0 */
export const apiToken = (clusterKey: Uint8Array): string =>
  createHmac("sha256", clusterKey).update("understudy server-group http api").digest("hex")

/** Whether `given` is `expected`, in constant time. @since 0.1.0 */
export const tokenMatches = (expected: string, given: string | undefined): boolean => {
  if (given === undefined) return false
  const a = Buffer.from(expected)
  const b = Buffer.from(given)
  return a.length === b.length && timingSafeEqual(a, b)
}

/** @since 0.1.0 */
export const exitCode = { ok: 0, failure: 1, usage: 2 } as const

/** One JSON object per line on stdout: what tests and the showcase read. @since 0.1.0 */
export const line = (value: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ ...value, wallMs: Date.now() })}\n`)
}

/** Logs go to stderr, so stdout holds only JSON lines. @since 0.1.0 */
export const stderrLogger = Logger.layer([Logger.withConsoleError(Logger.formatLogFmt)])

/**
 * Runs a long-lived command until it ends or SIGINT / SIGTERM arrives (then it is
 * interrupted, so its scope closes cleanly). With SERVER_GROUP_EXIT_ON_STDIN_EOF=1 the end
 * of stdin ends it too: a parent that dies takes its children with it.
 *
 * @since 0.1.0
 */
export const runUntilSignal = (program: Effect.Effect<number, unknown>): Promise<number> =>
  new Promise((resolve) => {
    const fiber = Effect.runFork(program.pipe(Effect.provide(stderrLogger)))
    const stop = () => Effect.runFork(Fiber.interrupt(fiber))
    process.once("SIGINT", stop)
    process.once("SIGTERM", stop)
    if (process.env.SERVER_GROUP_EXIT_ON_STDIN_EOF === "1") {
      process.stdin.on("end", stop)
      process.stdin.on("error", stop)
      process.stdin.resume()
    }
    fiber.addObserver((exit) => {
      if (exit._tag === "Success") resolve(exit.value)
      else if (Cause.hasInterruptsOnly(exit.cause)) resolve(exitCode.ok)
      else {
        const error = Cause.squash(exit.cause)
        process.stderr.write(
          `server-group: ${error instanceof Error ? error.message : Cause.pretty(exit.cause)}\n`,
        )
        resolve(exitCode.failure)
      }
    })
  })

/**
 * The store `--store` names: the embedded name server over TCP, or etcd (its client is
 * loaded only then, so the embedded case never loads gRPC). `clusterKey`: the group's key,
 * which a keyed embedded name server wants proven (the transport's HMAC handshake); etcd
 * is secured by its own means and does not use it.
 *
 * @since 0.1.0
 */
export const storeLayer = (
  location: StoreLocation,
  clusterKey?: Redacted.Redacted<Uint8Array>,
): Layer.Layer<Store.Store> =>
  location._tag === "Remote"
    ? RemoteStore.layer({
        address: location.address,
        requestTimeoutMs: 1_000,
        ...(clusterKey === undefined ? {} : { clusterKey }),
      }).pipe(Layer.provide(NodeTransport.layer))
    : Layer.unwrap(
        Effect.promise(() => import("@understudy/store/etcd")).pipe(
          Effect.map(({ EtcdStore }) =>
            EtcdStore.layer({ endpoints: [location.endpoint], requestTimeoutMs: 1_000 }),
          ),
        ),
      )
