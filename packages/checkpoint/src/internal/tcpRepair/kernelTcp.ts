/**
 * The kernel TCP layer's state, saved and rebuilt with `TCP_REPAIR` (what CRIU's libsoccr
 * saves: both queue sequence numbers, MSS, window scales, SACK, timestamps, the repair
 * window). Sequence numbers here are TCP's 32-bit wire numbers.
 *
 * @internal
 */
import * as L from "./libc.ts"

export interface KernelTcpState {
  /** The next sequence number the kernel would give a byte written now (`write_seq`). */
  readonly sendSeq: number
  /** The next sequence number expected from the peer (`rcv_nxt`). */
  readonly recvSeq: number
  readonly mss: number
  readonly sack: boolean
  /** Window scales, or undefined when not negotiated. */
  readonly wscale: { readonly send: number; readonly receive: number } | undefined
  /** The connection's TCP timestamp clock when saved, or undefined without timestamps. */
  readonly timestamp: number | undefined
  readonly window: {
    readonly sndWl1: number
    readonly sndWnd: number
    readonly maxWindow: number
    readonly rcvWnd: number
    readonly rcvWup: number
  }
}

export class KernelCallFailed extends Error {}

const check = (libc: L.Libc, result: number, what: string): number => {
  if (result < 0) throw new KernelCallFailed(`${what} failed (errno ${libc.errno()})`)
  return result
}

const setInt = (
  libc: L.Libc,
  fd: number,
  level: number,
  name: number,
  value: number,
  what: string,
) => check(libc, libc.setsockopt(fd, level, name, L.int32(value), 4), what)

const getInt = (libc: L.Libc, fd: number, level: number, name: number, what: string): number => {
  const value = Buffer.alloc(4)
  check(libc, libc.getsockopt(fd, level, name, value, L.int32(4)), what)
  return value.readUInt32LE(0)
}

/** `TCP_INFO` fields the backend reads without repair mode. */
export interface TcpInfo {
  readonly options: number
  readonly sndWscale: number
  readonly rcvWscale: number
  /** Bytes the peer acknowledged over the connection's life (`tcpi_bytes_acked`). */
  readonly bytesAcked: number
  /** Bytes received from the peer over the connection's life (`tcpi_bytes_received`). */
  readonly bytesReceived: number
}

export const tcpInfo = (libc: L.Libc, fd: number): TcpInfo => {
  const info = Buffer.alloc(232)
  const length = L.int32(info.length)
  check(libc, libc.getsockopt(fd, L.IPPROTO_TCP, L.TCP_INFO, info, length), "TCP_INFO")
  if (length.readUInt32LE(0) < 136) throw new KernelCallFailed("TCP_INFO too short on this kernel")
  return {
    options: info[5]!,
    sndWscale: info[6]! & 0x0f,
    rcvWscale: info[6]! >> 4,
    bytesAcked: Number(info.readBigUInt64LE(120)),
    bytesReceived: Number(info.readBigUInt64LE(128)),
  }
}

/** Enters repair mode; fails with EPERM without CAP_NET_ADMIN. */
export const repairOn = (libc: L.Libc, fd: number) =>
  setInt(libc, fd, L.IPPROTO_TCP, L.TCP_REPAIR, 1, "TCP_REPAIR on")

/**
 * Saves a live connection's state. Synchronous on purpose: Node's writes to this socket
 * run on this same thread, so none can land (and fail with EINVAL) while it is in repair
 * mode; it leaves repair mode without a window probe, so the peer sees nothing.
 */
