/**
 * The simulated half of the failover benchmark: seeded master crashes on FastSim, the
 * staggered election against a Raft-style randomised election (`raftStyle.ts`) with the same
 * detection, measured from outside the nodes by an observer (a FastSim invariant that never
 * fails, except to stop a run early once the failover is over).
 *
 * One failover, per seed: the nodes boot at seeded offsets within one detection period (so
 * their detection timers are not in phase, as on real hosts), the group settles, the master
 * crashes at a seeded moment; measured from the crash: the first detection, the moment every
 * live server follows one new master at one epoch, the election messages sent meanwhile
 * (staggered: Declare / Revoke; Raft-style: RequestVote / Vote / Announce) and how many
 * servers stood for mastership (declared, or became candidate).
 *
 * @since 0.1.0
 */
import type { Machine as M } from "@understudy/machine"
import type { SimNet } from "@understudy/transport"
import * as FastSim from "../../testkit/src/FastSim.ts"
import * as Machine from "../src/Machine.ts"
import type * as Message from "../src/Message.ts"
import * as RaftStyle from "./raftStyle.ts"

/** What the observer needs to know of one kind of machine. */
export interface Variant<S, Msg, E> {
  readonly name: string
  readonly make: (seed: number) => M.Machine<S, Msg, never, E>
  /** Who this state follows (itself when master) and at which epoch / term. */
  readonly view: (state: S) => {
    readonly master: boolean
    readonly follows: string | undefined
    readonly epoch: number
  }
  readonly isElection: (message: Msg) => boolean
  /** The step stood for mastership: a declaration, a revoke, a candidacy. */
  readonly stood: (outputs: ReadonlyArray<M.Output<Msg, E>>) => boolean
  /** The step detected the master failed. */
  readonly detected: (outputs: ReadonlyArray<M.Output<Msg, E>>) => boolean
}

/** The detection and election timings, the same for both variants. */
export interface Timings {
  readonly detectionPeriodMs: number
  readonly inquiryTimeoutMs: number
  readonly baseDelayMs: number
  readonly floorDelayMs: number
}

/** One failover's figures; `undefined` when the group did not settle before the crash. */
export interface Failover {
  readonly detectMs: number | undefined
  readonly failoverMs: number | undefined
  readonly electionMessages: number
  readonly stood: number
}

const bootTimer = "bench-boot"

/**
 * The booting wrapper, per node: FastSim gives `init` the node's name and peers, so the
 * wrapper keeps them in its state until the boot timer fires.
 */
type Boot<S> =
  | { readonly _tag: "Off"; readonly self: string; readonly peers: ReadonlyArray<string> }
  | { readonly _tag: "On"; readonly inner: S }

const boot = <S, Msg, E>(
  machine: M.Machine<S, Msg, never, E>,
  offsetOf: (node: string) => number,
): M.Machine<Boot<S>, Msg, never, E> => ({
  init: (context) => ({
    state: { _tag: "Off", self: context.self, peers: context.peers },
    outputs: [{ _tag: "SetTimer", timer: bootTimer, afterMs: offsetOf(context.self) }],
  }),
  step: (state, input) => {
    if (state._tag === "Off") {
      if (input._tag !== "TimerFired" || input.timer !== bootTimer) return { state, outputs: [] }
      const result = machine.init({ self: state.self, peers: state.peers, nowMs: input.nowMs })
      return { state: { _tag: "On", inner: result.state }, outputs: result.outputs }
    }
    const result = machine.step(state.inner, input)
    return { state: { _tag: "On", inner: result.state }, outputs: result.outputs }
  },
})

/** A number in [0, 1) from a seed and a label: offsets and crash times derive from the seed. */
const unit = (seed: number, label: string): number => {
  let h = (Math.imul(seed, 0x9e3779b1) ^ 0x85ebca6b) >>> 0
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0
  return ((h ^ (h >>> 16)) >>> 0) / 4_294_967_296
}

const stopRun = "bench: failover measured"

/**
 * One seeded master crash: a first run up to the crash finds the master (the same seed
 * replays the same run), a second one crashes it and measures.
 */
