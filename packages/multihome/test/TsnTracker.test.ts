import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import type * as Chunk from "../src/Chunk.ts"
import { maxDuplicatesKept, TsnTracker } from "../src/TsnTracker.ts"

/** The naive model: every TSN received, as offsets from the initial TSN. */
class Model {
  readonly received = new Set<number>()
  duplicates: Array<number> = []
  readonly initial: number
  constructor(initial: number) {
    this.initial = initial
  }
  tsn(offset: number): number {
    return (this.initial + offset) >>> 0
  }
  receive(offset: number): "New" | "Duplicate" {
    if (this.received.has(offset)) {
      this.duplicates.push(this.tsn(offset))
      return "Duplicate"
    }
    this.received.add(offset)
    return "New"
  }
  /** Offset of the cumulative point from the initial TSN (−1: nothing yet). */
  cumulativeOffset(): number {
    let offset = -1
    while (this.received.has(offset + 1)) offset++
    return offset
  }
  gapBlocks(): Array<Chunk.GapAckBlock> {
    const cumulative = this.cumulativeOffset()
    const above = [...this.received].filter((o) => o > cumulative).sort((a, b) => a - b)
    const blocks: Array<Chunk.GapAckBlock> = []
    for (const offset of above) {
      const last = blocks[blocks.length - 1]
      const relative = offset - cumulative
      if (last !== undefined && last.end + 1 === relative)
        blocks[blocks.length - 1] = { start: last.start, end: relative }
      else blocks.push({ start: relative, end: relative })
    }
    return blocks
  }
}

