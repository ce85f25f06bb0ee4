/**
 * Every duration option of the package is a `Duration.Input` decoded before anything is
 * opened, bound or dialled: one that is not a positive, finite duration fails with
 * `CheckpointConfigError` naming it, and nothing else happens (no lease granted, no name
 * registered, no connection tried).
 */
import { describe, expect, it } from "@effect/vitest"
import { NameServer, Store } from "@understudy/store"
import { Address, Transport } from "@understudy/transport"
import { Duration, Effect, Layer, Stream } from "effect"
import * as CheckpointStore from "../src/CheckpointStore.ts"
import * as Discovery from "../src/Discovery.ts"
import * as DuplexSession from "../src/DuplexSession.ts"
import * as ObjectBundle from "../src/ObjectBundle.ts"
import * as ObjectSession from "../src/ObjectSession.ts"

/** Values that are not positive, finite durations. */
const bad: ReadonlyArray<unknown> = [
  0,
  -1,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  "soon",
  "",
  "-2 seconds",
  Duration.zero,
  Duration.infinity,
  null,
  {},
  [],
  true,
]

/** A store, a name server and a transport that fail the test if anything reaches them. */
const untouched = <A>(what: string): A =>
  new Proxy({} as object, {
    get: (_, key) => {
      throw new Error(`${what}.${String(key)} was used before the options were checked`)
    },
  }) as A
const services = Layer.mergeAll(
  Layer.succeed(Store.Store, untouched<Store.Store["Service"]>("store")),
  Layer.succeed(NameServer.NameServer, untouched<NameServer.NameServer["Service"]>("names")),
  Layer.succeed(Transport.Transport, untouched<Transport.Transport["Service"]>("transport")),
)

const service = [Address.tcp("127.0.0.1", 1)]

/** Each option with the call that decodes it, failing with its error. */
const cases: ReadonlyArray<
  readonly [string, (value: never) => Effect.Effect<unknown, unknown, never>]
> = [
  [
    "leaseTtl",
    (leaseTtl) =>
      CheckpointStore.make({ serverId: "s1", backend: "session", prefix: "p/", leaseTtl }).pipe(
        Effect.scoped,
        Effect.provide(services),
        Effect.flip,
      ),
  ],
  [
    "ttl",
    (ttl) =>
      Discovery.advertise({ service: "x", serverId: "s1", address: service[0]!, ttl }).pipe(
        Effect.scoped,
        Effect.provide(services),
        Effect.flip,
      ),
  ],
  [
    "retryDelay",
    (retryDelay) =>
      ObjectSession.get("object", { service, insecure: true, retryDelay }).pipe(
        Stream.runDrain,
        Effect.provide(services),
        Effect.flip,
      ),
  ],
  [
    "retryDelay",
    (retryDelay) =>
      ObjectBundle.connect({ service, insecure: true, retryDelay }).pipe(
        Effect.scoped,
        Effect.provide(services),
        Effect.flip,
      ),
  ],
  [
    "retryDelay",
    (retryDelay) =>
      DuplexSession.connect({ service, insecure: true, retryDelay }).pipe(
        Effect.scoped,
        Effect.provide(services),
        Effect.flip,
      ),
  ],
]

describe("duration options", () => {
  it.effect(
    "fuzz: any value that is not a positive duration fails with CheckpointConfigError naming the option, before anything is used",
    () =>
      Effect.gen(function* () {
        for (const [option, call] of cases) {
          for (const value of bad) {
            const error = yield* call(value as never)
            expect(error, `${option} = ${String(value)}`).toMatchObject({
              _tag: "CheckpointConfigError",
            })
            expect((error as Error).message).toContain(`["${option}"]`)
          }
        }
      }),
  )

  it.effect("reads text, milliseconds or a Duration", () =>
    Effect.gen(function* () {
      // A valid duration gets past the check: the store is the next thing used.
      for (const leaseTtl of ["300 millis", 300, Duration.millis(300)] as const) {
        const defect = yield* CheckpointStore.make({
          serverId: "s1",
          backend: "session",
          prefix: "p/",
          leaseTtl,
        }).pipe(Effect.scoped, Effect.provide(services), Effect.exit)
        expect(String(defect)).toContain("store.grantLease was used")
      }
    }),
  )
})
