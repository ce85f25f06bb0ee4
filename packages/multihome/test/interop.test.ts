/**
 * Interop with a real SCTP stack this project did not write: usrsctp's example client
 * (Debian `libusrsctp-examples`), speaking SCTP over UDP (RFC 6951). The peer is the judge:
 * our decoder must read its INIT, and its stack must act on the ABORT our encoder writes.
 */
import { existsSync } from "node:fs"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Eventually, Usrsctp } from "@understudy/testkit"
import { Address, Datagram, NodeDatagram } from "@understudy/transport"
import { Duration, Effect, Stream } from "effect"
import * as Chunk from "../src/Chunk.ts"
import * as Crc32c from "../src/Crc32c.ts"
import * as Encapsulation from "../src/Encapsulation.ts"
import * as Packet from "../src/Packet.ts"

/** The SCTP port the client connects to (nobody listens: it only sends INITs). */
const echoPort = 7

// Kill every client, whatever the test did, and wait for each to be gone.
afterEach(() => Usrsctp.killAll())

/** usrsctp's client towards `host`; stdin stays open: the client waits on it for lines to send. */
const startClient = (host: string, localEncapsPort: number, remoteEncapsPort: number) =>
  Effect.promise(() =>
    Usrsctp.startClient({ host, port: echoPort, localEncapsPort, remoteEncapsPort }),
  )

const freeEncapsulationPort = Effect.promise(() => Usrsctp.freeEncapsulationPort())

const decodeInit = (bytes: Uint8Array) => {
  expect(Crc32c.verify(bytes)).toBe(true)
  const result = Packet.decode(bytes)
  if (result._tag === "Failure")
    throw new Error(`usrsctp's packet did not decode: ${result.failure._tag}`)
  const packet = result.success
  expect(packet.verificationTag).toBe(0)
  expect(packet.chunks).toHaveLength(1)
  const init = packet.chunks[0] as Chunk.Chunk
  expect(init._tag).toBe("Init")
  if (init._tag !== "Init") throw new Error("not an INIT")
  expect(Packet.checkBundling(packet)).toEqual({ _tag: "Ok" })
  expect(Packet.checkVerificationTag(packet, { myTag: 1, peerTag: 0 })).toEqual({ _tag: "Init" })
  return { packet, init }
}

const skipTypes = new Set([0x8000, 0x8002, 0x8003, 0x8004, 0x8008])

