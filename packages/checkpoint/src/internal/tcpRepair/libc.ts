/**
 * The few libc calls the `tcp-repair` backend needs (Node has no `setsockopt` for
 * `TCP_REPAIR`), through koffi, an FFI that ships its binary inside its npm package. Loaded
 * lazily: on another platform, or without koffi, `load` says why instead of throwing at import.
 *
 * Constants are Linux's (x86_64 and aarch64 agree on all of these).
 *
 * @internal
 */
import { createRequire } from "node:module"

export const AF_INET = 2
export const SOCK_STREAM = 1
export const SOCK_RAW = 3
export const SOCK_CLOEXEC = 0x80000
export const IPPROTO_TCP = 6
export const SOL_SOCKET = 1
export const SO_REUSEADDR = 2
export const SO_REUSEPORT = 15
export const SO_SNDBUFFORCE = 32
export const SO_RCVBUFFORCE = 33
export const SOL_IP = 0
export const IP_FREEBIND = 15
export const IP_TRANSPARENT = 19
export const TCP_MAXSEG = 2
export const TCP_INFO = 11
export const TCP_REPAIR = 19
export const TCP_REPAIR_QUEUE = 20
export const TCP_QUEUE_SEQ = 21
export const TCP_REPAIR_OPTIONS = 22
export const TCP_TIMESTAMP = 24
export const TCP_REPAIR_WINDOW = 29
/** Leave repair mode without the window probe the kernel sends on a plain `0`. */
export const TCP_REPAIR_OFF_NO_WP = -1
export const TCP_RECV_QUEUE = 1
export const TCP_SEND_QUEUE = 2
export const TCP_NO_QUEUE = 0
export const TCPOPT_MAXSEG = 2
export const TCPOPT_WINDOW = 3
export const TCPOPT_SACK_PERM = 4
export const TCPOPT_TIMESTAMP = 8
export const TCPI_OPT_TIMESTAMPS = 1
export const TCPI_OPT_SACK = 2
export const TCPI_OPT_WSCALE = 4
export const SIOCOUTQ = 0x5411
export const MSG_DONTWAIT = 0x40
export const EPERM = 1

export interface Libc {
  readonly socket: (domain: number, type: number, protocol: number) => number
  readonly bind: (fd: number, address: Buffer, length: number) => number
  readonly connect: (fd: number, address: Buffer, length: number) => number
  readonly setsockopt: (
    fd: number,
    level: number,
    name: number,
    value: Buffer,
    length: number,
  ) => number
  readonly getsockopt: (
    fd: number,
    level: number,
    name: number,
    value: Buffer,
    length: Buffer,
  ) => number
  readonly ioctl: (fd: number, request: number, value: Buffer) => number
  readonly send: (fd: number, bytes: Buffer, length: number, flags: number) => number
  readonly sendto: (
    fd: number,
    bytes: Buffer,
    length: number,
    flags: number,
    address: Buffer,
    addressLength: number,
  ) => number
  readonly recv: (fd: number, bytes: Buffer, length: number, flags: number) => number
  readonly close: (fd: number) => number
  /**
   * Attaches a socket filter that drops every segment before TCP sees it (`true`), or
   * detaches it (`false`): the kernel then neither acknowledges nor resets them.
   */
  readonly mute: (fd: number, muted: boolean) => number
  readonly errno: () => number
}

let loaded: Libc | string | undefined

/** libc, or why it can not be had here. */
export const load = (): Libc | string => {
  if (loaded !== undefined) return loaded
  if (process.platform !== "linux") {
    loaded = `TCP_REPAIR is a Linux socket option; this is ${process.platform}`
    return loaded
  }
  try {
    const require = createRequire(import.meta.url)
    const koffi = require("koffi") as typeof import("koffi")
    const lib = koffi.load("libc.so.6")
    const SockFilter = koffi.struct("sock_filter", {
      code: "uint16",
      jt: "uint8",
      jf: "uint8",
      k: "uint32",
    })
    const SockFprog = koffi.struct("sock_fprog", {
      len: "uint16",
      filter: koffi.pointer(SockFilter),
    })
    const attachFilter = lib.func("setsockopt", "int", [
      "int",
      "int",
      "int",
      koffi.pointer(SockFprog),
      "uint32",
    ])
    const setsockopt = lib.func("int setsockopt(int, int, int, void *, uint32_t)")
    loaded = {
      socket: lib.func("int socket(int, int, int)"),
      bind: lib.func("int bind(int, void *, uint32_t)"),
      connect: lib.func("int connect(int, void *, uint32_t)"),
      setsockopt,
      getsockopt: lib.func("int getsockopt(int, int, int, void *, void *)"),
      ioctl: lib.func("int ioctl(int, unsigned long, void *)"),
      send: lib.func("intptr_t send(int, void *, size_t, int)"),
      sendto: lib.func("intptr_t sendto(int, void *, size_t, int, void *, uint32_t)"),
      recv: lib.func("intptr_t recv(int, void *, size_t, int)"),
      close: lib.func("int close(int)"),
      // SO_ATTACH_FILTER with one classic BPF instruction, `ret #0`; SO_DETACH_FILTER.
      mute: (fd: number, muted: boolean) =>
        muted
          ? attachFilter(
              fd,
              SOL_SOCKET,
              26,
              { len: 1, filter: [{ code: 6, jt: 0, jf: 0, k: 0 }] },
              16,
            )
          : setsockopt(fd, SOL_SOCKET, 27, int32(0), 4),
      errno: () => koffi.errno(),
    } as Libc
  } catch (error) {
    loaded = `koffi (the FFI this backend calls libc through) could not be loaded: ${String(error)}`
  }
  return loaded
}

/** A `struct sockaddr_in` for `host:port`. */
export const sockaddrIn = (host: string, port: number): Buffer => {
  const address = Buffer.alloc(16)
  address.writeUInt16LE(AF_INET, 0)
  address.writeUInt16BE(port, 2)
  const parts = host.split(".").map(Number)
  if (parts.length !== 4 || parts.some((part) => !Number.isInteger(part) || part < 0 || part > 255))
    throw new Error(`not an IPv4 address: ${host}`)
  for (let i = 0; i < 4; i++) address[4 + i] = parts[i]!
  return address
}

export const int32 = (value: number): Buffer => {
  const buffer = Buffer.alloc(4)
  buffer.writeInt32LE(value, 0)
  return buffer
}
