/**
 * Every transport metric moves when what it counts happens, in the metrics registry of the
 * fiber that listened, connected or bound; and the transport's log lines carry the caller's
 * annotations (the node's id) besides its own addresses.
 */
import * as net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Logger, Metric, Option, Redacted, References, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Address from "../src/Address.ts"
import * as Codec from "../src/Codec.ts"
import { Datagram } from "../src/Datagram.ts"
import * as Metrics from "../src/Metrics.ts"
import * as NodeDatagram from "../src/NodeDatagram.ts"
import * as NodeTransport from "../src/NodeTransport.ts"
import * as SimNet from "../src/SimNet.ts"
import { Transport } from "../src/Transport.ts"
import { decoder, encoder, text } from "./support/text.ts"

/** Refuses the message "bad", as a peer's undecodable bytes would be. */
const strict = Codec.make<string>({
  name: "strict",
  encode: (message) => encoder.encode(message),
  decode: (payload) => {
    const message = decoder.decode(payload)
    if (message === "bad") throw new Error("not a message")
    return message
  },
})
const key = Redacted.make("a cluster key of the test's own")

/** Each test counts in a registry of its own. */
const isolated = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provideService(effect, Metric.MetricRegistry, new Map())

const count = (metric: Metric.Counter<number>, labels: Record<string, string> = {}) =>
  Effect.map(Metric.value(Metric.withAttributes(metric, labels)), (state) => state.count)

const open = (side: "client" | "server") =>
  Effect.map(
    Metric.value(Metric.withAttributes(Metrics.connections, { side })),
    (state) => state.value,
  )

interface Line {
  readonly message: string
  readonly level: string
  readonly annotations: Record<string, unknown>
}

/** A logger that keeps every line, for the checks on annotations. */
const recordLines = (lines: Array<Line>) =>
  Logger.layer([
    Logger.make(({ message, logLevel, fiber }) => {
      lines.push({
        message: (Array.isArray(message) ? message : [message]).join(" "),
        level: logLevel,
        annotations: { ...fiber.getRef(References.CurrentLogAnnotations) },
      })
    }),
  ])

/** A server on `server:7000` that echoes what it reads, with `options`' codec and key. */
const echoServer = (codec: Codec.Codec<string>, clusterKey?: typeof key) =>
  Effect.gen(function* () {
    const transport = yield* Transport
    const listener = yield* transport.listen(Address.tcp("server", 7000), {
      codec,
      ...(clusterKey === undefined ? {} : { clusterKey }),
    })
    yield* Stream.runForEach(listener.connections, (connection) =>
      Effect.forkScoped(
        Stream.runForEach(connection.messages, (message) => connection.send(message)).pipe(
          Effect.ignore,
        ),
      ),
    )
  })

const connect = (
  net: SimNet.SimNet,
  options: { readonly codec?: Codec.Codec<string>; readonly clusterKey?: typeof key } = {},
) =>
  Effect.gen(function* () {
    const transport = yield* Transport
    return yield* transport.connect(Address.tcp("server", 7000), {
      codec: options.codec ?? text,
      keepAlive: false,
      ...(options.clusterKey === undefined ? {} : { clusterKey: options.clusterKey }),
    })
  }).pipe(Effect.provide(net.layer("client")))

