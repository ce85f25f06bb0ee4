/**
 * The association machine: Step context and small helpers.
 */
import type * as Chunk from "../../Chunk.ts"
import * as Congestion from "../../Congestion.ts"
import * as Packet from "../../Packet.ts"
import * as Rto from "../../Rto.ts"
import type { Config } from "./config.ts"
import type { Event, Output, PeerAddress } from "./models.ts"
import type { Path, State } from "./state.ts"

export interface Destination {
  to: PeerAddress
  tag: number
  chunks: Array<Chunk.Chunk>
  size: number
  /** Room for an AUTH chunk is counted in `size` (a chunk the peer wants authenticated). */
  authed: boolean
}

export interface Ctx {
  readonly out: Array<Output>
  readonly now: number
  readonly dests: Array<Destination>
  /** A DATA chunk arrived in the packet being processed. */
  gotData: boolean
}

export const makeCtx = (now: number): Ctx => ({ out: [], now, dests: [], gotData: false })

export const emit = (ctx: Ctx, event: Event): void => {
  ctx.out.push({ _tag: "Emit", event })
}

export const setTimer = (ctx: Ctx, st: State, timer: string, deadlineMs: number): void => {
  // Whole milliseconds, as the clocks that fire timers count: an RTO is fractional (SRTT +
  // 4 RTTVAR), and a deadline between two ticks was never reached by a driver that reads
  // the clock in whole milliseconds (a lossy SimNet schedule stalled on one).
  const atMs = Math.ceil(deadlineMs)
  st.timers[timer] = atMs
  ctx.out.push({ _tag: "SetTimer", timer, afterMs: atMs - ctx.now })
}

export const cancelTimer = (ctx: Ctx, st: State, timer: string): void => {
  if (st.timers[timer] === undefined) return
  delete st.timers[timer]
  ctx.out.push({ _tag: "CancelTimer", timer })
}

export const t3Name = (path: Path): string => `T3-rtx:${path.host}`
export const hbName = (path: Path): string => `HB:${path.host}`

const maxPaths = 16
export const dataHeaderLength = 16
export const rtoConfig = (config: Config): Rto.RtoConfig => ({
  rtoInitialMs: config.rtoInitialMs,
  rtoMinMs: config.rtoMinMs,
  rtoMsMax: config.rtoMsMax,
})

/**
 * PMDCS (§1.3, what §7.2 counts cwnd in): the largest DATA chunk a packet carries, the
 * packet size less the common header.
 */
export const pmdcs = (st: State): number => st.config.mtu - Packet.headerLength

export const addressOf = (path: Path): PeerAddress => ({ host: path.host, udpPort: path.udpPort })

export const pathIndex = (st: State, host: string): number => {
  for (let index = 0; index < st.paths.length; index++) {
    if (st.paths[index]!.host === host) return index
  }
  return -1
}

const newPath = (config: Config, host: string, udpPort: number, confirmed: boolean): Path => ({
  host,
  udpPort,
  confirmed,
  active: true,
  errorCount: 0,
  rto: Rto.initial(rtoConfig(config)),
  congestion: Congestion.initial(config.mtu - Packet.headerLength),
  flightBytes: 0,
  heartbeatNonce: 0,
  heartbeatOutstanding: false,
  lastSendMs: 0,
  rttPending: false,
  rttTsn: 0,
  rttSentMs: 0,
})

/** Adds a path for `host` if it is new (bounded by maxPaths); returns its index or -1. */
export const addPath = (st: State, host: string, udpPort: number, confirmed: boolean): number => {
  const existing = pathIndex(st, host)
  if (existing >= 0) {
    if (confirmed) st.paths[existing]!.confirmed = true
    return existing
  }
  if (st.paths.length >= maxPaths) return -1
  st.paths.push(newPath(st.config, host, udpPort, confirmed))
  return st.paths.length - 1
}

/**
 * The path new DATA goes to (§6.4): the primary if usable, else another active confirmed
 * one. A path whose last transmission timed out (error count > 0) is avoided while a
 * clean alternate exists, as RFC 7829 (SCTP-PF, threshold 0) does: §6.4 leaves the choice
 * to the sender, and without it new data keeps going into a dead primary for
 * Path.Max.Retrans backed-off RTOs (about a minute). HEARTBEATs every RTO probe it, and
 * its first acknowledgement makes it clean again.
 */
export const dataPath = (st: State): number => {
  const paths = st.paths
  const primary = paths[st.primary]
  if (primary !== undefined && usable(primary) && primary.errorCount === 0) return st.primary
  for (let index = 0; index < paths.length; index++) {
    const path = paths[index]!
    if (usable(path) && path.errorCount === 0) return index
  }
  if (primary !== undefined && usable(primary)) return st.primary
  for (let index = 0; index < paths.length; index++) {
    if (usable(paths[index]!)) return index
  }
  return st.primary
}

const usable = (path: Path): boolean => path.active && path.confirmed

/** An active confirmed path other than `avoid`, else `avoid` itself (§6.4.1). */
export const alternatePath = (st: State, avoid: number): number => {
  const primary = st.paths[st.primary]
  if (st.primary !== avoid && primary !== undefined && primary.active && primary.confirmed) {
    return st.primary
  }
  for (let index = 0; index < st.paths.length; index++) {
    const path = st.paths[index]!
    if (index !== avoid && path.active && path.confirmed) return index
  }
  return avoid >= 0 && avoid < st.paths.length ? avoid : dataPath(st)
}
