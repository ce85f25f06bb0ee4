/**
 * The package's metrics: checkpoints written (by reason) with their size and write cost,
 * takeovers (resumed, or refused by reason) with their duration on the server and the bytes
 * sent again, and on the client the gap a takeover left in the stream. Updated by
 * `CheckpointStore` (writes), the `ObjectSession` server (takeovers) and its client (gaps).
 *
 * @since 0.1.0
 */
import { Metric } from "effect"

/** @since 0.1.0 @category metrics */
export const checkpointsWritten = Metric.counter(
  "understudy_checkpoint_checkpoints_written_total",
  {
    description:
      "Checkpoints written to the store, by reason (open, bytes, horizon, takeover, ...)",
  },
)

/** @since 0.1.0 @category metrics */
export const checkpointBytes = Metric.histogram("understudy_checkpoint_checkpoint_bytes", {
  description: "Encoded size of each checkpoint written",
  boundaries: Metric.exponentialBoundaries({ start: 256, factor: 4, count: 9 }),
})

/** @since 0.1.0 @category metrics */
export const checkpointWriteMs = Metric.histogram("understudy_checkpoint_write_ms", {
  description: "The cost of a checkpoint: gathering every layer's block and the store write, in ms",
  boundaries: Metric.exponentialBoundaries({ start: 0.25, factor: 2, count: 14 }),
})

/** @since 0.1.0 @category metrics */
export const takeovers = Metric.counter("understudy_checkpoint_takeovers_total", {
  description: "Resume requests this server decided: outcome=resumed, or the refusal reason",
})

/**
 * How long a takeover took at the server that took the session over: from its claim of the
 * session (the wait for the old owner's lease included) to the session served again (its
 * checkpoint adopted, every layer restored, `Resumed` sent). Only resumed takeovers count.
 *
 * @since 0.1.0
 * @category metrics
 */
export const takeoverMs = Metric.histogram("understudy_checkpoint_takeover_ms", {
  description:
    "Server side: from the claim of a session to serving it again (adopted, restored, Resumed sent), in ms",
  boundaries: Metric.exponentialBoundaries({ start: 1, factor: 2, count: 16 }),
})

/** @since 0.1.0 @category metrics */
export const bytesResent = Metric.counter("understudy_checkpoint_bytes_resent_total", {
  description:
    "Bytes a takeover sends again: from the client's acknowledgement to the checkpoint's position",
})

/** @since 0.1.0 @category metrics */
export const takeoverGapMs = Metric.histogram("understudy_checkpoint_takeover_gap_ms", {
  description:
    "Client side: from the loss of its connection to the first resumed byte, in ms (detection included)",
  boundaries: Metric.exponentialBoundaries({ start: 1, factor: 2, count: 16 }),
})

/** @since 0.1.0 @category metrics */
export const sessionsServed = Metric.gauge("understudy_checkpoint_sessions", {
  description: "Sessions a server serves now",
})
