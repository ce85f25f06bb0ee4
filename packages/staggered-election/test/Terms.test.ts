/**
 * Terms cannot be exhausted: whatever epochs forged messages from members' addresses carry,
 * and however time passes, a server that follows a master keeps a next term below `termMax`,
 * and an honest declaration at that next term is still acknowledged.
 */
import { describe, expect, it } from "@effect/vitest"
import { Machine as M } from "@understudy/machine"
import * as fc from "fast-check"
import * as Machine from "../src/Machine.ts"
import type * as Message from "../src/Message.ts"

type Req = { readonly add: number }
type Msg = Message.Message<Req>
type St = Machine.State<number, Req, number>

const servers = [1, 2, 3].map((i) => ({ id: `s${i}`, capacity: { cpu: 10 - i, bandwidthMbps: 1 } }))
const machine = Machine.make<number, Req, number>({
  servers,
  detectionPeriodMs: 100,
  inquiryTimeoutMs: 300,
  baseDelayMs: 50,
  initial: 0,
  apply: (state, request) => [state + request.add, state + request.add],
})

/** s3 follows s2 at term 3. */
const following = (): St => {
  const booted = machine.init({ self: "s3", peers: ["s1", "s2"], nowMs: 0 }).state
  const declare: Msg = { _tag: "Declare", epoch: Machine.epochOf(3, 2), index: 2 }
  const state = machine.step(booted, M.receive("s2", declare, 10)).state
  expect(state).toMatchObject({ role: "backup", master: "s2", term: 3 })
  return state
}

const forgedEpoch = fc.oneof(
  // Any term at all, up to and past `termMax`.
  fc
    .tuple(fc.integer({ min: 0, max: 2 ** 41 }), fc.constantFrom(1, 2))
    .map(([term, index]) => Machine.epochOf(term, index)),
  fc
    .tuple(
      fc.constantFrom(Machine.termMax - 1, Machine.termMax, Machine.termMax + 1),
      fc.constantFrom(1, 2),
    )
    .map(([term, index]) => Machine.epochOf(term, index)),
  fc.nat({ max: Number.MAX_SAFE_INTEGER }),
)
const forgedMessage = fc
  .tuple(fc.constantFrom("s1", "s2"), forgedEpoch, fc.constantFrom("Declare", "Revoke", "Probe"))
  .map(([from, epoch, tag]): [string, Msg] => {
    const index = from === "s1" ? 1 : 2
    switch (tag) {
      case "Declare":
        return [from, { _tag: "Declare", epoch, index }]
      case "Revoke":
        return [from, { _tag: "Revoke", epoch, index, revokedIndex: 3 }]
      default:
        return [
          from,
          { _tag: "Probe", epoch, index, seq: 1, master: from, row: {}, history: false },
        ]
    }
  })
// Up to a day between messages.
const pause = fc.nat({ max: 86_400_000 })

describe("terms under forged epochs", () => {
  it("a server always keeps a next term, and follows an honest declaration of it", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(forgedMessage, pause), { maxLength: 40 }), (script) => {
        let state = following()
        let nowMs = 10
        for (const [[from, message], waitMs] of script) {
          nowMs += waitMs
          state = machine.step(state, M.receive(from, message, nowMs)).state
          expect(state.term).toBeLessThan(Machine.termMax)
          expect(Machine.termOf(state.epoch)).toBeLessThan(Machine.termMax)
        }
        // The group's next term: s1 declares it; s3 acknowledges.
        const next = Machine.epochOf(state.term + 1, 1)
        const after = machine.step(
          state,
          M.receive("s1", { _tag: "Declare", epoch: next, index: 1 }, nowMs + 1),
        ).state
        expect(after).toMatchObject({ role: "backup", master: "s1", epoch: next })
      }),
      { numRuns: 500 },
    )
  })

  it("refuses a term beyond reach and reports it", () => {
    const state = following()
    const far = Machine.epochOf(3 + Machine.termReach + 1_000, 2)
    const result = machine.step(
      state,
      M.receive("s2", { _tag: "Declare", epoch: far, index: 2 }, 11),
    )
    expect(M.events(result.outputs)).toEqual([{ _tag: "Ignored", from: "s2", reason: "bad-epoch" }])
    expect(result.state).toStrictEqual(state)
    // Time makes more terms reachable: a second later the same term is within reach.
    const later = machine.step(
      state,
      M.receive("s2", { _tag: "Declare", epoch: far, index: 2 }, 10 + 1_000 + 1),
    )
    expect(later.state).toMatchObject({ role: "backup", master: "s2", epoch: far })
  })
})
