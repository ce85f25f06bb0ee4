/**
 * A gratuitous ARP (an ARP request for one's own address, to broadcast) through a packet
 * socket: the LAN's hosts repoint the address to this host's interface at once. Sent
 * before the takeover's first probe, so the client's answer comes here and not to the dead
 * host (iputils' `arping -U` does the same, then waits a second).
 *
 * @internal
 */
import * as fs from "node:fs"
import * as L from "./libc.ts"

const AF_PACKET = 17
const SOCK_DGRAM = 2
const ETH_P_ARP = 0x0806

export const announce = (libc: L.Libc, interfaceName: string, address: string): void => {
  if (!/^[A-Za-z0-9._-]{1,15}$/.test(interfaceName))
    throw new Error(`bad interface name ${interfaceName}`)
  const sys = `/sys/class/net/${interfaceName}`
  const ifindex = Number(fs.readFileSync(`${sys}/ifindex`, "utf8").trim())
  const mac = Buffer.from(
    fs.readFileSync(`${sys}/address`, "utf8").trim().replaceAll(":", ""),
    "hex",
  )
  const ip = L.sockaddrIn(address, 0).subarray(4, 8)
  const fd = libc.socket(
    AF_PACKET,
    SOCK_DGRAM | L.SOCK_CLOEXEC,
    ((ETH_P_ARP & 0xff) << 8) | (ETH_P_ARP >> 8),
  )
  if (fd < 0) throw new Error(`packet socket failed (errno ${libc.errno()})`)
  try {
    const arp = Buffer.alloc(28)
    arp.writeUInt16BE(1, 0) // Ethernet
    arp.writeUInt16BE(0x0800, 2) // IPv4
    arp[4] = 6
    arp[5] = 4
    arp.writeUInt16BE(1, 6) // request
    mac.copy(arp, 8)
    ip.copy(arp, 14)
    ip.copy(arp, 24) // target: the same address, as a gratuitous ARP has it
    const to = Buffer.alloc(20)
    to.writeUInt16LE(AF_PACKET, 0)
    to.writeUInt16BE(ETH_P_ARP, 2)
    to.writeInt32LE(ifindex, 4)
    to.writeUInt16LE(1, 8) // ARPHRD_ETHER
    to[11] = 6
    Buffer.from("ffffffffffff", "hex").copy(to, 12)
    if (libc.sendto(fd, arp, arp.length, 0, to, to.length) < 0)
      throw new Error(`gratuitous ARP failed (errno ${libc.errno()})`)
  } finally {
    libc.close(fd)
  }
}
