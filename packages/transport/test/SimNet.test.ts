import { describe, expect, it } from "@effect/vitest"
import { Cause, Clock, Effect, Exit, Fiber, Random, type Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Address from "../src/Address.ts"
import type { CloseReason } from "../src/CloseReason.ts"
import type { Connection } from "../src/Connection.ts"
import { Datagram } from "../src/Datagram.ts"
import type { LinkHandlers } from "../src/internal/link.ts"
import { Pipe, SimEndpoint, type SimWorld } from "../src/internal/simLink.ts"
import * as SimScheduler from "../src/internal/simScheduler.ts"
import * as SimNet from "../src/SimNet.ts"
import { Transport } from "../src/Transport.ts"
import { decoder, encoder, text } from "./support/text.ts"

const now = Clock.currentTimeMillis

/** Listens on `host:port` and echoes every message back on its connection. */
const echoServer = (host: string, port: number) =>
  Effect.gen(function* () {
    const transport = yield* Transport
    const listener = yield* transport.listen(Address.tcp(host, port), { codec: text })
    yield* Stream.runForEach(listener.connections, (connection) =>
      Effect.forkScoped(
        Stream.runForEach(connection.messages, (message) => connection.send(message)).pipe(
          Effect.ignore,
        ),
      ),
    )
  })

/** Records every message received on `host:port` with its arrival time. */
const recordingServer = (
  host: string,
  port: number,
  received: Array<{ readonly message: string; readonly atMs: number }>,
) =>
  Effect.gen(function* () {
    const transport = yield* Transport
    const listener = yield* transport.listen(Address.tcp(host, port), { codec: text })
    yield* Stream.runForEach(listener.connections, (connection) =>
      Effect.forkScoped(
        Stream.runForEach(connection.messages, (message) =>
          Effect.map(now, (atMs) => {
            received.push({ message, atMs })
          }),
        ),
      ),
    )
  })

const connectFrom = (
  net: SimNet.SimNet,
  host: string,
  address: Address.StreamAddress,
  keepAlive?: false,
) =>
  Effect.gen(function* () {
    const transport = yield* Transport
    return yield* transport.connect(address, {
      codec: text,
      ...(keepAlive === false ? { keepAlive } : {}),
    })
  }).pipe(Effect.provide(net.layer(host)))

/** Forks `effect`, advances the test clock by `ms`, and returns the fiber's result. */
const within = <A, E>(ms: number, effect: Effect.Effect<A, E, Scope.Scope>) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.forkScoped(effect)
    yield* TestClock.adjust(ms)
    return yield* Fiber.join(fiber)
  })

/** Watches `connection.closed`, keeping why and when it closed. */
const watchClosed = (connection: Connection<string>) =>
  Effect.gen(function* () {
    const state: { reason: CloseReason | undefined; atMs: number } = { reason: undefined, atMs: -1 }
    yield* Effect.forkScoped(
      Effect.flatMap(connection.closed, (reason) =>
        Effect.map(now, (atMs) => {
          state.reason = reason
          state.atMs = atMs
        }),
      ),
    )
    return state
  })

