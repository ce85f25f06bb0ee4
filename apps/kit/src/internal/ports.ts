/**
 * Binding and closing UDP sockets, and drawing free ports below the kernel's ephemeral range:
 * what `Ports` and `Usrsctp` both do to find ports for real servers and programs.
 */
import { randomInt } from "node:crypto"
import * as Dgram from "node:dgram"
import { readFileSync } from "node:fs"

/**
 * Binds a UDP socket on `address` (`udp6` for an IPv6 literal or `::`). `ipv6Only: false`
 * on `::` binds both stacks, so the port must be free on 0.0.0.0 too. Rejects, with the
 * socket closed, if the port is taken.
 */
export const bindUdp = (
  address: string,
  port: number,
  options: { readonly ipv6Only?: boolean } = {},
): Promise<Dgram.Socket> =>
  new Promise((resolve, reject) => {
    // ipv6Only on a udp4 socket makes bind fail with EINVAL.
    const socket = address.includes(":")
      ? Dgram.createSocket({ type: "udp6", ipv6Only: options.ipv6Only ?? false })
      : Dgram.createSocket({ type: "udp4" })
    const failed = (error: Error) => {
      socket.close()
      reject(error)
    }
    socket.once("error", failed)
    socket.bind({ address, port, exclusive: true }, () => {
      socket.off("error", failed)
      resolve(socket)
    })
  })

export const closeUdp = (socket: Dgram.Socket): Promise<void> =>
  new Promise((resolve) => socket.close(() => resolve()))

/** Ports at or above this are never picked, so system services below it are not met. */
const lowest = 20_000
/** Draws before giving up: a handful of ports below the range are in use at most. */
const attemptsMax = 200

/** The first port of the kernel's ephemeral range (Linux's default where it cannot be read). */
export const ephemeralStart = (): number => {
  try {
    const first = Number(
      readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "latin1").trim().split(/\s+/)[0],
    )
    return Number.isInteger(first) && first > lowest + 1_000 ? first : 32_768
  } catch {
    return 32_768
  }
}

/**
 * `count` distinct ports below the ephemeral range, each drawn at random until `hold` takes
 * it (a bind, which rejects when the port is taken). All are held until every one is known, so no two are
 * the same, then released with `release`.
 */
export const holdFreePorts = async <S>(
  count: number,
  hold: (port: number) => Promise<S>,
  release: (held: S) => Promise<void>,
): Promise<Array<number>> => {
  const end = ephemeralStart()
  const held = new Map<number, S>()
  const holdOne = async (): Promise<void> => {
    for (let attempt = 0; attempt < attemptsMax; attempt++) {
      const port = randomInt(lowest, end)
      if (held.has(port)) continue
      const taken = await hold(port).catch(() => undefined)
      if (taken !== undefined) return void held.set(port, taken)
    }
    throw new Error(`no free port in ${lowest}-${end - 1} after ${attemptsMax} tries`)
  }
  try {
    for (let index = 0; index < count; index++) await holdOne()
    return [...held.keys()]
  } finally {
    await Promise.all([...held.values()].map(release))
  }
}
