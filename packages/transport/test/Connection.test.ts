import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Redacted, Schema, Stream } from "effect"
import { TestClock } from "effect/testing"
import { randomBytes } from "node:crypto"
import * as Codec from "../src/Codec.ts"
import * as Connection from "../src/internal/connection.ts"
import * as Options from "../src/Options.ts"
import { linkPair } from "./support/linkPair.ts"

const random = (size: number) => Effect.sync(() => new Uint8Array(randomBytes(size)))
const Message = Schema.Struct({ n: Schema.Number, text: Schema.String })
const codec = Codec.json(Message)

const open = (options: Partial<Options.ConnectionOptions<typeof Message.Type>> = {}, serverOptions = options) =>
  Effect.gen(function* () {
    const pair = linkPair()
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
      const error = yield* open({ clusterKey: Redacted.make("a") }, { clusterKey: Redacted.make("b") }).pipe(
        Effect.flip,
      )
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
      const keepAlive = { intervalMs: 100, timeoutMs: 500 }
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
})