describe("transport metrics (SimNet)", () => {
  it.effect("a keyed connection's handshakes, messages, bytes, gauge and closes", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.fixed(10) } })
      yield* net.run("server", echoServer(text, key))
      const fiber = yield* Effect.forkScoped(connect(net, { clusterKey: key }))
      yield* TestClock.adjust(100)
      const connection = yield* Fiber.join(fiber)
      expect(yield* count(Metrics.handshakes, { side: "client", outcome: "accepted" })).toBe(1)
      expect(yield* count(Metrics.handshakes, { side: "server", outcome: "accepted" })).toBe(1)
      expect([yield* open("client"), yield* open("server")]).toEqual([1, 1])

      yield* connection.sendAll(["one", "two", "three"])
      const echoes = yield* Effect.forkScoped(
        Stream.runCollect(Stream.take(connection.messages, 3)),
      )
      yield* TestClock.adjust(100)
      expect(yield* Fiber.join(echoes)).toEqual(["one", "two", "three"])
      // Three each way: the client's and the server's echoes.
      expect(yield* count(Metrics.messagesSent)).toBe(6)
      expect(yield* count(Metrics.messagesReceived)).toBe(6)
      const sent = yield* count(Metrics.bytesSent)
      // The handshake (hello, answer, proof) and six MACed frames of 3-5 bytes, all read.
      expect(sent).toBeGreaterThan(6 * (5 + 32))
      expect(yield* count(Metrics.bytesReceived)).toBe(sent)

      yield* connection.close
      yield* TestClock.adjust(100)
      expect(yield* count(Metrics.closes, { side: "client", reason: "LocalClose" })).toBe(1)
      expect(yield* count(Metrics.closes, { side: "server", reason: "End" })).toBe(1)
      expect([yield* open("client"), yield* open("server")]).toEqual([0, 0])
    }).pipe(Effect.scoped, isolated),
  )

  it.effect("handshakes refused, by reason, on both sides", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.fixed(10) } })
      yield* net.run("server", echoServer(text, key))
      const keyless = yield* Effect.forkScoped(Effect.flip(connect(net)))
      const wrongKey = yield* Effect.forkScoped(
        Effect.flip(connect(net, { clusterKey: Redacted.make("another key") })),
      )
      yield* TestClock.adjust(100)
      expect((yield* Fiber.join(keyless))._tag).toBe("HandshakeError")
      expect((yield* Fiber.join(wrongKey))._tag).toBe("HandshakeError")
      for (const side of ["client", "server"]) {
        expect(yield* count(Metrics.handshakes, { side, outcome: "AuthenticationRequired" })).toBe(
          1,
        )
        expect(yield* count(Metrics.handshakes, { side, outcome: "accepted" })).toBe(0)
      }
      // With another key, the client finds the server's proof wrong and hangs up: the
      // server sees it close during the handshake.
      expect(
        yield* count(Metrics.handshakes, { side: "client", outcome: "AuthenticationFailed" }),
      ).toBe(1)
      expect(yield* count(Metrics.handshakes, { side: "server", outcome: "Closed" })).toBe(1)
      expect([yield* open("client"), yield* open("server")]).toEqual([0, 0])
    }).pipe(Effect.scoped, isolated),
  )

  it.effect(
    "a keep-alive time-out and an undecodable message close by reason, logged with the caller's node",
    () => {
      const lines: Array<Line> = []
      return Effect.gen(function* () {
        const net = yield* SimNet.make({ link: { latency: SimNet.fixed(10) } })
        yield* net.run("server", echoServer(strict).pipe(Effect.annotateLogs({ node: "server-1" })))
        const first = yield* Effect.forkScoped(connect(net))
        yield* TestClock.adjust(100)
        const connection = yield* Fiber.join(first)
        yield* connection.send("bad")
        yield* TestClock.adjust(100)
        expect(yield* count(Metrics.closes, { side: "server", reason: "ProtocolError" })).toBe(1)
        const refused = lines.find((line) => line.message.startsWith("connection closed: Protocol"))
        expect(refused?.level).toBe("Warn")
        expect(refused?.annotations).toMatchObject({
          node: "server-1",
          side: "server",
          local: "tcp://server:7000",
          peer: "tcp://client:49152",
        })

        // The server's keep-alive (the default: 5 s) finds the client silent across a cut.
        const second = yield* Effect.forkScoped(connect(net))
        yield* TestClock.adjust(100)
        yield* Fiber.join(second)
        yield* net.partition(["client"], ["server"])
        yield* TestClock.adjust(7_000)
        expect(yield* count(Metrics.closes, { side: "server", reason: "Timeout" })).toBe(1)
        const silent = lines.find((line) => line.message.startsWith("connection closed: Timeout"))
        expect(silent?.annotations).toMatchObject({ node: "server-1", side: "server" })
      }).pipe(
        Effect.scoped,
        Effect.provide(recordLines(lines)),
        Effect.provideService(References.MinimumLogLevel, "Debug"),
        isolated,
      )
    },
  )

  it.effect("datagrams sent, received, and dropped when the reader is behind", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ datagramBufferSize: 3 })
      yield* Effect.gen(function* () {
        const datagram = yield* Datagram
        const to = yield* datagram.bind(Address.udp("a", 9000))
        const from = yield* datagram.bind(Address.udp("a", 0))
        for (let index = 0; index < 5; index++) yield* from.send(to.address, encoder.encode("x"))
        yield* TestClock.adjust(10)
      }).pipe(Effect.provide(net.layer("a")))
      expect(yield* count(Metrics.datagramsSent)).toBe(5)
      expect(yield* count(Metrics.datagramsReceived)).toBe(3)
      expect(yield* count(Metrics.datagramsDropped, { reason: "queue-full" })).toBe(2)
    }).pipe(Effect.scoped, isolated),
  )
})

