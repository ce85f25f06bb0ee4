import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Heap from "../src/Heap.ts"

describe("MinHeap", () => {
  it("property: pops in the caller's order, ties in insertion order when the order says so", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 20 }), { maxLength: 200 }), (times) => {
        const items = times.map((atMs, seq) => ({ atMs, seq }))
        const heap = new Heap.MinHeap<{ atMs: number; seq: number }>(
          (a, b) => a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq),
        )
        for (const item of items) heap.push(item)
        expect(heap.size).toBe(items.length)
        expect(heap.peek()).toEqual([...items].sort((a, b) => a.atMs - b.atMs || a.seq - b.seq)[0])
        const popped = []
        for (let item = heap.pop(); item !== undefined; item = heap.pop()) popped.push(item)
        expect(popped).toEqual([...items].sort((a, b) => a.atMs - b.atMs || a.seq - b.seq))
        expect(heap.size).toBe(0)
      }),
      { numRuns: 200 },
    )
  })
})
