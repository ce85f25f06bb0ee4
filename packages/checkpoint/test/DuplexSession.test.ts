/**
 * Two-way sessions over loopback TCP: the client writes a stream to the service and reads
 * the server application's answer, while the server it talks to stops and a second one
 * takes the session over. What the client reads must be, byte for byte, the answer to what
 * it wrote (a byte lost or repeated either way changes it), compared by SHA-256.
 */
import { describe, expect, it } from "@effect/vitest"
import { MemoryStore, Store } from "@understudy/store"
import { Address, NodeTransport } from "@understudy/transport"
import {
  type Cause,
  Deferred,
  Effect,
  Exit,
  Fiber,
  Metric,
  Queue,
  Redacted,
  Scope,
  Stream,
} from "effect"
import * as CheckpointStore from "../src/CheckpointStore.ts"
import * as DuplexSession from "../src/DuplexSession.ts"
import type * as Handshake from "../src/internal/handshake.ts"
import type * as Message from "../src/Message.ts"
import * as Metrics from "../src/Metrics.ts"
import * as ObjectSession from "../src/ObjectSession.ts"
import * as Proof from "../src/Proof.ts"
import * as App from "./support/duplexApp.ts"

const clusterKey = Redacted.make(new Uint8Array(Proof.newSecret()))
const prefix = CheckpointStore.defaultPrefix("duplex-test")
const noObjects: ObjectSession.ObjectSource = {
  size: () => Effect.succeed(undefined),
  read: () => Effect.succeed(new Uint8Array(0)),
}

/** A server in its own scope, so a test can stop it mid-session. */
const startServer = (serverId: string, duplex: boolean) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const server = yield* ObjectSession.serve(
      {
        listen: Address.tcp("127.0.0.1", 0),
        clusterKey,
        ...(duplex ? { duplex: App.handler } : {}),
      },
      noObjects,
    ).pipe(
      Effect.provideServiceEffect(
        CheckpointStore.CheckpointStore,
        CheckpointStore.make({ serverId, backend: "session", prefix, leaseTtl: 300 }),
      ),
      Scope.provide(scope),
    )
    return { server, stop: Scope.close(scope, Exit.void) }
  })

/** Writes `input` in uneven chunks (from `write`), counting what was handed over. */
const chunked = (input: Uint8Array) => {
  const chunks: Array<Uint8Array> = []
  for (let at = 0, i = 0; at < input.length; i++) {
    const length = 1 + ((i * 7_919) % 50_000)
    chunks.push(input.subarray(at, at + length))
    at += length
  }
  return chunks
}

