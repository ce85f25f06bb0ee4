/**
 * Typed errors of every `Store` backend. A backend maps its own failures onto these, so
 * code written against the memory store behaves the same on etcd.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * A compare-and-set failed: the key's modification revision was not the expected one
 * (0 means "the key must not exist"). `actual` is 0 when the key is absent.
 *
 * @since 0.1.0
 * @category errors
 */
export class Conflict extends Schema.TaggedError<Conflict>()("Conflict", {
  key: Schema.String,
  expected: Schema.Number,
  actual: Schema.Number,
}) {
  override get message(): string {
    return `conflict on ${this.key}: expected revision ${this.expected}, found ${this.actual}`
  }
}

/**
 * The lease does not exist any more: it expired, was revoked, or never existed.
 *
 * @since 0.1.0
 * @category errors
 */
export class LeaseExpired extends Schema.TaggedError<LeaseExpired>()("LeaseExpired", {
  lease: Schema.String,
}) {
  override get message(): string {
    return `lease ${this.lease} has expired or was revoked`
  }
}

/**
 * The store could not be reached or did not answer in time. The operation may or may not
 * have taken effect: a compare-and-set retried with the same expected revision is safe.
 *
 * @since 0.1.0
 * @category errors
 */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", {
  detail: Schema.String,
}) {
  override get message(): string {
    return `store unavailable: ${this.detail}`
  }
}

/**
 * A watch asked for revisions that were compacted away; start again from a fresh read at
 * `compactRevision` or later.
 *
 * @since 0.1.0
 * @category errors
 */
export class Compacted extends Schema.TaggedError<Compacted>()("Compacted", {
  requested: Schema.Number,
  compactRevision: Schema.Number,
}) {
  override get message(): string {
    return `revision ${this.requested} was compacted (oldest kept: ${this.compactRevision})`
  }
}

/**
 * The request itself is invalid: a key or value over the limits, an empty key, a bad TTL.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  detail: Schema.String,
}) {
  override get message(): string {
    return `invalid store request: ${this.detail}`
  }
}

/** @since 0.1.0 @category errors */
export type StoreError = Conflict | LeaseExpired | Unavailable | Compacted | InvalidRequest

/**
 * The options of a store layer (`RemoteStore`, `EtcdStore`, `MemoryStore`), `createStore` or
 * `createStoreServer` are unusable: the detail names the option. Nothing is opened or bound.
 *
 * @since 0.1.0
 * @category errors
 */
export class StoreConfigError extends Schema.TaggedError<StoreConfigError>()("StoreConfigError", {
  detail: Schema.String,
}) {
  override get message(): string {
    return `invalid store options: ${this.detail}`
  }
}