describe("SimNet streams", () => {
  it.effect("carries a message round trip over a connection", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.fixed(10) } })
      yield* net.run("server", echoServer("server", 7000))
      const reply = yield* within(
        1_000,
        Effect.gen(function* () {
          const connection = yield* connectFrom(net, "client", Address.tcp("server", 7000))
          expect(connection.local).toEqual(Address.tcp("client", 49152))
          expect(connection.remote).toEqual(Address.tcp("server", 7000))
          yield* connection.send("hello")
          return yield* Stream.runCollect(Stream.take(connection.messages, 1))
        }),
      )
      expect(reply).toEqual(["hello"])
      const kinds = (yield* net.trace).map((event) => event.kind)
      expect(kinds).toContain("connect")
      expect(kinds).toContain("accept")
    }).pipe(Effect.scoped),
  )

  it.effect("delivers a message after the link's latency, not before", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.fixed(30) } })
      const received: Array<{ readonly message: string; readonly atMs: number }> = []
      yield* net.run("server", recordingServer("server", 7000, received))
      const connection = yield* within(
        1_000,
        connectFrom(net, "client", Address.tcp("server", 7000)),
      )
      const sentAtMs = yield* now
      yield* connection.send("ping")
      yield* TestClock.adjust(29)
      expect(received).toEqual([])
      yield* TestClock.adjust(1)
      expect(received).toEqual([{ message: "ping", atMs: sentAtMs + 30 }])
    }).pipe(Effect.scoped),
  )

  it.effect("a retransmit delay that is not a positive duration is a defect naming it", () =>
    Effect.gen(function* () {
      for (const retransmit of [0, -5, "soon"] as const) {
        const exit = yield* Effect.exit(SimNet.make({ retransmit: retransmit as never }))
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit))
          expect(String(Cause.squash(exit.cause))).toMatch(
            /options\.retransmit: not a positive duration/,
          )
      }
    }).pipe(Effect.scoped),
  )

  it.effect("never loses nor reorders stream messages on a lossy, jittery link", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({
        link: { latency: SimNet.uniform(5, 50), loss: 0.3, duplicate: 0.3, reorder: 0.5 },
        retransmit: "100 millis",
      })
      const received: Array<{ readonly message: string; readonly atMs: number }> = []
      yield* net.run("server", recordingServer("server", 7000, received))
      const connection = yield* within(
        2_000,
        connectFrom(net, "client", Address.tcp("server", 7000)),
      )
      // One message per millisecond, so each goes out in its own segment.
      yield* Effect.forkScoped(
        Effect.forEach(
          Array.from({ length: 1_000 }, (_, index) => index),
          (index) => Effect.andThen(connection.send(`${index}`), Effect.sleep(1)),
          { discard: true },
        ),
      )
      yield* TestClock.adjust(5_000)
      expect(received.map((entry) => Number(entry.message))).toEqual(
        Array.from({ length: 1_000 }, (_, index) => index),
      )
      const retransmits = (yield* net.trace).filter((event) => event.kind === "retransmit").length
      expect(retransmits).toBeGreaterThan(100)
    }).pipe(Effect.scoped, Random.withSeed(7)),
  )

  it.effect("refuses a connection to an address nobody listens on, after a round trip", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.fixed(15) } })
      const fiber = yield* Effect.forkScoped(
        Effect.flip(connectFrom(net, "client", Address.tcp("server", 7000))),
      )
      yield* TestClock.adjust(29)
      expect(fiber.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust(1)
      const error = yield* Fiber.join(fiber)
      expect(error._tag).toBe("ConnectError")
      expect(error._tag === "ConnectError" && error.reason).toBe("Refused")
    }).pipe(Effect.scoped),
  )

  it.effect("times out connecting to a crashed host or across a partition", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make()
      yield* net.run("down", echoServer("down", 7000))
      yield* net.run("far", echoServer("far", 7000))
      yield* net.crash("down", { mode: "host" })
      yield* net.partition(["client"], ["far"])
      const attempt = (target: string) =>
        Effect.flip(
          Effect.gen(function* () {
            const transport = yield* Transport
            return yield* transport.connect(Address.tcp(target, 7000), {
              codec: text,
              handshakeTimeout: "2 seconds",
            })
          }).pipe(Effect.provide(net.layer("client"))),
        )
      const down = yield* Effect.forkScoped(attempt("down"))
      const far = yield* Effect.forkScoped(attempt("far"))
      yield* TestClock.adjust(1_999)
      expect(down.pollUnsafe()).toBeUndefined()
      expect(far.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust(1)
      for (const fiber of [down, far]) {
        const error = yield* Fiber.join(fiber)
        expect(error._tag === "ConnectError" && error.reason).toBe("Timeout")
      }
    }).pipe(Effect.scoped),
  )

  it.effect("fails a second listen on the same port or path with AddressInUse", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make()
      const program = Effect.gen(function* () {
        const transport = yield* Transport
        const first = yield* transport.listen(Address.tcp("a", 7000), { codec: text })
        expect(first.address).toEqual(Address.tcp("a", 7000))
        const second = yield* Effect.flip(transport.listen(Address.tcp("a", 7000), { codec: text }))
        expect(second.reason).toBe("AddressInUse")
        yield* transport.listen(Address.unix("/run/app.sock"), { codec: text })
        const unix = yield* Effect.flip(
          transport.listen(Address.unix("/run/app.sock"), { codec: text }),
        )
        expect(unix.reason).toBe("AddressInUse")
        const ephemeral = yield* transport.listen(Address.tcp("a", 0), { codec: text })
        expect(ephemeral.address).toEqual(Address.tcp("a", 49152))
        const foreign = yield* Effect.flip(
          transport.listen(Address.tcp("b", 7000), { codec: text }),
        )
        expect(foreign.reason).toBe("AddressNotAvailable")
      })
      yield* program.pipe(Effect.provide(net.layer("a")))
      // Another host has its own ports.
      yield* Effect.gen(function* () {
        const transport = yield* Transport
        yield* transport.listen(Address.tcp("b", 7000), { codec: text })
      }).pipe(Effect.provide(net.layer("b")))
    }).pipe(Effect.scoped),
  )

  it.effect("unbind frees the address at once; a connection it accepted lives on", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make()
      const address = Address.tcp("a", 7000)
      const listen = Effect.gen(function* () {
        const transport = yield* Transport
        return yield* transport.listen(address, { codec: text })
      }).pipe(Effect.provide(net.layer("a")))
      const listener = yield* listen
      const accepted = yield* Effect.forkScoped(Stream.runHead(listener.connections))
      const client = yield* within(10, connectFrom(net, "b", address))
      const server = yield* Fiber.join(accepted)
      if (server._tag === "None") throw new Error("no connection accepted")
      yield* listener.unbind
      yield* listener.unbind
      // The address is free for another listener while the first one's scope is open...
      const second = yield* listen
      expect(second.address).toEqual(address)
      // ...and the connection accepted before still carries messages.
      const received = yield* Effect.forkScoped(Stream.runHead(client.messages))
      yield* server.value.send("still here")
      yield* TestClock.adjust(10)
      const message = yield* Fiber.join(received)
      expect(message._tag === "Some" && message.value).toBe("still here")
    }).pipe(Effect.scoped),
  )

  it.effect("connects over a unix socket within one host", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make()
      const address = Address.unix("/run/app.sock")
      yield* net.run(
        "a",
        Effect.gen(function* () {
          const transport = yield* Transport
          const listener = yield* transport.listen(address, { codec: text })
          yield* Stream.runForEach(listener.connections, (connection) =>
            Effect.forkScoped(
              Stream.runForEach(connection.messages, (message) => connection.send(`${message}!`)),
            ),
          )
        }),
      )
      const reply = yield* within(
        100,
        Effect.gen(function* () {
          const connection = yield* connectFrom(net, "a", address)
          yield* connection.send("hi")
          return yield* Stream.runCollect(Stream.take(connection.messages, 1))
        }),
      )
      expect(reply).toEqual(["hi!"])
    }).pipe(Effect.scoped),
  )

  it.effect("holds stream bytes during a partition and delivers them after heal", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.fixed(10) } })
      const received: Array<{ readonly message: string; readonly atMs: number }> = []
      yield* net.run("server", recordingServer("server", 7000, received))
      const connection = yield* within(
        1_000,
        connectFrom(net, "client", Address.tcp("server", 7000)),
      )
      yield* net.partition(["client"], ["server"])
      yield* connection.send("held")
      yield* TestClock.adjust(2_000)
      expect(received).toEqual([])
      const healedAtMs = yield* now
      yield* net.heal
      yield* TestClock.adjust(10)
      expect(received).toEqual([{ message: "held", atMs: healedAtMs + 10 }])
      const watched = yield* watchClosed(connection)
      yield* TestClock.adjust(1_000)
      expect(watched.reason).toBeUndefined()
    }).pipe(Effect.scoped),
  )

  it.effect("ends a connection with Timeout when a partition outlasts the keep-alive", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.fixed(10) } })
      yield* net.run("server", echoServer("server", 7000))
      const connection = yield* within(
        1_000,
        connectFrom(net, "client", Address.tcp("server", 7000)),
      )
      const watched = yield* watchClosed(connection)
      const cutAtMs = yield* now
      yield* net.partition(["client"], ["server"])
      yield* TestClock.adjust(4_000)
      expect(watched.reason).toBeUndefined()
      yield* TestClock.adjust(2_000)
      expect(watched.reason?._tag).toBe("Timeout")
      expect(watched.atMs - cutAtMs).toBeGreaterThanOrEqual(4_000)
    }).pipe(Effect.scoped),
  )
  it.effect("backpressure from a reader that does not read reaches the sender's send", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ highWaterBytes: 4_096 })
      const accepted: Array<Connection<string>> = []
      yield* net.run(
        "server",
        Effect.gen(function* () {
          const transport = yield* Transport
          const listener = yield* transport.listen(Address.tcp("server", 7000), {
            codec: text,
            receiveBufferBytes: 2_048,
          })
          yield* Stream.runForEach(listener.connections, (connection) =>
            Effect.sync(() => {
              accepted.push(connection)
            }),
          )
        }),
      )
      const connection = yield* within(
        100,
        Effect.gen(function* () {
          const transport = yield* Transport
          return yield* transport.connect(Address.tcp("server", 7000), {
            codec: text,
            sendQueueCapacity: 4,
          })
        }).pipe(Effect.provide(net.layer("client"))),
      )
      let sent = 0
      const payload = "x".repeat(1_000)
      yield* Effect.forkScoped(
        Effect.forEach(
          Array.from({ length: 100 }, () => payload),
          (message) =>
            Effect.map(connection.send(message), () => {
              sent++
            }),
          { discard: true },
        ),
      )
      yield* TestClock.adjust(1_000)
      // Queue (4) + what the link holds (about 4 KiB) + the server's buffer (about 2 KiB).
      expect(sent).toBeGreaterThan(4)
      expect(sent).toBeLessThan(40)
      const server = accepted[0]!
      const got = yield* within(1_000, Stream.runCollect(Stream.take(server.messages, 100)))
      expect(got.length).toBe(100)
      expect(sent).toBe(100)
    }).pipe(Effect.scoped),
  )
})