describe("TsnTracker (RFC 9260 §6.2, §3.3.4)", () => {
  it("starts with the cumulative point one before the peer's Initial TSN", () => {
    expect(TsnTracker.create(100).cumulative).toBe(99)
    expect(TsnTracker.create(0).cumulative).toBe(0xffff_ffff)
    const tracker = TsnTracker.create(100)
    expect(tracker.hasGaps).toBe(false)
    expect(tracker.isReceived(99)).toBe(true)
    expect(tracker.isReceived(100)).toBe(false)
    expect(tracker.gapBlocks(10)).toEqual([])
  })

  it("advances over contiguous TSNs and jumps over a run once the hole fills", () => {
    const tracker = TsnTracker.create(1)
    expect(tracker.receive(1)).toBe("New")
    expect(tracker.cumulative).toBe(1)
    expect(tracker.receive(3)).toBe("New")
    expect(tracker.receive(4)).toBe("New")
    expect(tracker.receive(6)).toBe("New")
    expect(tracker.hasGaps).toBe(true)
    expect(tracker.highest).toBe(6)
    // §3.3.4: offsets from the cumulative TSN ack (1): 3–4 → 2–3, 6 → 5–5.
    expect(tracker.gapBlocks(10)).toEqual([
      { start: 2, end: 3 },
      { start: 5, end: 5 },
    ])
    expect(tracker.gapBlocks(1)).toEqual([{ start: 2, end: 3 }])
    expect(tracker.receive(2)).toBe("New")
    expect(tracker.cumulative).toBe(4)
    expect(tracker.gapBlocks(10)).toEqual([{ start: 2, end: 2 }])
    expect(tracker.receive(5)).toBe("New")
    expect(tracker.cumulative).toBe(6)
    expect(tracker.hasGaps).toBe(false)
  })

  it("merges a TSN that closes the hole between two runs", () => {
    const tracker = TsnTracker.create(10)
    for (const tsn of [12, 13, 15, 16]) tracker.receive(tsn)
    expect(tracker.gapCount).toBe(2)
    expect(tracker.receive(14)).toBe("New")
    expect(tracker.gapCount).toBe(1)
    expect(tracker.gapBlocks(4)).toEqual([{ start: 3, end: 7 }])
  })

  it("reports each duplicate arrival once, in the next SACK only (§3.3.4 Duplicate TSN)", () => {
    const tracker = TsnTracker.create(19)
    expect(tracker.receive(19)).toBe("New")
    expect(tracker.receive(19)).toBe("Duplicate")
    expect(tracker.receive(19)).toBe("Duplicate")
    expect(tracker.receive(25)).toBe("New")
    expect(tracker.receive(25)).toBe("Duplicate")
    expect(tracker.receive(3)).toBe("Duplicate") // long before the cumulative point
    expect(tracker.duplicateCount).toBe(4)
    expect(tracker.takeDuplicates(2)).toEqual([19, 19])
    // The list restarts after each SACK, even for what did not fit.
    expect(tracker.takeDuplicates(10)).toEqual([])
    expect(tracker.receive(19)).toBe("Duplicate")
    expect(tracker.takeDuplicates(10)).toEqual([19])
  })

  it("keeps at most maxDuplicatesKept duplicates between SACKs", () => {
    const tracker = TsnTracker.create(1)
    tracker.receive(1)
    for (let index = 0; index < maxDuplicatesKept + 10; index++) tracker.receive(1)
    expect(tracker.takeDuplicates(100_000).length).toBe(maxDuplicatesKept)
  })

  it("wraps at 2^32", () => {
    const tracker = TsnTracker.create(0xffff_fffe)
    expect(tracker.receive(0xffff_fffe)).toBe("New")
    expect(tracker.receive(1)).toBe("New")
    expect(tracker.gapBlocks(4)).toEqual([{ start: 3, end: 3 }])
    expect(tracker.receive(0xffff_ffff)).toBe("New")
    expect(tracker.receive(0)).toBe("New")
    expect(tracker.cumulative).toBe(1)
    expect(tracker.isReceived(0xffff_fff0)).toBe(true)
  })

  it("leaves out runs more than 65535 above the cumulative point (16-bit offsets)", () => {
    const tracker = TsnTracker.create(0)
    tracker.receive(5)
    tracker.receive(65_535 + 0xffff_ffff + 1) // offset 65536 from cumulative 0xffffffff
    tracker.receive(70_000)
    expect(tracker.gapCount).toBe(3)
    expect(tracker.gapBlocks(10)).toEqual([{ start: 6, end: 6 }])
  })

  it("handles thousands of outstanding TSNs in reverse order", () => {
    const tracker = TsnTracker.create(1000)
    for (let tsn = 5999; tsn >= 1001; tsn -= 2) tracker.receive(tsn)
    expect(tracker.gapCount).toBe(2500)
    for (let tsn = 5998; tsn >= 1000; tsn -= 2) expect(tracker.receive(tsn)).toBe("New")
    expect(tracker.cumulative).toBe(5999)
    expect(tracker.hasGaps).toBe(false)
  })

  it("matches a naive set model under random arrival orders, across the wrap (property)", () => {
    const scenario = fc.record({
      initial: fc.oneof(
        fc.integer({ min: 0xffff_ff00, max: 0xffff_ffff }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
      ),
      arrivals: fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 400, size: "max" }),
      limit: fc.integer({ min: 0, max: 8 }),
    })
    fc.assert(
      fc.property(scenario, ({ initial, arrivals, limit }) => {
        const tracker = TsnTracker.create(initial)
        const model = new Model(initial)
        for (const offset of arrivals) {
          expect(tracker.receive(model.tsn(offset))).toBe(model.receive(offset))
          expect(tracker.cumulative).toBe(model.tsn(model.cumulativeOffset()))
        }
        const blocks = model.gapBlocks()
        expect(tracker.gapBlocks(100)).toEqual(blocks)
        expect(tracker.gapBlocks(limit)).toEqual(blocks.slice(0, limit))
        expect(tracker.hasGaps).toBe(blocks.length > 0)
        for (let offset = -3; offset <= 303; offset++) {
          expect(tracker.isReceived(model.tsn(offset))).toBe(
            offset < 0 || model.received.has(offset),
          )
        }
        expect(tracker.takeDuplicates(1000)).toEqual(model.duplicates.slice(0, 1000))
      }),
      { numRuns: 200 },
    )
  })

  it("restores from a snapshot to an equal, independent tracker (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.array(fc.integer({ min: 0, max: 100 }), { maxLength: 120, size: "max" }),
        fc.integer({ min: 0, max: 100 }),
        (initial, arrivals, next) => {
          const tracker = TsnTracker.create(initial)
          for (const offset of arrivals) tracker.receive((initial + offset) >>> 0)
          const snapshot = tracker.snapshot()
          const restored = TsnTracker.restore(structuredClone(snapshot))
          expect(restored.snapshot()).toEqual(snapshot)
          // Both continue identically; neither sees the other's changes.
          const tsn = (initial + next) >>> 0
          expect(restored.receive(tsn)).toBe(tracker.receive(tsn))
          expect(restored.snapshot()).toEqual(tracker.snapshot())
          const before = tracker.snapshot()
          restored.receive((tsn + 1) >>> 0)
          restored.receive((tsn + 5) >>> 0)
          expect(tracker.snapshot()).toEqual(before)
        },
      ),
      { numRuns: 200 },
    )
  })
})

