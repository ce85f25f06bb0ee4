/**
 * What the two simulation suites of the staggered election share: the group and its
 * configuration, the fault schedule's options, the client harness, the invariants and the
 * broken variant. `Election.sim.test.ts` runs them on SimNet through the Runner (real codec,
 * real network), `Election.fastsim.test.ts` on FastSim (many more schedules); the same
 * invariants, checked against the same machine, keep the two comparable.
 */
import type { Machine as M } from "@understudy/machine"
import { FastSim, FaultSchedule, type Simulation } from "@understudy/testkit"
import type { Codec, SimNet } from "@understudy/transport"
import { Schema } from "effect"
import * as Delays from "../../src/Delays.ts"
import * as Machine from "../../src/Machine.ts"
import * as Message from "../../src/Message.ts"

export const nodes = ["n1", "n2", "n3", "n4", "n5"]
// Capacities rank n3 first and n1 last, so index order is not name order.
const servers = [
  { id: "n1", capacity: { cpu: 1, bandwidthMbps: 100 } },
  { id: "n2", capacity: { cpu: 2, bandwidthMbps: 100 } },
  { id: "n3", capacity: { cpu: 8, bandwidthMbps: 100 } },
  { id: "n4", capacity: { cpu: 4, bandwidthMbps: 50 } },
  { id: "n5", capacity: { cpu: 4, bandwidthMbps: 100 } },
]

export type Req = { readonly add: number }
export type Res = number
export type St = Machine.State<number, Req, Res>

export const base = {
  servers,
  detectionPeriodMs: 50,
  inquiryTimeoutMs: 150,
  baseDelayMs: 40,
  initial: 0,
  apply: (state: number, request: Req) => [state + request.add, state + request.add] as const,
  logEntriesMax: 2_000,
  entriesPerMessageMax: 32,
}

export const codec: Codec.Codec<Message.Message<Req>> = Message.codec(
  Schema.Struct({ add: Schema.Int }),
)

export const goodLink: SimNet.LinkConfig = {
  latency: { _tag: "Uniform", minMs: 1, maxMs: 8 },
  loss: 0,
  duplicate: 0.02,
  reorder: 0,
}
export const faultsEndMs = 1_400
export const faults = {
  startMs: 300,
  endMs: faultsEndMs,
  gapMs: { minMs: 60, maxMs: 300 },
  maxDown: 2,
  degraded: { maxLatencyMs: 60, maxLoss: 0.5, maxDuplicate: 0.2, maxReorder: 0.2 },
  // Nothing survives a restart, so two servers down for good plus one restarted leave no
  // majority that can prove what was committed: the group rightly stalls. Convergence is
  // required once every server is back; safety is checked throughout.
  restartAtEnd: true,
}
const goodRttMs = 2 * FaultSchedule.maxDelayMs(goodLink)

/**
 * After the last fault and heal: detection (a period to send the inquiry plus its time-out),
 * the largest election delay (every term at its cap: a sample never exceeds a period, an
 * unknown pair counts as the inquiry time-out), then a declaration, a possible revoke and the
 * sync, a few round trips and a period each.
 */
export const convergenceBoundMs =
  base.detectionPeriodMs +
  base.inquiryTimeoutMs +
  Delays.worstCase(
    nodes.length,
    { baseDelayMs: base.baseDelayMs, floorDelayMs: 1, unknownDelayMs: base.inquiryTimeoutMs },
    base.detectionPeriodMs,
  ) +
  3 * (base.detectionPeriodMs + goodRttMs)
export const durationMs = faultsEndMs + convergenceBoundMs + 200

export type Config = Machine.Config<number, Req, Res>
export type Msg = Message.Message<Req>
export type Ev = Machine.Event<Res>

/** The client: shared by every node's harness, as one external client would be. */
export interface Client {
  nextRequestId: number
  pending: { requestId: number; request: Req } | undefined
  readonly answered: Map<number, Res>
}

export interface Harness {
  readonly inner: St
}

const clientTimer = "client"
const clientId = "c1"

/** A fresh client, one per run. */
export const makeClient = (): Client => ({
  nextRequestId: 1,
  pending: undefined,
  answered: new Map(),
})

/**
 * The machine with a client attached: every 30 ms the client submits (or retries, with the
 * same id, until it is answered) one request at whichever node it finds master, until
 * `faultsEndMs` (every even request as a `SubmitMany` batch holding it twice). Answers are recorded from the master's `Answered` events.
 */
