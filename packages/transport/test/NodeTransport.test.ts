import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Redacted, Scope, Stream } from "effect"
import { afterEach } from "vitest"
import * as Address from "../src/Address.ts"
import * as Codec from "../src/Codec.ts"
import type { Connection } from "../src/Connection.ts"
import * as NodeLink from "../src/internal/nodeLink.ts"
import * as NodeTransport from "../src/NodeTransport.ts"
import type { ConnectionOptions } from "../src/Options.ts"
import { Transport } from "../src/Transport.ts"

const peerProgram = fileURLToPath(new URL("./fixtures/peer.ts", import.meta.url))
const encoder = new TextEncoder()
const decoder = new TextDecoder()
const bytes = (text: string): Uint8Array => encoder.encode(text)
const text = (data: Uint8Array): string => decoder.decode(data)

const plain: ConnectionOptions<Uint8Array> = { codec: Codec.bytes, keepAlive: false }

// ---------------------------------------------------------------------------------------
// Child processes: every one is tracked and killed after its test, whatever happened.

const children = new Set<ChildProcess>()

const killChild = (child: ChildProcess): void => {
  if (child.exitCode !== null || child.signalCode !== null) return
  // A stopped process must be continued for some signals; SIGKILL works regardless.
  child.kill("SIGCONT")
  child.kill("SIGKILL")
}

afterEach(() => {
  for (const child of children) killChild(child)
  children.clear()
})

interface Peer {
  readonly child: ChildProcess
  /** What the peer printed after READY: its bound (listen) or local (connect) address. */
  readonly address: string
}

/** Starts `fixtures/peer.ts` and waits for its READY line; killed when the scope closes. */
const spawnPeer = (
  mode: "listen" | "connect",
  address: string,
  options: Record<string, unknown> = {},
): Effect.Effect<Peer, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Peer, Error>((resume) => {
      const child = spawn(process.execPath, [peerProgram, mode, address, JSON.stringify(options)], {
        stdio: ["pipe", "pipe", "pipe"],
      })
      children.add(child)
      let stderr = ""
      child.stderr?.on("data", (chunk: Buffer) => {
        stderr += chunk.toString()
      })
      const lines = readline.createInterface({ input: child.stdout! })
      lines.on("line", (line) => {
        if (line.startsWith("READY ")) resume(Effect.succeed({ child, address: line.slice(6) }))
        else resume(Effect.fail(new Error(`peer: ${line}\n${stderr}`)))
      })
      child.once("exit", (code, signal) =>
        resume(Effect.fail(new Error(`peer exited (${code ?? signal}) before READY\n${stderr}`))),
      )
      return Effect.sync(() => killChild(child))
    }).pipe(Effect.timeout("15 seconds")),
    (peer) => Effect.sync(() => killChild(peer.child)),
  ).pipe(Effect.mapError((error) => new Error(String(error))))

const waitForExit = (child: ChildProcess): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
  })

// ---------------------------------------------------------------------------------------

const parse = (input: string): Address.StreamAddress => {
  const address = Address.parseStream(input)
  if (address instanceof Address.InvalidAddress) throw address
  return address
}

/** The first `count` messages of a connection. Consumes its `messages` stream. */
const receive = <A>(conn: Connection<A>, count: number) =>
  Stream.runCollect(Stream.take(conn.messages, count)).pipe(Effect.timeout("5 seconds"))

const firstConnection = <A>(connections: Stream.Stream<Connection<A>>) =>
  Stream.runHead(connections).pipe(
    Effect.timeout("5 seconds"),
    Effect.map((head) => {
      if (head._tag === "None") throw new Error("the listener ended without a connection")
      return head.value
    }),
  )

/** Listens, connects, and checks messages both ways, several per direction, in order. */
const roundTrip = (address: Address.StreamAddress) =>
  Effect.gen(function* () {
    const transport = yield* Transport
    const listener = yield* transport.listen(address, plain)
    const accepted = yield* Effect.forkChild(firstConnection(listener.connections))
    const client = yield* transport.connect(listener.address, plain)
    const server = yield* Fiber.join(accepted)

    yield* client.sendAll([bytes("one"), bytes("two"), bytes("three")])
    expect((yield* receive(server, 3)).map(text)).toEqual(["one", "two", "three"])
    yield* server.sendAll([bytes("uno"), bytes("dos")])
    expect((yield* receive(client, 2)).map(text)).toEqual(["uno", "dos"])
    return { listener, client, server }
  })

const withTempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "understudy-transport-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })),
)

const randomName = () => `understudy-test-${process.pid}-${crypto.randomUUID()}`

/** A TCP port on 127.0.0.1 that nobody listens on (bound by the OS, then released). */
const closedPort = Effect.callback<number>((resume) => {
  const server = net.createServer()
  server.listen({ host: "127.0.0.1", port: 0 }, () => {
    const port = (server.address() as net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A plain node:net server run by the test; closed (with its sockets) with the scope. */
const rawServer = (onSocket: (socket: net.Socket) => void) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly server: net.Server; readonly sockets: Set<net.Socket> }>(
      (resume) => {
        const sockets = new Set<net.Socket>()
        const server = net.createServer((socket) => {
          sockets.add(socket)
          socket.on("error", () => {})
          onSocket(socket)
        })
        server.listen({ host: "127.0.0.1", port: 0 }, () =>
          resume(Effect.succeed({ server, sockets })),
        )
      },
    ),
    ({ server, sockets }) =>
      Effect.sync(() => {
        for (const socket of sockets) socket.destroy()
        server.close()
      }),
  )

const portOf = (server: net.Server): number => (server.address() as net.AddressInfo).port

// ---------------------------------------------------------------------------------------

describe("NodeTransport", () => {
  describe("round trips", () => {
    it.live("tcp://127.0.0.1 reports the bound port and both ends", () =>
      Effect.gen(function* () {
        const { listener, client, server } = yield* roundTrip(Address.tcp("127.0.0.1", 0))
        expect(listener.address._tag).toBe("Tcp")
        const bound = listener.address as Address.Tcp
        expect(bound.host).toBe("127.0.0.1")
        expect(bound.port).toBeGreaterThan(0)
        expect(client.remote).toEqual(bound)
        expect(server.local).toEqual(bound)
        expect(server.remote).toEqual(client.local)
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("tcp://[::1]", () =>
      Effect.gen(function* () {
        const { listener, client } = yield* roundTrip(Address.tcp("::1", 0))
        expect((listener.address as Address.Tcp).host).toBe("::1")
        expect(Address.format(client.remote)).toMatch(/^tcp:\/\/\[::1\]:\d+$/)
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("unix:///path in a temporary directory, and the file is removed on close", () =>
      Effect.gen(function* () {
        const dir = yield* withTempDir
        const socketPath = path.join(dir, "rt.sock")
        const scope = yield* Scope.make()
        const { listener } = yield* roundTrip(Address.unix(socketPath)).pipe(Scope.provide(scope))
        expect(listener.address).toEqual(Address.unix(socketPath))
        expect((yield* Effect.promise(() => fs.lstat(socketPath))).isSocket()).toBe(true)
        yield* Scope.close(scope, Exit.void)
        const exists = yield* Effect.promise(() =>
          fs.access(socketPath).then(
            () => true,
            () => false,
          ),
        )
        expect(exists).toBe(false)
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("unix://@name (Linux abstract socket)", () =>
      Effect.gen(function* () {
        const { listener } = yield* roundTrip(Address.abstract(randomName()))
        expect(Address.format(listener.address)).toMatch(/^unix:\/\/@understudy-test-/)
      }).pipe(Effect.provide(NodeTransport.layer)),
    )
  })

  describe("exclusive listening", () => {
    it.live("a second listener on the same TCP port fails with AddressInUse", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const first = yield* transport.listen(Address.tcp("127.0.0.1", 0), plain)
        const error = yield* Effect.flip(transport.listen(first.address, plain))
        expect(error._tag).toBe("ListenError")
        expect(error.reason).toBe("AddressInUse")
        expect(error.address).toBe(Address.format(first.address))
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("unbind frees the address at once; a connection it accepted lives on", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        for (const address of [Address.tcp("127.0.0.1", 0), Address.abstract(randomName())]) {
          const { listener, client, server } = yield* roundTrip(address)
          yield* listener.unbind
          yield* listener.unbind
          // Bound again while the first listener's scope is still open.
          const second = yield* transport.listen(listener.address, plain)
          expect(second.address).toEqual(listener.address)
          yield* server.send(bytes("still here"))
          expect((yield* receive(client, 1)).map(text)).toEqual(["still here"])
        }
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("a second listener on the same abstract name fails with AddressInUse", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const address = Address.abstract(randomName())
        yield* transport.listen(address, plain)
        const error = yield* Effect.flip(transport.listen(address, plain))
        expect(error.reason).toBe("AddressInUse")
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("a Unix path with a live listener is not taken over", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const dir = yield* withTempDir
        const address = Address.unix(path.join(dir, "live.sock"))
        const first = yield* transport.listen(address, plain)
        const error = yield* Effect.flip(transport.listen(address, plain))
        expect(error.reason).toBe("AddressInUse")
        // The first listener still accepts.
        const accepted = yield* Effect.forkChild(firstConnection(first.connections))
        const client = yield* transport.connect(address, plain)
        const server = yield* Fiber.join(accepted)
        yield* client.send(bytes("still here"))
        expect((yield* receive(server, 1)).map(text)).toEqual(["still here"])
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("a Unix path holding a regular file is left alone", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const dir = yield* withTempDir
        const file = path.join(dir, "not-a-socket")
        yield* Effect.promise(() => fs.writeFile(file, "keep me"))
        const error = yield* Effect.flip(transport.listen(Address.unix(file), plain))
        expect(error.reason).toBe("AddressInUse")
        expect(yield* Effect.promise(() => fs.readFile(file, "utf8"))).toBe("keep me")
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("a stale socket file left by a killed process is reused", () =>
      Effect.gen(function* () {
        const dir = yield* withTempDir
        const socketPath = path.join(dir, "stale.sock")
        const peer = yield* spawnPeer("listen", `unix://${socketPath}`)
        peer.child.kill("SIGKILL")
        yield* waitForExit(peer.child)
        expect((yield* Effect.promise(() => fs.lstat(socketPath))).isSocket()).toBe(true)
        const { listener } = yield* roundTrip(Address.unix(socketPath))
        expect(listener.address).toEqual(Address.unix(socketPath))
      }).pipe(Effect.provide(NodeTransport.layer)),
    )
  })

  describe("connect failures", () => {
    it.live("a closed TCP port gives ConnectError Refused", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const port = yield* closedPort
        const error = yield* Effect.flip(transport.connect(Address.tcp("127.0.0.1", port), plain))
        expect(error._tag).toBe("ConnectError")
        expect(error._tag === "ConnectError" && error.reason).toBe("Refused")
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("a missing Unix socket path gives ConnectError Refused", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const dir = yield* withTempDir
        const error = yield* Effect.flip(
          transport.connect(Address.unix(path.join(dir, "nobody.sock")), plain),
        )
        expect(error._tag === "ConnectError" && error.reason).toBe("Refused")
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("a server that is not Understudy gives HandshakeError NotUnderstudy", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const { server } = yield* rawServer((socket) => {
          socket.write("HTTP/1.1 400\r\n\r\n")
        })
        const error = yield* Effect.flip(
          transport.connect(Address.tcp("127.0.0.1", portOf(server)), plain),
        )
        expect(error._tag).toBe("HandshakeError")
        expect(error._tag === "HandshakeError" && error.reason).toBe("NotUnderstudy")
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("a server that accepts and stays silent gives ConnectError Timeout", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const { server } = yield* rawServer(() => {})
        const error = yield* Effect.flip(
          transport.connect(Address.tcp("127.0.0.1", portOf(server)), {
            ...plain,
            handshakeTimeout: 300,
          }),
        )
        expect(error._tag === "ConnectError" && error.reason).toBe("Timeout")
      }).pipe(Effect.provide(NodeTransport.layer)),
    )
  })

  describe("listener", () => {
    it.live("a silent or foreign client does not hold up the others, and is never emitted", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const listener = yield* transport.listen(Address.tcp("127.0.0.1", 0), plain)
        const port = (listener.address as Address.Tcp).port
        const emitted: Array<Connection<Uint8Array>> = []
        yield* Effect.forkChild(
          Stream.runForEach(listener.connections, (conn) => Effect.sync(() => emitted.push(conn))),
        )
        // One peer connects and never speaks; another speaks HTTP.
        const silent = net.connect({ host: "127.0.0.1", port })
        const foreign = net.connect({ host: "127.0.0.1", port })
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            silent.destroy()
            foreign.destroy()
          }),
        )
        silent.on("error", () => {})
        foreign.on("error", () => {})
        const foreignClosed = Effect.callback<void>((resume) => {
          foreign.once("close", () => resume(Effect.void))
        })
        foreign.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        // The server drops the foreign peer promptly.
        yield* foreignClosed.pipe(Effect.timeout("2 seconds"))

        const client = yield* transport
          .connect(listener.address, plain)
          .pipe(Effect.timeout("2 seconds"))
        // The only connection emitted is the real client's.
        for (let i = 0; i < 40 && emitted.length === 0; i++) yield* Effect.sleep("50 millis")
        expect(emitted.length).toBe(1)
        expect(emitted[0]!.remote).toEqual(client.local)
        expect(silent.destroyed).toBe(false)
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("closing the listener's scope closes its connections and ends the stream", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const scope = yield* Scope.make()
        const listener = yield* transport
          .listen(Address.tcp("127.0.0.1", 0), plain)
          .pipe(Scope.provide(scope))
        const all = yield* Effect.forkChild(Stream.runCollect(listener.connections))
        const client = yield* transport.connect(listener.address, plain)
        // Wait until the server side is up: it echoes nothing, but the client's send lands.
        yield* client.send(bytes("hi"))
        yield* Effect.sleep("100 millis")
        yield* Scope.close(scope, Exit.void)
        const reason = yield* client.closed.pipe(Effect.timeout("3 seconds"))
        expect(reason._tag).toBe("End")
        const emitted = yield* Fiber.join(all).pipe(Effect.timeout("3 seconds"))
        expect(emitted.length).toBe(1)
        const error = yield* Effect.flip(transport.connect(listener.address, plain))
        expect(error._tag === "ConnectError" && error.reason).toBe("Refused")
      }).pipe(Effect.provide(NodeTransport.layer)),
    )
  })

  describe("cluster key", () => {
    const keyed = (key: string): ConnectionOptions<Uint8Array> => ({
      ...plain,
      clusterKey: Redacted.make(key),
    })

    it.live("with the same key on both sides, messages flow", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const listener = yield* transport.listen(Address.tcp("127.0.0.1", 0), keyed("s3cret"))
        const accepted = yield* Effect.forkChild(firstConnection(listener.connections))
        const client = yield* transport.connect(listener.address, keyed("s3cret"))
        const server = yield* Fiber.join(accepted)
        yield* client.send(bytes("authenticated"))
        expect((yield* receive(server, 1)).map(text)).toEqual(["authenticated"])
        yield* server.send(bytes("welcome"))
        expect((yield* receive(client, 1)).map(text)).toEqual(["welcome"])
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live(
      "a message over the handshake's frame limit, sent right behind the proof, arrives",
      () =>
        Effect.gen(function* () {
          const transport = yield* Transport
          const listener = yield* transport.listen(Address.tcp("127.0.0.1", 0), keyed("s3cret"))
          const accepted = yield* Effect.forkChild(firstConnection(listener.connections))
          const client = yield* transport.connect(listener.address, keyed("s3cret"))
          // Sent before the server has even emitted the connection: on loopback it travels in
          // the proof's segment, which the server reads while still in its handshake.
          const large = "x".repeat(4096)
          yield* client.send(bytes(large))
          const server = yield* Fiber.join(accepted)
          expect((yield* receive(server, 1)).map(text)).toEqual([large])
        }).pipe(Effect.provide(NodeTransport.layer)),
    )

    const refused = (clientOptions: ConnectionOptions<Uint8Array>) =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const listener = yield* transport.listen(Address.tcp("127.0.0.1", 0), keyed("s3cret"))
        const emitted: Array<Connection<Uint8Array>> = []
        yield* Effect.forkChild(
          Stream.runForEach(listener.connections, (conn) => Effect.sync(() => emitted.push(conn))),
        )
        const error = yield* Effect.flip(transport.connect(listener.address, clientOptions))
        // A client with the right key still gets in: the refused one was never emitted.
        const good = yield* transport.connect(listener.address, keyed("s3cret"))
        for (let i = 0; i < 40 && emitted.length === 0; i++) yield* Effect.sleep("50 millis")
        expect(emitted.length).toBe(1)
        expect(emitted[0]!.remote).toEqual(good.local)
        return error
      })

    it.live("a client without the key gets HandshakeError; the server emits nothing", () =>
      Effect.gen(function* () {
        const error = yield* refused(plain)
        expect(error._tag).toBe("HandshakeError")
        expect(error._tag === "HandshakeError" && error.reason).toBe("AuthenticationRequired")
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("a client with a wrong key gets HandshakeError; the server emits nothing", () =>
      Effect.gen(function* () {
        const error = yield* refused(keyed("wrong"))
        expect(error._tag).toBe("HandshakeError")
        expect(error._tag === "HandshakeError" && error.reason).toBe("AuthenticationFailed")
      }).pipe(Effect.provide(NodeTransport.layer)),
    )
  })

  describe("peer processes that die or hang", () => {
    /**
     * SIGKILLs the peer and returns this side's close reason. With keep-alive off only the
     * kernel can tell: it closes the peer's sockets as the process dies, so the order checked
     * is the peer's exit, then the close. The time-outs only turn a hang into a failure: no
     * setting of the test bounds either step (ms when quiet, seconds on a loaded machine).
     */
    const killedPeerCloses = (peer: Peer, conn: Connection<Uint8Array>) =>
      Effect.gen(function* () {
        peer.child.kill("SIGKILL")
        yield* waitForExit(peer.child).pipe(Effect.timeout("10 seconds"))
        return yield* conn.closed.pipe(Effect.timeout("10 seconds"))
      })
    const expectEndOrReset = (reason: { readonly _tag: string }) =>
      expect(["End", "Reset"]).toContain(reason._tag)
    /**
     * Keep-alive for the SIGSTOP tests. A process the machine leaves without a CPU for longer
     * than the time-out reads as hung, so it is well above what load 30 on 2 cores causes;
     * the wait for the Timeout is bounded by 10 time-outs (a hang guard).
     */
    const keepAlive = { interval: 150, timeout: 1_500 }
    const timedOutWithin = `${10 * keepAlive.timeout} millis` as const

    it.live("a SIGKILLed server process gives End or Reset on the client", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const peer = yield* spawnPeer("listen", "tcp://127.0.0.1:0")
        const conn = yield* transport.connect(parse(peer.address), plain)
        yield* conn.send(bytes("echo me"))
        expect((yield* receive(conn, 1)).map(text)).toEqual(["echo me"])
        expectEndOrReset(yield* killedPeerCloses(peer, conn))
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("a SIGKILLed client process gives End or Reset on the server", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const listener = yield* transport.listen(Address.tcp("127.0.0.1", 0), plain)
        const accepted = yield* Effect.forkChild(firstConnection(listener.connections))
        const peer = yield* spawnPeer("connect", Address.format(listener.address))
        const conn = yield* Fiber.join(accepted)
        expect(Address.format(conn.remote)).toBe(peer.address)
        yield* conn.send(bytes("echo me"))
        expect((yield* receive(conn, 1)).map(text)).toEqual(["echo me"])
        expectEndOrReset(yield* killedPeerCloses(peer, conn))
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("a SIGKILLed server on an abstract socket gives End or Reset", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const peer = yield* spawnPeer("listen", `unix://@${randomName()}`)
        const conn = yield* transport.connect(parse(peer.address), plain)
        yield* conn.send(bytes("echo me"))
        expect((yield* receive(conn, 1)).map(text)).toEqual(["echo me"])
        expectEndOrReset(yield* killedPeerCloses(peer, conn))
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("a SIGSTOPped server process gives Timeout with keep-alive on", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const peer = yield* spawnPeer("listen", "tcp://127.0.0.1:0", { keepAlive })
        const conn = yield* transport.connect(parse(peer.address), { ...plain, keepAlive })
        yield* conn.send(bytes("echo me"))
        expect((yield* receive(conn, 1)).map(text)).toEqual(["echo me"])
        // Alive while the peer runs: a keep-alive time-out's worth of quiet changes nothing.
        yield* Effect.sleep(keepAlive.timeout + 500)
        const stillOpen = yield* conn.closed.pipe(Effect.timeoutOption("1 millis"))
        expect(stillOpen._tag).toBe("None")
        peer.child.kill("SIGSTOP")
        const reason = yield* conn.closed.pipe(Effect.timeout(timedOutWithin))
        expect(reason._tag).toBe("Timeout")
        peer.child.kill("SIGCONT")
        peer.child.kill("SIGKILL")
      }).pipe(Effect.provide(NodeTransport.layer)),
    )

    it.live("a SIGSTOPped client process gives Timeout on the server", () =>
      Effect.gen(function* () {
        const transport = yield* Transport
        const listener = yield* transport.listen(Address.tcp("127.0.0.1", 0), {
          ...plain,
          keepAlive,
        })
        const accepted = yield* Effect.forkChild(firstConnection(listener.connections))
        const peer = yield* spawnPeer("connect", Address.format(listener.address), { keepAlive })
        const conn = yield* Fiber.join(accepted)
        peer.child.kill("SIGSTOP")
        const reason = yield* conn.closed.pipe(Effect.timeout(timedOutWithin))
        expect(reason._tag).toBe("Timeout")
        peer.child.kill("SIGCONT")
        peer.child.kill("SIGKILL")
      }).pipe(Effect.provide(NodeTransport.layer)),
    )
  })

  describe("backpressure", () => {
    it.live(
      "a writer to a reader that does not read suspends, memory stays bounded, then all arrive in order",
      () =>
        Effect.gen(function* () {
          const transport = yield* Transport
          const total = 200_000
          const messageBytes = 1024
          const options: ConnectionOptions<Uint8Array> = {
            ...plain,
            sendQueueCapacity: 1024,
            receiveBufferBytes: 1024 * 1024,
          }
          const listener = yield* transport.listen(Address.tcp("127.0.0.1", 0), options)
          const accepted = yield* Effect.forkChild(firstConnection(listener.connections))
          const client = yield* transport.connect(listener.address, options)
          const server = yield* Fiber.join(accepted)

          const memory = () => {
            const usage = process.memoryUsage()
            return usage.heapUsed + usage.arrayBuffers
          }
          const before = memory()
          let sent = 0
          const writer = yield* Effect.forkChild(
            Effect.gen(function* () {
              for (let seq = 0; seq < total; seq++) {
                const message = new Uint8Array(messageBytes)
                new DataView(message.buffer).setUint32(0, seq)
                yield* client.send(message)
                sent++
              }
            }),
          )

          // Wait until the writer makes no progress for half a second (bounded: 20 s).
          let last = -1
          let quietPolls = 0
          for (let poll = 0; poll < 200 && quietPolls < 5; poll++) {
            yield* Effect.sleep("100 millis")
            quietPolls = sent === last ? quietPolls + 1 : 0
            last = sent
          }
          expect(quietPolls).toBe(5)
          // Send queue (1,024) + receive buffer (1 MiB = 1,024 messages) + one coalesced
          // write + the kernel's socket buffers on loopback (a few MiB): far below 200k.
          expect(sent).toBeLessThan(32_768)
          expect(memory() - before).toBeLessThan(64 * 1024 * 1024)

          // Now the reader drains: every message arrives, in order.
          let expected = 0
          let outOfOrder = 0
          yield* Stream.runForEachArray(Stream.take(server.messages, total), (batch) =>
            Effect.sync(() => {
              for (const message of batch) {
                const seq = new DataView(message.buffer, message.byteOffset).getUint32(0)
                if (seq !== expected || message.byteLength !== messageBytes) outOfOrder++
                expected++
              }
            }),
          ).pipe(Effect.timeout("20 seconds"))
          yield* Fiber.join(writer)
          expect(outOfOrder).toBe(0)
          expect(expected).toBe(total)
          expect(sent).toBe(total)
        }).pipe(Effect.provide(NodeTransport.layer)),
    )
  })

  describe("nodeLink", () => {
    /** A connected pair of plain sockets on loopback, destroyed with the scope. */
    const socketPair = Effect.acquireRelease(
      Effect.callback<{
        readonly a: net.Socket
        readonly b: net.Socket
        readonly server: net.Server
      }>((resume) => {
        const server = net.createServer({ pauseOnConnect: true }, (b) => {
          b.on("error", () => {})
          resume(Effect.succeed({ a, b, server }))
        })
        let a: net.Socket
        server.listen({ host: "127.0.0.1", port: 0 }, () => {
          a = net.connect({ host: "127.0.0.1", port: portOf(server) })
          a.on("error", () => {})
        })
      }),
      ({ a, b, server }) =>
        Effect.sync(() => {
          a.destroy()
          b.destroy()
          server.close()
        }),
    )

    const recorder = () => {
      const events: Array<string> = []
      return {
        events,
        handlers: {
          onData: (chunk: Uint8Array) => events.push(`data:${text(chunk)}`),
          onEnd: () => events.push("end"),
          onReset: (detail: string) => events.push(`reset:${detail}`),
          onDrain: () => events.push("drain"),
        },
      }
    }

    const addresses = { local: Address.tcp("127.0.0.1", 1), remote: Address.tcp("127.0.0.1", 2) }

    it.live("data and end that arrive before start are reported at start, in order", () =>
      Effect.gen(function* () {
        const { a, b } = yield* socketPair
        const link = NodeLink.make(b, addresses)
        a.end("early bytes")
        yield* Effect.sleep("100 millis")
        const { events, handlers } = recorder()
        link.start(handlers)
        for (let i = 0; i < 40 && !events.includes("end"); i++) yield* Effect.sleep("25 millis")
        expect(events).toEqual(["data:early bytes", "end"])
      }),
    )

    it.live("a reset is reported once, and nothing after it", () =>
      Effect.gen(function* () {
        const { a, b } = yield* socketPair
        const link = NodeLink.make(b, addresses)
        const { events, handlers } = recorder()
        link.start(handlers)
        // Unread data at close makes the kernel send RST instead of FIN.
        b.write("x")
        a.resetAndDestroy()
        for (let i = 0; i < 40 && events.length === 0; i++) yield* Effect.sleep("25 millis")
        link.write(bytes("after the reset"))
        yield* Effect.sleep("100 millis")
        expect(events).toEqual(["reset:ECONNRESET"])
      }),
    )

    it.live("a socket already closed when the link takes it is reported as a reset", () =>
      Effect.gen(function* () {
        const { b } = yield* socketPair
        b.destroy()
        // Its 'close' has been and gone by the time the link is made.
        yield* Effect.sleep("50 millis")
        const link = NodeLink.make(b, addresses)
        const { events, handlers } = recorder()
        link.start(handlers)
        expect(events).toEqual(["reset:socket closed before the link took it"])
      }),
    )

    it.live("pause holds data back until resume; destroy silences the link", () =>
      Effect.gen(function* () {
        const { a, b } = yield* socketPair
        const link = NodeLink.make(b, addresses)
        const { events, handlers } = recorder()
        link.pause()
        link.start(handlers)
        a.write("held")
        yield* Effect.sleep("100 millis")
        expect(events).toEqual([])
        link.resume()
        for (let i = 0; i < 40 && events.length === 0; i++) yield* Effect.sleep("25 millis")
        expect(events).toEqual(["data:held"])
        link.destroy()
        a.end("ignored")
        yield* Effect.sleep("100 millis")
        expect(events).toEqual(["data:held"])
        expect(link.write(bytes("dropped"))).toBe(true)
      }),
    )
  })
})
