/**
 * The errors of an endpoint and its associations (re-exported by `Endpoint`).
 */
import { Schema } from "effect"

/**
 * `connect` did not reach ESTABLISHED: the peer aborted (`Aborted`), the INIT / COOKIE ECHO
 * retransmissions ran out (`CommLost`), the caller's `timeout` passed (`Timeout`; the
 * attempt is aborted), the endpoint was closed (`EndpointClosed`), or the `timeout` is not
 * a positive duration (`InvalidOptions`: nothing was sent).
 *
 * @since 0.1.0
 * @category errors
 */
export class AssociationConnectError extends Schema.TaggedError<AssociationConnectError>()(
  "AssociationConnectError",
  {
    peer: Schema.String,
    reason: Schema.Literals(["Aborted", "CommLost", "Timeout", "EndpointClosed", "InvalidOptions"]),
    detail: Schema.String,
  },
) {
  override get message(): string {
    return `cannot associate with ${this.peer}: ${this.reason} (${this.detail})`
  }
}

/**
 * An operation on an association failed: it is gone (`Closed`: aborted, lost, shut down or
 * the endpoint closed), or the machine refused the command (`Rejected`, e.g. an invalid
 * stream, or a send after SHUTDOWN).
 *
 * @since 0.1.0
 * @category errors
 */
export class AssociationError extends Schema.TaggedError<AssociationError>()("AssociationError", {
  associationId: Schema.Number,
  reason: Schema.Literals(["Closed", "Rejected"]),
  detail: Schema.String,
}) {
  override get message(): string {
    return `association ${this.associationId}: ${this.reason} (${this.detail})`
  }
}

/**
 * An option of `make` is out of range (`option` names it): nothing was bound.
 *
 * @since 0.1.0
 * @category errors
 */
export class EndpointConfigError extends Schema.TaggedError<EndpointConfigError>()(
  "EndpointConfigError",
  { option: Schema.String, detail: Schema.String },
) {
  override get message(): string {
    return `invalid endpoint option ${this.option}: ${this.detail}`
  }
}
