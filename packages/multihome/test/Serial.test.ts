import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Serial from "../src/Serial.ts"

const u32 = fc.integer({ min: 0, max: 0xffff_ffff })
const u16 = fc.integer({ min: 0, max: 0xffff })

describe("Serial (RFC 1982 as used by RFC 9260 §1.6)", () => {
  it("compares TSNs across the 2^32 wrap", () => {
    expect(Serial.lt32(1, 2)).toBe(true)
    expect(Serial.lt32(0xffff_ffff, 0)).toBe(true)
    expect(Serial.gt32(0, 0xffff_ffff)).toBe(true)
    expect(Serial.lt32(0xffff_fff0, 5)).toBe(true)
    expect(Serial.lt32(5, 0xffff_fff0)).toBe(false)
    expect(Serial.lte32(7, 7)).toBe(true)
    expect(Serial.gte32(7, 7)).toBe(true)
    expect(Serial.lt32(7, 7)).toBe(false)
    expect(Serial.gt32(7, 7)).toBe(false)
  })

  it("treats numbers exactly half the space apart as unordered (RFC 1982 §3.2 leaves it undefined)", () => {
    expect(Serial.lt32(0, 0x8000_0000)).toBe(false)
    expect(Serial.lt32(0x8000_0000, 0)).toBe(false)
    expect(Serial.lte32(0, 0x8000_0000)).toBe(false)
    expect(Serial.lt16(0, 0x8000)).toBe(false)
    expect(Serial.lt16(0x8000, 0)).toBe(false)
    expect(Serial.lt32(0, 0x7fff_ffff)).toBe(true)
    expect(Serial.lt16(0, 0x7fff)).toBe(true)
  })

  it("adds and subtracts modulo 2^32", () => {
    expect(Serial.add32(0xffff_ffff, 1)).toBe(0)
    expect(Serial.add32(0, -1)).toBe(0xffff_ffff)
    expect(Serial.add32(10, 5)).toBe(15)
    expect(Serial.diff32(0, 0xffff_ffff)).toBe(1)
    expect(Serial.diff32(0xffff_ffff, 0)).toBe(-1)
    expect(Serial.diff32(100, 40)).toBe(60)
    expect(Serial.diff32(0x8000_0000, 0)).toBe(-0x8000_0000)
  })

  it("wraps SSNs at 2^16", () => {
    expect(Serial.add16(0xffff, 1)).toBe(0)
    expect(Serial.add16(3, -4)).toBe(0xffff)
    expect(Serial.lt16(0xffff, 0)).toBe(true)
    expect(Serial.gt16(0, 0xffff)).toBe(true)
    expect(Serial.lte16(9, 9)).toBe(true)
    expect(Serial.gte16(0, 0xfff0)).toBe(true)
    expect(Serial.diff16(0, 0xffff)).toBe(1)
    expect(Serial.diff16(0xffff, 0)).toBe(-1)
  })

  it("orders a + d after a for 0 < d < 2^31, and is antisymmetric (property)", () => {
    fc.assert(
      fc.property(u32, fc.integer({ min: 1, max: 0x7fff_ffff }), (a, d) => {
        const b = Serial.add32(a, d)
        expect(Serial.lt32(a, b)).toBe(true)
        expect(Serial.gt32(b, a)).toBe(true)
        expect(Serial.lt32(b, a)).toBe(false)
        expect(Serial.diff32(b, a)).toBe(d)
        expect(Serial.add32(b, -d)).toBe(a)
      }),
      { numRuns: 500 },
    )
  })

  it("orders s + d after s for 0 < d < 2^15 (property)", () => {
    fc.assert(
      fc.property(u16, fc.integer({ min: 1, max: 0x7fff }), (s, d) => {
        const t = Serial.add16(s, d)
        expect(Serial.lt16(s, t)).toBe(true)
        expect(Serial.gt16(t, s)).toBe(true)
        expect(Serial.lte16(t, s)).toBe(false)
        expect(Serial.diff16(t, s)).toBe(d)
      }),
      { numRuns: 500 },
    )
  })

  it("is exactly one of <, =, > unless half the space apart (property)", () => {
    fc.assert(
      fc.property(u32, u32, (a, b) => {
        const count = [Serial.lt32(a, b), a === b, Serial.gt32(a, b)].filter(Boolean).length
        expect(count).toBe((b - a) >>> 0 === 0x8000_0000 ? 0 : 1)
      }),
      { numRuns: 500 },
    )
  })
})
