/**
 * The association machine: Packet assembly (bundling, §6.10).
 */
import * as Auth from "../../Auth.ts"
import * as Chunk from "../../Chunk.ts"
import * as Packet from "../../Packet.ts"
import { addressOf, type Ctx, type Destination } from "./context.ts"
import type { PeerAddress } from "./models.ts"
import { pad4 } from "./outbound.ts"
import type { State } from "./state.ts"

const sameAddress = (a: PeerAddress, b: PeerAddress): boolean =>
  a.host === b.host && a.udpPort === b.udpPort

export const transmit = (
  ctx: Ctx,
  st: State,
  to: PeerAddress,
  tag: number,
  chunks: Array<Chunk.Chunk>,
) => {
  // RFC 4895 §6.2: an AUTH chunk goes before the first chunk the peer wants authenticated
  // and covers it and every chunk after it.
  const first = st.auth === undefined ? -1 : chunks.findIndex((chunk) => needsAuth(st, chunk))
  if (first >= 0) {
    const after = chunks.slice(first)
    chunks = [...chunks.slice(0, first), Auth.sign(st.auth!, after), ...after]
  }
  ctx.out.push({
    _tag: "Send",
    to,
    message: {
      sourcePort: st.localPort,
      destinationPort: st.peerPort,
      verificationTag: tag,
      chunks,
    },
  })
}

export const destinationFor = (ctx: Ctx, to: PeerAddress, tag: number): Destination => {
  for (const dest of ctx.dests) if (dest.tag === tag && sameAddress(dest.to, to)) return dest
  const dest: Destination = { to, tag, chunks: [], size: Packet.headerLength, authed: false }
  ctx.dests.push(dest)
  return dest
}

export const flushDestination = (ctx: Ctx, st: State, dest: Destination): void => {
  if (dest.chunks.length === 0) return
  transmit(ctx, st, dest.to, dest.tag, dest.chunks)
  dest.chunks = []
  dest.size = Packet.headerLength
  dest.authed = false
}

/** Queues a chunk for bundling into a packet to `to`, starting a new packet when full. */
export const queueChunk = (
  ctx: Ctx,
  st: State,
  to: PeerAddress,
  chunk: Chunk.Chunk,
  size = Chunk.chunkSize(chunk),
  tag = st.peerTag,
): Destination => {
  const dest = destinationFor(ctx, to, tag)
  const auth = needsAuth(st, chunk) ? authSize(st) : 0
  if (dest.chunks.length > 0 && dest.size + size + (dest.authed ? 0 : auth) > st.config.mtu) {
    flushDestination(ctx, st, dest)
  }
  dest.chunks.push(chunk)
  dest.size += size
  if (auth > 0 && !dest.authed) {
    dest.size += auth
    dest.authed = true
  }
  return dest
}

/** The peer accepts this chunk only behind an AUTH chunk (its CHUNKS parameter). */
const needsAuth = (st: State, chunk: Chunk.Chunk): boolean =>
  st.auth?.peerChunks.includes(Chunk.typeOf(chunk)) === true

const authSize = (st: State): number =>
  8 + pad4(Auth.digestLength(st.auth?.sendHmacId ?? Auth.HmacId.Sha1) ?? 20)

/** A chunk that must be alone in its packet (INIT, INIT ACK, SHUTDOWN COMPLETE), §6.10. */
export const sendAlone = (
  ctx: Ctx,
  st: State,
  to: PeerAddress,
  tag: number,
  chunk: Chunk.Chunk,
) => {
  transmit(ctx, st, to, tag, [chunk])
}

export const pathAddress = (st: State, index: number, fallback: PeerAddress): PeerAddress => {
  const path = st.paths[index]
  return path === undefined ? fallback : addressOf(path)
}
