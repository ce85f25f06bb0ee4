/**
 * The Promise / EventEmitter API on real UDP over loopback.
 */
import { afterEach, describe, expect, it } from "@effect/vitest"
import type * as Endpoint from "../src/Endpoint.ts"
import * as Facade from "../src/Facade.ts"

const opened: Array<Facade.SctpEndpoint> = []

afterEach(async () => {
  await Promise.all(opened.splice(0).map((endpoint) => endpoint.close()))
})

const open = async (options: Facade.OpenOptions) => {
  const endpoint = await Facade.open(options)
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
    expect(error).toMatchObject({ _tag: "ConnectError", reason: "Aborted" })
  })

  it("open rejects when the address is taken", async () => {
    const first = await open({ host: "127.0.0.1", port: 6004 })
    const error = await Facade.open({
      host: "127.0.0.1",
      encapsulationPort: first.address.port,
      port: 6004,
    }).then(
      () => undefined,
      (error: unknown) => error,
    )
    expect(error).toMatchObject({ _tag: "ListenError", reason: "AddressInUse" })
  })
})
