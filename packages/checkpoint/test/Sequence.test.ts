import { describe, expect, it } from "@effect/vitest"
import * as Sequence from "../src/Sequence.ts"

describe("Sequence", () => {
  it("a sender is bounded by its window and its horizon", () => {
    let s = Sequence.sender(1_000, 100, 1_150)
    expect(Sequence.sendable(s, 500)).toBe(100)
    s = Sequence.sent(s, 100)
    expect(Sequence.sendable(s, 500)).toBe(0)
    expect(() => Sequence.sent(s, 1)).toThrow()
    const acked = Sequence.acknowledge(s, 1_060)
    expect(acked).toMatchObject({ _tag: "Advanced", released: 60 })
    if (acked._tag !== "Advanced") return
    s = acked.state
    // The window would allow 60 more; the horizon only 50.
    expect(Sequence.sendable(s, 500)).toBe(50)
    s = Sequence.extendHorizon(s, 2_000)
    expect(Sequence.sendable(s, 500)).toBe(60)
    expect(Sequence.extendHorizon(s, 1_500).horizon).toBe(2_000)
  })

  it("late acknowledgements change nothing; acknowledgements of unsent bytes are refused", () => {
    const s = Sequence.sent(Sequence.sender(10, 1_000), 50)
    expect(Sequence.acknowledge(s, 10)).toEqual({ _tag: "Stale" })
    expect(Sequence.acknowledge(s, 61)).toEqual({ _tag: "BeyondSent", ack: 61, next: 60 })
    expect(Sequence.acknowledge(s, Number.NaN)._tag).toBe("BeyondSent")
  })

  it("rewinding after a takeover sends again from the acknowledgement", () => {
    const s = Sequence.sent(Sequence.sender(10, 1_000), 50)
    expect(Sequence.rewind(s, 40)).toMatchObject({ acked: 40, next: 40 })
    expect(() => Sequence.rewind(s, 61)).toThrow()
    expect(() => Sequence.rewind(s, 9)).toThrow()
  })

  it("a receiver delivers each byte once, in order", () => {
    let r = Sequence.receiver(500)
    const first = Sequence.receive(r, 500, 10)
    expect(first).toEqual({
      _tag: "Deliver",
      state: { initialSeq: 500, next: 510 },
      offset: 0,
      length: 10,
    })
    if (first._tag !== "Deliver") return
    r = first.state
    expect(Sequence.receive(r, 500, 10)).toEqual({ _tag: "Duplicate" })
    expect(Sequence.receive(r, 505, 10)).toMatchObject({ _tag: "Deliver", offset: 5, length: 5 })
    expect(Sequence.receive(r, 511, 10)).toEqual({ _tag: "Gap", expected: 510, seq: 511 })
  })
})
