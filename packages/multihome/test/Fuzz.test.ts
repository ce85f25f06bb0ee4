/**
 * Fuzzing of the decoders and the machines (issue 6, Tests): an ESTABLISHED association
 * fed adversarial packets interleaved with legitimate traffic; the Listener fed forged,
 * stale, truncated and bit-flipped State Cookies and out-of-the-blue packets; the
 * Endpoint driver fed random datagrams on SimNet; the replication codec fed random and
 * damaged bytes. Every run is bounded and seeded (fast-check `seed`), so a failure
 * reproduces with the seed and counterexample fast-check prints.
 */
import { describe, expect, it } from "@effect/vitest"
import { Address, Datagram, SimNet } from "@understudy/transport"
import { Effect, Fiber, Random, Result, Stream } from "effect"
import * as fc from "fast-check"
import * as Association from "../src/Association.ts"
import * as Chunk from "../src/Chunk.ts"
import * as Crc32c from "../src/Crc32c.ts"
import * as Endpoint from "../src/Endpoint.ts"
import * as Listener from "../src/Listener.ts"
import * as Packet from "../src/Packet.ts"
import * as Replication from "../src/Replication.ts"
import {
  packet as anyPacket,
  bytes,
  chunk,
  chunkByTag,
  u16,
  u32,
  unknownChunk,
} from "./arbitraries.ts"
import {
  clientHost,
  clientUdp,
  established,
  Loopback,
  messages,
  serverHosts,
  serverUdp,
} from "./associationHarness.ts"
import { advance, echoService, indexOf, payload, within } from "./support/endpoint-support.ts"
import { materialize, type Recipe, recipe } from "./support/fuzz-adversary.ts"

const clientPort = 4000
const serverPort = 5000
const config = (localPort: number): Association.Config => ({
  ...Association.defaultConfig,
  localPort,
})
const clientAddress = { host: clientHost, udpPort: clientUdp }
const serverAddress = { host: serverHosts[0], udpPort: serverUdp }
const rogue = { host: "10.6.6.6", udpPort: 6666 }

type Receive = Extract<Association.Input, { _tag: "Receive" }>

const receive = (packet: Packet.Packet, from: Association.PeerAddress, nowMs: number): Receive => {
  // Through the codec, as on the wire: what the machine sees is what decodes.
  const decoded = Packet.decode(Packet.encode(packet))
  if (!Result.isSuccess(decoded)) throw new Error("an encoded packet must decode")
  return { _tag: "Receive", from, message: decoded.success, nowMs }
}

const transmitted = (outputs: ReadonlyArray<Association.Output>): Array<Chunk.Chunk> =>
  outputs.flatMap((output) => (output._tag === "Send" ? output.message.chunks : []))

const events = (outputs: ReadonlyArray<Association.Output>): Array<Association.Event> =>
  outputs.flatMap((output) => (output._tag === "Emit" ? [output.event] : []))

/** Chunks a dropped packet may still let out: the association's own pending DATA and SACKs. */
const answers = (outputs: ReadonlyArray<Association.Output>): Array<Chunk.Chunk> =>
  transmitted(outputs).filter((chunk) => chunk._tag !== "Data" && chunk._tag !== "Sack")

/** A fresh established pair, and an authentic cookie the server's Listener issued to someone else. */
const establishedPair = (seed: number) => {
  const lb = new Loopback({ seed }, config(clientPort), config(serverPort))
  if (!lb.run(() => established(lb), 10_000)) throw new Error("handshake did not complete")
  const ack = Listener.onUnknownPacket(
    lb.listener,
    receive(
      {
        sourcePort: 7777,
        destinationPort: serverPort,
        verificationTag: 0,
        chunks: [
          {
            _tag: "Init",
            initiateTag: 0x0bad_cafe,
            advertisedReceiverWindowCredit: 65536,
            outboundStreams: 4,
            inboundStreams: 4,
            initialTsn: 42,
            parameters: [],
          },
        ],
      },
      rogue,
      lb.nowMs,
    ),
  )
  const initAck = transmitted(ack.outputs)[0]
  const cookie =
    initAck?._tag === "InitAck"
      ? initAck.parameters.find((p): p is Chunk.StateCookie => p._tag === "StateCookie")
      : undefined
  if (cookie === undefined) throw new Error("the Listener must answer an INIT with a cookie")
  return { lb, cookie: cookie.cookie }
}

/** The report §3.2 asks for: unknown chunks up to the first that says stop, those with report bits. */
const expectedReport = (unknown: ReadonlyArray<Chunk.UnknownChunk>) => {
  const reported: Array<Chunk.UnknownChunk> = []
  for (const chunk of unknown) {
    const bits = chunk.type >>> 6
    if (bits === 1 || bits === 3) reported.push(chunk)
    if (bits === 0 || bits === 1) return { reported, stopped: true }
  }
  return { reported, stopped: false }
}

/** The chunk as received, modulo padding: what an Unrecognized Chunk Type cause carries. */
const chunkBytes = (chunk: Chunk.UnknownChunk): Uint8Array => {
  const out = new Uint8Array(4 + chunk.value.length)
  out[0] = chunk.type
  out[1] = chunk.flags
  out[2] = (out.length >>> 8) & 0xff
  out[3] = out.length & 0xff
  out.set(chunk.value, 4)
  return out
}

/**
 * Checks what the association answered to one adversarial packet against RFC 9260.
 * `before` is what the target's state was just before.
 */
