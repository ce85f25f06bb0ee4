/**
 * The shipped role machine (`ClusterRole`) under thousands of seeded FastSim schedules (see
 * `support/roleSim.ts` for the model): crashes, restarts as the standby (failback),
 * partitions, degraded links and pauses past the lease. Each schedule checks, after every
 * step, that no two nodes serve with a live lease and that every takeover starts from the
 * last holder's replication (or from none) — never from a primary the fence moved past.
 *
 * `UNDERSTUDY_ROLE_SIM_SCHEDULES` sets the count (default 2,000); a failure prints
 * `SEED=<n>`: replay with `UNDERSTUDY_SEED=<n> npx vitest run test/ClusterRole.sim.test.ts`.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastSim, Seeds } from "@understudy/testkit"
import * as ClusterRole from "../src/ClusterRole.ts"
import * as RoleSim from "./support/roleSim.ts"

const schedules = (() => {
  const text = process.env.UNDERSTUDY_ROLE_SIM_SCHEDULES
  const count = text === undefined || text === "" ? 2_000 : Number(text)
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new Error(`UNDERSTUDY_ROLE_SIM_SCHEDULES must be a positive whole number, not ${text}`)
  }
  return count
})()

const durationMs = 5_000
const faultsEndMs = 4_000

type View = RoleSim.View

const oneServer: RoleSim.Invariant = {
  name: "never two nodes serving with a live lease",
  check: (view: View) => {
    const serving = [...view.states].filter(([, state]) => RoleSim.transmits(state, view.nowMs))
    return serving.length > 1
      ? `${serving.map(([node, state]) => `${node}@${state.epoch}`).join(" and ")} both serve`
      : undefined
  },
}

/** Checks the takeovers emitted since the last call (the event list only grows). */
const lastHolder = () => {
  let seen = 0
  return {
    name: "a takeover starts from the last holder's replication, or from none",
    check: (view: View) => {
      for (; seen < view.events.length; seen++) {
        const { node, event } = view.events[seen]!
        if (event._tag !== "TakeOver") continue
        if (event.copyEpoch !== undefined && event.copyEpoch !== event.epoch - 1) {
          return `${node} took over at epoch ${event.epoch} from a copy of epoch ${event.copyEpoch}`
        }
      }
      return undefined
    },
  }
}

/** The generated faults of every seeded schedule. */
const faults = {
  startMs: 300,
  endMs: faultsEndMs,
  maxDown: 1,
  gapMs: { minMs: 100, maxMs: 700 },
  restartAtEnd: true,
}

const runOne = (seed: number, options: RoleSim.Options = {}) =>
  RoleSim.run({
    options,
    seed,
    durationMs,
    faults,
    commands: RoleSim.pauses(seed, faultsEndMs),
    invariants: [oneServer, lastHolder()],
  }).report

/** Unfenced: the tie-break never deposes both nodes (a deposed node stays so until restarted). */
const notBothDeposed: RoleSim.Invariant = {
  name: "two serving nodes that meet: exactly one steps down, never both",
  check: (view: View) =>
    view.states.size === RoleSim.nodes.length &&
    [...view.states.values()].every((state) => state.role.role === "deposed")
      ? `both nodes stepped down: ${[...view.states].map(([node, state]) => `${node}@${state.role.epoch}`).join(", ")}`
      : undefined,
}

/** Unfenced runs: faults until `faultsEndMs`, pauses until 6.5 s at most, then healthy. */
const unfencedDurationMs = 8_000

/**
 * One unfenced schedule; at its end (everything healed and resumed for 1.5 s) at most one
 * node serves: a split brain the faults made was resolved.
 */
const runUnfenced = (seed: number) => {
  const { report, final } = RoleSim.run({
    options: { fenced: false },
    seed,
    durationMs: unfencedDurationMs,
    faults,
    commands: RoleSim.pauses(seed, faultsEndMs),
    invariants: [notBothDeposed],
  })
  return { report, serving: servingAt(final) }
}

/** The nodes serving in `view`. */
const servingAt = (view: View) =>
  [...view.states].filter(([, state]) => ClusterRole.serving(state.role))

