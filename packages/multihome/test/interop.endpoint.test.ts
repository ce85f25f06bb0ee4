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
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Address, Datagram, NodeDatagram } from "@understudy/transport"
import { Duration, Effect, Fiber, Stream } from "effect"
import * as Endpoint from "../src/Endpoint.ts"
import { echoService, fromText, text } from "./support/endpoint-support.ts"

const clientPath = "/usr/lib/usrsctp/client"
const echoServerPath = "/usr/lib/usrsctp/echo_server"
const tsctpPath = "/usr/lib/usrsctp/tsctp"
/** usrsctp's echo_server listens on the SCTP echo port. */
const usrsctpEchoPort = 7
const ourPort = 5000

interface Child {
  readonly process: ChildProcess
  readonly output: () => string
}

const children = new Set<ChildProcess>()

afterEach(async () => {
  const exits = [...children].map(
    (child) =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.once("exit", () => resolve())
        child.kill("SIGKILL")
      }),
  )
  children.clear()
  await Promise.all(exits)
})

const start = (path: string, args: ReadonlyArray<string>) =>
  Effect.sync((): Child => {
    let output = ""
    const child = spawn(path, args, { stdio: ["pipe", "pipe", "pipe"] })
    children.add(child)
    child.stdout?.on("data", (data: Buffer) => {
      output += data.toString()
    })
    child.stderr?.on("data", (data: Buffer) => {
      output += data.toString()
    })
    return { process: child, output: () => output }
  })

/** A UDP port free on every address (usrsctp binds its encapsulation port on :: and 0.0.0.0). */
const freeEncapsulationPort = Effect.gen(function* () {
  const datagram = yield* Datagram.Datagram
  return yield* Effect.scoped(
    datagram.bind(Address.udp("::", 0)).pipe(Effect.map((endpoint) => endpoint.address.port)),
  )
})

/** Polls until `predicate` holds, every 50 ms, at most `limitMs`. */
const eventually = (predicate: () => boolean, limitMs: number) =>
  Effect.gen(function* () {
    for (let waited = 0; waited < limitMs && !predicate(); waited += 50) {
      yield* Effect.sleep(Duration.millis(50))
    }
    return predicate()
  })

describe("interop of the endpoint with usrsctp", () => {
  it("the programs are installed", () => {
    expect(existsSync(clientPath)).toBe(true)
    expect(existsSync(echoServerPath)).toBe(true)
    expect(existsSync(tsctpPath)).toBe(true)
  })

  it.live(
    "usrsctp's client associates with our echo service on 127.0.0.2 and gets its lines back",
    () =>
      Effect.gen(function* () {
        const server = yield* Endpoint.make({
          bind: Address.udp("127.0.0.2", 0),
          port: ourPort,
          listen: true,
        })
        const accepted = yield* echoService(server)
        const clientEncapsulationPort = yield* freeEncapsulationPort
        const client = yield* start(clientPath, [
          "127.0.0.2",
          String(ourPort),
          "0",
          String(clientEncapsulationPort),
          String(server.address.port),
        ])
        const lines = Array.from(
          { length: 20 },
          (_, index) => `line ${index} ${"x".repeat(index * 10)}`,
        )
        for (const line of lines) client.process.stdin?.write(`${line}\n`)
        const echoed = yield* eventually(
          () => lines.every((line) => client.output().includes(line)),
          15_000,
        )
        if (!echoed) console.log(client.output())
        expect(echoed).toBe(true)
        expect(accepted).toHaveLength(1)
        const association = accepted[0] as Endpoint.AssociationHandle
        const status = yield* association.status
        // usrsctp's source (127.0.0.1) and the addresses its INIT lists are the paths.
        expect(association.peer.host).toBe("127.0.0.1")
        expect(status.paths.map((path) => path.host)).toContain("127.0.0.1")
        // End of input: the client shuts the association down.
        client.process.stdin?.end()
        const reason = yield* association.closed.pipe(Effect.timeout(Duration.seconds(15)))
        expect(reason).toEqual({ _tag: "ShutdownComplete" })
        const stats = yield* server.stats
        expect(stats.dropped.BadChecksum ?? 0).toBe(0)
        // The client exits after SHUTDOWN COMPLETE; its notifications (block-buffered) follow.
        expect(yield* eventually(() => client.process.exitCode !== null, 10_000)).toBe(true)
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
        const server = yield* Endpoint.make({
          bind: Address.udp("127.0.0.2", 0),
          port: ourPort,
          listen: true,
          loopbackAliasing: false,
        })
        const accepted = yield* echoService(server)
        const clientEncapsulationPort = yield* freeEncapsulationPort
        yield* start(clientPath, [
          "127.0.0.2",
          String(ourPort),
          "0",
          String(clientEncapsulationPort),
          String(server.address.port),
        ])
        // usrsctp's initial RTO is 3 s: its INIT comes again, the INIT ACKs went unheard.
        const retransmitted = yield* eventually(() => false, 4_500).pipe(
          Effect.andThen(server.stats),
        )
        expect(retransmitted.packetsIn).toBeGreaterThanOrEqual(2)
        expect(retransmitted.packetsOut).toBe(retransmitted.packetsIn)
        expect(accepted).toHaveLength(0)
      }).pipe(Effect.provide(NodeDatagram.layer)),
    20_000,
  )

  it.live(
    "usrsctp's tsctp streams messages into our discard service (it lists no addresses)",
    () =>
      Effect.gen(function* () {
        const server = yield* Endpoint.make({
          bind: Address.udp("127.0.0.2", 0),
          port: ourPort,
          listen: true,
        })
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
        const tsctp = yield* start(tsctpPath, [
          "-n",
          String(count),
          "-l",
          "1024",
          "-E",
          String(yield* freeEncapsulationPort),
          "-U",
          String(server.address.port),
          "-p",
          String(ourPort),
          "127.0.0.2",
        ])
        expect(yield* eventually(() => received.messages === count, 20_000)).toBe(true)
        expect(received.bytes).toBe(count * 1024)
        // tsctp reports its throughput once all was sent and it shut the association down.
        expect(yield* eventually(() => tsctp.output().includes("Throughput was"), 10_000)).toBe(
          true,
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
        const echo = yield* start(echoServerPath, [
          String(echoEncapsulationPort),
          String(client.address.port),
        ])
        // Give it a moment to bind; connect retransmits the INIT anyway.
        yield* Effect.sleep(Duration.millis(200))
        const association = yield* client
          .connect({ host: "127.0.0.1", udpPort: echoEncapsulationPort, port: usrsctpEchoPort })
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
        expect(echo.process.exitCode).toBeNull()
      }).pipe(Effect.provide(NodeDatagram.layer)),
    40_000,
  )
})
