/**
 * The standby's probe of its partner, on real processes: the primary's link runs through a
 * TCP relay this test owns. The relay cuts the link and, for three relink graces (3 s), ends
 * every link the primary dials again at once: the primary is alive and serving, only its
 * link is gone — as a primary starved too long to link again, or a link cut on its own. The
 * secondary's SCTP INIT reaches the primary's UDP address directly, and the primary's
 * endpoint answers it, so the secondary waits and never takes over; when the relay lets the
 * primary through again, the pair is linked as before.
 */
import { connect, createServer, type Server, type Socket } from "node:net"
import { setTimeout as sleep } from "node:timers/promises"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Eventually, type JsonLinesProcess } from "@understudy/testkit"
import * as App from "./support.ts"

/** A TCP relay on 127.0.0.1 to `port` on `host`: `cut()` ends its links and refuses new ones until `restore()`. */
const relay = async (host: string, port: number) => {
  const sockets = new Set<Socket>()
  let refusing = false
  let accepted = 0
  const server: Server = createServer((incoming) => {
    accepted++
    if (refusing) {
      incoming.destroy()
      return
    }
    const outgoing = connect(port, host)
    const end = () => {
      incoming.destroy()
      outgoing.destroy()
      sockets.delete(incoming)
      sockets.delete(outgoing)
    }
    for (const socket of [incoming, outgoing]) {
      sockets.add(socket)
      socket.on("error", end)
      socket.on("close", end)
    }
    incoming.pipe(outgoing)
    outgoing.pipe(incoming)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("the relay has no port")
  return {
    link: `tcp://127.0.0.1:${address.port}`,
    /** Links the relay took since the last call. */
    accepted: () => {
      const count = accepted
      accepted = 0
      return count
    },
    cut: () => {
      refusing = true
      for (const socket of sockets) socket.destroy()
    },
    restore: () => {
      refusing = false
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

let opened: Awaited<ReturnType<typeof relay>> | undefined

afterEach(async () => {
  await App.killAll()
  await opened?.close()
  opened = undefined
})

/** The `cluster` lines a node printed for `tag`. */
const events = (node: JsonLinesProcess.JsonLinesProcess, tag: string) =>
  node.lines.filter((line) => line.t === "cluster" && line._tag === tag)

describe("the standby's probe (real processes)", () => {
  it("a live primary whose link is gone for three relink graces answers the probe: the secondary never takes over, and they link again", async () => {
    const ports = await App.clusterPorts()
    const [linkHost, linkPort] = ports.link.replace("tcp://", "").split(":") as [string, string]
    const through = await relay(linkHost, Number(linkPort))
    opened = through
    const secondary = App.start(App.nodeArgs("secondary", ports))
    const primary = App.start(App.nodeArgs("primary", { ...ports, link: through.link }))
    await primary.line("started", 20_000)
    await secondary.line("started", 20_000)
    await App.linkUp("the secondary linked", secondary)
    const linkDowns = events(secondary, "LinkDown").length
    through.accepted()
    through.cut()
    await Eventually.promise(
      "the secondary saw its link end",
      () => events(secondary, "LinkDown").length > linkDowns || undefined,
      { within: 10_000 },
    )
    await sleep(3_000)
    // The primary was dialling all along (the relay ended each link), and is still serving.
    expect(through.accepted()).toBeGreaterThan(0)
    through.restore()
    const relinked = events(secondary, "LinkUp").length
    await Eventually.promise(
      "the secondary linked again",
      () => events(secondary, "LinkUp").length > relinked || undefined,
      { within: 20_000 },
    )
    expect(events(secondary, "TookOver")).toEqual([])
    expect(
      secondary.lines.filter((line) => line.t === "role" && line.role !== "secondary"),
    ).toEqual([])
    expect(primary.lines.filter((line) => line.t === "role" && line.role !== "primary")).toEqual([])
  })
})
