/**
 * Schema-decoded configuration: defaults derived from the heartbeat interval, durations as
 * `Duration.Input`, a clear typed refusal for bad or unsafe values, and no throw on any input.
 */
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import fc from "fast-check"
import * as Config from "../src/Config.ts"
import { PoolInvalidConfig } from "../src/Machine.ts"

const reason = (result: Result.Result<unknown, PoolInvalidConfig>): string => {
  if (Result.isSuccess(result)) throw new Error("expected a refusal")
  expect(result.failure).toBeInstanceOf(PoolInvalidConfig)
  return result.failure.reason
}

describe("config", () => {
  it("derives every timing from the heartbeat interval, and takes overrides as Duration.Input", () => {
    expect(Result.getOrThrow(Config.decodeServer({}))).toEqual({
      timing: {
        heartbeatIntervalMs: 200,
        followerTimeoutMs: 1_000,
        checkTimeoutMs: 400,
        leaderLeaseMs: 700,
        downAfterMs: 800,
        electionStaggerMs: 300,
        leaseMs: 6_000,
      },
      clientsPerServerMax: 10_000,
      seatsPerClientMax: 64,
      pendingReservationsMax: 1_000,
      messageBytesMax: 8_192,
      shareSeatsMax: 16,
      clientReceiveBufferBytes: 4 * 1024 * 1024,
    })
    const fast = Result.getOrThrow(
      Config.decodeServer({
        heartbeatInterval: "100 millis",
        lease: "5 seconds",
        seatsPerClientMax: 4,
      }),
    )
    expect(fast.timing).toMatchObject({
      heartbeatIntervalMs: 100,
      followerTimeoutMs: 500,
      leaseMs: 5_000,
    })
    expect(fast.seatsPerClientMax).toBe(4)
    expect(Result.getOrThrow(Config.decodeClient({ heartbeatInterval: 300 }))).toEqual({
      heartbeatIntervalMs: 300,
      retryIntervalMs: 300,
      minRetryIntervalMs: 50,
      missLimit: 3,
      seats: 1,
    })
  })

  it("refuses bad or unsafe values with a message naming them", () => {
    expect(reason(Config.decodeServer({ heartbeatInterval: "soon" }))).toContain("not a duration")
    expect(reason(Config.decodeServer({ lease: -5 }))).toContain("lease")
    expect(reason(Config.decodeServer({ seatsPerClientMax: 0 }))).toContain("seatsPerClientMax")
    expect(reason(Config.decodeServer({ unknownKey: 1, heartbeatInterval: [] }))).toContain(
      "heartbeatInterval",
    )
    // A leader lease past the follower time-out would let two leaders grant at once.
    expect(
      reason(Config.decodeServer({ leaderLease: "2 seconds", followerTimeout: "1 second" })),
    ).toContain("leaderLeaseMs must be below followerTimeoutMs")
    expect(
      reason(Config.decodeServer({ heartbeatInterval: "1 second", lease: "1 second" })),
    ).toContain("lease must be above")
    expect(reason(Config.decodeClient({ retryInterval: "1 second" }))).toContain("retryInterval")
    expect(reason(Config.decodeClient({ missLimit: 1.5 }))).toContain("missLimit")
    expect(reason(Config.decodeClient({ heartbeatInterval: "0 millis" }))).toMatch(
      /positive duration[\s\S]*heartbeatInterval/,
    )
  })

  it("any input decodes to a config or a PoolInvalidConfig, never a throw", () => {
    const value = fc.oneof(
      fc.anything(),
      fc.string(),
      fc.double(),
      fc.constantFrom("1 second", "0 millis", "Infinity"),
    )
    const input = fc.oneof(
      fc.anything(),
      fc.record(
        { heartbeatInterval: value, lease: value, leaderLease: value, clientsPerServerMax: value },
        { requiredKeys: [] },
      ),
    )
    fc.assert(
      fc.property(input, (anything) => {
        const results: Array<Result.Result<unknown, PoolInvalidConfig>> = [
          Config.decodeServer(anything),
          Config.decodeClient(anything),
        ]
        for (const result of results) {
          if (Result.isFailure(result)) expect(result.failure).toBeInstanceOf(PoolInvalidConfig)
        }
      }),
      { numRuns: 2_000 },
    )
  })
})