export const save = (libc: L.Libc, fd: number): KernelTcpState => {
  const info = tcpInfo(libc, fd)
  repairOn(libc, fd)
  try {
    setInt(libc, fd, L.IPPROTO_TCP, L.TCP_REPAIR_QUEUE, L.TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE")
    const sendSeq = getInt(libc, fd, L.IPPROTO_TCP, L.TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ send")
    setInt(libc, fd, L.IPPROTO_TCP, L.TCP_REPAIR_QUEUE, L.TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE")
    const recvSeq = getInt(libc, fd, L.IPPROTO_TCP, L.TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ recv")
    setInt(libc, fd, L.IPPROTO_TCP, L.TCP_REPAIR_QUEUE, L.TCP_NO_QUEUE, "TCP_REPAIR_QUEUE")
    const mss = getInt(libc, fd, L.IPPROTO_TCP, L.TCP_MAXSEG, "TCP_MAXSEG")
    const timestamp =
      (info.options & L.TCPI_OPT_TIMESTAMPS) !== 0
        ? getInt(libc, fd, L.IPPROTO_TCP, L.TCP_TIMESTAMP, "TCP_TIMESTAMP")
        : undefined
    const window = Buffer.alloc(20)
    check(
      libc,
      libc.getsockopt(fd, L.IPPROTO_TCP, L.TCP_REPAIR_WINDOW, window, L.int32(20)),
      "TCP_REPAIR_WINDOW",
    )
    return {
      sendSeq,
      recvSeq,
      mss,
      sack: (info.options & L.TCPI_OPT_SACK) !== 0,
      wscale:
        (info.options & L.TCPI_OPT_WSCALE) !== 0
          ? { send: info.sndWscale, receive: info.rcvWscale }
          : undefined,
      timestamp,
      window: {
        sndWl1: window.readUInt32LE(0),
        sndWnd: window.readUInt32LE(4),
        maxWindow: window.readUInt32LE(8),
        rcvWnd: window.readUInt32LE(12),
        rcvWup: window.readUInt32LE(16),
      },
    }
  } finally {
    libc.setsockopt(fd, L.IPPROTO_TCP, L.TCP_REPAIR, L.int32(L.TCP_REPAIR_OFF_NO_WP), 4)
  }
}

export interface RebuildTarget {
  readonly local: { readonly host: string; readonly port: number }
  readonly remote: { readonly host: string; readonly port: number }
  /** `write_seq` of the rebuilt socket: the first byte it will put in its send queue. */
  readonly sendSeq: number
  readonly recvSeq: number
  readonly state: KernelTcpState
  /** The timestamp clock to continue from (at least the old one's last value). */
  readonly timestamp: number | undefined
}

/**
 * Rebuilds a connection in repair mode: bound to the service address even before this
 * host has it (`IP_FREEBIND`, `IP_TRANSPARENT`: until then no segment of the client reaches
 * this host's TCP, so none is answered with a reset), connected without a SYN, options and
 * window set. It stays in repair mode: the caller fills the send queue and leaves repair
 * mode when ready.
 */
export const rebuild = (libc: L.Libc, target: RebuildTarget): number => {
  const fd = check(libc, libc.socket(L.AF_INET, L.SOCK_STREAM | L.SOCK_CLOEXEC, 0), "socket")
  try {
    repairOn(libc, fd)
    setInt(libc, fd, L.SOL_SOCKET, L.SO_REUSEADDR, 1, "SO_REUSEADDR")
    // Beside this host's own listener on the service port (it listens with SO_REUSEPORT).
    setInt(libc, fd, L.SOL_SOCKET, L.SO_REUSEPORT, 1, "SO_REUSEPORT")
    setInt(libc, fd, L.SOL_IP, L.IP_FREEBIND, 1, "IP_FREEBIND")
    setInt(libc, fd, L.SOL_IP, L.IP_TRANSPARENT, 1, "IP_TRANSPARENT")
    check(libc, libc.bind(fd, L.sockaddrIn(target.local.host, target.local.port), 16), "bind")
    setInt(libc, fd, L.IPPROTO_TCP, L.TCP_REPAIR_QUEUE, L.TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE")
    setInt(libc, fd, L.IPPROTO_TCP, L.TCP_QUEUE_SEQ, target.recvSeq | 0, "TCP_QUEUE_SEQ recv")
    setInt(libc, fd, L.IPPROTO_TCP, L.TCP_REPAIR_QUEUE, L.TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE")
    setInt(libc, fd, L.IPPROTO_TCP, L.TCP_QUEUE_SEQ, target.sendSeq | 0, "TCP_QUEUE_SEQ send")
    check(
      libc,
      libc.connect(fd, L.sockaddrIn(target.remote.host, target.remote.port), 16),
      "connect",
    )
    const state = target.state
    const options: Array<[number, number]> = []
    if (state.sack) options.push([L.TCPOPT_SACK_PERM, 0])
    if (state.wscale !== undefined)
      options.push([L.TCPOPT_WINDOW, state.wscale.send + (state.wscale.receive << 16)])
    if (state.timestamp !== undefined) options.push([L.TCPOPT_TIMESTAMP, 0])
    options.push([L.TCPOPT_MAXSEG, state.mss])
    const encoded = Buffer.alloc(options.length * 8)
    options.forEach(([code, value], i) => {
      encoded.writeUInt32LE(code, i * 8)
      encoded.writeUInt32LE(value >>> 0, i * 8 + 4)
    })
    check(
      libc,
      libc.setsockopt(fd, L.IPPROTO_TCP, L.TCP_REPAIR_OPTIONS, encoded, encoded.length),
      "TCP_REPAIR_OPTIONS",
    )
    if (target.timestamp !== undefined)
      setInt(libc, fd, L.IPPROTO_TCP, L.TCP_TIMESTAMP, target.timestamp | 0, "TCP_TIMESTAMP")
    const window = Buffer.alloc(20)
    window.writeUInt32LE(target.recvSeq >>> 0, 0) // snd_wl1: the client's latest segment is at rcv_nxt
    window.writeUInt32LE(state.window.sndWnd >>> 0, 4)
    window.writeUInt32LE(state.window.maxWindow >>> 0, 8)
    window.writeUInt32LE(state.window.rcvWnd >>> 0, 12)
    window.writeUInt32LE(target.recvSeq >>> 0, 16)
    check(
      libc,
      libc.setsockopt(fd, L.IPPROTO_TCP, L.TCP_REPAIR_WINDOW, window, 20),
      "TCP_REPAIR_WINDOW",
    )
    setInt(libc, fd, L.IPPROTO_TCP, L.TCP_REPAIR_QUEUE, L.TCP_NO_QUEUE, "TCP_REPAIR_QUEUE")
    return fd
  } catch (error) {
    libc.close(fd) // still in repair mode: closes silently, no RST
    throw error
  }
}

/** Puts bytes in the send queue as already sent (repair mode): the client has them. */
export const fillSentQueue = (libc: L.Libc, fd: number, bytes: Buffer): void => {
  if (bytes.length === 0) return
  // Room for all of it at once (the kernel doubles the value), and for what follows.
  setInt(
    libc,
    fd,
    L.SOL_SOCKET,
    L.SO_SNDBUFFORCE,
    Math.max(bytes.length, 4 * 1024 * 1024),
    "SO_SNDBUFFORCE",
  )
  setInt(libc, fd, L.IPPROTO_TCP, L.TCP_REPAIR_QUEUE, L.TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE")
  let offset = 0
  let chunk = Math.min(bytes.length, 1 << 20)
  while (offset < bytes.length) {
    const length = Math.min(chunk, bytes.length - offset)
    const sent = libc.send(fd, bytes.subarray(offset, offset + length), length, L.MSG_DONTWAIT)
    if (sent <= 0) {
      // The kernel may refuse one large buffer: halve, as libsoccr does.
      if (chunk > 1024) {
        chunk >>= 1
        continue
      }
      throw new KernelCallFailed(`send queue refill failed (errno ${libc.errno()})`)
    }
    offset += sent
  }
  setInt(libc, fd, L.IPPROTO_TCP, L.TCP_REPAIR_QUEUE, L.TCP_NO_QUEUE, "TCP_REPAIR_QUEUE")
}

/** Unacknowledged bytes in the send queue (`SIOCOUTQ`). */
export const outqBytes = (libc: L.Libc, fd: number): number => {
  const value = Buffer.alloc(4)
  check(libc, libc.ioctl(fd, L.SIOCOUTQ, value), "SIOCOUTQ")
  return value.readInt32LE(0)
}

/** Mutes a socket (a filter drops every segment before TCP: nothing acknowledged) or unmutes it. */
export const mute = (libc: L.Libc, fd: number, muted: boolean) =>
  check(libc, libc.mute(fd, muted), muted ? "SO_ATTACH_FILTER" : "SO_DETACH_FILTER")

/** Leaves repair mode with a window probe: the client's answer updates its window at once. */
export const leaveRepair = (libc: L.Libc, fd: number) =>
  setInt(libc, fd, L.IPPROTO_TCP, L.TCP_REPAIR, 0, "TCP_REPAIR off")

/**
 * The timestamp clock a rebuilt socket continues from, `elapsedMs` after `saved` was read,
 * with a margin of a second: the client drops segments stamped before the last one it saw
 * (PAWS). Since Linux 6.7 bit 0 of a `TCP_TIMESTAMP` value selects the clock's unit (set:
 * microseconds, clear: milliseconds), on reads and on writes alike: an odd value written
 * for a millisecond connection would switch it to microseconds, its clock would run a
 * thousand times faster than the next takeover reckons, and that server's segments would
 * all be stamped in the client's past (a stall). The unit read is kept.
 */
export const timestampAfter = (saved: number, elapsedMs: number): number => {
  const usec = (saved & 1) === 1
  const next = saved + (Math.max(0, elapsedMs) + 1_000) * (usec ? 1_000 : 1)
  return (usec ? next | 1 : next & ~1) >>> 0
}

/** The connection's TCP timestamp clock now (undefined when it has no timestamps). */
export const timestampNow = (
  libc: L.Libc,
  fd: number,
  saved: number | undefined,
): number | undefined =>
  saved === undefined
    ? undefined
    : getInt(libc, fd, L.IPPROTO_TCP, L.TCP_TIMESTAMP, "TCP_TIMESTAMP")