describe("SimNet crash and restart", () => {
  it.effect("process crash: the peer sees Reset after the latency, not before", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.fixed(20) } })
      yield* net.run("server", echoServer("server", 7000))
      const connection = yield* within(
        1_000,
        connectFrom(net, "client", Address.tcp("server", 7000)),
      )
      const watched = yield* watchClosed(connection)
      const crashedAtMs = yield* now
      yield* net.crash("server")
      expect(net.isUp("server")).toBe(false)
      yield* TestClock.adjust(19)
      expect(watched.reason).toBeUndefined()
      yield* TestClock.adjust(1)
      expect(watched.reason?._tag).toBe("Reset")
      expect(watched.atMs).toBe(crashedAtMs + 20)
    }).pipe(Effect.scoped),
  )

  it.effect("process crash behind a partition: the reset arrives once healed", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.fixed(20) } })
      yield* net.run("server", echoServer("server", 7000))
      const connection = yield* within(
        1_000,
        connectFrom(net, "client", Address.tcp("server", 7000)),
      )
      const watched = yield* watchClosed(connection)
      yield* net.partition(["server"], ["client"], { oneWay: true })
      yield* net.crash("server")
      yield* TestClock.adjust(1_000)
      expect(watched.reason).toBeUndefined()
      const healedAtMs = yield* now
      yield* net.heal
      yield* TestClock.adjust(20)
      expect(watched.reason?._tag).toBe("Reset")
      expect(watched.atMs).toBe(healedAtMs + 20)
    }).pipe(Effect.scoped),
  )

  it.effect("host crash: the peer sees Timeout after the keep-alive time-out", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.fixed(20) } })
      yield* net.run("server", echoServer("server", 7000))
      const connection = yield* within(
        1_000,
        connectFrom(net, "client", Address.tcp("server", 7000)),
      )
      const watched = yield* watchClosed(connection)
      const crashedAtMs = yield* now
      yield* net.crash("server", { mode: "host" })
      yield* TestClock.adjust(3_900)
      expect(watched.reason).toBeUndefined()
      yield* TestClock.adjust(3_000)
      expect(watched.reason?._tag).toBe("Timeout")
      // Default keep-alive: 5 s without hearing anything, checked every 500 ms.
      expect(watched.atMs - crashedAtMs).toBeGreaterThanOrEqual(4_000)
      expect(watched.atMs - crashedAtMs).toBeLessThanOrEqual(5_600)
    }).pipe(Effect.scoped),
  )

  it.effect("restart runs the host's programs again, which accept connections", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make()
      let starts = 0
      yield* net.run(
        "server",
        Effect.andThen(
          Effect.sync(() => {
            starts++
          }),
          echoServer("server", 7000),
        ),
      )
      const roundTrip = Effect.gen(function* () {
        const connection = yield* connectFrom(net, "client", Address.tcp("server", 7000))
        yield* connection.send("again")
        return yield* Stream.runCollect(Stream.take(connection.messages, 1))
      })
      expect(yield* within(100, Effect.scoped(roundTrip))).toEqual(["again"])
      yield* net.crash("server")
      const refused = yield* within(5_000, Effect.flip(Effect.scoped(roundTrip)))
      expect(refused._tag === "ConnectError" && refused.reason).toBe("Timeout")
      yield* net.restart("server")
      expect(net.isUp("server")).toBe(true)
      expect(yield* within(100, Effect.scoped(roundTrip))).toEqual(["again"])
      expect(starts).toBe(2)
      const kinds = (yield* net.trace).map((event) => event.kind)
      expect(kinds).toContain("crash")
      expect(kinds).toContain("restart")
    }).pipe(Effect.scoped),
  )
})

