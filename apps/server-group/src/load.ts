/**
 * `server-group load`: writes `k<i> = v<i>` at a fixed rate to the master it resolves from
 * the name server, each write by one of `--concurrency` sequential clients with its own
 * client id and increasing request ids; a failed attempt is retried with the same ids (so
 * it is applied once), following 307 redirects, until `--deadline`. At the end it prints
 * one JSON summary: writes attempted, acknowledged, failed; redirects and retries; and the
 * unavailability windows (gaps between acknowledgements longer than the expected pace).
 *
 * @since 0.1.0
 */
import { createWriteStream, type WriteStream } from "node:fs"
import { setTimeout as sleep } from "node:timers/promises"
import { NameServer } from "@understudy/store"
import { ClusterKey } from "@understudy/transport"
import { Context, Effect, Exit, Layer, Option, Redacted, Scope } from "effect"
import type { Invocation } from "./cli.ts"
import { apiToken, exitCode, stderrLogger, storeLayer, tokenHeader } from "./common.ts"

type Load = Extract<Invocation, { readonly _tag: "Load" }>

/** One attempt may take this long before it is abandoned and retried elsewhere. */
const attemptTimeoutMs = 1_000
const retryPauseMs = 20

/** @since 0.1.0 @category models */
export interface Window {
  readonly fromMs: number
  readonly toMs: number
  readonly ms: number
}

/** @since 0.1.0 @category models */
export interface Summary {
  readonly t: "summary"
  readonly attempted: number
  readonly acknowledged: number
  readonly errors: number
  readonly redirects: number
  readonly retries: number
  readonly durationMs: number
  /** Gaps between consecutive acknowledgements above `gapThresholdMs` (wall clock). */
  readonly unavailable: ReadonlyArray<Window>
  readonly gapThresholdMs: number
  readonly maxUnavailableMs: number
}

/**
 * The gaps longer than `thresholdMs` between sorted acknowledgement times.
 *
 * @since 0.1.0
 */
export const windows = (ackedAtMs: ReadonlyArray<number>, thresholdMs: number): Array<Window> => {
  const sorted = [...ackedAtMs].sort((a, b) => a - b)
  const found: Array<Window> = []
  for (let i = 1; i < sorted.length; i++) {
    const gap = sorted[i]! - sorted[i - 1]!
    if (gap > thresholdMs) found.push({ fromMs: sorted[i - 1]!, toMs: sorted[i]!, ms: gap })
  }
  return found
}

/** Runs the workload; resolves with the exit code. @since 0.1.0 */
export const load = async (invocation: Load): Promise<number> => {
  // Read first: a missing or readable key file fails before anything is started.
  const clusterKey =
    invocation.clusterKey === undefined
      ? undefined
      : await Effect.runPromise(ClusterKey.readFile(invocation.clusterKey))
  // The key authenticates load to a keyed name server, and gives the HTTP API's token.
  const tokenHeaders: Record<string, string> =
    clusterKey === undefined ? {} : { [tokenHeader]: apiToken(Redacted.value(clusterKey)) }
  const scope = Effect.runSync(Scope.make())
  const context = await Effect.runPromise(
    Layer.build(
      NameServer.layer.pipe(Layer.provide(storeLayer(invocation.store, clusterKey))),
    ).pipe(Scope.provide(scope), Effect.provide(stderrLogger)),
  )
  const nameServer = Context.get(context, NameServer.NameServer)
  const resolveMaster = async (): Promise<string | undefined> => {
    const found = await Effect.runPromise(
      nameServer.resolve(invocation.group).pipe(Effect.orElseSucceed(() => Option.none())),
    )
    if (Option.isNone(found)) return undefined
    const holder = found.value.holder
    const equals = holder.indexOf("=")
    return equals < 0 ? undefined : holder.slice(equals + 1)
  }

  let stopping = false
  const stop = () => {
    stopping = true
  }
  process.once("SIGINT", stop)
  process.once("SIGTERM", stop)

  const record: WriteStream | undefined =
    invocation.record === undefined
      ? undefined
      : createWriteStream(invocation.record, { flags: "w" })
  const startedMs = Date.now()
  const ackedAtMs: Array<number> = []
  let nextIndex = 0
  let attempted = 0
  let errors = 0
  let redirects = 0
  let retries = 0
  let master: string | undefined

  const write = async (clientId: string, requestId: number, index: number): Promise<boolean> => {
    const key = `k${index}`
    const value = `v${index}`
    const deadline = Date.now() + invocation.deadlineMs
    let target: string | undefined = master
    for (let attempt = 0; Date.now() < deadline && attempt < 10_000; attempt++) {
      if (attempt > 0) retries++
      if (target === undefined) {
        target = await resolveMaster()
        if (target === undefined) {
          await sleep(retryPauseMs)
          continue
        }
      }
      let url = `${target}/kv/${key}`
      try {
        const response = await fetch(url, {
          method: "PUT",
          body: value,
          redirect: "manual",
          headers: {
            ...tokenHeaders,
            "x-client-id": clientId,
            "x-request-id": String(requestId),
          },
          signal: AbortSignal.timeout(attemptTimeoutMs),
        })
        const text = await response.text()
        if (response.status === 200) {
          master = target
          const atMs = Date.now()
          ackedAtMs.push(atMs)
          record?.write(
            `${JSON.stringify({ key, value, clientId, requestId, atMs, body: text })}\n`,
          )
          return true
        }
        if (response.status === 307) {
          const location = response.headers.get("location")
          if (location !== null) {
            redirects++
            url = location
            target = new URL(location).origin
            continue
          }
        }
        if (response.status === 409 || response.status === 400) return false
      } catch {
        // Refused, reset or timed out: the master may be gone; ask the name server again.
      }
      target = undefined
      master = undefined
      await sleep(retryPauseMs)
    }
    return false
  }

  const worker = async (number: number) => {
    const clientId = `load-${process.pid}-${startedMs.toString(36)}-${number}`
    let requestId = 0
    for (;;) {
      if (stopping) return
      const index = nextIndex++
      const dueMs = startedMs + (index * 1000) / invocation.rate
      if (dueMs - startedMs >= invocation.durationMs) return
      const waitMs = dueMs - Date.now()
      if (waitMs > 0) await sleep(waitMs)
      if (stopping) return
      attempted++
      requestId++
      if (!(await write(clientId, requestId, index))) errors++
    }
  }

  await Promise.all(Array.from({ length: invocation.concurrency }, (_, i) => worker(i)))
  const durationMs = Date.now() - startedMs
  const gapThresholdMs = Math.max(100, (4 * 1000 * invocation.concurrency) / invocation.rate)
  const unavailable = windows(ackedAtMs, gapThresholdMs)
  const summary: Summary = {
    t: "summary",
    attempted,
    acknowledged: ackedAtMs.length,
    errors,
    redirects,
    retries,
    durationMs,
    unavailable,
    gapThresholdMs,
    maxUnavailableMs: Math.max(0, ...unavailable.map((w) => w.ms)),
  }
  if (record !== undefined) await new Promise<void>((resolve) => record.end(() => resolve()))
  process.stdout.write(`${JSON.stringify(summary)}\n`)
  await Effect.runPromise(Scope.close(scope, Exit.void))
  return errors === 0 ? exitCode.ok : exitCode.failure
}
