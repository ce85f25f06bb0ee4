import { describe, expect, it } from "@effect/vitest"
import { Machine as M } from "@understudy/machine"
import type { Message } from "../src/internal/protocol.ts"
import * as Subordinate from "../src/Subordinate.ts"
import { register } from "./support/registrations.ts"

const machine = Subordinate.make({
  graceMs: 3_000,
  keepAliveIntervalMs: 200,
  requestTimeoutMs: 5_000,
})

/** Steps `inputs` in turn from a fresh machine; the last state and every step's outputs. */
const run = (inputs: ReadonlyArray<M.Input<Message, Subordinate.Command>>) => {
  let state = machine.init({ self: "me", peers: [], nowMs: 0 }).state
  const steps: Array<ReadonlyArray<Subordinate.Output>> = []
  for (const input of inputs) {
    const next = machine.step(state, input)
    state = next.state
    steps.push(next.outputs)
  }
  return { state, steps }
}

const events = (outputs: ReadonlyArray<Subordinate.Output>) =>
  outputs.flatMap((o) => (o._tag === "Emit" ? [o.event._tag] : []))
const sends = (outputs: ReadonlyArray<Subordinate.Output>) =>
  outputs.flatMap((o) => (o._tag === "Send" ? [o.message] : []))

const lock = { resource: "lock", limit: 1, permits: 1 }

/** Same phase, holdings, requests, deadline and permits given up. */
const sameState = (a: Subordinate.State, b: Subordinate.State) =>
  JSON.stringify({
    ...a,
    held: [...a.held],
    waiting: [...a.waiting],
    abandoned: [...a.abandoned],
  }) ===
  JSON.stringify({ ...b, held: [...b.held], waiting: [...b.waiting], abandoned: [...b.abandoned] })
const connected = (
  connection: string,
  nowMs: number,
  holdings: ReadonlyArray<typeof lock> = [],
  waiting: ReadonlyArray<readonly [string, Subordinate.Waiting]> = [],
) =>
  M.command<Subordinate.Command>(
    { _tag: "Connected", connection, registration: register("me", { holdings }), waiting },
    nowMs,
  )
const welcome = (connection: string, nowMs: number, lost: ReadonlyArray<typeof lock> = []) =>
  M.receive<Message>(connection, { _tag: "Welcome", supervisorId: "sup", lost }, nowMs)

