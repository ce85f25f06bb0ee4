import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Authentication } from "@understudy/machine"
import { Seeds } from "@understudy/testkit"
import { Address, Datagram, SimNet } from "@understudy/transport"
import { Clock, Effect, Layer, Random, Result, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Message from "../src/Message.ts"
import * as Server from "../src/Server.ts"
import * as Signing from "../src/Signing.ts"
import { servers, signedPool, simMembers, stateRoot } from "./support/pool.ts"

const dir = stateRoot("heartbeat-pool-load-")
const members = simMembers
/** The default timings with a shorter lease: the leader settles (a lease) before the crowd. */
const timing: Server.Timing = { ...Server.defaultTiming, leaseMs: 4_000 }
/** Clients asking at once: their replies take the leader `crowd * sendCostMs` to send. */
const crowd = 2_000
const sendCostMs = 2

/** The host's datagrams, each send costing `sendCostMs` first (a loaded machine's CPU). */
const loaded = Layer.effect(
  Datagram.Datagram,
  Effect.gen(function* () {
    const inner = yield* Datagram.Datagram
    return Datagram.Datagram.of({
      bind: (address) =>
        Effect.map(inner.bind(address), (endpoint) => ({
          ...endpoint,
          send: (to: Address.Udp, bytes: Uint8Array) =>
            Effect.andThen(Effect.sleep(sendCostMs), endpoint.send(to, bytes)),
        })),
    })
  }),
)

/** Moves the clock on by `ms`, 5 ms at a time (each step lets the fibers it woke run). */
const advance = (ms: number) =>
  Effect.gen(function* () {
    for (let elapsed = 0; elapsed < ms; elapsed += 5) yield* TestClock.adjust(5)
  })

describe("a leader under a crowd of requests", () => {
  for (const seed of Seeds.seeds(1)) {
    it.effect(
      `SEED=${seed}: answers ${crowd} requests that arrive at once without losing its followers`,
      () =>
        Effect.gen(function* () {
          const net = yield* SimNet.make({
            link: { latency: SimNet.uniform(1, 3) },
            datagramBufferSize: 2 * crowd,
          })
          const { secret, vendor, license } = signedPool(2 * crowd)
          const running = new Map<string, Server.Running>()
          const leaders: Array<{ server: string; term: number; atMs: number }> = []
          for (const self of servers) {
            yield* net.run(
              self,
              Effect.gen(function* () {
                const server = yield* Server.run({
                  self,
                  members,
                  poolSecret: secret,
                  vendorPublicKey: vendor.publicPem,
                  stateDir: join(dir, `${seed}`, self),
                  license,
                  timing,
                  clientsPerServerMax: crowd,
                })
                running.set(self, server)
                yield* server.events.pipe(
                  Stream.runForEach((event) =>
                    event._tag === "BecameLeader"
                      ? Effect.map(Clock.currentTimeMillis, (atMs) => {
                          leaders.push({ server: self, term: event.term, atMs })
                        })
                      : Effect.void,
                  ),
                  Effect.forkScoped,
                )
                yield* Effect.never
              }).pipe(Effect.provide(loaded)),
            )
          }
          // An election, then the leader's settling (no new seat for a lease after it).
          yield* advance(2_000 + timing.leaseMs + 500)
          const context = `SEED=${seed}`
          expect(leaders, context).toHaveLength(1)
          const [elected] = leaders
          const leader = members.find((member) => member.id === elected!.server)!

          // The crowd: each client's request sealed with the pool key, all sent at once.
          const keys = Signing.poolKeys(secret)
          const granted = new Set<string>()
          yield* net.run(
            "crowd",
            Effect.gen(function* () {
              const datagram = yield* Datagram.Datagram
              const endpoint = yield* datagram.bind(Address.udp("crowd", 9))
              const nowMs = yield* Clock.currentTimeMillis
              const sealers = new Map<string, Authentication.Sealer>()
              for (let index = 0; index < crowd; index++) {
                const client = `c${index}`
                const sealer = Authentication.sealer(Authentication.keyed(keys.mac), client, nowMs)
                sealers.set(client, sealer)
                const encoded = Message.clientRequestCodec.encode({
                  _tag: "Request",
                  client,
                  seq: 1,
                  product: "cad",
                  seats: 1,
                })
                if (Result.isFailure(encoded)) return yield* Effect.die(encoded.failure)
                yield* endpoint.send(leader.client, sealer.seal(leader.id, nowMs, encoded.success))
              }
              // A grant names its client; its MAC is checked with that client's key.
              yield* endpoint.messages.pipe(
                Stream.runForEach((received) =>
                  Effect.map(Clock.currentTimeMillis, (atMs) => {
                    const payload = Server.unverifiedPayload(true, received.bytes)
                    if (payload === undefined) return
                    const reply = Message.serverReplyCodec.decode(payload)
                    if (Result.isFailure(reply) || reply.success._tag !== "Granted") return
                    const client = reply.success.token.client
                    const opened = sealers.get(client)?.open(leader.id, atMs, received.bytes)
                    if (opened !== undefined && "payload" in opened) granted.add(client)
                  }),
                ),
              )
            }),
          )
          // Long enough for every reply (crowd * sendCostMs) and for any election it caused.
          for (let waitedMs = 0; waitedMs < 3 * crowd * sendCostMs; waitedMs += 500) {
            yield* advance(500)
            if (granted.size === crowd) break
          }
          yield* advance(timing.followerTimeoutMs + timing.checkTimeoutMs + 1_000)

          expect(leaders, `${context}: elections after the crowd came`).toEqual([elected])
          expect(granted.size, context).toBe(crowd)
          for (const server of servers) {
            const state = yield* running.get(server)!.state
            expect([server, state.role, state.durable.term], context).toEqual([
              server,
              server === elected!.server ? "leader" : "follower",
              elected!.term,
            ])
          }
        }).pipe(Effect.scoped, Random.withSeed(seed)),
      120_000,
    )
  }
})
