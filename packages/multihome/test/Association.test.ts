import { describe, expect, it } from "@effect/vitest"
import { Machine } from "@understudy/machine"
import { Result } from "effect"
import * as Association from "../src/Association.ts"
import type * as Chunk from "../src/Chunk.ts"
import { encodeHeartbeatInfo } from "../src/internal/association-support.ts"
import * as Packet from "../src/Packet.ts"

const config: Association.Config = {
  ...Association.defaultConfig,
  localPort: 4000,
  localAddresses: ["192.0.2.10", "2001:db8::10"],
}
const peer = { host: "192.0.2.20", udpPort: 9899 }
const peerTagValue = 0x11223344
const peerInitialTsn = 1000

type Out = ReadonlyArray<Association.Output>

const transmits = (outputs: Out) =>
  outputs.filter((o): o is Extract<Association.Output, { _tag: "Send" }> => o._tag === "Send")
const chunksOf = (outputs: Out): Array<Chunk.Chunk> =>
  transmits(outputs).flatMap((t) => [...t.message.chunks])
const events = (outputs: Out): Array<Association.Event> =>
  outputs.flatMap((o) => (o._tag === "Emit" ? [o.event] : []))
const timersSet = (outputs: Out): Array<string> =>
  outputs.flatMap((o) => (o._tag === "SetTimer" ? [o.timer] : []))
const find = <T extends Chunk.Chunk["_tag"]>(outputs: Out, tag: T) =>
  chunksOf(outputs).find((c): c is Extract<Chunk.Chunk, { _tag: T }> => c._tag === tag)

/** Round-trips through the codec, as the wire would. */
const wire = (packet: Packet.Packet): Packet.Packet => {
  const decoded = Packet.decode(Packet.encode(packet))
  if (!Result.isSuccess(decoded)) throw new Error("bad packet")
  return decoded.success
}

const receive = (
  state: Association.State,
  chunks: ReadonlyArray<Chunk.Chunk>,
  nowMs: number,
  tag = state.myTag,
  from = peer,
): Out =>
  Association.step(state, {
    _tag: "Receive",
    from,
    nowMs,
    message: wire({ sourcePort: 5000, destinationPort: 4000, verificationTag: tag, chunks }),
  }).outputs

const fire = (state: Association.State, timer: string, nowMs: number): Out =>
  Association.step(state, { _tag: "TimerFired", timer, nowMs }).outputs

const command = (state: Association.State, cmd: Association.Command, nowMs: number): Out =>
  Association.step(state, { _tag: "Command", command: cmd, nowMs }).outputs

const initAck = (parameters: ReadonlyArray<Chunk.Parameter> = []): Chunk.InitAck => ({
  _tag: "InitAck",
  initiateTag: peerTagValue,
  advertisedReceiverWindowCredit: 100_000,
  outboundStreams: 5,
  inboundStreams: 8,
  initialTsn: peerInitialTsn,
  parameters: [{ _tag: "StateCookie", cookie: new Uint8Array([1, 2, 3, 4, 5]) }, ...parameters],
})

const established = (overrides: Partial<Association.Config> = {}) => {
  const { state } = Association.connect(
    { ...config, ...overrides },
    { peer, peerPort: 5000, seed: 7, nowMs: 0 },
  )
  receive(state, [initAck()], 10, state.myTag)
  const out = receive(state, [{ _tag: "CookieAck" }], 20)
  expect(state.name).toBe("Established")
  return { state, out }
}

const data = (tsn: number, overrides: Partial<Chunk.Data> = {}): Chunk.Data => ({
  _tag: "Data",
  immediate: false,
  unordered: false,
  beginning: true,
  ending: true,
  tsn,
  streamIdentifier: 0,
  streamSequenceNumber: tsn - peerInitialTsn,
  payloadProtocolIdentifier: 51,
  userData: new Uint8Array([tsn & 0xff, 1, 2]),
  ...overrides,
})

describe("Association on the machine contract", () => {
  it("is a Machine of @understudy/machine, stepped in place: Machine.stepAll runs its handshake", () => {
    const machine: Machine.Machine<
      Association.State,
      Packet.Packet,
      Association.Command,
      Association.Event,
      Association.PeerAddress
    > = {
      init: (context) =>
        Association.connect(config, { peer, peerPort: 5000, seed: 7, nowMs: context.nowMs }),
      step: Association.step,
    }
    const started = machine.init({ self: "client", peers: [], nowMs: 0 })
    const packet = (chunks: ReadonlyArray<Chunk.Chunk>) =>
      wire({
        sourcePort: 5000,
        destinationPort: 4000,
        verificationTag: started.state.myTag,
        chunks,
      })
    const inputs: ReadonlyArray<Association.Input> = [
      { _tag: "Receive", from: peer, message: packet([initAck()]), nowMs: 10 },
      { _tag: "Receive", from: peer, message: packet([{ _tag: "CookieAck" }]), nowMs: 20 },
    ]
    // The contract's own synchronous driver runs it.
    const { state, outputs } = Machine.stepAll(machine, started.state, inputs)
    // The in-place variant: the state it returns is the one it was given.
    expect(state).toBe(started.state)
    expect(state.name).toBe("Established")
    expect(Machine.events(outputs).map((event) => event._tag)).toContain("CommUp")
    // COOKIE ECHO to the peer's address, its T1-cookie counted from the step's time.
    expect(find(outputs, "CookieEcho")).toBeDefined()
    expect(transmits(outputs)[0]!.to).toEqual(peer)
    expect(outputs).toContainEqual({ _tag: "SetTimer", timer: "T1-cookie", afterMs: 1000 })
    expect(outputs).toContainEqual({ _tag: "CancelTimer", timer: "T1-cookie" })
  })
})

