/**
 * The association machine: Snapshot / restore / take over.
 */

import * as Asconf from "../../Asconf.ts"
import type * as Auth from "../../Auth.ts"
import type * as Chunk from "../../Chunk.ts"
import * as Cookie from "../../Cookie.ts"
import * as Packet from "../../Packet.ts"
import { Reassembly, type ReassemblySnapshot } from "../../Reassembly.ts"
import { add32, gt32 } from "../../Serial.ts"
import { TsnTracker, type TsnTrackerSnapshot } from "../../TsnTracker.ts"
import * as S from "../association-support.ts"
import { isClosed, sendAsconf } from "./asconf.ts"
import type { Config } from "./config.ts"
import { type Ctx, dataPath, emit, makeCtx, setTimer } from "./context.ts"
import type { Output } from "./models.ts"
import { finish } from "./outbound.ts"
import { sendHeartbeat, takeoverProbeMs, takeoverProbeName } from "./paths.ts"
import { markRetransmit } from "./sack.ts"
import type { Outstanding, Path, Queued, State, StateName } from "./state.ts"

/**
 * The TCB as plain data (numbers, strings, booleans, arrays, Uint8Array, plain objects):
 * what the cluster replicates. Byte arrays are copies.
 *
 * @since 0.1.0
 * @category replication
 */
export interface Snapshot {
  readonly version: 1
  readonly rng: S.Rng
  readonly name: StateName
  readonly localPort: number
  readonly peerPort: number
  readonly myTag: number
  readonly peerTag: number
  readonly myInitialTsn: number
  readonly peerInitialTsn: number
  readonly outboundStreams: number
  readonly inboundStreams: number
  readonly paths: ReadonlyArray<Path>
  readonly primary: number
  readonly retransmitPath: number
  readonly peerRwnd: number
  readonly nextTsn: number
  readonly lastCumAck: number
  readonly outstanding: ReadonlyArray<Outstanding>
  readonly flightBytes: number
  readonly retransmitCount: number
  readonly fastRecovery: boolean
  readonly fastRecoveryExit: number
  readonly queue: ReadonlyArray<Queued>
  readonly queuedBytes: number
  readonly bufferedBytes: number
  readonly ssnOut: ReadonlyArray<number>
  readonly tracker: TsnTrackerSnapshot | undefined
  readonly reassembly: ReassemblySnapshot | undefined
  readonly sackNow: boolean
  readonly packetsSinceSack: number
  readonly lastDataPath: number
  readonly errorCount: number
  readonly initRetransmits: number
  readonly init: Chunk.Init | undefined
  readonly cookie: Uint8Array | undefined
  readonly cookieSecrets: Cookie.CookieSecretsSnapshot
  readonly secretsRotatedAt: number | undefined
  readonly resynchronizing: boolean
  readonly inboundResync?: {
    readonly candidates: ReadonlyArray<number>
    readonly seenStreams: ReadonlyArray<number>
    readonly untilTsn: number
  }
  readonly forwardTsnSupported?: boolean
  readonly forwardTsn?: {
    readonly afterTsn: number
    readonly cumulative: number
    readonly streams: ReadonlyArray<number>
    readonly sent: boolean
    readonly path: number
  }
  readonly auth?: Auth.Negotiated
  readonly asconf?: {
    readonly nextSerial: number
    readonly pending: Chunk.Asconf | undefined
    readonly pendingHost: string
    readonly nextPrimary?: string
    readonly peerSerial: number
    readonly lastAck: Chunk.AsconfAck | undefined
  }
  readonly timers: ReadonlyArray<readonly [string, number]>
}

const copyPath = (path: Path): Path => ({
  ...path,
  rto: { ...path.rto },
  congestion: { ...path.congestion },
})

/**
 * A plain-data copy of the TCB.
 *
 * @since 0.1.0
 * @category replication
 */