describe("TsnTracker.skipTo (FORWARD TSN, takeover resynchronisation)", () => {
  it("moves the cumulative point, forgets runs below it and swallows a run touching it", () => {
    const tracker = TsnTracker.create(100)
    tracker.receive(100)
    tracker.receive(103)
    tracker.receive(104)
    tracker.receive(110)
    expect(tracker.skipTo(102)).toBe(true)
    // 103–104 now follow the point directly.
    expect(tracker.cumulative).toBe(104)
    expect(tracker.gapBlocks(10)).toEqual([{ start: 6, end: 6 }])
    expect(tracker.skipTo(111)).toBe(true)
    expect(tracker.cumulative).toBe(111)
    expect(tracker.hasGaps).toBe(false)
    expect(tracker.skipTo(50)).toBe(false)
    expect(tracker.cumulative).toBe(111)
    expect(tracker.receive(111)).toBe("Duplicate")
    expect(tracker.receive(112)).toBe("New")
  })

  it("joins a run that starts below the new point and ends above it, across the wrap", () => {
    const tracker = TsnTracker.create(0xffff_fff0)
    tracker.receive(0xffff_fffe)
    tracker.receive(0xffff_ffff)
    tracker.receive(0)
    tracker.receive(1)
    expect(tracker.skipTo(0xffff_ffff)).toBe(true)
    expect(tracker.cumulative).toBe(1)
    expect(tracker.hasGaps).toBe(false)
  })
})

describe("TsnTracker.skipTo against the naive model", () => {
  it("matches the model with every TSN up to the skip point received (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 80 }),
        fc.integer({ min: -5, max: 320 }),
        fc.array(fc.integer({ min: 0, max: 400 }), { maxLength: 20 }),
        (initial, before, skip, after) => {
          const tracker = TsnTracker.create(initial)
          const model = new Model(initial)
          for (const offset of before) tracker.receive(model.tsn(offset))
          for (const offset of before) model.received.add(offset)
          const moved = tracker.skipTo(model.tsn(skip))
          const wasCumulative = model.cumulativeOffset()
          expect(moved).toBe(skip > wasCumulative)
          for (let offset = 0; offset <= skip; offset++) model.received.add(offset)
          for (const offset of after) {
            const expected = model.received.has(offset) ? "Duplicate" : "New"
            model.received.add(offset)
            expect(tracker.receive(model.tsn(offset))).toBe(expected)
          }
          expect(tracker.cumulative).toBe(model.tsn(model.cumulativeOffset()))
          expect(tracker.gapBlocks(1000)).toEqual(model.gapBlocks())
        },
      ),
    )
  })
})