describe("DuplexSession over loopback TCP", () => {
  it.live(
    "the client writes and reads through a takeover by a second server: both ways exactly once",
    () =>
      Effect.gen(function* () {
        const a = yield* startServer("da", true)
        const b = yield* startServer("db", true)
        const input = App.input(5 * 1024 * 1024 + 17, 3)
        const resumed: Array<{ readOffset: number; writeOffset: number }> = []
        const client = yield* DuplexSession.connect({
          service: [a.server.address, b.server.address],
          clusterKey,
          onResumed: (event) => resumed.push(event),
        })
        let written = 0
        let writtenAtStop: number | undefined
        const writer = yield* Effect.forkScoped(
          Effect.gen(function* () {
            for (const chunk of chunked(input)) {
              yield* client.write(chunk)
              written += chunk.length
            }
            yield* client.end
          }),
        )
        let read = 0
        const chunks = yield* client.read.pipe(
          Stream.tap((chunk) => {
            read += chunk.length
            if (writtenAtStop !== undefined || read <= input.length / 3) return Effect.void
            writtenAtStop = written
            return a.stop
          }),
          Stream.runCollect,
        )
        yield* Fiber.join(writer)
        // The server stopped while the client was still writing.
        expect(writtenAtStop).toBeLessThan(input.length)
        expect(resumed.length).toBe(1)
        expect(resumed[0]!.writeOffset).toBeGreaterThan(0)
        expect(resumed[0]!.readOffset).toBeGreaterThan(0)
        expect(App.sha256(chunks)).toBe(App.sha256([App.expected(input)]))
        yield* b.stop
      }).pipe(
        Effect.scoped,
        Effect.provide(MemoryStore.layer),
        Effect.provide(NodeTransport.layer),
      ),
  )

  it.live("a Node Duplex and an Effect Sink carry the same session through a takeover", () =>
    Effect.gen(function* () {
      const a = yield* startServer("na", true)
      const b = yield* startServer("nb", true)
      const input = App.input(3 * 1024 * 1024 + 5, 11)
      const client = yield* DuplexSession.connect({
        service: [a.server.address, b.server.address],
        clusterKey,
      })
      const duplex = yield* DuplexSession.toNodeDuplex(client)
      const stopped = yield* Deferred.make<void>()
      // Half the input through the Node Duplex, the server stopped, the rest and the end.
      const half = Math.floor(input.length / 2)
      const writes = Effect.promise(
        () =>
          new Promise<void>((resolve, reject) => {
            duplex.write(input.subarray(0, half), (error) =>
              error ? reject(error) : resolve(undefined),
            )
          }),
      ).pipe(
        Effect.andThen(a.stop),
        Effect.andThen(Deferred.succeed(stopped, undefined)),
        Effect.andThen(
          Effect.promise(
            () =>
              new Promise<void>((resolve, reject) => {
                duplex.end(input.subarray(half), () => resolve())
                duplex.once("error", reject)
              }),
          ),
        ),
      )
      const reads = Effect.promise(async () => {
        const got: Array<Uint8Array> = []
        for await (const chunk of duplex) got.push(chunk as Uint8Array)
        return got
      })
      const [, chunks] = yield* Effect.all([writes, reads], { concurrency: 2 })
      expect(yield* Deferred.isDone(stopped)).toBe(true)
      expect(App.sha256(chunks)).toBe(App.sha256([App.expected(input)]))

      // The same through the Effect Sink, with b stopped and a third server taking over.
      const c = yield* startServer("nc", true)
      const second = yield* DuplexSession.connect({
        service: [b.server.address, c.server.address],
        clusterKey,
      })
      let read = 0
      let stoppedB = false
      const [, answer] = yield* Effect.all(
        [
          Stream.fromIterable(chunked(input)).pipe(Stream.run(second.sink)),
          second.read.pipe(
            Stream.tap((chunk) => {
              read += chunk.length
              if (stoppedB || read <= input.length / 4) return Effect.void
              stoppedB = true
              return b.stop
            }),
            Stream.runCollect,
          ),
        ],
        { concurrency: 2 },
      )
      expect(stoppedB).toBe(true)
      expect(App.sha256(answer)).toBe(App.sha256([App.expected(input)]))
      yield* c.stop
    }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer), Effect.provide(NodeTransport.layer)),
  )

  it.live("a planned hand-off moves a live two-way session to the next server", () =>
    Effect.gen(function* () {
      const store = yield* Store.Store
      const a = yield* startServer("ha", true)
      const b = yield* startServer("hb", true)
      const events = (server: ObjectSession.Server, tag: ObjectSession.ServerEvent["_tag"]) =>
        Effect.gen(function* () {
          const seen = yield* Deferred.make<void>()
          yield* Effect.forkScoped(
            Stream.runForEach(server.events, (event) =>
              event._tag === tag ? Deferred.succeed(seen, undefined) : Effect.void,
            ),
          )
          return seen
        })
      const handedOff = yield* events(a.server, "HandedOff")
      const takenOver = yield* events(b.server, "TakenOver")
      const timedBefore = (yield* Metric.value(Metrics.takeoverMs)).count
      const input = App.input(2 * 1024 * 1024 + 3, 5)
      const client = yield* DuplexSession.connect({
        service: [a.server.address, b.server.address],
        clusterKey,
      })
      let read = 0
      let asked = false
      const [, answer] = yield* Effect.all(
        [
          Stream.fromIterable(chunked(input)).pipe(Stream.run(client.sink)),
          client.read.pipe(
            Stream.tap((chunk) => {
              read += chunk.length
              if (asked || read <= input.length / 3) return Effect.void
              asked = true
              // What `takeover-stream handoff --from ha` writes; reading waits until it went.
              return store
                .put(CheckpointStore.keys(prefix).handoff("ha"), new Uint8Array(0))
                .pipe(Effect.andThen(Deferred.await(handedOff)))
            }),
            Stream.runCollect,
          ),
        ],
        { concurrency: 2 },
      )
      expect(yield* Deferred.isDone(takenOver)).toBe(true)
      // The server that took the session over timed its takeover, once.
      expect((yield* Metric.value(Metrics.takeoverMs)).count - timedBefore).toBe(1)
      expect(a.server.sessions()).toBe(0)
      expect(App.sha256(answer)).toBe(App.sha256([App.expected(input)]))
      yield* a.stop
      yield* b.stop
    }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer), Effect.provide(NodeTransport.layer)),
  )

  it.live("a server without a duplex application refuses the session as Unsupported", () =>
    Effect.gen(function* () {
      const plain = yield* startServer("plain", false)
      const client = yield* DuplexSession.connect({
        service: [plain.server.address],
        clusterKey,
      })
      const outcome = yield* Stream.runCollect(client.read).pipe(Effect.flip)
      expect(outcome._tag).toBe("TakeoverRefused")
      expect(outcome.reason).toBe("Unsupported")
      yield* plain.stop
    }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer), Effect.provide(NodeTransport.layer)),
  )
})

