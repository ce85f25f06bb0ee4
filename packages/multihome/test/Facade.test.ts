/**
 * The Promise / EventEmitter API on real UDP over loopback, with the caller's logger and layer.
 */
import { afterEach, describe, expect, it } from "@effect/vitest"
import { TestTracer } from "@understudy/testkit"
import type { Observability } from "@understudy/transport"
import type * as Endpoint from "../src/Endpoint.ts"
import * as Facade from "../src/Facade.ts"

const opened: Array<Facade.SctpEndpoint> = []

afterEach(async () => {
  await Promise.all(opened.splice(0).map((endpoint) => endpoint.close()))
})

const open = async (options: Facade.CreateEndpointOptions) => {
  const endpoint = await Facade.createEndpoint(options)
  opened.push(endpoint)
  return endpoint
}

/** Resolves with the first `event` of `emitter`, or rejects after `limitMs`. */
const next = <A>(emitter: NodeJS.EventEmitter, event: string, limitMs = 10_000) =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${limitMs} ms`)), limitMs)
    emitter.once(event, (value: A) => {
      clearTimeout(timer)
      resolve(value)
    })
  })

describe("Facade", () => {
  it("an echo server and a client: connect, messages, events, shutdown", async () => {
    const server = await open({ host: "127.0.0.1", port: 6000, listen: true })
    const serverClosed: Array<Endpoint.CloseReason> = []
    server.on("association", (association: Facade.SctpAssociation) => {
      association.on("message", (message: Endpoint.Message) => {
        void association.send(message.stream, message.ppid, message.data)
      })
      association.on("close", (reason: Endpoint.CloseReason) => serverClosed.push(reason))
    })
    const client = await open({ host: "127.0.0.1", port: 6001 })
    const association = await client.connect({
      host: "127.0.0.1",
      udpPort: server.address.port,
      port: 6000,
    })
    expect((await association.status()).state).toBe("Established")
    await association.setPrimary("127.0.0.1")
    await expect(association.setPrimary("127.0.0.9")).rejects.toMatchObject({
      _tag: "AssociationError",
      reason: "Rejected",
    })
    const received: Array<Endpoint.Message> = []
    const allBack = new Promise<void>((resolve) => {
      association.on("message", (message: Endpoint.Message) => {
        received.push(message)
        if (received.length === 10) resolve()
      })
    })
    const closing = next<Endpoint.CloseReason>(association, "close")
    for (let index = 0; index < 10; index++) {
      await association.send(index % 2, 99, new TextEncoder().encode(`hello ${index}`))
    }
    await allBack
    expect(received.map((message) => new TextDecoder().decode(message.data))).toEqual(
      Array.from({ length: 10 }, (_, index) => `hello ${index}`),
    )
    expect(received.every((message) => message.ppid === 99)).toBe(true)
    await association.shutdown()
    expect(await closing).toEqual({ _tag: "ShutdownComplete" })
    expect(await association.closed).toEqual({ _tag: "ShutdownComplete" })
    const stats = await client.stats()
    expect(stats.packetsOut).toBeGreaterThan(0)
    expect(stats.associations).toBe(0)
    for (let waited = 0; waited < 5_000 && serverClosed.length === 0; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect(serverClosed).toEqual([{ _tag: "ShutdownComplete" }])
  })

  it("connect rejects with a typed error when the endpoint does not listen", async () => {
    const server = await open({ host: "127.0.0.1", port: 6002 })
    const client = await open({ host: "127.0.0.1", port: 6003 })
    const error = await client
      .connect({ host: "127.0.0.1", udpPort: server.address.port, port: 6002 })
      .then(
        () => undefined,
        (error: unknown) => error,
      )
    expect(error).toMatchObject({ _tag: "AssociationConnectError", reason: "Aborted" })
  })

  it("createEndpoint rejects when the address is taken", async () => {
    const first = await open({ host: "127.0.0.1", port: 6004 })
    const error = await Facade.createEndpoint({
      host: "127.0.0.1",
      encapsulationPort: first.address.port,
      port: 6004,
    }).then(
      () => undefined,
      (error: unknown) => error,
    )
    expect(error).toMatchObject({ _tag: "ListenError", reason: "AddressInUse" })
  })

  it("runs with the caller's logger and layer: association logs reach the logger, connect is a span of the caller's tracer", async () => {
    const logs: Array<Observability.LogEntry> = []
    const tracer = TestTracer.make()
    const observed = {
      logger: (entry: Observability.LogEntry) => logs.push(entry),
      layer: tracer.layer,
    }
    const server = await open({ host: "127.0.0.1", port: 6005, listen: true, ...observed })
    const accepted = next<Facade.SctpAssociation>(server, "association")
    const client = await open({ host: "127.0.0.1", port: 6006, ...observed })
    const association = await client.connect({
      host: "127.0.0.1",
      udpPort: server.address.port,
      port: 6005,
    })
    const serverSide = await accepted
    await association.shutdown()
    await association.closed
    await serverSide.closed
    // The close is logged by a fiber of its own: wait for both sides' lines, bounded.
    const closedLines = () => logs.filter((entry) => entry.message.includes("association closed"))
    for (let waited = 0; waited < 5_000 && closedLines().length < 2; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    const line = (message: string) => logs.find((entry) => entry.message === message)
    expect(line("multihome: association opened")?.annotations).toMatchObject({
      association: association.id,
      peer: `127.0.0.1:${server.address.port}/6005`,
    })
    expect(line("multihome: association accepted")?.annotations).toMatchObject({
      association: serverSide.id,
    })
    expect(closedLines().map((entry) => [entry.message, entry.level])).toEqual([
      ["multihome: association closed (ShutdownComplete)", "Info"],
      ["multihome: association closed (ShutdownComplete)", "Info"],
    ])
    const connects = tracer.spans.filter((span) => span.name === "multihome.connect")
    expect(connects.length).toBe(1)
    expect(connects[0]!.attributes.get("multihome.peer")).toBe(
      `127.0.0.1:${server.address.port}/6005`,
    )
    expect(tracer.ended("multihome.connect")).toEqual(connects)
  })
})