/** Binds `udp://host:port` and collects what arrives. */
const collector = (net: SimNet.SimNet, host: string, port: number) =>
  Effect.gen(function* () {
    const datagram = yield* Datagram
    const endpoint = yield* datagram.bind(Address.udp(host, port))
    const received: Array<string> = []
    yield* Effect.forkScoped(
      Stream.runForEach(endpoint.messages, (message) =>
        Effect.sync(() => {
          received.push(decoder.decode(message.bytes))
        }),
      ),
    )
    return { endpoint, received }
  }).pipe(Effect.provide(net.layer(host)))

/** Sends `count` numbered datagrams, one per millisecond. */
const sendNumbered = (
  from: {
    readonly endpoint: {
      readonly send: (to: Address.Udp, bytes: Uint8Array) => Effect.Effect<void, unknown>
    }
  },
  to: Address.Udp,
  count: number,
) =>
  Effect.forEach(
    Array.from({ length: count }, (_, index) => index),
    (index) =>
      Effect.andThen(
        Effect.ignore(from.endpoint.send(to, encoder.encode(`${index}`))),
        Effect.sleep(1),
      ),
    { discard: true },
  )

describe("SimNet datagrams", () => {
  it.effect("loss, duplication and reordering have the configured shape", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({
        link: { latency: SimNet.fixed(10) },
        datagramBufferSize: 4_096,
      })
      const a = yield* collector(net, "a", 9000)
      const lossy = yield* collector(net, "b", 9000)
      const doubled = yield* collector(net, "c", 9000)
      const shuffled = yield* collector(net, "d", 9000)
      yield* net.setLink("a", "b", { loss: 0.2 })
      yield* net.setLink("a", "c", { duplicate: 0.1 })
      yield* net.setLink("a", "d", { reorder: 0.3 })
      yield* Effect.forkScoped(sendNumbered(a, Address.udp("b", 9000), 1_000))
      yield* Effect.forkScoped(sendNumbered(a, Address.udp("c", 9000), 1_000))
      yield* Effect.forkScoped(sendNumbered(a, Address.udp("d", 9000), 1_000))
      yield* TestClock.adjust(2_000)

      expect(lossy.received.length).toBeGreaterThan(720)
      expect(lossy.received.length).toBeLessThan(880)

      expect(doubled.received.length).toBeGreaterThan(1_060)
      expect(doubled.received.length).toBeLessThan(1_140)
      expect(new Set(doubled.received).size).toBe(1_000)

      expect(shuffled.received.length).toBe(1_000)
      const numbers = shuffled.received.map(Number)
      let overtaken = 0
      let highest = -1
      for (const n of numbers) {
        if (n < highest) overtaken++
        highest = Math.max(highest, n)
      }
      // About 30% get an extra delay of up to 20 ms; most of those are overtaken.
      expect(overtaken).toBeGreaterThan(150)
      expect(overtaken).toBeLessThan(350)
      expect([...numbers].sort((x, y) => x - y)).toEqual(
        Array.from({ length: 1_000 }, (_, index) => index),
      )
    }).pipe(Effect.scoped, Random.withSeed(11)),
  )

  it.effect(
    "a symmetric partition blocks both ways, a one-way one only its way, heal restores",
    () =>
      Effect.gen(function* () {
        const net = yield* SimNet.make()
        const a = yield* collector(net, "a", 9000)
        const b = yield* collector(net, "b", 9000)
        const exchange = (tag: string) =>
          Effect.gen(function* () {
            yield* a.endpoint.send(Address.udp("b", 9000), encoder.encode(`${tag} a→b`))
            yield* b.endpoint.send(Address.udp("a", 9000), encoder.encode(`${tag} b→a`))
            yield* TestClock.adjust(10)
          })
        yield* net.partition(["a"], ["b"])
        yield* exchange("both")
        yield* net.heal
        yield* exchange("healed")
        yield* net.partition(["a"], ["b"], { oneWay: true })
        yield* exchange("one-way")
        yield* net.heal
        expect(a.received).toEqual(["healed b→a", "one-way b→a"])
        expect(b.received).toEqual(["healed a→b"])
        const drops = (yield* net.trace)
          .filter((event) => event.kind === "drop")
          .map((event) => event.detail)
        expect(drops).toEqual(["10 B: partition", "10 B: partition", "13 B: partition"])
      }).pipe(Effect.scoped),
  )

  it.effect("binds exclusively, picks free ports for port 0, and drops past a full buffer", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ datagramBufferSize: 3 })
      yield* Effect.gen(function* () {
        const datagram = yield* Datagram
        const first = yield* datagram.bind(Address.udp("a", 9000))
        const again = yield* Effect.flip(datagram.bind(Address.udp("a", 9000)))
        expect(again.reason).toBe("AddressInUse")
        const free1 = yield* datagram.bind(Address.udp("a", 0))
        const free2 = yield* datagram.bind(Address.udp("a", 0))
        expect([free1.address.port, free2.address.port]).toEqual([49152, 49153])
        for (let index = 0; index < 5; index++)
          yield* free1.send(first.address, encoder.encode(`${index}`))
        yield* TestClock.adjust(10)
        const got = yield* Stream.runCollect(Stream.take(first.messages, 3))
        expect(got.map((message) => decoder.decode(message.bytes))).toEqual(["0", "1", "2"])
        expect(got[0]!.from).toEqual(free1.address)
      }).pipe(Effect.provide(net.layer("a")))
      const full = (yield* net.trace).filter((event) =>
        event.detail.endsWith("receive buffer full"),
      )
      expect(full.length).toBe(2)
    }).pipe(Effect.scoped),
  )

  it.effect("drops datagrams to a crashed host and delivers again after restart", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make()
      const a = yield* collector(net, "a", 9000)
      const received: Array<string> = []
      yield* net.run(
        "b",
        Effect.gen(function* () {
          const datagram = yield* Datagram
          const endpoint = yield* datagram.bind(Address.udp("b", 9000))
          yield* Stream.runForEach(endpoint.messages, (message) =>
            Effect.sync(() => {
              received.push(decoder.decode(message.bytes))
            }),
          )
        }),
      )
      yield* TestClock.adjust(1)
      yield* a.endpoint.send(Address.udp("b", 9000), encoder.encode("before"))
      yield* TestClock.adjust(10)
      yield* net.crash("b")
      yield* a.endpoint.send(Address.udp("b", 9000), encoder.encode("while down"))
      yield* TestClock.adjust(10)
      yield* net.restart("b")
      yield* TestClock.adjust(1)
      yield* a.endpoint.send(Address.udp("b", 9000), encoder.encode("after"))
      yield* TestClock.adjust(10)
      expect(received).toEqual(["before", "after"])
      const crashDrops = (yield* net.trace).filter((event) =>
        event.detail.endsWith("receiver crashed"),
      )
      expect(crashDrops.length).toBe(1)
    }).pipe(Effect.scoped),
  )

  it.effect(
    "reportUnreachable: a closed port or a process crash is reported after the round trip; a host crash, a partition or a bound port never",
    () =>
      Effect.gen(function* () {
        const net = yield* SimNet.make({ link: { latency: SimNet.fixed(5) } })
        const reports: Array<string> = []
        const client = yield* Effect.gen(function* () {
          const datagram = yield* Datagram
          const endpoint = yield* datagram.bind(Address.udp("c", 7000), {
            reportUnreachable: true,
          })
          yield* Effect.forkScoped(
            Stream.runForEach(endpoint.unreachable!, (to) =>
              Effect.andThen(now, (atMs) => Effect.sync(() => reports.push(`${to.host}@${atMs}`))),
            ),
          )
          return endpoint
        }).pipe(Effect.provide(net.layer("c")))
        const plain = yield* collector(net, "p", 7000)
        expect(plain.endpoint.unreachable).toBeUndefined()
        const server = (host: string) =>
          net.run(
            host,
            Effect.gen(function* () {
              const datagram = yield* Datagram
              yield* datagram.bind(Address.udp(host, 9000))
              yield* Effect.never
            }),
          )
        for (const host of ["live", "killed", "gone", "cut"]) yield* server(host)
        yield* TestClock.adjust(1)
        const sendAll = Effect.forEach(
          ["live", "killed", "gone", "cut", "nobody"],
          (host) => client.send(Address.udp(host, 9000), encoder.encode("beat")),
          { discard: true },
        )
        yield* sendAll
        yield* TestClock.adjust(20)
        // A host nobody runs anything on has no port open: its kernel answers.
        expect(reports).toEqual(["nobody@11"])
        reports.length = 0
        yield* net.crash("killed")
        yield* net.crash("gone", { mode: "host" })
        yield* net.partition(["c"], ["cut"])
        const sentAtMs = yield* now
        yield* sendAll
        // Not before the datagram got there and the answer came back: 5 ms each way.
        yield* TestClock.adjust(9)
        expect(reports).toEqual([])
        yield* TestClock.adjust(1)
        expect(reports).toEqual([`killed@${sentAtMs + 10}`, `nobody@${sentAtMs + 10}`])
        yield* TestClock.adjust(50)
        expect(reports.length).toBe(2)
        const trace = yield* net.trace
        expect(trace.filter((event) => event.kind === "unreachable").length).toBe(3)
      }).pipe(Effect.scoped),
  )
})

