import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as Association from "../src/Association.ts"
import type * as Chunk from "../src/Chunk.ts"
import * as Packet from "../src/Packet.ts"
import { established, Loopback } from "./associationHarness.ts"

const config = (localPort: number): Association.Config => ({
  ...Association.defaultConfig,
  localPort,
})

const wire = (packet: Packet.Packet): Packet.Packet => {
  const decoded = Packet.decode(Packet.encode(packet))
  if (!Result.isSuccess(decoded)) throw new Error("bad packet")
  return decoded.success
}

/** Delivers every Send in `outputs` to `to`, returning what it answered. */
const deliver = (
  to: Association.State,
  from: Association.PeerAddress,
  outputs: ReadonlyArray<Association.Output>,
  nowMs: number,
): Array<Association.Output> =>
  outputs.flatMap((o) =>
    o._tag === "Send"
      ? Association.step(to, { _tag: "Receive", from, message: wire(o.message), nowMs }).outputs
      : [],
  )

const chunkTags = (outputs: ReadonlyArray<Association.Output>) =>
  outputs.flatMap((o) => (o._tag === "Send" ? o.message.chunks.map((c) => c._tag) : []))
const events = (outputs: ReadonlyArray<Association.Output>) =>
  outputs.flatMap((o) => (o._tag === "Emit" ? [o.event] : []))

const hostA = { host: "10.1.0.1", udpPort: 1001 }
const hostB = { host: "10.1.0.2", udpPort: 1002 }

