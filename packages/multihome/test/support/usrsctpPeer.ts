/**
 * A deterministic peer that behaves as usrsctp's `client` does where a takeover's gap is
 * concerned, driving the shipped association (a multi-homed server, as a cluster is to its
 * peer) through a SIGKILL of its node and a takeover of its copy, on a simulated clock:
 *
 * - **Nagle** on its user's sends only (`sctp_lower_sosend`): a line written while DATA is
 *   outstanding is held; the output after any packet it receives sends what it holds, in one
 *   packet (`sctp_chunk_output(…, SCTP_OUTPUT_FROM_CONTROL_PROC)` applies no Nagle);
 * - **miss indications per destination** (`sctp_strike_gap_ack_chunks`, HTNA): a SACK strikes
 *   an outstanding chunk only when it newly acknowledges a higher TSN sent to the same
 *   destination; the third strike is a fast retransmit;
 * - **T3-rtx** per destination with RTO.min 1 s, backed off on expiry;
 * - a HEARTBEAT is answered at once, to the address it came from.
 *
 * The peer SACKs each packet of ours with DATA at once (it never loses ours). The node's two
 * addresses are `serverHosts`: the peer sends DATA to the first (its primary). The node dies
 * at `killAtMs`: what is in flight to it and what the peer sends to either address until
 * `takeoverAtMs` is lost; then a copy of the node's association, as replicated every update,
 * takes over (`Association.takeOver`) with both addresses (the dead node's bound first).
 */
import { Heap } from "@understudy/transport"
import * as Association from "../../src/Association.ts"
import type * as Chunk from "../../src/Chunk.ts"
import { clientHost, clientUdp, serverHosts } from "../associationHarness.ts"
import { establishedPair } from "./peerPackets.ts"

export interface TakeoverRun {
  /** When the peer's user writes line n: `lineEveryMs · n`. */
  readonly lineEveryMs: number
  readonly lines: number
  readonly killAtMs: number
  readonly takeoverAtMs: number
  readonly seed: number
}

/** One transmission of a DATA chunk by the peer. */
export interface PeerSend {
  readonly tsn: number
  readonly atMs: number
  readonly to: string
  readonly why: "new" | "fast" | "t3"
}

export interface TakeoverResult {
  readonly sends: ReadonlyArray<PeerSend>
  /** The lines the node and then its copy delivered, in order. */
  readonly delivered: ReadonlyArray<number>
  /** The most SACK chunks the node's copy sent in answer to one packet (RFC 9260 §6.2: 1). */
  readonly sacksPerPacketMax: number
  /** The node's copy's HEARTBEATs to the peer. */
  readonly heartbeats: number
}

interface Outstanding {
  readonly tsn: number
  readonly line: number
  to: string
  strikes: number
  acked: boolean
}

type Event =
  | { readonly kind: "toNode"; readonly to: string; readonly chunks: Array<Chunk.Chunk> }
  | { readonly kind: "toPeer"; readonly chunks: ReadonlyArray<Chunk.Chunk> }
  | { readonly kind: "write"; readonly line: number }
  | { readonly kind: "nodeTimer"; readonly name: string; readonly epoch: number }
  | { readonly kind: "t3"; readonly to: string; readonly generation: number }

const latencyMs = 1
const rtoMinMs = 1_000