/** A program with streams, datagrams, jitter, loss, a partition and a crash. */
const scenario = Effect.gen(function* () {
  const net = yield* SimNet.make({
    link: { latency: SimNet.uniform(2, 40), loss: 0.1, duplicate: 0.1, reorder: 0.2 },
  })
  yield* net.run("server", echoServer("server", 7000))
  yield* net.run(
    "client",
    Effect.gen(function* () {
      const transport = yield* Transport
      const datagram = yield* Datagram
      const endpoint = yield* datagram.bind(Address.udp("client", 0))
      const connection = yield* transport.connect(Address.tcp("server", 7000), { codec: text })
      for (let round = 0; round < 20; round++) {
        yield* connection.send(`round ${round}`)
        yield* endpoint.send(Address.udp("server", 9000), encoder.encode(`beacon ${round}`))
        yield* Effect.sleep(50)
      }
    }).pipe(Effect.ignore),
  )
  yield* net.run(
    "server",
    Effect.gen(function* () {
      const datagram = yield* Datagram
      const endpoint = yield* datagram.bind(Address.udp("server", 9000))
      yield* Stream.runForEach(endpoint.messages, (message) =>
        net.note("server", `beacon of ${message.bytes.byteLength} B`),
      )
    }),
  )
  yield* TestClock.adjust(300)
  yield* net.partition(["client"], ["server"])
  yield* TestClock.adjust(200)
  yield* net.heal
  yield* TestClock.adjust(200)
  yield* net.crash("server")
  yield* TestClock.adjust(100)
  yield* net.restart("server")
  yield* TestClock.adjust(1_000)
  return SimNet.formatTrace(yield* net.trace)
}).pipe(Effect.scoped)

