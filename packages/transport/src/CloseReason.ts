/**
 * Why a connection closed. Failure detectors in the mechanisms read exactly this, so each
 * case means one thing:
 *
 * - `End`: the peer closed cleanly (a FIN), including a process that exited or was killed
 *   while its kernel still ran (the kernel closes its sockets).
 * - `Reset`: the peer's kernel aborted the connection (ECONNRESET, EPIPE), typically a
 *   process killed with unread data, or a crashed node in `SimNet`.
 * - `Timeout`: nothing arrived within the idle time-out although keep-alives are sent:
 *   the peer hangs (SIGSTOP, a partition, a dead host).
 * - `ProtocolError`: the peer sent bytes that are not a valid frame, message or MAC.
 * - `LocalClose`: this side closed it.
 *
 * @since 0.1.0
 */
import { Data } from "effect"

/** @since 0.1.0 @category models */
export type CloseReason = End | Reset | Timeout | ProtocolError | LocalClose

/** @since 0.1.0 @category models */
export class End extends Data.TaggedClass("End") {}

/** @since 0.1.0 @category models */
export class Reset extends Data.TaggedClass("Reset")<{ readonly detail: string }> {}

/** @since 0.1.0 @category models */
export class Timeout extends Data.TaggedClass("Timeout")<{ readonly idleMs: number }> {}

/** @since 0.1.0 @category models */
export class ProtocolError extends Data.TaggedClass("ProtocolError")<{ readonly detail: string }> {}

/** @since 0.1.0 @category models */
export class LocalClose extends Data.TaggedClass("LocalClose") {}

/** True when the peer is gone or unreachable, as opposed to a local decision. @since 0.1.0 */
export const isPeerFailure = (reason: CloseReason): boolean =>
  reason._tag === "End" || reason._tag === "Reset" || reason._tag === "Timeout"

/** A one-line description for logs. @since 0.1.0 */
export const describe = (reason: CloseReason): string => {
  switch (reason._tag) {
    case "End":
    case "LocalClose":
      return reason._tag
    case "Reset":
    case "ProtocolError":
      return `${reason._tag}: ${reason.detail}`
    case "Timeout":
      return `Timeout after ${reason.idleMs} ms idle`
  }
}
