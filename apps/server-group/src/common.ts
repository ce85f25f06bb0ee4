/**
 * What the commands share: the HTTP API's token, the store `--store` names, and (from
 * `@understudy/app-kit`) JSON lines on stdout, exit codes, ending on a signal.
 *
 * @since 0.1.0
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import { ExitCode, JsonLines, Signals } from "@understudy/app-kit"
import { RemoteStore, type Store } from "@understudy/store"
import { NodeTransport } from "@understudy/transport"
import { Effect, Layer, type Redacted } from "effect"
import { programName, type StoreLocation } from "./cli.ts"

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

/** 0 ok, 1 runtime error, 2 bad usage (every app's). @since 0.1.0 */
export const exitCode = ExitCode

/** One JSON object per line on stdout: what tests and the showcase read. @since 0.1.0 */
export const line = JsonLines.line

/** Logs go to stderr, so stdout holds only JSON lines. @since 0.1.0 */
export const stderrLogger = JsonLines.stderrLogger

/**
 * Runs a long-lived command until it ends or SIGINT / SIGTERM arrives (then it is
 * interrupted, so its scope closes cleanly). With SERVER_GROUP_EXIT_ON_STDIN_EOF=1 the end
 * of stdin ends it too: a parent that dies takes its children with it.
 *
 * @since 0.1.0
 */
export const runUntilSignal = (program: Effect.Effect<number, unknown>): Promise<number> =>
  Signals.runUntilSignal(program, {
    program: programName,
    stdinEofVariable: "SERVER_GROUP_EXIT_ON_STDIN_EOF",
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
        requestTimeout: 1_000,
        ...(clusterKey === undefined ? {} : { clusterKey }),
      }).pipe(Layer.provide(NodeTransport.layer), Layer.orDie)
    : Layer.unwrap(
        Effect.promise(() => import("@understudy/store/etcd")).pipe(
          Effect.map(({ EtcdStore }) =>
            // Constant options: they cannot be refused.
            EtcdStore.layer({ endpoints: [location.endpoint], requestTimeout: 1_000 }).pipe(
              Layer.orDie,
            ),
          ),
        ),
      )