export const withClient = (
  machine: Machine.StaggeredElection<number, Req, Res>,
  client: Client,
): M.Machine<Harness, Msg, never, Ev> => {
  const record = (outputs: ReadonlyArray<M.Output<Msg, Ev>>) => {
    for (const output of outputs) {
      if (output._tag === "Emit" && output.event._tag === "Answered") {
        const event = output.event
        const before = client.answered.get(event.requestId)
        if (before !== undefined && before !== event.result) {
          throw new Error(`request ${event.requestId} answered ${before} then ${event.result}`)
        }
        client.answered.set(event.requestId, event.result)
        if (client.pending?.requestId === event.requestId) client.pending = undefined
      }
    }
  }
  return {
    init: (context) => {
      const result = machine.init(context)
      record(result.outputs)
      return {
        state: { inner: result.state },
        outputs: [...result.outputs, { _tag: "SetTimer", timer: clientTimer, afterMs: 30 }],
      }
    },
    step: (state, input) => {
      if (input._tag === "TimerFired" && input.timer === clientTimer) {
        const outputs: Array<M.Output<Msg, Ev>> = []
        let inner = state.inner
        if (input.nowMs < faultsEndMs) {
          outputs.push({ _tag: "SetTimer", timer: clientTimer, afterMs: 30 })
          if (inner.role === "master" && inner.leader?.phase === "ready") {
            if (client.pending === undefined) {
              client.pending = { requestId: client.nextRequestId++, request: { add: 1 } }
            }
            const one = { _tag: "Submit" as const, clientId, ...client.pending }
            // Every other request goes as a batch (group commit) holding it twice: it must
            // be appended and answered once.
            const result = machine.step(inner, {
              _tag: "Command",
              command:
                client.pending.requestId % 2 === 0
                  ? { _tag: "SubmitMany", submits: [one, one] }
                  : one,
              nowMs: input.nowMs,
            })
            record(result.outputs)
            inner = result.state
            outputs.push(...result.outputs)
          }
        }
        return { state: { inner }, outputs }
      }
      const result = machine.step(state.inner, input as M.Input<Msg, Machine.Command<Req>>)
      record(result.outputs)
      return { state: { inner: result.state }, outputs: result.outputs }
    },
  }
}

const entryId = (entry: Message.Entry<Req>) =>
  entry._tag === "Noop"
    ? `${entry.seq}@${entry.epoch}`
    : `${entry.seq}@${entry.epoch}:${entry.clientId}/${entry.requestId}`

/** How often the invariants' premises held, summed over the runs of one suite. */
export const coverage = { masterChanges: 0, revokes: 0, answered: 0, snapshotsInstalled: 0 }

