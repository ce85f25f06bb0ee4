/**
 * Runs N nodes of a machine on `SimNet` under `TestClock`, with a fault schedule drawn from
 * one seed, and checks invariants after every step of every node, after every fault and at
 * the end. Everything random comes from the seed (the schedule from a seeded generator, the
 * network's latency, loss, duplication and reordering from Effect's `Random` seeded with
 * it), so the same seed gives the same trace, byte for byte.
 *
 * A violation fails with `SimulationFailure`, whose message starts with `SEED=<n>` and holds
 * the violated invariant, the fault schedule, the live states and the last lines of the
 * trace: the network's events interleaved with every machine step (what each node received,
 * which timer fired, what it sent and emitted). Replay one seed with
 * `UNDERSTUDY_SEED=<n> npm test` (see `Seeds`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { FailureDetector } from "@understudy/machine"
 * import { Seeds, Simulation } from "@understudy/testkit"
 *
 * for (const seed of Seeds.seeds(100)) {
 *   await Effect.runPromise(Simulation.simulate({
 *     machine: FailureDetector.make({ intervalMs: 100, timeoutMs: 400 }),
 *     codec: FailureDetector.codec,
 *     nodes: ["n1", "n2", "n3"],
 *     seed,
 *     durationMs: 3_000,
 *     faults: { endMs: 2_000 },
 *     invariants: [],
 *   }))
 * }
 * ```
 * @since 0.1.0
 */
import { randomBytes } from "node:crypto"
import { Authentication, type Machine, Runner } from "@understudy/machine"
import { Address, type Codec, SimNet } from "@understudy/transport"
import { Cause, Clock, Effect, Random, Schema } from "effect"
import { TestClock } from "effect/testing"
import * as FaultSchedule from "./FaultSchedule.ts"
import * as Network from "./Network.ts"

/**
 * What an invariant sees: the states of the nodes that are up, the faults so far, the
 * network as those faults left it, the time, and the step that was just taken (`undefined`
 * for the checks after a fault and at the end).
 *
 * @since 0.1.0
 * @category models
 */
export interface View<
  State,
  Message = unknown,
  C = unknown,
  E = unknown,
  Address = Machine.NodeId,
> {
  readonly nowMs: number
  readonly nodes: ReadonlyArray<Machine.NodeId>
  /** Latest state of every node that is up (a node that never stepped yet is absent). */
  readonly states: ReadonlyMap<Machine.NodeId, State>
  readonly history: ReadonlyArray<FaultSchedule.Scheduled>
  readonly network: Network.Network
  readonly step: Runner.StepInfo<State, Message, C, E, Address> | undefined
  /** True for the last check, when the run is over. */
  readonly final: boolean
}

/**
 * A property that must hold in every reachable view. `check` returns `undefined` when it
 * holds, else a sentence saying what is wrong (it goes into the failure message).
 *
 * @since 0.1.0
 * @category models
 */
export interface Invariant<State, Message = unknown, C = unknown, E = unknown> {
  readonly name: string
  readonly check: (view: View<State, Message, C, E>) => string | undefined
}

/** @since 0.1.0 @category models */
export interface Options<State, Message, C, E> {
  readonly machine: Machine.Machine<State, Message, C, E>
  readonly codec: Codec.Codec<Message>
  /** The simulated hosts; each runs one node of the machine. */
  readonly nodes: ReadonlyArray<Machine.NodeId>
  readonly seed: number
  /** Simulated time the run lasts. */
  readonly durationMs: number
  /**
   * Options of the generated fault schedule (the nodes and the healthy link are filled in).
   * Omit, with no `schedule`, for a run without faults.
   */
  readonly faults?: Omit<FaultSchedule.Options, "nodes" | "goodLink">
  /** An explicit schedule, used instead of generating one. */
  readonly schedule?: ReadonlyArray<FaultSchedule.Scheduled>
  /** Every link's configuration at the start, and what a restored link gets. Default `fixed(1)`, no loss. */
  readonly link?: SimNet.LinkConfig
  readonly invariants: ReadonlyArray<Invariant<State, Message, C, E>>
  /** `"every-step"` (default) checks after every step and fault; `"end"` only at the end. */
  readonly check?: "every-step" | "end"
  /** The UDP port every node binds on its host. Default 7000. */
  readonly port?: number
  /**
   * How the nodes authenticate their datagrams. Default: keyed, with a fresh key from
   * `node:crypto` per run (it changes no decision, so runs still replay from their seed).
   */
  readonly authentication?: Authentication.Authentication
  /** Trace lines in a failure message. Default 200. */
  readonly traceLines?: number
  /** How states appear in a failure message. Default JSON. */
  readonly describeState?: (state: State) => string
  /** Add one trace line per machine step. Default true. */
  readonly traceSteps?: boolean
}