const runScenario = (seed: number) =>
  scenario.pipe(Random.withSeed(seed), Effect.provide(TestClock.layer()))

describe("SimNet determinism", () => {
  it.effect("the same seed gives the same trace, byte for byte; another seed another trace", () =>
    Effect.gen(function* () {
      const first = yield* runScenario(1)
      const second = yield* runScenario(1)
      const other = yield* runScenario(2)
      expect(first.split("\n").length).toBeGreaterThan(100)
      expect(first).toContain("crash")
      expect(first).toContain("hold")
      expect(first).toContain("note")
      expect(second).toBe(first)
      expect(other).not.toBe(first)
    }),
  )

  it("formats one line per event", () => {
    const line = SimNet.formatTrace([
      { atMs: 12, kind: "send", from: "tcp://a:1", to: "tcp://b:2", detail: "5 B" },
      { atMs: 40, kind: "crash", from: "b", to: "", detail: "process" },
    ])
    expect(line.split("\n")).toEqual([
      "      12 ms  send             tcp://a:1 → tcp://b:2  5 B",
      "      40 ms  crash            b  process",
    ])
  })
})

/** A connection's two sides built directly on a bare world, to test the link layer alone. */
const linkWorld = (highWaterBytes: number) =>
  Effect.gen(function* () {
    const clock = yield* Effect.clockWith(Effect.succeed)
    const scheduler = SimScheduler.make(clock)
    yield* Effect.forkScoped(scheduler.loop)
    const trace: Array<string> = []
    const cuts = new Set<string>()
    const world: SimWorld = {
      scheduler,
      record: (kind, from, to, detail) =>
        trace.push(`${scheduler.nowMs()} ${kind} ${from}>${to} ${detail}`),
      isCut: (from, to) => cuts.has(`${from}>${to}`),
      isUp: () => true,
      streamDelay: () => ({ delayMs: 5, lost: false }),
      stalled: new Set(),
      highWaterBytes,
      bufferedBytesMax: highWaterBytes * 4,
      release: () => {},
    }
    const ab = new Pipe(world, "a", "b", "a", "b")
    const ba = new Pipe(world, "b", "a", "b", "a")
    const a = new SimEndpoint(world, "a", Address.tcp("a", 1), Address.tcp("b", 2), ab, ba)
    const b = new SimEndpoint(world, "b", Address.tcp("b", 2), Address.tcp("a", 1), ba, ab)
    return { a, b, trace, cuts, world }
  })

