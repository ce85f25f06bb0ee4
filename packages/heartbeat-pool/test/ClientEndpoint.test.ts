/**
 * A server's client endpoint over real UDP on loopback: a datagram without the pool key's MAC
 * (unsealed, or sealed with another key) and one above the size limit are dropped and
 * counted by reason before the machine sees them; the same request sealed with the pool key
 * is answered. One above the limit is refused with a typed `PoolMessageTooLarge` event. The datagrams go in order to one socket, so once the sealed one is answered
 * the others were handled.
 */
import { createSocket } from "node:dgram"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Authentication } from "@understudy/machine"
import { ClusterKey, NodeDatagram } from "@understudy/transport"
import { Effect, HashMap, Metric, type Redacted, Result, Stream } from "effect"
import { afterAll } from "vitest"
import * as Message from "../src/Message.ts"
import * as Metrics from "../src/Metrics.ts"
import * as Server from "../src/Server.ts"
import * as Signing from "../src/Signing.ts"
import { loopbackPool } from "./support/loopbackPool.ts"

const dir = mkdtempSync(join(tmpdir(), "heartbeat-pool-endpoint-"))
const socket = createSocket("udp4")
afterAll(() => {
  socket.close()
  rmSync(dir, { recursive: true, force: true })
})

const request = (client: string): Uint8Array => {
  const encoded = Message.clientRequestCodec.encode({
    _tag: "Request",
    client,
    seq: 1,
    product: "cad",
    seats: 1,
  })
  if (Result.isFailure(encoded)) throw encoded.failure
  return encoded.success
}
const sealed = (secret: Redacted.Redacted<Uint8Array>, client: string) =>
  Authentication.sealer(
    Authentication.keyed(Signing.poolKeys(secret).mac),
    client,
    Date.now(),
  ).seal("s1", Date.now(), request(client))

const dropped = (reason: string) =>
  Metric.value(Metric.withAttributes(Metrics.clientDatagramsDropped, { reason })).pipe(
    Effect.map((state) => state.count),
  )

describe("client endpoint", () => {
  it.live(
    "drops datagrams without the pool key's MAC or above the size limit; answers a sealed one",
    () =>
      Effect.gen(function* () {
        const { member, poolSecret, server: options, license } = yield* loopbackPool
        const clientPort = member.client.port
        const server = yield* Server.run({
          ...options,
          stateDir: dir,
          license: license(1, 1),
        })
        const reasons = ["unauthenticated", "undecodable", "too-large"]
        const before = yield* Effect.forEach(reasons, dropped)
        const answered = new Promise<Buffer>((resolve) => socket.once("message", resolve))
        const send = (bytes: Uint8Array) =>
          Effect.promise(
            () =>
              new Promise<void>((resolve, reject) =>
                socket.send(bytes, clientPort, "127.0.0.1", (error) =>
                  error ? reject(error) : resolve(),
                ),
              ),
          )
        // Sealed with another key: the MAC does not verify.
        yield* send(sealed(ClusterKey.generate(), "forger"))
        // Not sealed at all: no MAC where one must be.
        yield* send(request("plain"))
        // Above the 8 KiB limit.
        yield* send(new Uint8Array(9_000))
        // Sealed with the pool key: it reaches the machine, which answers.
        yield* send(sealed(poolSecret, "member"))
        const reply = Message.serverReplyCodec.decode(
          new Uint8Array((yield* Effect.promise(() => answered)).subarray(9, -16)),
        )
        expect(Result.isSuccess(reply) && reply.success._tag).toMatch(/^(Granted|Denied)$/)
        const after = yield* Effect.forEach(reasons, dropped)
        expect(after.map((count, index) => count - before[index]!)).toEqual([1, 1, 1])
        const state = yield* server.state
        expect([...HashMap.keys(state.record)].filter((client) => client !== "member")).toEqual([])
      }).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer)),
    60_000,
  )

  it.live(
    "a datagram above the size limit is refused with a typed PoolMessageTooLarge event",
    () =>
      Effect.gen(function* () {
        const { member, server: options, license } = yield* loopbackPool
        const server = yield* Server.run({
          ...options,
          stateDir: join(dir, "too-large"),
          license: license(1, 1),
          messageBytesMax: 1_000,
        })
        let refused: Server.PoolMessageTooLarge | undefined
        yield* server.events.pipe(
          Stream.runForEach((event) =>
            Effect.sync(() => {
              if (event._tag === "PoolMessageTooLarge") refused = event
            }),
          ),
          Effect.forkScoped,
        )
        // The events are read from when that fiber subscribes: send until one is refused.
        for (let attempt = 0; attempt < 200 && refused === undefined; attempt++) {
          yield* Effect.promise(
            () =>
              new Promise<void>((resolve, reject) =>
                socket.send(new Uint8Array(1_500), member.client.port, "127.0.0.1", (error) =>
                  error ? reject(error) : resolve(),
                ),
              ),
          )
          yield* Effect.sleep(50)
        }
        expect(refused).toBeInstanceOf(Server.PoolMessageTooLarge)
        expect(refused).toMatchObject({ bytes: 1_500, limit: 1_000 })
        expect(refused?.from).toMatch(/^127\.0\.0\.1:\d+$/)
      }).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer)),
    60_000,
  )
})
