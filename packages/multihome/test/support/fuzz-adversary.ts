/**
 * The adversary of the machine-level fuzz tests: packet "recipes" drawn by fast-check and
 * turned into packets against the live state of the association they target (its tags,
 * TSNs and paths are known only once it is established). Every recipe here is one that
 * RFC 9260 says to drop, or to answer without any change to the association, so an
 * association fed any mix of them must carry on as if they had not been sent.
 */
import { Result } from "effect"
import * as fc from "fast-check"
import type * as Association from "../../src/Association.ts"
import type * as Chunk from "../../src/Chunk.ts"
import * as Crc32c from "../../src/Crc32c.ts"
import { encodeHeartbeatInfo } from "../../src/internal/association-support.ts"
import * as Packet from "../../src/Packet.ts"
import {
  bytes,
  cause,
  chunk,
  chunkByTag,
  packet,
  u8,
  u16,
  u32,
  unknownChunk,
} from "../arbitraries.ts"

/** What a recipe needs to know about its target when it is turned into a packet. */
export interface Target {
  readonly state: Association.State
  /** A State Cookie the target's side issued (authentic, for another association). */
  readonly cookie: Uint8Array
}

export type Recipe =
  /** §8.5: any chunks under a tag that is neither ours nor (reflected) the peer's, nor 0. */
  | { readonly _tag: "WrongTag"; readonly xor: number; readonly chunks: ReadonlyArray<Chunk.Chunk> }
  /**
   * Random bytes, or a valid packet's bytes with some changed, given a valid CRC32c:
   * whatever decodes is fed (its tag is never the target's).
   */
  | {
      readonly _tag: "RandomBytes"
      readonly bytes: Uint8Array
      readonly flips: ReadonlyArray<readonly [number, number]>
    }
  /** §6.2: DATA at least 65536 TSNs beyond the cumulative TSN: not buffered, not delivered. */
  | { readonly _tag: "DataBeyondWindow"; readonly ahead: number; readonly data: Chunk.Data }
  /** §6.2: DATA at or below the cumulative TSN: a duplicate, reported in the next SACK. */
  | { readonly _tag: "DataDuplicate"; readonly behind: number; readonly data: Chunk.Data }
  /** §6.2.1 D i: a SACK older than the last cumulative TSN ack: dropped. */
  | { readonly _tag: "SackStale"; readonly behind: number; readonly sack: Chunk.Sack }
  /** §8.3: a HEARTBEAT ACK whose info is not what we sent: no path is confirmed by it. */
  | {
      readonly _tag: "HeartbeatAckForged"
      readonly nonce: number
      readonly raw: Uint8Array | undefined
    }
  /** §8.3: a HEARTBEAT: echoed verbatim in a HEARTBEAT ACK. */
  | { readonly _tag: "Heartbeat"; readonly info: Uint8Array }
  /** §8.5.1 B, C: ABORT / SHUTDOWN COMPLETE under the wrong tag for its T bit. */
  | {
      readonly _tag: "ReflectedWrongTag"
      readonly abort: boolean
      readonly reflected: boolean
      readonly xor: number
    }
  /** §3.2: unknown chunk types (each upper-two-bit action) then a HEARTBEAT. */
  | {
      readonly _tag: "UnknownChunks"
      readonly unknown: ReadonlyArray<Chunk.UnknownChunk>
      readonly info: Uint8Array
    }
  /** §5.1.5: a COOKIE ECHO whose cookie is forged, truncated or bit-flipped. */
  | {
      readonly _tag: "ForgedCookie"
      readonly how: "Random" | "Truncated" | "BitFlip"
      readonly random: Uint8Array
      readonly position: number
      readonly bit: number
      readonly rightTag: boolean
    }
  /** §3.3.2, §5.2.2: an INIT with absurd fields to an existing association. */
  | {
      readonly _tag: "Init"
      readonly init: Chunk.Init
    }
  /** ERROR chunks with any causes: reported to the user, no state change in ESTABLISHED. */
  | { readonly _tag: "OperationError"; readonly causes: ReadonlyArray<Chunk.ErrorCause> }
  /** Chunks ESTABLISHED ignores: INIT ACK, COOKIE ACK, SHUTDOWN ACK, SHUTDOWN COMPLETE. */
  | { readonly _tag: "Ignored"; readonly chunk: Chunk.Chunk }

