/**
 * Typed errors of the port election.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * Something that is not an Understudy supervisor holds the election address: the
 * handshake got an answer in another protocol. Never mistaken for a supervisor.
 *
 * @since 0.1.0
 * @category errors
 */
export class StrangerOnAddress extends Schema.TaggedError<StrangerOnAddress>()(
  "StrangerOnAddress",
  { address: Schema.String, detail: Schema.String },
) {
  override get message(): string {
    return `${this.address} is held by something that is not an Understudy supervisor: ${this.detail}`
  }
}

/**
 * An Understudy supervisor holds the address, but of another program, an incompatible
 * protocol version, or other timing (`graceMs`, `keepAlive`: `DifferentSettings`, with both
 * in `detail`).
 *
 * @since 0.1.0
 * @category errors
 */
export class OtherProgramOnAddress extends Schema.TaggedError<OtherProgramOnAddress>()(
  "OtherProgramOnAddress",
  {
    address: Schema.String,
    reason: Schema.Literals([
      "DifferentProgram",
      "IncompatibleVersion",
      "DuplicateInstance",
      "InvalidRegistration",
      "DifferentSettings",
    ]),
    program: Schema.String,
    version: Schema.Number,
    detail: Schema.optionalKey(Schema.String),
  },
) {
  override get message(): string {
    const detail = this.detail === undefined ? "" : ` (${this.detail})`
    return `${this.address} is held by ${this.program} (protocol ${this.version}): ${this.reason}${detail}`
  }
}

/**
 * The supervisor refused this instance's proof of the per-user secret: it belongs to
 * another user (or the secret files differ).
 *
 * @since 0.1.0
 * @category errors
 */
export class NotPermitted extends Schema.TaggedError<NotPermitted>()("NotPermitted", {
  address: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `not permitted to join the supervisor at ${this.address}: ${this.detail}`
  }
}

/**
 * No role could be taken within the attempt budget (the address kept being neither
 * bindable nor answering).
 *
 * @since 0.1.0
 * @category errors
 */
export class ElectionFailed extends Schema.TaggedError<ElectionFailed>()("ElectionFailed", {
  address: Schema.String,
  attempts: Schema.Number,
  detail: Schema.String,
}) {
  override get message(): string {
    return `no election on ${this.address} after ${this.attempts} attempts: ${this.detail}`
  }
}

/**
 * A coordinated request or command did not complete: no answer in time (`Timeout`), the
 * supervisor died while it was outstanding (`SupervisorLost`, it may or may not have run),
 * nobody handles it (`NoHandler`), or the handler failed (`HandlerFailed`).
 *
 * @since 0.1.0
 * @category errors
 */
export class RequestFailed extends Schema.TaggedError<RequestFailed>()("RequestFailed", {
  operation: Schema.String,
  reason: Schema.Literals([
    "Timeout",
    "SupervisorLost",
    "NoHandler",
    "HandlerFailed",
    "NotSupervisor",
  ]),
  detail: Schema.String,
}) {
  override get message(): string {
    return `${this.operation}: ${this.reason} (${this.detail})`
  }
}

/**
 * A mutex or semaphore permit was refused: the resource is used with another limit, or too
 * many wait for it.
 *
 * @since 0.1.0
 * @category errors
 */
export class AcquireRefused extends Schema.TaggedError<AcquireRefused>()("AcquireRefused", {
  resource: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `cannot acquire ${this.resource}: ${this.detail}`
  }
}

/**
 * An option of the election is out of range: `detail` names it and says why. Nothing was
 * bound or sent.
 *
 * @since 0.1.0
 * @category errors
 */
export class ElectionConfigError extends Schema.TaggedError<ElectionConfigError>()(
  "ElectionConfigError",
  { detail: Schema.String },
) {
  override get message(): string {
    return `invalid election options: ${this.detail}`
  }
}
