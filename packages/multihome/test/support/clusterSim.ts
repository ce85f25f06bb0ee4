/**
 * A fast, pure, deterministic simulation of a two-node SCTP cluster and its peer, for the
 * replication policies (seed 001, issue 6 "Simulation"). Plain functions, a binary heap of
 * events, a manual clock and a seeded PRNG: no Effect runtime per event.
 *
 * Parties, modelled on `Cluster.ts` (the Effect shell that runs the same pure halves):
 * - the peer: an `Association` connecting as client to the cluster's address A (B known in
 *   advance, as `sctp_connectx` would), whose application sends numbered messages;
 * - the primary node at A: `Listener` + `Association` + `Replication.Shipper`, the echo
 *   service (every delivered message is sent back on its stream, PPID and ordering, inside
 *   the update that delivered it). An update's outputs wait for the secondary's ack
 *   (`waitForAck`: every update under `every-update`; creation and acknowledging SACKs
 *   under the inexact policies; up to `ackTimeoutMs`) or for the store's write
 *   (`state-node`); while they wait the node processes nothing else, and what arrives
 *   meanwhile is handled as one batch afterwards. (The shipped node does so under the other
 *   policies only: under `every-update` its endpoint steps what arrives while earlier updates'
 *   outputs are held for their acks, `Endpoint.Hooks`; this model is the serial one.)
 * - the secondary node at B: `Replication.Replicas`, its role run by `ClusterRole` (the
 *   machine `Cluster.ts` runs: what a packet gets, when the takeover starts, which
 *   replication applies); it answers HEARTBEATs from its copy,
 *   forwards every other packet to the primary while its side of the link is up, and takes
 *   every association over (`Association.takeOver` with `Replicas.takeOverOptions`:
 *   resynchronised for the inexact policies, whose copy may be behind) when the link goes
 *   down or when a packet reaches it with no link;
 * - the intra-cluster link: reliable, ordered, delayed; it breaks when a node crashes (what
 *   is in flight is lost: the harsher host crash) and the survivor notices after a drawn
 *   detection delay (a closed socket at once, or the keep-alive timeout);
 * - the outside network: per-packet seeded loss, delay and jitter (reordering), bursts of
 *   loss or of extra delay (everything, one address, one direction). Every packet is
 *   encoded and decoded on the way, as on the wire; every link message goes through
 *   `Replication.codec`.
 *
 * Faults: one node dies at a drawn time or right after a drawn update of the primary (a
 * crash at any step, e.g. between shipping an update and its ack). With a SIGTERM
 * (`on-impending-failure`), the primary makes its final sync, serves nothing more, and exits
 * once the secondary acknowledged it (or after the ack timeout).
 *
 * With `RunOptions.handover` the primary is asked for a planned handover mid-stream (as
 * `Cluster`'s `handOver` does it: it stops stepping and forwards what reaches it, sends
 * `HandOver` after its last shipped update, the secondary takes over an exact copy with
 * `takeOver`'s `handover` option and an ASCONF, and tells the old primary to stop once the
 * ASCONF-ACK came), and in most schedules the primary dies at a drawn moment of it.
 *
 * The schedule (message times, sizes, streams, faults) is a pure function of the seed.
 * `run` returns what happened (loss, duplicates, the policy's bound, survival) and the
 * violations of what no policy allows; the caller decides what to assert. The bound of a
 * copy that is behind is `Outcome.atRisk`.
 */
import { Machine } from "@understudy/machine"
import { Prng } from "@understudy/testkit"
import { Heap } from "@understudy/transport"
import { Duration, Result } from "effect"
import * as Asconf from "../../src/Asconf.ts"
import * as Association from "../../src/Association.ts"
import * as ClusterRole from "../../src/ClusterRole.ts"
import * as Cookie from "../../src/Cookie.ts"
import * as Listener from "../../src/Listener.ts"
import * as Packet from "../../src/Packet.ts"
import * as Replication from "../../src/Replication.ts"

// ---------------------------------------------------------------------------------------
// Policies under test
// ---------------------------------------------------------------------------------------

export interface PolicyCase {
  /** Shown in the summary. */
  readonly name: string
  readonly policy: Replication.Policy
  /** `on-impending-failure`: the primary gets a SIGTERM (final sync) before it dies. */
  readonly sigterm: boolean
}

export const policyCases: ReadonlyArray<PolicyCase> = [
  { name: "every-update", policy: { _tag: "EveryUpdate" }, sigterm: false },
  { name: "state-node", policy: { _tag: "StateNode" }, sigterm: false },
  { name: "interval:100", policy: { _tag: "Interval", every: "100 millis" }, sigterm: false },
  {
    name: "on-event",
    policy: { _tag: "OnEvent", events: ["CommUp", "Message", "PathChange", "Restart"] },
    sigterm: false,
  },
  { name: "on-impending-failure+sigterm", policy: { _tag: "OnImpendingFailure" }, sigterm: true },
  { name: "on-impending-failure", policy: { _tag: "OnImpendingFailure" }, sigterm: false },
]

// ---------------------------------------------------------------------------------------
// The schedule
// ---------------------------------------------------------------------------------------

export const peerHost = "10.0.0.1"
export const hostA = "10.0.0.2"
export const hostB = "10.0.0.3"
const peerUdp = 9001
const clusterUdp = 9899
const peerPort = 5001
const clusterPort = 5000

interface PlannedMessage {
  readonly id: number
  readonly atMs: number
  readonly stream: number
  readonly unordered: boolean
  readonly size: number
}

type Scope = "all" | "A" | "B" | "toCluster" | "toPeer"

/** A stretch of time when packets in `scope` are lost more, or delayed more (reordered). */
interface Burst {
  readonly startMs: number
  readonly endMs: number
  readonly loss: number
  /** Extra delay, uniform in [0, reorderMs): later packets overtake earlier ones. */
  readonly reorderMs: number
  readonly scope: Scope
}

export interface Schedule {
  readonly seed: number
  readonly messages: ReadonlyArray<PlannedMessage>
  readonly lossRate: number
  readonly delayMs: number
  readonly jitterMs: number
  readonly bursts: ReadonlyArray<Burst>
  readonly linkDelayMs: number
  readonly linkUpMs: number
  readonly storeDelayMs: number
  /**
   * Which node dies, and when (SIGTERM time when the case has one): at `atMs`, or, when
   * `afterUpdate` is set, right after the primary's update of that number (its replication
   * shipped, its outputs released or held) if it comes first — a crash at any step.
   */
  readonly crash:
    | {
        readonly node: "primary" | "secondary"
        readonly atMs: number
        readonly afterUpdate: number | undefined
      }
    | undefined
  /** How long the survivor takes to notice the link is gone. */
  readonly detectMs: number
}

