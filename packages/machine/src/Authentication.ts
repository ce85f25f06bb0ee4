/**
 * How a `Runner` authenticates its datagrams. Checking the source address alone trusts
 * anyone who can send a UDP packet from a member's address (a member that died, another
 * local user); with a cluster key, every datagram carries a MAC and a counter, and the
 * receiver drops what it cannot verify, what it has seen before, and what is too old.
 *
 * Wire format of a keyed datagram: `version (1) | counter (8, big-endian) | payload |
 * mac (16)`, where `mac = HMAC-SHA256(key, "understudy/datagram" | from | to | counter |
 * payload)` truncated to 16 bytes. Naming both ends in the MAC means a datagram captured
 * on its way to one node cannot be delivered to another, nor re-sent as if from another.
 *
 * The counter is the sender's clock in microseconds, made strictly increasing: so a
 * restarted sender continues above what it sent before, with no state kept on disk. A
 * receiver accepts a counter once, only within `freshnessMs` of its own clock, and never
 * one sent before the receiver started: so neither a restarted receiver nor a restarted
 * sender can be fed old traffic. The price: the members' clocks must agree within
 * `freshnessMs` (30 s by default), or their datagrams are dropped as `Stale` or `Future`.
 *
 * Running without a key is possible, but only as an explicit choice
 * (`Authentication.insecure`), and the runner logs a warning when it starts.
 *
 * @since 0.1.0
 */
import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from "node:crypto"
import { Redacted } from "effect"
import type { NodeId } from "./Machine.ts"

/** @since 0.1.0 @category models */
export interface Keyed {
  readonly _tag: "Keyed"
  readonly key: KeyObject
  /** How far a datagram's counter may be from the receiver's clock. */
  readonly freshnessMs: number
  /** Counters remembered per sender for replay detection, at most. */
  readonly rememberedMax: number
}

/** @since 0.1.0 @category models */
export interface Insecure {
  readonly _tag: "Insecure"
}

/**
 * A node's choice: keyed (the default of every Understudy program) or explicitly insecure.
 *
 * @since 0.1.0
 * @category models
 */
export type Authentication = Keyed | Insecure

/**
 * Datagrams authenticated with `key` (at least 16 bytes; a `ClusterKey` file gives 32).
 *
 * @since 0.1.0
 * @category constructors
 */
export const keyed = (
  key: Uint8Array | Redacted.Redacted<Uint8Array>,
  options?: { readonly freshnessMs?: number; readonly rememberedMax?: number },
): Keyed => {
  const bytes = Redacted.isRedacted(key) ? Redacted.value(key) : key
  if (bytes.byteLength < 16) throw new RangeError("a cluster key has at least 16 bytes")
  return {
    _tag: "Keyed",
    key: createSecretKey(bytes),
    freshnessMs: options?.freshnessMs ?? 30_000,
    rememberedMax: options?.rememberedMax ?? 65_536,
  }
}

/**
 * No authentication: any datagram from a member's address is believed. For tests and
 * closed networks only.
 *
 * @since 0.1.0
 * @category constructors
 */
export const insecure: Insecure = { _tag: "Insecure" }

/** Why a datagram was dropped. @since 0.1.0 @category models */
export type DropReason =
  /** Too short, wrong version, or a MAC that does not verify. */
  | "Unauthenticated"
  /** Its counter was accepted before, or is at or below what the receiver forgot. */
  | "Replayed"
  /** Sent before the receiver started, or more than `freshnessMs` ago. */
  | "Stale"
  /** Its counter is more than `freshnessMs` ahead of the receiver's clock. */
  | "Future"

/** Bytes a keyed datagram adds to its payload. @since 0.1.0 @category constants */
export const overheadBytes = 1 + 8 + 16

const version = 1
const macBytes = 16
const domain = Buffer.from("understudy/datagram", "utf8")
const microsPerMs = 1000

interface Remembered {
  readonly seen: Set<number>
  // Counters in the order they were accepted, from `head` on: the oldest are forgotten first.
  order: Array<number>
  head: number
  // Everything at or below `floor` is refused: forgotten, or before the receiver started.
  floor: number
}

