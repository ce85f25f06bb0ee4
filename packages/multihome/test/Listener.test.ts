import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as Association from "../src/Association.ts"
import type * as Chunk from "../src/Chunk.ts"
import * as Listener from "../src/Listener.ts"
import * as Packet from "../src/Packet.ts"
import { usrsctpInitHex } from "./fixtures.ts"

const config: Association.Config = {
  ...Association.defaultConfig,
  localPort: 7,
  localAddresses: ["127.0.0.2", "127.0.0.3"],
}
const from = { host: "127.0.0.1", udpPort: 9899 }

const decode = (bytes: Uint8Array): Packet.Packet => {
  const result = Packet.decode(bytes)
  if (!Result.isSuccess(result)) throw new Error("bad packet")
  return result.success
}
const wire = (packet: Packet.Packet) => decode(Packet.encode(packet))
const hex = (text: string) => Uint8Array.from(text.match(/../g)!.map((b) => Number.parseInt(b, 16)))

const receive = (listener: Listener.Listener, packet: Packet.Packet, nowMs = 0) =>
  Listener.onUnknownPacket(listener, { _tag: "Receive", from, message: wire(packet), nowMs })

const transmitted = (outcome: Listener.Outcome) =>
  outcome.outputs.flatMap((o) => (o._tag === "Send" ? [o] : []))
const events = (outputs: ReadonlyArray<Association.Output>) =>
  outputs.flatMap((o) => (o._tag === "Emit" ? [o.event] : []))

const peerInit: Chunk.Init = {
  _tag: "Init",
  initiateTag: 0xabcdef01,
  advertisedReceiverWindowCredit: 50_000,
  outboundStreams: 4,
  inboundStreams: 6,
  initialTsn: 77,
  parameters: [{ _tag: "Ipv4Address", address: new Uint8Array([127, 0, 0, 9]) }],
}

const initAckFor = (listener: Listener.Listener, nowMs = 0) => {
  const outcome = receive(
    listener,
    { sourcePort: 5000, destinationPort: 7, verificationTag: 0, chunks: [peerInit] },
    nowMs,
  )
  return transmitted(outcome)[0]!.message.chunks[0] as Chunk.InitAck
}
const cookieOf = (ack: Chunk.InitAck) =>
  (ack.parameters.find((p) => p._tag === "StateCookie") as Chunk.StateCookie).cookie

