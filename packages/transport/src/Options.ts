/**
 * Options shared by every connection, on both implementations of `Transport`.
 *
 * @since 0.1.0
 */
import { Duration, Option, type Redacted, Result, Schema } from "effect"
import type { Codec } from "./Codec.ts"

/** @since 0.1.0 @category models */
export interface ConnectionOptions<A> {
  /** How messages map to frame payloads. */
  readonly codec: Codec<A>
  /** Largest frame accepted or sent, in bytes of payload. Default 16 MiB. */
  readonly frameBytesMax?: number
  /**
   * How many messages may wait in the outgoing queue before `send` suspends. Default 4096.
   */
  readonly sendQueueCapacity?: number
  /**
   * Bytes received but not yet consumed by the reader before the socket is paused, so the
   * sender's `send` suspends in turn. Default 4 MiB.
   */
  readonly receiveBufferBytes?: number
  /**
   * A ping is sent after `interval` without sending; the connection closes with `Timeout`
   * after `timeout` without receiving anything. Defaults 1 and 5 seconds; `false` turns
   * both off.
   */
  readonly keepAlive?:
    | { readonly interval: Duration.Input; readonly timeout: Duration.Input }
    | false
  /**
   * The cluster key: when set, both sides prove knowledge of it with an HMAC-SHA256
   * handshake over fresh nonces from each side, and every frame carries a MAC over its
   * sequence number. A peer without the key is refused before any message is delivered.
   * Both sides must agree on whether a key is used.
   */
  readonly clusterKey?: Redacted.Redacted<Uint8Array | string>
  /** Time allowed for the connection attempt and the handshake. Default 5 seconds. */
  readonly handshakeTimeout?: Duration.Input
  /** Time `close` waits for queued messages to be written. Default 1 second. */
  readonly linger?: Duration.Input
}

/** @internal */
export interface ResolvedOptions<A> {
  readonly codec: Codec<A>
  readonly frameBytesMax: number
  readonly sendQueueCapacity: number
  readonly receiveBufferBytes: number
  readonly keepAlive: { readonly intervalMs: number; readonly timeoutMs: number } | false
  readonly clusterKey: Redacted.Redacted<Uint8Array | string> | undefined
  readonly handshakeTimeoutMs: number
  readonly lingerMs: number
}

const isPositiveDuration = (input: unknown): input is Duration.Input => {
  const duration = Duration.fromInput(input as Duration.Input)
  return (
    Option.isSome(duration) &&
    Duration.isFinite(duration.value) &&
    Duration.isGreaterThan(duration.value, Duration.zero)
  )
}

/**
 * A duration option: a `Duration.Input` (`"2 seconds"`, a number of milliseconds, a
 * `Duration`) that is positive and finite: zero, negative or infinite time-outs would fire at
 * once or never. Every package's config schema uses it for its durations.
 *
 * @since 0.1.0
 * @category decoding
 */
export const PositiveDuration: Schema.declare<Duration.Input> = Schema.declare(isPositiveDuration, {
  expected: 'a positive duration ("2 seconds", a number of milliseconds or a Duration)',
})

/**
 * A decoded duration option in whole milliseconds (at least 1).
 *
 * @since 0.1.0
 * @category decoding
 */
export const toMillis = (input: Duration.Input): number =>
  Math.max(1, Math.round(Duration.toMillis(Duration.fromInputUnsafe(input))))

const Whole = Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(1))

/** What `ConnectionOptions` carries besides the codec and the key, as Schema checks it. */
const Settings = Schema.Struct({
  frameBytesMax: Schema.optionalKey(Whole),
  sendQueueCapacity: Schema.optionalKey(Whole),
  receiveBufferBytes: Schema.optionalKey(Whole),
  keepAlive: Schema.optionalKey(
    Schema.Union([
      Schema.Literal(false),
      Schema.Struct({ interval: PositiveDuration, timeout: PositiveDuration }),
    ]),
  ),
  handshakeTimeout: Schema.optionalKey(PositiveDuration),
  linger: Schema.optionalKey(PositiveDuration),
})

const settingKeys = [
  "frameBytesMax",
  "sendQueueCapacity",
  "receiveBufferBytes",
  "keepAlive",
  "handshakeTimeout",
  "linger",
] as const

/**
 * `options` with their defaults, or, when one is out of range, a message naming it (the
 * caller fails with its own typed error before anything is bound or dialled).
 *
 * @internal
 */
export const decode = <A>(
  options: ConnectionOptions<A>,
): Result.Result<ResolvedOptions<A>, string> => {
  const picked = Object.fromEntries(
    settingKeys.flatMap((key) => (options[key] === undefined ? [] : [[key, options[key]]])),
  )
  const decoded = Schema.decodeUnknownResult(Settings)(picked)
  if (Result.isFailure(decoded)) {
    return Result.fail(`invalid connection options: ${decoded.failure.message}`)
  }
  const value = decoded.success
  const keepAlive = value.keepAlive ?? { interval: 1_000, timeout: 5_000 }
  return Result.succeed({
    codec: options.codec,
    frameBytesMax: value.frameBytesMax ?? 16 * 1024 * 1024,
    sendQueueCapacity: value.sendQueueCapacity ?? 4096,
    receiveBufferBytes: value.receiveBufferBytes ?? 4 * 1024 * 1024,
    keepAlive:
      keepAlive === false
        ? false
        : { intervalMs: toMillis(keepAlive.interval), timeoutMs: toMillis(keepAlive.timeout) },
    clusterKey: options.clusterKey,
    handshakeTimeoutMs: toMillis(value.handshakeTimeout ?? 5_000),
    lingerMs: toMillis(value.linger ?? 1_000),
  })
}

/**
 * `options` with their defaults, for options already known to be valid (tests, internal
 * callers); throws on an invalid one.
 *
 * @internal
 */
export const resolve = <A>(options: ConnectionOptions<A>): ResolvedOptions<A> => {
  const decoded = decode(options)
  if (Result.isFailure(decoded)) throw new Error(decoded.failure)
  return decoded.success
}

/**
 * A duration option (`"2 seconds"`, a number of milliseconds, a `Duration`) as milliseconds,
 * or, when it is not a positive finite duration, a message naming `option` (for the
 * package's config error): zero, negative or infinite time-outs would fail at once or never.
 *
 * @since 0.1.0
 * @category decoding
 */
export const positiveMillis = (
  option: string,
  input: Duration.Input,
): Result.Result<number, string> => {
  return isPositiveDuration(input)
    ? Result.succeed(Duration.toMillis(Duration.fromInputUnsafe(input)))
    : Result.fail(
        `${option}: not a positive duration: ${JSON.stringify(String(input))} (try "2 seconds" or a number of milliseconds)`,
      )
}