/** The schedule of a seed: a pure function of it (so `UNDERSTUDY_SEED` replays a run). */
export const schedule = (seed: number): Schedule => {
  const rng = Prng.make(seed)
  const count = rng.int(4, 36)
  const startMs = rng.int(0, 300)
  const spanMs = rng.int(0, 4_000)
  const messages: Array<PlannedMessage> = []
  for (let id = 1; id <= count; id++) {
    const kind = rng.next()
    const size =
      kind < 0.7 ? rng.int(8, 1_000) : kind < 0.9 ? rng.int(1_001, 3_000) : rng.int(3_001, 6_000)
    messages.push({
      id,
      atMs: startMs + rng.int(0, spanMs),
      stream: rng.int(0, 3),
      unordered: rng.chance(0.25),
      size,
    })
  }
  messages.sort((a, b) => a.atMs - b.atMs || a.id - b.id)
  const lastMs = startMs + spanMs
  const bursts: Array<Burst> = []
  const burstCount = rng.int(0, 3)
  const scopes: ReadonlyArray<Scope> = ["all", "A", "B", "toCluster", "toPeer"]
  for (let index = 0; index < burstCount; index++) {
    const begin = rng.int(0, lastMs + 1_000)
    const reorder = rng.chance(0.4)
    bursts.push({
      startMs: begin,
      endMs: begin + rng.int(20, 3_000),
      loss: reorder ? 0 : 0.3 + rng.next() * 0.7,
      reorderMs: reorder ? rng.int(20, 400) : 0,
      scope: scopes[rng.int(0, scopes.length - 1)]!,
    })
  }
  const crashDraw = rng.next()
  const crashAt = rng.int(0, lastMs + 1_500)
  const afterUpdate = rng.chance(0.5) ? rng.int(1, 3 + count * 2) : undefined
  const crash: Schedule["crash"] =
    crashDraw < 0.6
      ? { node: "primary", atMs: crashAt, afterUpdate }
      : crashDraw < 0.85
        ? { node: "secondary", atMs: crashAt, afterUpdate }
        : undefined
  return {
    seed,
    messages,
    lossRate: rng.chance(0.3) ? 0 : rng.next() * 0.08,
    delayMs: rng.int(1, 30),
    jitterMs: rng.int(0, 25),
    bursts,
    linkDelayMs: 0.1 + rng.next() * 3,
    linkUpMs: rng.int(1, 10),
    storeDelayMs: 0.2 + rng.next() * 4,
    crash,
    detectMs: rng.chance(0.5) ? 0.5 + rng.next() * 2 : rng.int(100, 600),
  }
}

/** As `Cluster`: the new primary waits this long for its ASCONF-ACK, the old one this long in all. */
const handOverConfirmMs = 5_000
const handOverBoundMs = 10_000

/**
 * `RunOptions.handover`: when the primary is asked (while the peer streams), and when it dies
 * (from its own draws, so the rest of the schedule is the seed's): 20 % never, 20 % at the
 * request's instant, 40 % within the next 100 ms (before the secondary took over, while it
 * forwards, before the peer's ASCONF-ACK), 20 % within 2 s.
 */
