/**
 * Bundles over loopback TCP: a control connection and two data connections, one of them
 * PAUSEd, taken over as one when their server stops; the paused transfer stays paused on
 * the new server until RESUME, and both objects arrive exactly.
 */
import * as dgram from "node:dgram"
import { describe, expect, it } from "@effect/vitest"
import { MemoryStore, Store } from "@understudy/store"
import { Address, NodeTransport, Transport } from "@understudy/transport"
import { Deferred, Effect, Exit, Fiber, Metric, Option, Redacted, Scope, Stream } from "effect"
import * as Checkpoint from "../src/Checkpoint.ts"
import * as CheckpointStore from "../src/CheckpointStore.ts"
import * as Message from "../src/Message.ts"
import * as Metrics from "../src/Metrics.ts"
import * as ObjectBundle from "../src/ObjectBundle.ts"
import * as ObjectSession from "../src/ObjectSession.ts"
import * as Proof from "../src/Proof.ts"

const clusterKey = Redacted.make(new Uint8Array(Proof.newSecret()))
const objects: Record<string, Uint8Array> = {
  one: new Uint8Array(5 * 1024 * 1024 + 17).map((_, i) => (i * 13 + (i >>> 9)) & 0xff),
  two: new Uint8Array(3 * 1024 * 1024 + 5).map((_, i) => (i * 5 + (i >>> 11)) & 0xff),
}
const source: ObjectSession.ObjectSource = {
  size: (name) => Effect.succeed(objects[name]?.length),
  read: (name, offset, length) => Effect.succeed(objects[name]!.subarray(offset, offset + length)),
  list: Effect.succeed(Object.entries(objects).map(([name, o]) => ({ name, size: o.length }))),
}
const prefix = CheckpointStore.defaultPrefix("bundle-test")

const startServer = (serverId: string, windowBytesMax = 256 * 1024) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const server = yield* ObjectSession.serve(
      {
        listen: Address.tcp("127.0.0.1", 0),
        clusterKey,
        policy: { everyBytes: 512 * 1024, every: "200 millis", objectBoundaries: true },
        windowBytesMax,
      },
      source,
    ).pipe(
      Effect.provideServiceEffect(
        CheckpointStore.CheckpointStore,
        CheckpointStore.make({ serverId, backend: "session", prefix, leaseTtl: 300 }),
      ),
      Scope.provide(scope),
    )
    return { server, stop: Scope.close(scope, Exit.void) }
  })

/** Reads a transfer in the background, counting what arrived. */
const reader = (download: ObjectBundle.Download) =>
  Effect.gen(function* () {
    const progress = { bytes: 0 }
    const chunks: Array<Uint8Array> = []
    const fiber = yield* Effect.forkScoped(
      Stream.runForEach(download.bytes, (chunk) =>
        Effect.sync(() => {
          chunks.push(chunk)
          progress.bytes += chunk.length
        }),
      ).pipe(Effect.as(chunks)),
    )
    return { progress, fiber }
  })

/** The senders heard on a multicast group (a socket joined to it on loopback), until the scope closes. */
const groupSources = (group: { readonly host: string; readonly port: number }) =>
  Effect.acquireRelease(
    Effect.callback<{ socket: dgram.Socket; sources: Set<string> }>((resume) => {
      const socket = dgram.createSocket({ type: "udp4", reuseAddr: true })
      const sources = new Set<string>()
      socket.on("message", (_bytes, info) => sources.add(`${info.address}:${info.port}`))
      socket.bind(group.port, "0.0.0.0", () => {
        socket.addMembership(group.host, "127.0.0.1")
        resume(Effect.succeed({ socket, sources }))
      })
    }),
    ({ socket }) => Effect.sync(() => socket.close()),
  ).pipe(Effect.map(({ sources }) => sources))

const same = (chunks: ReadonlyArray<Uint8Array>, object: Uint8Array) =>
  Buffer.compare(Buffer.concat(chunks.map((c) => Buffer.from(c))), Buffer.from(object)) === 0

