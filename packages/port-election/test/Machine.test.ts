import { readFileSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Machine as M } from "@understudy/machine"
import * as Machine from "../src/Machine.ts"
import type * as Registry from "../src/Registry.ts"
import { register } from "./support/registrations.ts"

const settings: Registry.Settings = {
  graceMs: 3_000,
  keepAliveIntervalMs: 200,
  keepAliveTimeoutMs: 1_500,
}

const takeover = (overrides: Partial<Machine.Takeover> = {}): Machine.Takeover => ({
  expected: [],
  blind: false,
  announced: [],
  standingBy: [],
  holdings: [],
  waiting: [],
  ...overrides,
})

const make = (overrides: Partial<Machine.Takeover> = {}) =>
  Machine.make({
    program: "app",
    settings,
    self: { instanceId: "sup", pid: 1, startedAtMs: 0, metadata: {} },
    requestTimeoutMs: 5_000,
    membersBatchMs: 25,
    takeover: takeover(overrides),
  })

const sends = (outputs: ReadonlyArray<Machine.Output>, to: string) =>
  outputs.flatMap((o) => (o._tag === "Send" && o.to === to ? [o.message] : []))

const grants = (outputs: ReadonlyArray<Machine.Output>, to: string) =>
  sends(outputs, to).filter((message) => message._tag === "Granted")

describe("the supervisor's machine", () => {
  it("welcomes a registration, tells the application, and leaves the state it was given as it was", () => {
    const machine = make()
    const start = machine.init({ self: "sup", peers: [], nowMs: 0 })
    const before = JSON.stringify(Machine.members(start.state))
    const next = machine.step(start.state, M.receive("c1", register("a", { settings }), 10))
    // Its oldest (only) member is asked to be the successor.
    expect(sends(next.outputs, "c1")).toEqual([
      { _tag: "Welcome", supervisorId: "sup", lost: [] },
      { _tag: "Designate" },
    ])
    expect(M.events(next.outputs).map((e) => e._tag)).toContain("MemberJoined")
    expect(Machine.members(next.state).map((m) => m.instanceId)).toEqual(["sup", "a"])
    expect(JSON.stringify(Machine.members(start.state))).toBe(before)
    expect(start.state.members.size).toBe(0)
  })

  it("grants nothing new until the previous members are back with what they hold", () => {
    const machine = make({ expected: ["a"], announced: ["a", "b"] })
    let state = machine.init({ self: "sup", peers: [], nowMs: 0 }).state
    expect(state.grants.frozen).toBe(true)
    state = machine.step(state, M.receive("cb", register("b"), 1)).state
    const asked = machine.step(
      state,
      M.receive("cb", { _tag: "Acquire", id: "b:1", resource: "m", limit: 1 }, 2),
    )
    expect(grants(asked.outputs, "cb")).toEqual([])
    // "a" held the mutex under the previous supervisor: it keeps it, and "b" waits.
    const back = machine.step(
      asked.state,
      M.receive(
        "ca",
        register("a", { holdings: [{ resource: "m", limit: 1, permits: 1 }], settings }),
        3,
      ),
    )
    expect(back.state.grants.frozen).toBe(false)
    expect(grants(back.outputs, "cb")).toEqual([])
    expect(back.state.grants.heldCount("m")).toBe(1)
    const released = machine.step(
      back.state,
      M.receive("ca", { _tag: "Release", resource: "m" }, 4),
    )
    expect(grants(released.outputs, "cb")).toEqual([{ _tag: "Granted", id: "b:1", resource: "m" }])
  })

  it("keeps a cut-off holder's permits for the grace period, then gives them to the next", () => {
    const machine = make()
    let state = machine.init({ self: "sup", peers: [], nowMs: 0 }).state
    for (const [connection, id] of [
      ["ca", "a"],
      ["cb", "b"],
    ] as const) {
      state = machine.step(state, M.receive(connection, register(id), 1)).state
    }
    // Both named in a registry: a grant to a member nobody knows of waits for one.
    state = machine.step(state, M.timerFired(Machine.membersTimer, 30)).state
    state = machine.step(
      state,
      M.receive("ca", { _tag: "Acquire", id: "a:1", resource: "m", limit: 1 }, 31),
    ).state
    state = machine.step(
      state,
      M.receive("cb", { _tag: "Acquire", id: "b:1", resource: "m", limit: 1 }, 32),
    ).state
    const closed = machine.step(
      state,
      M.command({ _tag: "Closed", connection: "ca", reason: "reset" }, 40),
    )
    expect(closed.outputs).toContainEqual(M.setTimer("reserve:ca", settings.graceMs))
    expect(grants(closed.outputs, "cb")).toEqual([])
    expect(closed.state.members.get("a")?.cutOff).toBe(true)
    const over = machine.step(closed.state, M.timerFired("reserve:ca", 3_040))
    expect(grants(over.outputs, "cb")).toEqual([{ _tag: "Granted", id: "b:1", resource: "m" }])
    expect(M.events(over.outputs)).toContainEqual(
      expect.objectContaining({ _tag: "MemberLeft", reason: "reset" }),
    )
  })

  it("reads no process identity, clock or randomness: they come in as config and inputs", () => {
    const source = readFileSync(new URL("../src/Machine.ts", import.meta.url), "utf8")
    for (const impure of ["process.", "randomUUID", "Math.random", "Date.now", `from "effect"`]) {
      expect(source.includes(impure), impure).toBe(false)
    }
  })
})
