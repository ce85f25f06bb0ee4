import { once } from "node:events"
import { MemoryStore, NameServer, Store } from "@understudy/store"
import { Eventually, TestTracer } from "@understudy/testkit"
import type { Observability } from "@understudy/transport"
import { Effect, Exit, Metric, Option, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { CheckpointConfigError, TakeoverRefused } from "../src/CheckpointError.ts"
import { type CheckpointServer, createClient, createServer } from "../src/Facade.ts"
import * as Metrics from "../src/Metrics.ts"
import type { ServerEvent } from "../src/ObjectSession.ts"
import * as Proof from "../src/Proof.ts"

const clusterKey = Proof.newSecret()
const size = 6 * 1024 * 1024 + 17
const object = new Uint8Array(size).map((_, i) => (i * 13 + (i >>> 9)) & 0xff)
const source = {
  size: async (name: string) => (name === "obj" ? size : undefined),
  read: async (_name: string, offset: number, length: number) =>
    object.subarray(offset, offset + length),
}

const storeScope = Effect.runSync(Scope.make())
let store: Store.Store["Service"]
beforeAll(async () => {
  store = await Effect.runPromise(Scope.provide(MemoryStore.make(), storeScope))
})
afterAll(() => Effect.runPromise(Scope.close(storeScope, Exit.void)))

const start = (
  serverId: string,
  facade: Observability.FacadeOptions & { readonly advertise?: boolean } = {},
) =>
  createServer({
    ...facade,
    serverId,
    listen: "tcp://127.0.0.1:0",
    source,
    store: { store },
    service: "facade-test",
    clusterKey,
    policy: { everyBytes: 256 * 1024 },
    leaseTtl: "300 millis",
    // A small window: most of the object is still unsent when the server goes.
    windowBytesMax: 256 * 1024,
  })

const read = async (readable: NodeJS.ReadableStream, onChunk?: (total: number) => void) => {
  const chunks: Array<Buffer> = []
  let total = 0
  for await (const chunk of readable) {
    chunks.push(chunk as Buffer)
    total += (chunk as Buffer).length
    onChunk?.(total)
  }
  return Buffer.concat(chunks)
}

describe("createServer / createClient (Promise facade)", () => {
  it("a client given the name server downloads from the server that holds the service's name, through its close", {
    timeout: 60_000,
  }, async () => {
    const first = await start("na", { advertise: true })
    const client = createClient({
      service: { nameServer: { store }, service: "facade-test" },
      clusterKey,
    })
    let second: CheckpointServer | undefined
    try {
      // The first holds the name before the second stands by.
      const names = await Effect.runPromise(
        NameServer.make().pipe(Effect.provideService(Store.Store, store)),
      )
      await Eventually.promise(
        "the first server's name registered",
        async () => Option.isSome(await Effect.runPromise(names.resolve("checkpoint/facade-test"))),
        { within: "10 seconds", every: 10 },
      )
      second = await start("nb", { advertise: true })
      const opened: Array<{ name: string; size: number; server: string }> = []
      const resumed: Array<{ server: string }> = []
      client.on("opened", (event) => opened.push(event))
      client.on("resumed", (event) => resumed.push(event))
      let closing: Promise<void> | undefined
      const got = await read(client.get("obj"), (total) => {
        if (closing === undefined && total > size / 3) closing = first.close()
      })
      await closing
      expect(Buffer.compare(got, Buffer.from(object))).toBe(0)
      expect(opened).toEqual([{ name: "obj", size, server: first.address }])
      expect(resumed.map((event) => event.server)).toEqual([second.address])
    } finally {
      await client.close()
      await first.close().catch(() => undefined)
      await second?.close()
    }
  })

  it("a download rides through its server's close at the exact byte; events and metrics count it", {
    timeout: 60_000,
  }, async () => {
    const before = await Effect.runPromise(
      Effect.all({
        opened: Metric.value(Metric.withAttributes(Metrics.checkpointsWritten, { reason: "open" })),
        adopted: Metric.value(
          Metric.withAttributes(Metrics.checkpointsWritten, { reason: "takeover" }),
        ),
        takeovers: Metric.value(Metric.withAttributes(Metrics.takeovers, { outcome: "resumed" })),
        gaps: Metric.value(Metrics.takeoverGapMs),
        durations: Metric.value(Metrics.takeoverMs),
        resent: Metric.value(Metrics.bytesResent),
        sizes: Metric.value(Metrics.checkpointBytes),
        writes: Metric.value(Metrics.checkpointWriteMs),
        sessions: Metric.value(Metrics.sessionsServed),
      }),
    )
    // Both facades run with the caller's logger and tracer.
    const logs: Array<Observability.LogEntry> = []
    const tracer = TestTracer.make()
    const facade = {
      logger: (entry: Observability.LogEntry) => logs.push(entry),
      layer: tracer.layer,
    }
    const servers: Array<CheckpointServer> = [await start("fa", facade), await start("fb", facade)]
    const events: Array<ServerEvent> = []
    for (const server of servers)
      for (const tag of ["Checkpointed", "TakenOver", "Finished"])
        server.on(tag, (event: ServerEvent) => events.push(event))
    try {
      const client = createClient({
        service: servers.map((s) => s.address),
        clusterKey,
        ...facade,
      })
      const resumed: Array<{ offset: number }> = []
      client.on("resumed", (event) => resumed.push(event))
      let closing: Promise<void> | undefined
      const got = await read(client.get("obj"), (total) => {
        if (closing === undefined && total > size / 3) closing = servers[0]!.close()
      })
      await closing
      expect(got.length).toBe(size)
      expect(Buffer.compare(got, Buffer.from(object))).toBe(0)
      expect(resumed.length).toBe(1)
      expect(resumed[0]!.offset).toBeGreaterThan(0)
      const takenOver = events.filter((e) => e._tag === "TakenOver")
      expect(takenOver.length).toBe(1)
      expect(takenOver[0]!._tag === "TakenOver" && takenOver[0]!.offset).toBe(resumed[0]!.offset)
      expect(events.some((e) => e._tag === "Checkpointed" && e.bytes > 0)).toBe(true)
      expect(events.filter((e) => e._tag === "Finished").length).toBe(1)
      const after = await Effect.runPromise(
        Effect.all({
          opened: Metric.value(
            Metric.withAttributes(Metrics.checkpointsWritten, { reason: "open" }),
          ),
          adopted: Metric.value(
            Metric.withAttributes(Metrics.checkpointsWritten, { reason: "takeover" }),
          ),
          takeovers: Metric.value(Metric.withAttributes(Metrics.takeovers, { outcome: "resumed" })),
          gaps: Metric.value(Metrics.takeoverGapMs),
          durations: Metric.value(Metrics.takeoverMs),
          resent: Metric.value(Metrics.bytesResent),
          sizes: Metric.value(Metrics.checkpointBytes),
          writes: Metric.value(Metrics.checkpointWriteMs),
        }),
      )
      expect(after.takeovers.count - before.takeovers.count).toBe(1)
      expect(after.gaps.count - before.gaps.count).toBe(1)
      // The server that took over timed it, once: from its claim to the session served again.
      expect(after.durations.count - before.durations.count).toBe(1)
      expect(after.opened.count - before.opened.count).toBe(1)
      expect(after.adopted.count - before.adopted.count).toBe(1)
      // The bytes sent again are the takeover's; each checkpoint written is sized and timed.
      const resentBytes = takenOver[0]!._tag === "TakenOver" ? takenOver[0]!.bytesResent : -1
      expect(after.resent.count - before.resent.count).toBe(resentBytes)
      const written = events.filter((e) => e._tag === "Checkpointed")
      expect(after.sizes.count - before.sizes.count).toBeGreaterThanOrEqual(written.length)
      expect(after.sizes.sum - before.sizes.sum).toBeGreaterThanOrEqual(
        written.reduce((total, e) => total + (e._tag === "Checkpointed" ? e.bytes : 0), 0),
      )
      expect(after.writes.count - before.writes.count).toBe(after.sizes.count - before.sizes.count)
      // The session ended on both servers (the gauge is lowered as its fiber ends).
      await Eventually.promise(
        "the sessions gauge back where it was",
        async () =>
          (await Effect.runPromise(Metric.value(Metrics.sessionsServed))).value ===
          before.sessions.value,
        { within: "5 seconds", every: 50 },
      )
      // Log lines went to the caller's logger, annotated with the server, connection, session.
      const sessionId = takenOver[0]!.sessionId
      const tookOver = logs.find((entry) => entry.message === "checkpoint: took over")
      expect(tookOver?.annotations).toMatchObject({ serverId: "fb", sessionId })
      expect(String(tookOver?.annotations.connection)).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/)
      expect(
        logs.find((entry) => entry.message === "checkpoint: resumed")?.annotations,
      ).toMatchObject({
        sessionId,
        offset: resumed[0]!.offset,
      })
      // Spans: the takeover (claim, adopt, writes) on the new server, each write, the client's connections.
      const named = (name: string) => tracer.spans.filter((span) => span.name === name)
      const takeover = tracer.ended("checkpoint.takeover")
      expect(takeover.length).toBe(1)
      expect(takeover[0]!.attributes.get("sessionId")).toBe(sessionId)
      for (const child of ["checkpoint.claim", "checkpoint.adopt"]) {
        const [span] = named(child)
        expect(span?.parent._tag === "Some" && span.parent.value.spanId).toBe(takeover[0]!.spanId)
      }
      expect(
        named("checkpoint.write").some((span) => span.attributes.get("reason") === "bytes"),
      ).toBe(true)
      // The first connection opens the transfer; every later one (the takeover's) resumes it.
      const connects = named("checkpoint.client.connect").map((s) => s.attributes.get("resume"))
      expect(connects[0]).toBe(false)
      expect(connects.length).toBeGreaterThanOrEqual(2)
      expect(connects.slice(1).every((resume) => resume === true)).toBe(true)
      await client.close()
    } finally {
      for (const server of servers) await server.close()
    }
  })

  it("a window smaller than the client's acknowledgement interval does not stall the download", {
    timeout: 30_000,
  }, async () => {
    // The client acknowledges every 256 KiB by default: with a 128 KiB window the server
    // waited for an acknowledgement the client would never send (a reported hang).
    const server = await createServer({
      serverId: "fw",
      listen: "tcp://127.0.0.1:0",
      source,
      store: { store },
      service: "facade-window-test",
      clusterKey,
      policy: { everyBytes: 128 * 1024 },
      windowBytesMax: 128 * 1024,
    })
    try {
      const client = createClient({ service: [server.address], clusterKey })
      const readable = client.get("obj")
      let total = 0
      const stalled = new Promise<"stalled">((resolve) => {
        // Bounded by the stall itself: no byte for 10 s while the object is incomplete.
        let timer = setTimeout(() => resolve("stalled"), 10_000)
        readable.on("data", () => {
          clearTimeout(timer)
          timer = setTimeout(() => resolve("stalled"), 10_000)
        })
        readable.on("close", () => clearTimeout(timer))
      })
      const got = await Promise.race([read(readable, (n) => (total = n)), stalled])
      if (got === "stalled") readable.destroy()
      expect(got === "stalled" ? `stalled at byte ${total} of ${size}` : got.length).toBe(size)
      expect(Buffer.compare(got as Buffer, Buffer.from(object))).toBe(0)
    } finally {
      await server.close()
    }
  })

  it("an unknown object is an error on the stream, with its reason", {
    timeout: 30_000,
  }, async () => {
    const server = await start("fc")
    try {
      const client = createClient({ service: [server.address], clusterKey })
      const readable = client.get("nope")
      readable.resume()
      const [error] = await once(readable, "error").catch((e: unknown) => [e])
      expect(error).toBeInstanceOf(TakeoverRefused)
      expect((error as TakeoverRefused).reason).toBe("NoCheckpoint")
    } finally {
      await server.close()
    }
  })

  it("bad options are typed errors", async () => {
    await expect(
      createServer({ serverId: "x", listen: "tcp://127.0.0.1:0", source }),
    ).rejects.toBeInstanceOf(CheckpointConfigError)
    await expect(
      createServer({ serverId: "x", listen: "nonsense", source, insecure: true }),
    ).rejects.toBeInstanceOf(CheckpointConfigError)
    await expect(
      createServer({
        serverId: "x",
        listen: "tcp://127.0.0.1:0",
        source,
        insecure: true,
        policy: { everyBytes: -1 },
      }),
    ).rejects.toBeInstanceOf(CheckpointConfigError)
    for (const leaseTtl of [0, -1, "soon", Number.NaN] as const) {
      await expect(
        createServer({
          serverId: "x",
          listen: "tcp://127.0.0.1:0",
          source,
          insecure: true,
          leaseTtl: leaseTtl as never,
        }),
      ).rejects.toThrow(/positive duration[\s\S]*\["leaseTtl"\]/)
    }
    expect(() => createClient({ service: [], clusterKey })).toThrow(CheckpointConfigError)
    expect(() => createClient({ service: ["tcp://127.0.0.1:1"] })).toThrow(CheckpointConfigError)
  })
})