export const snapshot = (st: State): Snapshot => ({
  version: 1,
  rng: S.copyRng(st.rng),
  name: st.name,
  localPort: st.localPort,
  peerPort: st.peerPort,
  myTag: st.myTag,
  peerTag: st.peerTag,
  myInitialTsn: st.myInitialTsn,
  peerInitialTsn: st.peerInitialTsn,
  outboundStreams: st.outboundStreams,
  inboundStreams: st.inboundStreams,
  paths: st.paths.map(copyPath),
  primary: st.primary,
  retransmitPath: st.retransmitPath,
  peerRwnd: st.peerRwnd,
  nextTsn: st.nextTsn,
  lastCumAck: st.lastCumAck,
  outstanding: st.outstanding
    .slice(st.outstandingHead)
    .map((chunk) => ({ ...chunk, data: chunk.data.slice() })),
  flightBytes: st.flightBytes,
  retransmitCount: st.retransmitCount,
  fastRecovery: st.fastRecovery,
  fastRecoveryExit: st.fastRecoveryExit,
  queue: st.queue.slice(st.queueHead).map((queued) => ({ ...queued, data: queued.data.slice() })),
  queuedBytes: st.queuedBytes,
  bufferedBytes: st.bufferedBytes,
  ssnOut: st.ssnOut.slice(),
  tracker: st.tracker?.snapshot(),
  reassembly: st.reassembly?.snapshot(),
  sackNow: st.sackNow,
  packetsSinceSack: st.packetsSinceSack,
  lastDataPath: st.lastDataPath,
  errorCount: st.errorCount,
  initRetransmits: st.initRetransmits,
  init: st.init,
  cookie: st.cookie?.slice(),
  cookieSecrets: st.cookieSecrets.snapshot(),
  secretsRotatedAt: st.secretsRotatedAt,
  resynchronizing: st.resynchronizing,
  ...(st.inboundResync === undefined
    ? {}
    : {
        inboundResync: {
          ...st.inboundResync,
          candidates: st.inboundResync.candidates.slice(),
          seenStreams: st.inboundResync.seenStreams.slice(),
        },
      }),
  forwardTsnSupported: st.forwardTsnSupported,
  ...(st.forwardTsn === undefined
    ? {}
    : { forwardTsn: { ...st.forwardTsn, streams: st.forwardTsn.streams.slice() } }),
  ...(st.auth === undefined ? {} : { auth: st.auth }),
  ...(st.asconf === undefined ? {} : { asconf: { ...st.asconf } }),
  timers: Object.entries(st.timers),
})

/**
 * Rebuilds a TCB from a {@link snapshot}: it steps exactly as the original would.
 *
 * @since 0.1.0
 * @category replication
 */
export const restore = (config: Config, s: Snapshot): State => {
  const timers: Record<string, number> = {}
  for (const [name, at] of s.timers) timers[name] = at
  return {
    config,
    rng: S.copyRng(s.rng),
    name: s.name,
    localPort: s.localPort,
    peerPort: s.peerPort,
    myTag: s.myTag,
    peerTag: s.peerTag,
    myInitialTsn: s.myInitialTsn,
    peerInitialTsn: s.peerInitialTsn,
    outboundStreams: s.outboundStreams,
    inboundStreams: s.inboundStreams,
    paths: s.paths.map(copyPath),
    primary: s.primary,
    retransmitPath: s.retransmitPath,
    peerRwnd: s.peerRwnd,
    nextTsn: s.nextTsn,
    lastCumAck: s.lastCumAck,
    outstanding: s.outstanding.map((chunk) => ({ ...chunk, data: chunk.data.slice() })),
    outstandingHead: 0,
    flightBytes: s.flightBytes,
    retransmitCount: s.retransmitCount,
    fastRecovery: s.fastRecovery,
    fastRecoveryExit: s.fastRecoveryExit,
    queue: s.queue.map((queued) => ({ ...queued, data: queued.data.slice() })),
    queueHead: 0,
    queuedBytes: s.queuedBytes,
    bufferedBytes: s.bufferedBytes,
    ssnOut: s.ssnOut.slice(),
    tracker: s.tracker === undefined ? undefined : TsnTracker.restore(s.tracker),
    reassembly: s.reassembly === undefined ? undefined : Reassembly.restore(s.reassembly),
    sackNow: s.sackNow,
    packetsSinceSack: s.packetsSinceSack,
    lastDataPath: s.lastDataPath,
    errorCount: s.errorCount,
    initRetransmits: s.initRetransmits,
    init: s.init,
    cookie: s.cookie?.slice(),
    cookieSecrets: Cookie.CookieSecrets.restore(s.cookieSecrets),
    secretsRotatedAt: s.secretsRotatedAt,
    resynchronizing: s.resynchronizing,
    inboundResync:
      s.inboundResync === undefined
        ? undefined
        : {
            candidates: s.inboundResync.candidates.slice(),
            seenStreams: s.inboundResync.seenStreams.slice(),
            untilTsn: s.inboundResync.untilTsn,
          },
    forwardTsnSupported: s.forwardTsnSupported === true,
    forwardTsn:
      s.forwardTsn === undefined
        ? undefined
        : { ...s.forwardTsn, streams: s.forwardTsn.streams.slice() },
    auth: s.auth,
    asconf: s.asconf === undefined ? undefined : { ...s.asconf },
    timers,
  }
}

