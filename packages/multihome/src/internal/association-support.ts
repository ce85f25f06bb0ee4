/**
 * Helpers of the association machine: its source of randomness — the OS CSPRNG, or for
 * simulation a seeded PRNG kept as plain numbers (so the state it lives in can be
 * snapshotted and replayed) —, IP address text ↔ bytes for the address parameters of INIT /
 * INIT ACK, and the Heartbeat Info this endpoint sends.
 */
import { randomFillSync } from "node:crypto"
import type * as Chunk from "../Chunk.ts"
import { readU32, writeU32 } from "./wire.ts"

// ---------------------------------------------------------------------------------------
// Randomness: node:crypto, or (simulation only) xorshift128 seeded through splitmix32
// ---------------------------------------------------------------------------------------

/**
 * Where tags, initial TSNs, cookie secrets and nonces come from: `"crypto"`, the OS CSPRNG
 * (RFC 9260 §5.3.1 and RFC 4086: nobody can predict them), or a number seeding a PRNG, for
 * deterministic simulation only (after four outputs its whole state is known).
 */
export type Seed = number | "crypto"

/**
 * xorshift128 state: four 32-bit words. All zero (never a state of the PRNG) stands for the
 * OS CSPRNG, so a snapshot keeps the same shape either way.
 */
export interface Rng {
  a: number
  b: number
  c: number
  d: number
}

const splitmix32 = (seed: number): (() => number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x9e3779b9) >>> 0
    let z = state
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
}

/** A generator from a {@link Seed} (any number gives a non-zero state). */
export const makeRng = (seed: Seed): Rng => {
  if (seed === "crypto") return { a: 0, b: 0, c: 0, d: 0 }
  const next = splitmix32(seed)
  const rng = { a: next(), b: next(), c: next(), d: next() }
  if ((rng.a | rng.b | rng.c | rng.d) === 0) rng.d = 1
  return rng
}

/** Whether `rng` draws from the OS CSPRNG. */
export const isCrypto = (rng: Rng): boolean => (rng.a | rng.b | rng.c | rng.d) === 0

/** Words drawn from node:crypto ahead, one system call per 256 values. */
const pool = new Uint32Array(256)
let poolAt = pool.length

const cryptoU32 = (): number => {
  if (poolAt === pool.length) {
    randomFillSync(pool)
    poolAt = 0
  }
  const value = pool[poolAt]!
  // Used once: nothing drawn stays readable in the pool.
  pool[poolAt++] = 0
  return value
}

/** The seed of a new machine drawing from `rng`: the CSPRNG stays the CSPRNG. */
export const childSeed = (rng: Rng): Seed => (isCrypto(rng) ? "crypto" : nextU32(rng))

/** The next 32-bit unsigned value. */
export const nextU32 = (rng: Rng): number => {
  if (isCrypto(rng)) return cryptoU32()
  let t = rng.d
  const s = rng.a
  rng.d = rng.c
  rng.c = rng.b
  rng.b = s
  t ^= t << 11
  t ^= t >>> 8
  rng.a = (t ^ s ^ (s >>> 19)) >>> 0
  return rng.a
}

/** A verification tag: random and never 0 (RFC 9260 §5.3.1). */
export const nextTag = (rng: Rng): number => {
  for (let attempt = 0; attempt < 8; attempt++) {
    const tag = nextU32(rng)
    if (tag !== 0) return tag
  }
  return 1
}

/** `length` random bytes (cookie secrets). */
export const nextBytes = (rng: Rng, length: number): Uint8Array => {
  if (isCrypto(rng)) return randomFillSync(new Uint8Array(length))
  const bytes = new Uint8Array(length)
  for (let at = 0; at < length; at += 4) {
    const word = nextU32(rng)
    for (let k = 0; k < 4 && at + k < length; k++) bytes[at + k] = (word >>> (8 * k)) & 0xff
  }
  return bytes
}

/** A plain copy of the generator (snapshots). */
export const copyRng = (rng: Rng): Rng => ({ a: rng.a, b: rng.b, c: rng.c, d: rng.d })

// ---------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------

/** The 4 bytes of a dotted IPv4 address, or undefined. */
export const parseIpv4 = (text: string): Uint8Array | undefined => {
  const parts = text.split(".")
  if (parts.length !== 4) return undefined
  const bytes = new Uint8Array(4)
  for (let index = 0; index < 4; index++) {
    const part = parts[index]!
    if (!/^\d{1,3}$/.test(part)) return undefined
    const value = Number(part)
    if (value > 255) return undefined
    bytes[index] = value
  }
  return bytes
}