describe("transport metrics (real sockets)", () => {
  it.live("NodeTransport: a refused handshake is counted and logged with the caller's node", () =>
    Effect.gen(function* () {
      const lines: Array<Line> = []
      const transport = yield* Transport
      const listener = yield* transport
        .listen(Address.tcp("127.0.0.1", 0), { codec: text, clusterKey: key })
        .pipe(Effect.annotateLogs({ node: "node-a" }), Effect.provide(recordLines(lines)))
      const refused = yield* Effect.flip(transport.connect(listener.address, { codec: text }))
      expect(refused._tag).toBe("HandshakeError")
      const good = yield* transport.connect(listener.address, { codec: text, clusterKey: key })
      const accepted = yield* Stream.runHead(listener.connections)
      expect(Option.isSome(accepted)).toBe(true)
      yield* good.send("hello")
      expect(yield* count(Metrics.handshakes, { side: "client", outcome: "accepted" })).toBe(1)
      expect(
        yield* count(Metrics.handshakes, { side: "client", outcome: "AuthenticationRequired" }),
      ).toBe(1)
      // The server side decides after its answer is written: wait for its count and line.
      for (let turn = 0; turn < 1_000; turn++) {
        if (lines.some((line) => line.message.includes("failed the handshake"))) break
        yield* Effect.sleep(5)
      }
      expect(
        yield* count(Metrics.handshakes, { side: "server", outcome: "AuthenticationRequired" }),
      ).toBe(1)
      expect(yield* count(Metrics.handshakes, { side: "server", outcome: "accepted" })).toBe(1)
      expect([yield* open("client"), yield* open("server")]).toEqual([1, 1])
      const dropped = lines.find((line) => line.message.includes("failed the handshake"))
      expect(dropped?.annotations).toMatchObject({ node: "node-a" })
    }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer), isolated),
  )

  it.live("NodeTransport: a server that never answers the hello counts as a Timeout", () =>
    Effect.gen(function* () {
      // Accepts and reads nothing: the client's hello is never answered.
      const sockets = new Set<net.Socket>()
      const silent = yield* Effect.acquireRelease(
        Effect.callback<net.Server>((resume) => {
          const server = net.createServer((socket) => void sockets.add(socket))
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) =>
          Effect.sync(() => {
            for (const socket of sockets) socket.destroy()
            server.close()
          }),
      )
      const { port } = silent.address() as net.AddressInfo
      const transport = yield* Transport
      const failed = yield* Effect.flip(
        transport.connect(Address.tcp("127.0.0.1", port), {
          codec: text,
          handshakeTimeout: "200 millis",
        }),
      )
      expect(failed._tag === "ConnectError" && failed.reason).toBe("Timeout")
      expect(yield* count(Metrics.handshakes, { side: "client", outcome: "Timeout" })).toBe(1)
    }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer), isolated),
  )

  it.live(
    "NodeTransport: a socket past the listener's 1,024 pending handshakes is counted as Overloaded",
    () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const listener = yield* transport.listen(Address.tcp("127.0.0.1", 0), {
          codec: text,
          handshakeTimeout: "60 seconds",
        })
        const { host, port } = listener.address as Address.Tcp
        // 1,025 peers that connect and never say hello: the first 1,024 wait in the handshake.
        const silent: Array<net.Socket> = []
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            for (const socket of silent) socket.destroy()
          }),
        )
        // In batches, each connected before the next: 1,025 SYNs at once overflow the
        // listen backlog on a loaded machine, and a dropped SYN is retried only seconds later.
        const connected = (socket: net.Socket) =>
          Effect.callback<void>((resume) => {
            socket.once("connect", () => resume(Effect.void))
          })
        for (let index = 0; index < 1_025; index += 64) {
          const batch: Array<net.Socket> = []
          for (let n = index; n < Math.min(index + 64, 1_025); n++) {
            const socket = net.connect({ host, port })
            socket.on("error", () => {})
            silent.push(socket)
            batch.push(socket)
          }
          yield* Effect.forEach(batch, connected, { concurrency: "unbounded", discard: true }).pipe(
            Effect.timeout("60 seconds"),
          )
        }
        for (let turn = 0; turn < 1_000; turn++) {
          if ((yield* count(Metrics.handshakes, { side: "server", outcome: "Overloaded" })) > 0)
            break
          yield* Effect.sleep(10)
        }
        expect(yield* count(Metrics.handshakes, { side: "server", outcome: "Overloaded" })).toBe(1)
      }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer), isolated),
  )

  it.live("NodeDatagram: datagrams sent and received", () =>
    Effect.gen(function* () {
      const datagram = yield* Datagram
      const to = yield* datagram.bind(Address.udp("127.0.0.1", 0))
      const from = yield* datagram.bind(Address.udp("127.0.0.1", 0))
      for (let index = 0; index < 3; index++) yield* from.send(to.address, encoder.encode("x"))
      const got = yield* Stream.runCollect(Stream.take(to.messages, 3)).pipe(
        Effect.timeout("10 seconds"),
      )
      expect(got.length).toBe(3)
      expect(yield* count(Metrics.datagramsSent)).toBe(3)
      expect(yield* count(Metrics.datagramsReceived)).toBe(3)
      expect(yield* count(Metrics.datagramsDropped, { reason: "queue-full" })).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer), isolated),
  )
})