export const failover = <S, Msg, E>(
  variant: Variant<S, Msg, E>,
  nodes: ReadonlyArray<string>,
  timings: Timings,
  link: SimNet.LinkConfig,
  seed: number,
): Failover | undefined => {
  const machine = boot(variant.make(seed), (node) =>
    Math.floor(unit(seed, `boot:${node}`) * timings.detectionPeriodMs),
  )
  const crashAtMs = 1_500 + Math.floor(unit(seed, "crash") * timings.detectionPeriodMs)
  const settledMaster = (states: ReadonlyMap<string, Boot<S>>, dead?: string) => {
    let master: string | undefined
    let epoch = -1
    for (const [node, state] of states) {
      if (state._tag === "Off") return undefined
      const view = variant.view(state.inner)
      if (view.master) {
        if (master !== undefined || node === dead) return undefined
        master = node
        epoch = view.epoch
      }
    }
    if (master === undefined) return undefined
    for (const [node, state] of states) {
      if (node === master || state._tag === "Off") continue
      const view = variant.view(state.inner)
      if (view.follows !== master || view.epoch !== epoch) return undefined
    }
    return master
  }
  const quiet = { describeState: () => "", traceLines: 0, collectEvents: false } as const

  let victim: string | undefined
  FastSim.run({
    ...quiet,
    machine,
    nodes,
    seed,
    durationMs: crashAtMs,
    link,
    invariants: [
      {
        name: "observe",
        check: (view) => {
          if (view.final) victim = settledMaster(view.states)
          return undefined
        },
      },
    ],
  })
  if (victim === undefined) return undefined

  const peers = nodes.length - 1
  let detectMs: number | undefined
  let failoverMs: number | undefined
  let electionMessages = 0
  const stood = new Set<string>()
  const marginMs = timings.inquiryTimeoutMs + timings.baseDelayMs
  try {
    FastSim.run({
      ...quiet,
      machine,
      nodes,
      seed,
      durationMs: crashAtMs + 10_000,
      link,
      schedule: [{ atMs: crashAtMs, fault: { _tag: "Crash", node: victim, mode: "process" } }],
      invariants: [
        {
          name: "observe",
          check: (view) => {
            const step = view.step
            if (step === undefined || view.nowMs < crashAtMs) return undefined
            for (const output of step.outputs) {
              if (output._tag === "Send" && variant.isElection(output.message)) electionMessages++
              if (output._tag === "Broadcast" && variant.isElection(output.message))
                electionMessages += peers
            }
            if (variant.stood(step.outputs)) stood.add(step.node)
            if (detectMs === undefined && variant.detected(step.outputs))
              detectMs = view.nowMs - crashAtMs
            if (failoverMs === undefined) {
              if (settledMaster(view.states, victim) !== undefined)
                failoverMs = view.nowMs - crashAtMs
            } else if (view.nowMs - crashAtMs >= failoverMs + marginMs) {
              return stopRun
            }
            return undefined
          },
        },
      ],
    })
  } catch (error) {
    if (!(error instanceof FastSim.FastSimFailure) || error.detail !== stopRun) throw error
  }
  return { detectMs, failoverMs, electionMessages, stood: stood.size }
}

type StaggeredState = Machine.State<number, unknown, number>
type StaggeredMessage = Message.Message<unknown>
type StaggeredEvent = Machine.Event<number>

/**
 * The staggered election, the package's own machine, capacities descending in node order.
 * `serving`: a master counts once it serves (its sync done: with `lease`, the wait for its
 * predecessor's lease over too), not as soon as it declared.
 */
export const staggered = (
  nodes: ReadonlyArray<string>,
  timings: Timings,
  options: { readonly serving?: boolean; readonly lease?: Machine.Lease } = {},
): Variant<StaggeredState, StaggeredMessage, StaggeredEvent> => {
  const machine = Machine.make<number, unknown, number>({
    servers: nodes.map((id, i) => ({ id, capacity: { cpu: 100 - i, bandwidthMbps: 100 } })),
    ...timings,
    initial: 0,
    apply: (state) => [state, state],
    ...(options.lease === undefined ? {} : { lease: options.lease }),
  })
  return {
    name: `staggered${options.serving === true ? " serving" : ""}${options.lease === undefined ? "" : " +lease"}`,
    make: () => machine,
    view: (state) => ({
      master:
        state.role === "master" && (options.serving !== true || state.leader?.phase === "ready"),
      follows:
        state.role === "master" ? state.self : state.role === "backup" ? state.master : undefined,
      epoch: state.epoch,
    }),
    isElection: (message) => message._tag === "Declare" || message._tag === "Revoke",
    stood: (outputs) =>
      outputs.some(
        (output) =>
          output._tag === "Broadcast" &&
          (output.message._tag === "Declare" || output.message._tag === "Revoke"),
      ),
    detected: (outputs) =>
      outputs.some((output) => output._tag === "Emit" && output.event._tag === "Waiting"),
  }
}