export const invariants = (
  client: Client,
): Array<Simulation.Invariant<Harness, Msg, never, Ev>> => {
  const masterOfEpoch = new Map<number, string>()
  // The longest applied sequence seen so far, by any node, alive or since crashed, and the
  // request id at each position (a snapshot installed later replaces entries with a state
  // that must be the same as applying them).
  const canonical: Array<string> = []
  const requestIds: Array<number | undefined> = []
  return [
    {
      name: "at most one master per epoch",
      check: (view) => {
        const step = view.step
        if (step === undefined) return undefined
        const state = step.after.inner
        if (state.role !== "master") return undefined
        const known = masterOfEpoch.get(state.epoch)
        if (known === undefined) {
          masterOfEpoch.set(state.epoch, step.node)
          coverage.masterChanges++
        } else if (known !== step.node) {
          return `${step.node} and ${known} are both master in epoch ${state.epoch}`
        }
        for (const output of step.outputs) {
          if (output._tag === "Emit" && output.event._tag === "Revoked") coverage.revokes++
        }
        return undefined
      },
    },
    {
      name: "applied sequences are prefixes of one another",
      check: (view) => {
        const step = view.step
        if (step === undefined) return undefined
        for (const output of step.outputs) {
          if (output._tag === "Emit" && output.event._tag === "SnapshotInstalled")
            coverage.snapshotsInstalled++
        }
        const replica = step.after.inner.replica
        const applied = Machine.applied(step.after.inner)
        const before = step.before === undefined ? 0 : step.before.inner.replica.appliedSeq
        // Positions inside a snapshot were applied by the server it came from.
        if (replica.base.seq > canonical.length) {
          return `${step.node} holds a snapshot through ${replica.base.seq}, nobody applied past ${canonical.length}`
        }
        for (let seq = Math.max(before, replica.base.seq) + 1; seq <= replica.appliedSeq; seq++) {
          const entry = applied[seq - replica.base.seq - 1]!
          const id = entryId(entry)
          if (seq <= canonical.length) {
            if (canonical[seq - 1] !== id) {
              return `${step.node} applied ${id} at ${seq}, another server applied ${canonical[seq - 1]}`
            }
          } else {
            canonical.push(id)
            requestIds.push(entry._tag === "Request" ? entry.requestId : undefined)
          }
        }
        return undefined
      },
    },
    {
      name: "every answered request is applied by every live server, and one master rules, after the heal",
      check: (view) => {
        if (!view.final) return undefined
        const masters = [...view.states].filter(([, state]) => state.inner.role === "master")
        if (masters.length !== 1) {
          return `${masters.length} masters ${convergenceBoundMs} ms after the heal: ${masters.map(([node]) => node).join(", ")}`
        }
        const [master, masterState] = masters[0]!
        for (const [node, state] of view.states) {
          if (node === master) continue
          if (state.inner.role !== "backup" || state.inner.master !== master) {
            return `${node} is ${state.inner.role} of ${state.inner.master}, not backup of ${master}`
          }
          if (state.inner.epoch !== masterState.inner.epoch) {
            return `${node} is at epoch ${state.inner.epoch}, the master at ${masterState.inner.epoch}`
          }
        }
        for (const [node, state] of view.states) {
          // What it applied is the canonical prefix (checked at every step).
          const requests = new Set(
            requestIds
              .slice(0, state.inner.replica.appliedSeq)
              .flatMap((requestId) => (requestId === undefined ? [] : [requestId])),
          )
          for (const requestId of client.answered.keys()) {
            if (!requests.has(requestId)) {
              return `request ${requestId} was answered but ${node} has not applied it`
            }
          }
          // Exactly once: the state counts each answered request once.
          const expected = requests.size
          if (state.inner.replica.state !== expected) {
            return `${node}'s state is ${state.inner.replica.state}, ${expected} distinct requests applied`
          }
        }
        coverage.answered += client.answered.size
        return undefined
      },
    },
  ]
}

/** One line per state in a failure report. */
export const describeState = (state: Harness): string => {
  const inner = state.inner
  return `${inner.role} master=${inner.master} epoch=${inner.epoch} term=${inner.term} base=${inner.replica.base.seq} log=${inner.replica.log.length} commit=${inner.replica.commitSeq} applied=${inner.replica.appliedSeq}`
}

/**
 * The broken variant: every server's election timer is the same fixed delay after detection,
 * and a server that declares never compares: it keeps mastership whatever it hears.
 */
export const brokenMachine = (config: Config): Machine.StaggeredElection<number, Req, Res> => {
  const machine = Machine.make(config)
  return {
    init: (context) => flatten(machine.init(context)),
    step: (state, input) => {
      if (
        state.role === "master" &&
        input._tag === "Receive" &&
        input.message.epoch > state.epoch
      ) {
        // No comparison: a master ignores every newer declaration.
        return { state, outputs: [] }
      }
      return flatten(machine.step(state, input))
    },
  }
}

/** Replaces every election delay by the same one. */
const flatten = (result: M.Result<St, Msg, Ev>): M.Result<St, Msg, Ev> => ({
  state: result.state,
  outputs: result.outputs.map((output) =>
    output._tag === "SetTimer" && output.timer === Machine.electionTimer
      ? { ...output, afterMs: base.baseDelayMs }
      : output,
  ),
})

/**
 * One FastSim schedule of the suites: the group `nodes`, the loopback-like link, the fault
 * schedule, the client's commands (`client`, or a new one) and every invariant. `more`
 * adds FastSim options (a codec, a trace).
 */
export const runSchedule = (
  machine: Machine.StaggeredElection<number, Req, Res>,
  seed: number,
  options: {
    readonly client?: Client
    readonly codec?: typeof codec
    readonly encodeEvery?: number
    readonly traceLines?: number
  } = {},
): FastSim.Report<Ev> => {
  const { client = makeClient(), ...more } = options
  return FastSim.run({
    machine: withClient(machine, client),
    nodes,
    seed,
    durationMs,
    link: goodLink,
    faults,
    invariants: invariants(client),
    describeState,
    // Nobody reads the events: the invariants see steps and states.
    collectEvents: false,
    ...more,
  })
}