/**
 * The outbound reserve jump of {@link takeOver}: TSNs and SSNs the dead primary may have
 * used are skipped; queued (never sent by this copy) ordered messages are renumbered past
 * them; the FORWARD TSN that makes the peer skip them is scheduled.
 */
/**
 * Takes the first queued fragment, gives it the next TSN and puts it on the outstanding
 * list as sent once on `path` (the caller decides whether it is in flight).
 */
export const takeQueuedWithNextTsn = (st: State, path: number): Outstanding => {
  const next = st.queue[st.queueHead]!
  st.queue[st.queueHead] = undefined as unknown as Queued
  st.queueHead++
  st.queuedBytes -= next.data.length
  const chunk: Outstanding = {
    tsn: st.nextTsn,
    stream: next.stream,
    ssn: next.ssn,
    ppid: next.ppid,
    unordered: next.unordered,
    beginning: next.beginning,
    ending: next.ending,
    data: next.data,
    path,
    transmissions: 1,
    acked: false,
    inFlight: false,
    missIndications: 0,
    retransmit: false,
    fast: false,
    fastDone: false,
  }
  st.nextTsn = add32(st.nextTsn, 1)
  st.outstanding.push(chunk)
  return chunk
}

const reserveJump = (st: State, tsnReserve: number, ssnReserve: number): void => {
  // TSNs are assigned in queue order, so the primary sent (if it sent them) this copy's
  // queued fragments under the next TSNs, with the SSNs they already carry: they take
  // those TSNs before the jump, marked for retransmission, so the peer's SACKs acknowledge
  // what it got from the primary (no message twice) and the rest goes out under the same
  // numbers. This also keeps a message partly sent whole (§6.9: consecutive TSNs, one SSN).
  while (st.queueHead < st.queue.length) {
    markRetransmit(st, takeQueuedWithNextTsn(st, st.primary))
  }
  if (st.queueHead === st.queue.length) {
    st.queue = []
    st.queueHead = 0
  }
  const afterTsn = add32(st.nextTsn, -1)
  st.nextTsn = add32(st.nextTsn, tsnReserve)
  const streams: Array<number> = []
  if (ssnReserve > 0) {
    // The first SSN each stream would use next: its first queued ordered message's, else
    // the next one to assign.
    const first = st.ssnOut.slice()
    const seen = new Set<number>()
    for (let position = st.queueHead; position < st.queue.length; position++) {
      const queued = st.queue[position]!
      if (queued.unordered || seen.has(queued.stream)) continue
      seen.add(queued.stream)
      first[queued.stream] = queued.ssn
    }
    for (let position = st.queueHead; position < st.queue.length; position++) {
      const queued = st.queue[position]!
      if (!queued.unordered) queued.ssn = (queued.ssn + ssnReserve) & 0xffff
    }
    // One FORWARD TSN in one packet: every stream if they fit, else the ones used so far.
    const room = Math.floor((st.config.mtu - Packet.headerLength - 8) / 4)
    for (let stream = 0; stream < st.ssnOut.length; stream++) {
      const used = st.ssnOut[stream] !== 0 || seen.has(stream)
      if (st.ssnOut.length > room && (!used || streams.length / 2 >= room)) continue
      st.ssnOut[stream] = (st.ssnOut[stream]! + ssnReserve) & 0xffff
      streams.push(stream, (first[stream]! + ssnReserve - 1) & 0xffff)
    }
  }
  st.forwardTsn = {
    afterTsn,
    cumulative: add32(st.nextTsn, -1),
    streams,
    sent: false,
    path: st.primary,
  }
}