describe("Association handshake (initiator)", () => {
  it("sends INIT with our addresses, tag 0 and a T1-init timer", () => {
    const { state, outputs } = Association.connect(config, {
      peer,
      peerPort: 5000,
      seed: 1,
      nowMs: 0,
    })
    const [packet] = transmits(outputs)
    expect(packet!.message.verificationTag).toBe(0)
    expect(packet!.to).toEqual(peer)
    const init = packet!.message.chunks[0] as Chunk.Init
    expect(init._tag).toBe("Init")
    expect(init.initiateTag).toBe(state.myTag)
    expect(init.initiateTag).not.toBe(0)
    expect(init.outboundStreams).toBe(10)
    expect(init.inboundStreams).toBe(65535)
    expect(init.parameters.map((p) => p._tag)).toEqual([
      "Ipv4Address",
      "Ipv6Address",
      "SupportedAddressTypes",
      "ForwardTsnSupported",
      "Random",
      "ChunkList",
      "HmacAlgo",
      "SupportedExtensions",
    ])
    expect(outputs).toContainEqual({ _tag: "SetTimer", timer: "T1-init", afterMs: 1000 })
    expect(state.name).toBe("CookieWait")
  })

  it("is deterministic in its seed", () => {
    const a = Association.connect(config, { peer, peerPort: 5000, seed: 42, nowMs: 0 })
    const b = Association.connect(config, { peer, peerPort: 5000, seed: 42, nowMs: 0 })
    const c = Association.connect(config, { peer, peerPort: 5000, seed: 43, nowMs: 0 })
    expect(a.state.myTag).toBe(b.state.myTag)
    expect(a.state.myInitialTsn).toBe(b.state.myInitialTsn)
    expect(a.state.myTag).not.toBe(c.state.myTag)
  })

  it("backs T1-init off exponentially", () => {
    const { state } = Association.connect(config, { peer, peerPort: 5000, seed: 1, nowMs: 0 })
    const first = fire(state, "T1-init", 1000)
    expect(find(first, "Init")).toBeDefined()
    expect(first).toContainEqual({ _tag: "SetTimer", timer: "T1-init", afterMs: 3000 - 1000 })
    const second = fire(state, "T1-init", 3000)
    expect(second).toContainEqual({ _tag: "SetTimer", timer: "T1-init", afterMs: 7000 - 3000 })
  })

  it("ignores a timer that is not armed", () => {
    const { state } = Association.connect(config, { peer, peerPort: 5000, seed: 1, nowMs: 0 })
    expect(events(fire(state, "T3-rtx:192.0.2.20", 5000))).toEqual([
      { _tag: "Dropped", reason: "StaleTimer" },
    ])
    expect(events(fire(state, "T1-init", 500))).toEqual([{ _tag: "Dropped", reason: "StaleTimer" }])
  })

  it("answers INIT ACK with COOKIE ECHO, reporting unrecognized parameters in a bundled ERROR", () => {
    const { state } = Association.connect(config, { peer, peerPort: 5000, seed: 1, nowMs: 0 })
    const out = receive(
      state,
      [
        initAck([
          { _tag: "UnknownParameter", type: 0xc123, value: new Uint8Array(0) },
          { _tag: "UnknownParameter", type: 0x8000, value: new Uint8Array(0) },
          { _tag: "Ipv4Address", address: new Uint8Array([192, 0, 2, 21]) },
        ]),
      ],
      10,
      state.myTag,
    )
    const [packet] = transmits(out)
    expect(packet!.message.verificationTag).toBe(peerTagValue)
    expect(packet!.message.chunks.map((c) => c._tag)).toEqual(["CookieEcho", "OperationError"])
    expect((packet!.message.chunks[0] as Chunk.CookieEcho).cookie).toEqual(
      new Uint8Array([1, 2, 3, 4, 5]),
    )
    const error = packet!.message.chunks[1] as Chunk.OperationError
    expect(error.causes[0]!._tag).toBe("UnrecognizedParameters")
    expect(out).toContainEqual({ _tag: "CancelTimer", timer: "T1-init" })
    expect(timersSet(out)).toContain("T1-cookie")
    expect(state.name).toBe("CookieEchoed")
    expect(Association.peerHosts(state)).toEqual(["192.0.2.20", "192.0.2.21"])
    expect(Association.info(state).outboundStreams).toBe(8)
    expect(Association.info(state).inboundStreams).toBe(5)
  })

  it("retransmits COOKIE ECHO on T1-cookie, then CommUp on COOKIE ACK with a HEARTBEAT to confirm the other address", () => {
    const { state } = Association.connect(config, { peer, peerPort: 5000, seed: 1, nowMs: 0 })
    receive(
      state,
      [initAck([{ _tag: "Ipv4Address", address: new Uint8Array([192, 0, 2, 21]) }])],
      10,
      state.myTag,
    )
    expect(find(fire(state, "T1-cookie", 1010), "CookieEcho")).toBeDefined()
    const out = receive(state, [{ _tag: "CookieAck" }], 1100)
    expect(events(out)[0]).toEqual({
      _tag: "CommUp",
      peerAddresses: ["192.0.2.20", "192.0.2.21"],
      inboundStreams: 5,
      outboundStreams: 8,
    })
    const heartbeat = transmits(out).find((t) => t.message.chunks[0]?._tag === "Heartbeat")
    expect(heartbeat!.to.host).toBe("192.0.2.21")
    expect(timersSet(out)).toEqual(expect.arrayContaining(["HB:192.0.2.20", "HB:192.0.2.21"]))
    // The echoed info confirms the path.
    const info = (heartbeat!.message.chunks[0] as Chunk.Heartbeat).info
    const ack = receive(state, [{ _tag: "HeartbeatAck", info }], 1150)
    expect(events(ack)).toContainEqual({
      _tag: "PathChange",
      host: "192.0.2.21",
      state: "Confirmed",
    })
    // A second copy does not match an outstanding HEARTBEAT.
    expect(events(receive(state, [{ _tag: "HeartbeatAck", info }], 1160))).toContainEqual({
      _tag: "Dropped",
      reason: "HeartbeatAckUnmatched",
    })
  })

  it("aborts on an INIT ACK with a Host Name Address", () => {
    const { state } = Association.connect(config, { peer, peerPort: 5000, seed: 1, nowMs: 0 })
    const out = receive(
      state,
      [initAck([{ _tag: "HostNameAddress", hostName: new TextEncoder().encode("x\0") }])],
      10,
      state.myTag,
    )
    const abort = find(out, "Abort")!
    expect(abort.causes[0]!._tag).toBe("UnresolvableAddress")
    expect(state.name).toBe("Closed")
  })

  it("restarts with a Cookie Preservative on a Stale Cookie error", () => {
    const { state } = Association.connect(config, { peer, peerPort: 5000, seed: 1, nowMs: 0 })
    receive(state, [initAck()], 10, state.myTag)
    const out = receive(
      state,
      [{ _tag: "OperationError", causes: [{ _tag: "StaleCookie", stalenessUs: 5000 }] }],
      20,
    )
    const init = find(out, "Init")!
    expect(init.parameters).toContainEqual({ _tag: "CookiePreservative", lifeSpanIncrementMs: 10 })
    expect(state.name).toBe("CookieWait")
  })
})