const checkAnswer = (
  r: Recipe,
  packet: Packet.Packet,
  before: { cumulative: number; lastCumAck: number; myTag: number; peerTag: number },
  state: Association.State,
  outputs: ReadonlyArray<Association.Output>,
): void => {
  const evs = events(outputs)
  // Never broken by a packet RFC 9260 says to drop (or to answer without a state change).
  expect(state.name).toBe("Established")
  expect(state.myTag).toBe(before.myTag)
  expect(state.peerTag).toBe(before.peerTag)
  expect(evs.some((event) => event._tag === "CommLost" || event._tag === "Closed")).toBe(false)
  expect(evs.some((event) => event._tag === "Restart")).toBe(false)
  for (const output of outputs) if (output._tag === "Send") Packet.encode(output.message)
  switch (r._tag) {
    case "WrongTag":
    case "ReflectedWrongTag":
    case "ForgedCookie":
      // §8.5, §8.5.1 B/C, §5.1.5 step 1: silently discarded.
      expect(answers(outputs)).toEqual([])
      expect(evs.some((event) => event._tag === "Dropped")).toBe(true)
      break
    case "DataBeyondWindow": {
      // §6.2: not buffered, so not acknowledged; the SACK says where we are.
      expect(evs.some((event) => event._tag === "Message")).toBe(false)
      const sacks = transmitted(outputs).filter((c): c is Chunk.Sack => c._tag === "Sack")
      expect(sacks.length).toBeGreaterThan(0)
      for (const sack of sacks) expect(sack.cumulativeTsnAck).toBe(before.cumulative)
      break
    }
    case "DataDuplicate": {
      // §6.2: a duplicate is not delivered again; an immediate SACK reports it.
      expect(evs.some((event) => event._tag === "Message")).toBe(false)
      const sacks = transmitted(outputs).filter((c): c is Chunk.Sack => c._tag === "Sack")
      expect(sacks.length).toBeGreaterThan(0)
      const tsn = (packet.chunks[0] as Chunk.Data).tsn
      expect(sacks.some((sack) => sack.duplicateTsns.includes(tsn))).toBe(true)
      break
    }
    case "SackStale":
      // §6.2.1 D i: a SACK older than the cumulative ack point is dropped.
      expect(state.lastCumAck).toBe(before.lastCumAck)
      expect(answers(outputs)).toEqual([])
      break
    case "HeartbeatAckForged":
      // §8.3: only the info we sent confirms a path or resets its error counter.
      expect(evs.some((event) => event._tag === "PathChange")).toBe(false)
      expect(answers(outputs)).toEqual([])
      break
    case "Heartbeat": {
      // §8.3: the HEARTBEAT ACK carries the Heartbeat Information verbatim.
      const acks = transmitted(outputs).filter((c) => c._tag === "HeartbeatAck")
      expect(acks).toEqual([{ _tag: "HeartbeatAck", info: r.info }])
      break
    }
    case "UnknownChunks": {
      // §3.2: 00 stop, 01 stop and report, 10 skip, 11 skip and report.
      const { reported, stopped } = expectedReport(r.unknown)
      const errors = transmitted(outputs).filter(
        (c): c is Chunk.OperationError => c._tag === "OperationError",
      )
      if (reported.length === 0) expect(errors).toEqual([])
      else {
        expect(errors).toHaveLength(1)
        expect(errors[0]!.causes).toEqual(
          reported.map((chunk) => ({ _tag: "UnrecognizedChunkType", chunk: chunkBytes(chunk) })),
        )
      }
      const acks = transmitted(outputs).filter((c) => c._tag === "HeartbeatAck")
      expect(acks).toEqual(stopped ? [] : [{ _tag: "HeartbeatAck", info: r.info }])
      break
    }
    case "Init": {
      const init = r.init
      const sent = transmitted(outputs)
      if (init.initiateTag === 0) break // §3.3.2: see the dedicated test below
      const toInitiator = outputs.filter(
        (o): o is Extract<Association.Output, { _tag: "Send" }> =>
          o._tag === "Send" && o.message.chunks.some((c) => c._tag !== "Data" && c._tag !== "Sack"),
      )
      for (const output of toInitiator)
        expect(output.message.verificationTag).toBe(init.initiateTag)
      if (init.outboundStreams === 0 || init.inboundStreams === 0) {
        // §3.3.2: discarded, ABORT under the Initiate Tag (T bit clear), no state change.
        expect(answers(outputs)).toEqual([
          { _tag: "Abort", reflected: false, causes: [{ _tag: "InvalidMandatoryParameter" }] },
        ])
      } else {
        // §5.2.2: an INIT ACK with a new tag and the current tags as tie-tags.
        const acks = sent.filter((c): c is Chunk.InitAck => c._tag === "InitAck")
        expect(acks).toHaveLength(1)
        expect(acks[0]!.initiateTag).not.toBe(before.myTag)
      }
      break
    }
    case "OperationError":
      expect(evs.filter((event) => event._tag === "PeerError")).toHaveLength(1)
      break
    case "Ignored":
    case "RandomBytes":
      expect(answers(outputs)).toEqual([])
      break
  }
}

type Action =
  | {
      readonly _tag: "Send"
      readonly fromClient: boolean
      readonly size: number
      readonly stream: number
      readonly unordered: boolean
    }
  | {
      readonly _tag: "Attack"
      readonly toServer: boolean
      /** From the peer's own address, or from a third host (server side only). */
      readonly fromRogue: boolean
      readonly recipe: Recipe
    }
  | { readonly _tag: "Run"; readonly ms: number }

const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Send" as const),
      fromClient: fc.boolean(),
      size: fc.integer({ min: 4, max: 3000 }),
      stream: fc.integer({ min: 0, max: 3 }),
      unordered: fc.boolean(),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      _tag: fc.constant("Attack" as const),
      toServer: fc.boolean(),
      fromRogue: fc.boolean(),
      recipe,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Run" as const),
      ms: fc.integer({ min: 0, max: 400 }),
    }),
  },
)

