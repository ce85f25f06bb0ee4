/**
 * A framed, bidirectional connection carrying messages of type `A`.
 *
 * @since 0.1.0
 */
import type { Effect, Stream } from "effect"
import type { StreamAddress } from "./Address.ts"
import type { CloseReason } from "./CloseReason.ts"
import type { CodecError, ConnectionClosed } from "./TransportError.ts"

/** @since 0.1.0 @category models */
export interface Connection<A> {
  /** Unique within the process, for logs. */
  readonly id: string
  readonly local: StreamAddress
  readonly remote: StreamAddress
  /**
   * Queues one message. Suspends while the bounded outgoing queue is full (backpressure);
   * fails with `ConnectionClosed` once the connection is closed.
   */
  readonly send: (message: A) => Effect.Effect<void, ConnectionClosed | CodecError>
  /** Queues several messages in order, with the same backpressure as `send`. */
  readonly sendAll: (messages: Iterable<A>) => Effect.Effect<void, ConnectionClosed | CodecError>
  /**
   * The received messages, in order, emitted in whole chunks as they arrive. Ends when the
   * connection closes, whatever the reason: read `closed` for it. Consume it once.
   */
  readonly messages: Stream.Stream<A>
  /**
   * A lower bound of when anything (a message or a keep-alive ping) last arrived from the
   * peer, in `Clock` milliseconds, never the time it was read: bytes read now may have
   * waited in the kernel since the event loop last read, which was after the keep-alive
   * tick before the last one (so a process starved of CPU does not move the bound past the
   * arrival), and bytes read after a back-pressure pause may have waited since before the
   * pause (so the bound is the tick before the one before the pause until two ticks after
   * the resume). The time the connection opened until then, and always without keep-alive.
   * Stays put once closed. What the peer sent before it closed the connection arrived after
   * it sent it, so a peer's close is never before this bound minus the time a message spends
   * in flight (nothing, on one machine).
   */
  readonly lastHeardAtMs: Effect.Effect<number>
  /** Completes, once, with why the connection closed. Never fails. */
  readonly closed: Effect.Effect<CloseReason>
  /**
   * Closes from this side: what is queued is still written (for at most the linger time),
   * then the peer sees `End` and this side `LocalClose`. Also runs when the scope closes.
   */
  readonly close: Effect.Effect<void>
}
