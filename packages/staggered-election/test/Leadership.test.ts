/**
 * Leader-only mode on SimNet under the TestClock (simulated time moves only when the test
 * moves it, so a stall of a loaded machine cannot depose the leader between two checks):
 * three members campaign; one leads with a fencing token, every member observes it; when it
 * resigns another leads with a greater token.
 */
import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Authentication } from "@understudy/machine"
import { MemoryStore, NameServer } from "@understudy/store"
import { Address, SimNet } from "@understudy/transport"
import { Deferred, Effect, Fiber, Layer, Option, Stream } from "effect"
import * as Leadership from "../src/Leadership.ts"
import { driven } from "./support/clock.ts"

const authentication = Authentication.keyed(new Uint8Array(randomBytes(32)))

const nameServer = NameServer.layer.pipe(Layer.provide(MemoryStore.layer))
const ids = ["a", "b", "c"]

describe("Leadership", () => {
  it.effect(
    "campaign gives the leader its fencing token; observe shows it; resign hands over to a greater token",
    () =>
      Effect.gen(function* () {
        const names = yield* NameServer.NameServer
        const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
        const addresses = Object.fromEntries(ids.map((id) => [id, Address.udp(id, 7000)]))
        // Each member is a program of its own host.
        const members = yield* Effect.forEach(ids, (self) =>
          Effect.gen(function* () {
            const started = yield* Deferred.make<Leadership.Leadership>()
            yield* net.run(
              self,
              Effect.gen(function* () {
                const member = yield* Leadership.make({
                  group: "jobs",
                  self,
                  servers: ids.map((id, j) => ({
                    id,
                    capacity: { cpu: 10 - j, bandwidthMbps: 100 },
                  })),
                  addresses,
                  authentication,
                  detectionPeriod: 20,
                  inquiryTimeout: 100,
                  baseDelay: 50,
                  floorDelay: 15,
                  registrationTtl: 1_000,
                })
                yield* Deferred.succeed(started, member)
                yield* Effect.never
              }).pipe(Effect.provideService(NameServer.NameServer, names)),
            )
            return yield* driven(Deferred.await(started))
          }),
        )
        const campaigns = yield* Effect.forEach(members, (member) =>
          Effect.forkChild(member.campaign),
        )
        const first = yield* driven(
          Effect.raceAll(
            campaigns.map((fiber, i) => Effect.map(Fiber.join(fiber), (token) => ({ i, token }))),
          ),
        )
        const leader = members[first.i]!
        expect(first.token).toBeGreaterThan(0)
        // Every member observes that leader and token (bounded: the first matching view).
        for (const member of members) {
          const seen = yield* driven(
            member.observe.pipe(
              Stream.filter((view) => Option.isSome(view) && view.value.id === leader.self),
              Stream.take(1),
              Stream.runHead,
              Effect.timeout(5_000),
            ),
          )
          expect(Option.flatten(seen)).toEqual(Option.some({ id: leader.self, token: first.token }))
        }
        yield* driven(leader.resign)
        const next = yield* driven(
          Effect.raceAll(
            campaigns.filter((_, i) => i !== first.i).map((fiber) => Fiber.join(fiber)),
          ).pipe(Effect.timeout(10_000)),
          15_000,
        )
        expect(next).toBeGreaterThan(first.token)
      }).pipe(Effect.scoped, Effect.provide(nameServer)),
    30_000,
  )
})
