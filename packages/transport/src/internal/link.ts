/**
 * The byte-stream boundary under every connection. `NodeTransport` wraps a `net.Socket` in
 * it, `SimNet` simulates one; framing, the handshake, keep-alive, backpressure and close
 * reasons are built once on top of it (`internal/connection.ts`).
 */
import type { Effect } from "effect"
import type { StreamAddress } from "../Address.ts"

/** Events a link reports, in the order they happen. After `onEnd` or `onReset`, none. */
export interface LinkHandlers {
  /** Bytes arrived. The chunk may hold any part of any number of frames. */
  readonly onData: (chunk: Uint8Array) => void
  /** The peer closed its side cleanly (a FIN): no more data will come. */
  readonly onEnd: () => void
  /** The peer's side aborted (ECONNRESET, EPIPE, or a crashed simulated node). */
  readonly onReset: (detail: string) => void
  /** The write buffer fell below its high-water mark after a `write` returned false. */
  readonly onDrain: () => void
}

export interface Link {
  readonly local: StreamAddress
  readonly remote: StreamAddress
  /** Starts reporting events; called once. Data that arrived earlier is reported first. */
  readonly start: (handlers: LinkHandlers) => void
  /** Queues bytes. Returns false when the write buffer is over its high-water mark. */
  readonly write: (chunk: Uint8Array) => boolean
  /** Stops reporting data until `resume` (the peer's writes then back up). */
  readonly pause: () => void
  readonly resume: () => void
  /** Sends a clean close after the queued bytes. */
  readonly end: () => void
  /** Aborts at once; no more events are reported. */
  readonly destroy: () => void
}

/** Where nonces come from: the OS's CSPRNG on real sockets, the seeded `Random` in SimNet. */
export type RandomBytes = (size: number) => Effect.Effect<Uint8Array>