describe("ClusterRole simulation: the shipped role machine under crashes, failback, partitions and pauses", () => {
  it(`${schedules} seeded schedules: one server at a time, no takeover from a stale copy`, () => {
    const started = performance.now()
    let takeovers = 0
    let refused = 0
    let applied = 0
    for (const seed of Seeds.seeds(schedules)) {
      const report = runOne(seed)
      for (const { event } of report.events) {
        if (event._tag === "TakeOver") takeovers++
        if (event._tag === "Refused") refused++
        if (event._tag === "Applied") applied++
      }
    }
    console.log(
      `[role-sim] schedules ${schedules}: takeovers ${takeovers}, replication applied ${applied}, stale replication refused ${refused}, ${Math.round(performance.now() - started)} ms`,
    )
    // The schedules reach what they are for: failovers, and a stale primary's replication
    // arriving after the takeover (only when many schedules run: a replay runs one).
    if (!Seeds.isReplay() && schedules >= 500) {
      expect(takeovers).toBeGreaterThan(schedules / 4)
      expect(refused).toBeGreaterThan(0)
    }
  })

  it("a stale primary's replication after the takeover: paused past its lease, it reaches the node restarted as the standby, which refuses it", () => {
    // a serves epoch 1 and is paused at 1 s for 1.5 s; b takes over (epoch 2), crashes at
    // 1.8 s and rejoins as the standby at 1.9 s; a resumes at 2.5 s, links to b and resends
    // its copy before its next keep-alive tells it the lease is gone.
    const { report } = RoleSim.run({
      seed: 1,
      durationMs: 4_000,
      schedule: [
        { atMs: 1_800, fault: { _tag: "Crash", node: "b", mode: "process" } },
        { atMs: 1_900, fault: { _tag: "Restart", node: "b" } },
      ],
      commands: [{ atMs: 1_025, node: "a", command: { _tag: "Pause", forMs: 1_475 } }],
      invariants: [oneServer, lastHolder()],
    })
    const notes = report.events.map(({ atMs, node, event }) => ({ atMs, node, ...event }))
    expect(notes).toContainEqual(
      expect.objectContaining({ node: "b", _tag: "TakeOver", epoch: 2, copyEpoch: 1 }),
    )
    const refused = notes.filter((note) => note._tag === "Refused")
    expect(refused).toEqual([expect.objectContaining({ node: "b", epoch: 1, floor: 2 })])
    expect(refused[0]!.atMs).toBeGreaterThan(2_500)
    // The refused link made b no takeover candidate: nobody took over from the stale copy.
    expect(notes.filter((note) => note._tag === "TakeOver")).toHaveLength(1)
  })

  /**
   * b, the standby, is starved from its start for 0.9 s: a's link to it is completed by b's
   * kernel, a ships, hears nothing and its keep-alive ends the link and dials again, several
   * times. b then reads, in order, the first connection (link up, a's copy, its end) and the
   * next ones. The end of a connection a already replaced is no failure of a.
   */
  const starvedStandby = (relinkGraceMs?: number) => {
    const { report, final } = RoleSim.run({
      options: relinkGraceMs === undefined ? {} : { relinkGraceMs },
      seed: 1,
      durationMs: 3_000,
      schedule: [],
      commands: [{ atMs: 1, node: "b", command: { _tag: "Pause", forMs: 900 } }],
      invariants: [oneServer, lastHolder()],
    })
    return { report, a: final.states.get("a")!, b: final.states.get("b")! }
  }

  it("a standby starved at start reads its primary's replaced link late: it stays the linked secondary, nobody is deposed", () => {
    const { report, a, b } = starvedStandby()
    const notes = report.events.map(({ node, event }) => ({ node, ...event }))
    expect(notes.filter((note) => note._tag === "TakeOver")).toEqual([])
    expect(notes).toContainEqual(expect.objectContaining({ node: "b", _tag: "Applied", epoch: 1 }))
    expect(a.role.role).toBe("primary")
    expect(RoleSim.transmits(a, 3_000)).toBe(true)
    expect(b.role.role).toBe("secondary")
    expect(b.role.linked).toBe(true)
    expect(b.linkedTo).toBe("a")
  })

  it("with no relink grace the starved standby begins the takeover, then takes its live primary's new link back", () => {
    const { report, a, b } = starvedStandby(0)
    expect(report.events.filter(({ event }) => event._tag === "TakeOver")).toEqual([])
    // Its acquisition is still waiting for the lease a keeps alive.
    expect(b.acquiring).toBe(true)
    expect(b.role.role).toBe("secondary")
    expect(b.linkedTo).toBe("a")
    expect(a.role.role).toBe("primary")
  })

  /**
   * Unfenced (so a takeover is at once, with nothing to wait for but the role): at 1 s `fault`
   * or `command` strikes a, the primary; returns b's takeovers and the run's end.
   */
  const struckPrimary = (
    strike: Pick<Parameters<typeof RoleSim.run>[0], "schedule" | "commands">,
    probe = true,
  ) => {
    const { report, final } = RoleSim.run({
      options: { fenced: false, probe },
      seed: 1,
      durationMs: 4_000,
      schedule: [],
      ...strike,
      invariants: [notBothDeposed],
    })
    const takeovers = report.events.filter(
      ({ node, event }) => node === "b" && event._tag === "TakeOver",
    )
    return { takeovers, final }
  }

  it("a live primary slow to link again (its link cut, or starved) answers the probe: its standby waits past the grace, nobody takes over", () => {
    // a's link ends at 1 s and a dials again only at 2.2 s: 8 relink graces of b's (150 ms).
    const commands = [
      { atMs: 1_000, node: "a", command: { _tag: "Relink", afterMs: 1_200 } },
    ] as const
    const { takeovers, final } = struckPrimary({ commands: [...commands] })
    expect(takeovers).toEqual([])
    expect(final.states.get("a")!.role.role).toBe("primary")
    expect(final.states.get("b")!.role.role).toBe("secondary")
    expect(final.states.get("b")!.linkedTo).toBe("a")
    // The grace alone would take the live primary over once it ran out.
    const unprobed = struckPrimary({ commands: [...commands] }, false)
    expect(unprobed.takeovers.map(({ atMs }) => atMs)).toEqual([
      expect.toSatisfy((atMs: number) => atMs >= 1_150 && atMs < 1_250),
    ])
  })

  it("a dead primary (its process gone, its host up) is taken over at once: its closed port ends the grace", () => {
    const commands = [{ atMs: 1_000, node: "a", command: { _tag: "Exit" } }] as const
    const { takeovers, final } = struckPrimary({ commands: [...commands] })
    // The link's end at 1,002 ms, the next tick's probe, the port unreachable 4 ms later.
    expect(takeovers.map(({ atMs }) => atMs)).toEqual([
      expect.toSatisfy((atMs: number) => atMs < 1_000 + 60),
    ])
    expect(final.states.get("a")!.exited).toBe(true)
    expect(final.states.get("b")!.role.role).toBe("active-secondary")
    // Without the probe the grace is waited out in full.
    const unprobed = struckPrimary({ commands: [...commands] }, false)
    expect(unprobed.takeovers.map(({ atMs }) => atMs)).toEqual([
      expect.toSatisfy((atMs: number) => atMs >= 1_150),
    ])
  })

  it("a cut link, no answer at all: the standby takes over once the link's time-out and the grace have run out, not before", () => {
    const { takeovers } = struckPrimary({
      schedule: [
        { atMs: 1_000, fault: { _tag: "Partition", side: ["a"], other: ["b"], oneWay: false } },
      ],
    })
    // The link's time-out (300 ms, checked every 50 ms tick) then the grace (150 ms).
    expect(takeovers.map(({ atMs }) => atMs)).toEqual([
      expect.toSatisfy((atMs: number) => atMs >= 1_000 + 300 + 150 && atMs < 1_000 + 600),
    ])
  })

  it("the checks bite: a secondary that never reads the store's epoch takes over from a stale copy in some schedule", () => {
    let caught: FastSim.FastSimFailure | undefined
    for (let seed = 1; seed <= 5_000 && caught === undefined; seed++) {
      try {
        runOne(seed, { ignoreStoreEpoch: true })
      } catch (error) {
        if (!(error instanceof FastSim.FastSimFailure)) throw error
        caught = error
      }
    }
    expect(caught?.invariant).toBe(
      "a takeover starts from the last holder's replication, or from none",
    )
  })

  it(`unfenced, ${schedules} seeded schedules: two serving nodes that meet again leave exactly one serving`, () => {
    let splitBrains = 0
    let stepDowns = 0
    for (const seed of Seeds.seeds(schedules)) {
      const { report, serving } = runUnfenced(seed)
      const takeovers = report.events.filter(({ event }) => event._tag === "TakeOver").length
      if (takeovers > 0) splitBrains++
      stepDowns += report.events.filter(({ event }) => event._tag === "SteppedDown").length
      expect(
        serving.length,
        `SEED=${seed}: ${serving.map(([node, state]) => `${node}@${state.role.epoch}`).join(" and ")} still serve at the end`,
      ).toBeLessThanOrEqual(1)
    }
    console.log(
      `[role-sim] unfenced, schedules ${schedules}: with a takeover ${splitBrains}, tie-break step-downs ${stepDowns}`,
    )
    if (!Seeds.isReplay() && schedules >= 500) expect(stepDowns).toBeGreaterThan(0)
  })

  it("unfenced, a partition heals with both nodes serving: the newer epoch serves on, though the other id sorts first", () => {
    // a, the primary, serves epoch 0; cut off from b, it serves on, and b takes over at
    // epoch 1 (a split brain, as unfenced it must be). Healed, a dials b, which claims
    // epoch 1: a steps down, b serves on.
    const { report, final } = RoleSim.run({
      options: { fenced: false },
      seed: 1,
      durationMs: 3_000,
      schedule: [
        { atMs: 1_000, fault: { _tag: "Partition", side: ["a"], other: ["b"], oneWay: false } },
        { atMs: 2_000, fault: { _tag: "Heal" } },
      ],
      invariants: [notBothDeposed],
    })
    const serving = servingAt(final)
    const notes = report.events.map(({ atMs, node, event }) => ({ atMs, node, ...event }))
    expect(notes).toContainEqual(expect.objectContaining({ node: "b", _tag: "TakeOver", epoch: 1 }))
    const down = notes.filter((note) => note._tag === "SteppedDown")
    expect(down).toEqual([expect.objectContaining({ node: "a", epoch: 0 })])
    expect(down[0]!.atMs).toBeGreaterThanOrEqual(2_000)
    expect(serving.map(([node]) => node)).toEqual(["b"])
    expect(final.states.get("a")!.role.role).toBe("deposed")
  })
})
