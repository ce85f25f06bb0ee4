/**
 * The key-value state machine's snapshot form: what a backup or a new master receives when
 * the log it needs was compacted, and what the write-ahead log keeps. It round-trips, and
 * bad bytes decode to a typed failure, never a throw.
 */
import { describe, expect, it } from "@effect/vitest"
import { Replication } from "@understudy/staggered-election"
import { HashMap, Result } from "effect"
import * as fc from "fast-check"
import * as Kv from "../src/kv.ts"

const codec = Replication.snapshotCodec(Kv.StateSchema, Kv.ResultSchema)

describe("key-value snapshots", () => {
  it("round-trip: the state, every client's last answer, the position and epoch", () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string(), fc.string()),
        fc.dictionary(fc.string(), fc.option(fc.string(), { nil: null })),
        fc.nat(),
        fc.nat(),
        (entries, answers, seq, epoch) => {
          let state = Kv.initial
          for (const [key, value] of Object.entries(entries)) state = HashMap.set(state, key, value)
          const clients = HashMap.fromIterable(
            Object.entries(answers).map(
              ([id, previous], i) => [id, { requestId: i + 1, result: { previous } }] as const,
            ),
          )
          const decoded = codec.decode(codec.encode({ seq, epoch, state, clients }))
          if (Result.isFailure(decoded)) throw new Error(String(decoded.failure))
          expect(decoded.success.seq).toBe(seq)
          expect(decoded.success.epoch).toBe(epoch)
          expect(Object.fromEntries(HashMap.toEntries(decoded.success.state))).toEqual(
            Object.fromEntries(HashMap.toEntries(state)),
          )
          expect(HashMap.size(decoded.success.clients)).toBe(HashMap.size(clients))
        },
      ),
      { numRuns: 200 },
    )
  })

  it("bad input decodes to a failure, never a throw", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (text) => {
        const decoded = codec.decode(text)
        expect(Result.isResult(decoded)).toBe(true)
      }),
      { numRuns: 1_000 },
    )
    expect(Result.isFailure(codec.decode('{"seq":1,"epoch":1,"state":[["k"]],"clients":[]}'))).toBe(
      true,
    )
  })
})