const nonZero = fc.integer({ min: 1, max: 0xffffffff })
const someData = chunkByTag.Data.map((data) =>
  data.userData.length === 0 ? { ...data, userData: new Uint8Array([1]) } : data,
)

export const recipe: fc.Arbitrary<Recipe> = fc.oneof(
  fc.record({
    _tag: fc.constant("WrongTag" as const),
    xor: nonZero,
    chunks: fc.array(chunk, { minLength: 1, maxLength: 4 }),
  }),
  fc.record({
    _tag: fc.constant("RandomBytes" as const),
    bytes: fc.oneof(fc.uint8Array({ minLength: 12, maxLength: 120 }), packet.map(Packet.encode)),
    flips: fc.array(fc.tuple(fc.nat(), u8), { maxLength: 3 }),
  }),
  fc.record({
    _tag: fc.constant("DataBeyondWindow" as const),
    ahead: fc.integer({ min: 65536, max: 0x7fffffff }),
    data: someData,
  }),
  fc.record({
    _tag: fc.constant("DataDuplicate" as const),
    behind: fc.integer({ min: 0, max: 0x7fffffff }),
    data: someData,
  }),
  fc.record({
    _tag: fc.constant("SackStale" as const),
    behind: fc.integer({ min: 1, max: 0x7fffffff }),
    sack: chunkByTag.Sack,
  }),
  fc.record({
    _tag: fc.constant("HeartbeatAckForged" as const),
    nonce: u32,
    raw: fc.option(bytes(48), { nil: undefined }),
  }),
  fc.record({ _tag: fc.constant("Heartbeat" as const), info: bytes(48) }),
  fc.record({
    _tag: fc.constant("ReflectedWrongTag" as const),
    abort: fc.boolean(),
    reflected: fc.boolean(),
    xor: nonZero,
  }),
  fc.record({
    _tag: fc.constant("UnknownChunks" as const),
    unknown: fc.array(unknownChunk, { minLength: 1, maxLength: 3 }),
    info: bytes(32),
  }),
  fc.record({
    _tag: fc.constant("ForgedCookie" as const),
    how: fc.constantFrom("Random" as const, "Truncated" as const, "BitFlip" as const),
    random: bytes(200),
    position: fc.nat(),
    bit: fc.integer({ min: 0, max: 7 }),
    rightTag: fc.boolean(),
  }),
  fc.record({
    _tag: fc.constant("Init" as const),
    init: fc.record({
      _tag: fc.constant("Init" as const),
      initiateTag: fc.oneof(fc.constant(0), u32),
      advertisedReceiverWindowCredit: fc.oneof(fc.constant(0), u32),
      outboundStreams: fc.oneof(fc.constant(0), fc.constant(0xffff), u16),
      inboundStreams: fc.oneof(fc.constant(0), fc.constant(0xffff), u16),
      initialTsn: u32,
      parameters: fc.constant([]),
    }),
  }),
  fc.record({
    _tag: fc.constant("OperationError" as const),
    causes: fc.array(cause, { maxLength: 3 }),
  }),
  fc.record({
    _tag: fc.constant("Ignored" as const),
    chunk: fc.oneof(
      chunkByTag.InitAck,
      chunkByTag.CookieAck,
      chunkByTag.ShutdownAck,
      fc.constant({ _tag: "ShutdownComplete" as const, reflected: false }),
    ),
  }),
)

/** A tag that is neither of the association's tags nor 0. */
const otherTag = (state: Association.State, xor: number): number => {
  for (let attempt = 0; attempt < 4; attempt++) {
    const tag = (state.myTag ^ (xor + attempt)) >>> 0
    if (tag !== 0 && tag !== state.myTag && tag !== state.peerTag) return tag
  }
  return (state.myTag ^ state.peerTag ^ 0x5a5a5a5a) >>> 0 || 1
}

const add = (a: number, n: number): number => (a + n) >>> 0

/**
 * The packet a recipe makes against `target`, or undefined when random bytes do not decode
 * (then `decodeFailure` holds the typed failure).
 */
