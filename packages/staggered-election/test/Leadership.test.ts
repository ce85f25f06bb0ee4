/**
 * Leader-only mode on loopback: three members campaign; one leads with a fencing token,
 * every member observes it; when it resigns another leads with a greater token.
 */
import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Authentication } from "@understudy/machine"
import { MemoryStore, NameServer } from "@understudy/store"
import { Ports } from "@understudy/testkit"
import { Address, NodeDatagram } from "@understudy/transport"
import { Effect, Fiber, Layer, Option, Stream } from "effect"
import * as Leadership from "../src/Leadership.ts"

const authentication = Authentication.keyed(new Uint8Array(randomBytes(32)))

const services = NameServer.layer.pipe(
  Layer.provide(MemoryStore.layer),
  Layer.merge(NodeDatagram.layer),
)
const ids = ["a", "b", "c"]

describe("Leadership", () => {
  it.live(
    "campaign gives the leader its fencing token; observe shows it; resign hands over to a greater token",
    () =>
      Effect.gen(function* () {
        const ports = yield* Effect.promise(() => Ports.freeUdpPorts(ids.length))
        const addresses = Object.fromEntries(
          ids.map((id, i) => [id, Address.udp("127.0.0.1", ports[i]!)]),
        )
        const members = yield* Effect.forEach(ids, (self) =>
          Leadership.make({
            group: "jobs",
            self,
            servers: ids.map((id, j) => ({ id, capacity: { cpu: 10 - j, bandwidthMbps: 100 } })),
            addresses,
            authentication,
            detectionPeriodMs: 20,
            inquiryTimeoutMs: 100,
            baseDelayMs: 50,
            floorDelayMs: 15,
            registrationTtlMs: 1_000,
          }),
        )
        const campaigns = yield* Effect.forEach(members, (member) =>
          Effect.forkChild(member.campaign),
        )
        const first = yield* Effect.raceAll(
          campaigns.map((fiber, i) => Effect.map(Fiber.join(fiber), (token) => ({ i, token }))),
        )
        const leader = members[first.i]!
        expect(first.token).toBeGreaterThan(0)
        // Every member observes that leader and token (bounded: the first matching view).
        for (const member of members) {
          const seen = yield* member.observe.pipe(
            Stream.filter((view) => Option.isSome(view) && view.value.id === leader.self),
            Stream.take(1),
            Stream.runHead,
            Effect.timeout(5_000),
          )
          expect(Option.flatten(seen)).toEqual(Option.some({ id: leader.self, token: first.token }))
        }
        yield* leader.resign
        const next = yield* Effect.raceAll(
          campaigns.filter((_, i) => i !== first.i).map((fiber) => Fiber.join(fiber)),
        ).pipe(Effect.timeout(10_000))
        expect(next).toBeGreaterThan(first.token)
      }).pipe(Effect.scoped, Effect.provide(services)),
    30_000,
  )
})
