/**
 * Authenticated chunks (RFC 4895): the parameters an endpoint offers at setup (RANDOM,
 * CHUNKS, HMAC-ALGO), the association shared key both ends derive from them, and the HMAC
 * of an AUTH chunk.
 *
 * No endpoint pair shared key is configured, so the only Shared Key Identifier is 0 and its
 * key the empty byte vector (§6.1); the association shared key is then the two key vectors
 * concatenated, numerically smaller first. The HMAC covers the AUTH chunk (its HMAC field
 * zero) and every chunk after it, as encoded by `Chunk.writeChunk`: the association
 * computes it over the chunks it decoded, re-encoded, so a replica stepping the same
 * packet reaches the same verdict as the node that received it.
 *
 * @since 0.1.0
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import * as Chunk from "./Chunk.ts"

/**
 * HMAC identifiers (RFC 4895 §6.1): SHA-1 (mandatory) and SHA-256.
 *
 * @since 0.1.0
 * @category constants
 */
export const HmacId = { Sha1: 1, Sha256: 3 } as const

/**
 * The HMAC identifiers this endpoint offers, preferred first (SHA-1 must be among them).
 *
 * @since 0.1.0
 * @category constants
 */
export const localHmacIds: ReadonlyArray<number> = [HmacId.Sha256, HmacId.Sha1]

/**
 * Bytes of the RANDOM this endpoint sends (§3.1 recommends 32; usrsctp requires it).
 *
 * @since 0.1.0
 * @category constants
 */
export const randomLength = 32

/**
 * The error cause code of Unsupported HMAC Identifier (§4.1).
 *
 * @since 0.1.0
 * @category constants
 */
export const unsupportedHmacIdentifier = 0x0105

/**
 * The digest length of an HMAC identifier, or undefined if it is not one this endpoint knows.
 *
 * @since 0.1.0
 * @category hmac
 */
export const digestLength = (hmacId: number): number | undefined =>
  hmacId === HmacId.Sha1 ? 20 : hmacId === HmacId.Sha256 ? 32 : undefined

const algorithm = (hmacId: number): string => (hmacId === HmacId.Sha1 ? "sha1" : "sha256")

/**
 * The parameters this endpoint puts in its INIT / INIT ACK: RANDOM, CHUNKS (the chunk
 * types it accepts only authenticated, omitted when none) and HMAC-ALGO.
 *
 * @since 0.1.0
 * @category setup
 */
export const localParameters = (
  random: Uint8Array,
  requiredChunks: ReadonlyArray<number>,
): Array<Chunk.Parameter> => [
  { _tag: "Random", random },
  ...(requiredChunks.length === 0
    ? []
    : [{ _tag: "ChunkList" as const, chunkTypes: Uint8Array.from(requiredChunks) }]),
  { _tag: "HmacAlgo", hmacIds: localHmacIds },
]

/** A parameter's type-length-value without padding (§6.1: padding is left out). */
const unpadded = (parameter: Chunk.Parameter): Uint8Array => {
  const encoded = Chunk.encodeParameter(parameter)
  return encoded.subarray(0, (encoded[2]! << 8) | encoded[3]!)
}

/**
 * An endpoint's key vector (§6.1): its RANDOM, CHUNKS and HMAC-ALGO parameters, type,
 * length and value, unpadded, concatenated in that order; a parameter not sent is left out.
 *
 * @since 0.1.0
 * @category keys
 */
export const keyVector = (parameters: ReadonlyArray<Chunk.Parameter>): Uint8Array => {
  const parts: Array<Uint8Array> = []
  for (const tag of ["Random", "ChunkList", "HmacAlgo"] as const) {
    const parameter = parameters.find((p) => p._tag === tag)
    if (parameter !== undefined) parts.push(unpadded(parameter))
  }
  const vector = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0))
  let at = 0
  for (const part of parts) {
    vector.set(part, at)
    at += part.length
  }
  return vector
}

/**
 * Compares two key vectors as unsigned big-endian numbers; equal numbers compare by length
 * (§6.1: the shorter first).
 */