export const materialize = (
  recipe: Recipe,
  target: Target,
): { packet: Packet.Packet | undefined; decodeFailure?: unknown } => {
  const st = target.state
  const header = { sourcePort: st.peerPort, destinationPort: st.localPort }
  const right = (chunks: ReadonlyArray<Chunk.Chunk>): Packet.Packet => ({
    ...header,
    verificationTag: st.myTag,
    chunks,
  })
  switch (recipe._tag) {
    case "WrongTag":
      return {
        packet: { ...header, verificationTag: otherTag(st, recipe.xor), chunks: recipe.chunks },
      }
    case "RandomBytes": {
      const bytes = recipe.bytes.slice()
      for (const [position, value] of recipe.flips) bytes[position % bytes.length] = value
      Crc32c.write(bytes, Crc32c.ofPacket(bytes))
      const decoded = Packet.decode(bytes)
      if (!Result.isSuccess(decoded)) return { packet: undefined, decodeFailure: decoded.failure }
      const tag = decoded.success.verificationTag
      // A packet under the target's own tag is not an attack RFC 9260 says to drop.
      return tag === st.myTag || tag === st.peerTag || tag === 0
        ? { packet: { ...decoded.success, verificationTag: otherTag(st, tag + 1) } }
        : { packet: decoded.success }
    }
    case "DataBeyondWindow":
      return {
        packet: right([{ ...recipe.data, tsn: add(st.tracker?.cumulative ?? 0, recipe.ahead) }]),
      }
    case "DataDuplicate":
      return {
        packet: right([{ ...recipe.data, tsn: add(st.tracker?.cumulative ?? 0, -recipe.behind) }]),
      }
    case "SackStale":
      return {
        packet: right([{ ...recipe.sack, cumulativeTsnAck: add(st.lastCumAck, -recipe.behind) }]),
      }
    case "HeartbeatAckForged": {
      const path = st.paths[recipe.nonce % Math.max(1, st.paths.length)]
      const info =
        recipe.raw ??
        encodeHeartbeatInfo({
          host: path?.host ?? "10.9.9.9",
          // Never the nonce of the heartbeat outstanding on that path.
          nonce:
            path !== undefined && recipe.nonce === path.heartbeatNonce
              ? add(recipe.nonce, 1)
              : recipe.nonce,
          sentMs: 0,
        })
      return { packet: right([{ _tag: "HeartbeatAck", info }]) }
    }
    case "Heartbeat":
      return { packet: right([{ _tag: "Heartbeat", info: recipe.info }]) }
    case "ReflectedWrongTag": {
      // T clear wants our tag, T set the peer's: give each the other one, or a third.
      const wrong =
        recipe.xor % 2 === 0 ? (recipe.reflected ? st.myTag : st.peerTag) : otherTag(st, recipe.xor)
      const chunk: Chunk.Chunk = recipe.abort
        ? { _tag: "Abort", reflected: recipe.reflected, causes: [] }
        : { _tag: "ShutdownComplete", reflected: recipe.reflected }
      return { packet: { ...header, verificationTag: wrong, chunks: [chunk] } }
    }
    case "UnknownChunks":
      return {
        packet: right([...recipe.unknown, { _tag: "Heartbeat", info: recipe.info }]),
      }
    case "ForgedCookie": {
      const real = target.cookie
      let cookie: Uint8Array
      if (recipe.how === "Random") cookie = recipe.random
      else if (recipe.how === "Truncated") cookie = real.subarray(0, recipe.position % real.length)
      else {
        cookie = real.slice()
        const at = recipe.position % cookie.length
        cookie[at] = (cookie[at] ?? 0) ^ (1 << recipe.bit)
      }
      return {
        packet: {
          ...header,
          verificationTag: recipe.rightTag ? st.myTag : otherTag(st, recipe.position + 1),
          chunks: [{ _tag: "CookieEcho", cookie }],
        },
      }
    }
    case "Init":
      return { packet: { ...header, verificationTag: 0, chunks: [recipe.init] } }
    case "OperationError":
      return { packet: right([{ _tag: "OperationError", causes: recipe.causes }]) }
    case "Ignored":
      return { packet: right([recipe.chunk]) }
  }
}
