import { describe, expect, it } from "@effect/vitest"
import { Address, NodeTransport } from "@understudy/transport"
import { Effect, Redacted, Result } from "effect"
import fc from "fast-check"
import * as Config from "../src/Config.ts"
import * as Election from "../src/Election.ts"

const detail = (options: unknown): string => {
  const decoded = Config.decode(options)
  if (Result.isSuccess(decoded)) throw new Error(`accepted ${JSON.stringify(options)}`)
  expect(decoded.failure._tag).toBe("ElectionConfigError")
  return decoded.failure.detail
}

describe("the election's options, decoded", () => {
  it("durations as milliseconds or text, with the documented defaults", () => {
    expect(Result.getOrThrow(Config.decode({}))).toEqual({
      keepAlive: { intervalMs: 200, timeoutMs: 1_500 },
      requestTimeoutMs: 5_000,
      graceMs: 3_000,
      attemptsMax: 2_000,
      eventsCapacity: 1_024,
    })
    const decoded = Result.getOrThrow(
      Config.decode({
        requestTimeout: "2 seconds",
        grace: 700,
        keepAlive: { interval: "100 millis", timeout: 600 },
      }),
    )
    expect(decoded.requestTimeoutMs).toBe(2_000)
    expect(decoded.graceMs).toBe(700)
    expect(decoded.keepAlive).toEqual({ intervalMs: 100, timeoutMs: 600 })
    // Without `grace`: the keep-alive time-out plus the larger of 1 s and that time-out.
    expect(
      Result.getOrThrow(Config.decode({ keepAlive: { interval: 500, timeout: "2 seconds" } }))
        .graceMs,
    ).toBe(4_000)
  })

  it("a value out of range is an ElectionConfigError naming the option", () => {
    expect(detail({ requestTimeout: -1 })).toContain("requestTimeout")
    expect(detail({ requestTimeout: "soon" })).toContain("not a duration")
    expect(detail({ grace: 0 })).toContain("grace")
    expect(detail({ attemptsMax: 1.5 })).toContain("attemptsMax")
    expect(detail({ eventsCapacity: 0 })).toContain("eventsCapacity")
    expect(detail({ keepAlive: { interval: 600, timeout: "600 millis" } })).toContain(
      "keepAlive: interval (600 ms) must be below timeout (600 ms)",
    )
    expect(detail({ keepAlive: { interval: 0, timeout: 600 } })).toContain(
      `["keepAlive"]["interval"]`,
    )
    expect(detail({ keepAlive: { interval: 100, timeout: "later" } })).toContain(
      `["keepAlive"]["timeout"]`,
    )
    // The old names are gone, not aliased: they name the option that is missing.
    expect(detail({ keepAlive: { intervalMs: 100, timeoutMs: 600 } })).toContain(
      `["keepAlive"]["interval"]`,
    )
  })

  it("any value decodes or is refused with ElectionConfigError, nothing else", () => {
    fc.assert(
      fc.property(
        fc.record(
          {
            requestTimeout: fc.oneof(fc.double(), fc.string()),
            grace: fc.oneof(fc.double(), fc.string()),
            attemptsMax: fc.double(),
            eventsCapacity: fc.double(),
            keepAlive: fc.record({
              interval: fc.oneof(fc.double(), fc.string()),
              timeout: fc.oneof(fc.double(), fc.string()),
            }),
          },
          { requiredKeys: [] },
        ),
        (options) => {
          const decoded = Config.decode(options)
          if (Result.isFailure(decoded)) {
            expect(decoded.failure._tag).toBe("ElectionConfigError")
            return
          }
          const { requestTimeoutMs, graceMs, attemptsMax, eventsCapacity, keepAlive } =
            decoded.success
          for (const ms of [requestTimeoutMs, graceMs, keepAlive.intervalMs, keepAlive.timeoutMs]) {
            expect(Number.isFinite(ms) && ms >= 0).toBe(true)
          }
          expect(Number.isInteger(attemptsMax) && Number.isInteger(eventsCapacity)).toBe(true)
        },
      ),
      { numRuns: 500 },
    )
  })

  it.effect("Election.make fails with it before binding anything", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Election.make({
          program: "test",
          address: Address.tcp("127.0.0.1", 1),
          secret: Redacted.make(new Uint8Array(32)),
          requestTimeout: -5,
        }),
      )
      expect(error._tag).toBe("ElectionConfigError")
      expect(error.message).toContain("requestTimeout")
    }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer)),
  )
})
