/**
 * Interop of the whole endpoint (driver + machine) with usrsctp's example programs, real
 * processes over UDP encapsulation on loopback: usrsctp's `client` → our echo service, and
 * our client → usrsctp's `echo_server`.
 *
 * Found here: usrsctp binds its encapsulation port on 0.0.0.0, so the kernel picks the
 * source of what it sends to 127.0.0.2 as 127.0.0.1 (the loopback route's preferred
 * source), and its INIT lists its non-loopback addresses (the eth0 address, a ULA IPv6)
 * but not 127.0.0.1. The association therefore sees packets for 127.0.0.2 arrive from
 * 127.0.0.1; the endpoint demultiplexes by verification tag first, so this works.
 */
import { existsSync } from "node:fs"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Eventually, Usrsctp } from "@understudy/testkit"
import { Address, NodeDatagram } from "@understudy/transport"
import { Duration, Effect, Fiber, Stream } from "effect"
import * as Endpoint from "../src/Endpoint.ts"
import { echoService, fromText, text } from "./support/endpoint-support.ts"

const ourPort = 5000

afterEach(() => Usrsctp.killAll())

/** A UDP port free on every address (usrsctp binds its encapsulation port on :: and 0.0.0.0). */
const freeEncapsulationPort = Effect.promise(() => Usrsctp.freeEncapsulationPort())

/** Our listening endpoint on 127.0.0.2, SCTP port {@link ourPort}. */
const listenOn127002 = (options: { readonly loopbackAliasing?: boolean } = {}) =>
  Endpoint.make({ bind: Address.udp("127.0.0.2", 0), port: ourPort, listen: true, ...options })

/** Our echo service on 127.0.0.2, and usrsctp's client sent to associate with it. */
const clientToOurEcho = (options: { readonly loopbackAliasing?: boolean } = {}) =>
  Effect.gen(function* () {
    const server = yield* listenOn127002(options)
    const accepted = yield* echoService(server)
    const localEncapsPort = yield* freeEncapsulationPort
    const client = yield* Effect.promise(() =>
      Usrsctp.startClient({
        host: "127.0.0.2",
        port: ourPort,
        localEncapsPort,
        remoteEncapsPort: server.address.port,
      }),
    )
    return { server, accepted, client }
  })

