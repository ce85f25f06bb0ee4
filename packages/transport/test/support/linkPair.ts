/**
 * Two in-memory `Link`s joined back to back, for testing the connection core without
 * sockets. Delivery is asynchronous (a microtask), ordered, and a side that is not read
 * (`pause`) backs up until `write` reports the high-water mark.
 */
import * as Address from "../../src/Address.ts"
import type { Link, LinkHandlers } from "../../src/internal/link.ts"

interface Side {
  handlers: LinkHandlers | undefined
  pending: Array<Uint8Array>
  pendingBytes: number
  paused: boolean
  ended: boolean
  closed: boolean
}

export interface LinkPair {
  readonly client: Link
  readonly server: Link
  /** Delivers raw bytes to the server as if the client had written them. */
  readonly injectToServer: (bytes: Uint8Array) => void
  readonly injectToClient: (bytes: Uint8Array) => void
  /** Bytes written by each side so far. */
  readonly written: { client: number; server: number }
}

export const linkPair = (highWaterBytes = 64 * 1024): LinkPair => {
  const sides: Record<"client" | "server", Side> = {
    client: {
      handlers: undefined,
      pending: [],
      pendingBytes: 0,
      paused: false,
      ended: false,
      closed: false,
    },
    server: {
      handlers: undefined,
      pending: [],
      pendingBytes: 0,
      paused: false,
      ended: false,
      closed: false,
    },
  }
  const written = { client: 0, server: 0 }
  const flush = (to: Side, from: Side) => {
    if (to.handlers === undefined || to.closed) return
    const drainedBefore = to.pendingBytes > highWaterBytes
    while (!to.paused && to.pending.length > 0) {
      const chunk = to.pending.shift()!
      to.pendingBytes -= chunk.byteLength
      to.handlers.onData(chunk)
      if (to.closed) return
    }
    if (drainedBefore && to.pendingBytes <= highWaterBytes) from.handlers?.onDrain()
    if (to.pending.length === 0 && to.ended && !to.paused) {
      to.ended = false
      to.handlers.onEnd()
    }
  }
  const make = (self: "client" | "server"): Link => {
    const me = sides[self]
    const other = sides[self === "client" ? "server" : "client"]
    const schedule = () => queueMicrotask(() => flush(other, me))
    return {
      local: Address.tcp("127.0.0.1", self === "client" ? 50000 : 7000),
      remote: Address.tcp("127.0.0.1", self === "client" ? 7000 : 50000),
      start: (handlers) => {
        me.handlers = handlers
        queueMicrotask(() => flush(me, other))
      },
      write: (chunk) => {
        if (me.closed || other.closed) return true
        written[self] += chunk.byteLength
        other.pending.push(chunk.slice())
        other.pendingBytes += chunk.byteLength
        schedule()
        return other.pendingBytes <= highWaterBytes
      },
      pause: () => {
        me.paused = true
      },
      resume: () => {
        me.paused = false
        queueMicrotask(() => flush(me, other))
      },
      end: () => {
        if (me.closed) return
        me.closed = true
        other.ended = true
        schedule()
      },
      destroy: () => {
        if (me.closed) return
        me.closed = true
        queueMicrotask(() => {
          if (!other.closed) other.handlers?.onReset("ECONNRESET")
        })
      },
    }
  }
  const inject = (to: Side, from: Side) => (bytes: Uint8Array) => {
    to.pending.push(bytes)
    to.pendingBytes += bytes.byteLength
    queueMicrotask(() => flush(to, from))
  }
  return {
    client: make("client"),
    server: make("server"),
    injectToServer: inject(sides.server, sides.client),
    injectToClient: inject(sides.client, sides.server),
    written,
  }
}

/** A link whose writes pass through `transform` (identity by default) and are recorded. */
export interface TappedLink {
  readonly link: Link
  /** Every chunk written so far, after `transform`, in order. */
  readonly writes: Array<Uint8Array>
}

/**
 * Wraps `link` to capture what it writes (to replay it later) or to change it on the way
 * (to corrupt one bit): an attacker or a faulty network between the two ends.
 */
export const tapLink = (
  link: Link,
  transform: (chunk: Uint8Array) => Uint8Array = (chunk) => chunk,
): TappedLink => {
  const writes: Array<Uint8Array> = []
  return {
    writes,
    link: {
      ...link,
      write: (chunk) => {
        const out = transform(chunk)
        writes.push(out.slice())
        return link.write(out)
      },
    },
  }
}