/**
 * Options of {@link takeOver}.
 *
 * - `resync`: the replica may be behind the primary (a snapshot from an inexact policy:
 *   `interval`, `on-event`); resynchronise inbound with the peer (see {@link takeOver}).
 *   Leave it off for an exact replica (`every-update`, `state-node`): the heuristic can
 *   only lose data there.
 *
 * @since 0.1.0
 * @category replication
 */
export interface TakeOverOptions {
  readonly resync?: boolean
  /**
   * With `resync`: the highest Cumulative TSN Ack the primary may have sent the peer (the
   * replication makes it known to the secondary before the SACK leaves the primary). The
   * peer never resends a TSN at or below it. Undefined: none beyond the copy's.
   */
  readonly cumulativeTsnAck?: number
  /**
   * With `resync`: the snapshot is at most `tsn` TSNs and `ssn` SSNs per stream behind
   * the primary (the replication guarantees it). The replica jumps over them and tells
   * the peer to skip them with a FORWARD TSN (RFC 3758), when both ends support PR-SCTP.
   */
  readonly reserve?: { readonly tsn: number; readonly ssn: number }
  /**
   * This node's address (one the association lists): when the peer negotiated ASCONF (RFC
   * 5061), an authenticated ASCONF asks it to make this address its primary, retransmitted
   * on T4 until the ASCONF-ACK, so its new DATA comes here at once instead of after its
   * retransmission timers gave up on the dead node's address.
   */
  readonly setPrimary?: string
  /**
   * With `setPrimary`, for a node that took the dead node's address over too (`both`): ask
   * only once what the peer sent into the takeover's gap is filled (a SACK with no gap
   * acknowledges DATA that came after the takeover). A peer such as usrsctp fast-retransmits
   * a chunk only on SACKs for chunks it sent to the same address, so moving it first leaves
   * what it sent to the dead node to its T3-rtx timer (1 s). Not on a `handover`.
   */
  readonly setPrimaryOnceFilled?: boolean
  /**
   * A planned handover: the copy is exact and the old node sent everything the copy says
   * was sent (it waited for its last updates' outputs before handing over). What is in
   * flight stays in flight under its running T3-rtx timer: nothing is sent again.
   */
  readonly handover?: boolean
}

