import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Association from "../src/Association.ts"
import * as Packet from "../src/Packet.ts"
import { established, Loopback, messages } from "./associationHarness.ts"

const config = (localPort: number): Association.Config => ({
  ...Association.defaultConfig,
  localPort,
})

/** Outputs in comparable form: packets as their encoded bytes. */
const normalize = (outputs: ReadonlyArray<Association.Output>) =>
  outputs.map((o) => (o._tag === "Send" ? { to: o.to, bytes: Packet.encode(o.message) } : o))

const sendMany = (lb: Loopback, count: number, seed: number) => {
  for (let index = 0; index < count; index++) {
    const size = 1 + ((index * 7919 + seed * 104729) % 3000)
    const data = new Uint8Array(size).fill(index & 0xff)
    lb.send(true, { _tag: "Send", stream: index % 3, ppid: 1, data, unordered: index % 5 === 0 })
  }
}

describe("Association snapshot / restore / takeOver", () => {
  it("a restored snapshot steps identically to the original (replayed inputs)", () => {
    const lb = new Loopback({ seed: 31, loss: 0.1, jitterMs: 8 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    sendMany(lb, 200, 31)
    lb.run(() => messages(lb.serverEvents).length >= 60, 600_000)
    const snap = Association.snapshot(lb.client)
    // The snapshot is plain data: a structured clone of it restores the same way.
    const replica = Association.restore(lb.clientConfig, structuredClone(snap))
    expect(Association.snapshot(replica)).toEqual(snap)
    lb.recording = []
    expect(lb.run(() => messages(lb.serverEvents).length >= 200, 3_600_000)).toBe(true)
    expect(lb.recording.length).toBeGreaterThan(50)
    for (const { input, outputs } of lb.recording) {
      expect(normalize(Association.step(replica, input).outputs)).toEqual(normalize(outputs))
    }
    expect(Association.snapshot(replica)).toEqual(Association.snapshot(lb.client))
  })

  it("a replica that takes over carries the association on: every message delivered once", () => {
    const lb = new Loopback({ seed: 32, loss: 0.05 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    sendMany(lb, 300, 32)
    lb.run(() => messages(lb.serverEvents).length >= 100, 600_000)
    const replica = Association.restore(
      lb.clientConfig,
      structuredClone(Association.snapshot(lb.client)),
    )
    // The primary dies: its timers die with it; the replica re-arms them from its state.
    lb.client = replica
    lb.clientTimers.clear()
    const outputs = Association.takeOver(replica, lb.nowMs)
    expect(outputs.filter((o) => o._tag === "SetTimer").length).toBeGreaterThan(0)
    expect(
      outputs.some(
        (o) => o._tag === "Send" && o.message.chunks.some((c) => c._tag === "Heartbeat"),
      ),
    ).toBe(true)
    lb.perform(true, outputs)
    expect(lb.run(() => messages(lb.serverEvents).length >= 300, 3_600_000)).toBe(true)
    expect(messages(lb.serverEvents)).toHaveLength(300)
    expect(lb.client.name).toBe("Established")
  })

  it("property: any seed and loss up to 20% delivers every message exactly once", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.double({ min: 0, max: 0.2, noNaN: true }),
        (seed, loss) => {
          const lb = new Loopback({ seed, loss, jitterMs: 5 }, config(4000), config(5000))
          if (!lb.run(() => established(lb), 600_000)) return lb.client.name === "Closed"
          sendMany(lb, 40, seed)
          expect(lb.run(() => messages(lb.serverEvents).length >= 40, 3_600_000)).toBe(true)
          expect(messages(lb.serverEvents)).toHaveLength(40)
          return true
        },
      ),
      { numRuns: 25, seed: 4242 },
    )
  })
})
