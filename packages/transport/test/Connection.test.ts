import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Fiber, Redacted, Ref, Schema, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Codec from "../src/Codec.ts"
import * as Connection from "../src/internal/connection.ts"
import { encodedSize } from "../src/internal/frame.ts"
import * as Options from "../src/Options.ts"
import { linkPair } from "./support/linkPair.ts"

const random = (size: number) => Effect.sync(() => new Uint8Array(randomBytes(size)))
const Message = Schema.Struct({ n: Schema.Number, text: Schema.String })
const codec = Codec.json(Message)

const open = (
  options: Partial<Options.ConnectionOptions<typeof Message.Type>> = {},
  serverOptions = options,
  highWaterBytes?: number,
) =>
  Effect.gen(function* () {
    const pair = linkPair(highWaterBytes)
    const server = yield* Effect.forkChild(
      Connection.make(pair.server, {
        role: "server",
        options: Options.resolve({ codec, ...serverOptions }),
        randomBytes: random,
        peer: "client",
      }),
    )
    const client = yield* Connection.make(pair.client, {
      role: "client",
      options: Options.resolve({ codec, ...options }),
      randomBytes: random,
      peer: "server",
    })
    return { pair, client, server: yield* Fiber.join(server) }
  })

describe("Connection core", () => {
  it.effect("carries messages both ways, in order", () =>
    Effect.gen(function* () {
      const { client, server } = yield* open()
      yield* client.sendAll([1, 2, 3].map((n) => ({ n, text: `m${n}` })))
      const got = yield* Stream.runCollect(Stream.take(server.messages, 3))
      expect(got.map((m) => m.n)).toEqual([1, 2, 3])
      yield* server.send({ n: 9, text: "back" })
      const back = yield* Stream.runCollect(Stream.take(client.messages, 1))
      expect(back).toEqual([{ n: 9, text: "back" }])
    }).pipe(Effect.scoped),
  )

  it.effect("authenticates with a shared cluster key", () =>
    Effect.gen(function* () {
      const clusterKey = Redacted.make("s3cret")
      const { client, server } = yield* open({ clusterKey })
      yield* client.send({ n: 1, text: "hi" })
      const got = yield* Stream.runCollect(Stream.take(server.messages, 1))
      expect(got).toEqual([{ n: 1, text: "hi" }])
    }).pipe(Effect.scoped),
  )

  it.effect("refuses a wrong key on both sides with a typed error", () =>
    Effect.gen(function* () {
      const error = yield* open(
        { clusterKey: Redacted.make("a") },
        { clusterKey: Redacted.make("b") },
      ).pipe(Effect.flip)
      expect(error._tag).toBe("HandshakeError")
      expect(error._tag === "HandshakeError" && error.reason).toBe("AuthenticationFailed")
    }).pipe(Effect.scoped),
  )

  it.effect("closes with End when the peer closes, and send then fails", () =>
    Effect.gen(function* () {
      const { client, server } = yield* open()
      yield* server.close
      expect((yield* client.closed)._tag).toBe("End")
      expect((yield* server.closed)._tag).toBe("LocalClose")
      const error = yield* Effect.flip(client.send({ n: 1, text: "late" }))
      expect(error._tag).toBe("ConnectionClosed")
    }).pipe(Effect.scoped),
  )

  it.effect("closes with Timeout when the peer goes silent", () =>
    Effect.gen(function* () {
      const keepAlive = { interval: 100, timeout: 500 }
      const { pair, client } = yield* open({ keepAlive }, { keepAlive: false })
      // The server never pings; pausing its link keeps its kernel from answering either.
      pair.server.pause()
      const closed = yield* Effect.forkChild(client.closed)
      yield* TestClock.adjust(450)
      expect(closed.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust(200)
      const reason = yield* Fiber.join(closed)
      expect(reason._tag).toBe("Timeout")
    }).pipe(Effect.scoped),
  )

  it.effect(
    "a keep-alive tick late after CPU starvation does not time out a live peer; a silent one still closes",
    () =>
      Effect.gen(function* () {
        // A clock that can jump ahead without any timer firing meanwhile, as it does for a
        // process starved of CPU: its timers then run before it reads what waited.
        const testClock = yield* Clock.Clock
        let starvedMs = 0
        const starvable: Clock.Clock = Object.create(testClock, {
          currentTimeMillisUnsafe: {
            value: () => testClock.currentTimeMillisUnsafe() + starvedMs,
          },
          currentTimeMillis: {
            value: Effect.sync(() => testClock.currentTimeMillisUnsafe() + starvedMs),
          },
        })
        yield* Effect.gen(function* () {
          const keepAlive = { interval: 100, timeout: 500 }
          const { pair, client, server } = yield* open({ keepAlive }, { keepAlive: false })
          // The client reads nothing for 2 s; the server's message waits in its "kernel".
          pair.client.pause()
          yield* server.send({ n: 1, text: "while starved" })
          starvedMs = 2_000
          const closed = yield* Effect.forkChild(client.closed)
          yield* TestClock.adjust(50)
          expect(closed.pollUnsafe(), "the late tick let the reads run first").toBeUndefined()
          pair.client.resume()
          expect(yield* Stream.runCollect(Stream.take(client.messages, 1))).toHaveLength(1)
          yield* TestClock.adjust(50)
          expect(closed.pollUnsafe(), "heard on the next tick: alive").toBeUndefined()
          // Starved again, and this time the peer is really silent.
          pair.server.pause()
          starvedMs = 4_000
          yield* TestClock.adjust(50)
          expect(closed.pollUnsafe()).toBeUndefined()
          yield* TestClock.adjust(50)
          expect((yield* Fiber.join(closed))._tag).toBe("Timeout")
        }).pipe(Effect.provideService(Clock.Clock, starvable))
      }).pipe(Effect.scoped),
  )

  it.effect(
    "lastHeardAtMs: the tick before the one before the last read, never later; kept once closed",
    () =>
      Effect.gen(function* () {
        const keepAlive = { interval: 100, timeout: 500 }
        const { pair, client, server } = yield* open({ keepAlive }, { keepAlive: false })
        // Ticks every 50 ms from the open at 0; the server never pings.
        expect(yield* client.lastHeardAtMs).toBe(0)
        yield* TestClock.adjust(120)
        expect(yield* client.lastHeardAtMs).toBe(0)
        yield* server.send({ n: 1, text: "at 120" })
        expect(yield* Stream.runCollect(Stream.take(client.messages, 1))).toHaveLength(1)
        // Read at 120, after the tick at 100: a busy event loop may have read it late, but it
        // had not arrived when the loop last read, after the tick at 50.
        expect(yield* client.lastHeardAtMs).toBe(50)
        yield* TestClock.adjust(30)
        expect(yield* client.lastHeardAtMs).toBe(50)
        pair.server.pause()
        const closed = yield* Effect.forkChild(client.closed)
        yield* TestClock.adjust(600)
        expect((yield* Fiber.join(closed))._tag).toBe("Timeout")
        expect(yield* client.lastHeardAtMs).toBe(50)
      }).pipe(Effect.scoped),
  )

  it.effect(
    "lastHeardAtMs: what waited out a back-pressure pause counts from before the pause",
    () =>
      Effect.gen(function* () {
        const keepAlive = { interval: 100, timeout: 5_000 }
        const { client, server } = yield* open(
          { keepAlive, receiveBufferBytes: 2_000 },
          { keepAlive: false },
        )
        // Ticks at 50, 100, ...; the client reads nothing, so its link pauses at 120.
        yield* TestClock.adjust(120)
        const text = "x".repeat(1_000)
        yield* server.sendAll([0, 1, 2].map((n) => ({ n, text })))
        yield* TestClock.adjust(380)
        // Sent at 500, while the link is paused: it waits in the kernel.
        yield* server.send({ n: 3, text: "at 500" })
        yield* TestClock.adjust(620)
        const read = yield* Stream.runCollect(Stream.take(client.messages, 4))
        expect(read.map((m) => m.n)).toEqual([0, 1, 2, 3])
        // Read at 1120: it may have arrived any time since the pause; never later than 500.
        expect(yield* client.lastHeardAtMs).toBeLessThanOrEqual(500)
        // Two ticks after the resume, reads count from the tick before the last again.
        yield* TestClock.adjust(200)
        yield* server.send({ n: 4, text: "at 1320" })
        expect(yield* Stream.runCollect(Stream.take(client.messages, 1))).toHaveLength(1)
        expect(yield* client.lastHeardAtMs).toBe(1250)
      }).pipe(Effect.scoped),
  )

  it.effect("keep-alive pings hold an idle connection open on both sides", () =>
    Effect.gen(function* () {
      const keepAlive = { interval: 100, timeout: 500 }
      const { client, server } = yield* open({ keepAlive })
      const closed = yield* Effect.forkChild(Effect.race(client.closed, server.closed))
      for (let step = 0; step < 40; step++) yield* TestClock.adjust(50)
      expect(closed.pollUnsafe()).toBeUndefined()
      yield* client.send({ n: 1, text: "still here" })
      expect(yield* Stream.runCollect(Stream.take(server.messages, 1))).toEqual([
        { n: 1, text: "still here" },
      ])
    }).pipe(Effect.scoped),
  )

  it.effect(
    "a message over frameBytesMax fails send with CodecError; the connection stays open",
    () =>
      Effect.gen(function* () {
        const { client, server } = yield* open({ frameBytesMax: 64 })
        const error = yield* Effect.flip(client.send({ n: 1, text: "x".repeat(100) }))
        expect(error._tag).toBe("CodecError")
        yield* client.send({ n: 2, text: "fits" })
        expect(yield* Stream.runCollect(Stream.take(server.messages, 1))).toEqual([
          { n: 2, text: "fits" },
        ])
      }).pipe(Effect.scoped),
  )
})

/** Lets fibers and link deliveries run until nothing changes; bounded. */
const settle = Effect.gen(function* () {
  for (let turn = 0; turn < 500; turn++) yield* Effect.yieldNow
})

const frameBytes = (n: number) =>
  encodedSize(new TextEncoder().encode(JSON.stringify({ n, text: `m${n}` })).byteLength, false)

describe("Connection core backpressure", () => {
  const total = 2_000
  const messages = Array.from({ length: total }, (_, n) => ({ n, text: `m${n}` }))

  /** Sends every message from a forked fiber, counting the sends that completed. */
  const sender = (client: { send: (m: typeof Message.Type) => Effect.Effect<void, unknown> }) =>
    Effect.gen(function* () {
      const completed = yield* Ref.make(0)
      const fiber = yield* Effect.forkChild(
        Effect.forEach(
          messages,
          (m) =>
            Effect.andThen(
              client.send(m),
              Ref.update(completed, (c) => c + 1),
            ),
          {
            discard: true,
          },
        ),
      )
      return { completed, fiber }
    })

  it.effect(
    "send suspends when the peer's link is paused, stays bounded, and resumes in order",
    () =>
      Effect.gen(function* () {
        const capacity = 8
        const highWaterBytes = 1_024
        const { pair, client, server } = yield* open(
          { sendQueueCapacity: capacity, keepAlive: false },
          undefined,
          highWaterBytes,
        )
        pair.server.pause()
        const writtenBefore = pair.written.client
        const { completed, fiber } = yield* sender(client)
        yield* settle
        const stalled = yield* Ref.get(completed)
        // What fits below the link's high-water mark, one batch written past it, and a full queue.
        const bound = Math.ceil(highWaterBytes / frameBytes(0)) + 2 * capacity + 2
        expect(stalled).toBeGreaterThanOrEqual(capacity)
        expect(stalled).toBeLessThanOrEqual(bound)
        expect(pair.written.client - writtenBefore).toBeLessThanOrEqual(
          highWaterBytes + (capacity + 1) * frameBytes(total),
        )
        yield* settle
        expect(yield* Ref.get(completed)).toBe(stalled)
        expect(fiber.pollUnsafe()).toBeUndefined()
        pair.server.resume()
        const got = yield* Stream.runCollect(Stream.take(server.messages, total))
        expect(got.map((m) => m.n)).toEqual(messages.map((m) => m.n))
        yield* Fiber.join(fiber)
        expect(yield* Ref.get(completed)).toBe(total)
      }).pipe(Effect.scoped),
  )

  it.effect(
    "a reader that does not read pauses the link, so the sender stops; reading drains it in order",
    () =>
      Effect.gen(function* () {
        const capacity = 8
        const highWaterBytes = 1_024
        const receiveBufferBytes = 2_048
        const { client, server } = yield* open(
          { sendQueueCapacity: capacity, keepAlive: false },
          { receiveBufferBytes, keepAlive: false },
          highWaterBytes,
        )
        const { completed, fiber } = yield* sender(client)
        yield* settle
        const stalled = yield* Ref.get(completed)
        // Bytes buffered at the reader (one chunk past its limit), in the link, and queued.
        const bound =
          Math.ceil((receiveBufferBytes + 2 * highWaterBytes) / frameBytes(0)) + 3 * capacity + 2
        expect(stalled).toBeLessThan(total)
        expect(stalled).toBeLessThanOrEqual(bound)
        yield* settle
        expect(yield* Ref.get(completed)).toBe(stalled)
        const got = yield* Stream.runCollect(Stream.take(server.messages, total))
        expect(got.map((m) => m.n)).toEqual(messages.map((m) => m.n))
        yield* Fiber.join(fiber)
      }).pipe(Effect.scoped),
  )

  it.effect(
    "a send suspended on a full queue fails with ConnectionClosed when the peer goes away",
    () =>
      Effect.gen(function* () {
        const { pair, client } = yield* open(
          { sendQueueCapacity: 4, keepAlive: false },
          { keepAlive: false },
          256,
        )
        pair.server.pause()
        const { fiber } = yield* sender(client)
        yield* settle
        expect(fiber.pollUnsafe()).toBeUndefined()
        pair.server.destroy()
        const exit = yield* Fiber.await(fiber)
        expect(exit._tag).toBe("Failure")
        expect(exit._tag === "Failure" && String(exit.cause)).toContain("ConnectionClosed")
        expect((yield* client.closed)._tag).toBe("Reset")
      }).pipe(Effect.scoped),
  )
})

describe("Connection core graceful close", () => {
  it.effect("messages queued before close are delivered before the peer sees End", () =>
    Effect.gen(function* () {
      const { client, server } = yield* open({ keepAlive: false })
      const sent = Array.from({ length: 300 }, (_, n) => ({ n, text: `m${n}` }))
      yield* client.sendAll(sent)
      yield* client.close
      // The stream ends only when the connection closes: everything before the End.
      const got = yield* Stream.runCollect(server.messages)
      expect(got).toEqual(sent)
      expect((yield* server.closed)._tag).toBe("End")
      expect((yield* client.closed)._tag).toBe("LocalClose")
    }).pipe(Effect.scoped),
  )

  it.effect("send after close fails with ConnectionClosed; close is idempotent", () =>
    Effect.gen(function* () {
      const { client, server } = yield* open({ keepAlive: false })
      yield* client.close
      const error = yield* Effect.flip(client.send({ n: 1, text: "late" }))
      expect(error._tag).toBe("ConnectionClosed")
      expect(error._tag === "ConnectionClosed" && error.reason).toBe("LocalClose")
      const all = yield* Effect.flip(client.sendAll([{ n: 2, text: "later" }]))
      expect(all._tag).toBe("ConnectionClosed")
      yield* client.close
      expect((yield* client.closed)._tag).toBe("LocalClose")
      expect(yield* Stream.runCollect(server.messages)).toEqual([])
    }).pipe(Effect.scoped),
  )

  it.effect(
    "closing the scope closes gracefully too: the peer gets the queued messages, then End",
    () =>
      Effect.gen(function* () {
        const pair = linkPair()
        const server = yield* Effect.forkChild(
          Connection.make(pair.server, {
            role: "server",
            options: Options.resolve({ codec, keepAlive: false }),
            randomBytes: random,
            peer: "client",
          }),
        )
        yield* Effect.scoped(
          Effect.gen(function* () {
            const client = yield* Connection.make(pair.client, {
              role: "client",
              options: Options.resolve({ codec, keepAlive: false }),
              randomBytes: random,
              peer: "server",
            })
            yield* client.sendAll([1, 2, 3].map((n) => ({ n, text: `m${n}` })))
          }),
        )
        const serverConnection = yield* Fiber.join(server)
        expect((yield* Stream.runCollect(serverConnection.messages)).map((m) => m.n)).toEqual([
          1, 2, 3,
        ])
        expect((yield* serverConnection.closed)._tag).toBe("End")
      }).pipe(Effect.scoped),
  )

  it.effect("close with a peer that never reads gives up after linger", () =>
    Effect.gen(function* () {
      const { pair, client, server } = yield* open(
        { keepAlive: false, linger: "1 second", sendQueueCapacity: 16 },
        { keepAlive: false },
        256,
      )
      pair.server.pause()
      yield* Effect.forkChild(
        client.sendAll(Array.from({ length: 200 }, (_, n) => ({ n, text: `m${n}` }))),
      )
      yield* settle
      const closing = yield* Effect.forkChild(client.close)
      yield* settle
      expect(closing.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust(1_000)
      yield* Fiber.join(closing)
      expect((yield* client.closed)._tag).toBe("LocalClose")
      pair.server.resume()
      // What was written before the linger ran out still arrives, in order, then End.
      const got = yield* Stream.runCollect(server.messages)
      expect(got.map((m) => m.n)).toEqual(got.map((_, i) => i))
      expect(got.length).toBeLessThan(200)
      expect((yield* server.closed)._tag).toBe("End")
    }).pipe(Effect.scoped),
  )
})
