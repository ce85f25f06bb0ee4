/**
 * A deterministic peer that behaves as usrsctp's `client` does where a takeover's gap is
 * concerned:
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
 * It sends new DATA to the node's first address (its primary) and retransmissions to the
 * second. `makePeer` is the peer alone, over callbacks for the wire and its timers; two
 * drivers run it:
 *
 * - `runTakeover` drives the shipped association (a multi-homed server, as a cluster is to
 *   its peer) through a SIGKILL of its node and a takeover of its copy, on a clock of its
 *   own: the node dies at `killAtMs`; what is in flight to it and what the peer sends to
 *   either address until `takeoverAtMs` is lost; then a copy of the node's association, as
 *   replicated every update, takes over (`Association.takeOver`) with both addresses (the
 *   dead node's bound first).
 * - `peerOnSimNet` runs it on a SimNet host in front of a real cluster (`Cluster.make`), so
 *   that the cluster's detection, bind and adoption are in the timing too.
 */
import { Address, Datagram, Heap, type SimNet } from "@understudy/transport"
import { Clock, Deferred, Effect, Result, Scope, Stream } from "effect"
import * as Association from "../../src/Association.ts"
import type * as Chunk from "../../src/Chunk.ts"
import { takeoverProbeName } from "../../src/internal/association/paths.ts"
import * as Packet from "../../src/Packet.ts"
import { clientHost, clientUdp, serverHosts } from "../associationHarness.ts"
import { establishedPair } from "./peerPackets.ts"

/** One transmission of a DATA chunk by the peer. */
export interface PeerSend {
  readonly tsn: number
  readonly atMs: number
  readonly to: string
  readonly why: "new" | "fast" | "t3"
}

/** A line the node echoed, as the peer delivered it (in TSN order). */
export interface Echo {
  readonly line: number
  readonly atMs: number
}

interface Outstanding {
  readonly tsn: number
  readonly line: number
  to: string
  strikes: number
  acked: boolean
}

/** What the peer needs of the world around it. */
export interface PeerIo {
  readonly now: () => number
  /** One packet of `chunks` to the node's address `to` (its chunks only: no header). */
  readonly transmit: (to: string, chunks: Array<Chunk.Chunk>) => void
  /** Calls `peer.t3(to, generation)` at `atMs`. */
  readonly armT3: (atMs: number, to: string, generation: number) => void
}

export interface Peer {
  /** The peer's user writes line `line`. */
  readonly write: (line: number) => void
  /** A packet of the node's came from its address `from`. */
  readonly receive: (from: string, chunks: ReadonlyArray<Chunk.Chunk>) => void
  /** The T3-rtx timer armed with `generation` for `to` expired. */
  readonly t3: (to: string, generation: number) => void
  readonly sends: ReadonlyArray<PeerSend>
  readonly echoes: ReadonlyArray<Echo>
}

const rtoMinMs = 1_000

/**
 * The peer's side of an established association: `nextTsn` is its next TSN,
 * `cumulativeFromNode` the last in-order TSN it had from the node; `addresses` are the
 * node's, its primary first.
 */
