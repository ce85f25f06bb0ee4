import * as dgram from "node:dgram"
import * as net from "node:net"
import { describe, expect, it } from "vitest"
import { Ports } from "../src/index.ts"
import { ephemeralStart } from "../src/internal/ports.ts"

const bindUdp = (port: number) =>
  new Promise<dgram.Socket>((resolve, reject) => {
    const socket = dgram.createSocket("udp4")
    socket.once("error", reject)
    socket.bind(port, "127.0.0.1", () => resolve(socket))
  })

describe("Ports", () => {
  it("freeUdpPorts gives distinct ports below the ephemeral range, each bindable", async () => {
    const ports = await Ports.freeUdpPorts(8)
    expect(new Set(ports).size).toBe(8)
    for (const port of ports) expect(port).toBeLessThan(ephemeralStart())
    const sockets = await Promise.all(ports.map(bindUdp))
    await Promise.all(
      sockets.map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))),
    )
  })

  it("freeTcpPort gives a port below the ephemeral range that a server can listen on", async () => {
    const port = await Ports.freeTcpPort()
    expect(port).toBeLessThan(ephemeralStart())
    const server = net.createServer()
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(port, "127.0.0.1", resolve)
    })
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
})
