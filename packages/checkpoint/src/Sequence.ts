/**
 * The session layer's sequence and acknowledgement rules, as pure functions over plain
 * state (no I/O, no clock): byte sequence numbers per direction from a random initial
 * value, cumulative acknowledgements from the receiver, and a bounded window of bytes sent
 * but not acknowledged. The drivers and the simulations step these very functions.
 *
 * A sender may send byte `s` only when `s < horizon` (the latest durable checkpoint allows
 * it) and `s < acked + windowBytesMax` (the window). A receiver delivers each byte once, in
 * order: a segment that repeats delivered bytes gives only its new suffix.
 *
 * @since 0.1.0
 */

/** One direction, seen by its sender. @since 0.1.0 @category models */
export interface Sender {
  readonly initialSeq: number
  /** The receiver's cumulative acknowledgement: every byte below it was delivered. */
  readonly acked: number
  /** The next byte to send. */
  readonly next: number
  /** The send horizon: bytes at or beyond it wait for a checkpoint. */
  readonly horizon: number
  readonly windowBytesMax: number
}

/** One direction, seen by its receiver. @since 0.1.0 @category models */
export interface Receiver {
  readonly initialSeq: number
  /** The next byte expected: the cumulative acknowledgement this side sends. */
  readonly next: number
}

/** Initial sequence numbers lie below this, so 2^52 bytes fit before 2^53. @since 0.1.0 @category limits */
export const initialSeqBound = 2 ** 48

/** @since 0.1.0 @category constructors */
export const sender = (
  initialSeq: number,
  windowBytesMax: number,
  horizon = Number.MAX_SAFE_INTEGER,
): Sender => ({
  initialSeq,
  acked: initialSeq,
  next: initialSeq,
  horizon,
  windowBytesMax,
})

/** @since 0.1.0 @category constructors */
export const receiver = (initialSeq: number): Receiver => ({ initialSeq, next: initialSeq })

/** Bytes sent and not acknowledged. @since 0.1.0 @category getters */
export const inFlight = (state: Sender): number => state.next - state.acked

/**
 * How many of `wanted` bytes may be sent now: limited by the window and the horizon.
 *
 * @since 0.1.0
 * @category sending
 */
export const sendable = (state: Sender, wanted: number): number =>
  Math.max(
    0,
    Math.min(wanted, state.horizon - state.next, state.acked + state.windowBytesMax - state.next),
  )

/**
 * Records `length` bytes sent from `next`. A defect to send what `sendable` did not allow.
 *
 * @since 0.1.0
 * @category sending
 */
export const sent = (state: Sender, length: number): Sender => {
  if (length < 0 || length > sendable(state, length))
    throw new Error(`send of ${length} bytes beyond window or horizon`)
  return { ...state, next: state.next + length }
}

/** @since 0.1.0 @category models */
export type AckOutcome =
  | { readonly _tag: "Advanced"; readonly state: Sender; readonly released: number }
  /** An acknowledgement at or below the current one (late, duplicated): nothing changes. */
  | { readonly _tag: "Stale" }
  /** An acknowledgement of bytes never sent: a protocol error. */
  | { readonly _tag: "BeyondSent"; readonly ack: number; readonly next: number }

/**
 * A cumulative acknowledgement arrived.
 *
 * @since 0.1.0
 * @category receiving
 */
export const acknowledge = (state: Sender, ack: number): AckOutcome => {
  if (!Number.isSafeInteger(ack) || ack > state.next)
    return { _tag: "BeyondSent", ack, next: state.next }
  if (ack <= state.acked) return { _tag: "Stale" }
  return { _tag: "Advanced", state: { ...state, acked: ack }, released: ack - state.acked }
}

/**
 * Moves the horizon (a checkpoint became durable). It never moves back.
 *
 * @since 0.1.0
 * @category sending
 */
export const extendHorizon = (state: Sender, horizon: number): Sender =>
  horizon > state.horizon ? { ...state, horizon } : state

/**
 * After a takeover, the peer acknowledged `ack`: everything from there is sent again.
 * `ack` must lie within `acked..next` (the resume comparison checked it).
 *
 * @since 0.1.0
 * @category resuming
 */
export const rewind = (state: Sender, ack: number): Sender => {
  if (ack < state.acked || ack > state.next)
    throw new Error(`rewind to ${ack} outside ${state.acked}..${state.next}`)
  return { ...state, acked: ack, next: ack }
}

/** @since 0.1.0 @category models */
export type DataOutcome =
  /** Deliver `length` bytes of the segment from `offset`; the acknowledgement becomes `state.next`. */
  | {
      readonly _tag: "Deliver"
      readonly state: Receiver
      readonly offset: number
      readonly length: number
    }
  /** Every byte was delivered before: acknowledge again, deliver nothing. */
  | { readonly _tag: "Duplicate" }
  /** The segment starts after a gap: over a reliable transport a protocol error; over UDP, drop it. */
  | { readonly _tag: "Gap"; readonly expected: number; readonly seq: number }

/**
 * A segment of `length` bytes starting at `seq` arrived.
 *
 * @since 0.1.0
 * @category receiving
 */
export const receive = (state: Receiver, seq: number, length: number): DataOutcome => {
  if (!Number.isSafeInteger(seq) || seq > state.next)
    return { _tag: "Gap", expected: state.next, seq }
  const end = seq + length
  if (end <= state.next) return { _tag: "Duplicate" }
  const offset = state.next - seq
  return { _tag: "Deliver", state: { ...state, next: end }, offset, length: length - offset }
}