describe("machine fuzzing: an ESTABLISHED association under adversarial packets", () => {
  it("property (§3.2, §5.1.5, §6.2, §6.2.1, §8.3, §8.5, §8.5.1, §5.2.2): step never throws, answers follow RFC 9260, and messages both ways are still delivered exactly once", () => {
    fc.assert(
      fc.property(
        fc.array(action, { minLength: 10, maxLength: 60, size: "max" }),
        fc.integer({ min: 1, max: 1000 }),
        (actions, seed) => {
          const { lb, cookie } = establishedPair(seed)
          const sent = {
            client: [] as Array<Action & { _tag: "Send" }>,
            server: [] as Array<Action & { _tag: "Send" }>,
          }
          for (const a of actions) {
            switch (a._tag) {
              case "Send": {
                const list = a.fromClient ? sent.client : sent.server
                const index = list.length
                list.push(a)
                lb.send(a.fromClient, {
                  _tag: "Send",
                  stream: a.stream,
                  ppid: index,
                  data: payload(index, a.size),
                  unordered: a.unordered,
                })
                break
              }
              case "Run":
                lb.run(() => false, a.ms)
                break
              case "Attack": {
                const state = a.toServer ? lb.server! : lb.client
                const made = materialize(a.recipe, { state, cookie })
                if (made.packet === undefined) {
                  // Random bytes that do not decode: a typed failure, never a throw.
                  expect(made.decodeFailure).toMatchObject({
                    _tag: expect.stringMatching(/^(BadChecksum|MalformedPacket)$/),
                  })
                  break
                }
                const before = {
                  cumulative: state.tracker!.cumulative,
                  lastCumAck: state.lastCumAck,
                  myTag: state.myTag,
                  peerTag: state.peerTag,
                }
                const rogueSource = a.toServer && a.fromRogue
                const from = rogueSource ? rogue : a.toServer ? clientAddress : serverAddress
                const input = receive(made.packet, from, lb.nowMs)
                const tag = made.packet.verificationTag
                // Demultiplexed as the Endpoint does: by tag, else by peer address, else the
                // Listener (a third host's packet under a foreign tag matches no association).
                if (rogueSource && (tag === 0 || tag !== state.myTag)) {
                  const outcome = Listener.onUnknownPacket(lb.listener, input)
                  expect(outcome.association).toBeUndefined()
                  for (const output of outcome.outputs) {
                    if (output._tag === "Send") {
                      expect(output.to).toEqual(rogue)
                      Packet.encode(output.message)
                    }
                  }
                  break
                }
                const outputs = Association.step(state, input).outputs
                checkAnswer(a.recipe, made.packet, before, state, outputs)
                // The answers travel to the other side, which must cope with them too
                // (what goes to the third host is lost).
                lb.perform(
                  !a.toServer,
                  outputs.filter((o) => o._tag !== "Send" || o.to.host !== rogue.host),
                )
                break
              }
            }
          }
          const done = () =>
            messages(lb.serverEvents).length >= sent.client.length &&
            messages(lb.clientEvents).length >= sent.server.length
          expect(lb.run(done, 600_000)).toBe(true)
          lb.run(() => false, 2_000)
          expect(established(lb)).toBe(true)
          for (const [list, received] of [
            [sent.client, messages(lb.serverEvents)],
            [sent.server, messages(lb.clientEvents)],
          ] as const) {
            // Exactly once: each index once, with its bytes, stream and ordering.
            expect(received.map((m) => m.ppid).sort((a, b) => a - b)).toEqual(
              list.map((_, index) => index),
            )
            for (const m of received) {
              const original = list[m.ppid]!
              expect(m.data).toEqual(payload(m.ppid, original.size))
              expect(m.stream).toBe(original.stream)
              expect(m.unordered).toBe(original.unordered)
            }
            // §6.6: ordered messages of a stream arrive in the order sent.
            const last = new Map<number, number>()
            for (const m of received) {
              if (m.unordered) continue
              expect(m.ppid).toBeGreaterThan(last.get(m.stream) ?? -1)
              last.set(m.stream, m.ppid)
            }
          }
          return true
        },
      ),
      { numRuns: 300, seed: 0x6f7a },
    )
  })

  it.each([
    // (0x0f is AUTH, RFC 4895, now understood: 0x3f is unassigned.)
    { type: 0x3f, action: "00: stop, no report", stop: true, report: false },
    { type: 0x4f, action: "01: stop and report", stop: true, report: true },
    { type: 0x8f, action: "10: skip, no report", stop: false, report: false },
    { type: 0xcf, action: "11: skip and report", stop: false, report: true },
  ])(
    "§3.2: an unrecognized chunk type $type ($action), then a HEARTBEAT",
    ({ type, stop, report }) => {
      const { lb } = establishedPair(6)
      const server = lb.server!
      const unknown: Chunk.UnknownChunk = {
        _tag: "UnknownChunk",
        type,
        flags: 0x5a,
        value: new Uint8Array([1, 2, 3, 4, 5]),
      }
      const info = new Uint8Array([9, 8, 7])
      const outputs = Association.step(
        server,
        receive(
          {
            sourcePort: clientPort,
            destinationPort: serverPort,
            verificationTag: server.myTag,
            chunks: [unknown, { _tag: "Heartbeat", info }],
          },
          clientAddress,
          lb.nowMs,
        ),
      ).outputs
      const sent = transmitted(outputs)
      expect(sent.filter((c) => c._tag === "OperationError")).toEqual(
        report
          ? [
              {
                _tag: "OperationError",
                causes: [{ _tag: "UnrecognizedChunkType", chunk: chunkBytes(unknown) }],
              },
            ]
          : [],
      )
      expect(sent.filter((c) => c._tag === "HeartbeatAck")).toEqual(
        stop ? [] : [{ _tag: "HeartbeatAck", info }],
      )
      expect(server.name).toBe("Established")
    },
  )

  it("§3.3.2: an INIT whose Initiate Tag is 0 is silently discarded by an existing association", () => {
    const { lb } = establishedPair(3)
    const server = lb.server!
    const outputs = Association.step(
      server,
      receive(
        {
          sourcePort: clientPort,
          destinationPort: serverPort,
          verificationTag: 0,
          chunks: [
            {
              _tag: "Init",
              initiateTag: 0,
              advertisedReceiverWindowCredit: 0,
              outboundStreams: 10,
              inboundStreams: 10,
              initialTsn: 1,
              parameters: [],
            },
          ],
        },
        clientAddress,
        lb.nowMs,
      ),
    ).outputs
    expect(transmitted(outputs)).toEqual([])
    expect(server.name).toBe("Established")
  })

  it("§3.3.2: the Listener silently discards an INIT whose Initiate Tag is 0", () => {
    const listener = Listener.makeListener(config(serverPort), 11)
    const outcome = Listener.onUnknownPacket(
      listener,
      receive(
        {
          sourcePort: clientPort,
          destinationPort: serverPort,
          verificationTag: 0,
          chunks: [
            {
              _tag: "Init",
              initiateTag: 0,
              advertisedReceiverWindowCredit: 65536,
              outboundStreams: 10,
              inboundStreams: 10,
              initialTsn: 1,
              parameters: [],
            },
          ],
        },
        rogue,
        0,
      ),
    )
    expect(transmitted(outcome.outputs)).toEqual([])
    expect(outcome.association).toBeUndefined()
  })

  it("§11.4: a SACK acknowledging a TSN never sent aborts the association", () => {
    const { lb } = establishedPair(4)
    const server = lb.server!
    const outputs = Association.step(
      server,
      receive(
        {
          sourcePort: clientPort,
          destinationPort: serverPort,
          verificationTag: server.myTag,
          chunks: [
            {
              _tag: "Sack",
              cumulativeTsnAck: (server.nextTsn + 10) >>> 0,
              advertisedReceiverWindowCredit: 65536,
              gapAckBlocks: [],
              duplicateTsns: [],
            },
          ],
        },
        clientAddress,
        lb.nowMs,
      ),
    ).outputs
    expect(transmitted(outputs).some((c) => c._tag === "Abort")).toBe(true)
    expect(server.name).toBe("Closed")
  })

  it("§6.10, §8.5.1 A: INIT bundled with other chunks, and tag 0 without INIT, are dropped by the association", () => {
    fc.assert(
      fc.property(
        fc.array(chunk, { minLength: 1, maxLength: 3 }),
        fc.option(chunkByTag.Init, { nil: undefined }),
        fc.nat(),
        (others, init, at) => {
          const { lb } = establishedPair(5)
          const server = lb.server!
          // With an INIT somewhere among other chunks (§6.10), or no INIT at all (§8.5.1 A).
          const chunks: Array<Chunk.Chunk> = others.filter((c) => c._tag !== "Init")
          if (init !== undefined) chunks.splice(at % (chunks.length + 1), 0, init)
          if (chunks.length === 0 || (init !== undefined && chunks.length === 1)) return true
          const list = chunks
          const outputs = Association.step(
            server,
            receive(
              {
                sourcePort: clientPort,
                destinationPort: serverPort,
                verificationTag: 0,
                chunks: list,
              },
              clientAddress,
              lb.nowMs,
            ),
          ).outputs
          expect(answers(outputs)).toEqual([])
          expect(events(outputs).some((e) => e._tag === "Dropped")).toBe(true)
          expect(server.name).toBe("Established")
          return true
        },
      ),
      { numRuns: 100, seed: 0x6f7b },
    )
  })
})

/** Snapshots of a client and server association in every state a handshake and shutdown pass. */
const statesAlongTheWay = (): Array<{
  readonly name: string
  readonly snapshot: Association.Snapshot
  readonly port: number
}> => {
  const out: Array<{ name: string; snapshot: Association.Snapshot; port: number }> = []
  const lb = new Loopback({ seed: 12 }, config(clientPort), config(serverPort))
  const take = (isClient: boolean) => {
    const state = isClient ? lb.client : lb.server
    if (state !== undefined) {
      out.push({
        name: state.name,
        snapshot: Association.snapshot(state),
        port: isClient ? clientPort : serverPort,
      })
    }
  }
  take(true)
  lb.run(() => lb.client.name === "CookieEchoed", 10_000)
  take(true)
  lb.run(() => established(lb), 10_000)
  take(true)
  take(false)
  lb.send(true, { _tag: "Send", stream: 0, ppid: 0, data: payload(0, 2000), unordered: false })
  lb.send(true, { _tag: "Shutdown" })
  take(true)
  lb.run(
    () => lb.server?.name === "ShutdownReceived" || lb.server?.name === "ShutdownAckSent",
    10_000,
  )
  take(false)
  lb.run(() => lb.client.name === "ShutdownSent", 10_000)
  take(true)
  lb.run(() => lb.server?.name === "ShutdownAckSent", 10_000)
  take(false)
  return out
}