/**
 * Makes a replica live: re-arms every recorded timer, marks all outstanding DATA for
 * retransmission (as on T3 expiry but keeping cwnd; not on a `handover`) and sends it as
 * cwnd allows, and sends a HEARTBEAT on every path so the peer sees the new address answer
 * at once. Until the hole is filled, and for at most the path's RTO, it sends the peer a
 * HEARTBEAT every `takeoverProbeMs` (see `State.takeoverHole`): a peer that holds DATA back
 * sends it, one SACK per packet above the hole gives a miss indication each, and the peer
 * fast-retransmits what it sent to the dead node instead of waiting for its T3-rtx (when that
 * went to the address it still sends to).
 *
 * Outbound, always: until a SACK acknowledges less than everything we sent, a SACK whose
 * Cumulative TSN Ack is at or beyond our next TSN is believed (the dead primary sent those
 * TSNs after the snapshot): our next TSN moves past it and what we hold below it counts as
 * acknowledged (`resynchronizing`).
 *
 * Inbound, with `resync: true` — for a replica that may be behind the primary:
 *
 * 1. The cumulative TSN moves to `cumulativeTsnAck` when that is ahead: the peer freed
 *    those TSNs and never resends them (what the primary received there and had not
 *    delivered is lost: the policy's bounded loss); buffered fragments of messages that
 *    lack a fragment at or below it are dropped. When it is not ahead the replica is in
 *    step with the peer (every TSN the peer will not resend is in the copy), and nothing
 *    below applies.
 * 2. On each ordered stream, once every TSN below the lowest TSN seen on it arrived, that
 *    chunk's SSN becomes the next one expected if it is ahead (the primary delivered the
 *    ones before it; a sender numbers a stream's messages in TSN order); buffered
 *    fragments of the SSNs skipped are dropped.
 * 3. The mode ends when every inbound stream was resolved, or when the cumulative TSN
 *    passes the takeover's + 65,536 (SSNs wrap).
 *
 * Outbound, always: a SACK that no longer covers a TSN an earlier Gap Ack Block covered
 * (below its highest block) revokes it (§6.2.1 D iv): it is outstanding again and T3 runs,
 * so a peer whose data the dead primary gap-acknowledged resends it to the replica.
 *
 * Outbound, with `resync: true` and `reserve: { tsn: R1, ssn: R2 }` (the snapshot is at
 * most R1 TSNs and R2 SSNs per stream behind the primary), when both ends offered
 * Forward-TSN-Supported (RFC 3758, PR-SCTP; we always offer it): the fragments still
 * queued in the snapshot first take the next TSNs — TSNs are assigned in queue order, so
 * these are the TSNs (and SSNs) under which the primary sent them if it did — and are
 * marked for retransmission with the outstanding chunks: what the peer got from the
 * primary is acknowledged, not sent twice, and a message is never split across the jump
 * (§6.9). Then the next TSN moves R1 ahead and every outbound stream's next SSN R2 ahead;
 * once every chunk below the jump is acknowledged (the peer's cumulative TSN ack reaches
 * it) a FORWARD TSN goes out with New Cumulative TSN = the jumped next TSN − 1 and, per
 * stream, the SSN before its first new one; it is retransmitted on T3 until the peer's
 * cumulative TSN ack reaches it. It covers everything up to the jump, so whatever the
 * primary sent in the reserved range the peer moves past. New DATA meanwhile uses the new
 * numbers (the peer holds it above the gap until the FORWARD TSN arrives). What the dead
 * primary sent in the reserved range (messages queued after the snapshot) and the peer did
 * not receive is lost (the policy's bounded loss). Keep R1 well under 65,535 minus the
 * peer's window in chunks: a peer drops DATA that far beyond its cumulative TSN. If the
 * outbound streams do not fit one FORWARD TSN in a packet, only the streams used so far
 * jump. Without PR-SCTP on both ends there is no jump: the replica reuses TSNs and SSNs
 * the primary may have used; the peer takes the reused TSNs it received as duplicates
 * (those messages of ours are lost) and, for a reused SSN it delivered, drops the message
 * as stale, or waits for SSNs the primary used and it never received (the stream stalls).
 *
 * Every skip is reported as a `Dropped` event (`ResyncSkippedTsns`, `ResyncSkippedSsns`,
 * `ResyncIncomplete`). Messages the primary received above a gap (acknowledged by Gap Ack
 * Blocks) and delivered are not known to the replica: the peer resends them once our
 * SACKs omit them (§6.2.1 D iv, reneging), and they are delivered a second time.
 *
 * @since 0.1.0
 * @category replication
 */
