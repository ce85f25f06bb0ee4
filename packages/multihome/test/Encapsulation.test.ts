import { describe, expect, it } from "@effect/vitest"
import { Address } from "@understudy/transport"
import { Result } from "effect"
import * as Encapsulation from "../src/Encapsulation.ts"
import * as Packet from "../src/Packet.ts"

describe("Encapsulation (RFC 6951)", () => {
  it("uses the IANA port 9899 and an 8-byte UDP header", () => {
    expect(Encapsulation.wellKnownPort).toBe(9899)
    expect(Encapsulation.udpHeaderLength).toBe(8)
    expect(Encapsulation.maxPacketLength).toEqual({ ipv4: 65_507, ipv6: 65_527 })
    expect(Encapsulation.sctpMtu(1500, "ipv4")).toBe(1472)
    expect(Encapsulation.sctpMtu(1500, "ipv6")).toBe(1452)
    expect(Encapsulation.sctpMtu(10, "ipv6")).toBe(0)
  })

  it("a UDP payload is exactly one SCTP packet", () => {
    const packet: Packet.Packet = {
      sourcePort: 5000,
      destinationPort: 5001,
      verificationTag: 42,
      chunks: [{ _tag: "CookieAck" }],
    }
    const payload = Encapsulation.encapsulate(packet)
    expect(payload).toEqual(Packet.encode(packet))
    expect(Encapsulation.decapsulate(payload)).toEqual(Result.succeed(packet))
  })

  it("remembers the UDP source port per peer address, and moves it when the peer's port changes", () => {
    const empty = Encapsulation.emptyRemotePorts
    expect(Encapsulation.remotePort(empty, "127.0.0.3")).toBe(9899)
    expect(Encapsulation.remotePort(empty, "127.0.0.3", 7000)).toBe(7000)
    const one = Encapsulation.remember(empty, Address.udp("127.0.0.3", 40000))
    const two = Encapsulation.remember(one, Address.udp("::1", 40001))
    expect(Encapsulation.remotePort(two, "127.0.0.3")).toBe(40000)
    expect(Encapsulation.remotePort(two, "::1")).toBe(40001)
    // The same port again changes nothing (and allocates nothing).
    expect(Encapsulation.remember(two, Address.udp("::1", 40001))).toBe(two)
    const moved = Encapsulation.remember(two, Address.udp("127.0.0.3", 40002))
    expect(Encapsulation.remotePort(moved, "127.0.0.3")).toBe(40002)
    // Tables are values: the old one is untouched.
    expect(Encapsulation.remotePort(two, "127.0.0.3")).toBe(40000)
    expect(empty.size).toBe(0)
  })
})