describe("Association DATA receive", () => {
  it("delays the SACK for one packet, SACKs every second packet at once", () => {
    const { state } = established()
    const first = receive(state, [data(1000)], 100)
    expect(events(first)).toContainEqual({
      _tag: "Message",
      stream: 0,
      ppid: 51,
      unordered: false,
      data: new Uint8Array([232, 1, 2]),
    })
    expect(find(first, "Sack")).toBeUndefined()
    expect(first).toContainEqual({ _tag: "SetTimer", timer: "SACK", afterMs: 300 - 100 })
    const second = receive(state, [data(1001)], 110)
    const sack = find(second, "Sack")!
    expect(sack.cumulativeTsnAck).toBe(1001)
    expect(sack.advertisedReceiverWindowCredit).toBe(config.receiveWindow)
    expect(second).toContainEqual({ _tag: "CancelTimer", timer: "SACK" })
  })

  it("sends the delayed SACK when its timer fires", () => {
    const { state } = established()
    receive(state, [data(1000)], 100)
    const out = fire(state, "SACK", 300)
    expect(find(out, "Sack")!.cumulativeTsnAck).toBe(1000)
  })

  it("SACKs at once with gap blocks on a gap and with duplicate TSNs on a duplicate", () => {
    const { state } = established()
    receive(state, [data(1000)], 100)
    const gap = receive(state, [data(1002), data(1003)], 110)
    const sack = find(gap, "Sack")!
    expect(sack.cumulativeTsnAck).toBe(1000)
    expect(sack.gapAckBlocks).toEqual([{ start: 2, end: 3 }])
    expect(events(gap).filter((e) => e._tag === "Message")).toHaveLength(0)
    const fill = receive(state, [data(1001)], 120)
    expect(events(fill).filter((e) => e._tag === "Message")).toHaveLength(3)
    const dup = receive(state, [data(1001)], 130)
    expect(find(dup, "Sack")!.duplicateTsns).toEqual([1001])
  })

  it("reports an invalid stream in an ERROR and still acknowledges the TSN", () => {
    const { state } = established()
    const out = receive(state, [data(1000, { streamIdentifier: 9 })], 100)
    expect(find(out, "OperationError")!.causes).toEqual([
      { _tag: "InvalidStreamIdentifier", streamIdentifier: 9 },
    ])
    expect(find(out, "Sack")!.cumulativeTsnAck).toBe(1000)
  })

  it("aborts on DATA without user data", () => {
    const { state } = established()
    const out = receive(state, [data(1000, { userData: new Uint8Array(0) })], 100)
    expect(find(out, "Abort")!.causes).toEqual([{ _tag: "NoUserData", tsn: 1000 }])
    expect(events(out)).toContainEqual({ _tag: "CommLost", reason: "NoUserData" })
    expect(state.name).toBe("Closed")
  })

  it("drops an ordered chunk whose SSN was delivered already, still acknowledging its TSN", () => {
    const { state } = established()
    receive(state, [data(1000)], 100)
    const out = receive(state, [data(1001, { streamSequenceNumber: 0 })], 110)
    expect(events(out)).toContainEqual({ _tag: "Dropped", reason: "StaleSequence" })
    expect(events(out).filter((e) => e._tag === "Message")).toHaveLength(0)
    expect(find(out, "Sack")!.cumulativeTsnAck).toBe(1001)
    expect(state.name).toBe("Established")
  })

  it("aborts with Protocol Violation on fragments that contradict each other (§6.9)", () => {
    const { state } = established()
    receive(state, [data(1000, { ending: false })], 100)
    // A second B fragment for the same ordered message.
    const out = receive(state, [data(1001, { streamSequenceNumber: 0, ending: false })], 110)
    const abort = find(out, "Abort")!
    expect(abort.causes.map((c) => c._tag)).toEqual(["ProtocolViolation"])
    expect(events(out)).toContainEqual({ _tag: "CommLost", reason: "ProtocolViolation" })
    expect(state.name).toBe("Closed")
  })

  it("reassembles fragments and delivers unordered messages at once", () => {
    const { state } = established()
    const a = receive(state, [data(1000, { ending: false, userData: new Uint8Array([1]) })], 100)
    expect(events(a).filter((e) => e._tag === "Message")).toHaveLength(0)
    const b = receive(
      state,
      [
        data(1001, { beginning: false, streamSequenceNumber: 0, userData: new Uint8Array([2]) }),
        data(1002, { unordered: true, streamIdentifier: 1, userData: new Uint8Array([9]) }),
      ],
      110,
    )
    expect(events(b).filter((e) => e._tag === "Message")).toEqual([
      { _tag: "Message", stream: 0, ppid: 51, unordered: false, data: new Uint8Array([1, 2]) },
      { _tag: "Message", stream: 1, ppid: 51, unordered: true, data: new Uint8Array([9]) },
    ])
  })
})

