/**
 * `Client.run`'s durations are `Duration.Input`s decoded by Schema: one that is out of range
 * fails with `PoolInvalidConfig` naming the option, before any socket is bound.
 */
import { describe, expect, it } from "@effect/vitest"
import { ClusterKey, Datagram, NodeDatagram } from "@understudy/transport"
import { Duration, Effect, Exit, Layer } from "effect"
import * as Client from "../src/Client.ts"
import { PoolInvalidConfig } from "../src/Machine.ts"

/** A Datagram that fails the test if anything is bound through it. */
const noBind = Layer.succeed(
  Datagram.Datagram,
  Datagram.Datagram.of({ bind: () => Effect.die("bound before the options were checked") }),
)

const options = (overrides: Partial<Client.Options>): Client.Options => ({
  id: "c1",
  bind: { _tag: "Udp", host: "127.0.0.1", port: 0 },
  servers: [{ id: "s1", address: { _tag: "Udp", host: "127.0.0.1", port: 9 } }],
  poolSecret: ClusterKey.generate(),
  product: "cad",
  ...overrides,
})

const refusal = (overrides: Partial<Client.Options>) =>
  Effect.gen(function* () {
    const exit = yield* Client.run(options(overrides)).pipe(
      Effect.scoped,
      Effect.provide(noBind),
      Effect.exit,
    )
    if (!Exit.isFailure(exit)) throw new Error("expected a refusal")
    const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")
    expect(error?._tag === "Fail" && error.error).toBeInstanceOf(PoolInvalidConfig)
    return error?._tag === "Fail" ? String((error.error as PoolInvalidConfig).reason) : ""
  })

describe("Client options", () => {
  it.effect("a duration that is not positive and finite is refused, naming the option", () =>
    Effect.gen(function* () {
      expect(yield* refusal({ heartbeatInterval: 0 })).toContain("heartbeatInterval")
      expect(yield* refusal({ retryInterval: "-5 millis" as never })).toContain("retryInterval")
      expect(yield* refusal({ minRetryInterval: Duration.infinity })).toContain("minRetryInterval")
      expect(yield* refusal({ heartbeatInterval: "soon" as never })).toContain("heartbeatInterval")
    }),
  )

  it.effect("a retry wait above the interval, or a count out of range, is refused by name", () =>
    Effect.gen(function* () {
      expect(
        yield* refusal({ heartbeatInterval: "100 millis", retryInterval: "1 second" }),
      ).toContain("retryInterval")
      expect(yield* refusal({ missLimit: 0 })).toContain("missLimit")
      expect(yield* refusal({ seats: 1.5 })).toContain("seats")
    }),
  )

  it.live("valid durations in any form start the client", () =>
    Effect.gen(function* () {
      for (const heartbeatInterval of [50, "50 millis", Duration.millis(50)] as const) {
        const running = yield* Client.run(
          options({ heartbeatInterval, retryInterval: "40 millis" }),
        ).pipe(Effect.provide(NodeDatagram.layer))
        expect(running.address.port).toBeGreaterThan(0)
      }
    }).pipe(Effect.scoped),
  )
})
