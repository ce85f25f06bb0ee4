/**
 * The benchmark's two-way application: the server answers every byte the client writes
 * with the same byte, and counts them (its checkpointed state). The plain `node:net`
 * baseline echoes the same bytes with no session layer.
 */
import type * as DuplexSession from "../src/DuplexSession.ts"

export const echo: DuplexSession.Handler<number> = {
  initial: 0,
  receive: (count, bytes) => ({ state: count + bytes.length, write: bytes }),
  encode: (count) => new TextEncoder().encode(String(count)),
  decode: (block) => {
    const count = Number(new TextDecoder().decode(block))
    return Number.isSafeInteger(count) && count >= 0 ? count : undefined
  },
}