describe("interop with usrsctp", () => {
  it("the client is installed (scripts/ensure-system-deps.sh installs libusrsctp-examples)", () => {
    expect(existsSync(Usrsctp.programs.client)).toBe(true)
  })

  it.live("decodes usrsctp's INIT over UDP on 127.0.0.2, and its retransmission identically", () =>
    Effect.gen(function* () {
      const datagram = yield* Datagram.Datagram
      const endpoint = yield* datagram.bind(Address.udp("127.0.0.2", 0))
      const localEncapsulationPort = yield* freeEncapsulationPort
      expect(localEncapsulationPort).not.toBe(endpoint.address.port)
      yield* startClient("127.0.0.2", localEncapsulationPort, endpoint.address.port)

      // The INIT, then its retransmission when the 3 s initial RTO expires.
      const received = yield* Stream.runCollect(Stream.take(endpoint.messages, 2)).pipe(
        Effect.timeout(Duration.seconds(15)),
      )
      expect(received).toHaveLength(2)
      const [first, second] = received as [Datagram.Received, Datagram.Received]
      // RFC 6951: the client sends from its own encapsulation port; we remember it per address.
      expect(first.from.port).toBe(localEncapsulationPort)
      const ports = Encapsulation.remember(Encapsulation.emptyRemotePorts, first.from)
      expect(Encapsulation.remotePort(ports, first.from.host)).toBe(localEncapsulationPort)

      const { packet, init } = decodeInit(first.bytes)
      expect(packet.destinationPort).toBe(echoPort)
      expect(packet.sourcePort).toBeGreaterThan(0)
      expect(init.initiateTag).not.toBe(0)
      expect(init.advertisedReceiverWindowCredit).toBeGreaterThan(0)
      expect(init.outboundStreams).toBeGreaterThan(0)
      expect(init.inboundStreams).toBeGreaterThan(0)

      const tags = init.parameters.map((p) => (p._tag === "UnknownParameter" ? p.type : p._tag))
      expect(tags).toContain("SupportedAddressTypes")
      const supported = init.parameters.find((p) => p._tag === "SupportedAddressTypes")
      expect(supported?._tag === "SupportedAddressTypes" && supported.addressTypes).toContain(5)
      expect(init.parameters.some((p) => p._tag === "HostNameAddress")).toBe(false)
      for (const p of init.parameters) {
        if (p._tag === "Ipv4Address") expect(p.address).toHaveLength(4)
        if (p._tag === "Ipv6Address") expect(p.address).toHaveLength(16)
      }
      // Forward-TSN-Supported (0xC000, RFC 3758 PR-SCTP) is understood; its other extensions
      // are unknown to RFC 9260 and must be skipped, never stop processing.
      expect(tags).toContain("ForwardTsnSupported")
      const processing = Chunk.processUnknownParameters(init.parameters)
      expect(processing.stop).toBe(false)
      for (const reported of processing.report) expect(reported.type >>> 14).toBe(3)
      expect(processing.report.map((p) => p.type)).not.toContain(0xc000)
      for (const p of init.parameters) {
        if (p._tag === "UnknownParameter" && skipTypes.has(p.type)) {
          expect(Chunk.parameterTypeAction(p.type)).toBe("Skip")
        }
      }
      // Our encoder reproduces usrsctp's bytes, checksum included.
      expect(Packet.encode(packet)).toEqual(Uint8Array.from(first.bytes))

      // The retransmission is the same INIT.
      expect(decodeInit(second.bytes).packet).toEqual(packet)
    }).pipe(Effect.provide(NodeDatagram.layer)),
  )

  const abortTest = (
    name: string,
    build: (init: Chunk.Init) => { readonly verificationTag: number; readonly reflected: boolean },
    accepted: boolean,
  ) =>
    it.live(name, () =>
      Effect.gen(function* () {
        const datagram = yield* Datagram.Datagram
        const endpoint = yield* datagram.bind(Address.udp("::1", 0))
        const localEncapsulationPort = yield* freeEncapsulationPort
        const client = yield* startClient("::1", localEncapsulationPort, endpoint.address.port)

        const [first] = yield* Stream.runCollect(Stream.take(endpoint.messages, 1)).pipe(
          Effect.timeout(Duration.seconds(10)),
        )
        const { packet, init } = decodeInit((first as Datagram.Received).bytes)
        const { verificationTag, reflected } = build(init)
        const abort: Packet.Packet = {
          sourcePort: packet.destinationPort,
          destinationPort: packet.sourcePort,
          verificationTag,
          chunks: [{ _tag: "Abort", reflected, causes: [] }],
        }
        // What our own receiver rule says the client should do with this ABORT.
        const ours = Packet.checkVerificationTag(abort, { myTag: init.initiateTag, peerTag: 0 })
        expect(ours._tag).toBe(accepted ? "Accept" : "Drop")
        yield* endpoint.send((first as Datagram.Received).from, Encapsulation.encapsulate(abort))

        if (accepted) {
          // usrsctp_connect fails: the client gives up on the association.
          yield* Eventually.effect(
            "the client's usrsctp_connect refused",
            () => client.output().includes("usrsctp_connect: Connection refused"),
            { within: 10_000, every: 50 },
          )
        } else {
          // The ABORT is ignored: the client retransmits the same INIT when its RTO expires.
          const [again] = yield* Stream.runCollect(Stream.take(endpoint.messages, 1)).pipe(
            Effect.timeout(Duration.seconds(10)),
          )
          expect(decodeInit((again as Datagram.Received).bytes).packet).toEqual(packet)
          expect(client.output()).not.toContain("Connection refused")
        }
      }).pipe(Effect.provide(NodeDatagram.layer)),
    )

  // RFC 9260 §8.4 (3): an ABORT answering an INIT carries the INIT's Initiate Tag, T clear.
  abortTest(
    "usrsctp gives up on an ABORT carrying its Initiate Tag, T clear (over ::1)",
    (init) => ({ verificationTag: init.initiateTag, reflected: false }),
    true,
  )

  // §8.5.1 A and B: a T-bit ABORT reflecting the INIT's tag 0 is dropped, by us and by usrsctp.
  abortTest(
    "usrsctp ignores an ABORT with the T bit reflecting tag 0, as checkVerificationTag predicts",
    () => ({ verificationTag: 0, reflected: true }),
    false,
  )
})