/** The Raft-style election with time-outs in [T, 2T]. */
export const raftStyle = (
  nodes: ReadonlyArray<string>,
  timings: Timings,
  electionTimeoutMs: number,
): Variant<RaftStyle.State, RaftStyle.Message, RaftStyle.Event> => ({
  name: `raft-style T=${electionTimeoutMs}`,
  make: (seed) =>
    RaftStyle.make({
      nodes,
      detectionPeriodMs: timings.detectionPeriodMs,
      inquiryTimeoutMs: timings.inquiryTimeoutMs,
      electionTimeoutMs,
      seed,
    }),
  view: (state) => ({
    master: state.role === "leader",
    follows: state.role === "candidate" ? undefined : state.leader,
    epoch: state.term,
  }),
  isElection: (message) => RaftStyle.electionTags.has(message._tag),
  stood: (outputs) =>
    outputs.some((output) => output._tag === "Broadcast" && output.message._tag === "RequestVote"),
  detected: (outputs) =>
    outputs.some((output) => output._tag === "Emit" && output.event._tag === "Detected"),
})

/** Figures over many failovers. */
export interface Summary {
  readonly variant: string
  readonly servers: number
  readonly runs: number
  /** Seeds whose group had not settled on one master before the crash. */
  readonly unsettled: number
  /** Crashes after which no master was accepted by every live server within 10 s. */
  readonly unconverged: number
  /** Every failover measured, in seed order (the docs draw their distribution). */
  readonly failoversMs: ReadonlyArray<number>
  readonly failoverMsMean: number
  readonly failoverMsP50: number
  readonly failoverMsP99: number
  readonly failoverMsMax: number
  readonly detectMsMean: number
  /** Failover minus detection: the election proper. */
  readonly electionMsMean: number
  readonly electionMessagesMean: number
  readonly electionMessagesP99: number
  /** Share of failovers in which two or more servers stood (declared / became candidate). */
  readonly contestedRatio: number
  readonly wallMs: number
}

export const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!

const mean = (values: ReadonlyArray<number>): number =>
  values.length === 0 ? Number.NaN : values.reduce((sum, value) => sum + value, 0) / values.length

/** Runs `runs` seeded failovers (seeds 1..runs) of one variant. */
export const summarise = <S, Msg, E>(
  variant: Variant<S, Msg, E>,
  nodes: ReadonlyArray<string>,
  timings: Timings,
  link: SimNet.LinkConfig,
  runs: number,
): Summary => {
  const startedAt = performance.now()
  const failovers: Array<number> = []
  const detects: Array<number> = []
  const elections: Array<number> = []
  const messages: Array<number> = []
  let unsettled = 0
  let unconverged = 0
  let contested = 0
  for (let seed = 1; seed <= runs; seed++) {
    const result = failover(variant, nodes, timings, link, seed)
    if (result === undefined) {
      unsettled++
      continue
    }
    if (result.failoverMs === undefined) {
      unconverged++
      continue
    }
    failovers.push(result.failoverMs)
    if (result.detectMs !== undefined) {
      detects.push(result.detectMs)
      elections.push(result.failoverMs - result.detectMs)
    }
    messages.push(result.electionMessages)
    if (result.stood >= 2) contested++
  }
  const sorted = [...failovers].sort((a, b) => a - b)
  const sortedMessages = [...messages].sort((a, b) => a - b)
  return {
    variant: variant.name,
    servers: nodes.length,
    runs,
    unsettled,
    unconverged,
    failoversMs: failovers,
    failoverMsMean: mean(failovers),
    failoverMsP50: percentile(sorted, 0.5),
    failoverMsP99: percentile(sorted, 0.99),
    failoverMsMax: sorted[sorted.length - 1] ?? Number.NaN,
    detectMsMean: mean(detects),
    electionMsMean: mean(elections),
    electionMessagesMean: mean(messages),
    electionMessagesP99: percentile(sortedMessages, 0.99),
    contestedRatio: failovers.length === 0 ? Number.NaN : contested / failovers.length,
    wallMs: performance.now() - startedAt,
  }
}
