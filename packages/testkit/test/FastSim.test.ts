/**
 * FastSim: determinism, timer, partition, crash / restart and link semantics on toy
 * machines, then the heartbeat failure detector with its completeness and accuracy
 * invariants over 2,000 seeded fault schedules, and broken detectors caught with their seed.
 * Replay one seed with `UNDERSTUDY_SEED=<n> npx vitest run test/FastSim.test.ts`.
 */
import { describe, expect, it } from "@effect/vitest"
import { FailureDetector, type Machine } from "@understudy/machine"
import { Codec, type SimNet } from "@understudy/transport"
import { Schema } from "effect"
import * as FastSim from "../src/FastSim.ts"
import * as Seeds from "../src/Seeds.ts"
import {
  accuracy,
  completeness,
  coverage,
  durationMs as fdDurationMs,
  faults as fdFaults,
  nodes as fdNodes,
  goodLink,
} from "./support/failureDetector.ts"

// ---- toy machines -------------------------------------------------------------------

/** Every node sends `{ from, n }` to every peer every `everyMs`, and emits what it receives. */
type Ping = { readonly from: string; readonly n: number }
type Heard = { readonly from: string; readonly n: number; readonly atMs: number }

const pinger = (
  everyMs: number,
): Machine.Machine<{ readonly self: string; readonly n: number }, Ping, never, Heard> => ({
  init: (context) => ({
    state: { self: context.self, n: 0 },
    outputs: [{ _tag: "SetTimer", timer: "tick", afterMs: everyMs }],
  }),
  step: (state, input) => {
    if (input._tag === "Receive") {
      const event = { from: input.message.from, n: input.message.n, atMs: input.nowMs }
      return { state, outputs: [{ _tag: "Emit", event }] }
    }
    return {
      state: { self: state.self, n: state.n + 1 },
      outputs: [
        { _tag: "Broadcast", message: { from: state.self, n: state.n } },
        { _tag: "SetTimer", timer: "tick", afterMs: everyMs },
      ],
    }
  },
})

const fixedLink = (ms: number, more: Partial<SimNet.LinkConfig> = {}): SimNet.LinkConfig => ({
  latency: { _tag: "Fixed", ms },
  loss: 0,
  duplicate: 0,
  reorder: 0,
  ...more,
})

/** Heard by `to` from `from` with arrival time in [fromMs, toMs). */
const heard = (
  events: ReadonlyArray<FastSim.Emitted<Heard>>,
  to: string,
  from: string,
  fromMs: number,
  toMs: number,
) =>
  events.filter(
    (item) =>
      item.node === to &&
      item.event.from === from &&
      item.event.atMs >= fromMs &&
      item.event.atMs < toMs,
  ).length

// ---- the failure detector's invariants (as in FailureDetector.sim.test.ts) ------------

const fdConfig: FailureDetector.Config = { intervalMs: 100, timeoutMs: 400 }

const fdRun = (
  config: FailureDetector.Config,
  seed: number,
  more: Partial<
    FastSim.Options<FailureDetector.State, FailureDetector.Message, never, FailureDetector.Event>
  > = {},
) =>
  FastSim.run({
    machine: FailureDetector.make(config),
    nodes: fdNodes,
    seed,
    durationMs: fdDurationMs,
    link: goodLink,
    faults: fdFaults,
    invariants: [completeness(config), accuracy(config)],
    describeState: (state) =>
      Object.entries(state.peers)
        .map(([peer, view]) => `${peer}=${view.status}@${view.sinceMs}/heard ${view.lastHeardMs}`)
        .join(" "),
    ...more,
  })

const failureOf = (run: () => unknown): FastSim.FastSimFailure => {
  try {
    run()
  } catch (error) {
    if (error instanceof FastSim.FastSimFailure) return error
    throw error
  }
  throw new Error("expected a FastSimFailure, the run passed")
}

// ---- tests --------------------------------------------------------------------------