describe("machine fuzzing: every state of the association", () => {
  const states = statesAlongTheWay()

  it("covers the handshake and shutdown states", () => {
    const names = new Set(states.map((state) => state.name))
    for (const name of ["CookieWait", "CookieEchoed", "Established", "ShutdownAckSent"]) {
      expect(names.has(name)).toBe(true)
    }
    expect(names.has("ShutdownPending") || names.has("ShutdownSent")).toBe(true)
  })

  it("property: any packets (right, reflected, zero or wrong tags), timers and commands in any state never throw, and every packet sent encodes", () => {
    const input = (state: Association.State, nowMs: number) =>
      fc.oneof(
        {
          weight: 4,
          arbitrary: fc
            .record({
              chunks: fc.array(chunk, { minLength: 1, maxLength: 4 }),
              tag: fc.constantFrom(state.myTag, state.peerTag, 0, 0x7777_7777),
              rightPorts: fc.boolean(),
            })
            .map(
              ({ chunks, tag, rightPorts }): Association.Input =>
                receive(
                  {
                    sourcePort: rightPorts ? state.peerPort : 1,
                    destinationPort: rightPorts ? state.localPort : 2,
                    verificationTag: tag,
                    chunks,
                  },
                  state.localPort === clientPort ? serverAddress : clientAddress,
                  nowMs,
                ),
            ),
        },
        {
          weight: 1,
          arbitrary: fc
            .oneof(
              fc.constantFrom(...Object.keys(state.timers), "T3-rtx:10.9.9.9", "bogus"),
              fc.string({ maxLength: 12 }),
            )
            .map(
              (timer): Association.Input => ({
                _tag: "TimerFired",
                timer,
                nowMs: nowMs + 1_000_000,
              }),
            ),
        },
        {
          weight: 1,
          arbitrary: fc
            .oneof(
              fc.record({
                _tag: fc.constant("Send" as const),
                stream: u16,
                ppid: u32,
                data: bytes(3000),
                unordered: fc.boolean(),
              }),
              fc.constant({ _tag: "Shutdown" as const }),
              fc.constant({ _tag: "Abort" as const }),
              fc.record({
                _tag: fc.constant("SetPrimary" as const),
                host: fc.constantFrom(clientHost, serverHosts[1], "nowhere"),
              }),
              fc.record({
                _tag: fc.constant("RequestHeartbeat" as const),
                host: fc.constantFrom(clientHost, serverHosts[1], "nowhere"),
              }),
            )
            .map((command): Association.Input => ({ _tag: "Command", command, nowMs })),
        },
      )
    for (const { snapshot, port } of states) {
      const probe = Association.restore(config(port), snapshot)
      fc.assert(
        fc.property(fc.array(input(probe, 100_000), { minLength: 1, maxLength: 12 }), (inputs) => {
          const state = Association.restore(config(port), snapshot)
          for (const each of inputs) {
            for (const output of Association.step(state, each).outputs) {
              if (output._tag === "Send") Packet.encode(output.message)
            }
          }
          return true
        }),
        { numRuns: 150, seed: 0x6f85 + port },
      )
    }
  })
})

describe("Listener fuzzing: State Cookies and out-of-the-blue packets", () => {
  const initFrom = (listener: Listener.Listener, nowMs: number, initiateTag = 0x1234_5678) => {
    const outcome = Listener.onUnknownPacket(
      listener,
      receive(
        {
          sourcePort: clientPort,
          destinationPort: serverPort,
          verificationTag: 0,
          chunks: [
            {
              _tag: "Init",
              initiateTag,
              advertisedReceiverWindowCredit: 65536,
              outboundStreams: 10,
              inboundStreams: 10,
              initialTsn: 77,
              parameters: [],
            },
          ],
        },
        clientAddress,
        nowMs,
      ),
    )
    const ack = transmitted(outcome.outputs)[0] as Chunk.InitAck
    const cookie = ack.parameters.find((p): p is Chunk.StateCookie => p._tag === "StateCookie")!
    return { ack, cookie: cookie.cookie }
  }
  const echo = (
    listener: Listener.Listener,
    tag: number,
    cookie: Uint8Array,
    nowMs: number,
    rest: ReadonlyArray<Chunk.Chunk> = [],
  ) =>
    Listener.onUnknownPacket(
      listener,
      receive(
        {
          sourcePort: clientPort,
          destinationPort: serverPort,
          verificationTag: tag,
          chunks: [{ _tag: "CookieEcho", cookie }, ...rest],
        },
        clientAddress,
        nowMs,
      ),
    )

  it("property (§5.1.5 step 1): a bit-flipped or truncated State Cookie is silently discarded, and the genuine one still works", () => {
    fc.assert(
      fc.property(
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        fc.boolean(),
        (position, bit, truncate) => {
          const listener = Listener.makeListener(config(serverPort), 21)
          const { ack, cookie } = initFrom(listener, 1_000)
          const damaged = truncate ? cookie.subarray(0, position % cookie.length) : cookie.slice()
          if (!truncate)
            damaged[position % damaged.length] =
              (damaged[position % damaged.length] ?? 0) ^ (1 << bit)
          const outcome = echo(listener, ack.initiateTag, damaged, 2_000)
          expect(outcome.association).toBeUndefined()
          expect(transmitted(outcome.outputs)).toEqual([])
          expect(events(outcome.outputs)).toEqual([{ _tag: "Dropped", reason: "InvalidCookie" }])
          const good = echo(listener, ack.initiateTag, cookie, 2_000)
          expect(good.association?.name).toBe("Established")
          expect(transmitted(good.outputs)).toContainEqual({ _tag: "CookieAck" })
          return true
        },
      ),
      { numRuns: 300, seed: 0x6f7c },
    )
  })

  it("property (§5.1.5 step 1): forged cookies of random bytes never create an association nor draw an answer", () => {
    fc.assert(
      fc.property(bytes(300), u32, (cookie, tag) => {
        const listener = Listener.makeListener(config(serverPort), 22)
        const outcome = echo(listener, tag, cookie, 5_000)
        expect(outcome.association).toBeUndefined()
        expect(transmitted(outcome.outputs)).toEqual([])
        return true
      }),
      { numRuns: 300, seed: 0x6f7d },
    )
  })

  it("property (§5.1.5 step 3): a stale cookie draws an ERROR Stale Cookie under the peer's tag, with the staleness", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000_000 }), (lateMs) => {
        const listener = Listener.makeListener(config(serverPort), 23)
        const { ack, cookie } = initFrom(listener, 1_000, 0x2222_3333)
        const at = 1_000 + Association.defaultConfig.validCookieLifeMs + lateMs
        const outcome = echo(listener, ack.initiateTag, cookie, at)
        expect(outcome.association).toBeUndefined()
        const out = outcome.outputs.filter((o) => o._tag === "Send")
        if (out.length === 0) {
          // The secret that sealed it has rotated out: the MAC no longer verifies.
          expect(events(outcome.outputs)).toEqual([{ _tag: "Dropped", reason: "InvalidCookie" }])
          return true
        }
        expect(out).toHaveLength(1)
        const sent = out[0] as Extract<Association.Output, { _tag: "Send" }>
        expect(sent.message.verificationTag).toBe(0x2222_3333)
        const error = sent.message.chunks[0] as Chunk.OperationError
        expect(error._tag).toBe("OperationError")
        const stale = error.causes[0] as Extract<Chunk.ErrorCause, { _tag: "StaleCookie" }>
        expect(stale._tag).toBe("StaleCookie")
        // The staleness in microseconds (§3.3.10.3), clamped to 32 bits.
        expect(stale.stalenessUs).toBe(Math.min(lateMs * 1000, 0xffffffff))
        return true
      }),
      { numRuns: 200, seed: 0x6f7e },
    )
  })

  it("property (§5.1.5 step 3–4, §5.2.4): an authentic cookie echoed under a tag that is not the cookie's is discarded", () => {
    fc.assert(
      fc.property(u32, (tag) => {
        const listener = Listener.makeListener(config(serverPort), 24)
        const { ack, cookie } = initFrom(listener, 1_000)
        fc.pre(tag !== ack.initiateTag)
        const outcome = echo(listener, tag, cookie, 1_500)
        expect(outcome.association).toBeUndefined()
        expect(transmitted(outcome.outputs)).toEqual([])
        return true
      }),
      { numRuns: 200, seed: 0x6f7f },
    )
  })

  it("property (§8.4): out-of-the-blue packets are answered exactly as rules 2–8 say", () => {
    fc.assert(
      fc.property(anyPacket, (p) => {
        const first = p.chunks[0]!
        fc.pre(first._tag !== "Init" && first._tag !== "CookieEcho")
        const listener = Listener.makeListener(config(serverPort), 25)
        const packet = { ...p, destinationPort: serverPort }
        const outcome = Listener.onUnknownPacket(listener, receive(packet, rogue, 0))
        expect(outcome.association).toBeUndefined()
        const sent = outcome.outputs.filter(
          (o): o is Extract<Association.Output, { _tag: "Send" }> => o._tag === "Send",
        )
        const bundlingBroken = Packet.checkBundling(packet)._tag !== "Ok"
        // The first chunk that decides, in packet order (§8.4 rules 2, 5, 6, 7).
        const decisive = packet.chunks.find(
          (c) =>
            c._tag === "Abort" ||
            c._tag === "ShutdownComplete" ||
            c._tag === "CookieAck" ||
            c._tag === "ShutdownAck" ||
            (c._tag === "OperationError" && c.causes.some((cause) => cause._tag === "StaleCookie")),
        )
        if (bundlingBroken || (decisive !== undefined && decisive._tag !== "ShutdownAck")) {
          expect(sent).toEqual([])
        } else if (decisive?._tag === "ShutdownAck") {
          // Rule 5: SHUTDOWN COMPLETE with the T bit, the packet's tag reflected.
          expect(sent).toHaveLength(1)
          expect(sent[0]!.message.verificationTag).toBe(packet.verificationTag)
          expect(sent[0]!.message.chunks).toEqual([{ _tag: "ShutdownComplete", reflected: true }])
        } else {
          // Rule 8 (e.g. out-of-the-blue DATA): ABORT with the T bit, the tag reflected.
          expect(sent).toHaveLength(1)
          expect(sent[0]!.message.verificationTag).toBe(packet.verificationTag)
          expect(sent[0]!.message.chunks).toEqual([{ _tag: "Abort", reflected: true, causes: [] }])
          expect(sent[0]!.to).toEqual(rogue)
        }
        return true
      }),
      { numRuns: 500, seed: 0x6f80 },
    )
  })

  it("property (§3.3.2): INITs with absurd stream counts, a_rwnd 0 or any tag never throw; OS or MIS 0 draws an ABORT under the Initiate Tag", () => {
    fc.assert(
      fc.property(
        fc.record({
          initiateTag: fc.oneof(
            fc.constant(1),
            u32.filter((t) => t !== 0),
          ),
          advertisedReceiverWindowCredit: fc.oneof(fc.constant(0), u32),
          outboundStreams: fc.oneof(fc.constant(0), fc.constant(0xffff), u16),
          inboundStreams: fc.oneof(fc.constant(0), fc.constant(0xffff), u16),
          initialTsn: u32,
        }),
        (fields) => {
          const listener = Listener.makeListener(config(serverPort), 26)
          const outcome = Listener.onUnknownPacket(
            listener,
            receive(
              {
                sourcePort: clientPort,
                destinationPort: serverPort,
                verificationTag: 0,
                chunks: [{ _tag: "Init", ...fields, parameters: [] }],
              },
              clientAddress,
              0,
            ),
          )
          const sent = outcome.outputs.filter(
            (o): o is Extract<Association.Output, { _tag: "Send" }> => o._tag === "Send",
          )
          expect(sent).toHaveLength(1)
          expect(sent[0]!.message.verificationTag).toBe(fields.initiateTag)
          const answer = sent[0]!.message.chunks[0]!
          if (fields.outboundStreams === 0 || fields.inboundStreams === 0) {
            expect(answer).toEqual({
              _tag: "Abort",
              reflected: false,
              causes: [{ _tag: "InvalidMandatoryParameter" }],
            })
            return true
          }
          expect(answer._tag).toBe("InitAck")
          const ack = answer as Chunk.InitAck
          const cookie = ack.parameters.find(
            (p): p is Chunk.StateCookie => p._tag === "StateCookie",
          )!
          // The association the cookie makes uses min(OS, our MIS) and min(MIS, our OS) streams.
          const made = echo(listener, ack.initiateTag, cookie.cookie, 10)
          const status = Association.info(made.association!)
          expect(status.state).toBe("Established")
          const up = events(made.outputs).find((e) => e._tag === "CommUp") as Extract<
            Association.Event,
            { _tag: "CommUp" }
          >
          expect(up.outboundStreams).toBe(
            Math.min(Association.defaultConfig.outboundStreams, fields.inboundStreams),
          )
          expect(up.inboundStreams).toBe(
            Math.min(Association.defaultConfig.inboundStreamsMax, fields.outboundStreams),
          )
          return true
        },
      ),
      { numRuns: 300, seed: 0x6f81 },
    )
  })
})