export const takeOver = (st: State, nowMs: number, options?: TakeOverOptions): Array<Output> => {
  const ctx = makeCtx(nowMs)
  if (isClosed(st)) return ctx.out
  for (const [name, at] of Object.entries(st.timers)) setTimer(ctx, st, name, Math.max(at, nowMs))
  if (options?.handover !== true) {
    const out = st.outstanding
    for (let position = st.outstandingHead; position < out.length; position++) {
      const chunk = out[position]!
      if (chunk.inFlight) markRetransmit(st, chunk)
    }
    for (const path of st.paths) {
      path.flightBytes = 0
      path.rttPending = false
    }
    st.flightBytes = 0
    st.resynchronizing = st.peerTag !== 0
    const path = st.paths[dataPath(st)]
    st.takeoverHole = {
      from: st.tracker?.cumulative ?? 0,
      // The peer's T3-rtx resends by about then: probing longer gains nothing.
      untilMs: nowMs + (path?.rto.rto ?? st.config.rtoInitialMs),
      quietProbes: 0,
    }
  }
  st.inboundResync = undefined
  const acked = options?.cumulativeTsnAck
  const tracker = st.tracker
  if (
    options?.resync === true &&
    acked !== undefined &&
    tracker !== undefined &&
    st.reassembly !== undefined &&
    gt32(acked, tracker.cumulative)
  ) {
    tracker.skipTo(acked)
    st.sackNow = true
    emit(ctx, { _tag: "Dropped", reason: "ResyncSkippedTsns" })
    const { messages, droppedBytes } = st.reassembly.abandon(tracker.cumulative)
    if (droppedBytes > 0) emit(ctx, { _tag: "Dropped", reason: "ResyncIncomplete" })
    for (const message of messages) emit(ctx, { _tag: "Message", ...message })
    st.inboundResync = {
      candidates: [],
      seenStreams: [],
      untilTsn: add32(tracker.cumulative, 65536),
    }
  }
  const reserve = options?.reserve
  if (
    options?.resync === true &&
    reserve !== undefined &&
    st.forwardTsnSupported &&
    (st.name === "Established" || st.name === "ShutdownPending" || st.name === "ShutdownReceived")
  ) {
    reserveJump(st, Math.max(0, Math.floor(reserve.tsn)), Math.max(0, Math.floor(reserve.ssn)))
  }
  if (st.peerTag !== 0 && st.name !== "CookieWait" && st.name !== "CookieEchoed") {
    for (let index = 0; index < st.paths.length; index++) sendHeartbeat(ctx, st, index)
    const hole = st.takeoverHole
    if (hole !== undefined) setTimer(ctx, st, takeoverProbeName, nowMs + takeoverProbeMs)
    if (options?.setPrimaryOnceFilled === true && hole !== undefined && options.setPrimary) {
      hole.primary = options.setPrimary
    } else requestPrimary(ctx, st, options?.setPrimary)
    // The SACK the dead node owed (its delayed-SACK timer runs on the copy) goes with the
    // request: a peer that bundles (Nagle) sends nothing new until it comes, and once it has
    // both it sends its next DATA here (the SACK goes first in the packet, the ASCONF after).
    if (options?.setPrimary !== undefined && st.timers.SACK !== undefined) st.sackNow = true
  }
  finish(ctx, st)
  return ctx.out
}

/**
 * Asks the peer (ASCONF Set Primary Address) to send to `host` from now on; nothing when
 * ASCONF was not negotiated. With an ASCONF in flight (a replica of a node that had just
 * sent one) that one is retransmitted as it is and this request waits for its ASCONF-ACK
 * (§4.1.1 A3: one at a time).
 */
export const requestPrimary = (ctx: Ctx, st: State, host: string | undefined): void => {
  const asconf = st.asconf
  if (host === undefined || asconf === undefined || st.paths.length === 0) return
  if (asconf.pending !== undefined) {
    asconf.nextPrimary = host
    return
  }
  const address = S.addressParameter(host)
  if (address === undefined) return
  asconf.pending = Asconf.setPrimary(asconf.nextSerial, address)
  asconf.nextSerial = add32(asconf.nextSerial, 1)
  sendAsconf(ctx, st, dataPath(st))
}
