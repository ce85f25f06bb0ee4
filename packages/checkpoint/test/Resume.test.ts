import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as fc from "fast-check"
import type * as Checkpoint from "../src/Checkpoint.ts"
import * as Message from "../src/Message.ts"
import * as Proof from "../src/Proof.ts"
import * as Resume from "../src/Resume.ts"

const secret = Proof.newSecret()
const sessionId = "s-42"

const checkpoint: Checkpoint.Checkpoint = {
  version: 1,
  backend: "session",
  bundleId: sessionId,
  serverId: "a",
  takenAtMs: 0,
  generation: 4,
  protocol: "takeover-stream/1",
  resumeCounter: 3,
  layers: {},
  connections: [
    {
      name: "control",
      role: "control",
      transport: "tcp",
      source: { host: "127.0.0.1", port: 1 },
      destination: { host: "127.0.0.1", port: 2 },
      initialSeqSource: 100,
      initialSeqDestination: 900,
      currentSeqSource: 130,
      currentSeqDestination: 950,
      ackedSeqSource: 120,
      sendHorizonSeq: 130,
      coverage: "window",
      window: new Uint8Array(10).map((_, i) => i),
      layers: {},
    },
    {
      name: "data",
      role: "data",
      transport: "tcp",
      source: { host: "127.0.0.1", port: 1 },
      destination: { host: "127.0.0.1", port: 3 },
      initialSeqSource: 5_000,
      initialSeqDestination: 7_000,
      currentSeqSource: 9_000,
      currentSeqDestination: 7_000,
      ackedSeqSource: 8_000,
      sendHorizonSeq: 10_000,
      coverage: "source",
      object: { id: "big", firstByteSeq: 5_001, size: 100_000 },
      layers: {},
    },
  ],
}

const request = (
  counter: number,
  acks: Record<string, number>,
  key = secret,
  id = sessionId,
): Resume.Request => ({
  sessionId: id,
  counter,
  acks,
  proof: Proof.sign(key, id, counter, acks),
})

describe("Resume.evaluate", () => {
  it("within the checkpoint: resumes every connection at the exact byte and uses the counter up", () => {
    const plan = Result.getOrThrow(
      Resume.evaluate(checkpoint, secret, request(4, { control: 125, data: 9_500 })),
    )
    expect(plan.resumes.control).toEqual({
      resumeSeq: 125,
      resendBytes: 5,
      objectOffset: undefined,
    })
    expect(plan.resumes.data).toEqual({ resumeSeq: 9_500, resendBytes: 0, objectOffset: 4_499 })
    expect(plan.checkpoint.resumeCounter).toBe(4)
    expect(Array.from(plan.checkpoint.connections[0]!.window ?? [])).toEqual([5, 6, 7, 8, 9])
    expect(plan.checkpoint.connections[1]).toMatchObject({
      ackedSeqSource: 9_500,
      currentSeqSource: 9_500,
    })
  })

  const refusal = (r: Resume.Request, key = secret) => {
    const outcome = Resume.evaluate(checkpoint, key, r)
    return Result.isFailure(outcome) ? outcome.failure.reason : "accepted"
  }

  it("refuses too old, beyond sent, wrong session, forged and replayed requests", () => {
    expect(refusal(request(4, { control: 119, data: 9_000 }))).toBe("TooOld")
    expect(refusal(request(4, { control: 125, data: 5_000 }))).toBe("TooOld")
    expect(refusal(request(4, { control: 131, data: 9_000 }))).toBe("BeyondSent")
    expect(refusal(request(4, { control: 125, data: 10_001 }))).toBe("BeyondSent")
    expect(refusal(request(4, { control: 125, data: 9_000 }, secret, "s-43"))).toBe("WrongSession")
    expect(refusal(request(4, { control: 125, data: 9_000 }, Proof.newSecret()))).toBe(
      "WrongSession",
    )
    expect(refusal(request(4, { control: 125 }))).toBe("WrongSession")
    expect(refusal(request(4, { control: 125, data: 9_000, extra: 1 }))).toBe("WrongSession")
    expect(refusal(request(3, { control: 125, data: 9_000 }))).toBe("ReplayedProof")
    expect(refusal(request(0, { control: 125, data: 9_000 }))).toBe("WrongSession")
    // A captured proof with an altered acknowledgement does not verify.
    const captured = request(5, { control: 125, data: 9_000 })
    expect(refusal({ ...captured, acks: { control: 125, data: 9_999 } })).toBe("WrongSession")
  })

  it("random requests are refused or accepted, never throw, and an accepted one verifies", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -5, max: 10 }),
        fc.dictionary(
          fc.constantFrom("control", "data", "x"),
          fc.integer({ min: -10, max: 20_000 }),
        ),
        fc.uint8Array({ minLength: 0, maxLength: 40 }),
        (counter, acks, proof) => {
          const outcome = Resume.evaluate(checkpoint, secret, { sessionId, counter, acks, proof })
          expect(Result.isFailure(outcome)).toBe(true)
        },
      ),
      { numRuns: 500 },
    )
  })
})