const compareVectors = (a: Uint8Array, b: Uint8Array): number => {
  const length = Math.max(a.length, b.length)
  for (let index = 0; index < length; index++) {
    const x = index < length - a.length ? 0 : a[index - (length - a.length)]!
    const y = index < length - b.length ? 0 : b[index - (length - b.length)]!
    if (x !== y) return x - y
  }
  return a.length - b.length
}

/**
 * The association shared key (§6.1): the endpoint pair shared key (empty: none
 * configured), then the numerically smaller key vector, then the larger.
 *
 * @since 0.1.0
 * @category keys
 */
export const associationKey = (
  local: Uint8Array,
  peer: Uint8Array,
  endpointPairKey: Uint8Array = new Uint8Array(0),
): Uint8Array => {
  const [first, second] = compareVectors(local, peer) <= 0 ? [local, peer] : [peer, local]
  const key = new Uint8Array(endpointPairKey.length + first.length + second.length)
  key.set(endpointPairKey, 0)
  key.set(first, endpointPairKey.length)
  key.set(second, endpointPairKey.length + first.length)
  return key
}

/**
 * What both ends agreed on for an association (plain data, replicated with it).
 *
 * @since 0.1.0
 * @category models
 */
export interface Negotiated {
  /** The association shared key for Shared Key Identifier 0. */
  readonly key: Uint8Array
  /** The HMAC this end uses: the first of the peer's list that it supports. */
  readonly sendHmacId: number
  /** Chunk types the peer accepts only after an AUTH chunk. */
  readonly peerChunks: Uint8Array
  /** Chunk types this end accepts only after an AUTH chunk. */
  readonly localChunks: Uint8Array
  /** Both ends support ASCONF (RFC 5061): listed in Supported Extensions and CHUNKS. */
  readonly asconf: boolean
}

const lists = (
  parameters: ReadonlyArray<Chunk.Parameter>,
  tag: "ChunkList" | "SupportedExtensions",
  type: number,
): boolean => {
  const parameter = parameters.find((p) => p._tag === tag)
  return parameter !== undefined && "chunkTypes" in parameter && parameter.chunkTypes.includes(type)
}

/**
 * Whether a parameter list (INIT / INIT ACK) supports ASCONF: Supported Extensions lists
 * ASCONF and ASCONF-ACK, and CHUNKS asks for both authenticated (RFC 5061 §4.1.1).
 */
const supportsAsconf = (parameters: ReadonlyArray<Chunk.Parameter>): boolean =>
  [Chunk.ChunkType.Asconf, Chunk.ChunkType.AsconfAck].every(
    (type) =>
      lists(parameters, "SupportedExtensions", type) && lists(parameters, "ChunkList", type),
  )

/**
 * Negotiates AUTH from what this end sent and what the peer sent (§6.1): both sent RANDOM
 * and HMAC-ALGO and share an HMAC, or there is no AUTH (undefined) and the association runs
 * without it.
 *
 * @since 0.1.0
 * @category setup
 */
export const negotiate = (
  local: ReadonlyArray<Chunk.Parameter>,
  peer: ReadonlyArray<Chunk.Parameter>,
): Negotiated | undefined => {
  const peerHmacs = peer.find((p) => p._tag === "HmacAlgo")
  const localHmacs = local.find((p) => p._tag === "HmacAlgo")
  if (
    peerHmacs === undefined ||
    localHmacs === undefined ||
    !peer.some((p) => p._tag === "Random") ||
    !local.some((p) => p._tag === "Random")
  ) {
    return undefined
  }
  const sendHmacId = peerHmacs.hmacIds.find((id) => localHmacs.hmacIds.includes(id))
  if (sendHmacId === undefined) return undefined
  const chunksOf = (parameters: ReadonlyArray<Chunk.Parameter>): Uint8Array => {
    const list = parameters.find((p) => p._tag === "ChunkList")
    return list === undefined ? new Uint8Array(0) : Uint8Array.from(list.chunkTypes)
  }
  return {
    key: associationKey(keyVector(local), keyVector(peer)),
    sendHmacId,
    // §3.2: INIT, INIT ACK, SHUTDOWN COMPLETE and AUTH are never authenticated.
    peerChunks: chunksOf(peer).filter((type) => !neverAuthenticated.has(type)),
    localChunks: chunksOf(local).filter((type) => !neverAuthenticated.has(type)),
    asconf: supportsAsconf(local) && supportsAsconf(peer),
  }
}

