import { describe, expect, it } from "@effect/vitest"
import * as Replication from "../src/Replication.ts"

/** A master's replica at epoch 7 with entries 1..3 of its own epoch, nothing committed. */
const replica: Replication.Replica<number, string, number> = {
  ...Replication.empty<number, string, number>(0),
  log: [1, 2, 3].map((seq) => ({ _tag: "Noop" as const, seq, epoch: 7 })),
}

describe("Replication.commitPoint: when the master may answer", () => {
  // Five servers: the master, b and c have everything; d is live but has only entry 1.
  const matchSeq = { b: 3, c: 3, d: 1 }

  it("all-live: waits for every live backup, so a lagging live one holds the commit back", () => {
    expect(Replication.commitPoint(replica, 7, matchSeq, ["b", "c", "d"], 5)).toBe(1)
  })

  it("majority: answers once a majority has it, not waiting for the lagging backup", () => {
    expect(Replication.commitPoint(replica, 7, matchSeq, [], 5)).toBe(3)
  })

  it("either way, never without a majority (a minority-side master acknowledges nothing)", () => {
    expect(Replication.commitPoint(replica, 7, { b: 3 }, [], 5)).toBe(0)
    expect(Replication.commitPoint(replica, 7, { b: 3 }, ["b"], 5)).toBe(0)
  })

  it("amnesiac backups do not count toward the majority", () => {
    expect(Replication.commitPoint(replica, 7, matchSeq, [], 5, ["b"])).toBe(1)
  })
})
