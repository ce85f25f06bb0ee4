/**
 * When the `tcp-repair` object server asks for a transfer's checkpoints: every 4 MiB read,
 * at least 25 ms apart, never more than 32 MiB apart (what a takeover may have to refill).
 */
import { describe, expect, it } from "vitest"
import { checkpointDue } from "../src/internal/tcpRepair/objectServer.ts"

const MiB = 1024 * 1024
const cadence = { everyBytes: 4 * MiB, gapMs: 25 }

/** The bytes read between the checkpoints of a steady download, read 256 KiB at a time. */
const steps = (size: number, mibPerSecond: number): Array<number> => {
  const found: Array<number> = []
  let since = 0
  let askedAtMs = 0
  for (let read = 0; read < size; ) {
    const n = Math.min(256 * 1024, size - read)
    read += n
    since += n
    const nowMs = (read / MiB / mibPerSecond) * 1000
    if (checkpointDue(cadence, since, nowMs - askedAtMs)) {
      found.push(since)
      since = 0
      askedAtMs = nowMs
    }
  }
  return found
}

describe("tcp-repair checkpoint cadence", () => {
  it("asks every 4 MiB when 4 MiB take 25 ms or more", () => {
    expect(checkpointDue(cadence, 4 * MiB - 1, 10_000)).toBe(false)
    expect(checkpointDue(cadence, 4 * MiB, 25)).toBe(true)
    // The takeover tests' client rate, and a 100 MiB/s one: unchanged by the gap.
    for (const rate of [4, 100]) {
      const found = steps(64 * MiB, rate)
      expect(found).toHaveLength(16)
      expect(new Set(found)).toEqual(new Set([4 * MiB]))
    }
  })

  it("waits for 25 ms since the last on a fast transfer, but never past 32 MiB", () => {
    expect(checkpointDue(cadence, 16 * MiB, 24)).toBe(false)
    expect(checkpointDue(cadence, 32 * MiB, 0)).toBe(true)
    // 600 MiB/s: 25 ms are 15 MiB, met at the first 256 KiB read that reaches them.
    const at600 = steps(128 * MiB, 600)
    expect(at600).toHaveLength(8)
    for (const step of at600) {
      expect(step).toBeGreaterThanOrEqual(15 * MiB)
      expect(step).toBeLessThanOrEqual(15 * MiB + 256 * 1024)
    }
    // 4 GiB/s: 25 ms would be 100 MiB; the refill bound holds them to 32 MiB.
    expect(new Set(steps(256 * MiB, 4096))).toEqual(new Set([32 * MiB]))
  })
})
