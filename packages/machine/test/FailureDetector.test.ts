import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as FailureDetector from "../src/FailureDetector.ts"
import * as Machine from "../src/Machine.ts"

const config = { intervalMs: 100, timeoutMs: 350 }
const detector = FailureDetector.make(config)

const heartbeat = (from: string, seq: number, incarnation = 0): FailureDetector.Message => ({
  _tag: "Heartbeat",
  from,
  incarnation,
  seq,
})

const start = (nowMs = 0) => detector.init({ self: "a", peers: ["b", "c"], nowMs })

describe("FailureDetector", () => {
  it("rejects a time-out not above the interval", () => {
    expect(FailureDetector.validate({ intervalMs: 100, timeoutMs: 100 })?.reason).toMatch(
      /greater than intervalMs/,
    )
    expect(FailureDetector.validate({ intervalMs: 0, timeoutMs: 100 })?.reason).toMatch(/positive/)
    expect(FailureDetector.validate({ intervalMs: 0, timeoutMs: 100 })?._tag).toBe(
      "FailureDetectorInvalidConfig",
    )
    expect(() => FailureDetector.make({ intervalMs: 100, timeoutMs: 50 })).toThrow(
      FailureDetector.InvalidConfig,
    )
    expect(FailureDetector.validate(config)).toBeUndefined()
  })

  it("init announces itself, arms the heartbeat and one time-out per peer", () => {
    const { state, outputs } = start(42)
    expect(outputs).toEqual([
      Machine.broadcast(heartbeat("a", 0, 42)),
      Machine.setTimer("heartbeat", 100),
      Machine.setTimer("timeout:b", 350),
      Machine.setTimer("timeout:c", 350),
    ])
    expect(state.incarnation).toBe(42)
    expect(state.nextSeq).toBe(1)
    expect(state.peers.b).toEqual({
      status: "Alive",
      sinceMs: 42,
      lastHeardMs: undefined,
      incarnation: undefined,
      seq: -1,
    })
  })

  it("ignores itself in the peer list", () => {
    const { state, outputs } = detector.init({ self: "a", peers: ["a", "b"], nowMs: 0 })
    expect(Object.keys(state.peers)).toEqual(["b"])
    expect(outputs.filter((o) => o._tag === "SetTimer")).toHaveLength(2)
  })

  it("broadcasts a heartbeat with the next sequence number on every interval", () => {
    const first = detector.step(start().state, Machine.timerFired("heartbeat", 100))
    expect(first.outputs).toEqual([
      Machine.broadcast(heartbeat("a", 1, 0)),
      Machine.setTimer("heartbeat", 100),
    ])
    const second = detector.step(first.state, Machine.timerFired("heartbeat", 200))
    expect(second.outputs[0]).toEqual(Machine.broadcast(heartbeat("a", 2, 0)))
  })

  it("suspects a peer when its time-out expires, once", () => {
    const suspect = detector.step(start().state, Machine.timerFired("timeout:b", 350))
    expect(Machine.events(suspect.outputs)).toEqual([
      { _tag: "Suspected", peer: "b", sinceMs: 350 },
    ])
    expect(suspect.state.peers.b?.status).toBe("Suspected")
    expect(suspect.state.peers.c?.status).toBe("Alive")
    expect(FailureDetector.suspected(suspect.state)).toEqual(["b"])
    const again = detector.step(suspect.state, Machine.timerFired("timeout:b", 700))
    expect(again.outputs).toEqual([])
    expect(again.state).toBe(suspect.state)
  })

  it("a heartbeat resets the peer's time-out and records when it was heard", () => {
    const { state, outputs } = detector.step(
      start().state,
      Machine.receive("b", heartbeat("b", 0, 7), 120),
    )
    expect(outputs).toEqual([Machine.setTimer("timeout:b", 350)])
    expect(state.peers.b).toMatchObject({
      status: "Alive",
      lastHeardMs: 120,
      incarnation: 7,
      seq: 0,
    })
  })

  it("a heartbeat from a suspected peer makes it alive again", () => {
    const suspect = detector.step(start().state, Machine.timerFired("timeout:b", 350))
    const revive = detector.step(suspect.state, Machine.receive("b", heartbeat("b", 3), 400))
    expect(Machine.events(revive.outputs)).toEqual([{ _tag: "Alive", peer: "b" }])
    expect(revive.outputs[0]).toEqual(Machine.setTimer("timeout:b", 350))
    expect(revive.state.peers.b).toMatchObject({ status: "Alive", sinceMs: 400, lastHeardMs: 400 })
  })

  it("ignores duplicated and overtaken heartbeats", () => {
    const heard = Machine.stepAll(detector, start().state, [
      Machine.receive("b", heartbeat("b", 5), 100),
      Machine.receive("b", heartbeat("b", 5), 110),
      Machine.receive("b", heartbeat("b", 4), 120),
    ])
    expect(heard.outputs).toEqual([Machine.setTimer("timeout:b", 350)])
    expect(heard.state.peers.b).toMatchObject({ seq: 5, lastHeardMs: 100 })
  })

  it("ignores senders that are not peers or claim another id", () => {
    const initial = start().state
    const stranger = detector.step(initial, Machine.receive("z", heartbeat("z", 0), 10))
    expect(stranger.state).toBe(initial)
    expect(stranger.outputs).toEqual([])
    const forged = detector.step(initial, Machine.receive("b", heartbeat("c", 0), 10))
    expect(forged.state).toBe(initial)
    expect(forged.outputs).toEqual([])
  })

  it("recognises a restarted peer by its later incarnation", () => {
    const before = Machine.stepAll(detector, start().state, [
      Machine.receive("b", heartbeat("b", 40, 0), 4000),
      Machine.timerFired("timeout:b", 4350),
    ])
    expect(before.state.peers.b?.status).toBe("Suspected")
    // b restarted at 5000: sequence numbers start again from 0 under a new incarnation.
    const after = Machine.stepAll(detector, before.state, [
      Machine.receive("b", heartbeat("b", 0, 5000), 5010),
      // A late packet of the old life does not count.
      Machine.receive("b", heartbeat("b", 41, 0), 5020),
    ])
    expect(Machine.events(after.outputs)).toEqual([
      { _tag: "Restarted", peer: "b", incarnation: 5000 },
      { _tag: "Alive", peer: "b" },
    ])
    expect(after.state.peers.b).toMatchObject({
      status: "Alive",
      incarnation: 5000,
      seq: 0,
      lastHeardMs: 5010,
    })
  })

  it("a restarted node begins a new incarnation from its clock", () => {
    const later = detector.init({ self: "a", peers: ["b"], nowMs: 9000 })
    expect(later.state.incarnation).toBe(9000)
    expect(later.outputs[0]).toEqual(Machine.broadcast(heartbeat("a", 0, 9000)))
  })

  it("the codec round-trips heartbeats and rejects anything else", () => {
    const bytes = FailureDetector.codec.encode(heartbeat("b", 3, 12))
    expect(Result.isSuccess(bytes)).toBe(true)
    if (Result.isSuccess(bytes)) {
      expect(FailureDetector.codec.decode(bytes.success)).toEqual(
        Result.succeed(heartbeat("b", 3, 12)),
      )
    }
    const garbage = [
      new TextEncoder().encode("{not json"),
      new TextEncoder().encode(JSON.stringify({ _tag: "Heartbeat", from: "b", seq: 1.5 })),
      new TextEncoder().encode(JSON.stringify({ _tag: "Other" })),
      new Uint8Array([0xff, 0xfe]),
    ]
    for (const payload of garbage) {
      expect(Result.isFailure(FailureDetector.codec.decode(payload))).toBe(true)
    }
  })
})
