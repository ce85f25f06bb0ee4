/**
 * Typed errors of the checkpoint package. Every tag starts with `Checkpoint` or `Takeover`
 * so it is unique across Understudy. A takeover that cannot be carried out exactly is a
 * `TakeoverRefused` with the reason, never a connection resumed at a wrong byte.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * Why a takeover (a resume request from the client, or a restore on the takeover server)
 * was refused:
 * - `TooOld`: the client acknowledges less than the checkpoint can still produce (the
 *   unacknowledged window it holds starts later, or the object it regenerates starts later).
 * - `BeyondSent`: the client acknowledges bytes that were never sent (the checkpoint's send
 *   horizon is below the acknowledgement).
 * - `WrongSession`: no such session, or the proof does not verify for this session.
 * - `ReplayedProof`: the proof's counter was already used (a captured proof replayed).
 * - `NoCheckpoint`: the session exists but no checkpoint of it was ever written.
 * - `Owned`: a live server still owns the bundle (its lease has not lapsed) and did not hand
 *   it off; the client may try again later.
 * - `Unsupported`: the checkpoint was made by a backend or version this server cannot restore.
 * - `Overloaded`: this server already serves its maximum number of sessions.
 * - `AttemptsExhausted`: the client library gave up after its bounded number of attempts.
 *
 * @since 0.1.0
 * @category models
 */
export const RefusalReason = Schema.Literals([
  "TooOld",
  "BeyondSent",
  "WrongSession",
  "ReplayedProof",
  "NoCheckpoint",
  "Owned",
  "Unsupported",
  "Overloaded",
  "AttemptsExhausted",
])

/** @since 0.1.0 @category models */
export type RefusalReason = typeof RefusalReason.Type

/**
 * A takeover or resume could not cover the client's acknowledgement exactly, or was not
 * allowed. Surfaced by the client library as the stream's error: never corrupt data.
 *
 * @since 0.1.0
 * @category errors
 */
export class TakeoverRefused extends Schema.TaggedError<TakeoverRefused>()("TakeoverRefused", {
  reason: RefusalReason,
  sessionId: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `takeover of session ${this.sessionId} refused (${this.reason}): ${this.detail}`
  }
}

/**
 * The store did not take a checkpoint (unavailable, a lost ownership, a conflict). Until a
 * checkpoint is written, the session layer sends nothing past the last durable horizon.
 *
 * @since 0.1.0
 * @category errors
 */
export class CheckpointWriteFailed extends Schema.TaggedError<CheckpointWriteFailed>()(
  "CheckpointWriteFailed",
  { bundleId: Schema.String, detail: Schema.String },
) {
  override get message(): string {
    return `checkpoint of bundle ${this.bundleId} not written: ${this.detail}`
  }
}

/**
 * A checkpoint is larger than its bound (`limits.checkpointBytesMax`, below the store's
 * value limit).
 *
 * @since 0.1.0
 * @category errors
 */
export class CheckpointTooLarge extends Schema.TaggedError<CheckpointTooLarge>()(
  "CheckpointTooLarge",
  { bundleId: Schema.String, bytes: Schema.Number, bytesMax: Schema.Number },
) {
  override get message(): string {
    return `checkpoint of bundle ${this.bundleId} is ${this.bytes} bytes, above ${this.bytesMax}`
  }
}

/**
 * Bytes that should be a checkpoint or a session message are not one (corrupt, truncated,
 * from another version).
 *
 * @since 0.1.0
 * @category errors
 */
export class CheckpointDecodeError extends Schema.TaggedError<CheckpointDecodeError>()(
  "CheckpointDecodeError",
  { what: Schema.String, detail: Schema.String },
) {
  override get message(): string {
    return `bad ${this.what}: ${this.detail}`
  }
}

/**
 * A contributor failed to append its state or to restore from it.
 *
 * @since 0.1.0
 * @category errors
 */
export class CheckpointContributorFailed extends Schema.TaggedError<CheckpointContributorFailed>()(
  "CheckpointContributorFailed",
  {
    layer: Schema.String,
    phase: Schema.Literals(["append", "restore", "ready"]),
    detail: Schema.String,
  },
) {
  override get message(): string {
    return `checkpoint layer ${this.layer} failed to ${this.phase}: ${this.detail}`
  }
}

/**
 * A backend cannot run here (another platform, a missing capability, a missing optional
 * dependency); `reason` says which so the user can act.
 *
 * @since 0.1.0
 * @category errors
 */
export class CheckpointBackendUnavailable extends Schema.TaggedError<CheckpointBackendUnavailable>()(
  "CheckpointBackendUnavailable",
  { backend: Schema.String, reason: Schema.String },
) {
  override get message(): string {
    return `checkpoint backend ${this.backend} is unavailable: ${this.reason}`
  }
}

/**
 * Configuration that does not decode (a bad duration, a bound out of range).
 *
 * @since 0.1.0
 * @category errors
 */
export class CheckpointConfigError extends Schema.TaggedError<CheckpointConfigError>()(
  "CheckpointConfigError",
  { detail: Schema.String },
) {
  override get message(): string {
    return `bad checkpoint configuration: ${this.detail}`
  }
}

/**
 * The peer broke the session protocol (a sequence number out of range, a message in the
 * wrong state). The one connection is closed; nothing else is disturbed.
 *
 * @since 0.1.0
 * @category errors
 */
export class CheckpointProtocolError extends Schema.TaggedError<CheckpointProtocolError>()(
  "CheckpointProtocolError",
  { detail: Schema.String },
) {
  override get message(): string {
    return `session protocol error: ${this.detail}`
  }
}

/**
 * A bundle's server answered a command (`GET`, `PAUSE`, `RESUME`) with a refusal: no such
 * object or transfer, or a full bundle. The bundle goes on.
 *
 * @since 0.1.0
 * @category errors
 */
export class CheckpointCommandFailed extends Schema.TaggedError<CheckpointCommandFailed>()(
  "CheckpointCommandFailed",
  { op: Schema.String, detail: Schema.String },
) {
  override get message(): string {
    return `${this.op} refused: ${this.detail}`
  }
}