describe("an association made from an INIT with a_rwnd 0", () => {
  it("§6.1 A: it still sends, one DATA chunk at a time (the zero window probe), and nothing throws", () => {
    const listener = Listener.makeListener(config(serverPort), 31)
    const init: Chunk.Init = {
      _tag: "Init",
      initiateTag: 0x4444_5555,
      advertisedReceiverWindowCredit: 0,
      outboundStreams: 0xffff,
      inboundStreams: 0xffff,
      initialTsn: 1000,
      parameters: [],
    }
    const header = { sourcePort: clientPort, destinationPort: serverPort }
    const answer = Listener.onUnknownPacket(
      listener,
      receive({ ...header, verificationTag: 0, chunks: [init] }, clientAddress, 0),
    )
    const ack = transmitted(answer.outputs)[0] as Chunk.InitAck
    const cookie = ack.parameters.find((p): p is Chunk.StateCookie => p._tag === "StateCookie")!
    const made = Listener.onUnknownPacket(
      listener,
      receive(
        {
          ...header,
          verificationTag: ack.initiateTag,
          chunks: [{ _tag: "CookieEcho", cookie: cookie.cookie }],
        },
        clientAddress,
        10,
      ),
    )
    const server = made.association!
    expect(server.name).toBe("Established")
    const outputs: Array<Association.Output> = []
    for (let index = 0; index < 3; index++) {
      outputs.push(
        ...Association.step(server, {
          _tag: "Command",
          command: {
            _tag: "Send",
            stream: 0,
            ppid: 0,
            data: payload(index, 100),
            unordered: false,
          },
          nowMs: 20,
        }).outputs,
      )
    }
    const data = transmitted(outputs).filter((c): c is Chunk.Data => c._tag === "Data")
    expect(data).toHaveLength(1)
    expect(data[0]!.tsn).toBe(ack.initialTsn)
  })
})

