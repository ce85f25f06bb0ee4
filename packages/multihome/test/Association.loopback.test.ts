import { describe, expect, it } from "@effect/vitest"
import * as Association from "../src/Association.ts"
import { established, Loopback, messages, serverHosts } from "./associationHarness.ts"

const config = (
  localPort: number,
  overrides: Partial<Association.Config> = {},
): Association.Config => ({
  ...Association.defaultConfig,
  localPort,
  ...overrides,
})

const multihomed = config(5000, { localAddresses: [...serverHosts] })

describe("Association loopback", () => {
  it("establishes an association both ways", () => {
    const lb = new Loopback({ seed: 1 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 10_000)).toBe(true)
    expect(lb.clientEvents.filter((e) => e._tag === "CommUp")).toHaveLength(1)
    expect(lb.serverEvents.filter((e) => e._tag === "CommUp")).toHaveLength(1)
    expect(Association.peerTag(lb.client)).toBe(Association.myTag(lb.server!))
    expect(Association.peerTag(lb.server!)).toBe(Association.myTag(lb.client))
  })

  it("confirms the server's second address with a HEARTBEAT", () => {
    const lb = new Loopback({ seed: 2 }, config(4000), multihomed)
    expect(lb.run(() => established(lb), 10_000)).toBe(true)
    expect(lb.run(() => Association.info(lb.client).paths.every((p) => p.confirmed), 10_000)).toBe(
      true,
    )
    expect(Association.peerHosts(lb.client)).toEqual([...serverHosts])
    expect(lb.clientEvents).toContainEqual({
      _tag: "PathChange",
      host: serverHosts[1],
      state: "Confirmed",
    })
  })

  it("retransmits INIT on T1-init and gives up after Max.Init.Retransmits", () => {
    const lb = new Loopback(
      { seed: 3, blackHoles: [serverHosts[0]] },
      config(4000, { initRetransmitsMax: 3 }),
      config(5000),
    )
    lb.run(() => lb.client.name === "Closed", 600_000)
    expect(lb.client.name).toBe("Closed")
    expect(lb.transmitted).toBe(4)
    expect(lb.clientEvents).toContainEqual({ _tag: "CommLost", reason: "InitTimeout" })
  })

  for (const seed of [11, 12, 13]) {
    it(`delivers 1,000 messages exactly once in per-stream order under 10% loss (seed ${seed})`, () => {
      const lb = new Loopback(
        { seed, loss: 0.1, delayMs: 5, jitterMs: 10 },
        config(4000),
        config(5000),
      )
      expect(lb.run(() => established(lb), 120_000)).toBe(true)
      let rng = seed
      const next = () => {
        rng = (Math.imul(rng, 1103515245) + 12345) >>> 0
        return rng / 0x1_0000_0000
      }
      const sent: Array<{ stream: number; unordered: boolean; data: Uint8Array }> = []
      for (let index = 0; index < 1000; index++) {
        const size = 1 + Math.floor(next() * 3 * 1200)
        const data = new Uint8Array(size)
        for (let k = 0; k < size; k++) data[k] = (index * 7 + k) & 0xff
        data[0] = index & 0xff
        if (size > 1) data[1] = index >>> 8
        const stream = Math.floor(next() * 4)
        const unordered = next() < 0.25
        sent.push({ stream, unordered, data })
        lb.send(true, { _tag: "Send", stream, ppid: 51, data, unordered })
      }
      expect(lb.run(() => messages(lb.serverEvents).length >= 1000, 3_600_000)).toBe(true)
      const received = messages(lb.serverEvents)
      expect(received).toHaveLength(1000)
      const ids = (data: Uint8Array) => data[0]! | (data.length > 1 ? data[1]! << 8 : 0)
      // Exactly once: every message identified and compared byte for byte.
      const seen = new Set<number>()
      for (const message of received) {
        let id = ids(message.data)
        if (message.data.length === 1) {
          id = sent.findIndex(
            (s, i) => !seen.has(i) && s.data.length === 1 && s.data[0] === message.data[0],
          )
        }
        expect(seen.has(id)).toBe(false)
        seen.add(id)
        expect(message.data).toEqual(sent[id]!.data)
        expect(message.stream).toBe(sent[id]!.stream)
        expect(message.unordered).toBe(sent[id]!.unordered)
      }
      // Per-stream order for ordered messages.
      for (let stream = 0; stream < 4; stream++) {
        const order = received
          .filter((m) => m.stream === stream && !m.unordered && m.data.length > 1)
          .map((m) => ids(m.data))
        expect(order).toEqual([...order].sort((a, b) => a - b))
      }
      expect(lb.run(() => Association.info(lb.client).outstandingChunks === 0, 600_000)).toBe(true)
    })
  }

  it("shuts down gracefully after delivering everything", () => {
    const lb = new Loopback({ seed: 21, loss: 0.05 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    for (let index = 0; index < 50; index++) {
      lb.send(true, {
        _tag: "Send",
        stream: 0,
        ppid: 0,
        data: new Uint8Array(500).fill(index),
        unordered: false,
      })
    }
    lb.send(true, { _tag: "Shutdown" })
    expect(lb.run(() => lb.client.name === "Closed" && lb.server?.name === "Closed", 600_000)).toBe(
      true,
    )
    expect(messages(lb.serverEvents)).toHaveLength(50)
    expect(lb.clientEvents).toContainEqual({ _tag: "ShutdownComplete" })
    expect(lb.serverEvents).toContainEqual({ _tag: "ShutdownComplete" })
    expect(lb.clientTimers.size).toBe(0)
  })

  it("aborts: the peer sees CommLost and both TCBs close", () => {
    const lb = new Loopback({ seed: 22 }, config(4000), config(5000))
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    lb.send(true, { _tag: "Abort", reason: "bye" })
    expect(lb.client.name).toBe("Closed")
    expect(lb.run(() => lb.server?.name === "Closed", 10_000)).toBe(true)
    expect(lb.serverEvents.find((e) => e._tag === "CommLost")).toEqual({
      _tag: "CommLost",
      reason: "Abort: UserInitiatedAbort",
    })
  })

  it("fails over to the second path when the primary goes black", () => {
    const lb = new Loopback({ seed: 23 }, config(4000, { heartbeatIntervalMs: 5000 }), {
      ...multihomed,
      heartbeatIntervalMs: 5000,
    })
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    expect(lb.run(() => Association.info(lb.client).paths.every((p) => p.confirmed), 60_000)).toBe(
      true,
    )
    lb.blackHoles.add(serverHosts[0])
    let sentCount = 0
    const deadline = lb.nowMs + 600_000
    for (let round = 0; round < 200 && lb.nowMs < deadline; round++) {
      lb.send(true, {
        _tag: "Send",
        stream: 1,
        ppid: 1,
        data: new Uint8Array(300).fill(round),
        unordered: false,
      })
      sentCount++
      lb.run(() => false, 2_000)
    }
    expect(lb.run(() => messages(lb.serverEvents).length === sentCount, 600_000)).toBe(true)
    expect(lb.client.name).toBe("Established")
    const paths = Association.info(lb.client).paths
    expect(paths.find((p) => p.host === serverHosts[0])!.active).toBe(false)
    expect(paths.find((p) => p.host === serverHosts[1])!.active).toBe(true)
    expect(lb.clientEvents).toContainEqual({
      _tag: "PathChange",
      host: serverHosts[0],
      state: "Unreachable",
    })
    expect(messages(lb.serverEvents).map((m) => m.data[0])).toEqual(
      Array.from({ length: sentCount }, (_, i) => i & 0xff),
    )
  })
})
