/**
 * What the commands share: JSON lines on stdout, exit codes, ending on a signal.
 *
 * @since 0.1.0
 */
import { RemoteStore, type Store } from "@understudy/store"
import { NodeTransport } from "@understudy/transport"
import { Cause, Effect, Fiber, Layer, Logger } from "effect"
import type { StoreLocation } from "./cli.ts"

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
 * loaded only then, so the embedded case never loads gRPC).
 *
 * @since 0.1.0
 */
export const storeLayer = (location: StoreLocation): Layer.Layer<Store.Store> =>
  location._tag === "Remote"
    ? RemoteStore.layer({ address: location.address, requestTimeoutMs: 1_000 }).pipe(
        Layer.provide(NodeTransport.layer),
      )
    : Layer.unwrap(
        Effect.promise(() => import("@understudy/store/etcd")).pipe(
          Effect.map(({ EtcdStore }) =>
            EtcdStore.layer({ endpoints: [location.endpoint], requestTimeoutMs: 1_000 }),
          ),
        ),
      )