/** What a passing run did. @since 0.1.0 @category models */
export interface Report {
  readonly seed: number
  readonly steps: number
  readonly schedule: ReadonlyArray<FaultSchedule.Scheduled>
  readonly trace: ReadonlyArray<SimNet.TraceEvent>
}

/**
 * An invariant was violated (or a node died of a defect). The message has the seed, the
 * invariant, the schedule and the end of the trace.
 *
 * @since 0.1.0
 * @category errors
 */
export class SimulationFailure extends Schema.TaggedError<SimulationFailure>()(
  "SimulationFailure",
  {
    seed: Schema.Number,
    invariant: Schema.String,
    detail: Schema.String,
    atMs: Schema.Number,
    /** The ready-to-print report: schedule, states and the last trace lines. */
    report: Schema.String,
  },
) {
  override get message(): string {
    return (
      `SEED=${this.seed}: invariant "${this.invariant}" violated at ${this.atMs} ms: ${this.detail}\n` +
      `replay with UNDERSTUDY_SEED=${this.seed}\n${this.report}`
    )
  }
}

/** The default healthy link: 1 ms, nothing lost. @since 0.1.0 @category constructors */
export const healthyLink: SimNet.LinkConfig = {
  latency: { _tag: "Fixed", ms: 1 },
  loss: 0,
  duplicate: 0,
  reorder: 0,
}