describe("DuplexSession's server driver", () => {
  it.effect(
    "a planned hand-off asked for while the session's input queue is full is not lost",
    () =>
      Effect.gen(function* () {
        // Checkpoint writes wait at `gate` once it is set: the driver is held mid-step.
        const memory = yield* Store.Store
        let gate: Deferred.Deferred<void> | undefined
        const blocked = yield* Deferred.make<void>()
        const store: Store.Store["Service"] = {
          ...memory,
          put: (key, value, options) =>
            gate === undefined
              ? memory.put(key, value, options)
              : Deferred.succeed(blocked, undefined).pipe(
                  Effect.andThen(Deferred.await(gate)),
                  Effect.andThen(memory.put(key, value, options)),
                ),
        }
        const checkpoints = yield* CheckpointStore.make({
          serverId: "queue-full",
          backend: "session",
          prefix,
          leaseTtl: 300,
        }).pipe(Effect.provideService(Store.Store, store))
        const events: Array<ObjectSession.ServerEvent> = []
        const sent: Array<Message.Message> = []
        const handoffs = new Set<(to: string | undefined) => void>()
        const server = DuplexSession.makeServer({
          checkpoints,
          handler: App.handler,
          windowBytesMax: 1024 * 1024,
          segmentBytes: 16 * 1024,
          local: { host: "127.0.0.1", port: 1 },
          emit: (event) => Effect.sync(() => events.push(event)),
          refuse: () => Effect.die(new Error("refused")),
          handoffs,
        })
        // The server only sends on its connection.
        const connection = {
          send: (message: Message.Message) => Effect.sync(() => void sent.push(message)),
        } as unknown as Handshake.Conn
        // One message at a time: once `offer` returns, the reader has forwarded all before the last.
        const inbox = yield* Queue.bounded<Message.Message, Cause.Done>(1)
        const clientIsn = 5_000
        const session = yield* Effect.forkScoped(
          server.open(
            connection,
            inbox,
            {
              _tag: "Open",
              protocol: DuplexSession.protocol,
              channels: [{ name: "data", initialSeq: clientIsn }],
            },
            { host: "127.0.0.1", port: 2 },
          ),
        )
        while (sent.length === 0) yield* Effect.yieldNow
        const opened = sent[0]!
        if (opened._tag !== "Opened") return yield* Effect.die(new Error(`got ${opened._tag}`))
        const serverIsn = opened.channels[0]!.initialSeq
        // The client's bytes: the driver writes a checkpoint of them and waits at the gate.
        gate = yield* Deferred.make<void>()
        yield* Queue.offer(inbox, {
          _tag: "Data",
          seq: clientIsn,
          bytes: new Uint8Array([1, 2, 3]),
        })
        yield* Deferred.await(blocked)
        // Acknowledgements of nothing (no-ops), until the driver's queue (1,024) is full: the
        // last offer returns once the reader took the one before it, so 1,024 were forwarded.
        for (let i = 0; i < 1_024 + 2; i++)
          yield* Queue.offer(inbox, { _tag: "Ack", ack: serverIsn })
        for (const handOff of handoffs) handOff("127.0.0.1:9")
        // The connection ends after them: a session that missed the hand-off breaks there.
        yield* Queue.end(inbox)
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(session)
        expect(events.filter((event) => event._tag === "HandedOff")).toEqual([
          expect.objectContaining({ to: "127.0.0.1:9" }),
        ])
        expect(sent.at(-1)).toEqual({ _tag: "Handoff", to: "127.0.0.1:9" })
      }).pipe(Effect.scoped, Effect.provide(MemoryStore.layer)),
  )
})
