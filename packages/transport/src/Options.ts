/**
 * Options shared by every connection, on both implementations of `Transport`.
 *
 * @since 0.1.0
 */
import { Duration, Option, type Redacted, Result } from "effect"
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
   * A ping is sent after `intervalMs` without sending; the connection closes with `Timeout`
   * after `timeoutMs` without receiving anything. Defaults 1,000 and 5,000 ms; `false` turns
   * both off.
   */
  readonly keepAlive?: { readonly intervalMs: number; readonly timeoutMs: number } | false
  /**
   * The cluster key: when set, both sides prove knowledge of it with an HMAC-SHA256
   * handshake over fresh nonces from each side, and every frame carries a MAC over its
   * sequence number. A peer without the key is refused before any message is delivered.
   * Both sides must agree on whether a key is used.
   */
  readonly clusterKey?: Redacted.Redacted<Uint8Array | string>
  /** Time allowed for the connection attempt and the handshake. Default 5,000 ms. */
  readonly handshakeTimeoutMs?: number
  /** Time `close` waits for queued messages to be written. Default 1,000 ms. */
  readonly lingerMs?: number
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

/** @internal */
export const resolve = <A>(options: ConnectionOptions<A>): ResolvedOptions<A> => ({
  codec: options.codec,
  frameBytesMax: options.frameBytesMax ?? 16 * 1024 * 1024,
  sendQueueCapacity: options.sendQueueCapacity ?? 4096,
  receiveBufferBytes: options.receiveBufferBytes ?? 4 * 1024 * 1024,
  keepAlive: options.keepAlive ?? { intervalMs: 1_000, timeoutMs: 5_000 },
  clusterKey: options.clusterKey,
  handshakeTimeoutMs: options.handshakeTimeoutMs ?? 5_000,
  lingerMs: options.lingerMs ?? 1_000,
})

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
  const duration = Duration.fromInput(input)
  const ms = Option.isSome(duration) ? Duration.toMillis(duration.value) : Number.NaN
  return ms > 0 && Number.isFinite(ms)
    ? Result.succeed(ms)
    : Result.fail(
        `${option}: not a positive duration: ${JSON.stringify(String(input))} (try "2 seconds" or a number of milliseconds)`,
      )
}