describe("the subordinate's machine", () => {
  it("registers, waits for the Welcome within the request time-out, then sends what waited", () => {
    const { steps, state } = run([
      connected("c1", 0, [], [["r1", { resource: "lock", limit: 1 }]]),
      welcome("c1", 10),
    ])
    expect(sends(steps[0]!).map((m) => m._tag)).toEqual(["Register"])
    expect(steps[0]).toContainEqual(M.setTimer(Subordinate.registerTimer, 5_000))
    expect(events(steps[1]!)).toContain("Registered")
    expect(steps[1]).toContainEqual(M.cancelTimer(Subordinate.registerTimer))
    expect(sends(steps[1]!)).toEqual([{ _tag: "Acquire", id: "r1", resource: "lock", limit: 1 }])
    expect(state.phase._tag).toBe("Registered")
  })

  it("no Welcome in time: tries again and closes the connection", () => {
    const { steps, state } = run([
      connected("c1", 0),
      M.timerFired(Subordinate.registerTimer, 5_000),
    ])
    expect(events(steps[1]!)).toEqual(["NotWelcomed", "Close"])
    expect(state.phase._tag).toBe("Electing")
  })

  it("gives its permits up at lastHeard + grace - interval after losing the supervisor", () => {
    const { steps, state } = run([
      connected("c1", 0, [lock]),
      welcome("c1", 10),
      M.command<Subordinate.Command>({ _tag: "Closed", connection: "c1", reason: "End" }, 1_000),
      M.command<Subordinate.Command>({ _tag: "Lost", lastHeardAtMs: 900 }, 1_000),
      M.timerFired(Subordinate.cutOffTimer, 3_700),
    ])
    expect(events(steps[2]!)).toEqual(["Ended"])
    // 900 + 3,000 - 200 - 1,000
    expect(steps[3]).toEqual([M.setTimer(Subordinate.cutOffTimer, 2_700)])
    expect(steps[4]).toEqual([M.emit({ _tag: "LosePermits", lost: [lock] })])
    expect(state.held.size).toBe(0)
    expect(state.abandoned.get("lock")).toBe(1)
  })

  it("a second Lost keeps the first deadline: a registration since that was never welcomed did not take the permits", () => {
    const closed = (connection: string, nowMs: number) =>
      M.command<Subordinate.Command>({ _tag: "Closed", connection, reason: "End" }, nowMs)
    const { steps, state } = run([
      connected("c1", 0, [lock]),
      welcome("c1", 10),
      closed("c1", 1_000),
      M.command<Subordinate.Command>({ _tag: "Lost", lastHeardAtMs: 900 }, 1_000),
      // Registered with the next supervisor, which dies before its Welcome.
      connected("c2", 1_100, [lock]),
      closed("c2", 1_500),
      M.command<Subordinate.Command>({ _tag: "Lost", lastHeardAtMs: 1_500 }, 1_500),
      M.timerFired(Subordinate.cutOffTimer, 3_700),
    ])
    expect(steps[3]).toEqual([M.setTimer(Subordinate.cutOffTimer, 2_700)])
    expect(events(steps[5]!)).toEqual(["NotWelcomed"])
    // Re-arming would move the deadline to 1,500 + 2,800 = 4,300 ms, past the first
    // supervisor's grace period (it grants the lock to another at 1,000 + 3,000 at the latest).
    expect(steps[6]).toEqual([])
    expect(steps[7]).toEqual([M.emit({ _tag: "LosePermits", lost: [lock] })])
    expect(state.held.size).toBe(0)
  })

  it("a Lost noticed after its deadline gives the permits up at once, a keep-alive interval before the grace period ends", () => {
    const { steps } = run([
      connected("c1", 0, [lock]),
      welcome("c1", 10),
      M.command<Subordinate.Command>({ _tag: "Closed", connection: "c1", reason: "End" }, 4_000),
      // Noticed late (a stalled process): 900 + 3,000 - 200 = 3,700 is past.
      M.command<Subordinate.Command>({ _tag: "Lost", lastHeardAtMs: 900 }, 4_000),
      // Noticed just inside: 100 ms before the interval's margin.
      connected("c2", 4_100, [lock]),
      welcome("c2", 4_110),
      M.command<Subordinate.Command>({ _tag: "Closed", connection: "c2", reason: "End" }, 6_700),
      M.command<Subordinate.Command>({ _tag: "Lost", lastHeardAtMs: 4_000 }, 6_700),
    ])
    expect(steps[3]).toEqual([M.setTimer(Subordinate.cutOffTimer, 0)])
    expect(steps[7]).toEqual([M.setTimer(Subordinate.cutOffTimer, 100)])
  })

  it("Supervising changes something exactly when a deadline is armed or permits were given up", () => {
    const supervising = M.command<Subordinate.Command>({ _tag: "Supervising" }, 2_000)
    const lostAt = (nowMs: number) => [
      connected("c1", 0, [lock]),
      welcome("c1", 10),
      M.command<Subordinate.Command>({ _tag: "Closed", connection: "c1", reason: "End" }, nowMs),
    ]
    const cases = [
      // Nothing armed, nothing given up: a registered member, and one that lost its
      // supervisor but did not arm the deadline (the successor that bound the address).
      { inputs: [connected("c1", 0, [lock]), welcome("c1", 10)], changes: false },
      { inputs: lostAt(1_000), changes: false },
      // The deadline armed.
      {
        inputs: [
          ...lostAt(1_000),
          M.command<Subordinate.Command>({ _tag: "Lost", lastHeardAtMs: 900 }, 1_000),
        ],
        changes: true,
      },
      // A permit released while electing: given up, to forget.
      {
        inputs: [
          ...lostAt(1_000),
          M.command<Subordinate.Command>({ _tag: "Release", resource: "lock" }, 1_500),
        ],
        changes: true,
      },
    ]
    const armedOrGivenUp = (state: Subordinate.State) =>
      state.cutOffArmed || state.abandoned.size > 0
    for (const { inputs, changes } of cases) {
      const { state } = run(inputs)
      expect(armedOrGivenUp(state)).toBe(changes)
      const next = machine.step(state, supervising)
      expect(next.outputs.length > 0 || !sameState(next.state, state)).toBe(changes)
      expect(armedOrGivenUp(next.state)).toBe(false)
    }
  })

  it("a registration that still claimed a permit given up meanwhile hands it back once welcomed", () => {
    const lost = (nowMs: number) =>
      M.command<Subordinate.Command>({ _tag: "Closed", connection: "c1", reason: "End" }, nowMs)
    const { steps, state } = run([
      connected("c1", 0, [lock]),
      welcome("c1", 10),
      lost(100),
      M.command<Subordinate.Command>({ _tag: "Lost", lastHeardAtMs: 100 }, 100),
      // The registration to the next supervisor claims the lock...
      connected("c2", 150, [lock]),
      // ...which is released before its Welcome came.
      M.command<Subordinate.Command>({ _tag: "Release", resource: "lock" }, 160),
      welcome("c2", 170),
    ])
    expect(sends(steps[5]!)).toEqual([])
    expect(steps[6]).toContainEqual(M.cancelTimer(Subordinate.cutOffTimer))
    expect(sends(steps[6]!)).toEqual([{ _tag: "Release", resource: "lock" }])
    expect(state.abandoned.size).toBe(0)
    expect(state.cutOffArmed).toBe(false)
  })

  it("a permit granted for a request given up goes back; a resigning supervisor's end is no failure", () => {
    const { steps } = run([
      connected("c1", 0),
      welcome("c1", 10),
      M.receive<Message>("c1", { _tag: "Granted", id: "gone", resource: "lock" }, 20),
      M.receive<Message>("c1", { _tag: "Resigning" }, 30),
      M.command<Subordinate.Command>({ _tag: "Closed", connection: "c1", reason: "End" }, 31),
    ])
    expect(sends(steps[2]!)).toEqual([{ _tag: "Release", resource: "lock" }])
    expect(steps[3]).toEqual([M.emit({ _tag: "Close", connection: "c1" })])
    expect(steps[4]).toEqual([M.emit({ _tag: "Ended", connection: "c1", resigned: true })])
  })

  it("a takeover's holdings are taken back once the registry comes, not at its Welcome", () => {
    const { steps } = run([
      connected("c1", 0, [lock]),
      welcome("c1", 10),
      M.command<Subordinate.Command>({ _tag: "Closed", connection: "c1", reason: "End" }, 100),
      M.command<Subordinate.Command>({ _tag: "Lost", lastHeardAtMs: 100 }, 100),
      M.command<Subordinate.Command>(
        {
          _tag: "Connected",
          connection: "link",
          registration: register("me", { holdings: [lock] }),
          waiting: [],
          takeover: { _tag: "Welcome", supervisorId: "next", lost: [] },
        },
        120,
      ),
      M.receive<Message>("link", { _tag: "Members", members: [] }, 130),
    ])
    expect(sends(steps[4]!).map((m) => m._tag)).toEqual(["Register"])
    expect(steps[4]).not.toContainEqual(M.cancelTimer(Subordinate.cutOffTimer))
    expect(steps[5]).toContainEqual(M.cancelTimer(Subordinate.cutOffTimer))
  })
})
