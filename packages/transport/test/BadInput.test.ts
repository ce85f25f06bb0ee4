/**
 * Bad input against the connection core, through the in-memory link pair: whatever a peer
 * sends, the result is a typed close reason or handshake error, nothing bad is emitted, and
 * what came before the bad bytes is still delivered.
 */

import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Redacted, Schema, Stream } from "effect"
import { TestClock } from "effect/testing"
import fc from "fast-check"
import type { CloseReason } from "../src/CloseReason.ts"
import * as Codec from "../src/Codec.ts"
import type { Connection } from "../src/Connection.ts"
import * as Core from "../src/internal/connection.ts"
import {
  encodedSize,
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameType,
  macBytes,
} from "../src/internal/frame.ts"
import {
  decodeHelloAck,
  encodeHello,
  encodeHelloAck,
  HelloStatus,
  nonceBytes,
  protocolVersion,
} from "../src/internal/handshake.ts"
import type { Link } from "../src/internal/link.ts"
import * as Options from "../src/Options.ts"
import { type LinkPair, linkPair, tapLink } from "./support/linkPair.ts"

const Message = Schema.Struct({ n: Schema.Number, text: Schema.String })
type Message = typeof Message.Type
const codec = Codec.json(Message)
const frameBytesMax = 4096
const key = Redacted.make("cluster-secret")

const random = (size: number) => Effect.sync(() => new Uint8Array(randomBytes(size)))
const utf8 = (text: string) => new TextEncoder().encode(text)
const json = (value: unknown) => utf8(JSON.stringify(value))
const message = (n: number): Message => ({ n, text: `m${n}` })
const dataFrame = (m: Message) => encodeFrame(FrameType.Data, json(m))

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.byteLength, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.byteLength
  }
  return out
}

const header = (bodyLength: number): Uint8Array => {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setUint32(0, bodyLength)
  return out
}

type Side = Partial<Options.ConnectionOptions<Message>>

const connect = (link: Link, role: "client" | "server", options: Side) =>
  Core.make(link, {
    role,
    options: Options.resolve({ codec, frameBytesMax, keepAlive: false, ...options }),
    randomBytes: random,
    peer: role === "client" ? "server" : "client",
  })

interface Opened {
  readonly pair: LinkPair
  readonly client: Connection<Message>
  readonly server: Connection<Message>
}

const open = (setup: { client?: Side; server?: Side; clientLink?: (link: Link) => Link } = {}) =>
  Effect.gen(function* () {
    const pair = linkPair()
    const server = yield* Effect.forkChild(connect(pair.server, "server", setup.server ?? {}))
    const clientLink = setup.clientLink?.(pair.client) ?? pair.client
    const client = yield* connect(clientLink, "client", setup.client ?? {})
    return { pair, client, server: yield* Fiber.join(server) } satisfies Opened
  })

/** Yields until `condition` holds; fails the test after a bounded number of turns. */
const eventually = (condition: () => boolean, what: string) =>
  Effect.gen(function* () {
    for (let turn = 0; turn < 10_000 && !condition(); turn++) yield* Effect.yieldNow
    if (!condition()) return yield* Effect.die(new Error(`never happened: ${what}`))
  })

/** Sends through the real client and waits until its frames are on the link. */
const sendWritten = (opened: Opened, messages: ReadonlyArray<Message>, withMac: boolean) =>
  Effect.gen(function* () {
    const target =
      opened.pair.written.client +
      messages.reduce((n, m) => n + encodedSize(json(m).byteLength, withMac), 0)
    yield* opened.client.sendAll(messages)
    yield* eventually(() => opened.pair.written.client >= target, "the client wrote its messages")
  })

/** How the server connection ended, and everything it emitted. */
const outcome = (server: Connection<Message>) =>
  Effect.gen(function* () {
    const reason = yield* server.closed
    const messages = yield* Stream.runCollect(server.messages)
    return { reason, messages }
  })

const expectProtocolError = (reason: CloseReason, detail: string) => {
  expect(reason._tag).toBe("ProtocolError")
  expect(reason._tag === "ProtocolError" && reason.detail).toContain(detail)
}