describe("decoder fuzzing: Packet.decode", () => {
  it("property: truncations and wrong chunk lengths of valid packets give a typed failure (the CRC recomputed), never a throw", () => {
    fc.assert(
      fc.property(
        anyPacket,
        fc.nat(),
        fc.integer({ min: 0, max: 0xffff }),
        fc.boolean(),
        (p, cut, length, truncate) => {
          const encoded = Packet.encode(p)
          let damaged: Uint8Array
          if (truncate) {
            damaged = encoded.slice(
              0,
              Packet.headerLength + (cut % (encoded.length - Packet.headerLength)),
            )
          } else {
            // The first chunk's length field set to a value that does not fit its contents.
            damaged = encoded.slice()
            damaged[14] = length >>> 8
            damaged[15] = length & 0xff
          }
          Crc32c.write(damaged, Crc32c.ofPacket(damaged))
          const decoded = Packet.decode(damaged)
          if (Result.isFailure(decoded)) {
            expect(decoded.failure._tag).toBe("MalformedPacket")
            return true
          }
          // What decodes is a packet the encoder can write again.
          Packet.encode(decoded.success)
          return true
        },
      ),
      { numRuns: 500, seed: 0x6f82 },
    )
  })

  it("property: a truncation that cuts into the first chunk never decodes", () => {
    fc.assert(
      fc.property(chunk, fc.nat(), (c, cut) => {
        const encoded = Packet.encode({
          sourcePort: 1,
          destinationPort: 2,
          verificationTag: 3,
          chunks: [c],
        })
        const size = 4 + Chunk.chunkSize(c) - ((4 - (Chunk.chunkSize(c) % 4)) % 4)
        const chunkLength = ((encoded[14] ?? 0) << 8) | (encoded[15] ?? 0)
        fc.pre(chunkLength > 4 || size > 8)
        const keep = Packet.headerLength + (cut % chunkLength)
        const damaged = encoded.slice(0, keep)
        if (damaged.length === Packet.headerLength) return true
        Crc32c.write(damaged, Crc32c.ofPacket(damaged))
        const decoded = Packet.decode(damaged)
        expect(Result.isFailure(decoded)).toBe(true)
        return true
      }),
      { numRuns: 500, seed: 0x6f83 },
    )
  })

  it("property: any bit flip of a valid packet is caught by the CRC32c (BadChecksum)", () => {
    fc.assert(
      fc.property(anyPacket, fc.nat(), fc.integer({ min: 0, max: 7 }), (p, position, bit) => {
        const damaged = Packet.encode(p)
        damaged[position % damaged.length] = (damaged[position % damaged.length] ?? 0) ^ (1 << bit)
        const decoded = Packet.decode(damaged)
        expect(Result.isFailure(decoded) && decoded.failure._tag).toBe("BadChecksum")
        return true
      }),
      { numRuns: 500, seed: 0x6f84 },
    )
  })
})

// ---------------------------------------------------------------------------------------
// The Endpoint driver on SimNet
// ---------------------------------------------------------------------------------------

const quick: Endpoint.AssociationOptions = {
  rtoInitial: 500,
  rtoMin: 200,
  rtoMax: 2_000,
  heartbeatInterval: 1_000,
}

describe("Endpoint fuzzing on SimNet", () => {
  it.effect(
    "random datagrams, bad CRCs and packets for unknown associations are counted by reason; a live association keeps echoing",
    () =>
      Effect.gen(function* () {
        const net = yield* SimNet.make({ link: { latency: SimNet.fixed(5) } })
        const server = yield* Endpoint.make({
          bind: Address.udp("server", 9899),
          // As the endpoint drew its seed before node:crypto: the same simulated run.
          seed: yield* Random.nextIntBetween(0, 0x7fffffff),
          port: serverPort,
          listen: true,
          config: quick,
        }).pipe(Effect.provide(net.layer("server")))
        const client = yield* Endpoint.make({
          bind: Address.udp("client", 9899),
          // As the endpoint drew its seed before node:crypto: the same simulated run.
          seed: yield* Random.nextIntBetween(0, 0x7fffffff),
          port: clientPort,
          config: quick,
        }).pipe(Effect.provide(net.layer("client")))
        yield* echoService(server)
        const association = yield* within(
          30_000,
          client.connect({ host: "server", udpPort: 9899, port: serverPort }),
        )
        const attacker = yield* Effect.gen(function* () {
          const datagram = yield* Datagram.Datagram
          return yield* datagram.bind(Address.udp("rogue", 0))
        }).pipe(Effect.provide(net.layer("rogue")))
        const target = Address.udp("server", 9899)

        // Three kinds of garbage, drawn by fast-check from fixed seeds.
        const randomDatagrams = fc.sample(fc.uint8Array({ maxLength: 200 }), {
          numRuns: 200,
          seed: 1,
        })
        const badCrc = fc
          .sample(fc.tuple(anyPacket, fc.nat(), fc.integer({ min: 0, max: 7 })), {
            numRuns: 150,
            seed: 2,
          })
          .map(([p, position, bit]) => {
            const bytes = Packet.encode({ ...p, destinationPort: serverPort })
            bytes[position % bytes.length] = (bytes[position % bytes.length] ?? 0) ^ (1 << bit)
            return bytes
          })
        // Valid packets for associations that do not exist (not INIT, not COOKIE ECHO).
        const unknown = fc
          .sample(
            fc.record({
              tag: u32.filter((tag) => tag !== 0),
              chunks: fc.array(
                fc.oneof(
                  chunkByTag.Data,
                  chunkByTag.Sack,
                  chunkByTag.Heartbeat,
                  chunkByTag.HeartbeatAck,
                  unknownChunk,
                ),
                { minLength: 1, maxLength: 3 },
              ),
            }),
            { numRuns: 150, seed: 3 },
          )
          .map(({ tag, chunks }) =>
            Packet.encode({
              sourcePort: 4242,
              destinationPort: serverPort,
              verificationTag: tag,
              chunks,
            }),
          )
        // What the decoder says of each, to know what the endpoint must count.
        let expectedBad = 0
        let expectedMalformed = 0
        for (const datagram of [...randomDatagrams, ...badCrc]) {
          const decoded = Packet.decode(datagram)
          if (Result.isFailure(decoded)) {
            if (decoded.failure._tag === "BadChecksum") expectedBad++
            else expectedMalformed++
          }
        }
        expect(expectedBad).toBeGreaterThanOrEqual(150)

        const before = yield* server.stats
        const answered: Array<Packet.Packet> = []
        yield* attacker.messages.pipe(
          Stream.runForEach((datagram) =>
            Effect.sync(() => {
              const decoded = Packet.decode(datagram.bytes)
              if (Result.isSuccess(decoded)) answered.push(decoded.success)
            }),
          ),
          Effect.forkScoped,
        )
        const received = yield* Effect.forkScoped(
          association.messages.pipe(Stream.take(60), Stream.runCollect),
        )
        const all = [...randomDatagrams, ...badCrc, ...unknown]
        for (let index = 0; index < all.length; index++) {
          yield* attacker.send(target, all[index]!)
          // Legitimate traffic interleaved with the garbage.
          if (index % 8 === 0) yield* association.send(index % 3, 9, payload(index / 8, 40 + index))
          if (index % 20 === 0) yield* advance(20)
        }
        const echoed = yield* within(120_000, Fiber.join(received))
        yield* advance(200)
        const stats = yield* server.stats
        expect(stats.packetsIn - before.packetsIn).toBeGreaterThanOrEqual(all.length)
        expect((stats.dropped.BadChecksum ?? 0) - (before.dropped.BadChecksum ?? 0)).toBe(
          expectedBad,
        )
        expect((stats.dropped.Malformed ?? 0) - (before.dropped.Malformed ?? 0)).toBe(
          expectedMalformed,
        )
        expect(stats.associations).toBe(1)
        // Exactly once, in order on each stream.
        const indexes = [...echoed].map((m) => indexOf(m.data))
        expect([...indexes].sort((a, b) => a - b)).toEqual(Array.from({ length: 60 }, (_, i) => i))
        const status = yield* association.status
        expect(status.state).toBe("Established")
        // §8.4 rule 8: each packet for an unknown association drew an ABORT with the T bit
        // and its own tag reflected (none of them carries a chunk that forbids an answer).
        const abortTags = answered
          .filter((p) => p.chunks.length === 1 && p.chunks[0]?._tag === "Abort")
          .filter((p) => (p.chunks[0] as Chunk.Abort).reflected)
          .map((p) => p.verificationTag)
        const unknownTags = unknown.map((bytes) => new DataView(bytes.buffer).getUint32(4))
        for (const tag of unknownTags) expect(abortTags).toContain(tag)
        expect(answered.every((p) => p.sourcePort === serverPort)).toBe(true)
      }).pipe(Random.withSeed(61)),
  )
})

