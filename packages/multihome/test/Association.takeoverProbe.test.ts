/**
 * A takeover under a usrsctp-like peer (`support/usrsctpPeer.ts`: Nagle on its user's sends,
 * miss indications per destination, T3-rtx at RTO.min 1 s): the line the peer sent to the dead
 * node is resent by fast retransmit, not at its T3-rtx, and no packet is answered with more
 * than one SACK (RFC 9260 §6.2).
 */
import { describe, expect, it } from "@effect/vitest"
import { runTakeover } from "./support/usrsctpPeer.ts"

const lines = 60

/** The lines' first transmissions lost at the dead node, and how each was sent again. */
const lost = (result: ReturnType<typeof runTakeover>) => {
  const first = new Map<number, number>()
  const again: Array<{ tsn: number; why: string; afterMs: number }> = []
  for (const send of result.sends) {
    const sentAt = first.get(send.tsn)
    if (sentAt === undefined) first.set(send.tsn, send.atMs)
    else again.push({ tsn: send.tsn, why: send.why, afterMs: send.atMs - sentAt })
  }
  return again
}

describe("takeover under a usrsctp-like peer: what it sent to the dead node is fast-retransmitted", () => {
  it("nothing held when the takeover's first packet comes: the HEARTBEATs while the hole is open draw out the lines held behind it", () => {
    // A line every 20 ms (the bench's stream); the node dies 2 ms before line 20 is written,
    // its copy takes over 18 ms later, before line 21: line 20 is lost, and line 21 onwards
    // is held behind it by Nagle.
    const result = runTakeover({
      lineEveryMs: 20,
      lines,
      killAtMs: 20 * 21 - 2,
      takeoverAtMs: 20 * 21 + 16,
      seed: 3,
    })
    expect(result.delivered).toEqual(Array.from({ length: lines }, (_, line) => line))
    const again = lost(result)
    expect(again.length).toBe(1)
    expect(again[0]!.why).toBe("fast")
    expect(again[0]!.afterMs).toBeLessThan(200)
    expect(result.sacksPerPacketMax).toBe(1)
  })

  it("three lines held when the takeover's first packet comes: one SACK for their packet, the next strikes from the packets the HEARTBEATs draw", () => {
    // A line every 5 ms: lines 81-83 are held behind line 80, lost at the dead node.
    const result = runTakeover({
      lineEveryMs: 5,
      lines: 4 * lines,
      killAtMs: 5 * 81 - 2,
      takeoverAtMs: 5 * 81 + 16,
      seed: 5,
    })
    expect(result.delivered).toEqual(Array.from({ length: 4 * lines }, (_, line) => line))
    const again = lost(result)
    expect(again.length).toBeGreaterThan(0)
    for (const chunk of again) expect(chunk.why).toBe("fast")
    expect(result.sacksPerPacketMax).toBe(1)
  })

  it("a kill at any millisecond of a line's interval: whatever is lost is fast-retransmitted, one SACK per packet", () => {
    let withHole = 0
    for (let offset = 0; offset < 20; offset++) {
      const result = runTakeover({
        lineEveryMs: 20,
        lines,
        killAtMs: 20 * 21 + offset,
        takeoverAtMs: 20 * 21 + offset + 20,
        seed: 3,
      })
      expect(result.delivered).toEqual(Array.from({ length: lines }, (_, line) => line))
      const again = lost(result)
      if (again.length > 0) withHole++
      for (const chunk of again) expect({ offset, why: chunk.why }).toEqual({ offset, why: "fast" })
      expect(result.sacksPerPacketMax).toBe(1)
    }
    // A takeover one line interval after the kill: every kill loses a line.
    expect(withHole).toBe(20)
  })
})