describe("Association FORWARD TSN receive (RFC 3758 §3.6)", () => {
  const withPrSctp = () => {
    const { state } = Association.connect(config, { peer, peerPort: 5000, seed: 7, nowMs: 0 })
    receive(state, [initAck([{ _tag: "ForwardTsnSupported" }])], 10, state.myTag)
    receive(state, [{ _tag: "CookieAck" }], 20)
    expect(state.forwardTsnSupported).toBe(true)
    return state
  }

  it("moves the cumulative TSN, skips the listed SSNs, delivers what waited, and SACKs at once", () => {
    const state = withPrSctp()
    receive(state, [data(1000)], 100)
    // TSN 1003 carries SSN 3 of stream 0; 1001–1002 (SSNs 1–2) are abandoned by the sender.
    const held = receive(state, [data(1003)], 110)
    expect(events(held).filter((e) => e._tag === "Message")).toHaveLength(0)
    const out = receive(
      state,
      [{ _tag: "ForwardTsn", newCumulativeTsn: 1002, streams: [{ stream: 0, ssn: 2 }] }],
      120,
    )
    expect(events(out).filter((e) => e._tag === "Message")).toEqual([
      { _tag: "Message", stream: 0, ppid: 51, unordered: false, data: new Uint8Array([235, 1, 2]) },
    ])
    const sack = find(out, "Sack")!
    expect(sack.cumulativeTsnAck).toBe(1003)
    expect(sack.gapAckBlocks).toEqual([])
  })

  it("answers an out-of-date FORWARD TSN with a SACK only", () => {
    const state = withPrSctp()
    receive(state, [data(1000), data(1001)], 100)
    const out = receive(state, [{ _tag: "ForwardTsn", newCumulativeTsn: 1000, streams: [] }], 110)
    expect(find(out, "Sack")!.cumulativeTsnAck).toBe(1001)
    expect(events(out).filter((e) => e._tag === "Message")).toHaveLength(0)
  })

  it("reports FORWARD TSN as an unrecognized chunk when PR-SCTP was not negotiated", () => {
    const { state } = established()
    const out = receive(state, [{ _tag: "ForwardTsn", newCumulativeTsn: 1005, streams: [] }], 100)
    expect(find(out, "OperationError")!.causes.map((c) => c._tag)).toEqual([
      "UnrecognizedChunkType",
    ])
    expect(Association.info(state).peerCumulativeTsn).toBe(999)
  })
})

