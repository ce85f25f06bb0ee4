/**
 * The pool's timings and limits as Schema-decoded configuration, durations as
 * `Duration.Input` (`"200 millis"`, `"6 seconds"`, or a number of milliseconds). Only the
 * heartbeat interval is needed: every other timing defaults to a multiple of it, chosen so
 * that the machine's safety margins hold (a deposed leader stops granting before a new one
 * can be elected).
 *
 * @since 0.1.0
 */
import { Options as TransportOptions } from "@understudy/transport"
import { Duration, Option, Result, Schema } from "effect"
import { defaultLimits } from "./internal/defaultLimits.ts"
import { PoolInvalidConfig, validate } from "./Machine.ts"

/**
 * A `Duration.Input` as config: milliseconds, or text such as `"250 millis"`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DurationInput = Schema.Union([
  Schema.Number.check(Schema.isGreaterThan(0)),
  Schema.String.check(
    Schema.makeFilter((text: string) =>
      Option.isSome(Duration.fromInput(text as Duration.Input))
        ? undefined
        : `not a duration: ${JSON.stringify(text)} (try "200 millis" or "6 seconds")`,
    ),
  ),
])

const Limit = (maximum: number) =>
  Schema.optionalKey(Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 1, maximum })))

/**
 * @since 0.1.0
 * @category schemas
 */
export const ServerConfigInput = Schema.Struct({
  /** Default 200 ms. */
  heartbeatInterval: Schema.optionalKey(DurationInput),
  /** Default 5 heartbeats. */
  followerTimeout: Schema.optionalKey(DurationInput),
  /** Default 2 heartbeats. */
  checkTimeout: Schema.optionalKey(DurationInput),
  /** Default 3.5 heartbeats. */
  leaderLease: Schema.optionalKey(DurationInput),
  /** Default 4 heartbeats. */
  downAfter: Schema.optionalKey(DurationInput),
  /** Default 1.5 heartbeats. */
  electionStagger: Schema.optionalKey(DurationInput),
  /** How long an allocation lasts without a heartbeat. Default 30 heartbeats. */
  lease: Schema.optionalKey(DurationInput),
  /** Default 10,000. */
  clientsPerServerMax: Limit(1_000_000),
  /** Default 64. */
  seatsPerClientMax: Limit(100_000),
  /** Default 1,000. */
  pendingReservationsMax: Limit(1_000_000),
  /** Largest client datagram accepted, in bytes. Default 8,192. */
  messageBytesMax: Limit(65_507),
  /** Most unused seats the leader hands one follower as its share. Default 16; 0: none. */
  shareSeatsMax: Schema.optionalKey(
    Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 0, maximum: 100_000 })),
  ),
  /** The client endpoint's kernel receive buffer, in bytes. Default 4 MiB. */
  clientReceiveBufferBytes: Limit(2 ** 31 - 1),
})
/** @since 0.1.0 @category models */
export type ServerConfigInput = typeof ServerConfigInput.Encoded

/** Decoded: timings in milliseconds, every limit set. @since 0.1.0 @category models */
export interface ServerConfig {
  readonly timing: {
    readonly heartbeatIntervalMs: number
    readonly followerTimeoutMs: number
    readonly checkTimeoutMs: number
    readonly leaderLeaseMs: number
    readonly downAfterMs: number
    readonly electionStaggerMs: number
    readonly leaseMs: number
  }
  readonly clientsPerServerMax: number
  readonly seatsPerClientMax: number
  readonly pendingReservationsMax: number
  readonly messageBytesMax: number
  readonly shareSeatsMax: number
  readonly clientReceiveBufferBytes: number
}

/**
 * @since 0.1.0
 * @category schemas
 */
export const ClientConfigInput = Schema.Struct({
  /** Default 200 ms. */
  heartbeatInterval: Schema.optionalKey(TransportOptions.PositiveDuration),
  /** The longest wait for a reply before sending again. Default the heartbeat interval. */
  retryInterval: Schema.optionalKey(TransportOptions.PositiveDuration),
  /** The shortest wait for a reply. Default a sixth of the interval. */
  minRetryInterval: Schema.optionalKey(TransportOptions.PositiveDuration),
  /** Unanswered heartbeats in a row before the server counts as gone. Default 3. */
  missLimit: Limit(100),
  /** Default 1. */
  seats: Limit(100_000),
})
/** @since 0.1.0 @category models */
export type ClientConfigInput = typeof ClientConfigInput.Encoded