/** What the core should make of a byte stream after the handshake (no MAC). */
const oracle = (
  bytes: Uint8Array,
): { readonly messages: Array<Message>; readonly reason: "End" | "Reset" | "ProtocolError" } => {
  const decoder = new FrameDecoder(frameBytesMax + 1)
  const result = decoder.push(bytes)
  const frames: ReadonlyArray<Frame> = Array.isArray(result) ? result : result.frames
  const messages: Array<Message> = []
  for (const frame of frames) {
    if (frame.type === FrameType.Ping) continue
    if (frame.type !== FrameType.Data) return { messages, reason: "ProtocolError" }
    const decoded = codec.decode(frame.body)
    if (decoded._tag === "Failure") return { messages, reason: "ProtocolError" }
    messages.push(decoded.success)
  }
  // A stream that ends inside a frame is a sender that died mid-write: Reset.
  if (!Array.isArray(result)) return { messages, reason: "ProtocolError" }
  return { messages, reason: decoder.bufferedBytes === 0 ? "End" : "Reset" }
}

const badAfterHandshake: ReadonlyArray<{ name: string; bytes: Uint8Array; detail: string }> = [
  { name: "a zero-length frame", bytes: header(0), detail: "empty frame" },
  {
    name: "a length over frameBytesMax (header only)",
    bytes: header(frameBytesMax + 2),
    detail: "over the maximum",
  },
  { name: "a length of 4 GiB", bytes: header(0xffffffff), detail: "over the maximum" },
  {
    name: "a payload one byte over frameBytesMax",
    bytes: encodeFrame(FrameType.Data, new Uint8Array(frameBytesMax + 1).fill(0x20)),
    detail: "over the maximum",
  },
  {
    name: "a Data frame whose JSON fails the schema",
    bytes: encodeFrame(FrameType.Data, json({ n: "one", text: 1 })),
    detail: "undecodable message",
  },
  {
    name: "a Data frame that is not JSON",
    bytes: encodeFrame(FrameType.Data, utf8("{n:1")),
    detail: "undecodable",
  },
  {
    name: "a Data frame that is not UTF-8",
    bytes: encodeFrame(FrameType.Data, new Uint8Array([0x22, 0xff, 0x22])),
    detail: "undecodable",
  },
  {
    name: "an empty Data frame",
    bytes: encodeFrame(FrameType.Data, new Uint8Array(0)),
    detail: "undecodable",
  },
  {
    name: "an unknown frame type",
    bytes: encodeFrame(0x7f, json(message(0))),
    detail: "unexpected frame type 127",
  },
  {
    name: "a Hello after the handshake",
    bytes: encodeFrame(
      FrameType.Hello,
      encodeHello({ version: 1, authenticated: false, nonce: new Uint8Array(0) }),
    ),
    detail: "unexpected frame type 1",
  },
]

