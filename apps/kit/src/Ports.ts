/**
 * Free loopback ports for programs, tests and benchmarks that start real servers, so runs
 * never share a fixed port. They are picked below the kernel's ephemeral range
 * (`/proc/sys/net/ipv4/ip_local_port_range`): a port the OS hands out for `bind(0)` or an
 * outgoing connection can be taken again by anyone's next ephemeral socket the moment it is
 * released, so a server SIGKILLed and restarted on it could find it in use; a port below the
 * range is only ever taken by an explicit bind.
 *
 * @since 0.1.0
 */
import { randomInt } from "node:crypto"
import * as dgram from "node:dgram"
import { readFileSync } from "node:fs"
import * as net from "node:net"

/** Ports at or above this are never picked, so system services below it are not met. */
const lowest = 20_000
/** Draws before giving up: a handful of ports below the range are in use at most. */
const attemptsMax = 200

/** The first port of the kernel's ephemeral range (Linux's default where it cannot be read). */
const ephemeralStart = (): number => {
  try {
    const first = Number(
      readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "latin1").trim().split(/\s+/)[0],
    )
    return Number.isInteger(first) && first > lowest + 1_000 ? first : 32_768
  } catch {
    return 32_768
  }
}

const bindUdp = (port: number, host: string): Promise<dgram.Socket | undefined> =>
  new Promise((resolve) => {
    const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4")
    socket.once("error", () => {
      socket.close()
      resolve(undefined)
    })
    socket.bind(port, host, () => resolve(socket))
  })

const listenTcp = (port: number, host: string): Promise<net.Server | undefined> =>
  new Promise((resolve) => {
    const server = net.createServer()
    server.once("error", () => resolve(undefined))
    server.listen(port, host, () => resolve(server))
  })

/** Draws ports below the ephemeral range until `hold` binds one not yet taken here. */
const pick = async <S>(
  taken: ReadonlySet<number>,
  hold: (port: number) => Promise<S | undefined>,
): Promise<[number, S]> => {
  const end = ephemeralStart()
  for (let attempt = 0; attempt < attemptsMax; attempt++) {
    const port = randomInt(lowest, end)
    if (taken.has(port)) continue
    const held = await hold(port)
    if (held !== undefined) return [port, held]
  }
  throw new Error(`no free port in ${lowest}-${end - 1} after ${attemptsMax} tries`)
}

/**
 * `count` distinct free UDP ports on `host`, all held until every one is known.
 *
 * @since 0.1.0
 * @category ports
 */
export const freeUdpPorts = async (count: number, host = "127.0.0.1"): Promise<Array<number>> => {
  const held = new Map<number, dgram.Socket>()
  try {
    for (let index = 0; index < count; index++) {
      const [port, socket] = await pick(new Set(held.keys()), (port) => bindUdp(port, host))
      held.set(port, socket)
    }
    return [...held.keys()]
  } finally {
    await Promise.all(
      [...held.values()].map(
        (socket) => new Promise<void>((resolve) => socket.close(() => resolve())),
      ),
    )
  }
}

/**
 * A free TCP port on `host`.
 *
 * @since 0.1.0
 * @category ports
 */
export const freeTcpPort = async (host = "127.0.0.1"): Promise<number> => {
  const [port, server] = await pick(new Set(), (port) => listenTcp(port, host))
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/**
 * GETs `url` and parses its JSON body; `undefined` if it does not answer in time or is not
 * JSON (a server that is down or busy).
 *
 * @since 0.1.0
 * @category http
 */
export const getJson = async <A>(url: string, timeoutMs = 500): Promise<A | undefined> => {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
    return (await response.json()) as A
  } catch {
    return undefined
  }
}
