/**
 * A `net.Socket` seen as a `Link`: the byte-stream boundary that `internal/connection.ts`
 * builds framing, the handshake and keep-alive on. This file does no per-frame work: one
 * `onData` per socket chunk, one `write` per coalesced buffer.
 */
import type * as net from "node:net"
import type { StreamAddress } from "../Address.ts"
import type { ListenError } from "../TransportError.ts"
import type { Link, LinkHandlers } from "./link.ts"

/** Error codes that mean the peer's side aborted the connection. */
const resetCodes = new Set(["ECONNRESET", "EPIPE", "ETIMEDOUT"])

/** The errno code of a Node.js system error (`EADDRINUSE`, `ECONNRESET`, ...). */
export const errorCode = (error: unknown): string | undefined =>
  error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined

/** Why a bind failed, from its errno code. */
export const listenReason = (code: string | undefined): ListenError["reason"] => {
  switch (code) {
    case "EADDRINUSE":
      return "AddressInUse"
    case "EACCES":
    case "EPERM":
      return "AccessDenied"
    case "EADDRNOTAVAIL":
      return "AddressNotAvailable"
    default:
      return "Other"
  }
}

/** `code: message` of a socket error, for `Reset.detail`. */
export const describeError = (error: unknown): string => {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code !== undefined && resetCodes.has(code)) return code
    return code === undefined ? error.message : `${code}: ${error.message}`
  }
  return String(error)
}

/** Events that arrived before `start`, replayed in order at `start`. */
type Pending =
  | { readonly _tag: "Data"; readonly chunk: Uint8Array }
  | { readonly _tag: "Drain" }
  | { readonly _tag: "End" }
  | { readonly _tag: "Reset"; readonly detail: string }

/**
 * Wraps a connected socket. The socket is paused until `start`, so nothing is lost and
 * nothing piles up before the connection core is ready; an error in that window is kept and
 * reported at `start`. `onEnd` / `onReset` fire at most once between them, and nothing after
 * `destroy`.
 */
export const make = (
  socket: net.Socket,
  addresses: { readonly local: StreamAddress; readonly remote: StreamAddress },
): Link => {
  let handlers: LinkHandlers | undefined
  const pending: Array<Pending> = []
  // Set once `onEnd` or `onReset` is reported (or queued), or after a local `destroy`.
  let finished = false
  let destroyed = false
  // Whether the core asked for a pause; `start` must not undo that.
  let pausedByCore = false

  const emit = (event: Pending): void => {
    if (destroyed) return
    if (event._tag === "End" || event._tag === "Reset") {
      if (finished) return
      finished = true
    } else if (finished) {
      return
    }
    if (handlers === undefined) {
      pending.push(event)
      return
    }
    dispatch(handlers, event)
  }

  // Paused before any 'data' listener is attached, so no byte is read before `start`.
  socket.pause()
  socket.setNoDelay(true)
  socket.on("data", (chunk: Buffer) => emit({ _tag: "Data", chunk }))
  socket.on("end", () => emit({ _tag: "End" }))
  socket.on("drain", () => emit({ _tag: "Drain" }))
  // Always listening for 'error': an unhandled one would bring the whole process down.
  socket.on("error", (error) => emit({ _tag: "Reset", detail: describeError(error) }))
  // A close without 'end' or 'error' first (not expected from node, but never silent).
  socket.on("close", () => emit({ _tag: "Reset", detail: "socket closed" }))
  // Already gone before it was handed over (a reset right after the connect): its events
  // are past, so it is reported here.
  if (socket.destroyed) emit({ _tag: "Reset", detail: "socket closed before the link took it" })

  return {
    local: addresses.local,
    remote: addresses.remote,
    start: (next) => {
      if (handlers !== undefined) return
      handlers = next
      for (const event of pending.splice(0)) {
        if (destroyed) break
        dispatch(next, event)
      }
      if (!pausedByCore && !destroyed) socket.resume()
    },
    write: (chunk) => {
      // Bytes to a socket that is gone are dropped: its end was or will be reported.
      if (socket.destroyed || socket.writableEnded) return true
      return socket.write(chunk)
    },
    pause: () => {
      pausedByCore = true
      socket.pause()
    },
    resume: () => {
      pausedByCore = false
      if (handlers !== undefined) socket.resume()
    },
    end: () => {
      if (!socket.destroyed && !socket.writableEnded) socket.end()
    },
    destroy: () => {
      destroyed = true
      pending.length = 0
      socket.destroy()
    },
  }
}

const dispatch = (handlers: LinkHandlers, event: Pending): void => {
  switch (event._tag) {
    case "Data":
      handlers.onData(event.chunk)
      break
    case "Drain":
      handlers.onDrain()
      break
    case "End":
      handlers.onEnd()
      break
    case "Reset":
      handlers.onReset(event.detail)
      break
  }
}