describe("bad input after the handshake (no cluster key)", () => {
  for (const bad of badAfterHandshake) {
    it.effect(`${bad.name}: ProtocolError; earlier messages delivered, later ones not`, () =>
      Effect.gen(function* () {
        const opened = yield* open()
        const { pair, client, server } = opened
        yield* sendWritten(opened, [message(0), message(1)], false)
        // Two good frames in the same chunk as the bad bytes, and one after them.
        pair.injectToServer(
          concat([dataFrame(message(2)), dataFrame(message(3)), bad.bytes, dataFrame(message(4))]),
        )
        const { reason, messages } = yield* outcome(server)
        expectProtocolError(reason, bad.detail)
        expect(messages).toEqual([0, 1, 2, 3].map(message))
        // The server aborts the link, so the client sees a reset, and sending then fails.
        expect((yield* client.closed)._tag).toBe("Reset")
        expect((yield* Effect.flip(client.send(message(5))))._tag).toBe("ConnectionClosed")
      }).pipe(Effect.scoped),
    )
  }

  it.effect(
    "a truncated frame followed by the peer ending: Reset (the sender died mid-write), complete frames delivered",
    () =>
      Effect.gen(function* () {
        for (const cut of [1, 3, 4, 7]) {
          const { pair, server } = yield* open()
          const partial = dataFrame(message(9)).subarray(0, cut)
          pair.injectToServer(concat([dataFrame(message(1)), partial]))
          pair.client.end()
          const { reason, messages } = yield* outcome(server)
          expect(reason._tag).toBe("Reset")
          expect(reason._tag === "Reset" && reason.detail).toContain("stream ended inside a frame")
          expect(messages).toEqual([message(1)])
        }
      }).pipe(Effect.scoped),
  )

  it.effect("a truncated frame stays pending (no close, no message) until it completes", () =>
    Effect.gen(function* () {
      const { pair, server } = yield* open()
      const frame = dataFrame(message(7))
      const closed = yield* Effect.forkChild(server.closed)
      const first = yield* Effect.forkChild(Stream.runCollect(Stream.take(server.messages, 1)))
      pair.injectToServer(frame.subarray(0, 6))
      for (let turn = 0; turn < 100; turn++) yield* Effect.yieldNow
      expect(closed.pollUnsafe()).toBeUndefined()
      expect(first.pollUnsafe()).toBeUndefined()
      pair.injectToServer(frame.subarray(6))
      expect(yield* Fiber.join(first)).toEqual([message(7)])
      expect(closed.pollUnsafe()).toBeUndefined()
    }).pipe(Effect.scoped),
  )

  it.effect("a clean end between frames is End, not an error", () =>
    Effect.gen(function* () {
      const { pair, server } = yield* open()
      pair.injectToServer(
        concat([dataFrame(message(1)), encodeFrame(FrameType.Ping, new Uint8Array(0))]),
      )
      pair.client.end()
      const { reason, messages } = yield* outcome(server)
      expect(reason._tag).toBe("End")
      expect(messages).toEqual([message(1)])
    }).pipe(Effect.scoped),
  )

  it("random bytes: ProtocolError unless they are valid frames; only valid messages emitted", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 48 }), { minLength: 1, maxLength: 4 }),
        (chunks) =>
          Effect.gen(function* () {
            const { pair, server } = yield* open()
            for (const chunk of chunks) pair.injectToServer(chunk)
            pair.client.end()
            const { reason, messages } = yield* outcome(server)
            const expected = oracle(concat(chunks))
            expect(messages).toEqual(expected.messages)
            expect(reason._tag).toBe(expected.reason)
          }).pipe(Effect.scoped, Effect.runPromise),
      ),
      { numRuns: 200 },
    )
  })

  const messageArb = fc.record({ n: fc.integer(), text: fc.string({ maxLength: 20 }) })
  const item = fc.oneof(
    {
      weight: 4,
      arbitrary: messageArb.map((m) => ({
        message: m as Message | undefined,
        bytes: dataFrame(m),
      })),
    },
    {
      weight: 1,
      arbitrary: fc.constant({
        message: undefined,
        bytes: encodeFrame(FrameType.Ping, new Uint8Array(0)),
      }),
    },
  )
  const invalidPayload = (bytes: Uint8Array) => codec.decode(bytes)._tag === "Failure"
  const corruption = fc.oneof(
    fc.constant({ bytes: header(0), detail: "empty frame" }),
    fc
      .integer({ min: frameBytesMax + 2, max: 0xffffffff })
      .map((n) => ({ bytes: header(n), detail: "over the maximum" })),
    fc
      .tuple(
        fc
          .integer({ min: 0, max: 255 })
          .filter((t) => t !== FrameType.Data && t !== FrameType.Ping),
        fc.uint8Array({ maxLength: 24 }),
      )
      .map(([type, payload]) => ({
        bytes: encodeFrame(type, payload),
        detail: `unexpected frame type ${type}`,
      })),
    fc
      .jsonValue({ maxDepth: 2 })
      .filter((value) => !Schema.is(Message)(value))
      .map((value) => ({
        bytes: encodeFrame(FrameType.Data, json(value)),
        detail: "undecodable message",
      })),
    fc
      .uint8Array({ maxLength: 24 })
      .filter(invalidPayload)
      .map((payload) => ({
        bytes: encodeFrame(FrameType.Data, payload),
        detail: "undecodable message",
      })),
  )

  it("valid messages around one corruption, any chunking: all before delivered in order, none after", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(item, { maxLength: 12 }),
        corruption,
        fc.array(item, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (before, bad, after, cuts) =>
          Effect.gen(function* () {
            const { pair, server } = yield* open()
            const stream = concat([
              ...before.map((i) => i.bytes),
              bad.bytes,
              ...after.map((i) => i.bytes),
            ])
            const points = [...new Set(cuts.map((cut) => cut % (stream.byteLength + 1)))].sort(
              (a, b) => a - b,
            )
            let from = 0
            for (const point of [...points, stream.byteLength]) {
              pair.injectToServer(stream.slice(from, point))
              from = point
            }
            pair.client.end()
            const { reason, messages } = yield* outcome(server)
            expectProtocolError(reason, bad.detail)
            expect(messages).toEqual(
              before.flatMap((i) => (i.message === undefined ? [] : [i.message])),
            )
          }).pipe(Effect.scoped, Effect.runPromise),
      ),
      { numRuns: 300 },
    )
  })
})

