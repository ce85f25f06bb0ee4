import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Rto from "../src/Rto.ts"

const defaults: Rto.RtoConfig = { rtoInitialMs: 1000, rtoMinMs: 1000, rtoMsMax: 60_000 }
const fast: Rto.RtoConfig = { rtoInitialMs: 300, rtoMinMs: 10, rtoMsMax: 5000 }

describe("Rto (RFC 9260 §6.3.1, §6.3.3)", () => {
  it("C1: RTO.Initial before any measurement", () => {
    expect(Rto.initial(defaults)).toEqual({ srtt: undefined, rttvar: undefined, rto: 1000 })
    expect(Rto.initial(fast).rto).toBe(300)
  })

  it("C2: first measurement sets SRTT = R, RTTVAR = R/2, RTO = SRTT + 4·RTTVAR", () => {
    expect(Rto.measured(Rto.initial(fast), 100, fast)).toEqual({ srtt: 100, rttvar: 50, rto: 300 })
  })

  it("C3: RTTVAR from the old SRTT, then SRTT, with alpha 1/8 and beta 1/4", () => {
    const first = Rto.measured(Rto.initial(fast), 100, fast)
    const second = Rto.measured(first, 200, fast)
    // RTTVAR = 3/4·50 + 1/4·|100 − 200| = 62.5; SRTT = 7/8·100 + 1/8·200 = 112.5
    expect(second).toEqual({ srtt: 112.5, rttvar: 62.5, rto: 112.5 + 250 })
  })

  it("C6 and C7: rounds up to RTO.Min and caps at RTO.Max", () => {
    expect(Rto.measured(Rto.initial(defaults), 10, defaults).rto).toBe(1000)
    expect(Rto.measured(Rto.initial(fast), 4000, fast).rto).toBe(5000)
  })

  it("G: a zero RTTVAR becomes the clock granularity (1 ms)", () => {
    const zero = Rto.measured(Rto.initial(fast), 0, fast)
    expect(zero).toEqual({ srtt: 0, rttvar: 1, rto: 10 })
    let state = Rto.measured(Rto.initial(fast), 40, fast)
    for (let round = 0; round < 200; round++) state = Rto.measured(state, 40, fast)
    expect(state.srtt).toBeCloseTo(40)
    expect(state.rttvar).toBeGreaterThanOrEqual(0)
  })

  it("E2: backoff doubles RTO up to RTO.Max and keeps SRTT/RTTVAR", () => {
    const measured = Rto.measured(Rto.initial(fast), 100, fast)
    const once = Rto.backoff(measured, fast)
    expect(once).toEqual({ srtt: 100, rttvar: 50, rto: 600 })
    let state = once
    for (let round = 0; round < 10; round++) state = Rto.backoff(state, fast)
    expect(state.rto).toBe(5000)
    // The next measurement recomputes RTO from SRTT/RTTVAR (the backoff is undone).
    expect(Rto.measured(state, 100, fast).rto).toBe(Rto.measured(measured, 100, fast).rto)
  })

  it("keeps RTO within [RTO.Min, RTO.Max] and equal to the formula otherwise (property)", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.double({ min: 0, max: 100_000, noNaN: true }),
            fc.constant("backoff" as const),
          ),
          {
            maxLength: 60,
          },
        ),
        (events) => {
          let state = Rto.initial(defaults)
          for (const event of events) {
            const previous = state
            state =
              event === "backoff"
                ? Rto.backoff(state, defaults)
                : Rto.measured(state, event, defaults)
            expect(state.rto).toBeGreaterThanOrEqual(Math.min(defaults.rtoMinMs, previous.rto))
            expect(state.rto).toBeLessThanOrEqual(defaults.rtoMsMax)
            if (event !== "backoff" && state.srtt !== undefined && state.rttvar !== undefined) {
              const formula = state.srtt + 4 * state.rttvar
              expect(state.rto).toBe(
                Math.min(defaults.rtoMsMax, Math.max(defaults.rtoMinMs, formula)),
              )
              expect(state.rttvar).toBeGreaterThan(0)
            }
          }
          // Plain data: a structured clone is an equal snapshot.
          expect(structuredClone(state)).toEqual(state)
        },
      ),
      { numRuns: 200 },
    )
  })
})