const json = (value: unknown): string => {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

const describeOutput = <Message, E>(output: Machine.Output<Message, E>): string => {
  switch (output._tag) {
    case "Send":
      return `send ${output.to} ${json(output.message)}`
    case "Broadcast":
      return `broadcast ${json(output.message)}`
    case "SetTimer":
      return `set ${output.timer} +${output.afterMs}`
    case "CancelTimer":
      return `cancel ${output.timer}`
    case "Emit":
      return `EMIT ${json(output.event)}`
  }
}

const describeStep = <State, Message, C, E>(
  info: Runner.StepInfo<State, Message, C, E>,
): string => {
  const input = info.input
  let head: string
  switch (input._tag) {
    case "Init":
      head = "init"
      break
    case "Receive":
      head = `recv ${input.from} ${json(input.message)}`
      break
    case "TimerFired":
      head = `timer ${input.timer}`
      break
    case "Command":
      head = `command ${json(input.command)}`
      break
  }
  return info.outputs.length === 0
    ? head
    : `${head} => ${info.outputs.map(describeOutput).join("; ")}`
}

interface Violation {
  readonly invariant: string
  readonly detail: string
  readonly atMs: number
  readonly states: string
  readonly trace: ReadonlyArray<SimNet.TraceEvent>
}

/** Clock time advanced at once, at most, so a violation stops the run soon after it happens. */
const chunkMs = 100

/**
 * Runs one seeded simulation. Provides its own `TestClock` and seeded `Random`, so it runs
 * the same inside or outside `it.effect`.
 *
 * @since 0.1.0
 * @category running
 */
export const simulate = <State, Message, C, E>(
  options: Options<State, Message, C, E>,
): Effect.Effect<Report, SimulationFailure> => {
  const { machine, codec, nodes, seed, durationMs, invariants } = options
  const link = options.link ?? healthyLink
  const port = options.port ?? 7000
  const everyStep = (options.check ?? "every-step") === "every-step"
  const traceSteps = options.traceSteps ?? true
  const describeState = options.describeState ?? json
  const schedule: ReadonlyArray<FaultSchedule.Scheduled> =
    options.schedule ??
    (options.faults === undefined
      ? []
      : FaultSchedule.generate(seed, { ...options.faults, nodes, goodLink: link }))

  return Effect.gen(function* () {
    const net = yield* SimNet.make({ link })
    const network = Network.make(nodes, link)
    const history: Array<FaultSchedule.Scheduled> = []
    const states = new Map<Machine.NodeId, State>()
    let steps = 0
    let violation: Violation | undefined

    const liveStates = (): Map<Machine.NodeId, State> => {
      const live = new Map<Machine.NodeId, State>()
      for (const [node, state] of states) if (net.isUp(node)) live.set(node, state)
      return live
    }

    const violate = (invariant: string, detail: string, atMs: number) =>
      Effect.gen(function* () {
        if (violation !== undefined) return
        const live = liveStates()
        const lines = [...live].map(([node, state]) => `  ${node}: ${describeState(state)}`)
        violation = {
          invariant,
          detail,
          atMs,
          states: lines.join("\n"),
          trace: yield* net.trace,
        }
      })

    const check = (step: Runner.StepInfo<State, Message, C, E> | undefined, final: boolean) =>
      Effect.gen(function* () {
        if (violation !== undefined) return
        const nowMs = yield* Clock.currentTimeMillis
        const view: View<State, Message, C, E> = {
          nowMs,
          nodes,
          states: liveStates(),
          history,
          network,
          step,
          final,
        }
        for (const invariant of invariants) {
          const detail = invariant.check(view)
          if (detail !== undefined) return yield* violate(invariant.name, detail, nowMs)
        }
      })

    const onStep = (info: Runner.StepInfo<State, Message, C, E>) =>
      Effect.gen(function* () {
        steps++
        states.set(info.node, info.after)
        if (traceSteps) yield* net.note(info.node, describeStep(info))
        if (everyStep) yield* check(info, false)
      })

    const addresses = (node: Machine.NodeId) => Address.udp(node, port)
    const authentication =
      options.authentication ?? Authentication.keyed(new Uint8Array(randomBytes(32)))

    for (const node of nodes) {
      const program = Effect.gen(function* () {
        // A crash interrupts this program: its state is gone with it.
        yield* Effect.addFinalizer(() => Effect.sync(() => states.delete(node)))
        const running = yield* Runner.run(machine, {
          self: node,
          peers: nodes,
          addresses,
          codec,
          authentication,
          onStep,
        })
        return yield* running.join
      }).pipe(
        Effect.catchCause((cause) =>
          Cause.hasInterruptsOnly(cause)
            ? Effect.failCause(cause)
            : Effect.gen(function* () {
                const nowMs = yield* Clock.currentTimeMillis
                yield* violate("no node fails", `${node} stopped: ${Cause.pretty(cause)}`, nowMs)
              }),
        ),
      )
      yield* net.run(node, program)
    }

    const advanceTo = (targetMs: number) =>
      Effect.gen(function* () {
        // Bounded: each turn moves the clock by at least 1 ms towards the target.
        for (let turn = 0; turn < 1_000_000; turn++) {
          const nowMs = yield* Clock.currentTimeMillis
          if (violation !== undefined || nowMs >= targetMs) return
          yield* TestClock.adjust(Math.max(1, Math.min(chunkMs, targetMs - nowMs)))
        }
      })

    const apply = (fault: FaultSchedule.Fault) => {
      switch (fault._tag) {
        case "Crash":
          return net.crash(fault.node, { mode: fault.mode })
        case "Restart":
          return net.restart(fault.node)
        case "Partition":
          return net.partition(fault.side, fault.other, { oneWay: fault.oneWay })
        case "Heal":
          return net.heal
        case "SetLink":
          return net.setLink(fault.from, fault.to, fault.link)
      }
    }

    // Let every node run its init before the first fault or tick.
    yield* TestClock.adjust(0)
    if (everyStep) yield* check(undefined, false)
    for (const scheduled of schedule) {
      if (scheduled.atMs >= durationMs) break
      yield* advanceTo(scheduled.atMs)
      if (violation !== undefined) break
      const nowMs = yield* Clock.currentTimeMillis
      const applied = { atMs: nowMs, fault: scheduled.fault }
      network.apply(applied)
      history.push(applied)
      yield* apply(scheduled.fault)
      // Let what the fault set off (interrupted programs, restarts) settle first.
      yield* TestClock.adjust(0)
      if (everyStep) yield* check(undefined, false)
    }
    yield* advanceTo(durationMs)
    yield* check(undefined, true)

    const found = violation as Violation | undefined
    if (found !== undefined) {
      const traceLines = options.traceLines ?? 200
      const report = [
        "fault schedule:",
        schedule.length === 0 ? "  (none)" : FaultSchedule.format(schedule),
        `states of the live nodes at ${found.atMs} ms:`,
        found.states === "" ? "  (none)" : found.states,
        `trace (last ${traceLines} lines up to the violation):`,
        SimNet.formatTrace(found.trace.slice(-traceLines)),
      ].join("\n")
      return yield* new SimulationFailure({
        seed,
        invariant: found.invariant,
        detail: found.detail,
        atMs: found.atMs,
        report,
      })
    }
    return { seed, steps, schedule, trace: yield* net.trace }
  }).pipe(Effect.scoped, Random.withSeed(seed), Effect.provide(TestClock.layer()))
}

/**
 * Formats a report's trace: for replay comparisons and for printing a passing run.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatTrace = (report: Report): string => SimNet.formatTrace(report.trace)
