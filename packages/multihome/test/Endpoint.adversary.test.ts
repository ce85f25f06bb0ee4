/**
 * Another local party floods the endpoint with INITs and with packets carrying guessed
 * verification tags (from another host, and from the peer's own host at another UDP port):
 * no state is created (no association, no loopback alias — a bare INIT used to redirect
 * whatever the endpoint sent to its source address), no path moves, and the live
 * association goes on untouched.
 */
import { describe, expect, it } from "@effect/vitest"
import { Address, Datagram, SimNet } from "@understudy/transport"
import { Effect, Fiber, Stream } from "effect"
import * as Endpoint from "../src/Endpoint.ts"
import { advance, echoService, fromText, text, within } from "./support/endpoint-support.ts"
import { forgedGuess, forgedInit } from "./support/forged.ts"

const serverHost = "127.0.0.2"
const clientHost = "10.0.0.9"
const attackerHost = "127.0.0.1"
const serverPort = 7
const udpPort = 9899

describe("Endpoint under a local adversary", () => {
  it.effect(
    "INIT flood and guessed tags: no association, no alias, the live association echoes on",
    () =>
      Effect.gen(function* () {
        const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
        const server = yield* Endpoint.make({
          bind: Address.udp(serverHost, udpPort),
          port: serverPort,
          listen: true,
          hostAddresses: ["10.0.0.2"],
          seed: 1,
        }).pipe(Effect.provide(net.layer(serverHost)))
        yield* echoService(server)
        const client = yield* Endpoint.make({
          bind: Address.udp(clientHost, udpPort),
          port: 5000,
          seed: 2,
        }).pipe(Effect.provide(net.layer(clientHost)))
        const association = yield* within(
          10_000,
          client.connect({ host: serverHost, udpPort, port: serverPort }),
        )
        const [serverSide] = yield* server.associations
        const before = (yield* serverSide!.status).paths

        const attacker = yield* Effect.gen(function* () {
          const datagram = yield* Datagram.Datagram
          return yield* datagram.bind(Address.udp(attackerHost, 40_000))
        }).pipe(Effect.provide(net.layer(attackerHost)))
        // Another process on the client's own host, at another UDP port: a packet that passed
        // the tag check would move the path's encapsulation port there (RFC 6951 §5.4).
        const neighbour = yield* Effect.gen(function* () {
          const datagram = yield* Datagram.Datagram
          return yield* datagram.bind(Address.udp(clientHost, 40_001))
        }).pipe(Effect.provide(net.layer(clientHost)))
        const target = Address.udp(serverHost, udpPort)
        for (let index = 0; index < 200; index++) {
          yield* attacker.send(target, forgedInit(30_000 + index, serverPort))
          yield* attacker.send(target, forgedGuess(5000, serverPort, index))
          yield* neighbour.send(target, forgedGuess(5000, serverPort, index))
        }
        yield* advance(1_000)

        expect(yield* server.aliases).toEqual([])
        const stats = yield* server.stats
        expect(stats.associations).toBe(1)
        expect((yield* association.status).state).toBe("Established")
        expect((yield* serverSide!.status).paths.map((path) => [path.host, path.udpPort])).toEqual(
          before.map((path) => [path.host, path.udpPort]),
        )
        const echo = yield* Effect.forkScoped(
          association.messages.pipe(Stream.take(1), Stream.runCollect),
        )
        yield* association.send(0, 0, text("still here"))
        const [message] = yield* within(10_000, Fiber.join(echo))
        expect(fromText(message!.data)).toBe("still here")
      }),
  )

  it.effect("the alias table is bounded", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
      const endpoint = yield* Endpoint.make({
        bind: Address.udp(serverHost, udpPort),
        port: serverPort,
        seed: 3,
      }).pipe(Effect.provide(net.layer(serverHost)))
      yield* endpoint.addAliases(
        Array.from({ length: 5_000 }, (_, index) => ({
          from: { host: "127.0.0.1", udpPort: 1 + index },
          host: "10.0.0.2",
        })),
      )
      const table = yield* endpoint.aliases
      expect(table.length).toBeLessThanOrEqual(1_024)
      expect(table.length).toBeGreaterThan(1_000)
      expect((yield* endpoint.stats).dropped.AliasTableFull).toBe(5_000 - table.length)
    }),
  )
})
