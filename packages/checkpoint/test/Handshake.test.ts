/**
 * The open and resume steps the three protocols share (`internal/handshake.ts`): which `Open`
 * a server takes, what a takeover counts and tells, and how a client takes a refusal.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import * as Handshake from "../src/internal/handshake.ts"
import * as Metrics from "../src/Metrics.ts"
import type { ServerEvent } from "../src/ObjectSession.ts"

const open = (channels: ReadonlyArray<{ name: string; initialSeq: number }>) => ({
  _tag: "Open" as const,
  protocol: "test",
  channels,
})

describe("Handshake", () => {
  it("a server takes an Open that names its one channel, and no other", () => {
    expect(Handshake.soleChannel(open([{ name: "data", initialSeq: 7 }]), "data")).toBe(7)
    expect(Handshake.soleChannel(open([{ name: "control", initialSeq: 7 }]), "data")).toBe(
      undefined,
    )
    expect(
      Handshake.soleChannel(
        open([
          { name: "data", initialSeq: 7 },
          { name: "other", initialSeq: 9 },
        ]),
        "data",
      ),
    ).toBe(undefined)
    expect(Handshake.soleChannel(open([]), "data")).toBe(undefined)
  })

  it("new sessions get ids, secrets and sequence numbers of their own", () => {
    const a = Handshake.newSession()
    const b = Handshake.newSession()
    expect(a.sessionId).not.toBe(b.sessionId)
    expect(a.secret).not.toEqual(b.secret)
    expect(Number.isSafeInteger(a.isn)).toBe(true)
  })

  it.effect(
    "a takeover is counted as resumed with its bytes resent, and told to the server's events",
    () =>
      Effect.gen(function* () {
        const resumed = Metric.withAttributes(Metrics.takeovers, { outcome: "resumed" })
        const before = (yield* Metric.value(resumed)).count
        const resentBefore = (yield* Metric.value(Metrics.bytesResent)).count
        const told: Array<ServerEvent> = []
        yield* Handshake.tookOver((event) => Effect.sync(() => told.push(event)), {
          sessionId: "s",
          offset: 10,
          bytesResent: 300,
        })
        expect((yield* Metric.value(resumed)).count - before).toBe(1)
        expect((yield* Metric.value(Metrics.bytesResent)).count - resentBefore).toBe(300)
        expect(told).toEqual([{ _tag: "TakenOver", sessionId: "s", offset: 10, bytesResent: 300 }])
      }),
  )

  it.effect(
    "a client leaves a server that does not hold the session or is full, and fails on any other refusal",
    () =>
      Effect.gen(function* () {
        const close = Effect.succeed("closed" as const)
        for (const reason of ["Owned", "Overloaded"] as const) {
          expect(
            yield* Handshake.refused({ _tag: "Refused", reason, detail: "d" }, "s", close),
          ).toBe("closed")
        }
        const error = yield* Effect.flip(
          Handshake.refused(
            { _tag: "Refused", reason: "WrongSession", detail: "no" },
            undefined,
            close,
          ),
        )
        expect(error).toMatchObject({ reason: "WrongSession", sessionId: "", detail: "no" })
        expect(Handshake.attemptsExhausted(3, "s")).toMatchObject({
          _tag: "TakeoverRefused",
          reason: "AttemptsExhausted",
          sessionId: "s",
          detail: "3 connection attempts",
        })
      }),
  )
})