describe("Listener", () => {
  it("answers usrsctp's INIT with a stateless INIT ACK reporting its skip-and-report parameters", () => {
    const listener = Listener.makeListener(config, 1)
    const init = decode(hex(usrsctpInitHex))
    const outcome = Listener.onUnknownPacket(listener, {
      _tag: "Receive",
      from,
      message: init,
      nowMs: 0,
    })
    expect(outcome.association).toBeUndefined()
    const [reply] = transmitted(outcome)
    expect(reply!.to).toEqual(from)
    expect(reply!.message.verificationTag).toBe(0x528027b7)
    expect(reply!.message.destinationPort).toBe(58797)
    expect(reply!.message.sourcePort).toBe(7)
    const ack = reply!.message.chunks[0] as Chunk.InitAck
    expect(ack._tag).toBe("InitAck")
    expect(ack.initiateTag).not.toBe(0)
    expect(
      ack.parameters
        .filter((p) => p._tag === "Ipv4Address")
        .map((p) => [...(p as Chunk.Ipv4Address).address]),
    ).toEqual([
      [127, 0, 0, 2],
      [127, 0, 0, 3],
    ])
    // Forward-TSN-Supported (0xC000) is understood and offered back (RFC 3758); the 10xx
    // ones (ECN, Supported Extensions, AUTH) are skipped silently: support declined.
    expect(ack.parameters.filter((p) => p._tag === "UnrecognizedParameter")).toHaveLength(0)
    expect(ack.parameters).toContainEqual({ _tag: "ForwardTsnSupported" })
    expect(cookieOf(ack).length).toBeGreaterThan(32)
    // The encoded INIT ACK decodes (parameter lengths and padding right).
    expect(wire(reply!.message).chunks[0]).toMatchObject({ _tag: "InitAck" })
  })

  it("creates the association on a valid COOKIE ECHO, processing bundled DATA", () => {
    const listener = Listener.makeListener(config, 2)
    const ack = initAckFor(listener)
    const outcome = receive(
      listener,
      {
        sourcePort: 5000,
        destinationPort: 7,
        verificationTag: ack.initiateTag,
        chunks: [
          { _tag: "CookieEcho", cookie: cookieOf(ack) },
          {
            _tag: "Data",
            immediate: false,
            unordered: false,
            beginning: true,
            ending: true,
            tsn: 77,
            streamIdentifier: 1,
            streamSequenceNumber: 0,
            payloadProtocolIdentifier: 9,
            userData: new Uint8Array([5, 6]),
          },
        ],
      },
      100,
    )
    const state = outcome.association!
    expect(state.name).toBe("Established")
    expect(Association.myTag(state)).toBe(ack.initiateTag)
    expect(Association.peerTag(state)).toBe(peerInit.initiateTag)
    expect(Association.peerHosts(state)).toEqual(["127.0.0.1", "127.0.0.9"])
    expect(events(outcome.outputs)).toContainEqual({
      _tag: "CommUp",
      peerAddresses: ["127.0.0.1", "127.0.0.9"],
      inboundStreams: 4,
      outboundStreams: 6,
    })
    expect(events(outcome.outputs)).toContainEqual({
      _tag: "Message",
      stream: 1,
      ppid: 9,
      unordered: false,
      data: new Uint8Array([5, 6]),
    })
    const first = transmitted(outcome)[0]!
    expect(first.message.verificationTag).toBe(peerInit.initiateTag)
    expect(first.message.chunks[0]!._tag).toBe("CookieAck")
    // A retransmitted COOKIE ECHO (our COOKIE ACK lost) reaches the association: case D.
    const again = Association.step(state, {
      _tag: "Receive",
      from,
      nowMs: 200,
      message: wire({
        sourcePort: 5000,
        destinationPort: 7,
        verificationTag: ack.initiateTag,
        chunks: [{ _tag: "CookieEcho", cookie: cookieOf(ack) }],
      }),
    }).outputs
    expect(
      again.flatMap((o) => (o._tag === "Send" ? o.message.chunks.map((c) => c._tag) : [])),
    ).toContain("CookieAck")
  })

  it("drops a forged cookie and a cookie under the wrong tag", () => {
    const listener = Listener.makeListener(config, 3)
    const ack = initAckFor(listener)
    const forged = cookieOf(ack).slice()
    forged[10]! ^= 1
    const bad = receive(listener, {
      sourcePort: 5000,
      destinationPort: 7,
      verificationTag: ack.initiateTag,
      chunks: [{ _tag: "CookieEcho", cookie: forged }],
    })
    expect(bad.association).toBeUndefined()
    expect(events(bad.outputs)).toEqual([{ _tag: "Dropped", reason: "InvalidCookie" }])
    const wrongTag = receive(listener, {
      sourcePort: 5000,
      destinationPort: 7,
      verificationTag: 1234,
      chunks: [{ _tag: "CookieEcho", cookie: cookieOf(ack) }],
    })
    expect(wrongTag.association).toBeUndefined()
    expect(events(wrongTag.outputs)).toEqual([{ _tag: "Dropped", reason: "CookieTagMismatch" }])
  })

  it("answers a stale cookie with a Stale Cookie ERROR under the peer's tag", () => {
    const listener = Listener.makeListener(config, 4)
    const ack = initAckFor(listener)
    const outcome = receive(
      listener,
      {
        sourcePort: 5000,
        destinationPort: 7,
        verificationTag: ack.initiateTag,
        chunks: [{ _tag: "CookieEcho", cookie: cookieOf(ack) }],
      },
      60_500,
    )
    const [reply] = transmitted(outcome)
    expect(reply!.message.verificationTag).toBe(peerInit.initiateTag)
    expect(reply!.message.chunks[0]).toEqual({
      _tag: "OperationError",
      causes: [{ _tag: "StaleCookie", stalenessUs: 500_000 }],
    })
  })

  it("rotates its secret, keeping the previous one valid", () => {
    const listener = Listener.makeListener(config, 5)
    const ack = initAckFor(listener, 0)
    initAckFor(listener, 61_000) // rotation
    const outcome = receive(
      listener,
      {
        sourcePort: 5000,
        destinationPort: 7,
        verificationTag: ack.initiateTag,
        chunks: [{ _tag: "CookieEcho", cookie: cookieOf(ack) }],
      },
      30_000,
    )
    expect(outcome.association).toBeDefined()
  })

  it("refuses an INIT with a host name with an ABORT, and discards one with a zero tag (§3.3.2)", () => {
    const listener = Listener.makeListener(config, 6)
    const hostName = receive(listener, {
      sourcePort: 5000,
      destinationPort: 7,
      verificationTag: 0,
      chunks: [
        {
          ...peerInit,
          parameters: [{ _tag: "HostNameAddress", hostName: new TextEncoder().encode("peer\0") }],
        },
      ],
    })
    const abort = transmitted(hostName)[0]!.message.chunks[0] as Chunk.Abort
    expect(abort.causes[0]!._tag).toBe("UnresolvableAddress")
    const zero = receive(listener, {
      sourcePort: 5000,
      destinationPort: 7,
      verificationTag: 0,
      chunks: [{ ...peerInit, initiateTag: 0 }],
    })
    expect(transmitted(zero)).toEqual([])
    const noStreams = receive(listener, {
      sourcePort: 5000,
      destinationPort: 7,
      verificationTag: 0,
      chunks: [{ ...peerInit, outboundStreams: 0 }],
    })
    expect((transmitted(noStreams)[0]!.message.chunks[0] as Chunk.Abort).causes).toEqual([
      { _tag: "InvalidMandatoryParameter" },
    ])
  })

  it("applies the out-of-the-blue rules (§8.4)", () => {
    const listener = Listener.makeListener(config, 7)
    const base = { sourcePort: 5000, destinationPort: 7, verificationTag: 0x55 }
    expect(
      transmitted(
        receive(listener, { ...base, chunks: [{ _tag: "Abort", reflected: false, causes: [] }] }),
      ),
    ).toEqual([])
    expect(
      transmitted(
        receive(listener, { ...base, chunks: [{ _tag: "ShutdownComplete", reflected: false }] }),
      ),
    ).toEqual([])
    expect(transmitted(receive(listener, { ...base, chunks: [{ _tag: "CookieAck" }] }))).toEqual([])
    const shutdownAck = transmitted(
      receive(listener, { ...base, chunks: [{ _tag: "ShutdownAck" }] }),
    )[0]!
    expect(shutdownAck.message.chunks).toEqual([{ _tag: "ShutdownComplete", reflected: true }])
    expect(shutdownAck.message.verificationTag).toBe(0x55)
    const other = transmitted(
      receive(listener, { ...base, chunks: [{ _tag: "Heartbeat", info: new Uint8Array([1]) }] }),
    )[0]!
    expect(other.message.chunks).toEqual([{ _tag: "Abort", reflected: true, causes: [] }])
    expect(other.message.verificationTag).toBe(0x55)
  })

  it("drops a packet for another port", () => {
    const listener = Listener.makeListener(config, 8)
    const outcome = receive(listener, {
      sourcePort: 5000,
      destinationPort: 8,
      verificationTag: 0,
      chunks: [peerInit],
    })
    expect(events(outcome.outputs)).toEqual([{ _tag: "Dropped", reason: "PortMismatch" }])
  })
})
