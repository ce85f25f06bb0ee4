/**
 * What the three programs share: the `--pool` list, the key file or `--insecure`, JSON
 * lines on stdout (logs on stderr), and running until a signal.
 *
 * @since 0.1.0
 */
import { ClusterKey } from "@understudy/transport"
import { Cause, Effect, Fiber, Logger, type Redacted } from "effect"

/** @since 0.1.0 */
export const exitCode = { ok: 0, failure: 1, usage: 2 } as const

/** A server of the pool: its id, peer endpoint and client endpoint. @since 0.1.0 */
export interface PoolEntry {
  readonly id: string
  readonly host: string
  readonly peerPort: number
  readonly clientPort: number
}

const idPattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/

/** `s1=127.0.0.1:7001:7101,s2=...` (id=host:peer-port:client-port), in priority order. @since 0.1.0 */
export const parsePool = (text: string): ReadonlyArray<PoolEntry> | string => {
  const entries: Array<PoolEntry> = []
  for (const part of text.split(",")) {
    const match = /^([^=]+)=([0-9.]+):(\d+):(\d+)$/.exec(part)
    if (match === null)
      return `--pool entry ${JSON.stringify(part)}: expected ID=HOST:PEER_PORT:CLIENT_PORT`
    const [, id, host, peer, client] = match
    if (!idPattern.test(id!))
      return `--pool id ${JSON.stringify(id)}: use letters, digits, '_', '-'`
    if (entries.some((entry) => entry.id === id)) return `--pool lists ${id} twice`
    const peerPort = Number(peer)
    const clientPort = Number(client)
    if (peerPort < 1 || peerPort > 65535 || clientPort < 1 || clientPort > 65535)
      return `--pool ${id}: bad port`
    entries.push({ id: id!, host: host!, peerPort, clientPort })
  }
  return entries.length === 0 ? "--pool is empty" : entries
}

/** `30s`, `1500ms`, `2m`, or seconds. @since 0.1.0 */
export const parseDuration = (text: string): number | undefined => {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text)
  if (match === null) return undefined
  const value = Number(match[1])
  const unit = match[2] ?? "s"
  const ms = unit === "ms" ? value : unit === "s" ? value * 1000 : value * 60_000
  return ms > 0 && ms <= 24 * 3_600_000 ? Math.round(ms) : undefined
}

/**
 * The pool secret from `--key-file`, or `"insecure"` with `--insecure` (warned about).
 *
 * @since 0.1.0
 */
export const poolSecret = (
  keyFile: string | undefined,
  insecure: boolean,
): Effect.Effect<Redacted.Redacted<Uint8Array> | "insecure", ClusterKey.ClusterKeyError> =>
  insecure
    ? Effect.sync(() => {
        process.stderr.write(
          "WARNING: --insecure: pool traffic is not authenticated and tokens are forgeable\n",
        )
        return "insecure" as const
      })
    : ClusterKey.readFile(keyFile ?? "pool.key")

/** One JSON object per line on stdout. @since 0.1.0 */
export const line = (value: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ ...value, wallMs: Date.now() })}\n`)
}

/** Logs go to stderr, so stdout holds only JSON lines. @since 0.1.0 */
export const stderrLogger = Logger.layer([Logger.withConsoleError(Logger.formatLogFmt)])

/** Runs until the program ends or SIGINT / SIGTERM interrupts it. @since 0.1.0 */
export const runUntilSignal = (program: Effect.Effect<number, unknown>): Promise<number> =>
  new Promise((resolve) => {
    const fiber = Effect.runFork(program.pipe(Effect.provide(stderrLogger)))
    const stop = () => Effect.runFork(Fiber.interrupt(fiber))
    process.once("SIGINT", stop)
    process.once("SIGTERM", stop)
    fiber.addObserver((exit) => {
      if (exit._tag === "Success") resolve(exit.value)
      else if (Cause.hasInterruptsOnly(exit.cause)) resolve(exitCode.ok)
      else {
        process.stderr.write(`${Cause.pretty(exit.cause)}\n`)
        resolve(exitCode.failure)
      }
    })
  })

/** Prints a usage error and returns the exit code. @since 0.1.0 */
export const usageError = (program: string, message: string): number => {
  process.stderr.write(`${program}: ${message}\nTry '${program} --help'.\n`)
  return exitCode.usage
}