describe("Association §5.2 collisions", () => {
  it("simultaneous open: crossing INITs end in one association (§5.2.1, §5.2.4 case D)", () => {
    const a = Association.connect(config(4000), { peer: hostB, peerPort: 5000, seed: 1, nowMs: 0 })
    const b = Association.connect(config(5000), { peer: hostA, peerPort: 4000, seed: 2, nowMs: 0 })
    // Each INIT reaches the other side in COOKIE-WAIT: INIT ACK with the unchanged tag.
    const ackFromB = deliver(b.state, hostA, a.outputs, 5)
    const ackFromA = deliver(a.state, hostB, b.outputs, 5)
    const initAckB = ackFromB.find((o) => o._tag === "Send")!
    expect(
      initAckB._tag === "Send" && (initAckB.message.chunks[0] as Chunk.InitAck).initiateTag,
    ).toBe(b.state.myTag)
    // Each side takes the other's INIT ACK and echoes its cookie.
    const echoFromA = deliver(a.state, hostB, ackFromB, 10)
    const echoFromB = deliver(b.state, hostA, ackFromA, 10)
    expect(chunkTags(echoFromA)).toContain("CookieEcho")
    // Each COOKIE ECHO reaches an association in COOKIE-ECHOED whose tags match: case D.
    const cookieAckFromB = deliver(b.state, hostA, echoFromA, 15)
    const cookieAckFromA = deliver(a.state, hostB, echoFromB, 15)
    expect(chunkTags(cookieAckFromB)).toContain("CookieAck")
    expect(chunkTags(cookieAckFromA)).toContain("CookieAck")
    deliver(a.state, hostB, cookieAckFromB, 20)
    deliver(b.state, hostA, cookieAckFromA, 20)
    expect(a.state.name).toBe("Established")
    expect(b.state.name).toBe("Established")
    expect(a.state.peerTag).toBe(b.state.myTag)
    expect(b.state.peerTag).toBe(a.state.myTag)
  })

  it("peer restart: INIT in ESTABLISHED gets a new tag with tie-tags; its COOKIE ECHO restarts (case A)", () => {
    const lb = new Loopback({ seed: 41 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    const server = lb.server!
    const oldTag = server.myTag
    const client = { host: "10.0.0.1", udpPort: 9001 }
    const restarted = Association.connect(config(4000), {
      peer: { host: "10.0.0.2", udpPort: 9002 },
      peerPort: 5000,
      seed: 99,
      nowMs: lb.nowMs,
    })
    const initAck = deliver(server, client, restarted.outputs, lb.nowMs)
    const ack = initAck.find((o) => o._tag === "Send")!
    expect(ack._tag === "Send" && ack.message.chunks[0]!._tag).toBe("InitAck")
    const newTag = ack._tag === "Send" ? (ack.message.chunks[0] as Chunk.InitAck).initiateTag : 0
    expect(newTag).not.toBe(oldTag)
    const echo = deliver(
      restarted.state,
      { host: "10.0.0.2", udpPort: 9002 },
      initAck,
      lb.nowMs + 1,
    )
    const answer = deliver(server, client, echo, lb.nowMs + 2)
    expect(events(answer)).toContainEqual({ _tag: "Restart" })
    expect(chunkTags(answer)).toContain("CookieAck")
    expect(server.myTag).toBe(newTag)
    expect(server.peerTag).toBe(restarted.state.myTag)
    deliver(restarted.state, { host: "10.0.0.2", udpPort: 9002 }, answer, lb.nowMs + 3)
    expect(restarted.state.name).toBe("Established")
  })

  it("an INIT from a restarted peer that adds an address is refused with ABORT", () => {
    const lb = new Loopback({ seed: 42 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    const withNewAddress = Association.connect(
      { ...config(4000), localAddresses: ["10.0.0.1", "10.9.9.9"] },
      { peer: { host: "10.0.0.2", udpPort: 9002 }, peerPort: 5000, seed: 5, nowMs: lb.nowMs },
    )
    const answer = deliver(
      lb.server!,
      { host: "10.0.0.1", udpPort: 9001 },
      withNewAddress.outputs,
      lb.nowMs,
    )
    const abort = answer.find((o) => o._tag === "Send")!
    expect(abort._tag === "Send" && (abort.message.chunks[0] as Chunk.Abort).causes[0]!._tag).toBe(
      "RestartWithNewAddresses",
    )
    expect(lb.server!.name).toBe("Established")
  })

  it("a COOKIE ECHO matching neither tag nor tie-tags is dropped", () => {
    const lb = new Loopback({ seed: 43 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    const out = Association.step(lb.server!, {
      _tag: "Receive",
      from: { host: "10.0.0.1", udpPort: 9001 },
      nowMs: lb.nowMs,
      message: wire({
        sourcePort: 4000,
        destinationPort: 5000,
        verificationTag: lb.server!.myTag,
        chunks: [{ _tag: "CookieEcho", cookie: new Uint8Array(80) }],
      }),
    }).outputs
    expect(events(out)).toEqual([{ _tag: "Dropped", reason: "InvalidCookie" }])
  })
})

describe("Association COOKIE ECHO staleness", () => {
  it("answers a stale retransmitted COOKIE ECHO of this very association with COOKIE ACK (case D)", async () => {
    const Listener = await import("../src/Listener.ts")
    const listener = Listener.makeListener(config(5000), 9)
    const client = Association.connect(config(4000), {
      peer: hostB,
      peerPort: 5000,
      seed: 3,
      nowMs: 0,
    })
    const toListener = (outputs: ReadonlyArray<Association.Output>, nowMs: number) =>
      outputs.flatMap((o) =>
        o._tag === "Send"
          ? [
              Listener.onUnknownPacket(listener, {
                _tag: "Receive",
                from: hostA,
                message: wire(o.message),
                nowMs,
              }),
            ]
          : [],
      )
    const [initAck] = toListener(client.outputs, 1)
    const echo = deliver(client.state, hostB, initAck!.outputs, 2)
    const [created] = toListener(echo, 3)
    const server = created!.association!
    // Our COOKIE ACKs are lost; the peer's retransmission arrives after the cookie's life.
    const late = deliver(server, hostA, echo, 70_000)
    expect(chunkTags(late)).toContain("CookieAck")
    // A stale cookie that names another association gets the Stale Cookie error.
    const other = Association.connect(config(4000), {
      peer: hostB,
      peerPort: 5000,
      seed: 4,
      nowMs: 0,
    })
    const [otherAck] = toListener(other.outputs, 1)
    const otherEcho = deliver(other.state, hostB, otherAck!.outputs, 2)
    const stale = Listener.onUnknownPacket(listener, {
      _tag: "Receive",
      from: hostA,
      nowMs: 70_000,
      message: wire(
        (otherEcho.find((o) => o._tag === "Send") as Extract<Association.Output, { _tag: "Send" }>)
          .message,
      ),
    })
    expect(
      stale.outputs.flatMap((o) => (o._tag === "Send" ? o.message.chunks.map((c) => c._tag) : [])),
    ).toEqual(["OperationError"])
  })
})
