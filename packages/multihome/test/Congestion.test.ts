import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Congestion from "../src/Congestion.ts"

const mtu = 1188 // PMDCS of a 1200-byte packet

describe("Congestion (RFC 9260 §7.2)", () => {
  it("§7.2.1: initial cwnd = min(4·PMDCS, max(2·PMDCS, 4404)), 4344 for IPv6; ssthresh arbitrarily high", () => {
    expect(Congestion.initial(1188)).toEqual({
      cwnd: 4404,
      ssthresh: 0xffff_ffff,
      partialBytesAcked: 0,
    })
    expect(Congestion.initial(1000).cwnd).toBe(4000)
    expect(Congestion.initial(3000).cwnd).toBe(6000)
    expect(Congestion.initial(1188, { family: "ipv6" }).cwnd).toBe(4344)
    expect(Congestion.initial(1188, { ssthresh: 131_072 }).ssthresh).toBe(131_072)
    expect(Congestion.initialCwnd(500)).toBe(2000)
  })

  it("§7.2.1: slow start grows by min(bytes acked, PMDCS) only with a fully used window", () => {
    const start = Congestion.initial(mtu)
    const full = { mtu, flightSizeBefore: start.cwnd, cumulativeAdvanced: true }
    expect(Congestion.onAck(start, { ...full, bytesAcked: 500 }).cwnd).toBe(4404 + 500)
    expect(Congestion.onAck(start, { ...full, bytesAcked: 5000 }).cwnd).toBe(4404 + mtu)
    // Window not fully used: no growth.
    expect(
      Congestion.onAck(start, { ...full, flightSizeBefore: 4403, bytesAcked: 2000 }).cwnd,
    ).toBe(4404)
    // In Fast Recovery: no growth.
    expect(Congestion.onAck(start, { ...full, bytesAcked: 2000, inFastRecovery: true }).cwnd).toBe(
      4404,
    )
    // Growth does not depend on the cumulative ack advancing (RFC 9260 dropped that condition).
    expect(
      Congestion.onAck(start, { ...full, bytesAcked: 500, cumulativeAdvanced: false }).cwnd,
    ).toBe(4904)
    // Slow start applies while cwnd ≤ ssthresh, partial_bytes_acked untouched.
    const atThreshold = { cwnd: 5000, ssthresh: 5000, partialBytesAcked: 0 }
    expect(
      Congestion.onAck(atThreshold, { ...full, flightSizeBefore: 5000, bytesAcked: 100 }),
    ).toEqual({
      cwnd: 5100,
      ssthresh: 5000,
      partialBytesAcked: 0,
    })
  })

  it("§7.2.2: congestion avoidance grows by one PMDCS per cwnd of bytes acked", () => {
    let state: Congestion.CongestionState = { cwnd: 10_000, ssthresh: 5000, partialBytesAcked: 0 }
    const ack = { mtu, flightSizeBefore: 10_000, cumulativeAdvanced: true }
    state = Congestion.onAck(state, { ...ack, bytesAcked: 6000 })
    expect(state).toEqual({ cwnd: 10_000, ssthresh: 5000, partialBytesAcked: 6000 })
    state = Congestion.onAck(state, { ...ack, bytesAcked: 5000 })
    // pba = 11000 ≥ cwnd: pba −= cwnd (old), then cwnd += PMDCS.
    expect(state).toEqual({ cwnd: 10_000 + mtu, ssthresh: 5000, partialBytesAcked: 1000 })
  })

  it("§7.2.2: without a full window, partial_bytes_acked is capped at cwnd and cwnd stays", () => {
    const state = { cwnd: 10_000, ssthresh: 5000, partialBytesAcked: 9000 }
    const next = Congestion.onAck(state, {
      mtu,
      flightSizeBefore: 9999,
      cumulativeAdvanced: true,
      bytesAcked: 4000,
    })
    expect(next).toEqual({ cwnd: 10_000, ssthresh: 5000, partialBytesAcked: 10_000 })
    // pba exactly cwnd with a short window: unchanged, no growth.
    const equal = Congestion.onAck(
      { ...state, partialBytesAcked: 6000 },
      { mtu, flightSizeBefore: 100, cumulativeAdvanced: true, bytesAcked: 4000 },
    )
    expect(equal).toEqual({ cwnd: 10_000, ssthresh: 5000, partialBytesAcked: 10_000 })
  })

  it("§7.2.2: partial_bytes_acked returns to 0 once all data is acknowledged", () => {
    const state = { cwnd: 10_000, ssthresh: 5000, partialBytesAcked: 3000 }
    const next = Congestion.onAck(state, {
      mtu,
      flightSizeBefore: 2000,
      cumulativeAdvanced: true,
      bytesAcked: 2000,
      flightSizeAfter: 0,
    })
    expect(next.partialBytesAcked).toBe(0)
  })

  it("§7.2.3: T3-rtx expiry sets ssthresh = max(cwnd/2, 4·PMDCS), cwnd = 1·PMDCS, pba = 0", () => {
    expect(
      Congestion.onRetransmissionTimeout(
        { cwnd: 20_000, ssthresh: 1e9, partialBytesAcked: 7 },
        mtu,
      ),
    ).toEqual({
      cwnd: mtu,
      ssthresh: 10_000,
      partialBytesAcked: 0,
    })
    expect(
      Congestion.onRetransmissionTimeout({ cwnd: 4404, ssthresh: 1e9, partialBytesAcked: 0 }, mtu),
    ).toEqual({
      cwnd: mtu,
      ssthresh: 4 * mtu,
      partialBytesAcked: 0,
    })
  })

  it("§7.2.4 / §7.2.3: fast retransmit sets ssthresh = max(cwnd/2, 4·PMDCS) and cwnd = ssthresh", () => {
    expect(
      Congestion.onFastRetransmit(
        { cwnd: 20_001, ssthresh: 1e9, partialBytesAcked: 9 },
        mtu,
        15_000,
      ),
    ).toEqual({
      cwnd: 10_000,
      ssthresh: 10_000,
      partialBytesAcked: 0,
    })
    expect(
      Congestion.onFastRetransmit({ cwnd: 6000, ssthresh: 1e9, partialBytesAcked: 0 }, mtu).cwnd,
    ).toBe(4 * mtu)
  })

  it("§7.2.1: an idle path sets ssthresh to cwnd first, then cwnd = max(cwnd/2, 4·PMDCS) per RTO", () => {
    const state = { cwnd: 40_000, ssthresh: 20_000, partialBytesAcked: 0 }
    expect(Congestion.onIdle(state, mtu)).toEqual({
      cwnd: 20_000,
      ssthresh: 40_000,
      partialBytesAcked: 0,
    })
    expect(Congestion.onIdle(state, mtu, 2)).toEqual({
      cwnd: 10_000,
      ssthresh: 40_000,
      partialBytesAcked: 0,
    })
    expect(Congestion.onIdle(state, mtu, 1, false)).toEqual({
      cwnd: 20_000,
      ssthresh: 20_000,
      partialBytesAcked: 0,
    })
    expect(Congestion.onIdle(state, mtu, 1000).cwnd).toBe(4 * mtu)
    expect(Congestion.onIdle(state, mtu, 0)).toBe(state)
  })

  it("keeps cwnd ≥ 1·PMDCS and ssthresh ≥ 4·PMDCS after any loss, and grows at most one PMDCS per ack (property)", () => {
    const event = fc.oneof(
      fc.record({
        _tag: fc.constant("Ack" as const),
        bytesAcked: fc.integer({ min: 0, max: 100_000 }),
        flightSizeBefore: fc.integer({ min: 0, max: 200_000 }),
        inFastRecovery: fc.boolean(),
        cumulativeAdvanced: fc.boolean(),
      }),
      fc.constant({ _tag: "Timeout" as const }),
      fc.constant({ _tag: "FastRetransmit" as const }),
      fc.constant({ _tag: "Idle" as const }),
    )
    fc.assert(
      fc.property(
        fc.integer({ min: 500, max: 9000 }),
        fc.array(event, { maxLength: 80 }),
        (pmdcs, events) => {
          let state = Congestion.initial(pmdcs)
          for (const e of events) {
            const before = state
            switch (e._tag) {
              case "Ack": {
                state = Congestion.onAck(state, { ...e, mtu: pmdcs })
                expect(state.cwnd - before.cwnd).toBeLessThanOrEqual(pmdcs)
                expect(state.cwnd).toBeGreaterThanOrEqual(before.cwnd)
                expect(state.ssthresh).toBe(before.ssthresh)
                break
              }
              case "Timeout": {
                state = Congestion.onRetransmissionTimeout(state, pmdcs)
                expect(state.cwnd).toBe(pmdcs)
                expect(state.ssthresh).toBeGreaterThanOrEqual(4 * pmdcs)
                break
              }
              case "FastRetransmit": {
                state = Congestion.onFastRetransmit(state, pmdcs)
                expect(state.cwnd).toBe(state.ssthresh)
                expect(state.ssthresh).toBe(Math.max(Math.floor(before.cwnd / 2), 4 * pmdcs))
                break
              }
              case "Idle": {
                state = Congestion.onIdle(state, pmdcs)
                expect(state.cwnd).toBe(Math.max(Math.floor(before.cwnd / 2), 4 * pmdcs))
                break
              }
            }
            expect(state.cwnd).toBeGreaterThanOrEqual(pmdcs)
            expect(Number.isInteger(state.cwnd) && Number.isInteger(state.ssthresh)).toBe(true)
            expect(state.partialBytesAcked).toBeGreaterThanOrEqual(0)
          }
          expect(structuredClone(state)).toEqual(state)
        },
      ),
      { numRuns: 200 },
    )
  })
})
