import { describe, expect, it } from "vitest"
import { check, type Operation } from "./support/linearizability.ts"

const write = (value: string | null, startMs: number, endMs: number, key = "k"): Operation => ({
  key,
  kind: "write",
  value,
  startMs,
  endMs,
})
const read = (value: string | null, startMs: number, endMs: number, key = "k"): Operation => ({
  key,
  kind: "read",
  value,
  startMs,
  endMs,
})

describe("the linearizability checker", () => {
  it("accepts a sequential history and counts its operations", () => {
    expect(check([write("1", 0, 1), read("1", 2, 3), write("2", 4, 5), read("2", 6, 7)])).toEqual({
      ok: true,
      checked: 4,
    })
  })

  it("accepts a read of either value while a write overlaps it", () => {
    expect(check([write("1", 0, 1), write("2", 2, 10), read("1", 3, 4), read("2", 5, 6)]).ok).toBe(
      true,
    )
  })

  it("rejects a stale read: the older value read after a newer write was answered", () => {
    const verdict = check([write("1", 0, 1), write("2", 2, 3), read("1", 4, 5)])
    expect(verdict).toMatchObject({ ok: false, key: "k", reason: "not-linearizable" })
  })

  it("rejects reads that go back: 2 then 1 with no write between", () => {
    const history = [write("1", 0, 1), write("2", 2, 20), read("2", 3, 4), read("1", 5, 6)]
    expect(check(history).ok).toBe(false)
  })

  it("rejects a value nobody wrote, and a read of a write invoked after the read returned", () => {
    expect(check([write("1", 0, 1), read("9", 2, 3)]).ok).toBe(false)
    expect(check([read("1", 0, 1), write("1", 2, 3)]).ok).toBe(false)
  })

  it("a missing key reads as null, and a delete writes null", () => {
    expect(
      check([read(null, 0, 1), write("1", 2, 3), write(null, 4, 5), read(null, 6, 7)]).ok,
    ).toBe(true)
    expect(check([write("1", 0, 1), read(null, 2, 3)]).ok).toBe(false)
  })

  it("a write of unknown outcome may take effect late, or never", () => {
    const unknown = write("2", 2, Number.POSITIVE_INFINITY)
    expect(check([write("1", 0, 1), unknown, read("1", 3, 4)]).ok).toBe(true)
    expect(check([write("1", 0, 1), unknown, read("2", 100, 101)]).ok).toBe(true)
    // But never before it was invoked.
    expect(check([write("1", 0, 1), read("2", 1.5, 1.8), unknown]).ok).toBe(false)
  })

  it("keys are independent: a violation on one key is reported with that key", () => {
    const verdict = check([
      write("1", 0, 1, "a"),
      read("1", 2, 3, "a"),
      write("1", 0, 1, "b"),
      write("2", 2, 3, "b"),
      read("1", 4, 5, "b"),
    ])
    expect(verdict).toMatchObject({ ok: false, key: "b" })
  })

  it("checks a long concurrent history quickly (memoised search)", () => {
    // Four clients, each writing its own values and reading, overlapping pairwise.
    const history: Array<Operation> = []
    let latest = "0"
    history.push(write("0", 0, 1))
    for (let i = 1; i <= 200; i++) {
      const t = i * 10
      history.push(write(`${i}`, t, t + 15))
      history.push(read(latest, t - 1, t + 2))
      latest = `${i}`
    }
    expect(check(history).ok).toBe(true)
  })

  it("checks a history longer than the call stack is deep, and still finds a stale read at its end", () => {
    // 20,000 writes and reads on one key, one after another (a long lease-reads run): the
    // recursive search overflowed the stack from about 10,000 operations.
    const history: Array<Operation> = []
    for (let i = 0; i < 10_000; i++) {
      history.push(write(`${i}`, i * 4, i * 4 + 1))
      history.push(read(`${i}`, i * 4 + 2, i * 4 + 3))
    }
    expect(check(history)).toEqual({ ok: true, checked: 20_000 })
    const stale = [...history, read("9998", 40_000, 40_001)]
    expect(check(stale)).toMatchObject({ ok: false, reason: "not-linearizable" })
  })
})
