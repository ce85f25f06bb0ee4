/**
 * Process pauses on FastSim (GC pause, frozen VM, SIGSTOP): in every schedule one server is
 * frozen for 200–1,000 ms (past the inquiry time-out) while time advances, on top of the
 * usual faults. A frozen server takes no step: every input that reaches it (datagrams,
 * timers, client commands) waits, and when it resumes it processes that backlog at the
 * resume time, in order — as a resumed process does. The invariants of the main suite
 * (one master per epoch, prefix-consistent applied sequences, no answered request lost,
 * convergence) must hold; among the pauses, masters frozen while the others elected a new
 * one and resumed behind it. Masters also read (read index) on every timer: a confirmed read
 * must see every request answered before it was issued — a master resumed from a pause must
 * not confirm a read from its old state. Replay with `UNDERSTUDY_SEED=<n>`; `STAGGERED_PAUSE_SCHEDULES`
 * sets the count (default 1,000).
 */
import { describe, expect, it } from "@effect/vitest"
import type { Machine as M } from "@understudy/machine"
import { FastSim, Seeds } from "@understudy/testkit"
import * as Machine from "../src/Machine.ts"
import {
  base,
  type Client,
  faultsEndMs,
  type Msg,
  makeClient,
  nodes,
  type Req,
  runSchedule,
} from "./support/invariants.ts"

type Election = Machine.StaggeredElection<number, Req, number>
type In = M.Input<Msg, Machine.Command<Req>>

const resumeTimer = "pause-resume"

interface Pause {
  readonly node: string
  readonly fromMs: number
  readonly toMs: number
}

/** One pause per schedule, derived from the seed (deterministic, so a seed replays). */
const pauseOf = (seed: number): Pause => {
  const node = nodes[seed % nodes.length]!
  const fromMs = 300 + ((seed * 7_919) % 800)
  const toMs = Math.min(faultsEndMs, fromMs + 200 + ((seed * 104_729) % 800))
  return { node, fromMs, toMs }
}

const withPause = (machine: Election, pause: Pause, client: Client) => {
  const backlog = new Map<string, Array<In>>()
  const counts = { paused: 0, mastersResumedBehind: 0, readsConfirmed: 0 }
  // Per read: the highest answer (the counter's value) the client had when it was issued.
  const reads = new Map<number, { readonly node: string; readonly seen: number }>()
  let readId = 0
  const highestAnswer = () => Math.max(0, ...client.answered.values())
  const checkReads = (
    self: string,
    result: M.Result<Machine.State<number, Req, number>, Msg, Machine.Event<number>>,
  ) => {
    for (const output of result.outputs) {
      if (output._tag !== "Emit" || output.event._tag !== "ReadConfirmed") continue
      const read = reads.get(output.event.readId)
      if (read === undefined || read.node !== self) throw new Error(`unknown read confirmed`)
      reads.delete(output.event.readId)
      counts.readsConfirmed++
      if (result.state.replica.state < read.seen) {
        throw new Error(
          `stale read at ${self}: confirmed with ${result.state.replica.state}, ${read.seen} was answered before it`,
        )
      }
    }
    return result
  }
  /** A step, then (on a timer at a master) a read issued. */
  const live = (state: Machine.State<number, Req, number>, input: In) => {
    const result = checkReads(state.self, machine.step(state, input))
    if (input._tag !== "TimerFired" || result.state.role !== "master") return result
    const id = ++readId
    reads.set(id, { node: state.self, seen: highestAnswer() })
    const read = checkReads(
      state.self,
      machine.step(result.state, {
        _tag: "Command",
        command: { _tag: "Read", readId: id },
        nowMs: input.nowMs,
      }),
    )
    return { state: read.state, outputs: [...result.outputs, ...read.outputs] }
  }
  const frozen: Election = {
    init: (context) => {
      backlog.delete(context.self)
      return machine.init(context)
    },
    step: (state, input) => {
      const self = state.self
      if (input._tag === "TimerFired" && input.timer === resumeTimer) {
        const waiting = backlog.get(self) ?? []
        backlog.delete(self)
        if (
          state.role === "master" &&
          waiting.some((item) => item._tag === "Receive" && (item.message.epoch ?? 0) > state.epoch)
        ) {
          counts.mastersResumedBehind++
        }
        let current = state
        const outputs: Array<M.Output<Msg, Machine.Event<number>>> = []
        for (const item of waiting) {
          const result = live(current, { ...item, nowMs: input.nowMs })
          current = result.state
          outputs.push(...result.outputs)
        }
        return { state: current, outputs }
      }
      if (self === pause.node && input.nowMs >= pause.fromMs && input.nowMs < pause.toMs) {
        const waiting = backlog.get(self) ?? []
        backlog.set(self, [...waiting, input])
        if (waiting.length > 0) return { state, outputs: [] }
        counts.paused++
        return {
          state,
          outputs: [{ _tag: "SetTimer", timer: resumeTimer, afterMs: pause.toMs - input.nowMs }],
        }
      }
      return live(state, input)
    },
  }
  return { machine: frozen, counts }
}

const schedules = Number(process.env.STAGGERED_PAUSE_SCHEDULES ?? 1_000)

describe("StaggeredElection under process pauses (FastSim)", () => {
  it(`a server frozen past the time-outs and resumed breaks no invariant, over ${schedules} schedules`, () => {
    const machine = Machine.make(base)
    let paused = 0
    let mastersResumedBehind = 0
    let readsConfirmed = 0
    const failures: Array<string> = []
    for (const seed of Seeds.seeds(schedules)) {
      const pause = pauseOf(seed)
      const client = makeClient()
      const run = withPause(machine, pause, client)
      try {
        runSchedule(run.machine, seed, { client })
      } catch (error) {
        if (!(error instanceof FastSim.FastSimFailure)) throw error
        failures.push(
          `SEED=${error.seed} (pause ${JSON.stringify(pause)}): ${error.invariant}: ${error.detail}`,
        )
      }
      paused += run.counts.paused
      mastersResumedBehind += run.counts.mastersResumedBehind
      readsConfirmed += run.counts.readsConfirmed
    }
    console.log(
      `pauses: ${schedules} schedules, ${paused} pauses, ${mastersResumedBehind} masters resumed behind a newer epoch, ${readsConfirmed} reads confirmed`,
    )
    expect(failures).toEqual([])
    if (!Seeds.isReplay()) {
      expect(paused).toBeGreaterThan(schedules / 2)
      expect(mastersResumedBehind).toBeGreaterThan(0)
      expect(readsConfirmed).toBeGreaterThan(schedules * 10)
    }
  }, 600_000)
})