const neverAuthenticated = new Set<number>([
  Chunk.ChunkType.Init,
  Chunk.ChunkType.InitAck,
  Chunk.ChunkType.ShutdownComplete,
  Chunk.ChunkType.Auth,
])

/**
 * The HMAC of an AUTH chunk and the chunks after it (`covered[0]` is the AUTH chunk, whose
 * HMAC field counts as zero), under `key`.
 *
 * @since 0.1.0
 * @category hmac
 */
export const hmacOf = (
  hmacId: number,
  key: Uint8Array,
  covered: ReadonlyArray<Chunk.Chunk>,
): Uint8Array => {
  const size = covered.reduce((sum, chunk) => sum + Chunk.chunkSize(chunk), 0)
  const bytes = new Uint8Array(size)
  let at = 0
  for (const chunk of covered) at = Chunk.writeChunk(bytes, at, chunk)
  // The HMAC field (after the 8-byte AUTH header) is hashed as zeros.
  bytes.fill(0, 8, Chunk.chunkLength(covered[0]!))
  return new Uint8Array(createHmac(algorithm(hmacId), key).update(bytes).digest())
}

/**
 * The AUTH chunk for `after` (the chunks that will follow it in the packet).
 *
 * @since 0.1.0
 * @category hmac
 */
export const sign = (negotiated: Negotiated, after: ReadonlyArray<Chunk.Chunk>): Chunk.Auth => {
  const length = digestLength(negotiated.sendHmacId) ?? 20
  const blank: Chunk.Auth = {
    _tag: "Auth",
    sharedKeyId: 0,
    hmacId: negotiated.sendHmacId,
    hmac: new Uint8Array(length),
  }
  return { ...blank, hmac: hmacOf(negotiated.sendHmacId, negotiated.key, [blank, ...after]) }
}

/**
 * The verdict on a received AUTH chunk (§6.3).
 *
 * - `Valid`: the chunks after it are authenticated.
 * - `UnsupportedHmac`: discard it and what follows; answer with an ERROR (§4.1).
 * - `UnknownKey`, `BadHmac`: discard it and what follows, silently.
 *
 * @since 0.1.0
 * @category hmac
 */
export type Verdict = "Valid" | "UnsupportedHmac" | "UnknownKey" | "BadHmac"

/**
 * Verifies an AUTH chunk against the chunks after it in its packet.
 *
 * @since 0.1.0
 * @category hmac
 */
export const verify = (
  negotiated: Negotiated,
  auth: Chunk.Auth,
  after: ReadonlyArray<Chunk.Chunk>,
): Verdict => {
  const length = digestLength(auth.hmacId)
  if (length === undefined || !localHmacIds.includes(auth.hmacId)) return "UnsupportedHmac"
  if (auth.sharedKeyId !== 0) return "UnknownKey"
  if (auth.hmac.length !== length) return "BadHmac"
  const computed = hmacOf(auth.hmacId, negotiated.key, [auth, ...after])
  return timingSafeEqual(computed, auth.hmac) ? "Valid" : "BadHmac"
}

/**
 * The ERROR cause answering an AUTH chunk with an HMAC identifier not offered (§4.1).
 *
 * @since 0.1.0
 * @category hmac
 */
export const unsupportedHmacCause = (hmacId: number): Chunk.ErrorCause => ({
  _tag: "UnknownCause",
  code: unsupportedHmacIdentifier,
  value: Uint8Array.of((hmacId >>> 8) & 0xff, hmacId & 0xff),
})