describe("FastSim", () => {
  it("the same seed gives the same trace, byte for byte; another seed another", () => {
    const full = { traceLines: 1_000_000 }
    const first = fdRun(fdConfig, 42, full)
    const again = fdRun(fdConfig, 42, full)
    const other = fdRun(fdConfig, 43, full)
    const trace = first.formatTrace()
    expect(again.formatTrace()).toBe(trace)
    expect(again.schedule).toEqual(first.schedule)
    expect(again.steps).toBe(first.steps)
    expect(trace.split("\n").length).toBeGreaterThan(400)
    // The trace interleaves steps, faults and network events.
    expect(trace).toMatch(/ {2}n\d +timer heartbeat => broadcast \{"_tag":"Heartbeat"/)
    expect(trace).toMatch(/FAULT (crash|partition|link|restart|heal)/)
    expect(trace).toMatch(/duplicate → n\d/)
    expect(other.formatTrace()).not.toBe(trace)
  })

  it("keeps only the last traceLines lines", () => {
    const report = fdRun(fdConfig, 5, { traceLines: 10 })
    expect(report.formatTrace().split("\n")).toHaveLength(10)
    const full = fdRun(fdConfig, 5, { traceLines: 1_000_000 }).formatTrace().split("\n")
    expect(report.formatTrace()).toBe(full.slice(-10).join("\n"))
  })

  it("a timer set again replaces the earlier one; a cancelled timer never fires", () => {
    type Cmd = "reset" | "cancel" | "set"
    const machine: Machine.Machine<null, never, Cmd, string> = {
      init: () => ({ state: null, outputs: [{ _tag: "SetTimer", timer: "t", afterMs: 100 }] }),
      step: (state, input) => {
        if (input._tag === "TimerFired") {
          return {
            state,
            outputs: [{ _tag: "Emit", event: `fired ${input.timer} at ${input.nowMs}` }],
          }
        }
        if (input._tag === "Command") {
          switch (input.command) {
            case "reset":
              return { state, outputs: [{ _tag: "SetTimer", timer: "t", afterMs: 100 }] }
            case "cancel":
              return { state, outputs: [{ _tag: "CancelTimer", timer: "t" }] }
            case "set":
              return {
                state,
                outputs: [
                  { _tag: "SetTimer", timer: "t", afterMs: 10 },
                  { _tag: "SetTimer", timer: "u", afterMs: 10 },
                  // Cancelling what is not set does nothing.
                  { _tag: "CancelTimer", timer: "none" },
                ],
              }
          }
        }
        return { state, outputs: [] }
      },
    }
    const report = FastSim.run({
      machine,
      nodes: ["a"],
      seed: 1,
      durationMs: 1_000,
      invariants: [],
      commands: [
        { atMs: 50, node: "a", command: "reset" }, // t: 100 → 150
        { atMs: 160, node: "a", command: "reset" }, // t: 260
        { atMs: 200, node: "a", command: "cancel" }, // t never fires again
        { atMs: 500, node: "a", command: "set" }, // t and u at 510
        { atMs: 505, node: "a", command: "set" }, // both replaced: 515
      ],
    })
    expect(report.events.map((item) => item.event)).toEqual([
      "fired t at 150",
      "fired t at 515",
      "fired u at 515",
    ])
  })

  it("a timer and a message due at the same millisecond run in the order they were scheduled", () => {
    // Each node sends itself a message (1 ms link) and sets a 1 ms timer at init, in the
    // order its name says: both are due at 1 ms, and the one scheduled first runs first.
    const machine: Machine.Machine<null, string, never, string> = {
      init: ({ self }) => {
        const send: Machine.Output<string, string> = { _tag: "Send", to: self, message: "m" }
        const timer: Machine.Output<string, string> = { _tag: "SetTimer", timer: "t", afterMs: 1 }
        return { state: null, outputs: self === "send-first" ? [send, timer] : [timer, send] }
      },
      step: (state, input) => ({
        state,
        outputs:
          input._tag === "Command"
            ? []
            : [{ _tag: "Emit", event: `${input._tag} at ${input.nowMs}` }],
      }),
    }
    const heard = (node: string) =>
      FastSim.run({ machine, nodes: [node], seed: 1, durationMs: 10, invariants: [] }).events.map(
        (item) => item.event,
      )
    expect(heard("send-first")).toEqual(["Receive at 1", "TimerFired at 1"])
    expect(heard("timer-first")).toEqual(["TimerFired at 1", "Receive at 1"])
  })

  it("runs a machine that names peers by address: routed to the owning node, the source as routing says", () => {
    // Two networks, 10.1.0.x and 10.2.0.x: every node has an address on each and sends from
    // the one on the destination's network, as a multihomed endpoint does.
    interface Addr {
      readonly host: string
      readonly port: number
    }
    const hostOf: Record<string, number> = { a: 1, b: 2 }
    const routing: FastSim.Routing<Addr> = {
      addressOf: (node) => ({ host: `10.1.0.${hostOf[node]}`, port: 9 }),
      nodeOf: (address) =>
        Object.keys(hostOf).find((node) => address.host.endsWith(`.0.${hostOf[node]}`)),
      source: (from, to) => ({ host: `${to.host.slice(0, 5)}0.${hostOf[from]}`, port: 9 }),
      describe: (address) => `${address.host}:${address.port}`,
    }
    const machine: Machine.Machine<null, string, never, string, Addr> = {
      init: ({ self }) => ({
        state: null,
        outputs:
          self === "a"
            ? [
                { _tag: "Send", to: { host: "10.2.0.2", port: 9 }, message: "ping" },
                { _tag: "Send", to: { host: "10.9.9.9", port: 9 }, message: "lost" },
                { _tag: "Broadcast", message: "hello" },
              ]
            : [],
      }),
      step: (state, input) => {
        if (input._tag !== "Receive") return { state, outputs: [] }
        const heard = `${input.message} from ${input.from.host}`
        return {
          state,
          outputs:
            input.message === "ping"
              ? [
                  { _tag: "Emit", event: heard },
                  { _tag: "Send", to: input.from, message: "pong" },
                ]
              : [{ _tag: "Emit", event: heard }],
        }
      },
    }
    const report = FastSim.run({
      machine,
      routing,
      nodes: ["a", "b"],
      seed: 1,
      durationMs: 10,
      invariants: [],
      traceLines: 100,
    })
    expect(report.events.map((item) => `${item.node}: ${item.event}`)).toEqual([
      "b: ping from 10.2.0.1",
      "b: hello from 10.1.0.1",
      "a: pong from 10.2.0.2",
    ])
    const trace = report.formatTrace()
    expect(trace).toContain("send to unknown address 10.9.9.9:9 dropped")
    expect(trace).toContain('send 10.2.0.2:9 "ping"')
    expect(trace).toContain('recv 10.2.0.1:9 "ping"')
  })

  it("faults of single addresses: down drops what arrives to or from it, loss drops as it is sent, up heals; the source can avoid a down address", () => {
    // Every 10 ms, a sends "x" to b's first address and "y" to its second; b reports each
    // with the source address it saw. a sends from its first address while it is up.
    const machine: Machine.Machine<null, string, never, string, string> = {
      init: ({ self }) => ({
        state: null,
        outputs: self === "a" ? [{ _tag: "SetTimer", timer: "tick", afterMs: 10 }] : [],
      }),
      step: (state, input) => {
        if (input._tag === "TimerFired")
          return {
            state,
            outputs: [
              { _tag: "Send", to: "b1", message: "x" },
              { _tag: "Send", to: "b2", message: "y" },
              { _tag: "SetTimer", timer: "tick", afterMs: 10 },
            ],
          }
        if (input._tag !== "Receive") return { state, outputs: [] }
        return {
          state,
          outputs: [{ _tag: "Emit", event: `${input.nowMs} ${input.message} ${input.from}` }],
        }
      },
    }
    const routing: FastSim.Routing<string> = {
      addressOf: (node) => `${node}1`,
      nodeOf: (address) => address.slice(0, 1),
      source: (from, _to, up) => (up(`${from}1`) ? `${from}1` : `${from}2`),
      describe: (address) => address,
    }
    const report = FastSim.run({
      machine,
      routing,
      nodes: ["a", "b"],
      seed: 1,
      durationMs: 135,
      addressFaults: [
        // Out of order on purpose: they are applied by time.
        { atMs: 55, address: "b1", down: false },
        // After the send at 30 and before its arrival at 31: dropped as it arrives.
        { atMs: 30.5, address: "b1", down: true },
        { atMs: 75, address: "a1", down: true },
        { atMs: 95, address: "b2", loss: 1 },
        { atMs: 115, address: "b2", loss: 0 },
      ],
      invariants: [],
    })
    expect(report.events.map((item) => item.event)).toEqual([
      "11 x a1",
      "11 y a1",
      "21 x a1",
      "21 y a1",
      "31 y a1",
      "41 y a1",
      "51 y a1",
      "61 x a1",
      "61 y a1",
      "71 x a1",
      "71 y a1",
      "81 x a2",
      "81 y a2",
      "91 x a2",
      "91 y a2",
      "101 x a2",
      "111 x a2",
      "121 x a2",
      "121 y a2",
      "131 x a2",
      "131 y a2",
    ])
    expect(report.dropped).toBe(5)
    expect(report.formatTrace()).toContain("(address down)")
    expect(report.formatTrace()).toContain("(address loss)")
  })

  it("a one-way partition cuts one direction only; a symmetric one both; heal restores them", () => {
    const machine = pinger(10)
    const run = (oneWay: boolean) =>
      FastSim.run({
        machine,
        nodes: ["n1", "n2"],
        seed: 9,
        durationMs: 400,
        link: fixedLink(3),
        schedule: [
          { atMs: 100, fault: { _tag: "Partition", side: ["n1"], other: ["n2"], oneWay } },
          { atMs: 200, fault: { _tag: "Heal" } },
        ],
        invariants: [],
      })
    const oneWay = run(true).events
    // A message on a cut link is dropped on arrival: nothing from n1 arrives at n2 in
    // [100, 200] (an arrival at the heal's own time runs before the heal).
    expect(heard(oneWay, "n2", "n1", 100, 201)).toBe(0)
    expect(heard(oneWay, "n2", "n1", 0, 100)).toBe(9)
    expect(heard(oneWay, "n2", "n1", 201, 401)).toBeGreaterThan(15)
    // The other way keeps working through the one-way cut.
    expect(heard(oneWay, "n1", "n2", 100, 201)).toBe(10)
    const both = run(false).events
    expect(heard(both, "n2", "n1", 100, 201)).toBe(0)
    expect(heard(both, "n1", "n2", 100, 201)).toBe(0)
    expect(heard(both, "n1", "n2", 201, 401)).toBeGreaterThan(15)
  })

  it("a crash drops the node's state, timers and the messages arriving while it is down; a restart runs init anew", () => {
    type St = { readonly startedMs: number }
    const machine: Machine.Machine<St, string, never, string> = {
      init: (context) => ({
        state: { startedMs: context.nowMs },
        outputs: [
          { _tag: "Emit", event: `init at ${context.nowMs}` },
          { _tag: "SetTimer", timer: `late-${context.nowMs}`, afterMs: 350 },
          { _tag: "SetTimer", timer: "tick", afterMs: 20 },
        ],
      }),
      step: (state, input) => {
        switch (input._tag) {
          case "TimerFired":
            if (input.timer === "tick") {
              return {
                state,
                outputs: [
                  { _tag: "Broadcast", message: `hello from a life started at ${state.startedMs}` },
                  { _tag: "SetTimer", timer: "tick", afterMs: 20 },
                ],
              }
            }
            return {
              state,
              outputs: [{ _tag: "Emit", event: `${input.timer} fired at ${input.nowMs}` }],
            }
          case "Receive":
            return { state, outputs: [{ _tag: "Emit", event: `got ${input.message}` }] }
          case "Command":
            return { state, outputs: [] }
        }
      },
    }
    const seenDown: Array<number> = []
    const report = FastSim.run({
      machine,
      nodes: ["a", "b"],
      seed: 3,
      durationMs: 800,
      link: fixedLink(5),
      schedule: [
        { atMs: 100, fault: { _tag: "Crash", node: "b", mode: "host" } },
        { atMs: 300, fault: { _tag: "Restart", node: "b" } },
      ],
      invariants: [
        {
          name: "a node that is down has no state",
          check: (view) => {
            if (!view.network.node("b").up) {
              seenDown.push(view.nowMs)
              if (view.states.has("b")) return "b is down but has a state"
            }
            return undefined
          },
        },
      ],
    })
    const of = (node: string) =>
      report.events.filter((item) => item.node === node).map((item) => `${item.atMs} ${item.event}`)
    const b = of("b")
    // b's first life: init at 0; its `late-0` timer (due at 350) died with it.
    expect(b[0]).toBe("0 init at 0")
    expect(b).not.toContainEqual(expect.stringContaining("late-0 fired"))
    // Nothing reached b while it was down, and it restarted fresh at 300.
    expect(
      b.filter((line) => Number(line.split(" ")[0]) > 100 && Number(line.split(" ")[0]) < 300),
    ).toEqual([])
    expect(b).toContain("300 init at 300")
    expect(b).toContain("650 late-300 fired at 650")
    expect(report.dropped).toBeGreaterThanOrEqual(9)
    // a hears the new life after the restart.
    expect(of("a")).toContainEqual(expect.stringContaining("got hello from a life started at 300"))
    // The invariant ran while b was down (after the crash and after a's steps).
    expect(seenDown[0]).toBe(100)
    expect(seenDown.at(-1)).toBe(300)
  })

  it("loss, duplication and reordering happen at their configured rates", () => {
    const total = 20_000
    type St = { readonly next: number }
    const sender: Machine.Machine<St, number, never, number> = {
      init: (context) => ({
        state: { next: 0 },
        outputs: context.self === "s" ? [{ _tag: "SetTimer", timer: "t", afterMs: 1 }] : [],
      }),
      step: (state, input) => {
        if (input._tag === "Receive")
          return { state, outputs: [{ _tag: "Emit", event: input.message }] }
        if (state.next >= total) return { state, outputs: [] }
        return {
          state: { next: state.next + 1 },
          outputs: [
            { _tag: "Send", to: "r", message: state.next },
            { _tag: "SetTimer", timer: "t", afterMs: 1 },
          ],
        }
      },
    }
    const run = (link: SimNet.LinkConfig) => {
      const report = FastSim.run({
        machine: sender,
        nodes: ["s", "r"],
        seed: 11,
        durationMs: total + 1_000,
        link,
        invariants: [],
      })
      const received = report.events.map((item) => item.event as number)
      let inversions = 0
      for (let index = 1; index < received.length; index++) {
        if (received[index]! < received[index - 1]!) inversions++
      }
      return { report, received, unique: new Set(received).size, inversions }
    }
    const lossy = run(fixedLink(10, { loss: 0.2, duplicate: 0.1, reorder: 0.3 }))
    // 80% arrive, 10% of those twice; within 3% of the expectation for 20,000 draws.
    expect(lossy.unique / total).toBeGreaterThan(0.77)
    expect(lossy.unique / total).toBeLessThan(0.83)
    expect(lossy.report.duplicated / lossy.unique).toBeGreaterThan(0.07)
    expect(lossy.report.duplicated / lossy.unique).toBeLessThan(0.13)
    expect(lossy.received.length).toBe(lossy.unique + lossy.report.duplicated)
    expect(lossy.report.dropped).toBe(total - lossy.unique)
    // Each copy is delayed extra with probability 0.3.
    const copies = lossy.unique + lossy.report.duplicated
    expect(lossy.report.reordered / copies).toBeGreaterThan(0.27)
    expect(lossy.report.reordered / copies).toBeLessThan(0.33)
    expect(lossy.inversions).toBeGreaterThan(1_000)
    // A fixed latency without reordering keeps the order and loses nothing.
    const clean = run(fixedLink(10))
    expect(clean.inversions).toBe(0)
    expect(clean.unique).toBe(total)
    expect(clean.report.dropped + clean.report.duplicated + clean.report.reordered).toBe(0)
  })

  it("the workload hook submits commands, and never to a node that is down", () => {
    const machine: Machine.Machine<number, never, number, string> = {
      init: () => ({ state: 0, outputs: [] }),
      step: (sum, input) =>
        input._tag === "Command"
          ? {
              state: sum + input.command,
              outputs: [{ _tag: "Emit", event: `+${input.command} at ${input.nowMs}` }],
            }
          : { state: sum, outputs: [] },
    }
    const asked: Array<number> = []
    const report = FastSim.run({
      machine,
      nodes: ["a", "b"],
      seed: 2,
      durationMs: 1_000,
      schedule: [{ atMs: 450, fault: { _tag: "Crash", node: "b", mode: "process" } }],
      workload: {
        everyMs: 100,
        endMs: 800,
        commands: (nowMs, view) => {
          asked.push(nowMs)
          // The view is the live one: b is gone after its crash.
          return view.states.has("b")
            ? [
                { node: "a", command: 1 },
                { node: "b", command: 2 },
              ]
            : [
                { node: "a", command: 1 },
                { node: "b", command: 2 },
              ].slice(0, 1)
        },
      },
      invariants: [],
    })
    expect(asked).toEqual([100, 200, 300, 400, 500, 600, 700])
    expect(report.events.filter((item) => item.node === "a")).toHaveLength(7)
    expect(report.events.filter((item) => item.node === "b").map((item) => item.event)).toEqual([
      "+2 at 100",
      "+2 at 200",
      "+2 at 300",
      "+2 at 400",
    ])
  })

  it("with a codec, a message that does not serialise is caught", () => {
    const Message = Schema.Struct({ n: Schema.Int })
    const codec = Codec.json(Message, "n")
    const machine: Machine.Machine<null, { n: number }, never, never> = {
      init: (context) => ({
        state: null,
        outputs: context.self === "a" ? [{ _tag: "SetTimer", timer: "t", afterMs: 10 }] : [],
      }),
      step: (state, input) =>
        input._tag === "TimerFired"
          ? // 1.5 is not an Int: the schema refuses to encode it.
            {
              state,
              outputs: [
                { _tag: "Send", to: "b", message: { n: input.nowMs === 10 ? 1 : 1.5 } },
                { _tag: "SetTimer", timer: "t", afterMs: 10 },
              ],
            }
          : { state, outputs: [] },
    }
    const options = { machine, nodes: ["a", "b"], seed: 4, durationMs: 100, invariants: [] }
    expect(FastSim.run(options).encoded).toBe(0)
    const failure = failureOf(() => FastSim.run({ ...options, codec }))
    expect(failure.invariant).toBe("messages survive the codec")
    expect(failure.atMs).toBe(20)
    expect(failure.message).toMatch(
      /^SEED=4: invariant "messages survive the codec" violated at 20 ms/,
    )
    // Every other message: the second one (the bad one) is not encoded, the third is.
    const sparse = failureOf(() => FastSim.run({ ...options, codec, encodeEvery: 2 }))
    expect(sparse.atMs).toBe(30)
  })

  it("a node that throws is reported with its seed", () => {
    const machine: Machine.Machine<null, never, never, never> = {
      init: () => ({ state: null, outputs: [{ _tag: "SetTimer", timer: "t", afterMs: 70 }] }),
      step: () => {
        throw new Error("boom")
      },
    }
    const failure = failureOf(() =>
      FastSim.run({ machine, nodes: ["a"], seed: 8, durationMs: 100, invariants: [] }),
    )
    expect(failure.invariant).toBe("no node fails")
    expect(failure.detail).toBe("a threw on TimerFired: boom")
    expect(failure.message).toContain("replay with UNDERSTUDY_SEED=8 npm test")
    expect(failure.message).toMatch(/\n {6}70 ms {2}a {7}timer t$/)
  })

  const seeds = Seeds.seeds(2_000)
  it(`the failure detector holds completeness and accuracy over ${seeds.length} seeded fault schedules`, () => {
    const startedAt = performance.now()
    let steps = 0
    let crashes = 0
    let faults = 0
    for (const seed of seeds) {
      const report = fdRun(fdConfig, seed, Seeds.isReplay() ? { traceLines: 1_000_000 } : {})
      steps += report.steps
      faults += report.schedule.length
      crashes += report.schedule.filter((item) => item.fault._tag === "Crash").length
      if (Seeds.isReplay()) console.log(report.formatTrace())
    }
    const wallMs = performance.now() - startedAt
    console.log(
      `FastSim FailureDetector: ${seeds.length} schedules, ${faults} faults (${crashes} crashes), ${steps} steps in ${Math.round(wallMs)} ms: ${Math.round(steps / (wallMs / 1_000))} steps/s with invariants, ${(wallMs / seeds.length).toFixed(2)} ms per schedule`,
    )
    console.log(`premises met: ${JSON.stringify(coverage)}`)
    if (!Seeds.isReplay()) {
      expect(crashes).toBeGreaterThan(seeds.length / 2)
      expect(steps).toBeGreaterThan(seeds.length * 500)
      expect(coverage.crashedAndSuspected).toBeGreaterThan(seeds.length)
      expect(coverage.suspectedExcused).toBeGreaterThan(seeds.length)
      expect(coverage.healthyAtEnd).toBeGreaterThan(seeds.length * 5)
    }
  }, 600_000)

  it("catches a detector whose time-out is shorter than the link delay, with its seed", () => {
    // Heartbeats 50 ms apart taking 1..40 ms can arrive 89 ms apart: live peers get suspected.
    const broken: FailureDetector.Config = { intervalMs: 50, timeoutMs: 60 }
    let failure: FastSim.FastSimFailure | undefined
    // Fixed seeds, not UNDERSTUDY_SEED's: this must find a failure whatever is replayed.
    for (const seed of Seeds.seeds(20, {})) {
      try {
        fdRun(broken, seed)
      } catch (error) {
        if (!(error instanceof FastSim.FastSimFailure)) throw error
        failure = error
        break
      }
    }
    expect(failure).toBeDefined()
    const found = failure!
    console.log(`broken detector caught: SEED=${found.seed} ${found.invariant}: ${found.detail}`)
    expect(found.invariant).toBe("accuracy")
    expect(found.message).toMatch(
      new RegExp(`^SEED=${found.seed}: invariant "accuracy" violated at \\d+ ms`),
    )
    expect(found.message).toContain(`replay with UNDERSTUDY_SEED=${found.seed} npm test`)
    expect(found.message).toContain("fault schedule:")
    expect(found.message).toMatch(/timer timeout:n\d => EMIT \{"_tag":"Suspected"/)
    expect(found.message).toMatch(/recv n\d \{"_tag":"Heartbeat"/)
    const traceLines = found.report.split("trace (last 200 lines up to the violation):\n")[1]!
    expect(traceLines.split("\n").length).toBeGreaterThan(10)
    expect(traceLines.split("\n").length).toBeLessThanOrEqual(200)
    // Replaying the seed fails the same way, at the same time.
    const again = failureOf(() => fdRun(broken, found.seed))
    expect(again.message).toBe(found.message)
  })

  it("catches a detector that never suspects anyone (completeness)", () => {
    const lazy: FailureDetector.Config = { intervalMs: 100, timeoutMs: 60_000 }
    const failure = failureOf(() =>
      FastSim.run({
        machine: FailureDetector.make(lazy),
        nodes: fdNodes,
        seed: 3,
        durationMs: fdDurationMs,
        link: goodLink,
        schedule: [{ atMs: 500, fault: { _tag: "Crash", node: "n2", mode: "host" } }],
        invariants: [completeness(fdConfig)],
      }),
    )
    expect(failure.invariant).toBe("completeness")
    expect(failure.detail).toMatch(/still trusts n2, down since 500 ms/)
    expect(failure.message).toContain("crash n2 (host)")
  })

  it("with the real codec every message of the detector survives the round trip", () => {
    const report = fdRun(fdConfig, 77, { codec: FailureDetector.codec })
    expect(report.encoded).toBeGreaterThan(report.delivered)
    expect(report.delivered).toBeGreaterThan(300)
  })

  it("a session runs until a condition, steps by hand, loses what is in flight, reads and clears timers", () => {
    // The pinger, counting what it hears.
    const counting: Machine.Machine<
      { readonly self: string; readonly n: number; readonly heard: number },
      Ping
    > = {
      init: (context) => ({
        state: { self: context.self, n: 0, heard: 0 },
        outputs: [{ _tag: "SetTimer", timer: "tick", afterMs: 100 }],
      }),
      step: (state, input) =>
        input._tag === "Receive"
          ? { state: { ...state, heard: state.heard + 1 }, outputs: [] }
          : {
              state: { ...state, n: state.n + 1 },
              outputs: [
                { _tag: "Broadcast", message: { from: state.self, n: state.n } },
                { _tag: "SetTimer", timer: "tick", afterMs: 100 },
              ],
            },
    }
    const session = FastSim.start({
      machine: counting,
      nodes: ["a", "b"],
      seed: 1,
      link: fixedLink(10),
    })
    // Until a condition: the time stays at the event that made it hold.
    expect(session.runUntil(() => session.state("a")!.n === 3)).toBe(true)
    expect(session.nowMs).toBe(300)
    expect(session.timers("a").dueOf("tick")).toBe(400)
    // Nothing before the deadline makes it hold: false, at the last event run (b's tick at 500).
    expect(session.runUntil(() => false, { maxMs: 205 })).toBe(false)
    expect(session.nowMs).toBe(500)
    // a's and b's broadcasts of 500 ms are in flight: lose b's only.
    expect(session.dropInFlight((from, to) => from === "b" && to === "a")).toBe(1)
    // By hand: a state replaced, outputs performed as the node's.
    session.setState("b", { self: "b", n: 100, heard: 0 })
    session.perform("b", [{ _tag: "Send", to: "a", message: { from: "b", n: -1 } }])
    session.timers("b").clear()
    expect(session.timers("b").size).toBe(0)
    expect(session.timers("a").size).toBe(1)
    session.runUntil(() => false, { maxMs: 150 })
    // b ticks no more (its timer is gone); a keeps ticking. a heard b's broadcasts of 100 to
    // 400 ms and the message performed by hand, not the one lost in flight.
    expect(session.state("b")!.n).toBe(100)
    expect(session.state("a")!.n).toBe(6)
    expect(session.state("a")!.heard).toBe(5)
    // A node that throws fails the call that stepped it, with the seed.
    const throwing = FastSim.start({
      machine: {
        ...pinger(100),
        step: () => {
          throw new Error("boom")
        },
      },
      nodes: ["a"],
      seed: 7,
    })
    expect(() => throwing.runUntil(() => false)).toThrow(/SEED=7: invariant "no node fails"/)
  })

  it("a session stepped to the end leaves the nodes as run does", () => {
    const states = (options: { readonly seed: number }) => {
      const seen = new Map<string, number>()
      FastSim.run({
        machine: pinger(70),
        nodes: ["a", "b", "c"],
        seed: options.seed,
        durationMs: 1_000,
        link: fixedLink(5, { loss: 0.2, duplicate: 0.1, reorder: 0.1 }),
        invariants: [
          {
            name: "records",
            check: (view) => {
              for (const [node, state] of view.states) seen.set(node, state.n)
              return undefined
            },
          },
        ],
      })
      const session = FastSim.start({
        machine: pinger(70),
        nodes: ["a", "b", "c"],
        seed: options.seed,
        link: fixedLink(5, { loss: 0.2, duplicate: 0.1, reorder: 0.1 }),
      })
      for (let step = 0; step < 10; step++) session.runUntil(() => false, { maxSteps: 7 })
      session.runUntil(() => false, { maxMs: 1_000 - session.nowMs })
      return { run: seen, session: new Map(["a", "b", "c"].map((n) => [n, session.state(n)!.n])) }
    }
    const { run, session } = states({ seed: 3 })
    expect(session).toEqual(run)
    expect(run.get("a")).toBe(14)
  })

  it("rejects a schedule that names an unknown node", () => {
    expect(() =>
      FastSim.run({
        machine: FailureDetector.make(fdConfig),
        nodes: fdNodes,
        seed: 1,
        durationMs: 100,
        schedule: [{ atMs: 10, fault: { _tag: "Crash", node: "n9", mode: "host" } }],
        invariants: [],
      }),
    ).toThrow("FastSim: unknown node n9 in the schedule")
  })
})