describe("interop of the endpoint with usrsctp", () => {
  it("the programs are installed", () => {
    expect(existsSync(Usrsctp.programs.client)).toBe(true)
    expect(existsSync(Usrsctp.programs.echoServer)).toBe(true)
    expect(existsSync(Usrsctp.programs.tsctp)).toBe(true)
  })

  it.live(
    "usrsctp's client associates with our echo service on 127.0.0.2 and gets its lines back",
    () =>
      Effect.gen(function* () {
        const { server, accepted, client } = yield* clientToOurEcho()
        const lines = Array.from(
          { length: 20 },
          (_, index) => `line ${index} ${"x".repeat(index * 10)}`,
        )
        for (const line of lines) client.write(`${line}\n`)
        yield* Eventually.effect(
          "every line echoed",
          () => lines.every((line) => client.output().includes(line)),
          { within: 15_000, every: 50 },
        ).pipe(Effect.tapDefect(() => Effect.sync(() => console.log(client.output()))))
        expect(accepted).toHaveLength(1)
        const association = accepted[0] as Endpoint.AssociationHandle
        const status = yield* association.status
        // usrsctp's source (127.0.0.1) and the addresses its INIT lists are the paths.
        expect(association.peer.host).toBe("127.0.0.1")
        expect(status.paths.map((path) => path.host)).toContain("127.0.0.1")
        // End of input: the client shuts the association down.
        client.endInput()
        const reason = yield* association.closed.pipe(Effect.timeout(Duration.seconds(15)))
        expect(reason).toEqual({ _tag: "ShutdownComplete" })
        const stats = yield* server.stats
        expect(stats.dropped.BadChecksum ?? 0).toBe(0)
        // The client exits after SHUTDOWN COMPLETE, having printed its notifications.
        yield* Eventually.effect("the client exited", () => client.child.exitCode !== null, {
          within: 10_000,
          every: 50,
        })
        expect(client.output()).toContain("SCTP_COMM_UP")
        expect(client.output()).toContain("Peer addresses: 127.0.0.2.")
        expect(client.output()).toContain("SCTP_SHUTDOWN_COMP")
      }).pipe(Effect.provide(NodeDatagram.layer)),
    40_000,
  )

  it.live(
    "without loopback aliasing usrsctp drops our INIT ACK to its 127.0.0.1 source, and retransmits its INIT",
    () =>
      Effect.gen(function* () {
        const { server, accepted } = yield* clientToOurEcho({ loopbackAliasing: false })
        // usrsctp's initial RTO is 3 s: its INIT comes again, the INIT ACKs went unheard. Waited
        // for, not slept for: on a loaded machine the retransmission can come well after 3 s.
        yield* Eventually.effect(
          "usrsctp's INIT retransmitted and answered",
          server.stats.pipe(
            Effect.map((stats) => stats.packetsIn >= 2 && stats.packetsOut === stats.packetsIn),
          ),
          { within: 15_000, every: 50 },
        )
        expect(accepted).toHaveLength(0)
      }).pipe(Effect.provide(NodeDatagram.layer)),
    20_000,
  )

  it.live(
    "usrsctp's tsctp streams messages into our discard service (it lists no addresses)",
    () =>
      Effect.gen(function* () {
        const server = yield* listenOn127002()
        const received = { messages: 0, bytes: 0 }
        yield* server.accept.pipe(
          Stream.runForEach((association) =>
            Effect.forkScoped(
              association.messages.pipe(
                Stream.runForEach((message) =>
                  Effect.sync(() => {
                    received.messages++
                    received.bytes += message.data.length
                  }),
                ),
              ),
            ),
          ),
          Effect.forkScoped,
        )
        const count = 5_000
        const localEncapsPort = yield* freeEncapsulationPort
        const tsctp = yield* Effect.promise(() =>
          Usrsctp.startTsctp({
            role: "sender",
            host: "127.0.0.2",
            port: ourPort,
            localEncapsPort,
            remoteEncapsPort: server.address.port,
            messageLength: 1024,
            messages: count,
          }),
        )
        yield* Eventually.effect("every message received", () => received.messages === count, {
          within: 20_000,
          every: 50,
        })
        expect(received.bytes).toBe(count * 1024)
        // tsctp reports its throughput once all was sent and it shut the association down.
        yield* Eventually.effect(
          "tsctp reported its throughput",
          () => tsctp.output().includes("Throughput was"),
          { within: 10_000, every: 50 },
        )
        // Its SHUTDOWN COMPLETE may still be on the way.
        let associations = (yield* server.stats).associations
        for (let waited = 0; waited < 5_000 && associations > 0; waited += 50) {
          yield* Effect.sleep(Duration.millis(50))
          associations = (yield* server.stats).associations
        }
        expect(associations).toBe(0)
      }).pipe(Effect.provide(NodeDatagram.layer)),
    40_000,
  )

  it.live(
    "our client associates with usrsctp's echo_server and gets its messages back",
    () =>
      Effect.gen(function* () {
        const echoEncapsulationPort = yield* freeEncapsulationPort
        const client = yield* Endpoint.make({ bind: Address.udp("127.0.0.2", 0), port: ourPort })
        // Resolves once it listens (connect would retransmit the INIT anyway).
        const echo = yield* Effect.promise(() =>
          Usrsctp.startEchoServer({
            localEncapsPort: echoEncapsulationPort,
            remoteEncapsPort: client.address.port,
          }),
        )
        const association = yield* client
          .connect({
            host: "127.0.0.1",
            udpPort: echoEncapsulationPort,
            port: Usrsctp.echoServerSctpPort,
          })
          .pipe(Effect.timeout(Duration.seconds(15)))
        const count = 50
        const received = yield* Effect.forkScoped(
          association.messages.pipe(Stream.take(count), Stream.runCollect),
        )
        for (let index = 0; index < count; index++) {
          yield* association.send(index % 2, 42, text(`message ${index} ${"y".repeat(index * 40)}`))
        }
        const messages = yield* Fiber.join(received).pipe(Effect.timeout(Duration.seconds(15)))
        const texts = messages.map((message) => fromText(message.data))
        expect([...texts].sort()).toEqual(
          Array.from(
            { length: count },
            (_, index) => `message ${index} ${"y".repeat(index * 40)}`,
          ).sort(),
        )
        yield* association.shutdown.pipe(Effect.timeout(Duration.seconds(15)))
        expect(yield* association.closed).toEqual({ _tag: "ShutdownComplete" })
        expect(echo.child.exitCode).toBeNull()
      }).pipe(Effect.provide(NodeDatagram.layer)),
    40_000,
  )
})
