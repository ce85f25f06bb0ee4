/**
 * A resource defined in code (name, capacity, expiry) instead of a vendor's license file:
 * checked by Schema with a typed refusal, signed with the pool key (a vendor-signed file or
 * one signed with another pool's key is refused), and leased out by a real server on
 * loopback without exceeding its capacity. Waits are for events, bounded by the test's
 * time-out.
 */
import { describe, expect, it } from "@effect/vitest"
import { ClusterKey, NodeDatagram } from "@understudy/transport"
import { Effect, Exit, Option, Result, Stream } from "effect"
import * as Client from "../src/Client.ts"
import type * as ClientMachine from "../src/ClientMachine.ts"
import { PoolInvalidConfig } from "../src/Machine.ts"
import * as Resource from "../src/Resource.ts"
import * as Server from "../src/Server.ts"
import * as Signing from "../src/Signing.ts"
import { loopbackPool } from "./support/loopbackPool.ts"
import { stateRoot } from "./support/pool.ts"

const dir = stateRoot("heartbeat-pool-resource-")

const refusal = (result: Result.Result<unknown, PoolInvalidConfig>): string => {
  if (Result.isSuccess(result)) throw new Error("expected a refusal")
  expect(result.failure).toBeInstanceOf(PoolInvalidConfig)
  return result.failure.reason
}

describe("a resource defined in code", () => {
  it("is checked by Schema: a bad name, capacity, date or version is refused, naming it", () => {
    const secret = ClusterKey.generate()
    expect(refusal(Resource.sign(secret, { name: "", capacity: 1 }))).toContain("name")
    expect(refusal(Resource.sign(secret, { name: "slot", capacity: 1.5 }))).toContain("capacity")
    expect(refusal(Resource.sign(secret, { name: "slot", capacity: -1 }))).toContain("capacity")
    expect(
      refusal(
        Resource.sign(secret, { name: "slot", capacity: 1, expiresAt: new Date(Number.NaN) }),
      ),
    ).toContain("expiresAt")
    expect(refusal(Resource.sign(secret, { name: "slot", capacity: 1, version: 0 }))).toContain(
      "version",
    )
  })

  it("is signed with the pool key: checked by that pool only, never with a vendor's key", () => {
    const secret = ClusterKey.generate()
    const resource = Result.getOrThrow(Resource.sign(secret, { name: "slot", capacity: 3 }))
    expect(resource).toMatchObject({ product: "slot", seats: 3, sequence: 1 })
    const ours = Resource.crypto(Signing.poolKeys(secret))
    expect(ours.verifyLicense(resource)).toBe(true)
    expect(ours.verifyLicense({ ...resource, seats: 4 })).toBe(false)
    const other = Resource.crypto(Signing.poolKeys(ClusterKey.generate()))
    expect(other.verifyLicense(resource)).toBe(false)
    const vendor = Signing.generateVendorKeys()
    const vendorSigned = Signing.signLicense(vendor.privatePem, {
      product: "slot",
      seats: 3,
      expiresAtMs: 4e12,
      sequence: 2,
    })
    expect(ours.verifyLicense(vendorSigned)).toBe(false)
    // Nor does a vendor's key accept a resource.
    expect(Signing.verifyLicense(vendor.publicPem, resource)).toBe(false)
  })

  it.live(
    "a server leases it out up to its capacity: two clients granted, the third denied",
    () =>
      Effect.gen(function* () {
        const { member, poolSecret } = yield* loopbackPool
        yield* Server.run({
          self: member.id,
          members: [member],
          poolSecret,
          stateDir: dir,
          resource: { name: "render-slot", capacity: 2 },
          // A new leader settles for a lease before it grants: a short one.
          timing: { heartbeatIntervalMs: 50, leaseMs: 500 },
        })
        const outcome = (id: string) =>
          Effect.gen(function* () {
            const client = yield* Client.run({
              id,
              bind: { _tag: "Udp", host: "127.0.0.1", port: 0 },
              servers: [{ id: member.id, address: member.client }],
              poolSecret,
              product: "render-slot",
              heartbeatInterval: 50,
            })
            // The first answer that is not "still settling".
            return yield* client.events.pipe(
              Stream.filter(
                (event: ClientMachine.Event) =>
                  event._tag === "Granted" ||
                  (event._tag === "Denied" && event.reason !== "electing"),
              ),
              Stream.runHead,
            )
          })
        const first = yield* outcome("w1")
        const second = yield* outcome("w2")
        const third = yield* outcome("w3")
        const answers = [first, second, third].map((answer) =>
          Option.match(answer, {
            onNone: () => "none",
            onSome: (event) => (event._tag === "Denied" ? `Denied ${event.reason}` : event._tag),
          }),
        )
        expect(answers).toEqual(["Granted", "Granted", "Denied capacity"])
      }).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer)),
    60_000,
  )

  it.effect("a server refuses a resource together with a vendor key or license, by name", () =>
    Effect.gen(function* () {
      const { member, poolSecret, server, license } = yield* loopbackPool
      const exit = yield* Server.run({
        ...server,
        stateDir: dir,
        license: license(1, 1),
        resource: { name: "slot", capacity: 1 },
      }).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer), Effect.exit)
      expect(Exit.isFailure(exit)).toBe(true)
      expect(String(exit)).toContain("resource excludes vendorPublicKey and license")
      const none = yield* Server.run({
        self: member.id,
        members: [member],
        poolSecret,
        stateDir: dir,
      }).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer), Effect.exit)
      expect(String(none)).toContain("vendorPublicKey or resource is required")
    }),
  )
})
