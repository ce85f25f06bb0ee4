/**
 * RFC 9260 §6.1: before DATA goes out, a SACK that is owed (held by the delayed-SACK timer,
 * §6.2) is bundled with it. A peer that holds new DATA while any is unacknowledged (Nagle,
 * usrsctp's default) otherwise sends a request/answer stream in bursts one SACK delay
 * (200 ms) apart: a loopback capture under usrsctp's `client` showed echoes in bursts of 10
 * every 200 ms at 50 lines/s, which was most of the echo gap `bench/echoGap.ts` measured.
 */
import { describe, expect, it } from "vitest"
import * as Association from "../src/Association.ts"
import type * as Chunk from "../src/Chunk.ts"
import { messages } from "./associationHarness.ts"
import { dataChunk, fromPeer, establishedPair as setUp } from "./support/peerPackets.ts"

const text = (value: string) => new TextEncoder().encode(value)

/** One DATA chunk from the peer (the next TSN), stepped into `state`. */
const receiveOne = (state: Association.State, nowMs: number) =>
  fromPeer(state, [dataChunk(state.tracker!.cumulative + 1, text("request"))], nowMs)

const send = (state: Association.State, nowMs: number) =>
  Association.step(state, {
    _tag: "Command",
    command: { _tag: "Send", stream: 0, ppid: 7, data: text("answer"), unordered: false },
    nowMs,
  }).outputs

/** The chunk tags of each packet the outputs send, in order. */
const packets = (outputs: ReadonlyArray<Association.Output>) =>
  outputs.flatMap((output) =>
    output._tag === "Send" ? [output.message.chunks.map((chunk: Chunk.Chunk) => chunk._tag)] : [],
  )

describe("§6.1: an owed SACK goes with the DATA that leaves", () => {
  it("one DATA in waits for the delayed SACK; the answer carries it, SACK first, and the timer stops", () => {
    const lb = setUp(21)
    const received = receiveOne(lb.client, lb.nowMs)
    // §6.2: one packet, no gap: the SACK is delayed.
    expect(packets(received)).toEqual([])
    expect(lb.client.timers.SACK).toBeDefined()
    const answered = send(lb.client, lb.nowMs + 3)
    expect(packets(answered)).toEqual([["Sack", "Data"]])
    expect(lb.client.timers.SACK).toBeUndefined()
    expect(answered.some((o) => o._tag === "CancelTimer" && o.timer === "SACK")).toBe(true)
  })

  it("nothing owed: the DATA goes alone", () => {
    const lb = setUp(22)
    expect(lb.client.timers.SACK).toBeUndefined()
    expect(packets(send(lb.client, lb.nowMs))).toEqual([["Data"]])
  })

  it("a peer that holds new DATA until its last is acknowledged gets an answer per request, not per SACK delay", () => {
    const lb = setUp(23)
    const rounds = 20
    const ackedAtMs: Array<number> = []
    for (let round = 0; round < rounds; round++) {
      // The peer (Nagle): its next request only once nothing of its own is in flight.
      expect(lb.run(() => lb.client.flightBytes === 0, 10_000)).toBe(true)
      const sentAtMs = lb.nowMs
      lb.send(true, {
        _tag: "Send",
        stream: 0,
        ppid: 7,
        data: text(`request ${round}`),
        unordered: false,
      })
      // The server answers each request as it arrives (an echo service).
      expect(lb.run(() => messages(lb.serverEvents).length === round + 1, 10_000)).toBe(true)
      lb.send(false, {
        _tag: "Send",
        stream: 0,
        ppid: 7,
        data: text(`answer ${round}`),
        unordered: false,
      })
      expect(lb.run(() => messages(lb.clientEvents).length === round + 1, 10_000)).toBe(true)
      // The answer acknowledged the request: the peer may send the next one at once.
      expect(lb.client.flightBytes).toBe(0)
      ackedAtMs.push(lb.nowMs - sentAtMs)
    }
    // Two one-way delays (5 ms each in the harness), never the 200 ms SACK delay.
    expect(Math.max(...ackedAtMs)).toBeLessThan(Association.defaultConfig.sackDelayMs)
  })
})