/** Runs one takeover under the peer; bounded by the lines' end plus 5 s of simulated time. */
export const runTakeover = (run: TakeoverRun): TakeoverResult => {
  const lb = establishedPair(run.seed, { delayMs: latencyMs })
  const startMs = lb.nowMs
  const peerState = lb.client
  let node = lb.server!
  const nodeConfig = lb.serverConfig
  const peerAddress = { host: clientHost, udpPort: clientUdp }
  // The peer's side of the association.
  const toNodeTag = Association.myTag(node)
  let nextTsn = peerState.nextTsn
  let cumulativeFromNode = peerState.tracker!.cumulative
  const fromNode = new Set<number>()
  const outstanding: Array<Outstanding> = []
  const held: Array<number> = []
  const t3 = new Map<string, { generation: number; rtoMs: number }>()
  let t3Generation = 0
  const sends: Array<PeerSend> = []
  const delivered: Array<number> = []
  let sacksPerPacketMax = 0
  let heartbeats = 0
  // The node's timers: an epoch per node, so that the dead node's never fire on its copy.
  let epoch = 0
  const nodeTimers = new Map<string, number>()

  let nowMs = startMs
  let order = 0
  const events = new Heap.MinHeap<{ atMs: number; order: number; event: Event }>(
    (a, b) => a.atMs < b.atMs || (a.atMs === b.atMs && a.order < b.order),
  )
  const at = (atMs: number, event: Event) => events.push({ atMs, order: order++, event })
  const killAtMs = startMs + run.killAtMs
  const takeoverAtMs = startMs + run.takeoverAtMs
  const alive = () => nowMs < killAtMs || nowMs >= takeoverAtMs

  const perform = (outputs: ReadonlyArray<Association.Output>) => {
    for (const output of outputs) {
      if (output._tag === "Send") {
        heartbeats += output.message.chunks.filter((chunk) => chunk._tag === "Heartbeat").length
        at(nowMs + latencyMs, { kind: "toPeer", chunks: output.message.chunks })
      } else if (output._tag === "SetTimer") {
        nodeTimers.set(output.timer, nowMs + output.afterMs)
        at(nowMs + output.afterMs, { kind: "nodeTimer", name: output.timer, epoch })
      } else if (output._tag === "CancelTimer") nodeTimers.delete(output.timer)
      else if (output._tag === "Emit" && output.event._tag === "Message") {
        const line = Number(new TextDecoder().decode(output.event.data))
        delivered.push(line)
        // The echo service.
        stepNode({
          _tag: "Command",
          command: { _tag: "Send", stream: 0, ppid: 0, data: output.event.data, unordered: false },
          nowMs,
        })
      }
    }
  }
  const stepNode = (input: Association.Input) => perform(Association.step(node, input).outputs)

  // ---- the peer -----------------------------------------------------------------------
  const flight = () => outstanding.some((chunk) => !chunk.acked)
  const armT3 = (to: string) => {
    if (t3.has(to)) return
    const timer = { generation: ++t3Generation, rtoMs: rtoMinMs }
    t3.set(to, timer)
    at(nowMs + timer.rtoMs, { kind: "t3", to, generation: timer.generation })
  }
  const transmit = (to: string, chunks: Array<Chunk.Chunk>) => {
    if (chunks.length > 0) at(nowMs + latencyMs, { kind: "toNode", to, chunks })
  }
  const dataChunk = (chunk: Outstanding): Chunk.Data => ({
    _tag: "Data",
    immediate: false,
    unordered: false,
    beginning: true,
    ending: true,
    tsn: chunk.tsn,
    streamIdentifier: 0,
    streamSequenceNumber: chunk.line & 0xffff,
    payloadProtocolIdentifier: 0,
    userData: new TextEncoder().encode(`${chunk.line}`),
  })
  /** Sends every held line in one packet to the primary. */
  const sendHeld = (extra: Array<Chunk.Chunk> = []) => {
    const chunks = [...extra]
    for (const line of held.splice(0)) {
      const chunk: Outstanding = {
        tsn: nextTsn,
        line,
        to: serverHosts[0],
        strikes: 0,
        acked: false,
      }
      nextTsn = (nextTsn + 1) >>> 0
      outstanding.push(chunk)
      sends.push({ tsn: chunk.tsn, atMs: nowMs, to: chunk.to, why: "new" })
      chunks.push(dataChunk(chunk))
    }
    if (chunks.some((chunk) => chunk._tag === "Data")) armT3(serverHosts[0])
    transmit(serverHosts[0], chunks)
  }
  const onSack = (sack: Chunk.Sack) => {
    const acks = (tsn: number) =>
      tsn - sack.cumulativeTsnAck <= 0 ||
      sack.gapAckBlocks.some(
        (block) =>
          tsn - sack.cumulativeTsnAck >= block.start && tsn - sack.cumulativeTsnAck <= block.end,
      )
    // Per destination, the highest TSN this SACK newly acknowledges (HTNA).
    const newest = new Map<string, number>()
    for (const chunk of outstanding) {
      if (chunk.acked || !acks(chunk.tsn)) continue
      chunk.acked = true
      newest.set(chunk.to, Math.max(newest.get(chunk.to) ?? 0, chunk.tsn))
    }
    for (const to of newest.keys()) {
      t3.delete(to)
      if (outstanding.some((chunk) => !chunk.acked && chunk.to === to)) armT3(to)
    }
    const fast: Array<Chunk.Chunk> = []
    for (const chunk of outstanding) {
      const highest = newest.get(chunk.to)
      if (chunk.acked || highest === undefined || chunk.tsn >= highest) continue
      chunk.strikes++
      if (chunk.strikes === 3) {
        chunk.to = serverHosts[1]
        sends.push({ tsn: chunk.tsn, atMs: nowMs, to: chunk.to, why: "fast" })
        fast.push(dataChunk(chunk))
      }
    }
    if (fast.length > 0) {
      armT3(serverHosts[1])
      transmit(serverHosts[1], fast)
    }
    while (outstanding[0]?.acked === true) outstanding.shift()
  }
  const onPeerPacket = (chunks: ReadonlyArray<Chunk.Chunk>) => {
    const answer: Array<Chunk.Chunk> = []
    let gotData = false
    for (const chunk of chunks) {
      if (chunk._tag === "Sack") onSack(chunk)
      else if (chunk._tag === "Heartbeat")
        // To the address the HEARTBEAT came from: the node's own (the cluster's replies do).
        transmit(serverHosts[1], [{ _tag: "HeartbeatAck", info: chunk.info }])
      else if (chunk._tag === "Data") {
        gotData = true
        fromNode.add(chunk.tsn)
        while (fromNode.has((cumulativeFromNode + 1) >>> 0)) {
          cumulativeFromNode = (cumulativeFromNode + 1) >>> 0
          fromNode.delete(cumulativeFromNode)
        }
      }
    }
    if (gotData)
      answer.push({
        _tag: "Sack",
        cumulativeTsnAck: cumulativeFromNode,
        advertisedReceiverWindowCredit: 131_072,
        gapAckBlocks: [],
        duplicateTsns: [],
      })
    // The output after a received packet: no Nagle.
    if (held.length > 0) sendHeld(answer)
    else transmit(serverHosts[0], answer)
  }
  const onT3 = (to: string) => {
    const timer = t3.get(to)!
    const resend = outstanding.filter((chunk) => !chunk.acked && chunk.to === to)
    t3.delete(to)
    if (resend.length === 0) return
    for (const chunk of resend) {
      chunk.to = serverHosts[1]
      chunk.strikes = 0
      sends.push({ tsn: chunk.tsn, atMs: nowMs, to: chunk.to, why: "t3" })
    }
    transmit(serverHosts[1], resend.map(dataChunk))
    const backedOff = { generation: ++t3Generation, rtoMs: Math.min(timer.rtoMs * 2, 60_000) }
    t3.set(serverHosts[1], backedOff)
    at(nowMs + backedOff.rtoMs, {
      kind: "t3",
      to: serverHosts[1],
      generation: backedOff.generation,
    })
  }

  for (let line = 0; line < run.lines; line++) {
    at(startMs + run.lineEveryMs * (line + 1), { kind: "write", line })
  }
  const endMs = startMs + run.lineEveryMs * run.lines + 5_000
  let tookOver = false
  for (let steps = 0; steps < 1_000_000; steps++) {
    const next = events.pop()
    if (next === undefined || next.atMs > endMs) break
    if (!tookOver && next.atMs >= takeoverAtMs) {
      // The copy, as replicated at the node's last step, takes over.
      nowMs = takeoverAtMs
      tookOver = true
      epoch++
      nodeTimers.clear()
      node = Association.restore(nodeConfig, Association.snapshot(node))
      perform(Association.takeOver(node, nowMs))
    }
    nowMs = next.atMs
    const event = next.event
    switch (event.kind) {
      case "write":
        held.push(event.line)
        // Nagle: sent at once only when nothing is outstanding.
        if (!flight()) sendHeld()
        break
      case "t3":
        if (t3.get(event.to)?.generation === event.generation) onT3(event.to)
        break
      case "toPeer":
        onPeerPacket(event.chunks)
        break
      case "nodeTimer":
        if (event.epoch === epoch && alive() && nodeTimers.get(event.name) === nowMs) {
          nodeTimers.delete(event.name)
          stepNode({ _tag: "TimerFired", timer: event.name, nowMs })
        }
        break
      case "toNode": {
        if (!alive()) break
        const outputs = Association.step(node, {
          _tag: "Receive",
          from: peerAddress,
          message: {
            sourcePort: 4000,
            destinationPort: 5000,
            verificationTag: toNodeTag,
            chunks: event.chunks,
          },
          nowMs,
        }).outputs
        const sacks = outputs
          .flatMap((output) => (output._tag === "Send" ? output.message.chunks : []))
          .filter((chunk) => chunk._tag === "Sack").length
        sacksPerPacketMax = Math.max(sacksPerPacketMax, sacks)
        perform(outputs)
        break
      }
    }
  }
  return { sends, delivered, sacksPerPacketMax, heartbeats }
}
