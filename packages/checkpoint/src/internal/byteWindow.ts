/**
 * The bytes of one direction a sender still holds: from `start` (the peer's cumulative
 * acknowledgement) to `end` (the last byte the application wrote), by sequence number.
 * Appended at the end, dropped from the front as acknowledgements arrive, sliced to send
 * again after a takeover or to put in a `window` checkpoint.
 */

export interface ByteWindow {
  start: number
  end: number
  readonly chunks: Array<Uint8Array>
}

export const make = (start: number, initial?: Uint8Array): ByteWindow => {
  const window: ByteWindow = { start, end: start, chunks: [] }
  if (initial !== undefined) append(window, initial)
  return window
}

/** Adds bytes at the end; the window keeps the array (copy it first if its owner reuses it). */
export const append = (window: ByteWindow, bytes: Uint8Array): void => {
  if (bytes.length === 0) return
  window.chunks.push(bytes)
  window.end += bytes.length
}

/** Forgets every byte below `upTo` (an acknowledgement). */
export const drop = (window: ByteWindow, upTo: number): void => {
  while (window.chunks.length > 0 && window.start + window.chunks[0]!.length <= upTo) {
    window.start += window.chunks[0]!.length
    window.chunks.shift()
  }
  if (upTo > window.start && window.chunks.length > 0) {
    window.chunks[0] = window.chunks[0]!.subarray(upTo - window.start)
    window.start = upTo
  }
  if (window.chunks.length === 0) window.start = Math.max(window.start, Math.min(upTo, window.end))
}

/** A copy of the bytes from `from` to `to`; a defect outside `start..end`. */
export const slice = (window: ByteWindow, from: number, to: number): Uint8Array => {
  if (from < window.start || to > window.end || from > to)
    throw new Error(`slice ${from}..${to} outside ${window.start}..${window.end}`)
  const out = new Uint8Array(to - from)
  let at = window.start
  let written = 0
  for (const chunk of window.chunks) {
    const chunkEnd = at + chunk.length
    if (chunkEnd > from && at < to) {
      const begin = Math.max(from, at) - at
      const finish = Math.min(to, chunkEnd) - at
      out.set(chunk.subarray(begin, finish), written)
      written += finish - begin
    }
    if (chunkEnd >= to) break
    at = chunkEnd
  }
  return out
}
