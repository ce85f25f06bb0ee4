/**
 * Free loopback ports for programs, tests and benchmarks that start real servers: the OS
 * picks them (bind to port 0, read, release), so runs never share a fixed port. There is a
 * window between release and reuse; servers that bind them soon after are fine on a quiet
 * loopback.
 *
 * @since 0.1.0
 */
import * as dgram from "node:dgram"
import * as net from "node:net"

/**
 * `count` distinct free UDP ports on `host`, all held until every one is known.
 *
 * @since 0.1.0
 * @category ports
 */
export const freeUdpPorts = async (count: number, host = "127.0.0.1"): Promise<Array<number>> => {
  const sockets = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<dgram.Socket>((resolve, reject) => {
          const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4")
          socket.once("error", reject)
          socket.bind(0, host, () => resolve(socket))
        }),
    ),
  )
  const ports = sockets.map((socket) => socket.address().port)
  await Promise.all(
    sockets.map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))),
  )
  return ports
}

/**
 * A free TCP port on `host`.
 *
 * @since 0.1.0
 * @category ports
 */
export const freeTcpPort = (host = "127.0.0.1"): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, host, () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

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
