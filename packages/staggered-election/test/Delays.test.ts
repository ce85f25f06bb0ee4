import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as Delays from "../src/Delays.ts"
import * as Rank from "../src/Rank.ts"

const group = (count: number) =>
  Result.getOrThrow(
    Rank.rank(
      Array.from({ length: count }, (_, i) => ({
        id: `s${i + 1}`,
        // s1 the most capable, so s<i> has index i.
        capacity: { cpu: 100 - i, bandwidthMbps: 10 },
      })),
    ),
  )

const parameters = { baseDelayMs: 50, floorDelayMs: 1, unknownDelayMs: 500 }

describe("Rank", () => {
  it("ranks by cpu, then bandwidth, then id", () => {
    const ranked = Result.getOrThrow(
      Rank.rank([
        { id: "b", capacity: { cpu: 4, bandwidthMbps: 10 } },
        { id: "a", capacity: { cpu: 4, bandwidthMbps: 10 } },
        { id: "c", capacity: { cpu: 4, bandwidthMbps: 20 } },
        { id: "d", capacity: { cpu: 8, bandwidthMbps: 1 } },
      ]),
    )
    expect(ranked.map((server) => `${server.id}:${server.index}`)).toEqual([
      "d:1",
      "c:2",
      "a:3",
      "b:4",
    ])
    expect(Rank.wins(1, 2)).toBe(true)
    expect(Rank.wins(2, 1)).toBe(false)
  })

  it("rejects duplicate ids, empty and oversized groups with typed errors", () => {
    const duplicate = Rank.rank([
      { id: "a", capacity: { cpu: 1, bandwidthMbps: 1 } },
      { id: "a", capacity: { cpu: 2, bandwidthMbps: 1 } },
    ])
    expect(Result.isFailure(duplicate) && duplicate.failure.reason).toBe("duplicate-id")
    const empty = Rank.rank([])
    expect(Result.isFailure(empty) && empty.failure._tag).toBe("InvalidGroup")
    const many = Rank.rank(
      Array.from({ length: 4096 }, (_, i) => ({
        id: `${i}`,
        capacity: { cpu: 1, bandwidthMbps: 1 },
      })),
    )
    expect(Result.isFailure(many) && many.failure.reason).toBe("too-many-servers")
  })
})

describe("Delays (claims 10–13)", () => {
  it("3 servers, s1 failed: s2 waits the base, s3 the base plus s2's farthest delay", () => {
    const servers = group(3)
    const matrix = { s2: { s3: 20 }, s3: { s2: 30 } }
    const inputs = { ...parameters, servers, failed: "s1", matrix }
    // Backups: s2, s3. s2 has nobody before it.
    expect(Delays.electionDelay({ ...inputs, self: "s2" })).toBe(50)
    // s3: j = s2, k ∈ {s3}: d(s2, s3) = max(20, 30) = 30.
    expect(Delays.electionDelay({ ...inputs, self: "s3" })).toBe(80)
  })

  it("5 servers, s3 failed: sums the max over the later backups for each earlier one", () => {
    const servers = group(5)
    const matrix = {
      s1: { s2: 5, s4: 12, s5: 40 },
      s2: { s1: 6, s4: 9, s5: 3 },
      s4: { s5: 7 },
      s5: { s4: 8 },
    }
    const inputs = { ...parameters, servers, failed: "s3", matrix }
    // s1: no one before it.
    expect(Delays.electionDelay({ ...inputs, self: "s1" })).toBe(50)
    // s2: j = s1, k ∈ {s2, s4, s5}: max(6, 12, 40) = 40.
    expect(Delays.electionDelay({ ...inputs, self: "s2" })).toBe(90)
    // s4: j ∈ {s1, s2}, k ∈ {s4, s5}: s1 → max(12, 40) = 40; s2 → max(9, 3) = 9.
    expect(Delays.electionDelay({ ...inputs, self: "s4" })).toBe(99)
    // s5: k ∈ {s5}: s1 → 40, s2 → 3, s4 → max(7, 8) = 8.
    expect(Delays.electionDelay({ ...inputs, self: "s5" })).toBe(101)
  })

  it("floors every delay and counts unknown pairs as unknownDelayMs", () => {
    const servers = group(3)
    const inputs = { ...parameters, servers, failed: undefined, floorDelayMs: 10 }
    // s3 with no failed server: j ∈ {s1, s2}, k = s3; d(s1, s3) = 2 → floored to 10, d(s2, s3) unknown.
    const explanation = Delays.explain({ ...inputs, self: "s3", matrix: { s1: { s3: 2 } } })
    expect(explanation.totalMs).toBe(50 + 10 + 500)
    expect(explanation.terms).toEqual([
      { from: "s1", fromIndex: 1, to: "s3", toIndex: 3, delayMs: 10, unknown: false },
      { from: "s2", fromIndex: 2, to: "s3", toIndex: 3, delayMs: 500, unknown: true },
    ])
    expect(explanation.text).toBe("s3 (index 3) = base 50 + d(s1→s3) 10 + d(s2→s3) 500? = 560 ms")
  })

  it("the worst case bounds every server's delay", () => {
    const servers = group(5)
    const worst = Delays.worstCase(5, parameters, 40)
    for (const server of servers) {
      expect(
        Delays.electionDelay({
          ...parameters,
          servers,
          failed: undefined,
          self: server.id,
          matrix: {},
        }),
      ).toBeLessThanOrEqual(worst)
    }
  })
})