/**
 * Seals outgoing and opens incoming datagrams of one node. Not thread-safe by design: the
 * runner calls it from its own fibers, one datagram at a time.
 *
 * @since 0.1.0
 * @category models
 */
export interface Sealer {
  readonly seal: (to: NodeId, nowMs: number, payload: Uint8Array) => Uint8Array
  /** The payload, or why the datagram must be dropped. */
  readonly open: (
    from: NodeId,
    nowMs: number,
    bytes: Uint8Array,
  ) => { readonly payload: Uint8Array } | { readonly dropped: DropReason }
}

const mac = (
  key: KeyObject,
  from: NodeId,
  to: NodeId,
  header: Uint8Array,
  payload: Uint8Array,
): Buffer =>
  createHmac("sha256", key)
    .update(domain)
    // Lengths first, so ("ab","c") and ("a","bc") differ.
    .update(`${from.length}:${from}|${to.length}:${to}|`)
    .update(header)
    .update(payload)
    .digest()

/**
 * The sealer of node `self`, started at `startedMs` on its clock.
 *
 * @since 0.1.0
 * @category constructors
 */
export const sealer = (authentication: Authentication, self: NodeId, startedMs: number): Sealer => {
  if (authentication._tag === "Insecure") {
    return {
      seal: (_to, _nowMs, payload) => payload,
      open: (_from, _nowMs, bytes) => ({ payload: bytes }),
    }
  }
  const { key, freshnessMs, rememberedMax } = authentication
  let lastCounter = 0
  const remembered = new Map<NodeId, Remembered>()
  const startFloor = startedMs * microsPerMs

  return {
    seal: (to, nowMs, payload) => {
      lastCounter = Math.max(lastCounter + 1, Math.floor(nowMs * microsPerMs))
      const sealed = new Uint8Array(overheadBytes + payload.byteLength)
      const view = new DataView(sealed.buffer)
      view.setUint8(0, version)
      view.setBigUint64(1, BigInt(lastCounter))
      sealed.set(payload, 9)
      const tag = mac(key, self, to, sealed.subarray(0, 9), payload)
      sealed.set(tag.subarray(0, macBytes), 9 + payload.byteLength)
      return sealed
    },
    open: (from, nowMs, bytes) => {
      if (bytes.byteLength < overheadBytes || bytes[0] !== version) {
        return { dropped: "Unauthenticated" }
      }
      const payload = bytes.subarray(9, bytes.byteLength - macBytes)
      const expected = mac(key, from, self, bytes.subarray(0, 9), payload).subarray(0, macBytes)
      if (!timingSafeEqual(expected, bytes.subarray(bytes.byteLength - macBytes))) {
        return { dropped: "Unauthenticated" }
      }
      const counter = Number(
        new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(1),
      )
      const nowMicros = nowMs * microsPerMs
      const windowMicros = freshnessMs * microsPerMs
      if (counter > nowMicros + windowMicros) return { dropped: "Future" }
      if (counter < nowMicros - windowMicros) return { dropped: "Stale" }
      let state = remembered.get(from)
      if (state === undefined) {
        state = { seen: new Set(), order: [], head: 0, floor: startFloor }
        remembered.set(from, state)
      }
      if (counter <= state.floor) return { dropped: startFloor >= counter ? "Stale" : "Replayed" }
      if (state.seen.has(counter)) return { dropped: "Replayed" }
      state.seen.add(counter)
      state.order.push(counter)
      // Forget what freshness already refuses, and the oldest beyond the bound; what is
      // forgotten for the bound raises the floor, so it still cannot be replayed.
      const staleBelow = nowMicros - windowMicros
      const order = state.order
      while (state.head < order.length && order[state.head]! < staleBelow) {
        state.seen.delete(order[state.head++]!)
      }
      while (order.length - state.head > rememberedMax) {
        const oldest = order[state.head++]!
        state.floor = Math.max(state.floor, oldest)
        state.seen.delete(oldest)
      }
      // Compacted now and then rather than shifted per datagram.
      if (state.head > 1024 && state.head * 2 > order.length) {
        state.order = order.slice(state.head)
        state.head = 0
      }
      return { payload }
    },
  }
}
