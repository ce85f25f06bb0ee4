import { describe, expect, it } from "@effect/vitest"
import type { SimNet } from "@understudy/transport"
import * as FaultSchedule from "../src/FaultSchedule.ts"
import * as Network from "../src/Network.ts"

const goodLink: SimNet.LinkConfig = {
  latency: { _tag: "Uniform", minMs: 1, maxMs: 40 },
  loss: 0,
  duplicate: 0,
  reorder: 0,
}
const nodes = ["a", "b", "c", "d", "e"]
const options: FaultSchedule.Options = { nodes, endMs: 5_000, startMs: 100, goodLink }

describe("FaultSchedule", () => {
  it("is a pure function of the seed", () => {
    expect(FaultSchedule.generate(11, options)).toEqual(FaultSchedule.generate(11, options))
    expect(FaultSchedule.generate(11, options)).not.toEqual(FaultSchedule.generate(12, options))
  })

  it("keeps faults within the window, in time order, and sensible", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const schedule = FaultSchedule.generate(seed, options)
      const down = new Set<string>()
      let lastMs = 0
      for (const { atMs, fault } of schedule) {
        expect(atMs).toBeGreaterThanOrEqual(lastMs)
        expect(atMs).toBeGreaterThan(100)
        expect(atMs).toBeLessThanOrEqual(5_000)
        lastMs = atMs
        switch (fault._tag) {
          case "Crash":
            expect(down.has(fault.node)).toBe(false)
            down.add(fault.node)
            // A minority at most: 2 of 5.
            expect(down.size).toBeLessThanOrEqual(2)
            break
          case "Restart":
            expect(down.delete(fault.node)).toBe(true)
            break
          case "Partition":
            expect(fault.side.length).toBeGreaterThan(0)
            expect(fault.other.length).toBeGreaterThan(0)
            expect([...fault.side, ...fault.other].sort()).toEqual(nodes)
            break
          case "SetLink": {
            expect(fault.from).not.toBe(fault.to)
            expect(fault.link.loss).toBeLessThanOrEqual(0.5)
            expect(FaultSchedule.maxDelayMs(fault.link)).toBeLessThanOrEqual(
              FaultSchedule.maxDelayOverallMs(options),
            )
            break
          }
          case "Heal":
            break
        }
      }
    }
  })

  it("heals and restores every link at the end", () => {
    for (let seed = 1; seed <= 100; seed++) {
      const network = Network.make(nodes, goodLink)
      for (const item of FaultSchedule.generate(seed, options)) network.apply(item)
      for (const from of nodes) {
        for (const to of nodes) {
          if (from === to) continue
          expect(network.link(from, to).cut).toBe(false)
          expect(network.link(from, to).config).toEqual(goodLink)
        }
      }
    }
  })

  it("draws every kind of fault across seeds", () => {
    const kinds = new Set<string>()
    for (let seed = 1; seed <= 50; seed++) {
      for (const { fault } of FaultSchedule.generate(seed, options)) {
        kinds.add(fault._tag === "Partition" && fault.oneWay ? "OneWay" : fault._tag)
      }
    }
    expect([...kinds].sort()).toEqual([
      "Crash",
      "Heal",
      "OneWay",
      "Partition",
      "Restart",
      "SetLink",
    ])
  })

  it("honours weights: only crashes and restarts", () => {
    const schedule = FaultSchedule.generate(5, {
      ...options,
      weights: { partition: 0, oneWayPartition: 0, heal: 0, degrade: 0, restore: 0 },
    })
    expect(schedule.length).toBeGreaterThan(5)
    expect(new Set(schedule.map((item) => item.fault._tag))).toEqual(new Set(["Crash", "Restart"]))
  })

  it("computes the largest delay of a link", () => {
    expect(FaultSchedule.maxDelayMs(goodLink)).toBe(40)
    expect(FaultSchedule.maxDelayMs({ ...goodLink, reorder: 0.1 })).toBe(120)
    expect(
      FaultSchedule.maxDelayMs({ ...goodLink, latency: { _tag: "Fixed", ms: 0 }, reorder: 0.5 }),
    ).toBe(2)
  })

  it("prints one fault a line", () => {
    const text = FaultSchedule.format([
      { atMs: 150, fault: { _tag: "Crash", node: "a", mode: "host" } },
      { atMs: 300, fault: { _tag: "Partition", side: ["a"], other: ["b", "c"], oneWay: true } },
      { atMs: 450, fault: { _tag: "Heal" } },
      { atMs: 600, fault: { _tag: "SetLink", from: "b", to: "c", link: goodLink } },
      { atMs: 900, fault: { _tag: "Restart", node: "a" } },
    ])
    expect(text.split("\n")).toEqual([
      "     150 ms  crash a (host)",
      "     300 ms  partition [a] -> [b,c]",
      "     450 ms  heal",
      "     600 ms  link b -> c: latency 1..40 ms loss 0 duplicate 0 reorder 0",
      "     900 ms  restart a",
    ])
  })
})

describe("Network", () => {
  it("tracks who is up and each link's state, with when it last changed", () => {
    const network = Network.make(["a", "b", "c"], goodLink)
    network.apply({ atMs: 10, fault: { _tag: "Crash", node: "a", mode: "process" } })
    network.apply({
      atMs: 20,
      fault: { _tag: "Partition", side: ["b"], other: ["c"], oneWay: true },
    })
    network.apply({
      atMs: 25,
      fault: { _tag: "Partition", side: ["b"], other: ["c"], oneWay: true },
    })
    expect(network.node("a")).toEqual({ up: false, sinceMs: 10 })
    expect(network.node("b")).toEqual({ up: true, sinceMs: 0 })
    expect(network.link("b", "c")).toMatchObject({ cut: true, sinceMs: 20 })
    expect(network.link("c", "b")).toMatchObject({ cut: false, sinceMs: 0 })
    const slow = { ...goodLink, latency: { _tag: "Fixed", ms: 300 } } as const
    network.apply({ atMs: 30, fault: { _tag: "SetLink", from: "c", to: "b", link: slow } })
    network.apply({ atMs: 40, fault: { _tag: "Heal" } })
    network.apply({ atMs: 50, fault: { _tag: "Restart", node: "a" } })
    expect(network.link("b", "c")).toEqual({ cut: false, config: goodLink, sinceMs: 40 })
    expect(network.link("c", "b")).toEqual({ cut: false, config: slow, sinceMs: 30 })
    expect(network.node("a")).toEqual({ up: true, sinceMs: 50 })
  })
})