describe("Association DATA send", () => {
  it("fragments to the MTU, assigns TSNs and SSNs, and limits the flight to cwnd", () => {
    const { state } = established()
    const out = command(
      state,
      { _tag: "Send", stream: 2, ppid: 7, data: new Uint8Array(3000), unordered: false },
      100,
    )
    const datas = chunksOf(out).filter((c): c is Chunk.Data => c._tag === "Data")
    expect(datas.map((d) => [d.beginning, d.ending])).toEqual([
      [true, false],
      [false, false],
      [false, true],
    ])
    expect(datas.map((d) => d.tsn)).toEqual([
      state.myInitialTsn,
      state.myInitialTsn + 1,
      state.myInitialTsn + 2,
    ])
    expect(new Set(datas.map((d) => d.streamSequenceNumber))).toEqual(new Set([0]))
    for (const t of transmits(out)) expect(Packet.size(t.message)).toBeLessThanOrEqual(config.mtu)
    expect(timersSet(out)).toContain("T3-rtx:192.0.2.20")
    const flight = Association.info(state).flightBytes
    expect(flight).toBe(3000)
    // cwnd (initial 3600 for mtu 1200... min(4·1200, max(2·1200, 4404)) = 4404) bounds the rest.
    command(
      state,
      { _tag: "Send", stream: 2, ppid: 7, data: new Uint8Array(3000), unordered: false },
      110,
    )
    expect(Association.info(state).flightBytes).toBeLessThanOrEqual(4404 + 1200)
    expect(Association.info(state).queuedBytes).toBeGreaterThan(0)
  })

  it("refuses a send beyond the buffer, on an invalid stream, or before ESTABLISHED", () => {
    const { state } = established({ sendBufferBytes: 1000 })
    expect(
      events(
        command(
          state,
          { _tag: "Send", stream: 0, ppid: 0, data: new Uint8Array(2000), unordered: false },
          1,
        ),
      ),
    ).toEqual([{ _tag: "SendFailed", reason: "WouldBlock", stream: 0, ppid: 0, bytes: 2000 }])
    expect(
      events(
        command(
          state,
          { _tag: "Send", stream: 8, ppid: 0, data: new Uint8Array(1), unordered: false },
          1,
        ),
      )[0],
    ).toMatchObject({ reason: "InvalidStream" })
    const fresh = Association.connect(config, { peer, peerPort: 5000, seed: 1, nowMs: 0 }).state
    expect(
      events(
        command(
          fresh,
          { _tag: "Send", stream: 0, ppid: 0, data: new Uint8Array(1), unordered: false },
          1,
        ),
      )[0],
    ).toMatchObject({ reason: "NotEstablished" })
  })

  it("processes SACKs: cumulative ack, RTT measurement, T3 stopped when all is acknowledged", () => {
    const { state } = established()
    command(
      state,
      { _tag: "Send", stream: 0, ppid: 0, data: new Uint8Array(100), unordered: false },
      100,
    )
    const tsn = state.myInitialTsn
    const out = receive(
      state,
      [
        {
          _tag: "Sack",
          cumulativeTsnAck: tsn,
          advertisedReceiverWindowCredit: 50_000,
          gapAckBlocks: [],
          duplicateTsns: [],
        },
      ],
      180,
    )
    expect(out).toContainEqual({ _tag: "CancelTimer", timer: "T3-rtx:192.0.2.20" })
    const info = Association.info(state)
    expect(info.flightBytes).toBe(0)
    expect(info.outstandingChunks).toBe(0)
    expect(info.paths[0]!.srttMs).toBe(80)
    expect(info.peerRwnd).toBe(50_000)
  })

  it("fast-retransmits after three miss indications", () => {
    const { state } = established()
    for (let i = 0; i < 4; i++) {
      command(
        state,
        { _tag: "Send", stream: 0, ppid: 0, data: new Uint8Array(1000).fill(i), unordered: false },
        100,
      )
    }
    const base = state.myInitialTsn
    const sack = (blockEnd: number): Chunk.Sack => ({
      _tag: "Sack",
      cumulativeTsnAck: base,
      advertisedReceiverWindowCredit: 100_000,
      gapAckBlocks: [{ start: 2, end: blockEnd }],
      duplicateTsns: [],
    })
    expect(chunksOf(receive(state, [sack(2)], 150)).filter((c) => c._tag === "Data")).toHaveLength(
      0,
    )
    command(
      state,
      { _tag: "Send", stream: 0, ppid: 0, data: new Uint8Array(1000), unordered: false },
      151,
    )
    command(
      state,
      { _tag: "Send", stream: 0, ppid: 0, data: new Uint8Array(1000), unordered: false },
      152,
    )
    receive(state, [sack(3)], 160)
    const third = receive(state, [sack(4)], 170)
    const retransmitted = chunksOf(third).filter((c): c is Chunk.Data => c._tag === "Data")
    expect(retransmitted.map((d) => d.tsn)).toContain(base + 1)
    expect(Association.info(state).paths[0]!.cwnd).toBe(4 * 1188) // §7.2.3: max(cwnd/2, 4·PMDCS), PMDCS = 1200 − 12
  })

  it("retransmits on T3-rtx with the RTO backed off and cwnd collapsed to one PMDCS", () => {
    const { state } = established()
    command(
      state,
      { _tag: "Send", stream: 0, ppid: 0, data: new Uint8Array(100), unordered: false },
      100,
    )
    const out = fire(state, "T3-rtx:192.0.2.20", 1100)
    const retransmitted = find(out, "Data")!
    expect(retransmitted.tsn).toBe(state.myInitialTsn)
    const info = Association.info(state)
    expect(info.paths[0]!.rtoMs).toBe(2000)
    expect(info.paths[0]!.cwnd).toBe(1188) // 1·PMDCS = 1200 − 12 (§7.2.3)
    expect(info.errorCount).toBe(1)
    expect(out).toContainEqual({
      _tag: "SetTimer",
      timer: "T3-rtx:192.0.2.20",
      afterMs: 3100 - 1100,
    })
  })

  it("gives up after Association.Max.Retrans: ABORT and CommLost", () => {
    const { state } = established({ associationMaxRetrans: 2, pathMaxRetrans: 1 })
    command(
      state,
      { _tag: "Send", stream: 0, ppid: 0, data: new Uint8Array(100), unordered: false },
      100,
    )
    const outputs: Array<Association.Output> = []
    for (let i = 0; i < 10 && state.name !== "Closed"; i++) {
      const at = state.timers["T3-rtx:192.0.2.20"]!
      outputs.push(...fire(state, "T3-rtx:192.0.2.20", at))
    }
    expect(state.name).toBe("Closed")
    expect(find(outputs, "Abort")).toBeDefined()
    expect(events(outputs)).toContainEqual({ _tag: "CommLost", reason: "MaxRetransmissions" })
    expect(events(outputs)).toContainEqual({
      _tag: "PathChange",
      host: "192.0.2.20",
      state: "Unreachable",
    })
  })
})