const recorder = () => {
  const events: Array<string> = []
  const handlers: LinkHandlers = {
    onData: (chunk) => events.push(`data ${decoder.decode(chunk)}`),
    onEnd: () => events.push("end"),
    onReset: (detail) => events.push(`reset ${detail}`),
    onDrain: () => events.push("drain"),
  }
  return { events, handlers }
}

describe("SimNet link layer", () => {
  it.effect("delivers bytes in order after the latency, reports data that came before start", () =>
    Effect.gen(function* () {
      const { a, b } = yield* linkWorld(1024)
      const atB = recorder()
      a.write(encoder.encode("one"))
      a.write(encoder.encode("two"))
      yield* TestClock.adjust(4)
      b.start(atB.handlers)
      yield* TestClock.adjust(0)
      expect(atB.events).toEqual([])
      yield* TestClock.adjust(1)
      expect(atB.events).toEqual(["data one", "data two"])
      a.end()
      yield* TestClock.adjust(5)
      expect(atB.events).toEqual(["data one", "data two", "end"])
    }).pipe(Effect.scoped),
  )

  it.effect(
    "reports backpressure past the high-water mark and drains when the reader resumes",
    () =>
      Effect.gen(function* () {
        const { a, b } = yield* linkWorld(10)
        const atA = recorder()
        const atB = recorder()
        a.start(atA.handlers)
        b.start(atB.handlers)
        b.pause()
        expect(a.write(encoder.encode("12345"))).toBe(true)
        expect(a.write(encoder.encode("67890"))).toBe(true)
        expect(a.write(encoder.encode("x"))).toBe(false)
        yield* TestClock.adjust(50)
        expect(atB.events).toEqual([])
        expect(atA.events).toEqual([])
        b.resume()
        yield* TestClock.adjust(0)
        expect(atB.events).toEqual(["data 12345", "data 67890", "data x"])
        expect(atA.events).toEqual(["drain"])
      }).pipe(Effect.scoped),
  )

  it.effect("destroy resets the peer after the latency and reports nothing locally", () =>
    Effect.gen(function* () {
      const { a, b } = yield* linkWorld(1024)
      const atA = recorder()
      const atB = recorder()
      a.start(atA.handlers)
      b.start(atB.handlers)
      a.write(encoder.encode("last"))
      a.destroy()
      yield* TestClock.adjust(4)
      expect(atB.events).toEqual([])
      yield* TestClock.adjust(1)
      expect(atB.events).toEqual(["data last", "reset peer aborted the connection"])
      b.write(encoder.encode("late"))
      yield* TestClock.adjust(10)
      expect(atA.events).toEqual([])
    }).pipe(Effect.scoped),
  )

  it.effect("holds segments while cut and retimes them on heal, in order", () =>
    Effect.gen(function* () {
      const { a, b, cuts, world } = yield* linkWorld(1024)
      const atB = recorder()
      b.start(atB.handlers)
      cuts.add("a>b")
      a.write(encoder.encode("1"))
      yield* TestClock.adjust(3)
      a.write(encoder.encode("2"))
      yield* TestClock.adjust(100)
      expect(atB.events).toEqual([])
      expect(world.stalled.size).toBe(1)
      cuts.clear()
      for (const pipe of world.stalled) pipe.retime()
      world.stalled.clear()
      yield* TestClock.adjust(4)
      expect(atB.events).toEqual([])
      yield* TestClock.adjust(1)
      expect(atB.events).toEqual(["data 1", "data 2"])
    }).pipe(Effect.scoped),
  )
})
