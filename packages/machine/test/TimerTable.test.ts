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

  it("re-arming later, or re-arming a cancelled timer, changes its entry in place (nothing allocated)", () => {
    const table = new TimerTable<string>()
    table.set("sack", 200)
    table.set("t3", 1_000)
    const sack = table.peek()
    expect(sack?.key).toBe("sack")
    // A delayed acknowledgement: cancelled by the next packet's SACK, armed again by the one after.
    for (let packet = 1; packet < 1_000; packet++) {
      if (packet % 2 === 0) table.cancel("sack")
      else table.set("sack", 200 + packet)
      table.set("t3", 1_000 + packet)
    }
    expect(table.peek()).toBe(sack)
    expect(table.dueOf("sack")).toBe(1_199)
    expect(drain(table, 1_198)).toEqual([])
    expect(drain(table, 1_199)).toEqual(["sack"])
    expect(drain(table, 1_998)).toEqual([])
    expect(drain(table, 1_999)).toEqual(["t3"])
  })

  it("re-arming earlier than the heap has it fires at the earlier deadline, once", () => {
    const table = new TimerTable<string>()
    table.set("a", 100)
    table.set("b", 50)
    table.set("a", 10)
    table.cancel("b")
    table.set("b", 20)
    expect(drain(table, 15)).toEqual(["a"])
    expect(drain(table, 1_000)).toEqual(["b"])
    expect(table.size).toBe(0)
  })

  it("many timers: 2,000 keys re-armed and cancelled 20,000 times fire in deadline order, once each", () => {
    const table = new TimerTable<number>()
    const model = new Map<number, { dueMs: number; order: number }>()
    // Scattered by multiplying with primes: deadlines later and earlier than the last arming.
    for (let order = 0; order < 20_000; order++) {
      const key = (order * 7_919) % 2_000
      if (order % 5 === 0) {
        expect(table.cancel(key)).toBe(model.delete(key))
      } else {
        const dueMs = (order * 104_729) % 100_000
        table.set(key, dueMs)
        model.set(key, { dueMs, order })
      }
    }
    expect(table.size).toBe(model.size)
    const expected = [...model]
      .sort(([, a], [, b]) => a.dueMs - b.dueMs || a.order - b.order)
      .map(([key]) => key)
    const fired: Array<number> = []
    for (let key = table.due(100_000); key !== undefined; key = table.due(100_000)) fired.push(key)
    expect(fired).toEqual(expected)
    expect(table.size).toBe(0)
  })

  // The table against the obvious model: a map of (deadline, order), scanned in full.
  type Op =
    | {
        readonly _tag: "Set"
        readonly key: string
        readonly afterMs: number
        readonly order: number | undefined
      }
    | { readonly _tag: "Cancel"; readonly key: string }
    | { readonly _tag: "Advance"; readonly ms: number }

  const key = fc.constantFrom("a", "b", "c", "d", "e", "f", "g", "h")
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({
      _tag: fc.constant("Set" as const),
      key,
      afterMs: fc.integer({ min: 0, max: 50 }),
      // Mostly the table's own order; sometimes the caller's, below or among it.
      order: fc.option(fc.integer({ min: -5, max: 400 }), { freq: 4, nil: undefined }),
    }),
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
              table.set(step.key, nowMs + step.afterMs, step.order)
              model.set(step.key, { dueMs: nowMs + step.afterMs, order: step.order ?? order++ })
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