/** A Data frame with a valid MAC position but a MAC made up by an attacker. */
const forged = (m: Message) =>
  encodeFrame(FrameType.Data, concat([json(m), new Uint8Array(randomBytes(macBytes))]))

describe("bad input after the handshake (cluster key)", () => {
  const keyed = { client: { clusterKey: key }, server: { clusterKey: key } }

  it.effect(
    "a forged frame (valid framing, wrong MAC): ProtocolError, nothing delivered past it",
    () =>
      Effect.gen(function* () {
        const opened = yield* open(keyed)
        yield* sendWritten(opened, [message(0)], true)
        opened.pair.injectToServer(forged(message(1)))
        yield* Effect.exit(opened.client.send(message(2)))
        const { reason, messages } = yield* outcome(opened.server)
        expectProtocolError(reason, "frame MAC does not verify")
        expect(messages).toEqual([message(0)])
      }).pipe(Effect.scoped),
  )

  it.effect("a frame without any MAC, as an unkeyed peer would send it: ProtocolError", () =>
    Effect.gen(function* () {
      const opened = yield* open(keyed)
      opened.pair.injectToServer(dataFrame(message(1)))
      const { reason, messages } = yield* outcome(opened.server)
      expectProtocolError(reason, "frame MAC does not verify")
      expect(messages).toEqual([])
    }).pipe(Effect.scoped),
  )

  it.effect("a replayed earlier frame: ProtocolError, nothing delivered past it", () =>
    Effect.gen(function* () {
      let tapped: ReturnType<typeof tapLink> | undefined
      const opened = yield* open({
        ...keyed,
        clientLink: (link) => {
          tapped = tapLink(link)
          return tapped.link
        },
      })
      yield* sendWritten(opened, [message(0)], true)
      const captured = tapped!.writes.at(-1)!
      expect(captured.byteLength).toBe(encodedSize(json(message(0)).byteLength, true))
      yield* sendWritten(opened, [message(1)], true)
      opened.pair.injectToServer(captured)
      yield* Effect.exit(opened.client.send(message(2)))
      const { reason, messages } = yield* outcome(opened.server)
      expectProtocolError(reason, "frame MAC does not verify")
      expect(messages).toEqual([message(0), message(1)])
    }).pipe(Effect.scoped),
  )

  it.effect("a replayed handshake frame after the handshake: ProtocolError", () =>
    Effect.gen(function* () {
      let tapped: ReturnType<typeof tapLink> | undefined
      const opened = yield* open({
        ...keyed,
        clientLink: (link) => {
          tapped = tapLink(link)
          return tapped.link
        },
      })
      // The client's Hello and then its Proof.
      expect(tapped!.writes).toHaveLength(2)
      opened.pair.injectToServer(tapped!.writes[1]!)
      const { reason, messages } = yield* outcome(opened.server)
      expectProtocolError(reason, "frame MAC does not verify")
      expect(messages).toEqual([])
    }).pipe(Effect.scoped),
  )

  it.effect("a frame taken from another connection with the same key: ProtocolError", () =>
    Effect.gen(function* () {
      let tapped: ReturnType<typeof tapLink> | undefined
      const first = yield* open({
        ...keyed,
        clientLink: (link) => {
          tapped = tapLink(link)
          return tapped.link
        },
      })
      yield* sendWritten(first, [message(0)], true)
      const captured = tapped!.writes.at(-1)!
      const second = yield* open(keyed)
      // The first frame of the second connection has the same sequence number: only the
      // nonces differ.
      second.pair.injectToServer(captured)
      const { reason, messages } = yield* outcome(second.server)
      expectProtocolError(reason, "frame MAC does not verify")
      expect(messages).toEqual([])
    }).pipe(Effect.scoped),
  )

  it.effect("two frames swapped on the way: ProtocolError, neither delivered", () =>
    Effect.gen(function* () {
      const held: Array<Uint8Array> = []
      let armed = false
      const opened = yield* open({
        ...keyed,
        clientLink: (link) => ({
          ...link,
          write: (chunk) => {
            if (!armed) return link.write(chunk)
            held.push(chunk.slice())
            if (held.length === 2) {
              link.write(held[1]!)
              link.write(held[0]!)
            }
            return true
          },
        }),
      })
      armed = true
      yield* opened.client.send(message(0))
      yield* eventually(() => held.length === 1, "the first frame was written")
      yield* opened.client.send(message(1))
      const { reason, messages } = yield* outcome(opened.server)
      expectProtocolError(reason, "frame MAC does not verify")
      expect(messages).toEqual([])
    }).pipe(Effect.scoped),
  )

  it("one flipped bit anywhere in the stream: messages before its frame delivered, none after", async () => {
    const messageArb = fc.record({ n: fc.integer(), text: fc.string({ maxLength: 30 }) })
    await fc.assert(
      fc.asyncProperty(
        fc.array(messageArb, { minLength: 1, maxLength: 10 }),
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        (sent, at, bit) =>
          Effect.gen(function* () {
            const sizes = sent.map((m) => encodedSize(json(m).byteLength, true))
            const total = sizes.reduce((a, b) => a + b, 0)
            const position = at % total
            let armed = false
            let offset = 0
            const opened = yield* open({
              ...keyed,
              clientLink: (link) =>
                tapLink(link, (chunk) => {
                  if (!armed) return chunk
                  const out = chunk.slice()
                  if (position >= offset && position < offset + out.byteLength)
                    out[position - offset]! ^= 1 << bit
                  offset += out.byteLength
                  return out
                }).link,
            })
            armed = true
            yield* opened.client.sendAll(sent)
            yield* opened.client.close
            const { reason, messages } = yield* outcome(opened.server)
            let frameIndex = 0
            for (let end = sizes[0]!; end <= position; end += sizes[++frameIndex]!);
            // A flip that lengthens a frame's length prefix makes the stream end inside
            // that frame, which reads as a sender that died mid-write (Reset); any other
            // flip fails the frame's MAC or framing (ProtocolError).
            const lengthened = reason._tag === "Reset" && reason.detail.includes("inside a frame")
            expect(lengthened || reason._tag === "ProtocolError").toBe(true)
            expect(messages).toEqual(sent.slice(0, frameIndex))
          }).pipe(Effect.scoped, Effect.runPromise),
      ),
      { numRuns: 200 },
    )
  })
})

