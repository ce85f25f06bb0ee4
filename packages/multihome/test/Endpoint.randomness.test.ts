/**
 * Tags, initial TSNs and cookie secrets of a real endpoint come from node:crypto (RFC 9260
 * §5.3.1, RFC 4086): nothing seeded by the Effect `Random` service (31 bits, then a PRNG
 * whose state four outputs reveal) decides them. A `seed` still makes a simulation replay.
 */
import { describe, expect, it } from "@effect/vitest"
import { Address, SimNet } from "@understudy/transport"
import { Effect, Random } from "effect"
import * as Association from "../src/Association.ts"
import * as Endpoint from "../src/Endpoint.ts"
import * as S from "../src/internal/association-support.ts"
import * as Listener from "../src/Listener.ts"
import { within } from "./support/endpoint-support.ts"

/** One association over SimNet under a fixed Effect `Random`: what an attacker would guess. */
const establish = (seeds: { readonly server?: number; readonly client?: number }) =>
  Effect.gen(function* () {
    const net = yield* SimNet.make({ link: { latency: SimNet.fixed(5) } })
    const server = yield* Endpoint.make({
      bind: Address.udp("server", 9899),
      port: 5000,
      listen: true,
      ...(seeds.server !== undefined ? { seed: seeds.server } : {}),
    }).pipe(Effect.provide(net.layer("server")))
    const client = yield* Endpoint.make({
      bind: Address.udp("client", 9899),
      port: 5001,
      ...(seeds.client !== undefined ? { seed: seeds.client } : {}),
    }).pipe(Effect.provide(net.layer("client")))
    const association = yield* within(
      30_000,
      client.connect({ host: "server", udpPort: 9899, port: 5000 }),
    )
    const status = yield* association.status
    const secrets = yield* server.listenerSecrets
    return {
      clientTag: status.myTag,
      serverTag: status.peerTag,
      clientTsn: status.nextTsn,
      secret: Array.from(secrets.current),
    }
  }).pipe(Effect.scoped, Random.withSeed(7))

describe("Endpoint randomness", () => {
  it.effect(
    "without a seed, tags, TSNs and cookie secrets differ under the same Effect Random",
    () =>
      Effect.gen(function* () {
        const first = yield* establish({})
        const second = yield* establish({})
        expect(second.clientTag).not.toBe(first.clientTag)
        expect(second.serverTag).not.toBe(first.serverTag)
        expect(second.clientTsn).not.toBe(first.clientTsn)
        expect(second.secret).not.toEqual(first.secret)
      }),
  )

  it.effect("with a seed (simulation), the same run gives the same tags", () =>
    Effect.gen(function* () {
      const first = yield* establish({ server: 1, client: 2 })
      const second = yield* establish({ server: 1, client: 2 })
      expect(second).toEqual(first)
    }),
  )

  it("a CSPRNG listener's first four outputs do not give away the fifth (xorshift128 would)", () => {
    // The attack on the seeded PRNG: four outputs are its whole state.
    const predictNext = (outputs: ReadonlyArray<number>) =>
      S.nextU32({ a: outputs[3]!, b: outputs[2]!, c: outputs[1]!, d: outputs[0]! })
    const seeded = S.makeRng(12345)
    const seen = [S.nextU32(seeded), S.nextU32(seeded), S.nextU32(seeded), S.nextU32(seeded)]
    expect(predictNext(seen)).toBe(S.nextU32(seeded))
    const listener = Listener.makeListener({ ...Association.defaultConfig, localPort: 1 }, "crypto")
    let predicted = 0
    for (let round = 0; round < 16; round++) {
      const outputs = Array.from({ length: 4 }, () => S.nextU32(listener.rng))
      if (predictNext(outputs) === S.nextU32(listener.rng)) predicted++
    }
    // 16 chances at 2^-32 each: a hit means the listener is not drawing from the CSPRNG.
    expect(predicted).toBe(0)
  })
})