describe("Association control chunks", () => {
  it("echoes a HEARTBEAT's info verbatim in HEARTBEAT ACK", () => {
    const { state } = established()
    const info = new Uint8Array([9, 8, 7, 6, 5])
    const out = receive(state, [{ _tag: "Heartbeat", info }], 100)
    expect(find(out, "HeartbeatAck")!.info).toEqual(info)
    expect(transmits(out)[0]!.to).toEqual(peer)
  })

  it("sends HEARTBEATs on idle paths and counts unanswered ones as errors", () => {
    const { state } = established({ heartbeatIntervalMs: 1000 })
    const at = state.timers["HB:192.0.2.20"]!
    // §8.3: interval + RTO ± 50% RTO.
    expect(at - 20).toBeGreaterThanOrEqual(1000 + 500)
    expect(at - 20).toBeLessThanOrEqual(1000 + 1500)
    const first = fire(state, "HB:192.0.2.20", at)
    expect(find(first, "Heartbeat")).toBeDefined()
    const next = state.timers["HB:192.0.2.20"]!
    fire(state, "HB:192.0.2.20", next)
    expect(Association.info(state).paths[0]!.errorCount).toBe(1)
    expect(Association.info(state).paths[0]!.rtoMs).toBe(2000)
  })

  it("rejects a HEARTBEAT ACK whose info we did not write", () => {
    const { state } = established()
    const forged = encodeHeartbeatInfo({ host: "192.0.2.20", nonce: 1, sentMs: 0 })
    expect(events(receive(state, [{ _tag: "HeartbeatAck", info: forged }], 100))).toContainEqual({
      _tag: "Dropped",
      reason: "HeartbeatAckUnmatched",
    })
  })

  it("closes on ABORT, cancelling every timer", () => {
    const { state } = established()
    const out = receive(
      state,
      [
        {
          _tag: "Abort",
          reflected: false,
          causes: [{ _tag: "UserInitiatedAbort", reason: new Uint8Array() }],
        },
      ],
      100,
    )
    expect(events(out)).toContainEqual({ _tag: "CommLost", reason: "Abort: UserInitiatedAbort" })
    expect(events(out)).toContainEqual({ _tag: "Closed" })
    expect(out.filter((o) => o._tag === "CancelTimer").length).toBeGreaterThan(0)
    expect(Object.keys(state.timers)).toEqual([])
  })

  it("accepts an ABORT with the T bit and the peer's tag", () => {
    const { state } = established()
    receive(state, [{ _tag: "Abort", reflected: true, causes: [] }], 100, peerTagValue)
    expect(state.name).toBe("Closed")
  })

  it("drops a packet with a wrong verification tag", () => {
    const { state } = established()
    expect(events(receive(state, [data(1000)], 100, 0xdead))).toEqual([
      { _tag: "Dropped", reason: "TagMismatch" },
    ])
  })

  it("handles unknown chunk types by their upper two bits", () => {
    const { state } = established()
    const unknown = (type: number): Chunk.UnknownChunk => ({
      _tag: "UnknownChunk",
      type,
      flags: 0,
      value: new Uint8Array([1, 2]),
    })
    // 00: stop, no report.
    let out = receive(state, [unknown(0x3f), data(1000)], 100)
    expect(find(out, "OperationError")).toBeUndefined()
    expect(events(out).filter((e) => e._tag === "Message")).toHaveLength(0)
    // 01: stop and report.
    out = receive(state, [unknown(0x7f), data(1000)], 110)
    expect(find(out, "OperationError")!.causes[0]!._tag).toBe("UnrecognizedChunkType")
    expect(events(out).filter((e) => e._tag === "Message")).toHaveLength(0)
    // 10: skip.
    out = receive(state, [unknown(0xbf), data(1000)], 120)
    expect(find(out, "OperationError")).toBeUndefined()
    expect(events(out).filter((e) => e._tag === "Message")).toHaveLength(1)
    // 11: skip and report.
    out = receive(state, [unknown(0xff), data(1001)], 130)
    expect(find(out, "OperationError")!.causes[0]).toMatchObject({ _tag: "UnrecognizedChunkType" })
    expect(events(out).filter((e) => e._tag === "Message")).toHaveLength(1)
  })

  it("reports a peer ERROR as an event", () => {
    const { state } = established()
    const out = receive(
      state,
      [{ _tag: "OperationError", causes: [{ _tag: "OutOfResource" }] }],
      100,
    )
    expect(events(out)).toEqual([{ _tag: "PeerError", causes: [{ _tag: "OutOfResource" }] }])
  })
})

