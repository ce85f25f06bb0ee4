import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as fc from "fast-check"
import * as Checkpoint from "../src/Checkpoint.ts"

const connection = (
  overrides: Partial<Checkpoint.ConnectionState> = {},
): Checkpoint.ConnectionState => ({
  name: "data",
  role: "data",
  transport: "tcp",
  source: { host: "127.0.0.1", port: 9000 },
  destination: { host: "127.0.0.1", port: 50000 },
  initialSeqSource: 1_000,
  initialSeqDestination: 7_000,
  currentSeqSource: 1_500,
  currentSeqDestination: 7_010,
  ackedSeqSource: 1_200,
  sendHorizonSeq: 2_000,
  coverage: "source",
  object: { id: "movie", firstByteSeq: 1_001, size: 5_000 },
  layers: {},
  ...overrides,
})

const sample = (connections = [connection()]): Checkpoint.Checkpoint => ({
  version: 1,
  backend: "session",
  bundleId: "s-1",
  serverId: "a",
  takenAtMs: 1_700_000_000_000,
  generation: 3,
  protocol: "takeover-stream/1",
  resumeCounter: 2,
  connections,
  layers: { app: new Uint8Array([1, 2, 3]) },
})

describe("Checkpoint", () => {
  it("round-trips through its encoding, byte blocks included", () => {
    const { object: _, ...withoutObject } = connection()
    const control: Checkpoint.ConnectionState = {
      ...withoutObject,
      name: "control",
      role: "control",
      coverage: "window",
      ackedSeqSource: 1_400,
      sendHorizonSeq: 1_500,
      window: new Uint8Array(100).fill(7),
      layers: { session: new Uint8Array([9]) },
    }
    const checkpoint = sample([connection(), control])
    const bytes = Result.getOrThrow(Checkpoint.encode(checkpoint))
    expect(Result.getOrThrow(Checkpoint.decode(bytes))).toEqual(checkpoint)
  })

  it("compares an acknowledgement with what the checkpoint covers (source coverage)", () => {
    const c = connection()
    expect(Checkpoint.compare(c, 1_200)).toEqual(
      Result.succeed({ resumeSeq: 1_200, resendBytes: 300, objectOffset: 199 }),
    )
    // Sent after the checkpoint, below the horizon: regenerated from the object.
    expect(Checkpoint.compare(c, 1_800)).toEqual(
      Result.succeed({ resumeSeq: 1_800, resendBytes: 0, objectOffset: 799 }),
    )
    expect(
      Result.isFailure(Checkpoint.compare(c, 2_001)) && Checkpoint.compare(c, 2_001),
    ).toMatchObject({
      failure: { reason: "BeyondSent" },
    })
    expect(Checkpoint.compare(c, 1_000)).toMatchObject({ failure: { reason: "TooOld" } })
    expect(Checkpoint.compare(c, -1)).toMatchObject({ failure: { reason: "BeyondSent" } })
    expect(Checkpoint.compare(c, 1.5)).toMatchObject({ failure: { reason: "BeyondSent" } })
  })

  it("a window checkpoint covers exactly acked..current", () => {
    const c = connection({
      coverage: "window",
      ackedSeqSource: 1_400,
      sendHorizonSeq: 1_500,
      window: new Uint8Array(100).map((_, i) => i),
    })
    expect(Checkpoint.compare(c, 1_399)).toMatchObject({ failure: { reason: "TooOld" } })
    expect(Checkpoint.compare(c, 1_501)).toMatchObject({ failure: { reason: "BeyondSent" } })
    const resume = Result.getOrThrow(Checkpoint.compare(c, 1_450))
    expect(Array.from(Checkpoint.windowFrom(c, resume.resumeSeq).subarray(0, 2))).toEqual([50, 51])
  })

  it("rejects inconsistent checkpoints at decode", () => {
    const bad = [
      sample([connection({ ackedSeqSource: 1_600 })]),
      sample([connection({ currentSeqSource: 2_500 })]),
      sample([connection(), connection()]),
      sample([
        connection({
          coverage: "window",
          ackedSeqSource: 1_400,
          sendHorizonSeq: 1_500,
          window: new Uint8Array(3),
        }),
      ]),
    ]
    for (const checkpoint of bad) {
      const decoded = Checkpoint.decode(Result.getOrThrow(Checkpoint.encode(checkpoint)))
      expect(decoded).toMatchObject({ failure: { _tag: "CheckpointDecodeError" } })
    }
  })

  it("decoding random or mutated bytes gives a typed error, never a throw", () => {
    const valid = Result.getOrThrow(Checkpoint.encode(sample()))
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2_000 }), (bytes) => {
        const decoded = Checkpoint.decode(bytes)
        expect(Result.isFailure(decoded) ? decoded.failure._tag : "ok").toBe(
          "CheckpointDecodeError",
        )
      }),
      { numRuns: 500 },
    )
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: valid.length - 1 }),
        fc.integer({ min: 0, max: 255 }),
        (at, byte) => {
          const mutated = valid.slice()
          mutated[at] = byte
          const decoded = Checkpoint.decode(mutated)
          if (Result.isSuccess(decoded))
            expect(Checkpoint.inconsistency(decoded.success)).toBeUndefined()
          else expect(decoded.failure._tag).toBe("CheckpointDecodeError")
        },
      ),
      { numRuns: 500 },
    )
  })

  it("refuses to encode a checkpoint above its bound", () => {
    const huge = sample()
    const tooLarge = {
      ...huge,
      layers: { app: new Uint8Array(Checkpoint.limits.checkpointBytesMax) },
    }
    expect(Checkpoint.encode(tooLarge)).toMatchObject({ failure: { _tag: "CheckpointTooLarge" } })
  })
})