const handOverSchedule = (
  seed: number,
  plan: Schedule,
): { readonly atMs: number; readonly crash: Schedule["crash"] } => {
  const rng = Prng.make(seed ^ 0x3c6ef372)
  const first = plan.messages[0]?.atMs ?? 0
  const last = plan.messages.at(-1)?.atMs ?? first
  const atMs = first + rng.next() * (last - first + 200) + plan.linkUpMs + 50
  const draw = rng.next()
  const offsetMs =
    draw < 0.2 ? undefined : draw < 0.4 ? 0 : draw < 0.8 ? rng.next() * 100 : rng.next() * 2_000
  return {
    atMs,
    crash:
      offsetMs === undefined
        ? undefined
        : { node: "primary", atMs: atMs + offsetMs, afterUpdate: undefined },
  }
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

type Party = "peer" | "primary" | "secondary"

type SimEvent =
  | { kind: "packet"; to: Party; fromHost: string; bytes: Uint8Array }
  | { kind: "timer"; party: Party; name: string; deadline: number; epoch: number }
  | { kind: "appSend"; message: PlannedMessage }
  | { kind: "link"; toSecondary: boolean; epoch: number; bytes: Uint8Array }
  | { kind: "linkUp" }
  | { kind: "crash" }
  | { kind: "detect"; party: "primary" | "secondary" }
  | { kind: "tick" }
  | { kind: "ackTimeout"; hold: number }
  | { kind: "storeWritten"; hold: number }
  | { kind: "handOver" }
  | { kind: "handOverBound" }
  | { kind: "linkClose" }

interface Queued {
  at: number
  order: number
  event: SimEvent
}

const before = (a: Queued, b: Queued) => a.at < b.at || (a.at === b.at && a.order < b.order)

// ---------------------------------------------------------------------------------------
// Outcome
// ---------------------------------------------------------------------------------------

export interface Outcome {
  readonly seed: number
  /** Messages the peer's association accepted. */
  readonly sent: number
  /** Planned messages never accepted (the association was gone). */
  readonly unsent: number
  readonly echoed: number
  readonly lost: number
  readonly duplicated: number
  /** Ordered echoes that came back out of order, beyond the policy's bound. */
  readonly outOfOrder: number
  /** The peer's association never reported CommLost, and was not stalled at the end. */
  readonly survived: boolean
  /** Up at the end of the run (its time limit) with DATA outstanding or queued at either end. */
  readonly stalled: boolean
  readonly commLost: string | undefined
  readonly crash: Schedule["crash"]
  readonly tookOver: boolean
  /** The secondary held a copy of the association when it took over. */
  readonly hadCopy: boolean
  /**
   * Messages the policy may lose or double: those the primary touched after the state the
   * secondary's copy holds (`atRiskTouched`: it delivered them or received one of their
   * DATA chunks, so it may have acknowledged them), and the ordered messages of the
   * outbound streams on which it queued an echo since (`divergedStreams`).
   */
  readonly atRisk: number
  readonly atRiskTouched: number
  readonly divergedStreams: number
  /** Lost or duplicated messages outside `atRisk` (the policy's bound broken). */
  readonly beyondBound: number
  /** What must never happen whatever the policy (two active nodes, a bad echo...). */
  readonly violations: ReadonlyArray<string>
  readonly endMs: number
  readonly events: number
  readonly trace: ReadonlyArray<string>
  /** With `RunOptions.asconf`. */
  readonly asconf: AsconfOutcome | undefined
  /** With `RunOptions.handover`. */
  readonly handover: HandOverOutcome | undefined
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const configFor = (
  localPort: number,
  localAddresses: ReadonlyArray<string>,
): Association.Config => ({
  ...Association.defaultConfig,
  localPort,
  localAddresses,
})

const payload = (message: PlannedMessage): Uint8Array => {
  const data = new Uint8Array(message.size)
  const view = new DataView(data.buffer)
  view.setUint32(0, message.id)
  view.setUint16(4, message.stream)
  data[6] = message.unordered ? 1 : 0
  for (let index = 7; index < data.length; index++) data[index] = (message.id * 31 + index) & 0xff
  return data
}

const idOf = (data: Uint8Array): number =>
  data.length >= 4 ? new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0) : -1

const intact = (message: PlannedMessage, data: Uint8Array): boolean => {
  if (data.length !== message.size) return false
  const expected = payload(message)
  for (let index = 0; index < data.length; index++)
    if (data[index] !== expected[index]) return false
  return true
}

/** A packet in one line, for replay traces. */
const describe = (packet: Packet.Packet): string =>
  packet.chunks
    .map((chunk) => {
      switch (chunk._tag) {
        case "Data":
          return `DATA(tsn ${chunk.tsn} s${chunk.streamIdentifier}/${chunk.streamSequenceNumber}${chunk.unordered ? "u" : ""}${chunk.beginning ? "B" : ""}${chunk.ending ? "E" : ""} id ${chunk.beginning ? idOf(chunk.userData) : "-"})`
        case "Sack":
          return `SACK(cum ${chunk.cumulativeTsnAck} gaps ${chunk.gapAckBlocks.map((g) => `${g.start}-${g.end}`).join(",")} dups ${chunk.duplicateTsns.length})`
        default:
          return chunk._tag
      }
    })
    .join(" ")

const timeLimitAfterLastSendMs = 900_000
const maxEvents = 400_000
const ackTimeoutMs = 1_000
const traceLength = 300

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

export interface RunOptions {
  /** Keep every trace line (replay); otherwise the last few hundred. */
  readonly fullTrace?: boolean
  /**
   * A deliberately broken primary that performs an update's outputs without waiting for
   * the secondary's ack: shows that the checks see what `every-update`'s wait prevents.
   */
  readonly releaseBeforeAck?: boolean
  /**
   * The takeover asks the peer, in an ASCONF Set Primary Address, to send to the secondary
   * (`Cluster.Options.failover: "asconf"`), and the network loses, duplicates and delays
   * (reorders) ASCONF and ASCONF-ACK chunks far more than other packets.
   */
  readonly asconf?: boolean
  /**
   * A planned handover mid-stream (every-update), the primary dying during it in most
   * schedules (`HandOverOutcome`); the schedule's own crash is replaced by that one.
   */
  readonly handover?: boolean
}

/** `RunOptions.handover`: how the handover went. */
export interface HandOverOutcome {
  /** The primary was asked (it was linked, the association up). */
  readonly begun: boolean
  /** When the primary died, counted from the request; undefined: it did not. */
  readonly diedAfterMs: number | undefined
  /** The secondary took over as planned (the copy caught up with `HandOver`). */
  readonly planned: boolean
  /** The secondary took over as after a failure (the primary died first). */
  readonly unplanned: boolean
  /** The new primary told the old one the peer moved (its ASCONF-ACK came). */
  readonly confirmed: boolean
  /** Packets the old primary forwarded. */
  readonly forwarded: number
}

/** `RunOptions.asconf`: what the network did to the ASCONF exchange, and how it ended. */
export interface AsconfOutcome {
  /** Packets with an ASCONF (from the secondary) or an ASCONF-ACK (from the peer). */
  readonly sent: number
  readonly lost: number
  readonly duplicated: number
  /** Held back long enough for later packets to overtake them. */
  readonly delayed: number
  /** The secondary's ASCONF is acknowledged at the end (nothing in flight). */
  readonly settled: boolean
  /** The peer's primary path at the end. */
  readonly peerPrimary: string | undefined
}

/** Runs one schedule under one policy to its end: everything echoed and idle, or the time limit. */
export const run = (policyCase: PolicyCase, seed: number, options: RunOptions = {}): Outcome => {
  const plan = schedule(seed)
  const policy = policyCase.policy
  const handOverPlan = options.handover === true ? handOverSchedule(seed, plan) : undefined
  const crashPlan = handOverPlan !== undefined ? handOverPlan.crash : plan.crash
  const rng = Prng.make(seed ^ 0x2545f491)
  const heap = new Heap.MinHeap<Queued>(before)
  let order = 0
  let now = 0
  let events = 0
  const violations: Array<string> = []
  const trace: Array<string> = []
  const note = (line: string) => {
    trace.push(`${now.toFixed(1)} ${line}`)
    if (!options.fullTrace && trace.length > traceLength * 2) trace.splice(0, traceLength)
  }
  const at = (time: number, event: SimEvent) => heap.push({ at: time, order: order++, event })

  const clusterConfig = configFor(clusterPort, [hostA, hostB])
  const peerConfig = configFor(peerPort, [])
  const byId = new Map<number, PlannedMessage>()
  for (const message of plan.messages) byId.set(message.id, message)

  // ---- bookkeeping of deliveries --------------------------------------------------
  /** The primary's update counter; snapshots and inputs name the update they reach. */
  let updates = 0
  /** Primary deliveries: message id → the update that delivered it (first delivery). */
  const primaryDelivered = new Map<number, number>()
  /** Per outbound stream, the last update in which the primary queued an ordered echo. */
  const primaryOrderedSend = new Map<number, number>()
  /** Replication seq → the primary's update it brings the copy to. */
  const seqReaches = new Map<number, number>()
  /** What the secondary's copy of each association reaches (by the primary's update). */
  const copyReaches = new Map<number, number>()
  let takeoverReaches: number | undefined
  let tookOver = false
  /** The secondary had a copy of the association when it took over. */
  let hadCopy = false

  // ---- the outside network ------------------------------------------------------
  /** The loss rate and the extra (reordering) delay bound for a packet sent now. */
  let extraDelayMs = 0
  const lossAt = (fromHost: string, toHost: string): number => {
    let loss = plan.lossRate
    extraDelayMs = 0
    for (const burst of plan.bursts) {
      if (now < burst.startMs || now >= burst.endMs) continue
      const applies =
        burst.scope === "all" ||
        (burst.scope === "A" && (fromHost === hostA || toHost === hostA)) ||
        (burst.scope === "B" && (fromHost === hostB || toHost === hostB)) ||
        (burst.scope === "toCluster" && fromHost === peerHost) ||
        (burst.scope === "toPeer" && toHost === peerHost)
      if (!applies) continue
      loss = Math.max(loss, burst.loss)
      extraDelayMs = Math.max(extraDelayMs, burst.reorderMs)
    }
    return loss
  }
  const transmit = (fromHost: string, output: Extract<Association.Output, { _tag: "Send" }>) => {
    const bytes = Packet.encode(output.message)
    const toHost = output.to.host
    if (options.fullTrace) note(`${fromHost} → ${toHost}: ${describe(output.message)}`)
    if (fromHost === peerHost) learnTsns(output.message)
    const to: Party | undefined =
      toHost === peerHost
        ? "peer"
        : toHost === hostA
          ? "primary"
          : toHost === hostB
            ? "secondary"
            : undefined
    if (to === undefined) {
      violations.push(`a packet to an unknown host ${toHost}`)
      return
    }
    if (rng.chance(lossAt(fromHost, toHost))) return
    const delayMs = plan.delayMs + rng.next() * plan.jitterMs + rng.next() * extraDelayMs
    if (
      options.asconf === true &&
      output.message.chunks.some((chunk) => chunk._tag === "Asconf" || chunk._tag === "AsconfAck")
    ) {
      // Its own stream of draws: the schedule's other packets fare as without ASCONF.
      asconfFaults.sent++
      const draw = asconfRng.next()
      if (draw < 0.25) {
        asconfFaults.lost++
        if (options.fullTrace) note("  (ASCONF exchange: lost)")
        return
      }
      const extraMs = draw < 0.5 ? 50 + asconfRng.next() * 1_500 : 0
      if (extraMs > 0) asconfFaults.delayed++
      at(now + delayMs + extraMs, { kind: "packet", to, fromHost, bytes })
      if (asconfRng.chance(0.3)) {
        asconfFaults.duplicated++
        at(now + delayMs + asconfRng.next() * 2_000, { kind: "packet", to, fromHost, bytes })
      }
      return
    }
    at(now + delayMs, { kind: "packet", to, fromHost, bytes })
  }
  const asconfRng = Prng.make(seed ^ 0x6a09e667)
  const asconfFaults = { sent: 0, lost: 0, duplicated: 0, delayed: 0 }
  /** The peer's DATA TSNs → the message they carry (fragments have consecutive TSNs). */
  const tsnToId = new Map<number, number>()
  const learnTsns = (packet: Packet.Packet) => {
    for (const chunk of packet.chunks) {
      if (chunk._tag !== "Data" || tsnToId.has(chunk.tsn)) continue
      const id = chunk.beginning ? idOf(chunk.userData) : tsnToId.get((chunk.tsn - 1) >>> 0)
      if (id !== undefined) tsnToId.set(chunk.tsn, id)
    }
  }
  /** The primary's first reception of each of the peer's TSNs: the update it happened in. */
  const primaryReceivedTsn = new Map<number, number>()
  const decode = (bytes: Uint8Array): Packet.Packet | undefined => {
    const decoded = Packet.decode(bytes)
    if (Result.isFailure(decoded)) {
      violations.push(`a packet on the wire does not decode: ${decoded.failure._tag}`)
      return undefined
    }
    return decoded.success
  }

  // ---- timers ---------------------------------------------------------------------
  const timerMaps: Record<Party, Map<string, number>> = {
    peer: new Map(),
    primary: new Map(),
    secondary: new Map(),
  }
  const epochs: Record<Party, number> = { peer: 0, primary: 0, secondary: 0 }
  const setTimer = (party: Party, name: string, deadline: number) => {
    timerMaps[party].set(name, deadline)
    at(Math.max(deadline, now), { kind: "timer", party, name, deadline, epoch: epochs[party] })
  }

  // ---- the peer -----------------------------------------------------------------------
  const echoCount = new Map<number, number>()
  const lastOrderedEcho = new Map<number, number>()
  let echoed = 0
  /** Messages whose first echo came after the echo of a later message of their stream. */
  const echoedOutOfOrder: Array<number> = []
  let sent = 0
  let unsent = 0
  let commLost: string | undefined
  let peerUp = false
  const backlog: Array<PlannedMessage> = []
  const sentOrderOnStream = new Map<number, Array<number>>()
  const sentIds = new Set<number>()

  const connected = Association.connect(peerConfig, {
    peer: { host: hostA, udpPort: clusterUdp },
    peerPort: clusterPort,
    peerAddresses: [hostB],
    seed: seed ^ 0x1234567,
    nowMs: 0,
  })
  const peer = connected.state

  const peerOutputs = (outputs: ReadonlyArray<Association.Output>) => {
    for (const output of outputs) {
      switch (output._tag) {
        case "Send":
          transmit(peerHost, output)
          break
        case "SetTimer":
          setTimer("peer", output.timer, now + output.afterMs)
          break
        case "CancelTimer":
          timerMaps.peer.delete(output.timer)
          break
        case "Emit":
          onPeerEvent(output.event)
          break
      }
    }
  }
  const onPeerEvent = (event: Association.Event) => {
    switch (event._tag) {
      case "CommUp":
        peerUp = true
        note("peer CommUp")
        break
      case "Message": {
        const id = idOf(event.data)
        const message = byId.get(id)
        if (message === undefined || !intact(message, event.data)) {
          violations.push(
            `the peer got an echo that is no message it sent (id ${id}, ${event.data.length} bytes)`,
          )
          return
        }
        if (
          event.stream !== message.stream ||
          event.unordered !== message.unordered ||
          event.ppid !== 7
        ) {
          violations.push(`echo of message ${id} on the wrong stream, ordering or PPID`)
        }
        const count = (echoCount.get(id) ?? 0) + 1
        echoCount.set(id, count)
        if (count === 1) echoed++
        else note(`peer duplicate echo of ${id}`)
        if (!message.unordered) {
          // Ordered echoes of one stream come back in the order they were sent.
          const order = sentOrderOnStream.get(message.stream) ?? []
          const position = order.indexOf(id)
          const last = lastOrderedEcho.get(message.stream) ?? -1
          if (count === 1 && position < last) {
            echoedOutOfOrder.push(id)
            note(`peer echo of ${id} out of order on stream ${message.stream}`)
          }
          if (count === 1) lastOrderedEcho.set(message.stream, Math.max(last, position))
        }
        break
      }
      case "CommLost":
        commLost ??= event.reason
        note(`peer CommLost ${event.reason}`)
        break
      case "PathChange":
        note(`peer path ${event.host} ${event.state}`)
        break
      default:
        break
    }
  }
  const peerSend = (message: PlannedMessage) => {
    const outputs = Association.step(peer, {
      _tag: "Command",
      command: {
        _tag: "Send",
        stream: message.stream,
        ppid: 7,
        data: payload(message),
        unordered: message.unordered,
      },
      nowMs: now,
    }).outputs
    const failed = outputs.some((o) => o._tag === "Emit" && o.event._tag === "SendFailed")
    if (failed) {
      unsent++
      note(`peer send of ${message.id} failed`)
    } else {
      sent++
      sentIds.add(message.id)
      if (!message.unordered) {
        const order = sentOrderOnStream.get(message.stream) ?? []
        order.push(message.id)
        sentOrderOnStream.set(message.stream, order)
      }
    }
    peerOutputs(outputs)
  }

  // ---- the intra-cluster link -----------------------------------------------------------
  let linkEpoch = 0
  let linkBroken = false
  const lastLinkArrival = [0, 0]
  const linkSend = (toSecondary: boolean, message: Replication.Message) => {
    if (linkBroken) return
    const encoded = Replication.codec.encode(message)
    if (Result.isFailure(encoded)) {
      violations.push(`a replication message does not encode: ${String(encoded.failure)}`)
      return
    }
    const lane = toSecondary ? 0 : 1
    const arrival = Math.max(lastLinkArrival[lane]!, now + plan.linkDelayMs * (0.5 + rng.next()))
    lastLinkArrival[lane] = arrival
    at(arrival, { kind: "link", toSecondary, epoch: linkEpoch, bytes: encoded.success })
  }

  // ---- an endpoint's association table (the primary's, the active secondary's) -------------
  interface Node {
    readonly party: "primary" | "secondary"
    readonly host: string
    alive: boolean
    listener: Listener.Listener
    association: Association.State | undefined
    associationId: number
  }
  const primary: Node = {
    party: "primary",
    host: hostA,
    alive: true,
    listener: Listener.makeListener(clusterConfig, seed ^ 0x5a5a),
    association: undefined,
    associationId: 0,
  }
  const secondary: Node = {
    party: "secondary",
    host: hostB,
    alive: true,
    listener: Listener.makeListener(clusterConfig, seed ^ 0xa5a5),
    association: undefined,
    associationId: 0,
  }

  interface Update {
    created: boolean
    /** When it was stepped: its `SetTimer`s count from then, however long they are held. */
    nowMs: number
    inputs: Array<Association.Input>
    outputs: Array<Association.Output>
  }

  /** Steps the node's association (or its listener) with one input, echo replies included. */
  const stepInto = (
    node: Node,
    update: Update,
    input: Association.Input,
    state: Association.State,
  ) => {
    const outputs = Association.step(state, input).outputs
    update.inputs.push(input)
    for (const output of outputs) update.outputs.push(output)
    serve(node, update, state, outputs)
  }
  /** The echo service: each delivered message is queued back inside the same update. */
  const serve = (
    node: Node,
    update: Update,
    state: Association.State,
    outputs: ReadonlyArray<Association.Output>,
  ) => {
    for (const output of outputs) {
      if (output._tag !== "Emit" || output.event._tag !== "Message") continue
      const event = output.event
      const id = idOf(event.data)
      if (node.party === "primary") {
        if (!primaryDelivered.has(id)) primaryDelivered.set(id, updates + 1)
        if (!event.unordered) primaryOrderedSend.set(event.stream, updates + 1)
      }
      stepInto(
        node,
        update,
        {
          _tag: "Command",
          command: {
            _tag: "Send",
            stream: event.stream,
            ppid: event.ppid,
            data: event.data,
            unordered: event.unordered,
          },
          nowMs: now,
        },
        state,
      )
    }
  }

  /** One batch of datagrams into a node's endpoint: the update of its association. */
  const receiveBatch = (
    node: Node,
    batch: ReadonlyArray<{ fromHost: string; bytes: Uint8Array }>,
  ): Update | undefined => {
    let update: Update | undefined
    for (const datagram of batch) {
      const packet = decode(datagram.bytes)
      if (packet === undefined || packet.destinationPort !== clusterPort) continue
      const input: Association.Input = {
        _tag: "Receive",
        from: {
          host: datagram.fromHost,
          udpPort: datagram.fromHost === peerHost ? peerUdp : clusterUdp,
        },
        message: packet,
        nowMs: now,
      }
      if (node.party === "primary") {
        for (const chunk of packet.chunks) {
          if (chunk._tag === "Data" && !primaryReceivedTsn.has(chunk.tsn)) {
            primaryReceivedTsn.set(chunk.tsn, updates + 1)
          }
        }
      }
      const state = node.association
      const tag = packet.verificationTag >>> 0
      if (
        state !== undefined &&
        ((tag !== 0 && tag === Association.myTag(state)) ||
          (Association.peerPort(state) === packet.sourcePort &&
            Association.peerHosts(state).includes(datagram.fromHost)))
      ) {
        update ??= { created: false, nowMs: now, inputs: [], outputs: [] }
        stepInto(node, update, input, state)
        continue
      }
      const outcome = Listener.onUnknownPacket(node.listener, input)
      if (outcome.association === undefined) {
        for (const output of outcome.outputs)
          if (output._tag === "Send") transmit(node.host, output)
        continue
      }
      if (state !== undefined && Association.stateName(state) !== "Closed") {
        violations.push(`${node.party}: a second association while one is live`)
      }
      if (update !== undefined && update.inputs.length > 0) {
        // The update of the old association ends here; the sim has one at a time.
        violations.push(`${node.party}: an association replaced inside a batch`)
      }
      node.association = outcome.association
      node.associationId++
      note(`${node.party} association ${node.associationId} created`)
      update = { created: true, nowMs: now, inputs: [input], outputs: [...outcome.outputs] }
      serve(node, update, outcome.association, outcome.outputs)
    }
    return update
  }

  const performOutputs = (node: Node, { outputs, nowMs }: Update) => {
    for (const output of outputs) {
      switch (output._tag) {
        case "Send":
          transmit(node.host, output)
          break
        case "SetTimer":
          setTimer(node.party, output.timer, nowMs + output.afterMs)
          break
        case "CancelTimer":
          timerMaps[node.party].delete(output.timer)
          break
        case "Emit":
          if (output.event._tag === "Closed") note(`${node.party} association closed`)
          if (output.event._tag === "CommLost")
            note(`${node.party} CommLost ${output.event.reason}`)
          break
      }
    }
  }

  // ---- the primary ----------------------------------------------------------------------
  const shipper = new Replication.Shipper(policy)
  let primaryLinkUp = false
  let acknowledged = 0
  let frozen = false
  let holdCounter = 0
  let held: { hold: number; seq: number; update: Update; store: boolean } | undefined
  const inbox: Array<
    { kind: "packet"; fromHost: string; bytes: Uint8Array } | { kind: "timer"; name: string }
  > = []
  const store = new Map<number, { message: Replication.Message; reaches: number }>()

  const ship = (messages: ReadonlyArray<Replication.Message>) => {
    for (const message of messages) {
      if ("seq" in message) seqReaches.set(message.seq, updates)
      if (primaryLinkUp) linkSend(true, message)
    }
  }

  const primaryUpdate = (update: Update) => {
    const state = primary.association
    if (state === undefined) return
    updates++
    if (crashPlan?.afterUpdate === updates) at(now, { kind: "crash" })
    const replicationPlan = shipper.onUpdate({
      associationId: primary.associationId,
      created: update.created,
      inputs: update.inputs,
      outputs: update.outputs,
      state,
    })
    ship(replicationPlan.messages)
    if (replicationPlan.store !== undefined) {
      const message: Replication.Message = {
        _tag: "Snapshot",
        seq: shipper.lastSeq,
        epoch: 0,
        association: replicationPlan.store.association,
        snapshot: replicationPlan.store.snapshot,
      }
      const hold = ++holdCounter
      held = { hold, seq: 0, update, store: true }
      const reaches = updates
      at(now + plan.storeDelayMs, { kind: "storeWritten", hold })
      pendingWrites.set(hold, { association: replicationPlan.store.association, message, reaches })
      return
    }
    if (replicationPlan.forget !== undefined) store.delete(replicationPlan.forget)
    if (
      replicationPlan.waitForAck &&
      !options.releaseBeforeAck &&
      primaryLinkUp &&
      acknowledged < shipper.lastSeq
    ) {
      const hold = ++holdCounter
      held = { hold, seq: shipper.lastSeq, update, store: false }
      at(now + ackTimeoutMs, { kind: "ackTimeout", hold })
      return
    }
    performOutputs(primary, update)
  }
  const pendingWrites = new Map<
    number,
    { association: number; message: Replication.Message; reaches: number }
  >()

  const release = () => {
    if (held === undefined) return
    const update = held.update
    held = undefined
    performOutputs(primary, update)
    drainInbox()
  }
  const drainInbox = () => {
    while (held === undefined && inbox.length > 0 && primary.alive && !frozen) {
      const first = inbox[0]!
      if (first.kind === "timer") {
        inbox.shift()
        primaryTimer(first.name)
        continue
      }
      const batch: Array<{ fromHost: string; bytes: Uint8Array }> = []
      while (inbox.length > 0 && inbox[0]!.kind === "packet") {
        const item = inbox.shift() as { kind: "packet"; fromHost: string; bytes: Uint8Array }
        batch.push(item)
      }
      const update = receiveBatch(primary, batch)
      if (update !== undefined) primaryUpdate(update)
    }
  }
  const primaryPacket = (fromHost: string, bytes: Uint8Array) => {
    if (!primary.alive) return
    // Handing over: what reaches the primary goes to the secondary, never into its endpoint.
    if (handingOver) {
      forwarded++
      linkSend(true, { _tag: "Forward", host: fromHost, udpPort: peerUdp, bytes })
      return
    }
    if (frozen) return
    inbox.push({ kind: "packet", fromHost, bytes })
    drainInbox()
  }
  const primaryTimer = (name: string) => {
    const state = primary.association
    if (state === undefined) return
    const update: Update = { created: false, nowMs: now, inputs: [], outputs: [] }
    stepInto(primary, update, { _tag: "TimerFired", timer: name, nowMs: now }, state)
    primaryUpdate(update)
  }

  // ---- the secondary ------------------------------------------------------------------------
  const replicas = new Replication.Replicas(clusterConfig)
  let secondaryLinkUp = false
  // The secondary's role is the shipped machine (`ClusterRole`, as `Cluster.ts` runs it):
  // it decides what a packet gets, when the takeover starts and which replication applies.
  const roleMachine = ClusterRole.make({ role: "secondary", fenced: false, standby: false })
  let secondaryRole = roleMachine.init({ self: hostB, peers: [hostA], nowMs: 0 }).state
  const active = () => ClusterRole.serving(secondaryRole)
  const secondaryRoleStep = (
    input: Machine.Input<ClusterRole.Message, ClusterRole.Command>,
  ): ReadonlyArray<ClusterRole.Action> => {
    const result = roleMachine.step(secondaryRole, input)
    secondaryRole = result.state
    const actions: Array<ClusterRole.Action> = []
    for (const output of result.outputs) {
      if (output._tag !== "Emit") continue
      actions.push(output.event)
      if (output.event._tag === "TakeOver") {
        secondaryTakeOver(output.event.why, output.event.planned)
      }
    }
    return actions
  }
  const secondaryCommand = (command: ClusterRole.Command) =>
    secondaryRoleStep(Machine.command(command, now))

  function secondaryTakeOver(why: string, planned: boolean) {
    if (!secondary.alive) return
    tookOver = true
    if (planned) plannedTakeOver = true
    else if (handOverBegun) unplannedTakeOver = true
    note(`secondary takes over: ${why}`)
    if (policy._tag === "StateNode") {
      for (const [association, entry] of store) {
        replicas.apply(entry.message)
        copyReaches.set(association, entry.reaches)
      }
    }
    if (replicas.listener !== undefined) {
      secondary.listener = {
        ...secondary.listener,
        cookieSecrets: Cookie.CookieSecrets.restore(replicas.listener),
      }
    }
    // A copy kept by an inexact policy may be behind the primary (see `Replication`).
    let adopted = 0
    for (const [association, state] of replicas.states) {
      if (Association.stateName(state) === "Closed") continue
      if (adopted > 0) violations.push("the secondary adopts more than one association")
      adopted++
      hadCopy = true
      secondary.association = state
      secondary.associationId = association
      takeoverReaches = copyReaches.get(association) ?? 0
      // What the takeover completes (messages whose missing fragments it skipped) is served.
      const outputs = Association.takeOver(
        state,
        now,
        planned
          ? { handover: true, setPrimary: hostB }
          : {
              ...replicas.takeOverOptions(policy, association),
              ...(options.asconf === true ? { setPrimary: hostB } : {}),
            },
      )
      const update: Update = { created: false, nowMs: now, inputs: [], outputs: [...outputs] }
      serve(secondary, update, state, outputs)
      performOutputs(secondary, update)
    }
    replicas.states.clear()
    if (adopted === 0) takeoverReaches = 0
    note(`secondary adopted ${adopted} (copy reaches update ${takeoverReaches} of ${updates})`)
    secondaryCommand({ _tag: "TakenOver", associations: adopted })
    // What the primary forwarded during its handover, in the order it came.
    for (const packet of heldForwards.splice(0)) injectForwarded(packet.fromHost, packet.bytes)
    if (planned) confirmDeadline = now + handOverConfirmMs
  }

  // ---- planned handover (RunOptions.handover) ---------------------------------------------
  let handOverBegun = false
  let handingOver = false
  let handOverAtMs = 0
  let handOverDiedAt: number | undefined
  let plannedTakeOver = false
  let unplannedTakeOver = false
  let confirmed = false
  let forwarded = 0
  /** Secondary: the `HandOver` waiting for the messages before it, and what came meanwhile. */
  let pendingHandOver: number | undefined
  const heldForwards: Array<{ fromHost: string; bytes: Uint8Array }> = []
  /** New primary: until when it waits for its ASCONF-ACK before it leaves the old one be. */
  let confirmDeadline: number | undefined

  /** The primary is asked: from now on it steps nothing, and forwards. */
  const beginHandOver = () => {
    if (!primary.alive || frozen || !primaryLinkUp || !peerUp) return
    handOverBegun = true
    handingOver = true
    frozen = true
    handOverAtMs = now
    const after = shipper.lastSeq
    note(`primary hands over after message ${after}`)
    linkSend(true, { _tag: "HandOver", epoch: 0, after })
    // Taken in but not stepped (its updates waited for an ack): sent on, timers dropped.
    for (const item of inbox.splice(0)) {
      if (item.kind === "packet") primaryPacket(item.fromHost, item.bytes)
    }
    at(now + handOverBoundMs, { kind: "handOverBound" })
  }

  /** The old primary stops: what it sent on the link still arrives, then the link closes. */
  const handedOver = (why: string) => {
    if (!primary.alive) return
    primary.alive = false
    handingOver = false
    epochs.primary++
    timerMaps.primary.clear()
    primaryLinkUp = false
    note(`primary handed over (${why})`)
    at(lastLinkArrival[0]! + 0.01, { kind: "linkClose" })
  }

  /** Secondary: takes over once it applied everything shipped before `HandOver`. */
  const takeOverIfCaughtUp = () => {
    if (pendingHandOver === undefined || replicas.applied < pendingHandOver) return
    pendingHandOver = undefined
    secondaryRoleStep(Machine.receive(hostA, { _tag: "HandOver", epoch: 0 }, now))
  }

  const injectForwarded = (fromHost: string, bytes: Uint8Array) => {
    const update = receiveBatch(secondary, [{ fromHost, bytes }])
    if (update !== undefined) performOutputs(secondary, update)
  }

  /** New primary: once the peer acknowledged its ASCONF, the old primary may stop. */
  const confirmHandOver = () => {
    if (confirmDeadline === undefined || !secondary.alive) return
    const state = secondary.association
    if (state !== undefined && Asconf.acknowledged(state)) {
      confirmDeadline = undefined
      confirmed = true
      note("secondary: the peer moved; the old primary may stop")
      linkSend(false, { _tag: "Deposed", epoch: 0 })
    } else if (now >= confirmDeadline) confirmDeadline = undefined
  }

  const secondaryPacket = (fromHost: string, bytes: Uint8Array) => {
    if (!secondary.alive) return
    if (!active() || !secondaryRole.tookOver) {
      const packet = decode(bytes)
      if (packet === undefined) return
      const copy = replicas.byTag(packet.verificationTag >>> 0)
      const chunks = packet.chunks
      const answerable = ClusterRole.heartbeatsForCopy(copy, chunks)
      switch (ClusterRole.intercept(secondaryRole, { heartbeatsForCopy: answerable })) {
        case "drop":
          return
        case "answer":
          for (const packet of ClusterRole.heartbeatAnswers(copy!, clusterPort, chunks)) {
            transmit(hostB, {
              _tag: "Send",
              to: { host: fromHost, udpPort: peerUdp },
              message: packet,
            })
          }
          return
        case "forward":
          linkSend(false, { _tag: "Forward", host: fromHost, udpPort: peerUdp, bytes })
          return
        case "take-over":
          secondaryCommand({ _tag: "Stray" })
          break
        case "pass":
          break
      }
    }
    const update = receiveBatch(secondary, [{ fromHost, bytes }])
    if (update !== undefined) performOutputs(secondary, update)
  }
  const secondaryTimer = (name: string) => {
    const state = secondary.association
    if (state === undefined || !active()) return
    const update: Update = { created: false, nowMs: now, inputs: [], outputs: [] }
    stepInto(secondary, update, { _tag: "TimerFired", timer: name, nowMs: now }, state)
    performOutputs(secondary, update)
  }

  const onLink = (toSecondary: boolean, bytes: Uint8Array) => {
    const decoded = Replication.codec.decode(bytes)
    if (Result.isFailure(decoded)) {
      violations.push(`a replication message does not decode: ${String(decoded.failure)}`)
      return
    }
    const message = decoded.success
    if (!toSecondary) {
      // A primary that got its SIGTERM serves nothing more but still waits for the ack.
      if (!primary.alive) return
      if (message._tag === "Ack") {
        acknowledged = Math.max(acknowledged, message.seq)
        if (held !== undefined && !held.store && held.seq <= acknowledged) release()
        else if (sigtermPending && acknowledged >= sigtermSeq) primaryExit("synced")
        return
      }
      if (message._tag === "Deposed" && handingOver) return handedOver("the secondary took over")
      if (message._tag === "Forward" && (handingOver || !frozen)) {
        primaryPacket(message.host, message.bytes)
      }
      return
    }
    if (!secondary.alive) return
    if (message._tag === "HandOver") {
      if (secondaryRole.role !== "secondary") return
      pendingHandOver = message.after
      return takeOverIfCaughtUp()
    }
    if (message._tag === "Forward") {
      if (pendingHandOver !== undefined && secondaryRole.role === "secondary") {
        heldForwards.push({ fromHost: message.host, bytes: message.bytes })
      } else if (active() && secondaryRole.tookOver) injectForwarded(message.host, message.bytes)
      return
    }
    const epoch = Replication.epochOf(message) ?? 0
    const verdict = secondaryRoleStep(Machine.receive(hostA, { _tag: "Replicate", epoch }, now))
    if (verdict.some((action) => action._tag === "Refused")) {
      violations.push(`the secondary refused replication of epoch ${epoch}`)
      breakLink("replication refused")
      return
    }
    if (!verdict.some((action) => action._tag === "Apply")) return
    const rejected = replicas.apply(message)
    if (rejected !== undefined) {
      violations.push(`the secondary rejected a replica: ${rejected.detail}`)
      breakLink("replica rejected")
      return
    }
    if ((message._tag === "Snapshot" || message._tag === "Inputs") && seqReaches.has(message.seq)) {
      copyReaches.set(message.association, seqReaches.get(message.seq)!)
    }
    linkSend(false, { _tag: "Ack", seq: replicas.applied })
    takeOverIfCaughtUp()
  }

  const breakLink = (why: string) => {
    if (linkBroken) return
    linkBroken = true
    linkEpoch++
    note(`link breaks: ${why}`)
    at(now + plan.detectMs, { kind: "detect", party: "primary" })
    at(now + plan.detectMs, { kind: "detect", party: "secondary" })
  }

  // ---- crash, SIGTERM ------------------------------------------------------------------
  let sigtermPending = false
  let sigtermSeq = 0
  const primaryExit = (why: string) => {
    if (!primary.alive) return
    primary.alive = false
    sigtermPending = false
    epochs.primary++
    timerMaps.primary.clear()
    note(`primary dies (${why})`)
    breakLink("the primary died")
  }
  const crash = () => {
    const target = crashPlan
    if (target === undefined) return
    if (target.node === "secondary") {
      if (!secondary.alive) return
      secondary.alive = false
      epochs.secondary++
      note("secondary dies")
      breakLink("the secondary died")
      return
    }
    if (!primary.alive || (frozen && !handingOver)) return
    if (handingOver) handOverDiedAt = now
    if (!policyCase.sigterm) {
      primaryExit("crash")
      return
    }
    // SIGTERM: one final synchronisation, the node serves no more, and exits once the
    // secondary has it (or after the ack timeout).
    note("primary SIGTERM")
    const messages = shipper.onImpendingFailure()
    ship(messages)
    frozen = true
    held = undefined
    inbox.length = 0
    if (!primaryLinkUp || messages.length === 0 || acknowledged >= shipper.lastSeq) {
      primaryExit("SIGTERM, nothing to wait for")
      return
    }
    sigtermPending = true
    sigtermSeq = shipper.lastSeq
    const hold = ++holdCounter
    at(now + ackTimeoutMs, { kind: "ackTimeout", hold: -hold })
  }

  // ---- the loop -------------------------------------------------------------------------
  peerOutputs(connected.outputs)
  for (const message of plan.messages) at(message.atMs, { kind: "appSend", message })
  at(plan.linkUpMs, { kind: "linkUp" })
  // The request first: a crash drawn at its very instant comes right after it.
  if (handOverPlan !== undefined) at(handOverPlan.atMs, { kind: "handOver" })
  if (crashPlan !== undefined) at(crashPlan.atMs, { kind: "crash" })
  const everyMs = policy._tag === "Interval" ? Duration.toMillis(policy.every) : 0
  if (policy._tag === "Interval") at(everyMs, { kind: "tick" })
  const lastSendMs = plan.messages.reduce((max, m) => Math.max(max, m.atMs), 0)
  const limitMs = lastSendMs + timeLimitAfterLastSendMs

  const clusterIdle = (): boolean => {
    const node = active() ? secondary : primary.alive ? primary : undefined
    const state = node?.association
    if (state === undefined) return false
    const status = Association.info(state)
    return status.outstandingChunks === 0 && status.queuedBytes === 0
  }
  const finished = (): boolean => {
    if (Association.stateName(peer) === "Closed") return true
    if (backlog.length > 0 || echoed < sent || sent + unsent < plan.messages.length) return false
    const status = Association.info(peer)
    // A takeover's ASCONF still in flight is unfinished business too.
    const asking = secondary.alive && secondary.association?.asconf?.pending !== undefined
    return status.outstandingChunks === 0 && status.queuedBytes === 0 && clusterIdle() && !asking
  }

  for (;;) {
    const next = heap.pop()
    if (next === undefined || next.at > limitMs || events >= maxEvents) break
    now = Math.max(now, next.at)
    events++
    const event = next.event
    switch (event.kind) {
      case "packet":
        if (event.to === "peer") {
          const packet = decode(event.bytes)
          if (packet !== undefined) {
            peerOutputs(
              Association.step(peer, {
                _tag: "Receive",
                from: { host: event.fromHost, udpPort: clusterUdp },
                message: packet,
                nowMs: now,
              }).outputs,
            )
          }
        } else if (event.to === "primary") primaryPacket(event.fromHost, event.bytes)
        else secondaryPacket(event.fromHost, event.bytes)
        break
      case "timer": {
        if (event.epoch !== epochs[event.party]) break
        const timers = timerMaps[event.party]
        if (timers.get(event.name) !== event.deadline) break
        timers.delete(event.name)
        if (event.party === "peer") {
          peerOutputs(
            Association.step(peer, { _tag: "TimerFired", timer: event.name, nowMs: now }).outputs,
          )
        } else if (event.party === "primary") {
          if (!primary.alive || frozen) break
          inbox.push({ kind: "timer", name: event.name })
          drainInbox()
        } else if (secondary.alive) secondaryTimer(event.name)
        break
      }
      case "appSend":
        if (peerUp && Association.stateName(peer) === "Established") peerSend(event.message)
        else if (Association.stateName(peer) === "Closed") unsent++
        else backlog.push(event.message)
        break
      case "link":
        if (event.epoch === linkEpoch && !linkBroken) onLink(event.toSecondary, event.bytes)
        break
      case "linkUp":
        if (!primary.alive || !secondary.alive || linkBroken) break
        primaryLinkUp = true
        secondaryLinkUp = true
        secondaryCommand({ _tag: "LinkUp" })
        note("link up")
        ship([shipper.secrets(primary.listener.cookieSecrets.snapshot()), ...shipper.resend()])
        break
      case "crash":
        crash()
        break
      case "handOver":
        beginHandOver()
        break
      case "handOverBound":
        if (handingOver) handedOver("no word from the new primary")
        break
      case "linkClose":
        breakLink("the old primary handed over")
        break
      case "detect":
        if (event.party === "primary") {
          if (!primary.alive || !primaryLinkUp) break
          primaryLinkUp = false
          note("primary: link down")
          if (held !== undefined && !held.store) release()
        } else {
          if (!secondary.alive || !secondaryLinkUp) break
          secondaryLinkUp = false
          // A handover cut short: the takeover is a failure's (the packets held go in).
          pendingHandOver = undefined
          note("secondary: link down")
          secondaryCommand({ _tag: "LinkDown", reason: "the link closed" })
        }
        break
      case "tick":
        if (policy._tag !== "Interval") break
        if (primary.alive && !frozen) ship(shipper.onTick())
        if (primary.alive) at(now + everyMs, { kind: "tick" })
        break
      case "ackTimeout":
        if (event.hold < 0) {
          if (sigtermPending && -event.hold === holdCounter) primaryExit("SIGTERM, ack timeout")
          break
        }
        if (held !== undefined && held.hold === event.hold && primary.alive) release()
        break
      case "storeWritten": {
        const write = pendingWrites.get(event.hold)
        pendingWrites.delete(event.hold)
        // The write reaches the store even when its writer has died since.
        if (write !== undefined)
          store.set(write.association, { message: write.message, reaches: write.reaches })
        if (held !== undefined && held.hold === event.hold && primary.alive) release()
        break
      }
    }
    if (peerUp && backlog.length > 0 && Association.stateName(peer) === "Established") {
      for (const message of backlog.splice(0)) peerSend(message)
    }
    confirmHandOver()
    const activeNodes = (primary.alive && !frozen ? 1 : 0) + (secondary.alive && active() ? 1 : 0)
    if (activeNodes > 1) {
      violations.push("two active nodes")
      break
    }
    if (finished()) break
  }
  if (Association.stateName(peer) === "Closed") unsent += backlog.splice(0).length

  // ---- the reckoning ----------------------------------------------------------------------
  let lost = 0
  let duplicated = 0
  let beyondBound = 0
  let atRisk = 0
  const reaches = tookOver ? (takeoverReaches ?? 0) : Number.POSITIVE_INFINITY
  // At risk: what the primary did after the state the secondary's copy holds — messages
  // it delivered, or any of whose DATA chunks it received (and may have acknowledged).
  const riskyIds = new Set<number>()
  for (const [id, update] of primaryDelivered) if (update > reaches) riskyIds.add(id)
  for (const [tsn, update] of primaryReceivedTsn) {
    const id = tsnToId.get(tsn)
    if (update > reaches && id !== undefined) riskyIds.add(id)
  }
  // A copy that is behind also has the outbound stream sequence numbers of before: on a
  // stream where the primary queued an ordered echo since, the peer expects a later SSN
  // than the secondary will use, and no SACK tells the secondary which. The ordered echoes
  // of that stream are at risk too.
  const divergedStreams = new Set<number>()
  for (const [stream, update] of primaryOrderedSend)
    if (update > reaches) divergedStreams.add(stream)
  const touched = riskyIds.size
  for (const message of plan.messages) {
    if (!message.unordered && divergedStreams.has(message.stream)) riskyIds.add(message.id)
  }
  const risky = (id: number): boolean => riskyIds.has(id)
  atRisk = riskyIds.size
  // A message at risk whose echo the new primary redoes (the primary's was lost with it)
  // comes back after later ones: part of the bound. Any other reordering is a defect.
  const outOfOrder = echoedOutOfOrder.filter((id) => !risky(id)).length
  for (const message of plan.messages) {
    const count = echoCount.get(message.id) ?? 0
    if (count === 0 && !sentIds.has(message.id)) continue
    if (count === 0) lost++
    if (count > 1) duplicated += count - 1
    if ((count === 0 || count > 1) && !risky(message.id)) {
      beyondBound++
      if (count === 0)
        note(
          `lost beyond the bound: message ${message.id} (stream ${message.stream}${message.unordered ? ", unordered" : ""}, ${message.size} bytes)`,
        )
      else note(`duplicated beyond the bound: message ${message.id} (${count} echoes)`)
    }
  }
  // Stalled: the run hit its time limit with the association up and DATA still outstanding
  // or queued at either end (messages missing with both ends idle count as lost only).
  const busy = (state: Association.State | undefined) => {
    if (state === undefined) return false
    const status = Association.info(state)
    return status.outstandingChunks > 0 || status.queuedBytes > 0
  }
  const clusterState = (active() ? secondary : primary.alive ? primary : undefined)?.association
  const stalled =
    commLost === undefined &&
    Association.stateName(peer) !== "Closed" &&
    (busy(peer) || busy(clusterState) || backlog.length > 0)
  const survived = commLost === undefined && Association.stateName(peer) !== "Closed" && !stalled
  if (stalled) {
    const describeState = (name: string, state: Association.State | undefined) => {
      if (state === undefined) return `${name}: none`
      const status = Association.info(state)
      return `${name}: ${status.state}, ${status.outstandingChunks} chunks outstanding, ${status.queuedBytes} bytes queued, next TSN ${status.nextTsn}, cumulative TSN acked ${status.cumulativeTsnAcked}, peer's cumulative TSN ${status.peerCumulativeTsn}`
    }
    note(
      `stalled: ${echoed}/${sent} echoed; ${describeState("peer", peer)}; ${describeState("cluster", (active() ? secondary : primary).association)}`,
    )
  }
  return {
    seed,
    sent,
    unsent,
    echoed,
    lost,
    duplicated,
    outOfOrder,
    survived,
    stalled,
    commLost,
    crash: crashPlan,
    tookOver,
    hadCopy,
    atRisk,
    atRiskTouched: touched,
    divergedStreams: divergedStreams.size,
    beyondBound,
    violations,
    endMs: now,
    events,
    trace,
    handover:
      options.handover === true
        ? {
            begun: handOverBegun,
            diedAfterMs: handOverDiedAt === undefined ? undefined : handOverDiedAt - handOverAtMs,
            planned: plannedTakeOver,
            unplanned: unplannedTakeOver,
            confirmed,
            forwarded,
          }
        : undefined,
    asconf:
      options.asconf === true
        ? {
            ...asconfFaults,
            settled: secondary.association?.asconf?.pending === undefined,
            peerPrimary: Association.info(peer).primary,
          }
        : undefined,
  }
}