export const makePeer = (
  start: {
    readonly nextTsn: number
    readonly cumulativeFromNode: number
    readonly addresses: readonly [string, string]
  },
  io: PeerIo,
): Peer => {
  const [primary, alternate] = start.addresses
  let nextTsn = start.nextTsn
  let cumulativeFromNode = start.cumulativeFromNode
  /** The lines of the node's DATA above the cumulative TSN, by TSN. */
  const fromNode = new Map<number, number>()
  const outstanding: Array<Outstanding> = []
  const held: Array<number> = []
  const t3 = new Map<string, { generation: number; rtoMs: number }>()
  let t3Generation = 0
  const sends: Array<PeerSend> = []
  const echoes: Array<Echo> = []

  const flight = () => outstanding.some((chunk) => !chunk.acked)
  const armT3 = (to: string) => {
    if (t3.has(to)) return
    const timer = { generation: ++t3Generation, rtoMs: rtoMinMs }
    t3.set(to, timer)
    io.armT3(io.now() + timer.rtoMs, to, timer.generation)
  }
  const transmit = (to: string, chunks: Array<Chunk.Chunk>) => {
    if (chunks.length > 0) io.transmit(to, chunks)
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
      const chunk: Outstanding = { tsn: nextTsn, line, to: primary, strikes: 0, acked: false }
      nextTsn = (nextTsn + 1) >>> 0
      outstanding.push(chunk)
      sends.push({ tsn: chunk.tsn, atMs: io.now(), to: chunk.to, why: "new" })
      chunks.push(dataChunk(chunk))
    }
    if (chunks.some((chunk) => chunk._tag === "Data")) armT3(primary)
    transmit(primary, chunks)
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
        chunk.to = alternate
        sends.push({ tsn: chunk.tsn, atMs: io.now(), to: chunk.to, why: "fast" })
        fast.push(dataChunk(chunk))
      }
    }
    if (fast.length > 0) {
      armT3(alternate)
      transmit(alternate, fast)
    }
    while (outstanding[0]?.acked === true) outstanding.shift()
  }
  const receive = (from: string, chunks: ReadonlyArray<Chunk.Chunk>) => {
    const answer: Array<Chunk.Chunk> = []
    let gotData = false
    for (const chunk of chunks) {
      if (chunk._tag === "Sack") onSack(chunk)
      else if (chunk._tag === "Heartbeat")
        transmit(from, [{ _tag: "HeartbeatAck", info: chunk.info }])
      else if (chunk._tag === "Data") {
        gotData = true
        if (chunk.tsn - cumulativeFromNode > 0)
          fromNode.set(chunk.tsn, Number(new TextDecoder().decode(chunk.userData)))
        for (let next = (cumulativeFromNode + 1) >>> 0; fromNode.has(next); ) {
          echoes.push({ line: fromNode.get(next)!, atMs: io.now() })
          fromNode.delete(next)
          cumulativeFromNode = next
          next = (next + 1) >>> 0
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
    else transmit(primary, answer)
  }
  const onT3 = (to: string, generation: number) => {
    const timer = t3.get(to)
    if (timer?.generation !== generation) return
    const resend = outstanding.filter((chunk) => !chunk.acked && chunk.to === to)
    t3.delete(to)
    if (resend.length === 0) return
    for (const chunk of resend) {
      chunk.to = alternate
      chunk.strikes = 0
      sends.push({ tsn: chunk.tsn, atMs: io.now(), to: chunk.to, why: "t3" })
    }
    transmit(alternate, resend.map(dataChunk))
    const backedOff = { generation: ++t3Generation, rtoMs: Math.min(timer.rtoMs * 2, 60_000) }
    t3.set(alternate, backedOff)
    io.armT3(io.now() + backedOff.rtoMs, alternate, backedOff.generation)
  }
  const write = (line: number) => {
    held.push(line)
    // Nagle: sent at once only when nothing is outstanding.
    if (!flight()) sendHeld()
  }
  return { write, receive, t3: onT3, sends, echoes }
}

// ---- the peer in front of the shipped association, on a clock of its own -----------------

export interface TakeoverRun {
  /** When the peer's user writes line n: `lineEveryMs · n`. */
  readonly lineEveryMs: number
  readonly lines: number
  readonly killAtMs: number
  readonly takeoverAtMs: number
  readonly seed: number
  /** The copy's probe timer waits this many times what it asks (a pace of 10 ms · it). */
  readonly probeScale?: number
  /** The peer's user writes nothing from the kill on (an idle peer). */
  readonly idleAfterKill?: boolean
}

export interface TakeoverResult {
  readonly sends: ReadonlyArray<PeerSend>
  /** The lines the node and then its copy delivered, in order. */
  readonly delivered: ReadonlyArray<number>
  /** The most SACK chunks the node's copy sent in answer to one packet (RFC 9260 §6.2: 1). */
  readonly sacksPerPacketMax: number
  /** The node's copy's HEARTBEATs to the peer. */
  readonly heartbeats: number
  /** The time spent stepping the node's copy, from the takeover on (wall clock, ms). */
  readonly copyStepMs: number
}

type Event =
  | { readonly kind: "toNode"; readonly to: string; readonly chunks: Array<Chunk.Chunk> }
  | { readonly kind: "toPeer"; readonly chunks: ReadonlyArray<Chunk.Chunk> }
  | { readonly kind: "write"; readonly line: number }
  | { readonly kind: "nodeTimer"; readonly name: string; readonly epoch: number }
  | { readonly kind: "t3"; readonly to: string; readonly generation: number }

const latencyMs = 1

/**
 * Runs one takeover under the peer; bounded by the lines' end plus 5 s of simulated time.
 * The peer SACKs each packet of ours with DATA at once (it never loses ours); the node's two
 * addresses are `serverHosts`, and its replies all come from the second.
 */
export const runTakeover = (run: TakeoverRun): TakeoverResult => {
  const lb = establishedPair(run.seed, { delayMs: latencyMs })
  const startMs = lb.nowMs
  let node = lb.server!
  const nodeConfig = lb.serverConfig
  const peerAddress = { host: clientHost, udpPort: clientUdp }
  const toNodeTag = Association.myTag(node)
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
  const peer = makePeer(
    {
      nextTsn: lb.client.nextTsn,
      cumulativeFromNode: lb.client.tracker!.cumulative,
      addresses: [serverHosts[0], serverHosts[1]],
    },
    {
      now: () => nowMs,
      transmit: (to, chunks) => at(nowMs + latencyMs, { kind: "toNode", to, chunks }),
      armT3: (atMs, to, generation) => at(atMs, { kind: "t3", to, generation }),
    },
  )

  const perform = (outputs: ReadonlyArray<Association.Output>) => {
    for (const output of outputs) {
      if (output._tag === "Send") {
        if (tookOver)
          heartbeats += output.message.chunks.filter((chunk) => chunk._tag === "Heartbeat").length
        at(nowMs + latencyMs, { kind: "toPeer", chunks: output.message.chunks })
      } else if (output._tag === "SetTimer") {
        const afterMs =
          output.timer === takeoverProbeName
            ? output.afterMs * (run.probeScale ?? 1)
            : output.afterMs
        nodeTimers.set(output.timer, nowMs + afterMs)
        at(nowMs + afterMs, { kind: "nodeTimer", name: output.timer, epoch })
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
  let copyStepMs = 0
  /** Steps the node; from the takeover on, timed. */
  const timed = <A>(step: () => A): A => {
    if (!tookOver) return step()
    const started = performance.now()
    const result = step()
    copyStepMs += performance.now() - started
    return result
  }
  const stepNode = (input: Association.Input) =>
    perform(timed(() => Association.step(node, input)).outputs)

  let tookOver = false
  for (let line = 0; line < run.lines; line++) {
    const atMs = startMs + run.lineEveryMs * (line + 1)
    if (run.idleAfterKill === true && atMs >= killAtMs) break
    at(atMs, { kind: "write", line })
  }
  const endMs = startMs + run.lineEveryMs * run.lines + 5_000
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
      perform(timed(() => Association.takeOver(node, nowMs)))
    }
    nowMs = next.atMs
    const event = next.event
    switch (event.kind) {
      case "write":
        peer.write(event.line)
        break
      case "t3":
        peer.t3(event.to, event.generation)
        break
      case "toPeer":
        // The node's replies leave from its own address.
        peer.receive(serverHosts[1], event.chunks)
        break
      case "nodeTimer":
        if (event.epoch === epoch && alive() && nodeTimers.get(event.name) === nowMs) {
          nodeTimers.delete(event.name)
          stepNode({ _tag: "TimerFired", timer: event.name, nowMs })
        }
        break
      case "toNode": {
        if (!alive()) break
        const outputs = timed(() =>
          Association.step(node, {
            _tag: "Receive",
            from: peerAddress,
            message: {
              sourcePort: 4000,
              destinationPort: 5000,
              verificationTag: toNodeTag,
              chunks: event.chunks,
            },
            nowMs,
          }),
        ).outputs
        const sacks = outputs
          .flatMap((output) => (output._tag === "Send" ? output.message.chunks : []))
          .filter((chunk) => chunk._tag === "Sack").length
        sacksPerPacketMax = Math.max(sacksPerPacketMax, sacks)
        perform(outputs)
        break
      }
    }
  }
  return { sends: peer.sends, delivered, sacksPerPacketMax, heartbeats, copyStepMs }
}

// ---- the peer in front of a cluster, on SimNet ---------------------------------------------

/** The peer on a SimNet host, once its association is up. */
export interface SimNetPeer {
  /** The peer's user writes line `line` now. */
  readonly write: (line: number) => Effect.Effect<void>
  readonly sends: ReadonlyArray<PeerSend>
  readonly echoes: ReadonlyArray<Echo>
}

/**
 * The peer at `host` (UDP `udpPort`, SCTP port 5000) on `net`, associated with the node at
 * `addresses` (its primary first) and SCTP `port`. The association is set up by the shipped
 * code (`Association.connect`, nothing lost on the way: its timers are not run); from its
 * COMMUNICATION UP on, the peer above answers every packet. Runs until `Scope` closes;
 * resolves once the association is up (at most `setupMs` of simulated time, the clock
 * advanced by the caller).
 */
export const peerOnSimNet = (
  net: SimNet.SimNet,
  options: {
    readonly host: string
    readonly udpPort: number
    readonly port: number
    readonly addresses: readonly [string, string]
    readonly seed: number
  },
): Effect.Effect<Effect.Effect<SimNetPeer>, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const socket = yield* Effect.provide(
      Effect.flatMap(Effect.service(Datagram.Datagram), (datagram) =>
        datagram.bind(Address.udp(options.host, options.udpPort)),
      ),
      net.layer(options.host),
    )
    let nowMs = yield* Clock.currentTimeMillis
    const outbox: Array<{ to: string; bytes: Uint8Array }> = []
    const timers: Array<{ atMs: number; to: string; generation: number }> = []
    const connected = Association.connect(
      { ...Association.defaultConfig, localPort: 5000 },
      {
        peer: { host: options.addresses[0], udpPort: options.udpPort },
        peerPort: options.port,
        seed: options.seed,
        nowMs,
      },
    )
    const association = connected.state
    let peer: Peer | undefined
    const up = yield* Deferred.make<void>()
    const perform = (outputs: ReadonlyArray<Association.Output>) => {
      for (const output of outputs) {
        if (output._tag === "Send")
          outbox.push({ to: output.to.host, bytes: Packet.encode(output.message) })
        else if (output._tag === "Emit" && output.event._tag === "CommUp")
          peer = makePeer(
            {
              nextTsn: association.nextTsn,
              cumulativeFromNode: association.tracker!.cumulative,
              addresses: options.addresses,
            },
            {
              now: () => nowMs,
              transmit: (to, chunks) =>
                outbox.push({
                  to,
                  bytes: Packet.encode({
                    sourcePort: 5000,
                    destinationPort: options.port,
                    verificationTag: Association.peerTag(association),
                    chunks,
                  }),
                }),
              armT3: (atMs, to, generation) => timers.push({ atMs, to, generation }),
            },
          )
      }
    }
    /** Runs `handle` at the clock's time, then sends what it sent and arms what it armed. */
    const turn = (handle: () => void): Effect.Effect<void, never, Scope.Scope> =>
      Effect.gen(function* () {
        nowMs = yield* Clock.currentTimeMillis
        handle()
        for (const { to, bytes } of outbox.splice(0))
          yield* Effect.ignore(socket.send(Address.udp(to, options.udpPort), bytes))
        for (const timer of timers.splice(0))
          yield* Effect.forkScoped(
            Effect.andThen(
              Effect.sleep(timer.atMs - nowMs),
              Effect.suspend(() => turn(() => peer!.t3(timer.to, timer.generation))),
            ),
          )
      })
    const scope = yield* Effect.scope
    yield* Effect.forkScoped(
      Stream.runForEach(socket.messages, (received) =>
        turn(() => {
          const decoded = Packet.decode(received.bytes)
          if (!Result.isSuccess(decoded)) return
          if (peer !== undefined) return peer.receive(received.from.host, decoded.success.chunks)
          perform(
            Association.step(association, {
              _tag: "Receive",
              from: { host: received.from.host, udpPort: received.from.port },
              message: decoded.success,
              nowMs,
            }).outputs,
          )
        }).pipe(
          Effect.andThen(
            Effect.suspend(() =>
              peer === undefined ? Effect.void : Deferred.succeed(up, undefined),
            ),
          ),
        ),
      ),
    )
    yield* turn(() => perform(connected.outputs))
    return Effect.as(Deferred.await(up), {
      write: (line: number) =>
        turn(() => peer!.write(line)).pipe(Effect.provideService(Scope.Scope, scope)),
      get sends() {
        return peer!.sends
      },
      get echoes() {
        return peer!.echoes
      },
    })
  })
