import { describe, expect, it } from "@effect/vitest"
import { MemoryStore, NameServer, Store } from "@understudy/store"
import { Address, NodeTransport, Transport } from "@understudy/transport"
import { Deferred, Effect, Exit, Metric, Option, Queue, Redacted, Scope, Stream } from "effect"
import * as CheckpointStore from "../src/CheckpointStore.ts"
import * as Discovery from "../src/Discovery.ts"
import * as Message from "../src/Message.ts"
import * as Metrics from "../src/Metrics.ts"
import * as ObjectSession from "../src/ObjectSession.ts"
import * as Proof from "../src/Proof.ts"

const clusterKey = Redacted.make(new Uint8Array(Proof.newSecret()))
const size = 6 * 1024 * 1024 + 123
const object = new Uint8Array(size).map((_, i) => (i * 7 + (i >>> 10)) & 0xff)
const source: ObjectSession.ObjectSource = {
  size: (name) => Effect.succeed(name === "big" ? size : undefined),
  read: (_name, offset, length) => Effect.succeed(object.subarray(offset, offset + length)),
}
const prefix = CheckpointStore.defaultPrefix("object-test")

/** Starts a server in its own scope, so a test can end it like a crash. */
const startServer = (serverId: string, windowBytesMax?: number, sessionsMax?: number) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const server = yield* ObjectSession.serve(
      {
        listen: Address.tcp("127.0.0.1", 0),
        clusterKey,
        policy: { everyBytes: 512 * 1024, every: "200 millis", objectBoundaries: true },
        ...(windowBytesMax === undefined ? {} : { windowBytesMax }),
        ...(sessionsMax === undefined ? {} : { sessionsMax }),
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

/**
 * Downloads "big" from servers `a` and `b`, running `atByte` once (reading waits on it) when
 * more than `threshold` bytes arrived.
 */
const readOnce = <E, R>(
  [a, b]: ReadonlyArray<{ readonly server: ObjectSession.Server }>,
  threshold: number,
  atByte: () => Effect.Effect<unknown, E, R>,
) =>
  Effect.gen(function* () {
    const resumed: Array<{ gapMs: number; offset: number; server: string }> = []
    const opened: Array<{ size: number; server: string }> = []
    let read = 0
    let done = false
    const chunks = yield* ObjectSession.get("big", {
      service: [a!.server.address, b!.server.address],
      clusterKey,
      onOpened: (event) => opened.push(event),
      onResumed: (event) => resumed.push(event),
    }).pipe(
      Stream.tap((chunk) => {
        read += chunk.length
        if (done || read <= threshold) return Effect.void
        done = true
        return atByte()
      }),
      Stream.runCollect,
    )
    return { chunks, resumed, opened }
  })

const concat = (chunks: ReadonlyArray<Uint8Array>) =>
  Buffer.concat(chunks.map((c) => Buffer.from(c)))

describe("ObjectSession over loopback TCP", () => {
  it.live("a transfer whose server stops mid-way resumes on the other at the exact byte", () =>
    Effect.gen(function* () {
      const a = yield* startServer("a")
      const b = yield* startServer("b")
      let stopped = false
      const { chunks, resumed, opened } = yield* readOnce([a, b], size / 3, () =>
        Effect.sync(() => {
          stopped = true
        }).pipe(Effect.andThen(a.stop)),
      )
      expect(stopped).toBe(true)
      // The first server told the object's size, once: the takeover does not tell it again.
      expect(opened).toEqual([{ size, server: Address.format(a.server.address) }])
      expect(resumed.length).toBe(1)
      expect(resumed[0]!.offset).toBeGreaterThan(0)
      const got = concat(chunks)
      expect(got.length).toBe(size)
      expect(Buffer.compare(got, Buffer.from(object))).toBe(0)
      yield* b.stop
    }).pipe(Effect.provide(MemoryStore.layer), Effect.provide(NodeTransport.layer)),
  )

  it.live("a client that finds the service through the name server rides through a takeover", () =>
    Effect.gen(function* () {
      /** A server that contends for the service's name until `stop` (it dies with it). */
      const named = (serverId: string) =>
        Effect.gen(function* () {
          const started = yield* startServer(serverId)
          const scope = yield* Scope.make()
          yield* Discovery.advertise({
            service: "object-test",
            serverId,
            address: started.server.address,
            ttl: 300,
          }).pipe(Scope.provide(scope))
          return { ...started, stop: Effect.andThen(Scope.close(scope, Exit.void), started.stop) }
        })
      const locator = yield* Discovery.nameServer("object-test")
      const a = yield* named("na")
      // a holds the name before b stands by.
      for (let i = 0; i < 200 && Option.isNone(yield* locator.locate(0)); i++)
        yield* Effect.sleep(10)
      const b = yield* named("nb")
      const resumed: Array<{ server: string; offset: number }> = []
      let read = 0
      let stopped = false
      const chunks = yield* ObjectSession.get("big", {
        service: locator,
        clusterKey,
        onResumed: (event) => resumed.push(event),
      }).pipe(
        Stream.tap((chunk) => {
          read += chunk.length
          if (stopped || read < size / 3) return Effect.void
          stopped = true
          return a.stop
        }),
        Stream.runCollect,
      )
      expect(stopped).toBe(true)
      expect(Buffer.compare(concat(chunks), Buffer.from(object))).toBe(0)
      expect(resumed.map((r) => r.server)).toEqual([Address.format(b.server.address)])
      expect(resumed[0]!.offset).toBeGreaterThan(0)
      yield* b.stop
    }).pipe(
      Effect.provide(NameServer.layer),
      Effect.provide(MemoryStore.layer),
      Effect.provide(NodeTransport.layer),
    ),
  )

  it.live("a full server refuses a new session as Overloaded; the client goes on to the next", () =>
    Effect.gen(function* () {
      const full = yield* startServer("full", undefined, 0)
      const b = yield* startServer("ob")
      const overloaded = Metric.withAttributes(Metrics.takeovers, { outcome: "Overloaded" })
      const before = (yield* Metric.value(overloaded)).count
      const chunks = yield* ObjectSession.get("big", {
        service: [full.server.address, b.server.address],
        clusterKey,
      }).pipe(Stream.runCollect)
      expect(Buffer.compare(concat(chunks), Buffer.from(object))).toBe(0)
      expect((yield* Metric.value(overloaded)).count - before).toBe(1)
      yield* full.stop
      yield* b.stop
    }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer), Effect.provide(NodeTransport.layer)),
  )

  it.live("a planned hand-off moves a live transfer to the next server at the exact byte", () =>
    Effect.gen(function* () {
      const store = yield* Store.Store
      // A small window: the server can not send the whole object before the request lands.
      const a = yield* startServer("ha", 256 * 1024)
      const b = yield* startServer("hb", 256 * 1024)
      const handedOff: Array<ObjectSession.ServerEvent> = []
      const went = yield* Deferred.make<void>()
      yield* Effect.forkScoped(
        Stream.runForEach(a.server.events, (event) =>
          event._tag === "HandedOff"
            ? Effect.sync(() => handedOff.push(event)).pipe(
                Effect.andThen(Deferred.succeed(went, undefined)),
              )
            : Effect.void,
        ),
      )
      const takenOver: Array<ObjectSession.ServerEvent> = []
      yield* Effect.forkScoped(
        Stream.runForEach(b.server.events, (event) =>
          Effect.sync(() => {
            if (event._tag === "TakenOver") takenOver.push(event)
          }),
        ),
      )
      // What `takeover-stream handoff --from ha` writes. Reading waits until a handed the
      // session off, so the transfer can not end first.
      const { chunks, resumed } = yield* readOnce([a, b], size / 8, () =>
        store
          .put(CheckpointStore.keys(prefix).handoff("ha"), new Uint8Array(0))
          .pipe(Effect.andThen(Deferred.await(went))),
      )
      const got = concat(chunks)
      expect(got.length).toBe(size)
      expect(Buffer.compare(got, Buffer.from(object))).toBe(0)
      expect(handedOff.length).toBe(1)
      expect(resumed.length).toBe(1)
      expect(resumed[0]!.server).toBe(Address.format(b.server.address))
      expect(takenOver.length).toBe(1)
      // a is alive and serves nothing: the transfer went, it was not killed.
      expect(a.server.sessions()).toBe(0)
      yield* a.stop
      yield* b.stop
    }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer), Effect.provide(NodeTransport.layer)),
  )

  it.live(
    "forged, replayed and unknown-session resume requests are refused with their reason",
    () =>
      Effect.gen(function* () {
        const a = yield* startServer("a2")
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
        const unknown = yield* ask({
          _tag: "Resume",
          sessionId: "no-such-session",
          counter: 1,
          acks: { data: 0 },
          proof: new Uint8Array(32),
        })
        expect(unknown).toEqual(
          Option.some(expect.objectContaining({ _tag: "Refused", reason: "WrongSession" })),
        )
        const odd = yield* ask({ _tag: "Ack", ack: 5 })
        expect(odd).toEqual(
          Option.some(expect.objectContaining({ _tag: "Refused", reason: "WrongSession" })),
        )
        // A real session: opened, some bytes read, then the client's connection drops.
        const opened = yield* Effect.scoped(
          Effect.gen(function* () {
            const connection = yield* transport.connect(a.server.address, {
              codec: Message.codec,
              clusterKey,
            })
            const isn = Proof.newInitialSeq()
            yield* connection.send({
              _tag: "Open",
              protocol: ObjectSession.protocol,
              channels: [{ name: "data", initialSeq: isn }],
            })
            yield* connection.send({
              _tag: "Data",
              seq: isn,
              bytes: new TextEncoder().encode("big"),
            })
            const inbox = yield* Queue.bounded<Message.Message>(64)
            yield* Effect.forkScoped(
              Stream.runForEach(connection.messages, (m) => Queue.offer(inbox, m)),
            )
            const first = yield* Queue.take(inbox)
            if (first._tag !== "Opened")
              return yield* Effect.die(new Error(`expected Opened, got ${first._tag}`))
            let received = 0
            while (received < 100_000) {
              const message = yield* Queue.take(inbox)
              if (message._tag === "Data") received += message.bytes.length
            }
            return {
              sessionId: first.sessionId,
              secret: first.secret,
              isn: first.channels[0]!.initialSeq,
              received,
            }
          }),
        )
        const resume = (counter: number, ack: number, secret = opened.secret): Message.Message => ({
          _tag: "Resume",
          sessionId: opened.sessionId,
          counter,
          acks: { data: ack },
          proof: Proof.sign(secret, opened.sessionId, counter, { data: ack }),
        })
        const ack = opened.isn + opened.received
        const forged = yield* ask(resume(1, ack, Proof.newSecret()))
        expect(forged).toEqual(
          Option.some(expect.objectContaining({ _tag: "Refused", reason: "WrongSession" })),
        )
        const beyond = yield* ask(resume(1, opened.isn + size + 1))
        expect(beyond).toEqual(
          Option.some(expect.objectContaining({ _tag: "Refused", reason: "BeyondSent" })),
        )
        const tooOld = yield* ask(resume(2, opened.isn - 1))
        expect(tooOld).toEqual(
          Option.some(expect.objectContaining({ _tag: "Refused", reason: "TooOld" })),
        )
        // An honest resume is accepted and uses its counter up: the same proof replayed is refused.
        const accepted = yield* ask(resume(3, ack))
        expect(accepted).toEqual(
          // The server's window (default 4 MiB): the client acknowledges within it.
          Option.some({
            _tag: "Resumed",
            receiveNext: { data: expect.any(Number) },
            window: 4 * 1024 * 1024,
          }),
        )
        const replayed = yield* ask(resume(3, ack))
        expect(replayed).toEqual(
          Option.some(expect.objectContaining({ _tag: "Refused", reason: "ReplayedProof" })),
        )
        yield* a.stop
      }).pipe(Effect.provide(MemoryStore.layer), Effect.provide(NodeTransport.layer)),
  )
})
