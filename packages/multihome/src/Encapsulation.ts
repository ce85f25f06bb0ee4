/**
 * UDP encapsulation of SCTP (RFC 6951): each SCTP packet, common header and all, is the
 * whole payload of one UDP datagram. This is how an SCTP endpoint runs in a Node process
 * without raw sockets, and how usrsctp's programs talk when given a UDP encapsulation port.
 *
 * Ports: the SCTP ports in the common header are the association's; the UDP ports are the
 * encapsulation's, one local UDP port per stack (by convention the well-known 9899), and
 * one remote UDP port per peer address. RFC 6951 §5.5 and usrsctp: the remote UDP port is
 * learned from each received packet's UDP source port, remembered per peer address (per
 * path), and used as the destination port for everything sent to that address; a packet
 * from the address with a different source port (a NAT rebinding, a restarted peer) moves
 * it, once the packet has passed the verification tag check. {@link remember} and
 * {@link remotePort} keep that table.
 *
 * @since 0.1.0
 */
import type { Address } from "@understudy/transport"
import type { Result } from "effect"
import type { DecodeError } from "./DecodeError.ts"
import * as Packet from "./Packet.ts"

/**
 * The IANA port for SCTP over UDP ("sctp-tunneling", RFC 6951 §5.1).
 *
 * @since 0.1.0
 * @category constants
 */
export const wellKnownPort = 9899

/**
 * The UDP header, which encapsulation adds to every packet: the SCTP path MTU is the IP
 * path MTU less the IP header and these 8 bytes (RFC 6951 §5.6).
 *
 * @since 0.1.0
 * @category constants
 */
export const udpHeaderLength = 8

/**
 * The largest SCTP packet one UDP datagram carries: 65,535 less the IPv4 (20) or IPv6 (0,
 * its payload length excludes its header) header and the UDP header.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxPacketLength = {
  ipv4: 65_535 - 20 - udpHeaderLength,
  ipv6: 65_535 - udpHeaderLength,
}

/**
 * The largest SCTP packet for a path of IP MTU `ipMtu` bytes, without fragmentation.
 *
 * @since 0.1.0
 * @category constants
 */
export const sctpMtu = (ipMtu: number, family: "ipv4" | "ipv6"): number =>
  Math.max(0, ipMtu - (family === "ipv4" ? 20 : 40) - udpHeaderLength)

/**
 * The UDP payload for a packet: the encoded packet itself, checksum computed (RFC 6951
 * keeps the SCTP CRC32c even though UDP has its own checksum).
 *
 * @since 0.1.0
 * @category encoding
 */
export const encapsulate = (packet: Packet.Packet): Uint8Array => Packet.encode(packet)

/**
 * The packet in a received UDP payload.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decapsulate = (payload: Uint8Array): Result.Result<Packet.Packet, DecodeError> =>
  Packet.decode(payload)

/**
 * Remote UDP encapsulation ports by peer IP address (the host of a `udp://` address).
 *
 * @since 0.1.0
 * @category ports
 */
export type RemotePorts = ReadonlyMap<string, number>

/**
 * An empty table.
 *
 * @since 0.1.0
 * @category ports
 */
export const emptyRemotePorts: RemotePorts = new Map()

/**
 * Records the UDP source port of a packet received from `from` (call it after the packet
 * passed the verification tag check, so forged packets do not move it). Returns the same
 * table when nothing changed.
 *
 * @since 0.1.0
 * @category ports
 */
export const remember = (ports: RemotePorts, from: Address.Udp): RemotePorts => {
  if (ports.get(from.host) === from.port) return ports
  const next = new Map(ports)
  next.set(from.host, from.port)
  return next
}

/**
 * The UDP port to send to for a peer address: the last one learned from it, else
 * `fallback` (the port configured for the peer, or {@link wellKnownPort}).
 *
 * @since 0.1.0
 * @category ports
 */
export const remotePort = (ports: RemotePorts, host: string, fallback = wellKnownPort): number =>
  ports.get(host) ?? fallback
