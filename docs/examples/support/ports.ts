/** Free UDP ports on a loopback address, picked by the operating system (port 0). */
import * as dgram from "node:dgram"

export const freeUdpPorts = (count: number, host = "127.0.0.1") =>
  Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<number>((resolve, reject) => {
          const socket = dgram.createSocket("udp4")
          socket.once("error", reject)
          socket.bind(0, host, () => {
            const { port } = socket.address()
            socket.close(() => resolve(port))
          })
        }),
    ),
  )
