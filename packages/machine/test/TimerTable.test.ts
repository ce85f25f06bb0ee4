import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { TimerTable } from "../src/TimerTable.ts"

/** Pops every due timer at `nowMs`, in order. */
const drain = (table: TimerTable<string>, nowMs: number): Array<string> => {
  const fired: Array<string> = []
  for (let key = table.due(nowMs); key !== undefined; key = table.due(nowMs)) fired.push(key)
  return fired
}

describe("TimerTable", () => {
  it("pops due timers earliest first, and only those due", () => {
    const table = new TimerTable<string>()
    table.set("c", 30)
    table.set("a", 10)
    table.set("b", 20)
    expect(table.next()).toBe(10)
    expect(drain(table, 20)).toEqual(["a", "b"])
    expect(table.next()).toBe(30)
    expect(table.size).toBe(1)
    expect(drain(table, 29)).toEqual([])
    expect(drain(table, 30)).toEqual(["c"])
    expect(table.next()).toBeUndefined()
  })

  it("fires timers due at the same time in the order they were armed, or by the caller's order", () => {
    const table = new TimerTable<string>()
    table.set("second", 5)
    table.set("first", 5, -1)
    table.set("third", 5)
    expect(drain(table, 5)).toEqual(["first", "second", "third"])
  })

  it("re-arming replaces the deadline, earlier or later, and puts the timer after those armed before", () => {
    const table = new TimerTable<string>()
    table.set("a", 10)
    table.set("b", 10)
    table.set("a", 50)
    expect(table.dueOf("a")).toBe(50)
    expect(drain(table, 49)).toEqual(["b"])
    table.set("a", 5)
    table.set("c", 5)
    table.set("a", 5)
    expect(drain(table, 100)).toEqual(["c", "a"])
    expect(table.size).toBe(0)
  })

  it("a cancelled timer never fires, and cancelling says whether it was armed", () => {
    const table = new TimerTable<string>()
    table.set("a", 10)
    table.set("b", 20)
    expect(table.cancel("a")).toBe(true)
    expect(table.cancel("a")).toBe(false)
    expect(table.next()).toBe(20)
    table.set("c", 1)
    table.set("d", 2)
    table.cancelWhere((key) => key === "c" || key === "d")
    expect(drain(table, 100)).toEqual(["b"])
    table.set("e", 1)
    table.clear()
    expect(table.next()).toBeUndefined()
    expect(drain(table, 100)).toEqual([])
  })

  it("re-arming one timer a million times keeps the heap the size of the armed timers", () => {
    const table = new TimerTable<string>()
    table.set("other", 2_000_000)
    for (let ms = 0; ms < 1_000_000; ms++) table.set("rtx", ms + 200)
    // The heap itself is private: what it holds shows as how many stale entries `peek` skips,
    // which a rebuild bounds; the observable contract is the order and the size.
    expect(table.size).toBe(2)
    expect(drain(table, 1_000_198)).toEqual([])
    expect(drain(table, 1_000_199)).toEqual(["rtx"])
    expect(table.next()).toBe(2_000_000)
    expect((table as unknown as { heap: { size: number } }).heap.size).toBeLessThanOrEqual(
      2 + 2 + 64,
    )
  })

  // The table against the obvious model: a map of (deadline, order), scanned in full.
  type Op =
    | { readonly _tag: "Set"; readonly key: string; readonly afterMs: number }
    | { readonly _tag: "Cancel"; readonly key: string }
    | { readonly _tag: "Advance"; readonly ms: number }

  const key = fc.constantFrom("a", "b", "c", "d", "e", "f", "g", "h")
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ _tag: fc.constant("Set" as const), key, afterMs: fc.integer({ min: 0, max: 50 }) }),
    fc.record({ _tag: fc.constant("Cancel" as const), key }),
    fc.record({ _tag: fc.constant("Advance" as const), ms: fc.integer({ min: 0, max: 30 }) }),
  )

  it("fires exactly what a naive scan of the armed timers fires, in the same order (seeded)", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
        const table = new TimerTable<string>()
        const model = new Map<string, { dueMs: number; order: number }>()
        let order = 0
        let nowMs = 0
        const modelDue = (): string | undefined => {
          let found: [string, { dueMs: number; order: number }] | undefined
          for (const entry of model) {
            if (entry[1].dueMs > nowMs) continue
            if (
              found === undefined ||
              entry[1].dueMs < found[1].dueMs ||
              (entry[1].dueMs === found[1].dueMs && entry[1].order < found[1].order)
            )
              found = entry
          }
          if (found !== undefined) model.delete(found[0])
          return found?.[0]
        }
        for (const step of ops) {
          switch (step._tag) {
            case "Set":
              table.set(step.key, nowMs + step.afterMs)
              model.set(step.key, { dueMs: nowMs + step.afterMs, order: order++ })
              break
            case "Cancel":
              expect(table.cancel(step.key)).toBe(model.delete(step.key))
              break
            case "Advance": {
              nowMs += step.ms
              const expected: Array<string> = []
              for (let due = modelDue(); due !== undefined; due = modelDue()) expected.push(due)
              expect(drain(table, nowMs)).toEqual(expected)
              break
            }
          }
          const earliest = [...model.values()].reduce<number | undefined>(
            (min, { dueMs }) => (min === undefined || dueMs < min ? dueMs : min),
            undefined,
          )
          expect(table.next()).toBe(earliest)
          expect(table.size).toBe(model.size)
        }
      }),
      { numRuns: 500, seed: 17 },
    )
  })
})
