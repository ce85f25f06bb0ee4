/**
 * Crafted TCP segments and a view of incoming ones, through a raw IPv4 socket: the probe
 * that makes an idle client repeat its acknowledgement, the reading of that
 * acknowledgement before the rebuilt socket sends anything, and the reset of a refused
 * takeover (a reset is accepted only at the client's exact next sequence number).
 *
 * @internal
 */
import * as L from "./libc.ts"

export interface Segment {
  readonly seq: number
  readonly ack: number
  readonly flags: number
  /** The window field as sent (unscaled). */
  readonly window: number
  readonly payloadBytes: number
  readonly payload: Buffer
  /** The TCP timestamp option's value, if the segment has one. */
  readonly tsval: number | undefined
}

export const FLAG_RST = 0x04
export const FLAG_PSH = 0x08
export const FLAG_ACK = 0x10

const ipv4 = (host: string): Buffer => L.sockaddrIn(host, 0).subarray(4, 8)

const checksum = (bytes: Buffer): number => {
  let sum = 0
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += bytes.readUInt16BE(i)
  if (bytes.length % 2 === 1) sum += bytes[bytes.length - 1]! << 8
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}

export interface Flow {
  readonly local: { readonly host: string; readonly port: number }
  readonly remote: { readonly host: string; readonly port: number }
}

/** A raw socket that sees every TCP segment this host receives, and sends crafted ones. */
export class RawTcp {
  private readonly libc: L.Libc
  private readonly flow: Flow
  private readonly fd: number
  private readonly buffer = Buffer.alloc(262_144)

  constructor(libc: L.Libc, flow: Flow) {
    this.libc = libc
    this.flow = flow
    const fd = libc.socket(L.AF_INET, L.SOCK_RAW | L.SOCK_CLOEXEC, L.IPPROTO_TCP)
    if (fd < 0) throw new Error(`raw socket failed (errno ${libc.errno()})`)
    this.fd = fd
    libc.setsockopt(fd, L.SOL_IP, L.IP_FREEBIND, L.int32(1), 4)
    // Room for a burst of a client's segments between two polls (an upload's body).
    libc.setsockopt(fd, L.SOL_SOCKET, L.SO_RCVBUFFORCE, L.int32(8 * 1024 * 1024), 4)
    if (libc.bind(fd, L.sockaddrIn(flow.local.host, 0), 16) < 0) {
      libc.close(fd)
      throw new Error(`raw socket bind failed (errno ${libc.errno()})`)
    }
  }

  /** Sends a segment from the service address to the client. */
  send(
    seq: number,
    ack: number,
    flags: number,
    window: number,
    timestamp?: number,
    payload: Buffer = Buffer.alloc(0),
    timestampEcho = 0,
  ): void {
    const optionsLength = timestamp === undefined ? 0 : 12
    const header = Buffer.alloc(20 + optionsLength + payload.length)
    payload.copy(header, 20 + optionsLength)
    header.writeUInt16BE(this.flow.local.port, 0)
    header.writeUInt16BE(this.flow.remote.port, 2)
    header.writeUInt32BE(seq >>> 0, 4)
    header.writeUInt32BE(ack >>> 0, 8)
    header[12] = ((20 + optionsLength) / 4) << 4
    header[13] = flags
    header.writeUInt16BE(Math.min(window, 0xffff), 14)
    if (timestamp !== undefined) {
      header[20] = 1 // NOP
      header[21] = 1 // NOP
      header[22] = 8 // timestamps
      header[23] = 10
      header.writeUInt32BE(timestamp >>> 0, 24)
      header.writeUInt32BE(timestampEcho >>> 0, 28)
    }
    const pseudo = Buffer.alloc(12)
    ipv4(this.flow.local.host).copy(pseudo, 0)
    ipv4(this.flow.remote.host).copy(pseudo, 4)
    pseudo[9] = L.IPPROTO_TCP
    pseudo.writeUInt16BE(header.length, 10) // the TCP length: header and payload
    header.writeUInt16BE(checksum(Buffer.concat([pseudo, header])), 16)
    const to = L.sockaddrIn(this.flow.remote.host, 0)
    if (this.libc.sendto(this.fd, header, header.length, 0, to, 16) < 0)
      throw new Error(`raw send failed (errno ${this.libc.errno()})`)
  }

  /** The next segment of this flow already received, if any (never blocks). */
  poll(): Segment | undefined {
    for (;;) {
      const received = this.libc.recv(this.fd, this.buffer, this.buffer.length, L.MSG_DONTWAIT)
      if (received < 0) return undefined
      const packet = this.buffer.subarray(0, received)
      const ihl = (packet[0]! & 0x0f) * 4
      if (packet.length < ihl + 20) continue
      const source = packet.subarray(12, 16).join(".")
      const tcp = packet.subarray(ihl)
      if (
        source !== this.flow.remote.host ||
        tcp.readUInt16BE(0) !== this.flow.remote.port ||
        tcp.readUInt16BE(2) !== this.flow.local.port
      )
        continue
      const dataOffset = (tcp[12]! >> 4) * 4
      const end = Math.min(packet.length, packet.readUInt16BE(2))
      let tsval: number | undefined
      for (let at = 20; at < dataOffset && at < tcp.length; ) {
        const kind = tcp[at]!
        if (kind === 0) break
        if (kind === 1) {
          at++
          continue
        }
        if (kind === 8 && at + 10 <= tcp.length) tsval = tcp.readUInt32BE(at + 2)
        at += Math.max(2, tcp[at + 1] ?? 2)
      }
      return {
        seq: tcp.readUInt32BE(4),
        ack: tcp.readUInt32BE(8),
        flags: tcp[13]!,
        window: tcp.readUInt16BE(14),
        payloadBytes: end - ihl - dataOffset,
        payload: Buffer.from(packet.subarray(ihl + dataOffset, end)),
        tsval,
      }
    }
  }

  close(): void {
    this.libc.close(this.fd)
  }
}
