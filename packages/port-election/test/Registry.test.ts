import { describe, expect, it } from "@effect/vitest"
import { Grants } from "../src/Grants.ts"
import { protocolVersion } from "../src/internal/protocol.ts"
import * as Registry from "../src/Registry.ts"
import { register } from "./support/registrations.ts"

const entry = (instanceId: string): Registry.Entry => ({
  member: { instanceId, pid: 100, startedAtMs: 1, metadata: {}, joinedAtMs: 5 },
  holdingsKnown: true,
  cutOff: false,
})

const state = (overrides: Partial<Registry.State> = {}): Registry.State => ({
  grants: new Grants(),
  members: new Map(),
  expected: new Set(),
  joinedAtMs: 0,
  blind: false,
  designated: undefined,
  successor: undefined,
  resigning: false,
  ...overrides,
})

const self: Registry.Registrant = {
  instanceId: "sup",
  pid: 1,
  startedAtMs: 0,
  metadata: {},
  joinedAtMs: 0,
}

const timing: Registry.Settings = {
  graceMs: 3_000,
  keepAliveIntervalMs: 200,
  keepAliveTimeoutMs: 1_500,
}

describe("Registry, the supervisor's decisions", () => {
  it("refuses a member whose timing differs; one that sends none is taken as agreeing", () => {
    expect(Registry.refusalOf("app", timing, register("a", { settings: timing }))).toBeUndefined()
    expect(Registry.refusalOf("app", timing, register("a"))).toBeUndefined()
    for (const differing of [
      { ...timing, graceMs: 2_999 },
      { ...timing, keepAliveIntervalMs: 100 },
      { ...timing, keepAliveTimeoutMs: 600 },
    ]) {
      expect(Registry.refusalOf("app", timing, register("a", { settings: differing }))).toBe(
        "DifferentSettings",
      )
    }
  })

  it("asks the OS about a member's pid only in the same pid namespace", () => {
    const member = { ...entry("a").member, pidNamespace: "pid:[1]" }
    expect(Registry.pidVisible(member, "pid:[1]")).toBe(true)
    expect(Registry.pidVisible(member, "pid:[2]")).toBe(false)
    expect(Registry.pidVisible(member, undefined)).toBe(false)
    expect(Registry.pidVisible(entry("a").member, "pid:[1]")).toBe(false)
  })

  it("refuses another program, another version and a registration over its limits", () => {
    expect(Registry.refusalOf("app", timing, register("a"))).toBeUndefined()
    expect(Registry.refusalOf("other", timing, register("a"))).toBe("DifferentProgram")
    expect(Registry.refusalOf("app", timing, register("a", { version: protocolVersion + 1 }))).toBe(
      "IncompatibleVersion",
    )
    expect(Registry.refusalOf("app", timing, register(""))).toBe("InvalidRegistration")
    expect(Registry.refusalOf("app", timing, register("a", { pid: 0 }))).toBe("InvalidRegistration")
    expect(
      Registry.refusalOf(
        "app",
        timing,
        register("a", { holdings: [{ resource: "r", limit: 1, permits: 2 }] }),
      ),
    ).toBe("InvalidRegistration")
    expect(
      Registry.invalidRegistration(
        register("a", { previous: ["x".repeat(Registry.registration.instanceIdLengthMax + 1)] }),
      ),
    ).toBe("previous registry with an instance id too long")
  })

  it("tells the same process by pid and start time", () => {
    const member = entry("a").member
    expect(Registry.sameProcess(member, register("a"))).toBe(true)
    expect(Registry.sameProcess(member, register("a", { pid: 101 }))).toBe(false)
    expect(Registry.sameProcess(member, register("a", { startedAtMs: 2 }))).toBe(false)
  })

  it("waits for the previous subordinates, not for itself nor the supervisor it lost", () => {
    const members = [
      { ...entry("old").member, role: "supervisor" as const, holdings: [], waiting: [] },
      { ...entry("me").member, role: "subordinate" as const, holdings: [], waiting: [] },
      { ...entry("b").member, role: "subordinate" as const, holdings: [], waiting: [] },
    ]
    expect(Registry.previousSubordinates(members, "me", "old")).toEqual(["b"])
    expect(Registry.sawRegistry(members, "me")).toBe(true)
    expect(Registry.sawRegistry(members, "old")).toBe(false)
  })

  it("lists the supervisor first, then members with what they hold and wait for", () => {
    const registry = state({ members: new Map([["a", entry("a")]]) })
    registry.grants.acquire("a", "a1", "lock", 1)
    registry.grants.acquire("sup", "s1", "lock", 1)
    const members = Registry.memberList(registry, self)
    expect(members.map((m) => [m.instanceId, m.role, m.holdings, m.waiting])).toEqual([
      ["sup", "supervisor", [], ["lock"]],
      ["a", "subordinate", [{ resource: "lock", limit: 1, permits: 1 }], []],
    ])
    expect(Registry.memberList(registry, self, ["a"]).map((m) => m.instanceId)).toEqual(["a"])
  })

  it("names the successor in the Welcome and the registry once it stands by", () => {
    const registry = state()
    expect(Registry.welcomeOf(registry, "sup", [])).toEqual({
      _tag: "Welcome",
      supervisorId: "sup",
      lost: [],
    })
    registry.successor = { instanceId: "a", address: "tcp://127.0.0.1:5000" }
    expect(Registry.welcomeOf(registry, "sup", []).successor).toEqual(registry.successor)
    expect(Registry.registryMessage(registry, [])).toEqual({
      _tag: "Members",
      members: [],
      successor: registry.successor,
    })
  })

  it("designates the oldest member once, not while previous members re-register", () => {
    const registry = state({
      members: new Map([
        ["a", entry("a")],
        ["b", entry("b")],
      ]),
    })
    registry.grants.frozen = true
    expect(Registry.designate(registry)).toBeUndefined()
    registry.grants.frozen = false
    expect(Registry.designate(registry)?.member.instanceId).toBe("a")
    expect(Registry.designate(registry)).toBeUndefined()
    registry.successor = { instanceId: "a", address: "x" }
    expect(Registry.undesignate(registry, "b")).toBe(false)
    expect(Registry.undesignate(registry, "a")).toBe(true)
    expect(registry.successor).toBeUndefined()
    registry.members.delete("a")
    // A member whose connection is gone (its permits reserved) is never designated.
    registry.members.get("b")!.cutOff = true
    expect(Registry.designate(registry)).toBeUndefined()
    registry.members.get("b")!.cutOff = false
    expect(Registry.designate(registry)?.member.instanceId).toBe("b")
  })

  it("a blind supervisor frozen: designates anyway, and waits for the registry a member had", () => {
    const registry = state({ blind: true, members: new Map([["a", entry("a")]]) })
    registry.grants.frozen = true
    expect(Registry.thawDue(registry)).toBe(false)
    expect(Registry.designate(registry)?.member.instanceId).toBe("a")
    const lost = Registry.adoptHoldings(
      registry,
      "sup",
      register("a", {
        holdings: [{ resource: "lock", limit: 1, permits: 1 }],
        previous: ["a", "b", "sup"],
      }),
    )
    expect(lost).toEqual([])
    expect(registry.blind).toBe(false)
    // "a" is a member and re-registered, "sup" is itself: only "b" is waited for.
    expect([...registry.expected]).toEqual(["b"])
    expect(Registry.thawDue(registry)).toBe(false)
    Registry.adoptHoldings(registry, "sup", register("b"))
    expect(Registry.thawDue(registry)).toBe(true)
  })

  it("keeps no more permits than a semaphore has: the rest are lost", () => {
    const registry = state()
    registry.grants.frozen = true
    const holds = [{ resource: "sem", limit: 2, permits: 2 }]
    expect(Registry.adoptHoldings(registry, "sup", register("a", { holdings: holds }))).toEqual([])
    expect(Registry.adoptHoldings(registry, "sup", register("b", { holdings: holds }))).toEqual(
      holds,
    )
    expect(registry.grants.heldCount("sem")).toBe(2)
  })
})
