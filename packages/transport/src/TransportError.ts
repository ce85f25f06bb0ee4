/**
 * Typed errors of the transport. Each says what failed and where, so a caller can decide
 * between retrying, reporting and giving up.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * Could not listen or bind: `AddressInUse` is the one election mechanisms rely on (another
 * process holds the address).
 *
 * @since 0.1.0
 * @category errors
 */
export class ListenError extends Schema.TaggedError<ListenError>()("ListenError", {
  address: Schema.String,
  reason: Schema.Literals(["AddressInUse", "AccessDenied", "AddressNotAvailable", "Other"]),
  detail: Schema.String,
}) {
  override get message(): string {
    return `cannot listen on ${this.address}: ${this.reason} (${this.detail})`
  }
}

/**
 * Could not open a connection: nobody listens (`Refused`), the attempt or the handshake ran
 * out of time (`Timeout`), or the network failed.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConnectError extends Schema.TaggedError<ConnectError>()("ConnectError", {
  address: Schema.String,
  reason: Schema.Literals(["Refused", "Timeout", "Unreachable", "Closed", "Other"]),
  detail: Schema.String,
}) {
  override get message(): string {
    return `cannot connect to ${this.address}: ${this.reason} (${this.detail})`
  }
}

/**
 * The peer answered, but not as an Understudy transport peer should: it speaks another
 * protocol or version (`NotUnderstudy`, `VersionMismatch`), or one side failed to prove
 * knowledge of the cluster key (`AuthenticationFailed`, `AuthenticationRequired`).
 *
 * @since 0.1.0
 * @category errors
 */
export class HandshakeError extends Schema.TaggedError<HandshakeError>()("HandshakeError", {
  address: Schema.String,
  reason: Schema.Literals([
    "NotUnderstudy",
    "VersionMismatch",
    "AuthenticationRequired",
    "AuthenticationFailed",
  ]),
  detail: Schema.String,
}) {
  override get message(): string {
    return `handshake with ${this.address} failed: ${this.reason} (${this.detail})`
  }
}

/**
 * A message could not be sent because the connection is closed; `reason` is the tag of its
 * `CloseReason`.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConnectionClosed extends Schema.TaggedError<ConnectionClosed>()("ConnectionClosed", {
  remote: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `connection to ${this.remote} is closed (${this.reason})`
  }
}

/**
 * A message could not be encoded or decoded by its codec, or is over the size limit.
 *
 * @since 0.1.0
 * @category errors
 */
export class CodecError extends Schema.TaggedError<CodecError>()("CodecError", {
  codec: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `codec ${this.codec}: ${this.detail}`
  }
}

/**
 * A datagram could not be sent (too large, unreachable host, endpoint closed).
 *
 * @since 0.1.0
 * @category errors
 */
export class DatagramError extends Schema.TaggedError<DatagramError>()("DatagramError", {
  address: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `datagram to ${this.address}: ${this.detail}`
  }
}