/** @since 0.1.0 @category models */
export interface ClientConfig {
  readonly heartbeatIntervalMs: number
  readonly retryIntervalMs: number
  readonly minRetryIntervalMs: number
  readonly missLimit: number
  readonly seats: number
}

const millis = (input: Duration.Input | string | undefined, otherwise: number): number =>
  input === undefined
    ? otherwise
    : Duration.toMillis(Duration.fromInputUnsafe(input as Duration.Input))

const invalid = (reason: string) => Result.fail(new PoolInvalidConfig({ reason }))

/**
 * Decodes a server's configuration (a config file, flags), with defaults, checking that the
 * timings keep the machine safe.
 *
 * @example
 * ```ts
 * import { Config } from "@understudy/heartbeat-pool"
 * const config = Config.decodeServer({ heartbeatInterval: "100 millis", lease: "5 seconds" })
 * ```
 * @since 0.1.0
 * @category constructors
 */
export const decodeServer = (input: unknown): Result.Result<ServerConfig, PoolInvalidConfig> => {
  const decoded = Schema.decodeUnknownResult(ServerConfigInput)(input ?? {})
  if (Result.isFailure(decoded)) return invalid(decoded.failure.message)
  const value = decoded.success
  const beat = millis(value.heartbeatInterval, 200)
  const timing = {
    heartbeatIntervalMs: beat,
    followerTimeoutMs: millis(value.followerTimeout, beat * 5),
    checkTimeoutMs: millis(value.checkTimeout, beat * 2),
    leaderLeaseMs: millis(value.leaderLease, Math.round(beat * 3.5)),
    downAfterMs: millis(value.downAfter, beat * 4),
    electionStaggerMs: millis(value.electionStagger, Math.round(beat * 1.5)),
    leaseMs: millis(value.lease, beat * 30),
  }
  if (timing.leaseMs <= 2 * timing.heartbeatIntervalMs)
    return invalid("lease must be above 2 heartbeat intervals (clients renew with heartbeats)")
  const unsafe = validate({ servers: ["any"], ...timing })
  if (unsafe !== undefined) return Result.fail(unsafe)
  return Result.succeed({
    timing,
    clientsPerServerMax: value.clientsPerServerMax ?? defaultLimits.clientsPerServerMax,
    seatsPerClientMax: value.seatsPerClientMax ?? defaultLimits.seatsPerClientMax,
    pendingReservationsMax: value.pendingReservationsMax ?? defaultLimits.pendingReservationsMax,
    messageBytesMax: value.messageBytesMax ?? defaultLimits.messageBytesMax,
    shareSeatsMax: value.shareSeatsMax ?? defaultLimits.shareSeatsMax,
    clientReceiveBufferBytes:
      value.clientReceiveBufferBytes ?? defaultLimits.clientReceiveBufferBytes,
  })
}

/**
 * Decodes a client's configuration, with defaults.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decodeClient = (input: unknown): Result.Result<ClientConfig, PoolInvalidConfig> => {
  const decoded = Schema.decodeUnknownResult(ClientConfigInput)(input ?? {})
  if (Result.isFailure(decoded)) return invalid(decoded.failure.message)
  const value = decoded.success
  const heartbeatIntervalMs = millis(value.heartbeatInterval, 200)
  const retryIntervalMs = millis(value.retryInterval, heartbeatIntervalMs)
  const minRetryIntervalMs = millis(
    value.minRetryInterval,
    Math.min(retryIntervalMs, heartbeatIntervalMs / 6),
  )
  if (retryIntervalMs > heartbeatIntervalMs)
    return invalid("retryInterval must not be above heartbeatInterval")
  if (minRetryIntervalMs > retryIntervalMs)
    return invalid("minRetryInterval must not be above retryInterval")
  return Result.succeed({
    heartbeatIntervalMs,
    retryIntervalMs,
    minRetryIntervalMs,
    missLimit: value.missLimit ?? 3,
    seats: value.seats ?? 1,
  })
}