/** The 16 bytes of an IPv6 address (with `::` and an embedded IPv4 tail), or undefined. */
export const parseIpv6 = (input: string): Uint8Array | undefined => {
  const zone = input.indexOf("%")
  const text = zone >= 0 ? input.slice(0, zone) : input
  if (!text.includes(":")) return undefined
  const halves = text.split("::")
  if (halves.length > 2) return undefined
  const groups = (half: string): Array<number> | undefined => {
    if (half === "") return []
    const words: Array<number> = []
    const parts = half.split(":")
    for (let index = 0; index < parts.length; index++) {
      const part = parts[index]!
      if (index === parts.length - 1 && part.includes(".")) {
        const v4 = parseIpv4(part)
        if (v4 === undefined) return undefined
        words.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!)
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(part)) return undefined
        words.push(Number.parseInt(part, 16))
      }
    }
    return words
  }
  const head = groups(halves[0]!)
  const tail = halves.length === 2 ? groups(halves[1]!) : []
  if (head === undefined || tail === undefined) return undefined
  const missing = 8 - head.length - tail.length
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined
  const words = [...head, ...new Array<number>(missing).fill(0), ...tail]
  const bytes = new Uint8Array(16)
  words.forEach((word, index) => {
    bytes[2 * index] = word >>> 8
    bytes[2 * index + 1] = word & 0xff
  })
  return bytes
}

/** Dotted text of 4 bytes. */
export const formatIpv4 = (bytes: Uint8Array): string =>
  `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`

/** RFC 5952 text of 16 bytes (longest run of ≥ 2 zero words as `::`, lower case). */
export const formatIpv6 = (bytes: Uint8Array): string => {
  const words: Array<number> = []
  for (let index = 0; index < 8; index++)
    words.push((bytes[2 * index]! << 8) | bytes[2 * index + 1]!)
  let bestStart = -1
  let bestLength = 0
  for (let index = 0; index < 8; ) {
    if (words[index] !== 0) {
      index++
      continue
    }
    let end = index
    while (end < 8 && words[end] === 0) end++
    if (end - index > bestLength && end - index >= 2) {
      bestStart = index
      bestLength = end - index
    }
    index = end
  }
  const hex = (list: Array<number>) => list.map((word) => word.toString(16)).join(":")
  if (bestStart < 0) return hex(words)
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLength))}`
}

/** The address parameter for an IP address's text, or undefined if it is neither v4 nor v6. */
export const addressParameter = (text: string): Chunk.Parameter | undefined => {
  const v4 = parseIpv4(text)
  if (v4 !== undefined) return { _tag: "Ipv4Address", address: v4 }
  const v6 = parseIpv6(text)
  if (v6 !== undefined) return { _tag: "Ipv6Address", address: v6 }
  return undefined
}

/** The canonical text of an IP address (so that "::1" and "0::1" name the same path). */
export const canonicalHost = (text: string): string => {
  const v4 = parseIpv4(text)
  if (v4 !== undefined) return formatIpv4(v4)
  const v6 = parseIpv6(text)
  if (v6 !== undefined) return formatIpv6(v6)
  return text
}

/** The addresses listed in INIT / INIT ACK parameters, as canonical text. */
export const listedAddresses = (parameters: ReadonlyArray<Chunk.Parameter>): Array<string> => {
  const hosts: Array<string> = []
  for (const parameter of parameters) {
    if (parameter._tag === "Ipv4Address") hosts.push(formatIpv4(parameter.address))
    else if (parameter._tag === "Ipv6Address") hosts.push(formatIpv6(parameter.address))
  }
  return hosts
}

// ---------------------------------------------------------------------------------------
// Heartbeat Info
// ---------------------------------------------------------------------------------------

/**
 * What this endpoint puts in a HEARTBEAT's Heartbeat Info (opaque to the peer, echoed
 * verbatim): the path's host, a random nonce (§5.4 path confirmation), the send time.
 */
export interface HeartbeatInfo {
  readonly host: string
  readonly nonce: number
  readonly sentMs: number
}

const heartbeatMagic = 0x4d48_4231 // "MHB1"
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Heartbeat Info bytes: magic, nonce, send time (float64), host text. */
export const encodeHeartbeatInfo = (info: HeartbeatInfo): Uint8Array => {
  const host = encoder.encode(info.host)
  const bytes = new Uint8Array(16 + host.length)
  writeU32(bytes, 0, heartbeatMagic)
  writeU32(bytes, 4, info.nonce)
  new DataView(bytes.buffer).setFloat64(8, info.sentMs)
  bytes.set(host, 16)
  return bytes
}

/** The Heartbeat Info this endpoint sent, or undefined for bytes it did not write. */
export const decodeHeartbeatInfo = (bytes: Uint8Array): HeartbeatInfo | undefined => {
  if (bytes.length < 16 || bytes.length > 16 + 64) return undefined
  if (readU32(bytes, 0) !== heartbeatMagic) return undefined
  const sentMs = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getFloat64(8)
  if (!Number.isFinite(sentMs)) return undefined
  return { nonce: readU32(bytes, 4), sentMs, host: decoder.decode(bytes.subarray(16)) }
}
