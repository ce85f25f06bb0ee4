/**
 * The server application of the duplex tests: it answers every byte the client wrote with
 * that byte scrambled by its position (so a byte lost, repeated or moved on either way shows
 * in the answer), and at the end of the client's stream writes its count and a checksum of
 * everything it read. `expected` is what the client must read back, computed apart.
 */
import { createHash } from "node:crypto"
import type * as DuplexSession from "../../src/DuplexSession.ts"

export interface State {
  readonly count: number
  readonly sum: number
}

const step = (state: State, bytes: Uint8Array): { state: State; out: Uint8Array } => {
  const out = new Uint8Array(bytes.length)
  let sum = state.sum
  for (let i = 0; i < bytes.length; i++) {
    const position = state.count + i
    out[i] = bytes[i]! ^ ((position * 131 + (position >>> 9)) & 0xff)
    sum = (Math.imul(sum, 31) + bytes[i]!) >>> 0
  }
  return { state: { count: state.count + bytes.length, sum }, out }
}

const trailer = (state: State): Uint8Array => {
  const bytes = new Uint8Array(12)
  const view = new DataView(bytes.buffer)
  view.setFloat64(0, state.count)
  view.setUint32(8, state.sum)
  return bytes
}

export const handler: DuplexSession.Handler<State> = {
  initial: { count: 0, sum: 0 },
  receive: (state, bytes) => {
    const next = step(state, bytes)
    return { state: next.state, write: next.out }
  },
  end: trailer,
  encode: (state) => trailer(state),
  decode: (block) => {
    if (block.length !== 12) return undefined
    const view = new DataView(block.buffer, block.byteOffset, block.byteLength)
    return { count: view.getFloat64(0), sum: view.getUint32(8) }
  },
}

/** What the client reads back after writing `input` and ending. */
export const expected = (input: Uint8Array): Uint8Array => {
  const { state, out } = step(handler.initial, input)
  const all = new Uint8Array(out.length + 12)
  all.set(out)
  all.set(trailer(state), out.length)
  return all
}

/** A pattern a takeover at any byte would break: no period short enough to hide a shift. */
export const input = (size: number, salt: number): Uint8Array =>
  new Uint8Array(size).map((_, i) => (i * 7 + salt + (i >>> 11) * 13 + (i >>> 17)) & 0xff)

export const sha256 = (chunks: ReadonlyArray<Uint8Array>): string => {
  const hash = createHash("sha256")
  for (const chunk of chunks) hash.update(chunk)
  return hash.digest("hex")
}