describe("Association shutdown", () => {
  it("initiates: SHUTDOWN after the outstanding data, T2 retransmission, SHUTDOWN COMPLETE on SHUTDOWN ACK", () => {
    const { state } = established()
    command(
      state,
      { _tag: "Send", stream: 0, ppid: 0, data: new Uint8Array(10), unordered: false },
      100,
    )
    const pending = command(state, { _tag: "Shutdown" }, 101)
    expect(find(pending, "Shutdown")).toBeUndefined()
    expect(state.name).toBe("ShutdownPending")
    const acked = receive(
      state,
      [
        {
          _tag: "Sack",
          cumulativeTsnAck: state.myInitialTsn,
          advertisedReceiverWindowCredit: 100_000,
          gapAckBlocks: [],
          duplicateTsns: [],
        },
      ],
      150,
    )
    expect(find(acked, "Shutdown")!.cumulativeTsnAck).toBe(peerInitialTsn - 1)
    expect(timersSet(acked)).toEqual(expect.arrayContaining(["T2-shutdown", "T5-shutdown-guard"]))
    expect(state.name).toBe("ShutdownSent")
    expect(find(fire(state, "T2-shutdown", state.timers["T2-shutdown"]!), "Shutdown")).toBeDefined()
    const done = receive(state, [{ _tag: "ShutdownAck" }], 3000)
    const complete = transmits(done)[0]!
    expect(complete.message.chunks).toEqual([{ _tag: "ShutdownComplete", reflected: false }])
    expect(complete.message.verificationTag).toBe(peerTagValue)
    expect(events(done)).toEqual([{ _tag: "ShutdownComplete" }, { _tag: "Closed" }])
  })

  it("responds: SHUTDOWN → SHUTDOWN ACK, SHUTDOWN COMPLETE closes", () => {
    const { state } = established()
    const out = receive(
      state,
      [{ _tag: "Shutdown", cumulativeTsnAck: state.myInitialTsn - 1 }],
      100,
    )
    expect(find(out, "ShutdownAck")).toBeDefined()
    expect(state.name).toBe("ShutdownAckSent")
    const done = receive(state, [{ _tag: "ShutdownComplete", reflected: false }], 150)
    expect(events(done)).toContainEqual({ _tag: "ShutdownComplete" })
    expect(state.name).toBe("Closed")
  })

  it("aborts when the shutdown guard timer expires", () => {
    const { state } = established()
    command(state, { _tag: "Shutdown" }, 100)
    const out = fire(state, "T5-shutdown-guard", state.timers["T5-shutdown-guard"]!)
    expect(find(out, "Abort")).toBeDefined()
    expect(state.name).toBe("Closed")
  })

  it("answers SHUTDOWN ACK in COOKIE-WAIT as out of the blue (§8.5.1 E)", () => {
    const { state } = Association.connect(config, { peer, peerPort: 5000, seed: 1, nowMs: 0 })
    const out = receive(state, [{ _tag: "ShutdownAck" }], 10, state.myTag)
    expect(transmits(out)[0]!.message.chunks).toEqual([
      { _tag: "ShutdownComplete", reflected: true },
    ])
  })
})

describe("Association paths and commands", () => {
  it("sets the primary path on request", () => {
    const { state } = Association.connect(config, { peer, peerPort: 5000, seed: 1, nowMs: 0 })
    receive(
      state,
      [initAck([{ _tag: "Ipv4Address", address: new Uint8Array([192, 0, 2, 21]) }])],
      10,
      state.myTag,
    )
    receive(state, [{ _tag: "CookieAck" }], 20)
    const out = command(state, { _tag: "SetPrimary", host: "192.0.2.21" }, 30)
    expect(events(out)).toEqual([{ _tag: "PathChange", host: "192.0.2.21", state: "Primary" }])
    expect(Association.info(state).primary).toBe("192.0.2.21")
    const hb = command(state, { _tag: "RequestHeartbeat", host: "192.0.2.21" }, 40)
    expect(transmits(hb)[0]!.to.host).toBe("192.0.2.21")
  })

  it("learns a path's UDP port from the packets it receives (RFC 6951)", () => {
    const { state } = established()
    receive(state, [{ _tag: "Heartbeat", info: new Uint8Array([1]) }], 100, state.myTag, {
      host: peer.host,
      udpPort: 7777,
    })
    expect(Association.info(state).paths[0]!.udpPort).toBe(7777)
  })
})

