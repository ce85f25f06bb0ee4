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

type View = FastSim.View<RoleSim.NodeState, RoleSim.Wire, RoleSim.Cmd, RoleSim.Note>

const oneServer: FastSim.Invariant<RoleSim.NodeState, RoleSim.Wire, RoleSim.Cmd, RoleSim.Note> = {
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

const runOne = (seed: number, options: RoleSim.Options = {}) =>
  FastSim.run({
    machine: RoleSim.machine(options),
    nodes: RoleSim.nodes,
    seed,
    durationMs,
    link: { ...FastSim.healthyLink, latency: { _tag: "Fixed", ms: 2 } },
    faults: {
      startMs: 300,
      endMs: faultsEndMs,
      maxDown: 1,
      gapMs: { minMs: 100, maxMs: 700 },
      restartAtEnd: true,
    },
    commands: RoleSim.pauses(seed, faultsEndMs),
    invariants: [oneServer, lastHolder()],
  })

/** Unfenced: the tie-break never deposes both nodes (a deposed node stays so until restarted). */
const notBothDeposed: FastSim.Invariant<
  RoleSim.NodeState,
  RoleSim.Wire,
  RoleSim.Cmd,
  RoleSim.Note
> = {
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
  let final: View | undefined
  const report = FastSim.run({
    machine: RoleSim.machine({ fenced: false }),
    nodes: RoleSim.nodes,
    seed,
    durationMs: unfencedDurationMs,
    link: { ...FastSim.healthyLink, latency: { _tag: "Fixed", ms: 2 } },
    faults: {
      startMs: 300,
      endMs: faultsEndMs,
      maxDown: 1,
      gapMs: { minMs: 100, maxMs: 700 },
      restartAtEnd: true,
    },
    commands: RoleSim.pauses(seed, faultsEndMs),
    invariants: [
      notBothDeposed,
      {
        name: "(keeps the last view)",
        check: (view: View) => {
          final = view
          return undefined
        },
      },
    ],
  })
  const serving = [...final!.states].filter(([, state]) => ClusterRole.serving(state.role))
  return { report, serving, final: final! }
}

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
    const report = FastSim.run({
      machine: RoleSim.machine(),
      nodes: RoleSim.nodes,
      seed: 1,
      durationMs: 4_000,
      link: { ...FastSim.healthyLink, latency: { _tag: "Fixed", ms: 2 } },
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
    let final: View | undefined
    const report = FastSim.run({
      machine: RoleSim.machine(relinkGraceMs === undefined ? {} : { relinkGraceMs }),
      nodes: RoleSim.nodes,
      seed: 1,
      durationMs: 3_000,
      link: { ...FastSim.healthyLink, latency: { _tag: "Fixed", ms: 2 } },
      schedule: [],
      commands: [{ atMs: 1, node: "b", command: { _tag: "Pause", forMs: 900 } }],
      invariants: [
        oneServer,
        lastHolder(),
        {
          name: "(keeps the last view)",
          check: (view: View) => {
            final = view
            return undefined
          },
        },
      ],
    })
    const a = final!.states.get("a")!
    const b = final!.states.get("b")!
    return { report, a, b }
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
    const { report, serving, final } = (() => {
      let last: View | undefined
      const run = FastSim.run({
        machine: RoleSim.machine({ fenced: false }),
        nodes: RoleSim.nodes,
        seed: 1,
        durationMs: 3_000,
        link: { ...FastSim.healthyLink, latency: { _tag: "Fixed", ms: 2 } },
        schedule: [
          { atMs: 1_000, fault: { _tag: "Partition", side: ["a"], other: ["b"], oneWay: false } },
          { atMs: 2_000, fault: { _tag: "Heal" } },
        ],
        invariants: [
          notBothDeposed,
          {
            name: "(keeps the last view)",
            check: (view: View) => {
              last = view
              return undefined
            },
          },
        ],
      })
      const on = [...last!.states].filter(([, state]) => ClusterRole.serving(state.role))
      return { report: run, serving: on, final: last! }
    })()
    const notes = report.events.map(({ atMs, node, event }) => ({ atMs, node, ...event }))
    expect(notes).toContainEqual(expect.objectContaining({ node: "b", _tag: "TakeOver", epoch: 1 }))
    const down = notes.filter((note) => note._tag === "SteppedDown")
    expect(down).toEqual([expect.objectContaining({ node: "a", epoch: 0 })])
    expect(down[0]!.atMs).toBeGreaterThanOrEqual(2_000)
    expect(serving.map(([node]) => node)).toEqual(["b"])
    expect(final.states.get("a")!.role.role).toBe("deposed")
  })
})