describe("ObjectBundle over loopback TCP", () => {
  it.live("a window below the client's acknowledgement interval does not stall a transfer", () =>
    Effect.gen(function* () {
      // 128 KiB in flight, the client acknowledging every 256 KiB unless told the window.
      const a = yield* startServer("bw", 128 * 1024)
      const client = yield* ObjectBundle.connect({ service: [a.server.address], clusterKey })
      const r = yield* reader(yield* client.get("two"))
      // Bounded by the stall: no byte for 10 s means it never ends.
      let seen = -1
      while (r.fiber.pollUnsafe() === undefined && r.progress.bytes !== seen) {
        seen = r.progress.bytes
        yield* Effect.sleep(10_000).pipe(Effect.raceFirst(Fiber.await(r.fiber)))
      }
      expect(r.progress.bytes).toBe(objects.two!.length)
      expect(same(yield* Fiber.join(r.fiber), objects.two!)).toBe(true)
      yield* client.close
      yield* a.stop
    }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer), Effect.provide(NodeTransport.layer)),
  )

  it.live("LIST, two transfers, one PAUSEd: a takeover moves the bundle; paused stays paused", () =>
    Effect.gen(function* () {
      const a = yield* startServer("ba")
      const b = yield* startServer("bb")
      const timedBefore = (yield* Metric.value(Metrics.takeoverMs)).count
      const resumed: Array<{ server: string }> = []
      const took = yield* Deferred.make<void>()
      const client = yield* ObjectBundle.connect({
        service: [a.server.address, b.server.address],
        clusterKey,
        onResumed: (event) => {
          resumed.push(event)
          Deferred.doneUnsafe(took, Effect.void)
        },
      })
      const listed = yield* client.list
      expect(listed.map((o) => o.name).sort()).toEqual(["one", "two"])
      const missing = yield* client.get("nothing").pipe(Effect.flip)
      expect(missing._tag).toBe("CheckpointCommandFailed")
      const one = yield* client.get("one")
      const two = yield* client.get("two")
      expect(new Set([one.transfer, two.transfer]).size).toBe(2)
      yield* client.pause(two.transfer)
      const r1 = yield* reader(one)
      const r2 = yield* reader(two)
      // Transfer one well under way, then its server stops: the whole bundle moves.
      while (r1.progress.bytes < objects.one!.length / 3) yield* Effect.sleep(5)
      yield* a.stop
      yield* Deferred.await(took)
      const pausedAt = r2.progress.bytes
      const chunks1 = yield* Fiber.join(r1.fiber)
      expect(same(chunks1, objects.one!)).toBe(true)
      // Transfer one ran to its end on the new server; the paused one got nothing from it.
      expect(r2.progress.bytes).toBe(pausedAt)
      expect(pausedAt).toBeLessThan(objects.two!.length)
      yield* client.resume(two.transfer)
      const chunks2 = yield* Fiber.join(r2.fiber)
      expect(same(chunks2, objects.two!)).toBe(true)
      expect(resumed.length).toBe(1)
      expect(resumed[0]!.server).toBe(Address.format(b.server.address))
      // The server that took the bundle over timed its takeover, once.
      expect((yield* Metric.value(Metrics.takeoverMs)).count - timedBefore).toBe(1)
      yield* client.close
      yield* b.stop
    }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer), Effect.provide(NodeTransport.layer)),
  )

  it.live(
    "a UDP transfer and a multicast one in the bundle with a TCP one: checkpointed with it, taken over with it",
    () =>
      Effect.gen(function* () {
        const store = yield* Store.Store
        const a = yield* startServer("ua")
        const b = yield* startServer("ub")
        const took = yield* Deferred.make<void>()
        const client = yield* ObjectBundle.connect({
          service: [a.server.address, b.server.address],
          clusterKey,
          // Multicast on one host: the group's traffic looped back on the loopback interface.
          multicastInterface: "127.0.0.1",
          onResumed: () => Deferred.doneUnsafe(took, Effect.void),
        })
        const tcp = yield* client.get("one")
        const udp = yield* client.get("two", { transport: "udp" })
        const multicast = yield* client.get("one", { transport: "udp-multicast" })
        // Every member in the bundle's checkpoint, with its transport (and group).
        const latest = yield* store
          .get(CheckpointStore.keys(prefix).checkpoint(client.sessionId()!))
          .pipe(Effect.map(Option.getOrThrow))
        const checkpoint = Checkpoint.decode(latest.value)
        if (checkpoint._tag === "Failure") return expect.fail(checkpoint.failure.message)
        const members = checkpoint.success.connections.map((c) => [c.name, c.transport])
        expect(members).toEqual([
          ["control", "tcp"],
          [tcp.transfer, "tcp"],
          [udp.transfer, "udp"],
          [multicast.transfer, "udp-multicast"],
        ])
        const group = checkpoint.success.connections[3]!.group!
        expect(group.host).toMatch(/^239\.255\./)
        const heard = yield* groupSources(group)
        const readers = [yield* reader(tcp), yield* reader(udp), yield* reader(multicast)]
        // All three under way, then their server stops: the whole bundle moves.
        while (readers.some((r) => r.progress.bytes < 256 * 1024)) yield* Effect.sleep(5)
        const before = readers.map((r) => r.progress.bytes)
        yield* a.stop
        yield* Deferred.await(took)
        const [one, two, oneAgain] = yield* Effect.all(readers.map((r) => Fiber.join(r.fiber)))
        expect(same(one!, objects.one!)).toBe(true)
        expect(same(two!, objects.two!)).toBe(true)
        expect(same(oneAgain!, objects.one!)).toBe(true)
        // The UDP members were mid-way when the takeover came.
        expect(before[1]).toBeLessThan(objects.two!.length)
        expect(before[2]).toBeLessThan(objects.one!.length)
        // Both servers sent the multicast member to its group: a listener of our own, joined
        // to it, heard the first server and the one that took over.
        expect(heard.size).toBeGreaterThanOrEqual(2)
        yield* client.close
        yield* b.stop
      }).pipe(
        Effect.scoped,
        Effect.provide(MemoryStore.layer),
        Effect.provide(NodeTransport.layer),
      ),
  )

  it.live("a reader that lags when its server stops loses no chunk: the one waiting for room", () =>
    Effect.gen(function* () {
      const store = yield* Store.Store
      // A window above what a reader's queue holds (64 chunks of 64 KiB): unread, the data
      // connection fills the queue and waits for room with the next chunk in hand.
      const a = yield* startServer("la", 8 * 1024 * 1024)
      const b = yield* startServer("lb", 8 * 1024 * 1024)
      const resumed: Array<{ server: string }> = []
      const client = yield* ObjectBundle.connect({
        service: [a.server.address, b.server.address],
        clusterKey,
        onResumed: (event) => resumed.push(event),
      })
      const one = yield* client.get("one")
      const key = CheckpointStore.keys(prefix).checkpoint(client.sessionId()!)
      const sent = store.get(key).pipe(
        Effect.map((latest) => {
          if (Option.isNone(latest)) return 0
          const checkpoint = Checkpoint.decode(latest.value.value)
          if (checkpoint._tag === "Failure") return 0
          const data = checkpoint.success.connections.find((c) => c.name === one.transfer)
          return data === undefined ? 0 : data.currentSeqSource - data.initialSeqSource
        }),
      )
      // More than the queue holds sent (checkpointed every 512 KiB), then delivered.
      for (let i = 0; i < 1_000 && (yield* sent) < 4 * 1024 * 1024 + 64 * 1024; i++)
        yield* Effect.sleep(10)
      yield* Effect.sleep(200)
      yield* a.stop
      const r = yield* reader(one)
      const chunks = yield* Fiber.join(r.fiber)
      expect(r.progress.bytes).toBe(objects.one!.length)
      expect(same(chunks, objects.one!)).toBe(true)
      expect(resumed.map((event) => event.server)).toEqual([Address.format(b.server.address)])
      yield* client.close
      yield* b.stop
    }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer), Effect.provide(NodeTransport.layer)),
  )

  it.live("a planned hand-off moves the bundle to the named server; the first stays up", () =>
    Effect.gen(function* () {
      const store = yield* Store.Store
      const a = yield* startServer("hba")
      const b = yield* startServer("hbb")
      const resumed: Array<{ server: string }> = []
      const client = yield* ObjectBundle.connect({
        service: [a.server.address, b.server.address],
        clusterKey,
        onResumed: (event) => resumed.push(event),
      })
      // Paused: the transfer can not end before the hand-off.
      const one = yield* client.get("one", { paused: true })
      const r1 = yield* reader(one)
      yield* store.put(CheckpointStore.keys(prefix).handoff("hba"), new Uint8Array(0))
      while (resumed.length === 0) yield* Effect.sleep(10)
      expect(r1.progress.bytes).toBe(0)
      yield* client.resume(one.transfer)
      expect(same(yield* Fiber.join(r1.fiber), objects.one!)).toBe(true)
      expect(resumed.map((r) => r.server)).toEqual([Address.format(b.server.address)])
      expect(a.server.sessions()).toBe(0)
      yield* client.close
      yield* a.stop
      yield* b.stop
    }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer), Effect.provide(NodeTransport.layer)),
  )

  it.live(
    "a forged attach and a bundle open with data channels are refused; nothing else moves",
    () =>
      Effect.gen(function* () {
        const a = yield* startServer("fa")
        const transport = yield* Transport.Transport
        const ask = (request: Message.Message) =>
          Effect.scoped(
            Effect.gen(function* () {
              const connection = yield* transport.connect(a.server.address, {
                codec: Message.codec,
                clusterKey,
              })
              yield* connection.send(request)
              return yield* Stream.runHead(connection.messages)
            }),
          )
        const client = yield* ObjectBundle.connect({ service: [a.server.address], clusterKey })
        const two = yield* client.get("two", { paused: true })
        // Attach to an unknown bundle; then to a live bundle's transfer without its secret.
        for (const sessionId of ["no-such-bundle", client.sessionId()!]) {
          const refused = yield* ask({
            _tag: "Attach",
            sessionId,
            channel: two.transfer,
            counter: 0,
            proof: new Uint8Array(32),
          })
          expect(refused).toEqual(
            Option.some(
              expect.objectContaining({
                _tag: "Refused",
                reason: sessionId === "no-such-bundle" ? "Owned" : "WrongSession",
              }),
            ),
          )
        }
        const open = yield* ask({
          _tag: "Open",
          protocol: ObjectBundle.protocol,
          channels: [
            { name: "control", initialSeq: 1 },
            { name: "data-1", initialSeq: 1 },
          ],
        })
        expect(open).toEqual(
          Option.some(expect.objectContaining({ _tag: "Refused", reason: "WrongSession" })),
        )
        // The bundle goes on: resumed, it delivers its object.
        const r2 = yield* reader(two)
        yield* client.resume(two.transfer)
        expect(same(yield* Fiber.join(r2.fiber), objects.two!)).toBe(true)
        yield* client.close
        yield* a.stop
      }).pipe(
        Effect.scoped,
        Effect.provide(MemoryStore.layer),
        Effect.provide(NodeTransport.layer),
      ),
  )
})