/** A peer driving its end of the link by hand, as a stranger or an attacker would. */
const rawPeer = (
  link: Link,
  answer?: (frame: Frame, peer: { write: (bytes: Uint8Array) => void }) => void,
) => {
  const decoder = new FrameDecoder(1 << 20)
  const frames: Array<Frame> = []
  const state = { frames, ended: false, reset: false, chunks: 0 }
  link.start({
    onData: (chunk) => {
      state.chunks++
      const result = decoder.push(chunk)
      for (const frame of Array.isArray(result) ? result : result.frames) {
        frames.push(frame)
        answer?.(frame, { write: (bytes) => link.write(bytes) })
      }
    },
    onEnd: () => {
      state.ended = true
    },
    onReset: () => {
      state.reset = true
    },
    onDrain: () => {},
  })
  return state
}

const hello = (options: { version?: number; nonce?: Uint8Array } = {}) =>
  encodeFrame(
    FrameType.Hello,
    encodeHello({
      version: options.version ?? protocolVersion,
      authenticated: options.nonce !== undefined,
      nonce: options.nonce ?? new Uint8Array(0),
    }),
  )

const handshakeError = <A, E>(exit: Exit.Exit<A, E>) => {
  if (Exit.isSuccess(exit)) throw new Error("expected the handshake to fail")
  const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")
  if (error === undefined) throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
  return error.error as { readonly _tag: string; readonly reason: string; readonly detail: string }
}

