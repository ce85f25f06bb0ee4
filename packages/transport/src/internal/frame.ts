/**
 * Wire frames: a u32 big-endian body length, then the body: one type byte, the payload,
 * and on authenticated connections a 32-byte MAC. The decoder is incremental (any split of
 * the byte stream gives the same frames) and total (bad input is a returned error).
 */

/** Frame types. The client opens with `Hello`; `Data` carries one application message. */
export const FrameType = {
  Hello: 0x01,
  HelloAck: 0x02,
  Proof: 0x03,
  Data: 0x10,
  Ping: 0x11,
} as const

export const lengthPrefixBytes = 4
export const macBytes = 32

export interface Frame {
  readonly type: number
  /** The body after the type byte, MAC included when there is one. */
  readonly body: Uint8Array
}

/** A decoding failure: the stream can not be trusted past this point. */
export interface FrameError {
  readonly _tag: "FrameError"
  readonly detail: string
  /**
   * The frames the same chunk completed before the bad bytes. They were well framed, so a
   * caller still handles them: what the peer sent before the error is not lost.
   */
  readonly frames: Array<Frame>
}

const frameError = (detail: string, frames: Array<Frame>): FrameError => ({
  _tag: "FrameError",
  detail,
  frames,
})

/**
 * Splits a byte stream into frames. Keeps at most one partial frame buffered, whose size is
 * bounded by `maxBodyBytes`: a larger declared length is refused before it is buffered.
 */
export class FrameDecoder {
  private pending: Uint8Array | undefined = undefined
  /** Raised once the handshake is done; small before, so strangers fail fast. */
  maxBodyBytes: number

  constructor(maxBodyBytes: number) {
    this.maxBodyBytes = maxBodyBytes
  }

  /**
   * The frames completed by `chunk`, in order, or the first error (which carries the frames
   * completed before it). At most `framesMax`: the bytes after them stay buffered, unchecked,
   * for the next push (whose chunk may be empty), so that a limit raised meanwhile applies
   * to them.
   */
  push(chunk: Uint8Array, framesMax = Number.POSITIVE_INFINITY): Array<Frame> | FrameError {
    let bytes = chunk
    if (this.pending !== undefined) {
      bytes = concat2(this.pending, chunk)
      this.pending = undefined
    }
    const frames: Array<Frame> = []
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    let offset = 0
    while (frames.length < framesMax && bytes.byteLength - offset >= lengthPrefixBytes) {
      const bodyLength = view.getUint32(offset)
      if (bodyLength === 0) return frameError("empty frame", frames)
      if (bodyLength > this.maxBodyBytes) {
        return frameError(
          `frame of ${bodyLength} bytes is over the maximum ${this.maxBodyBytes}`,
          frames,
        )
      }
      const end = offset + lengthPrefixBytes + bodyLength
      if (end > bytes.byteLength) break
      frames.push({
        type: bytes[offset + lengthPrefixBytes]!,
        body: bytes.subarray(offset + lengthPrefixBytes + 1, end),
      })
      offset = end
    }
    if (offset < bytes.byteLength) {
      // Copy, so a retained partial frame does not pin a large socket buffer.
      this.pending = bytes.slice(offset)
    }
    return frames
  }

  /** Bytes of an incomplete frame held back. */
  get bufferedBytes(): number {
    return this.pending?.byteLength ?? 0
  }
}

const concat2 = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(a.byteLength + b.byteLength)
  out.set(a, 0)
  out.set(b, a.byteLength)
  return out
}

/** Size on the wire of a frame with this payload. */
export const encodedSize = (payloadBytes: number, withMac: boolean): number =>
  lengthPrefixBytes + 1 + payloadBytes + (withMac ? macBytes : 0)

/**
 * Writes one frame at `offset` of `out` and returns the offset after it. `mac`, when
 * given, computes the MAC over type and payload and writes it after the payload.
 */
export const writeFrame = (
  out: Uint8Array,
  offset: number,
  type: number,
  payload: Uint8Array,
  mac: ((type: number, payload: Uint8Array, into: Uint8Array) => void) | undefined,
): number => {
  const bodyLength = 1 + payload.byteLength + (mac === undefined ? 0 : macBytes)
  out[offset] = bodyLength >>> 24
  out[offset + 1] = (bodyLength >>> 16) & 0xff
  out[offset + 2] = (bodyLength >>> 8) & 0xff
  out[offset + 3] = bodyLength & 0xff
  out[offset + 4] = type
  out.set(payload, offset + 5)
  const end = offset + 5 + payload.byteLength
  if (mac !== undefined) {
    mac(type, payload, out.subarray(end, end + macBytes))
    return end + macBytes
  }
  return end
}

/** One frame as its own buffer. */
export const encodeFrame = (type: number, payload: Uint8Array): Uint8Array => {
  const out = new Uint8Array(encodedSize(payload.byteLength, false))
  writeFrame(out, 0, type, payload, undefined)
  return out
}
