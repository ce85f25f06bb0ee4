/**
 * The transport's metrics, recorded in the metrics registry of the fiber that listens,
 * connects or binds (the program's, or a Promise facade caller's): connections open,
 * handshakes by outcome, connections closed by reason (a keep-alive `Timeout`, a
 * `ProtocolError` for a frame that did not decode or verify), messages and bytes each way,
 * and datagrams sent, received and dropped.
 *
 * The per-message counters take one update per batch (a chunk read, a write of every
 * queued message), not one per message, so the hot path pays a few map look-ups per batch.
 *
 * @since 0.1.0
 */
import { Metric } from "effect"

/**
 * @since 0.1.0
 * @category metrics
 */
export const connections = Metric.gauge("understudy_transport_connections", {
  description: "Stream connections open (through the handshake, not yet closed), by side",
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const handshakes = Metric.counter("understudy_transport_handshakes_total", {
  description:
    "Handshakes by side and outcome: accepted, or the refusal (NotUnderstudy, VersionMismatch, AuthenticationRequired, AuthenticationFailed, Timeout, Closed)",
  incremental: true,
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const closes = Metric.counter("understudy_transport_closes_total", {
  description:
    "Open connections closed, by side and reason (End, Reset, Timeout: the keep-alive's, ProtocolError: bad frame or message, LocalClose)",
  incremental: true,
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const messagesReceived = Metric.counter("understudy_transport_messages_received_total", {
  description: "Messages received and decoded on stream connections",
  incremental: true,
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const messagesSent = Metric.counter("understudy_transport_messages_sent_total", {
  description: "Messages written on stream connections",
  incremental: true,
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const bytesReceived = Metric.counter("understudy_transport_bytes_received_total", {
  description:
    "Bytes read from stream connections: the handshake, framing, MACs and keep-alive pings included",
  incremental: true,
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const bytesSent = Metric.counter("understudy_transport_bytes_sent_total", {
  description:
    "Bytes written to stream connections: the handshake, framing, MACs and keep-alive pings included",
  incremental: true,
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const datagramsSent = Metric.counter("understudy_transport_datagrams_sent_total", {
  description: "Datagrams an endpoint handed to the network",
  incremental: true,
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const datagramsReceived = Metric.counter("understudy_transport_datagrams_received_total", {
  description: "Datagrams an endpoint queued for its reader",
  incremental: true,
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const datagramsDropped = Metric.counter("understudy_transport_datagrams_dropped_total", {
  description:
    "Datagrams that reached an endpoint but were dropped, by reason (queue-full: the reader is behind)",
  incremental: true,
})
