import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync, readlinkSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, Stream } from "effect"
import * as Address from "../src/Address.ts"
import { Datagram } from "../src/Datagram.ts"
import * as NodeDatagram from "../src/NodeDatagram.ts"

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
const text = (data: Uint8Array): string => new TextDecoder().decode(data)

describe("NodeDatagram", () => {
  it.live("round trip on 127.0.0.2 reports the sender's real address", () =>
    Effect.gen(function* () {
      const datagram = yield* Datagram
      const a = yield* datagram.bind(Address.udp("127.0.0.2", 0))
      const b = yield* datagram.bind(Address.udp("127.0.0.1", 0))
      expect(a.address.host).toBe("127.0.0.2")
      expect(a.address.port).toBeGreaterThan(0)
      expect(b.address.port).toBeGreaterThan(0)

      yield* a.send(b.address, bytes("ping"))
      const [atB] = yield* Stream.runCollect(Stream.take(b.messages, 1))
      expect(text(atB!.bytes)).toBe("ping")
      expect(atB!.from).toEqual(a.address)

      yield* b.send(atB!.from, bytes("pong"))
      const [atA] = yield* Stream.runCollect(Stream.take(a.messages, 1))
      expect(text(atA!.bytes)).toBe("pong")
      expect(atA!.from).toEqual(b.address)
    }).pipe(Effect.provide(NodeDatagram.layer)),
  )

  it.live("round trip over IPv6 loopback", () =>
    Effect.gen(function* () {
      const datagram = yield* Datagram
      const a = yield* datagram.bind(Address.udp("::1", 0))
      const b = yield* datagram.bind(Address.udp("::1", 0))
      yield* a.send(b.address, bytes("six"))
      const [received] = yield* Stream.runCollect(Stream.take(b.messages, 1))
      expect(text(received!.bytes)).toBe("six")
      expect(received!.from).toEqual(Address.udp("::1", a.address.port))
    }).pipe(Effect.provide(NodeDatagram.layer)),
  )

  it.live("a second bind of the same address fails with AddressInUse", () =>
    Effect.gen(function* () {
      const datagram = yield* Datagram
      const first = yield* datagram.bind(Address.udp("127.0.0.1", 0))
      const second = yield* Effect.flip(datagram.bind(first.address))
      expect(second._tag).toBe("ListenError")
      expect(second.reason).toBe("AddressInUse")
      expect(second.address).toBe(Address.format(first.address))
    }).pipe(Effect.provide(NodeDatagram.layer)),
  )

  it.live("the address is free again once the scope closes", () =>
    Effect.gen(function* () {
      const datagram = yield* Datagram
      const scope = yield* Scope.make()
      const first = yield* datagram.bind(Address.udp("127.0.0.1", 0)).pipe(Scope.provide(scope))
      yield* Scope.close(scope, Exit.void)
      const again = yield* datagram.bind(first.address)
      expect(again.address).toEqual(first.address)
    }).pipe(Effect.provide(NodeDatagram.layer)),
  )

  it.live("messages ends when the endpoint's scope closes, after what was received", () =>
    Effect.gen(function* () {
      const datagram = yield* Datagram
      const sender = yield* datagram.bind(Address.udp("127.0.0.1", 0))
      const scope = yield* Scope.make()
      const receiver = yield* datagram.bind(Address.udp("127.0.0.1", 0)).pipe(Scope.provide(scope))
      const reader = yield* Effect.forkChild(Stream.runCollect(receiver.messages))
      yield* sender.send(receiver.address, bytes("one"))
      yield* sender.send(receiver.address, bytes("two"))
      // Loopback delivery is immediate but asynchronous: give it a bounded moment.
      yield* Effect.sleep("100 millis")
      yield* Scope.close(scope, Exit.void)
      const all = yield* Fiber.join(reader).pipe(Effect.timeout("2 seconds"))
      expect(all.map((received) => text(received.bytes))).toEqual(["one", "two"])
    }).pipe(Effect.provide(NodeDatagram.layer)),
  )

  it.live("a datagram too large to send fails with DatagramError", () =>
    Effect.gen(function* () {
      const datagram = yield* Datagram
      const a = yield* datagram.bind(Address.udp("127.0.0.1", 0))
      const error = yield* Effect.flip(a.send(a.address, new Uint8Array(70_000)))
      expect(error._tag).toBe("DatagramError")
      expect(error.address).toBe(Address.format(a.address))
      expect(error.detail).toMatch(/EMSGSIZE/)
    }).pipe(Effect.provide(NodeDatagram.layer)),
  )

  it.live("sending after the endpoint closed fails with DatagramError", () =>
    Effect.gen(function* () {
      const datagram = yield* Datagram
      const scope = yield* Scope.make()
      const a = yield* datagram.bind(Address.udp("127.0.0.1", 0)).pipe(Scope.provide(scope))
      yield* Scope.close(scope, Exit.void)
      const error = yield* Effect.flip(a.send(Address.udp("127.0.0.1", 9), bytes("late")))
      expect(error._tag).toBe("DatagramError")
    }).pipe(Effect.provide(NodeDatagram.layer)),
  )
  it.live(
    "bind sets the kernel's buffers asked for: Linux reports each doubled, within its cap",
    () =>
      Effect.gen(function* () {
        const datagram = yield* Datagram
        const endpoint = yield* datagram.bind(Address.udp("127.0.0.1", 0), {
          receiveBufferBytes: 100_000,
          sendBufferBytes: 50_000,
        })
        // The kernel's own figures for this socket (rb: SO_RCVBUF, tb: SO_SNDBUF), read by ss.
        const skmem = execFileSync("ss", ["-uanm", `sport = :${endpoint.address.port}`], {
          encoding: "utf8",
        })
        const rmemMax = Number(readFileSync("/proc/sys/net/core/rmem_max", "utf8"))
        const wmemMax = Number(readFileSync("/proc/sys/net/core/wmem_max", "utf8"))
        expect(Number(/\brb(\d+)/.exec(skmem)?.[1])).toBe(2 * Math.min(100_000, rmemMax))
        expect(Number(/\btb(\d+)/.exec(skmem)?.[1])).toBe(2 * Math.min(50_000, wmemMax))
      }).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer)),
  )

  it.live("a buffer size that is not a positive integer fails with ListenError naming it", () =>
    Effect.gen(function* () {
      const datagram = yield* Datagram
      for (const receiveBufferBytes of [0, -1, 1.5, Number.NaN, 2 ** 31]) {
        const error = yield* Effect.flip(
          datagram.bind(Address.udp("127.0.0.1", 0), { receiveBufferBytes }),
        )
        expect(error._tag).toBe("ListenError")
        expect(error.reason).toBe("Other")
        expect(error.detail).toContain("receiveBufferBytes")
      }
      const error = yield* Effect.flip(
        datagram.bind(Address.udp("127.0.0.1", 0), { sendBufferBytes: 0 }),
      )
      expect(error.detail).toContain("sendBufferBytes")
    }).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer)),
  )

  it.live(
    "reportUnreachable: a closed port is reported (ICMP port unreachable), a silent bound one never; answers arrive on messages",
    () =>
      Effect.gen(function* () {
        const datagram = yield* Datagram
        const client = yield* datagram.bind(Address.udp("127.0.0.1", 0), {
          reportUnreachable: true,
        })
        const live = yield* datagram.bind(Address.udp("127.0.0.1", 0))
        const silent = yield* datagram.bind(Address.udp("127.0.0.1", 0))
        const scope = yield* Scope.make()
        const dead = yield* datagram.bind(Address.udp("127.0.0.1", 0)).pipe(Scope.provide(scope))
        const deadAddress = dead.address
        yield* Scope.close(scope, Exit.void)
        expect(client.unreachable).toBeDefined()
        expect(live.unreachable).toBeUndefined()

        // Sent from a socket connected to `live`; its answer to that sender arrives on messages.
        yield* client.send(live.address, bytes("ping"))
        const [atLive] = yield* Stream.runCollect(Stream.take(live.messages, 1))
        expect(atLive!.from.host).toBe("127.0.0.1")
        yield* live.send(atLive!.from, bytes("pong"))
        const [answer] = yield* Stream.runCollect(Stream.take(client.messages, 1))
        expect(text(answer!.bytes)).toBe("pong")
        expect(answer!.from).toEqual(live.address)

        // Bounded: the kernel answers each datagram to the closed port; the first report ends it.
        const reports = yield* Stream.runHead(client.unreachable!).pipe(Effect.forkChild)
        for (let attempt = 0; attempt < 50 && reports.pollUnsafe() === undefined; attempt++) {
          yield* client.send(silent.address, bytes("anyone?"))
          yield* client.send(deadAddress, bytes("anyone?"))
          yield* Effect.sleep("20 millis")
        }
        const first = yield* Fiber.join(reports)
        expect(first._tag).toBe("Some")
        expect(first._tag === "Some" && first.value).toEqual(deadAddress)
      }).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer)),
  )

  it.live(
    "reportUnreachable: prepare makes the socket connected to a destination before its first datagram, once",
    () =>
      Effect.gen(function* () {
        // This process's open sockets (Linux: its file descriptors that are sockets).
        const sockets = () =>
          readdirSync("/proc/self/fd").filter((fd) => {
            try {
              return readlinkSync(`/proc/self/fd/${fd}`).startsWith("socket:")
            } catch {
              return false // closed meanwhile
            }
          }).length
        const datagram = yield* Datagram
        const client = yield* datagram.bind(Address.udp("127.0.0.1", 0), {
          reportUnreachable: true,
        })
        const plain = yield* datagram.bind(Address.udp("127.0.0.1", 0))
        const peer = yield* datagram.bind(Address.udp("127.0.0.1", 0))
        expect(plain.prepare).toBeUndefined()
        const before = sockets()
        yield* client.prepare!(peer.address)
        expect(sockets()).toBe(before + 1)
        yield* client.prepare!(peer.address)
        yield* client.send(peer.address, bytes("ping"))
        const [ping] = yield* Stream.runCollect(Stream.take(peer.messages, 1))
        // Sent from the prepared socket (not the bound one), and no other was made for it.
        expect(ping!.from.port).not.toBe(client.address.port)
        expect(sockets()).toBe(before + 1)
      }).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer)),
  )
})