describe("Message codec", () => {
  it("round-trips every message", () => {
    const messages: Array<Message.Message> = [
      { _tag: "Data", seq: 2 ** 52 + 7, bytes: new Uint8Array([1, 2, 3]) },
      { _tag: "Ack", ack: 123_456_789 },
      { _tag: "Open", protocol: "p/1", channels: [{ name: "control", initialSeq: 5 }] },
      { _tag: "Resume", sessionId, counter: 2, acks: { control: 9 }, proof: new Uint8Array(32) },
      { _tag: "Refused", reason: "TooOld", detail: "x" },
      { _tag: "Handoff", to: "tcp://127.0.0.1:1" },
      { _tag: "Resumed", receiveNext: { data: 7 }, window: 128 * 1024 },
      { _tag: "Attached", window: 1 },
      { _tag: "Attached" },
      {
        _tag: "Opened",
        sessionId,
        secret: new Uint8Array(32),
        channels: [{ name: "data", initialSeq: 3 }],
        window: 4096,
        object: { id: "movie.mp4", size: 2 ** 40 + 1 },
      },
    ]
    for (const message of messages) {
      const bytes = Result.getOrThrow(Message.codec.encode(message))
      expect(Result.getOrThrow(Message.codec.decode(bytes))).toEqual(message)
    }
  })

  it("a receiver acknowledges at least every half window of its sender", () => {
    expect(Message.ackInterval(256 * 1024, undefined)).toBe(256 * 1024)
    expect(Message.ackInterval(256 * 1024, 128 * 1024)).toBe(64 * 1024)
    expect(Message.ackInterval(256 * 1024, 4 * 1024 * 1024)).toBe(256 * 1024)
    expect(Message.ackInterval(256 * 1024, 1)).toBe(1)
  })

  it("an Opened's object (id and size) decodes only when valid: fuzzed, a typed error otherwise", () => {
    const frame = (object: unknown) =>
      new Uint8Array([
        3,
        ...new TextEncoder().encode(
          JSON.stringify({
            _tag: "Opened",
            sessionId,
            secret: "AAAA",
            channels: [{ name: "data", initialSeq: 1 }],
            object,
          }),
        ),
      ])
    const valid = (object: unknown) =>
      typeof object === "object" &&
      object !== null &&
      !Array.isArray(object) &&
      "id" in object &&
      "size" in object &&
      typeof object.id === "string" &&
      object.id.length <= 1024 &&
      Number.isSafeInteger(object.size) &&
      (object.size as number) >= 0
    fc.assert(
      fc.property(
        fc.oneof(
          fc.record({ id: fc.string({ maxLength: 1100 }), size: fc.double() }),
          fc.record({ id: fc.string(), size: fc.integer({ min: -5, max: 2 ** 31 }) }),
          fc.record({ id: fc.anything(), size: fc.anything() }, { requiredKeys: [] }),
          fc.anything(),
        ),
        (object) => {
          const decoded = Message.codec.decode(frame(object))
          // What the frame carries: JSON drops an undefined key and writes -0 as 0.
          const wire = (JSON.parse(JSON.stringify({ object })) as { object?: unknown }).object
          if (wire === undefined) expect(Result.getOrThrow(decoded)).not.toHaveProperty("object")
          else if (valid(wire)) {
            const message = Result.getOrThrow(decoded)
            expect(message._tag === "Opened" && message.object).toEqual({
              id: (wire as { id: string }).id,
              size: (wire as { size: number }).size,
            })
          } else expect(decoded).toMatchObject({ failure: { _tag: "CodecError" } })
        },
      ),
      { numRuns: 1_000 },
    )
    for (const bad of [
      { id: "x", size: -1 },
      { id: "x", size: 1.5 },
      { id: "x", size: 2 ** 53 },
      { id: "x".repeat(1025), size: 1 },
      { id: 7, size: 1 },
      { size: 1 },
      "big",
    ])
      expect(Message.codec.decode(frame(bad)), JSON.stringify(bad)).toMatchObject({
        failure: { _tag: "CodecError" },
      })
  })

  it("fuzzed frames decode to a typed error or a valid message, never a throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const decoded = Message.codec.decode(bytes)
        if (Result.isFailure(decoded)) expect(decoded.failure._tag).toBe("CodecError")
        else
          expect([
            "Data",
            "Ack",
            "Open",
            "Opened",
            "Resume",
            "Resumed",
            "Attach",
            "Attached",
            "Refused",
            "Handoff",
            "Finish",
          ]).toContain(decoded.success._tag)
      }),
      { numRuns: 2_000 },
    )
    for (const bad of [
      [],
      [1, 0],
      [2, 0, 0, 0, 0, 0, 0, 0, 0, 9],
      [3, 123],
      [9],
      [1, 255, 255, 255, 255, 255, 255, 255, 255],
    ]) {
      expect(Message.codec.decode(new Uint8Array(bad))).toMatchObject({
        failure: { _tag: "CodecError" },
      })
    }
  })
})
