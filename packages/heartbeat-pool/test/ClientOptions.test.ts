/**
 * `Client.run`'s options: durations are `Duration.Input`s decoded by Schema, and one that is
 * out of range fails with `PoolInvalidConfig` naming the option, before any socket is bound;
 * reporting closed ports (the default), the client prepares its socket to each server when it
 * starts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Eventually } from "@understudy/testkit"
import { Address, ClusterKey, Datagram, NodeDatagram } from "@understudy/transport"
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

  it.live(
    "reporting closed ports, the client makes its socket to every server when it starts",
    () =>
      Effect.gen(function* () {
        const prepared: Array<number> = []
        // The real datagrams, noting each destination a socket is prepared for.
        const noting = Layer.effect(
          Datagram.Datagram,
          Effect.map(Datagram.Datagram, (real) =>
            Datagram.Datagram.of({
              bind: (address, bindOptions) =>
                Effect.map(real.bind(address, bindOptions), (endpoint) => {
                  const prepare = endpoint.prepare
                  return prepare === undefined
                    ? endpoint
                    : {
                        ...endpoint,
                        prepare: (to: Address.Udp) =>
                          Effect.andThen(
                            Effect.sync(() => void prepared.push(to.port)),
                            prepare(to),
                          ),
                      }
                }),
            }),
          ),
        ).pipe(Layer.provide(NodeDatagram.layer))
        const servers = [9, 10, 11].map((port, index) => ({
          id: `s${index + 1}`,
          address: Address.udp("127.0.0.1", port),
        }))
        yield* Client.run(options({ servers })).pipe(Effect.provide(noting))
        yield* Eventually.effect("a socket prepared for each server", () => prepared.length === 3, {
          within: "30 seconds",
        })
        expect(prepared.sort((a, b) => a - b)).toEqual([9, 10, 11])
        yield* Client.run(options({ id: "c2", servers, reportUnreachable: false })).pipe(
          Effect.provide(noting),
        )
        expect(prepared).toHaveLength(3)
      }).pipe(Effect.scoped),
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
