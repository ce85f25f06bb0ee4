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
import * as net from "node:net"
import { bindUdp, closeUdp, holdFreePorts } from "./internal/ports.ts"

const listenTcp = (port: number, host: string): Promise<net.Server> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(port, host, () => resolve(server))
  })

const closeTcp = (server: net.Server): Promise<void> =>
  new Promise((resolve) => server.close(() => resolve()))

/**
 * `count` distinct free UDP ports on `host`, all held until every one is known.
 *
 * @since 0.1.0
 * @category ports
 */
export const freeUdpPorts = (count: number, host = "127.0.0.1"): Promise<Array<number>> =>
  holdFreePorts(count, (port) => bindUdp(host, port), closeUdp)

/**
 * A free TCP port on `host`.
 *
 * @since 0.1.0
 * @category ports
 */
export const freeTcpPort = async (host = "127.0.0.1"): Promise<number> => {
  const [port] = await holdFreePorts(1, (port) => listenTcp(port, host), closeTcp)
  return port!
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