describe("Association failover details", () => {
  const twoPaths = () => {
    const { state } = Association.connect(config, { peer, peerPort: 5000, seed: 1, nowMs: 0 })
    receive(
      state,
      [initAck([{ _tag: "Ipv4Address", address: new Uint8Array([192, 0, 2, 21]) }])],
      10,
      state.myTag,
    )
    return state
  }

  it("retransmits COOKIE ECHO round robin, bundled with a HEARTBEAT to an unconfirmed address (§5.4)", () => {
    const state = twoPaths()
    const first = fire(state, "T1-cookie", state.timers["T1-cookie"]!)
    const [packet] = transmits(first)
    expect(packet!.to.host).toBe("192.0.2.21")
    expect(packet!.message.chunks.map((c) => c._tag)).toEqual(["CookieEcho", "Heartbeat"])
    const second = fire(state, "T1-cookie", state.timers["T1-cookie"]!)
    expect(transmits(second)[0]!.to.host).toBe("192.0.2.20")
    expect(transmits(second)[0]!.message.chunks.map((c) => c._tag)).toEqual(["CookieEcho"])
  })

  it("after a T3-rtx on the primary, sends new data on a clean alternate and probes the primary every RTO", () => {
    const state = twoPaths()
    receive(state, [{ _tag: "CookieAck" }], 20)
    expect(Association.info(state).paths[1]!.confirmed).toBe(false)
    const info = Association.step(state, {
      _tag: "Command",
      command: { _tag: "RequestHeartbeat", host: "192.0.2.21" },
      nowMs: 22,
    }).outputs
    receive(state, [{ _tag: "HeartbeatAck", info: find(info, "Heartbeat")!.info }], 30)
    expect(Association.info(state).paths[1]!.confirmed).toBe(true)
    command(
      state,
      { _tag: "Send", stream: 0, ppid: 0, data: new Uint8Array(100), unordered: false },
      100,
    )
    const t3 = fire(state, "T3-rtx:192.0.2.20", state.timers["T3-rtx:192.0.2.20"]!)
    expect(
      transmits(t3).find((t) => t.message.chunks.some((c) => c._tag === "Data"))!.to.host,
    ).toBe("192.0.2.21")
    expect(state.timers["HB:192.0.2.20"]).toBeLessThanOrEqual(1100 + 2000)
    const next = command(
      state,
      { _tag: "Send", stream: 0, ppid: 0, data: new Uint8Array(100), unordered: false },
      1200,
    )
    expect(transmits(next)[0]!.to.host).toBe("192.0.2.21")
  })

  it("a replica that took over skips TSNs the peer acknowledges beyond what it sent", () => {
    const { state } = established()
    command(
      state,
      { _tag: "Send", stream: 0, ppid: 0, data: new Uint8Array(100), unordered: false },
      100,
    )
    const replica = Association.restore(config, Association.snapshot(state))
    // Outside a takeover such a SACK is a protocol violation: ABORT (§11.4).
    const beyond: Chunk.Sack = {
      _tag: "Sack",
      cumulativeTsnAck: state.myInitialTsn + 5,
      advertisedReceiverWindowCredit: 100_000,
      gapAckBlocks: [],
      duplicateTsns: [],
    }
    const violated = receive(state, [beyond], 150)
    expect(find(violated, "Abort")!.causes.map((c) => c._tag)).toEqual(["ProtocolViolation"])
    expect(state.name).toBe("Closed")
    Association.takeOver(replica, 200)
    receive(replica, [beyond], 250)
    const info = Association.info(replica)
    expect(info.outstandingChunks).toBe(0)
    expect(info.nextTsn).toBe(state.myInitialTsn + 6)
  })
})

describe("Association congestion control", () => {
  it("halves cwnd (not below 4·MTU) after the path was idle for RTOs (§7.2.1)", () => {
    const { state } = established()
    // Grow cwnd past 4·MTU with acknowledged full windows.
    let now = 100
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 8; i++) {
        command(
          state,
          { _tag: "Send", stream: 0, ppid: 0, data: new Uint8Array(1100), unordered: false },
          now,
        )
      }
      receive(
        state,
        [
          {
            _tag: "Sack",
            cumulativeTsnAck: state.nextTsn - 1,
            advertisedReceiverWindowCredit: 1_000_000,
            gapAckBlocks: [],
            duplicateTsns: [],
          },
        ],
        now + 10,
      )
      now += 20
    }
    for (let round = 0; round < 10 && Association.info(state).flightBytes > 0; round++) {
      receive(
        state,
        [
          {
            _tag: "Sack",
            cumulativeTsnAck: state.nextTsn - 1,
            advertisedReceiverWindowCredit: 1_000_000,
            gapAckBlocks: [],
            duplicateTsns: [],
          },
        ],
        now,
      )
      now += 1
    }
    expect(Association.info(state).flightBytes).toBe(0)
    const grown = Association.info(state).paths[0]!.cwnd
    expect(grown).toBeGreaterThan(4 * 1200)
    command(
      state,
      { _tag: "Send", stream: 0, ppid: 0, data: new Uint8Array(10), unordered: false },
      now + 1500,
    )
    expect(Association.info(state).paths[0]!.cwnd).toBe(Math.max(Math.floor(grown / 2), 4 * 1200))
  })
})