// ---------------------------------------------------------------------------------------
// The replication codec
// ---------------------------------------------------------------------------------------

/** Snapshots of real associations: fresh, and with data queued, outstanding and buffered. */
const realSnapshots = (): Array<Association.Snapshot> => {
  const { lb } = establishedPair(9)
  const out: Array<Association.Snapshot> = [
    Association.snapshot(lb.client),
    Association.snapshot(lb.server!),
  ]
  for (let index = 0; index < 30; index++) {
    lb.send(true, {
      _tag: "Send",
      stream: index % 3,
      ppid: index,
      data: payload(index, 900 + index * 37),
      unordered: index % 4 === 0,
    })
  }
  lb.run(() => false, 7)
  out.push(Association.snapshot(lb.client), Association.snapshot(lb.server!))
  lb.run(() => messages(lb.serverEvents).length >= 30, 60_000)
  out.push(Association.snapshot(lb.client), Association.snapshot(lb.server!))
  return out
}

const snapshots = realSnapshots()
const snapshot = fc.constantFrom(...snapshots)

const wireInput: fc.Arbitrary<Replication.WireInput> = fc.oneof(
  fc.record({
    _tag: fc.constant("Receive" as const),
    host: fc.constantFrom("10.0.0.1", "::1", "127.0.0.2"),
    udpPort: u16,
    bytes: anyPacket.map(Packet.encode),
    nowMs: fc.nat(),
  }),
  fc.record({
    _tag: fc.constant("TimerFired" as const),
    timer: fc.constantFrom("T3-rtx:10.0.0.1", "SACK", "HB:10.0.0.2"),
    nowMs: fc.nat(),
  }),
  fc.record({
    _tag: fc.constant("Command" as const),
    command: fc.oneof(
      fc.record({
        _tag: fc.constant("Send" as const),
        stream: u16,
        ppid: u32,
        data: bytes(100),
        unordered: fc.boolean(),
      }),
      fc.constant({ _tag: "Shutdown" as const }),
      fc.record({ _tag: fc.constant("Abort" as const), reason: fc.string({ maxLength: 20 }) }),
      fc.record({ _tag: fc.constant("SetPrimary" as const), host: fc.string({ maxLength: 20 }) }),
      fc.record({
        _tag: fc.constant("RequestHeartbeat" as const),
        host: fc.string({ maxLength: 20 }),
      }),
    ),
    nowMs: fc.nat(),
  }),
)

const seq = fc.nat()
const epoch = fc.nat()
const replicationMessage: fc.Arbitrary<Replication.Message> = fc.oneof(
  fc.record({
    _tag: fc.constant("Snapshot" as const),
    seq,
    epoch,
    association: fc.nat(),
    snapshot,
  }),
  fc.record({
    _tag: fc.constant("Inputs" as const),
    seq,
    epoch,
    association: fc.nat(),
    inputs: fc.array(wireInput, { maxLength: 5 }),
  }),
  fc.record({ _tag: fc.constant("Gone" as const), seq, epoch, association: fc.nat() }),
  fc.record({
    _tag: fc.constant("Secrets" as const),
    seq,
    epoch,
    listener: fc.record({
      current: fc.uint8Array({ minLength: 32, maxLength: 32 }),
      previous: fc.option(fc.uint8Array({ minLength: 32, maxLength: 32 }), { nil: undefined }),
      rotatedAtMs: fc.nat(),
    }),
  }),
  fc.record({ _tag: fc.constant("Ack" as const), seq }),
  fc.record({
    _tag: fc.constant("CumulativeAck" as const),
    seq,
    epoch,
    association: fc.nat(),
    tsn: fc.integer({ min: 0, max: 0xffffffff }),
  }),
  fc.constant({ _tag: "Deposed" as const }),
  fc.record({ _tag: fc.constant("HandOver" as const), epoch, after: seq }),
  fc.record({
    _tag: fc.constant("Forward" as const),
    host: fc.string({ maxLength: 30 }),
    udpPort: u16,
    bytes: bytes(200),
  }),
)

const encodeMessage = (message: Replication.Message): Uint8Array => {
  const encoded = Replication.codec.encode(message)
  if (!Result.isSuccess(encoded)) throw new Error("a valid message must encode")
  return encoded.success
}

/** The structural rules a decoded message must satisfy (what `apply` relies on). */
const wellFormed = (message: Replication.Message): boolean => {
  const isCount = (n: unknown) => typeof n === "number" && Number.isSafeInteger(n) && n >= 0
  const epoch = Replication.epochOf(message)
  if (epoch !== undefined && !isCount(epoch)) return false
  switch (message._tag) {
    case "Ack":
      return isCount(message.seq)
    case "Gone":
      return isCount(message.seq) && isCount(message.association)
    case "CumulativeAck":
      return (
        isCount(message.seq) &&
        isCount(message.association) &&
        isCount(message.tsn) &&
        message.tsn <= 0xffffffff
      )
    case "Forward":
      return (
        typeof message.host === "string" &&
        isCount(message.udpPort) &&
        message.bytes instanceof Uint8Array
      )
    case "Secrets":
      return (
        isCount(message.seq) && typeof message.listener === "object" && message.listener !== null
      )
    case "Inputs":
      return isCount(message.seq) && Array.isArray(message.inputs)
    case "Snapshot":
      return (
        isCount(message.seq) && typeof message.snapshot === "object" && message.snapshot !== null
      )
    case "Deposed":
      return true
    case "HandOver":
      return isCount(message.after)
    case "Aliases":
      return (
        isCount(message.seq) &&
        Array.isArray(message.aliases) &&
        message.aliases.every(
          (alias) => typeof alias.host === "string" && isCount(alias.from.udpPort),
        )
      )
  }
}

