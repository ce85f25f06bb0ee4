import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Result } from "effect"
import fc from "fast-check"
import * as Address from "../src/Address.ts"
import * as Codec from "../src/Codec.ts"
import * as NodeTransport from "../src/NodeTransport.ts"
import * as Options from "../src/Options.ts"
import * as SimNet from "../src/SimNet.ts"
import { Transport } from "../src/Transport.ts"

describe("Options.positiveMillis", () => {
  it("reads a duration given as text, milliseconds or a Duration", () => {
    expect(Options.positiveMillis("t", "2 seconds")).toEqual(Result.succeed(2_000))
    expect(Options.positiveMillis("t", 250)).toEqual(Result.succeed(250))
    expect(Options.positiveMillis("t", Duration.minutes(1))).toEqual(Result.succeed(60_000))
  })

  it("refuses what is not a positive finite duration, naming the option", () => {
    for (const input of [
      0,
      -1,
      Number.POSITIVE_INFINITY,
      Number.NaN,
      "soon",
      "0 millis",
    ] as const) {
      const result = Options.positiveMillis("submitTimeout", input as Duration.Input)
      expect(Result.isFailure(result), String(input)).toBe(true)
      if (Result.isFailure(result))
        expect(result.failure).toMatch(/^submitTimeout: not a positive duration/)
    }
  })
})

describe("Options.decode (ConnectionOptions)", () => {
  const codec = Codec.bytes

  it("reads durations as text, milliseconds or a Duration, with their defaults", () => {
    const defaults = Result.getOrThrow(Options.decode({ codec }))
    expect(defaults).toMatchObject({
      keepAlive: { intervalMs: 1_000, timeoutMs: 5_000 },
      handshakeTimeoutMs: 5_000,
      lingerMs: 1_000,
      frameBytesMax: 16 * 1024 * 1024,
    })
    const given = Result.getOrThrow(
      Options.decode({
        codec,
        keepAlive: { interval: "200 millis", timeout: Duration.seconds(2) },
        handshakeTimeout: 300,
        linger: "2 seconds",
      }),
    )
    expect(given).toMatchObject({
      keepAlive: { intervalMs: 200, timeoutMs: 2_000 },
      handshakeTimeoutMs: 300,
      lingerMs: 2_000,
    })
    expect(Result.getOrThrow(Options.decode({ codec, keepAlive: false })).keepAlive).toBe(false)
  })

  it("refuses an option out of range with a message naming it", () => {
    const cases: ReadonlyArray<readonly [string, Record<string, unknown>]> = [
      ["handshakeTimeout", { handshakeTimeout: 0 }],
      ["handshakeTimeout", { handshakeTimeout: "soon" }],
      ["linger", { linger: -1 }],
      ["linger", { linger: Number.POSITIVE_INFINITY }],
      ["timeout", { keepAlive: { interval: 100, timeout: "0 millis" } }],
      ["interval", { keepAlive: { interval: Number.NaN, timeout: 100 } }],
      ["keepAlive", { keepAlive: true }],
      ["frameBytesMax", { frameBytesMax: 1.5 }],
      ["sendQueueCapacity", { sendQueueCapacity: 0 }],
    ]
    for (const [name, options] of cases) {
      const result = Options.decode({ codec, ...options } as Options.ConnectionOptions<Uint8Array>)
      expect(Result.isFailure(result), name).toBe(true)
      if (Result.isFailure(result)) expect(result.failure).toContain(`["${name}"]`)
    }
  })

  it("fuzz: any value of a duration option is read as positive whole ms or refused naming it", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("handshakeTimeout", "linger"),
        fc.oneof(fc.anything(), fc.double(), fc.string(), fc.integer()),
        (name, value) => {
          const result = Options.decode({ codec, [name]: value } as never)
          if (Result.isFailure(result)) {
            expect(result.failure).toContain(`["${name}"]`)
          } else {
            const ms =
              name === "linger" ? result.success.lingerMs : result.success.handshakeTimeoutMs
            expect(Number.isInteger(ms) && ms >= 1).toBe(true)
          }
        },
      ),
      { numRuns: 500 },
    )
  })
})

describe("an invalid connection option fails before anything is bound or dialled", () => {
  it.effect("NodeTransport: ListenError / ConnectError naming it, and the port stays free", () =>
    Effect.gen(function* () {
      const transport = yield* Transport
      const listenError = yield* Effect.flip(
        transport.listen(Address.tcp("127.0.0.1", 0), { codec: Codec.bytes, linger: 0 }),
      )
      expect(listenError).toMatchObject({ _tag: "ListenError", reason: "Other" })
      expect(listenError.detail).toContain(`["linger"]`)
      const listener = yield* transport.listen(Address.tcp("127.0.0.1", 0), {
        codec: Codec.bytes,
        keepAlive: false,
      })
      const connectError = yield* Effect.flip(
        transport.connect(listener.address, {
          codec: Codec.bytes,
          handshakeTimeout: "soon" as Duration.Input,
        }),
      )
      expect(connectError).toMatchObject({ _tag: "ConnectError", reason: "Other" })
      expect((connectError as { detail: string }).detail).toContain(`["handshakeTimeout"]`)
    }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer)),
  )

  it.effect("SimNet: the same errors, and the address can then be bound", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make()
      yield* Effect.gen(function* () {
        const transport = yield* Transport
        const address = Address.tcp("a", 7000)
        const listenError = yield* Effect.flip(
          transport.listen(address, {
            codec: Codec.bytes,
            keepAlive: { interval: 100, timeout: -5 },
          }),
        )
        expect(listenError.detail).toContain(`["keepAlive"]["timeout"]`)
        yield* transport.listen(address, { codec: Codec.bytes })
        const connectError = yield* Effect.flip(
          transport.connect(address, { codec: Codec.bytes, linger: Number.NaN }),
        )
        expect(connectError).toMatchObject({ _tag: "ConnectError", reason: "Other" })
      }).pipe(Effect.provide(net.layer("a")))
    }).pipe(Effect.scoped),
  )
})