describe("handshake failures", () => {
  it.effect("a client with no key against a keyed server: both fail with HandshakeError", () =>
    Effect.gen(function* () {
      const pair = linkPair()
      const server = yield* Effect.forkChild(connect(pair.server, "server", { clusterKey: key }))
      const client = yield* Effect.exit(connect(pair.client, "client", {}))
      const clientError = handshakeError(client)
      expect([clientError._tag, clientError.reason]).toEqual([
        "HandshakeError",
        "AuthenticationRequired",
      ])
      const serverError = handshakeError(yield* Fiber.await(server))
      expect([serverError._tag, serverError.reason]).toEqual([
        "HandshakeError",
        "AuthenticationRequired",
      ])
    }).pipe(Effect.scoped),
  )

  it.effect("a client with the wrong key: client HandshakeError, the server's make fails", () =>
    Effect.gen(function* () {
      const pair = linkPair()
      const server = yield* Effect.forkChild(connect(pair.server, "server", { clusterKey: key }))
      const client = yield* Effect.exit(
        connect(pair.client, "client", { clusterKey: Redacted.make("wrong") }),
      )
      const clientError = handshakeError(client)
      expect([clientError._tag, clientError.reason]).toEqual([
        "HandshakeError",
        "AuthenticationFailed",
      ])
      // The client gives up on the server's proof and aborts; the server sees the abort.
      const serverError = handshakeError(yield* Fiber.await(server))
      expect(["HandshakeError", "ConnectError"]).toContain(serverError._tag)
    }).pipe(Effect.scoped),
  )

  it.effect("a keyed client against an unkeyed server: both fail with AuthenticationFailed", () =>
    Effect.gen(function* () {
      const pair = linkPair()
      const server = yield* Effect.forkChild(connect(pair.server, "server", {}))
      const clientError = handshakeError(
        yield* Effect.exit(connect(pair.client, "client", { clusterKey: key })),
      )
      expect([clientError._tag, clientError.reason]).toEqual([
        "HandshakeError",
        "AuthenticationFailed",
      ])
      const serverError = handshakeError(yield* Fiber.await(server))
      expect([serverError._tag, serverError.reason]).toEqual([
        "HandshakeError",
        "AuthenticationFailed",
      ])
    }).pipe(Effect.scoped),
  )

  it.effect(
    "an attacker pipelining Hello, a made-up Proof and data: HandshakeError, nothing opened",
    () =>
      Effect.gen(function* () {
        const pair = linkPair()
        const server = yield* Effect.forkChild(connect(pair.server, "server", { clusterKey: key }))
        const peer = rawPeer(pair.client)
        pair.client.write(
          concat([
            hello({ nonce: new Uint8Array(randomBytes(nonceBytes)) }),
            encodeFrame(FrameType.Proof, new Uint8Array(randomBytes(macBytes))),
            forged(message(1)),
          ]),
        )
        const error = handshakeError(yield* Fiber.await(server))
        expect([error._tag, error.reason]).toEqual(["HandshakeError", "AuthenticationFailed"])
        yield* eventually(() => peer.reset, "the server aborted the link")
        // Its HelloAck, and no Ready: the attacker's data was never read as a message.
        expect(peer.frames.map((f) => f.type)).toEqual([FrameType.HelloAck])
      }).pipe(Effect.scoped),
  )

  it.effect("an attacker reflecting the server's own proof back: AuthenticationFailed", () =>
    Effect.gen(function* () {
      const pair = linkPair()
      const server = yield* Effect.forkChild(connect(pair.server, "server", { clusterKey: key }))
      rawPeer(pair.client, (frame, peer) => {
        if (frame.type !== FrameType.HelloAck) return
        const ack = decodeHelloAck(frame.body, true)
        if (typeof ack === "string") throw new Error(ack)
        peer.write(encodeFrame(FrameType.Proof, ack.mac))
      })
      pair.client.write(hello({ nonce: new Uint8Array(randomBytes(nonceBytes)) }))
      const error = handshakeError(yield* Fiber.await(server))
      expect([error._tag, error.reason]).toEqual(["HandshakeError", "AuthenticationFailed"])
    }).pipe(Effect.scoped),
  )

  it.effect("an unkeyed Hello pipelined with data to a keyed server: AuthenticationRequired", () =>
    Effect.gen(function* () {
      const pair = linkPair()
      const server = yield* Effect.forkChild(connect(pair.server, "server", { clusterKey: key }))
      const peer = rawPeer(pair.client)
      pair.client.write(concat([hello(), dataFrame(message(1))]))
      const error = handshakeError(yield* Fiber.await(server))
      expect([error._tag, error.reason]).toEqual(["HandshakeError", "AuthenticationRequired"])
      yield* eventually(() => peer.ended, "the server ended the link")
      const ack = decodeHelloAck(peer.frames[0]!.body, false)
      expect(typeof ack !== "string" && ack.status).toBe(HelloStatus.AuthenticationRequired)
    }).pipe(Effect.scoped),
  )

  const garbage: ReadonlyArray<[string, Uint8Array]> = [
    ["an HTTP request", utf8("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")],
    [
      "a TLS ClientHello",
      new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]),
    ],
    ["a Data frame first", dataFrame(message(1))],
    ["a zero-length frame", header(0)],
    [
      "a Hello frame with the wrong magic",
      encodeFrame(FrameType.Hello, utf8("UNDERSTUDX\u0001\u0000")),
    ],
    [
      "a Hello with unknown flags",
      encodeFrame(FrameType.Hello, concat([utf8("UNDERSTUDY"), new Uint8Array([1, 9])])),
    ],
    [
      "a Hello with a short nonce",
      encodeFrame(FrameType.Hello, concat([utf8("UNDERSTUDY"), new Uint8Array([1, 1, 7])])),
    ],
  ]
  for (const [name, bytes] of garbage) {
    it.effect(
      `a client sending ${name} instead of a hello: server HandshakeError NotUnderstudy`,
      () =>
        Effect.gen(function* () {
          const pair = linkPair()
          const server = yield* Effect.forkChild(connect(pair.server, "server", {}))
          const peer = rawPeer(pair.client)
          pair.client.write(bytes)
          const error = handshakeError(yield* Fiber.await(server))
          expect([error._tag, error.reason]).toEqual(["HandshakeError", "NotUnderstudy"])
          yield* eventually(() => peer.reset, "the server aborted the link")
          expect(peer.frames).toEqual([])
        }).pipe(Effect.scoped),
    )
  }

  it("random bytes instead of a hello never open a connection", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 64 }), (bytes) =>
        Effect.gen(function* () {
          const pair = linkPair()
          const server = yield* Effect.forkChild(connect(pair.server, "server", {}))
          rawPeer(pair.client)
          pair.client.write(bytes)
          pair.client.end()
          const error = handshakeError(yield* Fiber.await(server))
          if (error._tag === "ConnectError") expect(error.reason).toBe("Closed")
          else expect([error._tag, error.reason]).toEqual(["HandshakeError", "NotUnderstudy"])
        }).pipe(Effect.scoped, Effect.runPromise),
      ),
      { numRuns: 200 },
    )
  })

  const replies: ReadonlyArray<[string, Uint8Array, string]> = [
    ["an HTTP 400", utf8("HTTP/1.1 400 Bad Request\r\n\r\n"), "NotUnderstudy"],
    ["an SSH banner", utf8("SSH-2.0-OpenSSH_9.6\r\n"), "NotUnderstudy"],
    ["a Data frame", dataFrame(message(1)), "NotUnderstudy"],
    [
      "a HelloAck with an unknown status",
      encodeFrame(
        FrameType.HelloAck,
        encodeHelloAck({ version: 1, status: 9, nonce: new Uint8Array(0), mac: new Uint8Array(0) }),
      ),
      "NotUnderstudy",
    ],
    [
      "a HelloAck saying VersionMismatch",
      encodeFrame(
        FrameType.HelloAck,
        encodeHelloAck({
          version: 7,
          status: HelloStatus.VersionMismatch,
          nonce: new Uint8Array(0),
          mac: new Uint8Array(0),
        }),
      ),
      "VersionMismatch",
    ],
    [
      "an Ok HelloAck of another version",
      encodeFrame(
        FrameType.HelloAck,
        encodeHelloAck({ version: 2, status: 0, nonce: new Uint8Array(0), mac: new Uint8Array(0) }),
      ),
      "VersionMismatch",
    ],
  ]
  for (const [name, reply, reason] of replies) {
    it.effect(`a server answering the hello with ${name}: client HandshakeError ${reason}`, () =>
      Effect.gen(function* () {
        const pair = linkPair()
        const peer = rawPeer(pair.server, (frame, server) => {
          if (frame.type === FrameType.Hello) server.write(reply)
        })
        const error = handshakeError(yield* Effect.exit(connect(pair.client, "client", {})))
        expect([error._tag, error.reason]).toEqual(["HandshakeError", reason])
        expect(peer.frames.map((f) => f.type)).toEqual([FrameType.Hello])
      }).pipe(Effect.scoped),
    )
  }

  it.effect(
    "a client of another version: server VersionMismatch, and it says so before ending",
    () =>
      Effect.gen(function* () {
        const pair = linkPair()
        const server = yield* Effect.forkChild(connect(pair.server, "server", {}))
        const peer = rawPeer(pair.client)
        pair.client.write(hello({ version: protocolVersion + 1 }))
        const error = handshakeError(yield* Fiber.await(server))
        expect([error._tag, error.reason]).toEqual(["HandshakeError", "VersionMismatch"])
        yield* eventually(() => peer.ended, "the server ended the link")
        const ack = decodeHelloAck(peer.frames[0]!.body, false)
        expect(typeof ack !== "string" && [ack.status, ack.version]).toEqual([
          HelloStatus.VersionMismatch,
          protocolVersion,
        ])
      }).pipe(Effect.scoped),
  )

  it.effect(
    "a server that never answers: ConnectError Timeout at handshakeTimeout, not before",
    () =>
      Effect.gen(function* () {
        const pair = linkPair()
        const peer = rawPeer(pair.server)
        const client = yield* Effect.forkChild(
          Effect.exit(connect(pair.client, "client", { handshakeTimeout: 1_000 })),
        )
        yield* eventually(() => peer.frames.length === 1, "the hello arrived")
        yield* TestClock.adjust(999)
        expect(client.pollUnsafe()).toBeUndefined()
        yield* TestClock.adjust(1)
        const error = handshakeError(yield* Fiber.join(client))
        expect([error._tag, error.reason]).toEqual(["ConnectError", "Timeout"])
        yield* eventually(() => peer.reset, "the client aborted the link")
      }).pipe(Effect.scoped),
  )

  it.effect("a client that sends half a hello and waits: server ConnectError Timeout", () =>
    Effect.gen(function* () {
      const pair = linkPair()
      const server = yield* Effect.forkChild(
        Effect.exit(connect(pair.server, "server", { handshakeTimeout: 500 })),
      )
      rawPeer(pair.client)
      pair.client.write(hello().subarray(0, 8))
      yield* TestClock.adjust(499)
      expect(server.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust(1)
      const error = handshakeError(yield* Fiber.join(server))
      expect([error._tag, error.reason]).toEqual(["ConnectError", "Timeout"])
    }).pipe(Effect.scoped),
  )
})