describe("replication codec fuzzing", () => {
  it("property: valid messages round-trip (snapshots of real associations, inputs, acks, forwards...)", () => {
    fc.assert(
      fc.property(replicationMessage, (message) => {
        const decoded = Replication.codec.decode(encodeMessage(message))
        expect(Result.isSuccess(decoded)).toBe(true)
        if (Result.isSuccess(decoded)) expect(decoded.success).toEqual(message)
        return true
      }),
      { numRuns: 300, seed: 0x6f90 },
    )
  })

  it("property: a primary's message without a whole, non-negative epoch is a CodecError", () => {
    const badEpoch = fc.oneof(
      fc.constant(undefined),
      fc.integer({ max: -1 }),
      // A fraction: the codec encodes only finite numbers (a damaged encoding is fuzzed below).
      fc.double({ noInteger: true, noDefaultInfinity: true }),
      fc.string({ maxLength: 5 }),
    )
    fc.assert(
      fc.property(
        replicationMessage.filter((message) => Replication.epochOf(message) !== undefined),
        badEpoch,
        (message, epoch) => {
          const { epoch: _epoch, ...rest } = message as Replication.Message & { epoch: number }
          const damaged = (epoch === undefined ? rest : { ...rest, epoch }) as Replication.Message
          const decoded = Replication.codec.decode(encodeMessage(damaged))
          expect(Result.isFailure(decoded)).toBe(true)
          return true
        },
      ),
      { numRuns: 200, seed: 0x6f91 },
    )
  })

  it("a decoded snapshot restores to an association that steps exactly as the original", () => {
    for (const original of snapshots) {
      const decoded = Replication.codec.decode(
        encodeMessage({ _tag: "Snapshot", seq: 1, epoch: 0, association: 1, snapshot: original }),
      )
      if (!Result.isSuccess(decoded) || decoded.success._tag !== "Snapshot")
        throw new Error("must decode")
      const a = Association.restore(config(serverPort), original)
      const b = Association.restore(config(serverPort), decoded.success.snapshot)
      const input: Association.Input = {
        _tag: "TimerFired",
        timer: Object.keys(a.timers)[0] ?? "SACK",
        nowMs: 1_000_000,
      }
      expect(Association.step(b, input).outputs).toEqual(Association.step(a, input).outputs)
      expect(Association.snapshot(b)).toEqual(Association.snapshot(a))
    }
  })

  it("property: random bytes decode to a CodecError or a well-formed message, never a throw", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          // JSON-ish text behind a correct length prefix, to reach the structure checks.
          fc.json().map((text) => {
            const json = new TextEncoder().encode(text)
            const out = new Uint8Array(4 + json.length)
            new DataView(out.buffer).setUint32(0, json.length)
            out.set(json, 4)
            return out
          }),
        ),
        (payload) => {
          const decoded = Replication.codec.decode(payload)
          if (Result.isFailure(decoded)) expect(decoded.failure._tag).toBe("CodecError")
          else expect(wellFormed(decoded.success)).toBe(true)
          return true
        },
      ),
      { numRuns: 500, seed: 0x6f91 },
    )
  })

  it("property: any truncation of a valid encoding is a CodecError", () => {
    fc.assert(
      fc.property(replicationMessage, fc.nat(), (message, cut) => {
        const encoded = encodeMessage(message)
        const decoded = Replication.codec.decode(encoded.subarray(0, cut % encoded.length))
        expect(Result.isFailure(decoded)).toBe(true)
        return true
      }),
      { numRuns: 300, seed: 0x6f92 },
    )
  })

  it("property: bit flips of a valid encoding give a CodecError or a well-formed message, and applying it never throws", () => {
    fc.assert(
      fc.property(
        replicationMessage,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })), {
          minLength: 1,
          maxLength: 4,
        }),
        (message, flips) => {
          const damaged = encodeMessage(message).slice()
          for (const [position, bit] of flips)
            damaged[position % damaged.length] =
              (damaged[position % damaged.length] ?? 0) ^ (1 << bit)
          const decoded = Replication.codec.decode(damaged)
          if (Result.isFailure(decoded)) {
            expect(decoded.failure._tag).toBe("CodecError")
            return true
          }
          expect(wellFormed(decoded.success)).toBe(true)
          const replicas = new Replication.Replicas(config(serverPort))
          replicas.apply({
            _tag: "Snapshot",
            seq: 0,
            epoch: 0,
            association: 0,
            snapshot: snapshots[2]!,
          })
          const result = replicas.apply(decoded.success)
          if (result !== undefined) expect(result._tag).toBe("ReplicaError")
          return true
        },
      ),
      { numRuns: 300, seed: 0x6f93 },
    )
  })
})

describe("Replicas.apply with inconsistent messages", () => {
  it("Inputs before any Snapshot is a ReplicaError", () => {
    const replicas = new Replication.Replicas(config(serverPort))
    const result = replicas.apply({
      _tag: "Inputs",
      seq: 1,
      epoch: 0,
      association: 7,
      inputs: [{ _tag: "TimerFired", timer: "SACK", nowMs: 1 }],
    })
    expect(result?._tag).toBe("ReplicaError")
    expect(result?.association).toBe(7)
    expect(replicas.applied).toBe(0)
  })

  it("Inputs whose packet bytes do not decode are a ReplicaError, and the copy is dropped", () => {
    const replicas = new Replication.Replicas(config(serverPort))
    expect(
      replicas.apply({
        _tag: "Snapshot",
        seq: 1,
        epoch: 0,
        association: 3,
        snapshot: snapshots[1]!,
      }),
    ).toBeUndefined()
    const result = replicas.apply({
      _tag: "Inputs",
      seq: 2,
      epoch: 0,
      association: 3,
      inputs: [
        {
          _tag: "Receive",
          host: "10.0.0.1",
          udpPort: 9001,
          bytes: new Uint8Array([1, 2, 3]),
          nowMs: 5,
        },
      ],
    })
    expect(result?._tag).toBe("ReplicaError")
    expect(replicas.states.has(3)).toBe(false)
  })

  const fields = Object.keys(snapshots[0]!) as Array<keyof Association.Snapshot>

  // The fields every snapshot of an ESTABLISHED association has (`Replication.snapshotProblem`
  // checks them); the others are optional (undefined at times, or added by later versions).
  const required: ReadonlyArray<string> = [
    "version",
    "rng",
    "name",
    "localPort",
    "peerPort",
    "myTag",
    "peerTag",
    "myInitialTsn",
    "peerInitialTsn",
    "outboundStreams",
    "inboundStreams",
    "paths",
    "primary",
    "retransmitPath",
    "peerRwnd",
    "nextTsn",
    "lastCumAck",
    "outstanding",
    "flightBytes",
    "retransmitCount",
    "fastRecovery",
    "fastRecoveryExit",
    "queue",
    "queuedBytes",
    "bufferedBytes",
    "ssnOut",
    "tracker",
    "reassembly",
    "sackNow",
    "packetsSinceSack",
    "lastDataPath",
    "errorCount",
    "initRetransmits",
    "cookieSecrets",
    "resynchronizing",
    "timers",
  ]

  it.each(fields)("a Snapshot without its %s field is a ReplicaError, never a throw", (field) => {
    const damaged: Record<string, unknown> = { ...snapshots[3]! }
    delete damaged[field]
    const message: Replication.Message = {
      _tag: "Snapshot",
      seq: 1,
      epoch: 0,
      association: 1,
      snapshot: damaged as unknown as Association.Snapshot,
    }
    const replicas = new Replication.Replicas(config(serverPort))
    const result = replicas.apply(message)
    // Through the codec too: `undefined` fields vanish on the way, so the same rule holds.
    const decoded = Replication.codec.decode(encodeMessage(message))
    if (!required.includes(field)) {
      // Optional: a copy without it is either fine or refused, never a throw.
      if (result !== undefined) expect(result._tag).toBe("ReplicaError")
      return
    }
    expect(result?._tag).toBe("ReplicaError")
    expect(replicas.states.has(1)).toBe(false)
    expect(replicas.applied).toBe(0)
    expect(Result.isFailure(decoded) && decoded.failure._tag).toBe("CodecError")
  })

  it("property: Snapshots with fields of the wrong type, then Inputs, give ReplicaErrors, never a throw", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...fields),
        fc.oneof(
          fc.constant(null),
          fc.string(),
          fc.integer(),
          fc.boolean(),
          fc.constant([]),
          fc.constant({}),
          fc.constant([{}]),
        ),
        fc.array(wireInput, { maxLength: 3 }),
        (field, value, inputs) => {
          const replicas = new Replication.Replicas(config(serverPort))
          const damaged = { ...snapshots[3]!, [field]: value } as unknown as Association.Snapshot
          const first = replicas.apply({
            _tag: "Snapshot",
            seq: 1,
            epoch: 0,
            association: 1,
            snapshot: damaged,
          })
          if (first !== undefined) expect(first._tag).toBe("ReplicaError")
          const second = replicas.apply({
            _tag: "Inputs",
            seq: 2,
            epoch: 0,
            association: 1,
            inputs,
          })
          if (second !== undefined) expect(second._tag).toBe("ReplicaError")
          return true
        },
      ),
      { numRuns: 300, seed: 0x6f94 },
    )
  })
})
