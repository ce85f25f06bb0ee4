/**
 * A fast deterministic simulator for pure machines: a plain synchronous discrete-event loop
 * (no Effect, no codec, no fibers in the hot path) that runs N nodes of a `Machine` with the
 * same network model as `SimNet`'s datagrams (per-link latency, loss, duplication,
 * reordering, symmetric and one-way partitions, crash and restart of a node) and a fault
 * schedule drawn from the seed by `FaultSchedule`. It checks invariants after every step and
 * every fault, as `Simulation` does, at a few microseconds per step instead of ~150 µs, so a
 * mechanism can run thousands of seeded schedules in CI. `Simulation` stays the cross-check
 * that the real codec, `SimNet` and the `Runner` agree.
 *
 * Semantics, as on `SimNet` with the `Runner`: a message on a link that is cut when it
 * arrives, or to a node that is down when it arrives, is dropped; a crash drops the node's
 * state and its timers (a restart runs `init` again with the current time); setting a timer
 * replaces the one of the same name; an event at the time of a fault runs before the fault.
 * Messages are passed as values; with `codec` every `encodeEvery`-th one is encoded and
 * decoded, so state that does not serialise is caught. A machine that names its peers by
 * address (a transport address, several per node) runs with `routing`, which says which
 * node an address reaches and what source address a message carries; its faults are per
 * node pair, and per address with `addressFaults` (an address down, or lossy).
 *
 * A violation throws `FastSimFailure`, whose message starts with `SEED=<n>:` and holds the
 * invariant, how to replay it, the fault schedule, the live states and the last trace lines
 * (kept in a ring buffer and formatted only on failure). The same seed gives the same
 * trace, byte for byte.
 *
 * @example
 * ```ts
 * import { FailureDetector } from "@understudy/machine"
 * import { FastSim, Seeds } from "@understudy/testkit"
 *
 * for (const seed of Seeds.seeds(2_000)) {
 *   FastSim.run({
 *     machine: FailureDetector.make({ intervalMs: 100, timeoutMs: 400 }),
 *     nodes: ["n1", "n2", "n3"],
 *     seed,
 *     durationMs: 3_000,
 *     faults: { endMs: 2_000 },
 *     invariants: [],
 *   })
 * }
 * ```
 * @since 0.1.0
 */
import { type Machine, type Runner, TimerTable } from "@understudy/machine"
import { type Codec, Heap, type SimNet } from "@understudy/transport"
import { Result } from "effect"
import * as FaultSchedule from "./FaultSchedule.ts"
import { before, Event } from "./internal/fastsimEvent.ts"
import * as Network from "./Network.ts"
import * as Prng from "./Prng.ts"
import type * as Simulation from "./Simulation.ts"

/** An event a node emitted. @since 0.1.0 @category models */
export interface Emitted<E> {
  readonly atMs: number
  readonly node: Machine.NodeId
  readonly event: E
}

/**
 * What an invariant sees: `Simulation`'s view (so a `Simulation.Invariant` runs here
 * unchanged) plus every event emitted so far. `states` is the simulator's live map: read
 * it during the check, do not keep it.
 *
 * @since 0.1.0
 * @category models
 */
export interface View<State, Message = unknown, C = unknown, E = unknown, Address = Machine.NodeId>
  extends Simulation.View<State, Message, C, E, Address> {
  readonly events: ReadonlyArray<Emitted<E>>
}

/**
 * A property that must hold in every reachable view: `undefined` when it holds, else a
 * sentence saying what is wrong.
 *
 * @since 0.1.0
 * @category models
 */
export interface Invariant<
  State,
  Message = unknown,
  C = unknown,
  E = unknown,
  Address = Machine.NodeId,
> {
  readonly name: string
  readonly check: (view: View<State, Message, C, E, Address>) => string | undefined
}

/**
 * How a machine that names its peers by address (a transport address, say, rather than a
 * node id) is wired: which node an address reaches, and what address a message comes from.
 * Faults and link settings stay per pair of nodes. Without it, a peer's address is its
 * node id ({@link byNodeId}).
 *
 * @since 0.1.0
 * @category models
 */
export interface Routing<Address> {
  /** A node's address: where `Broadcast` sends to it, and by default where it sends from. */
  readonly addressOf: (node: Machine.NodeId) => Address
  /** The node that receives what is sent to `address`; `undefined` drops it (traced). */
  readonly nodeOf: (address: Address) => Machine.NodeId | undefined
  /**
   * The source address the receiver sees on a message `from` sends to `to`; default
   * `addressOf(from)`. A node with several addresses may answer from the one it was reached at,
   * or, as an OS does, from one that is `up` (see `Options.addressFaults`).
   */
  readonly source?: (
    from: Machine.NodeId,
    to: Address,
    up: (address: Address) => boolean,
  ) => Address
  /** How an address reads in the trace. Default JSON. */
  readonly describe?: (address: Address) => string
}

/** Peers named by their node ids. @since 0.1.0 @category constructors */
export const byNodeId: Routing<Machine.NodeId> = {
  addressOf: (node) => node,
  nodeOf: (address) => address,
  describe: (address) => address,
}

/**
 * A fault of one address (of a machine that names its peers by address, see `Routing`):
 * from `atMs` on, what is sent to or from `address` is dropped when it arrives while the
 * address is `down` (as a partition drops it), and lost with probability `loss` when it is
 * sent; until a later fault of the same address (`down: false`, `loss: 0`: healthy again).
 * An omitted field keeps its value. Two addresses are the same when `Routing.describe`
 * reads them alike.
 *
 * @since 0.1.0
 * @category models
 */
export interface AddressFault<Address> {
  readonly atMs: number
  readonly address: Address
  readonly down?: boolean
  readonly loss?: number
}

/** A command for one node. @since 0.1.0 @category models */
export interface CommandFor<C> {
  readonly node: Machine.NodeId
  readonly command: C
}

/** A command at a fixed time. @since 0.1.0 @category models */
export interface ScheduledCommand<C> extends CommandFor<C> {
  readonly atMs: number
}

/**
 * A client workload: every `everyMs` from `startMs` (default `everyMs`) until before
 * `endMs` (default the end of the run), `commands` is asked what to submit, given the
 * current view. A command for a node that is down is dropped (and traced).
 *
 * @since 0.1.0
 * @category models
 */
export interface Workload<State, Message, C, E, Address = Machine.NodeId> {
  readonly everyMs: number
  readonly startMs?: number
  readonly endMs?: number
  readonly commands: (
    nowMs: number,
    view: View<State, Message, C, E, Address>,
  ) => ReadonlyArray<CommandFor<C>>
}

/** @since 0.1.0 @category models */
export interface Options<State, Message, C = never, E = never, Address = Machine.NodeId> {
  readonly machine: Machine.Machine<State, Message, C, E, Address>
  /** How peers' addresses map to nodes: needed when they are not node ids. */
  readonly routing?: Routing<Address>
  readonly nodes: ReadonlyArray<Machine.NodeId>
  readonly seed: number
  /** Simulated time the run lasts: events up to and including it run. */
  readonly durationMs: number
  /** Options of the generated fault schedule (nodes and healthy link filled in). */
  readonly faults?: Omit<FaultSchedule.Options, "nodes" | "goodLink">
  /** An explicit schedule, used instead of generating one. */
  readonly schedule?: ReadonlyArray<FaultSchedule.Scheduled>
  /** Every link at the start, and what a restored link gets. Default `fixed(1)`, no loss. */
  readonly link?: SimNet.LinkConfig
  /** Faults of single addresses, in addition to the node-pair ones (any order). */
  readonly addressFaults?: ReadonlyArray<AddressFault<Address>>
  readonly invariants: ReadonlyArray<Invariant<State, Message, C, E, Address>>
  /** `"every-step"` (default) checks after every step and fault; `"end"` only at the end. */
  readonly check?: "every-step" | "end"
  readonly workload?: Workload<State, Message, C, E, Address>
  readonly commands?: ReadonlyArray<ScheduledCommand<C>>
  /** Round-trip messages through this codec (every `encodeEvery`-th one) to catch values that do not serialise. */
  readonly codec?: Codec.Codec<Message>
  /** With `codec`: 1 (default) encodes every message, N every N-th. */
  readonly encodeEvery?: number
  /** Trace lines kept (a ring buffer) and printed on failure. Default 200. */
  readonly traceLines?: number
  /** How states appear in a failure message. Default JSON. */
  readonly describeState?: (state: State) => string
  /** How messages appear in the trace. Default JSON. */
  readonly describeMessage?: (message: Message) => string
  /** Keep emitted events for `View.events`. Default true. */
  readonly collectEvents?: boolean
  /** Most machine steps in one run. Default 10,000,000. */
  readonly maxSteps?: number
  /** Most events pending at once; past it new deliveries are dropped. Default 1,000,000. */
  readonly maxPending?: number
}

/** What a passing run did. @since 0.1.0 @category models */
export interface Report<E = unknown> {
  readonly seed: number
  readonly steps: number
  readonly schedule: ReadonlyArray<FaultSchedule.Scheduled>
  /** Messages handed to a live receiver. */
  readonly delivered: number
  /** Messages lost on a link, cut by a partition or sent to a node that was down. */
  readonly dropped: number
  readonly duplicated: number
  /** Messages given an extra (reordering) delay. */
  readonly reordered: number
  /** Messages round-tripped through the codec. */
  readonly encoded: number
  /** Every event emitted (empty with `collectEvents: false`). */
  readonly events: ReadonlyArray<Emitted<E>>
  /** The last `traceLines` lines, formatted now (not on the hot path). */
  readonly formatTrace: () => string
}

/**
 * An invariant was violated, a node threw, or a message did not survive the codec. The
 * message starts with `SEED=<n>:` and holds the replay command, the schedule, the live states
 * and the end of the trace.
 *
 * @since 0.1.0
 * @category errors
 */
export class FastSimFailure extends Error {
  readonly _tag = "FastSimFailure"
  readonly seed: number
  readonly invariant: string
  readonly detail: string
  readonly atMs: number
  /** The schedule, the states and the last trace lines. */
  readonly report: string
  constructor(seed: number, invariant: string, detail: string, atMs: number, report: string) {
    super(
      `SEED=${seed}: invariant "${invariant}" violated at ${atMs} ms: ${detail}\n` +
        `replay with UNDERSTUDY_SEED=${seed} npm test\n${report}`,
    )
    this.name = "FastSimFailure"
    this.seed = seed
    this.invariant = invariant
    this.detail = detail
    this.atMs = atMs
    this.report = report
  }
}

/** The default healthy link: 1 ms, nothing lost. @since 0.1.0 @category constructors */
export const healthyLink: SimNet.LinkConfig = {
  latency: { _tag: "Fixed", ms: 1 },
  loss: 0,
  duplicate: 0,
  reorder: 0,
}

// Event kinds (timers are in the timer table, not the event queue).
const Deliver = 0
const Command = 1
const Tick = 2

/** A node's timer, as the key of the run's one timer table (one object per node and name). */
interface TimerKey {
  readonly node: number
  readonly name: string
}

// Trace line kinds.
const TraceStep = 0
const TraceFault = 1
const TraceNet = 2
const TraceNote = 3

/** Largest UDP payload over IPv4, as on `SimNet`. */
const maxDatagramBytes = 65_507

const json = (value: unknown): string => {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/**
 * A ring buffer of trace lines, stored as their parts (references to the immutable inputs
 * and outputs) and formatted only when asked: recording costs a few array writes. It grows
 * up to `capacity` entries, then overwrites the oldest, so a large capacity costs only what
 * a run uses.
 */
class Trace {
  private readonly atMs: Array<number> = []
  private readonly kinds: Array<number> = []
  private readonly nodes: Array<string> = []
  private readonly first: Array<unknown> = []
  private readonly second: Array<unknown> = []
  /** Where the next entry goes once the buffer is full. */
  private next = 0

  readonly capacity: number

  constructor(capacity: number) {
    this.capacity = capacity
  }

  record(atMs: number, kind: number, node: string, first: unknown, second: unknown): void {
    if (this.atMs.length < this.capacity) {
      this.atMs.push(atMs)
      this.kinds.push(kind)
      this.nodes.push(node)
      this.first.push(first)
      this.second.push(second)
      return
    }
    if (this.capacity === 0) return
    const index = this.next
    this.atMs[index] = atMs
    this.kinds[index] = kind
    this.nodes[index] = node
    this.first[index] = first
    this.second[index] = second
    this.next = index + 1 === this.capacity ? 0 : index + 1
  }

  lines(format: (kind: number, first: unknown, second: unknown) => string): Array<string> {
    const lines: Array<string> = []
    const size = this.atMs.length
    for (let offset = 0; offset < size; offset++) {
      const index = (this.next + offset) % size
      const time = `${this.atMs[index]}`.padStart(8)
      const node = this.nodes[index]!.padEnd(6)
      lines.push(
        `${time} ms  ${node}  ${format(this.kinds[index]!, this.first[index], this.second[index])}`,
      )
    }
    return lines
  }
}

interface Violation {
  readonly invariant: string
  readonly detail: string
  readonly atMs: number
}

/**
 * Runs one seeded simulation synchronously. Returns what it did, or throws `FastSimFailure`
 * at the first violation (the run stops there). Throws a plain `Error` for options that make
 * no sense (an unknown node in the schedule).
 *
 * @since 0.1.0
 * @category running
 */
export const run = <State, Message, C = never, E = never, Address = Machine.NodeId>(
  options: Options<State, Message, C, E, Address>,
): Report<E> => {
  const simulation = simulate(options)
  simulation.advance(options.durationMs)
  return simulation.finish(options.durationMs)
}

/**
 * A simulation's options when it is driven step by step ({@link start}): `run`'s, with no
 * fixed end and invariants optional.
 *
 * @since 0.1.0
 * @category models
 */
export type SessionOptions<State, Message, C = never, E = never, Address = Machine.NodeId> = Omit<
  Options<State, Message, C, E, Address>,
  "durationMs" | "invariants"
> & {
  /** When the workload and scheduled faults stop; default never. */
  readonly durationMs?: number
  readonly invariants?: ReadonlyArray<Invariant<State, Message, C, E, Address>>
}

/**
 * One node's timers, as a test reads and clears them.
 *
 * @since 0.1.0
 * @category models
 */
export interface NodeTimers {
  /** How many are set. */
  readonly size: number
  /** When the timer `name` is due, if it is set. */
  readonly dueOf: (name: string) => number | undefined
  /** Cancels every one (as a crash does). */
  readonly clear: () => void
}

/**
 * A simulation driven by a test, for scenarios a schedule can not express: run until a
 * condition holds, look at and replace a node's state, step a node by hand and perform its
 * outputs, lose what is in flight. The same network, timers and randomness as {@link run}.
 * A violation (an invariant, a node that throws, a message the codec does not carry) throws
 * `FastSimFailure` from the call that met it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Session<State, Message, E = never, Address = Machine.NodeId> {
  readonly nowMs: number
  /** A node's state; `undefined` while it is down. */
  readonly state: (node: Machine.NodeId) => State | undefined
  /** Replaces a node's state (e.g. with one the test stepped or restored itself). */
  readonly setState: (node: Machine.NodeId, state: State) => void
  /** Performs `outputs` as if `node` had emitted them now: sends, timers and events. */
  readonly perform: (
    node: Machine.NodeId,
    outputs: ReadonlyArray<Machine.Output<Message, E, Address>>,
  ) => void
  /**
   * Runs events until `until` holds (asked before each one), nothing is left to run, the next
   * one is due after `maxMs` from now, or `maxSteps` events ran; returns `until()`. The time
   * stays at the last event run.
   */
  readonly runUntil: (
    until: () => boolean,
    limits?: { readonly maxMs?: number; readonly maxSteps?: number },
  ) => boolean
  /** Loses every message in flight from one node to another for which `lose` holds; how many. */
  readonly dropInFlight: (lose: (from: Machine.NodeId, to: Machine.NodeId) => boolean) => number
  readonly timers: (node: Machine.NodeId) => NodeTimers
}

/**
 * Starts a simulation a test drives (see {@link Session}); the nodes are initialised at 0 ms.
 *
 * @since 0.1.0
 * @category running
 */
export const start = <State, Message, C = never, E = never, Address = Machine.NodeId>(
  options: SessionOptions<State, Message, C, E, Address>,
): Session<State, Message, E, Address> => {
  const simulation = simulate(options)
  simulation.throwIfViolated()
  const { nodes } = options
  return {
    get nowMs() {
      return simulation.nowMs()
    },
    state: (node) => simulation.states[simulation.indexOf(node, "state")],
    setState: (node, state) => {
      simulation.states[simulation.indexOf(node, "setState")] = state
      simulation.live.set(node, state)
    },
    perform: (node, outputs) => {
      simulation.perform(simulation.indexOf(node, "perform"), outputs)
      simulation.throwIfViolated()
    },
    runUntil: (until, limits = {}) => {
      simulation.advance(
        simulation.nowMs() + (limits.maxMs ?? Number.POSITIVE_INFINITY),
        until,
        limits.maxSteps,
      )
      simulation.throwIfViolated()
      return until()
    },
    dropInFlight: (lose) => {
      const kept: Array<Event> = []
      let lost = 0
      for (
        let event = simulation.queue.pop();
        event !== undefined;
        event = simulation.queue.pop()
      ) {
        if (event.kind === Deliver && lose(nodes[event.from]!, nodes[event.node]!)) {
          lost++
          simulation.countDropped()
        } else kept.push(event)
      }
      for (const event of kept) simulation.queue.push(event)
      return lost
    },
    timers: (node) => {
      const at = simulation.indexOf(node, "timers")
      const keys = simulation.timerKeys[at]!
      return {
        get size() {
          let set = 0
          for (const key of keys.values()) if (simulation.timers.dueOf(key) !== undefined) set++
          return set
        },
        dueOf: (name) => {
          const key = keys.get(name)
          return key === undefined ? undefined : simulation.timers.dueOf(key)
        },
        clear: () => simulation.timers.cancelWhere((key) => key.node === at),
      }
    },
  }
}

/**
 * The simulator: the nodes initialised, then `advance` runs events up to a time (or until
 * a caller's condition holds) and may be called again; `finish` makes the final check and
 * the report. `run` advances once to the end; a `Session` advances in steps.
 */
const simulate = <State, Message, C = never, E = never, Address = Machine.NodeId>(
  options: SessionOptions<State, Message, C, E, Address>,
) => {
  const { machine, nodes, seed } = options
  const invariants = options.invariants ?? []
  const durationMs = options.durationMs ?? Number.POSITIVE_INFINITY
  const link = options.link ?? healthyLink
  // Without routing, `Address` is `NodeId` (the options' type says so for every other use).
  const routing = options.routing ?? (byNodeId as unknown as Routing<Address>)
  const describeAddress = routing.describe ?? json
  // Per address, by `describeAddress`: the ones down, and the lossy ones.
  const addressesDown = new Set<string>()
  const addressLoss = new Map<string, number>()
  const addressUp = (address: Address): boolean =>
    addressesDown.size === 0 || !addressesDown.has(describeAddress(address))
  const addressFaults = [...(options.addressFaults ?? [])].sort((a, b) => a.atMs - b.atMs)
  const sourceOf = (from: number, to: Address): Address =>
    routing.source === undefined
      ? routing.addressOf(nodes[from]!)
      : routing.source(nodes[from]!, to, addressUp)
  const everyStep = (options.check ?? "every-step") === "every-step" && invariants.length > 0
  const describeState = options.describeState ?? json
  const describeMessage = options.describeMessage ?? json
  const collectEvents = options.collectEvents ?? true
  const maxSteps = options.maxSteps ?? 10_000_000
  const maxPending = options.maxPending ?? 1_000_000
  const codec = options.codec
  const encodeEvery = Math.max(1, Math.floor(options.encodeEvery ?? 1))
  const schedule: ReadonlyArray<FaultSchedule.Scheduled> =
    options.schedule ??
    (options.faults === undefined
      ? []
      : FaultSchedule.generate(seed, { ...options.faults, nodes, goodLink: link }))

  const count = nodes.length
  const index = new Map<Machine.NodeId, number>()
  nodes.forEach((node, position) => {
    if (index.has(node)) throw new Error(`FastSim: node ${node} listed twice`)
    index.set(node, position)
  })
  const indexOf = (node: Machine.NodeId, where: string): number => {
    const found = index.get(node)
    if (found === undefined) throw new Error(`FastSim: unknown node ${node} in ${where}`)
    return found
  }
  for (const item of schedule) {
    const fault = item.fault
    if (fault._tag === "Crash" || fault._tag === "Restart") indexOf(fault.node, "the schedule")
    if (fault._tag === "Partition") {
      for (const node of [...fault.side, ...fault.other]) indexOf(node, "the schedule")
    }
    if (fault._tag === "SetLink") {
      indexOf(fault.from, "the schedule")
      indexOf(fault.to, "the schedule")
    }
  }

  // The network's randomness: its own stream, apart from the schedule's (drawn from `seed`).
  const random = Prng.make(seed + 0x5a17 * 0x1_0000_0000)
  const queue = new Heap.MinHeap<Event>(before)
  const trace = new Trace(Math.max(0, Math.floor(options.traceLines ?? 200)))
  const network = Network.make(nodes, link)
  const history: Array<FaultSchedule.Scheduled> = []
  const events: Array<Emitted<E>> = []
  const live = new Map<Machine.NodeId, State>()

  // Per node, by index.
  const up: Array<boolean> = nodes.map(() => true)
  const states: Array<State | undefined> = nodes.map(() => undefined)
  // Every node's timers in one table, ordered with the event queue by (time, seq).
  const timers = new TimerTable.TimerTable<TimerKey>()
  const timerKeys: Array<Map<string, TimerKey>> = nodes.map(() => new Map())
  const timerKey = (node: number, name: string): TimerKey => {
    const known = timerKeys[node]!.get(name)
    if (known !== undefined) return known
    const key: TimerKey = { node, name }
    timerKeys[node]!.set(name, key)
    return key
  }
  const peers: Array<ReadonlyArray<Machine.NodeId>> = nodes.map((self) =>
    nodes.filter((node) => node !== self),
  )
  // Per direction `from * count + to`.
  const cut = new Uint8Array(count * count)
  const links: Array<SimNet.LinkConfig> = new Array<SimNet.LinkConfig>(count * count).fill(link)

  let nowMs = 0
  let seq = 0
  let steps = 0
  let delivered = 0
  let dropped = 0
  let duplicated = 0
  let reordered = 0
  let encoded = 0
  let sent = 0
  let violation: Violation | undefined

  const violate = (invariant: string, detail: string): void => {
    if (violation === undefined) violation = { invariant, detail, atMs: nowMs }
  }

  const check = (
    step: Runner.StepInfo<State, Message, C, E, Address> | undefined,
    final: boolean,
  ): void => {
    if (violation !== undefined) return
    const view: View<State, Message, C, E, Address> = {
      nowMs,
      nodes,
      states: live,
      history,
      network,
      step,
      final,
      events,
    }
    for (const invariant of invariants) {
      let detail: string | undefined
      try {
        detail = invariant.check(view)
      } catch (error) {
        detail = `the check threw: ${error instanceof Error ? error.message : String(error)}`
      }
      if (detail !== undefined) {
        violate(invariant.name, detail)
        return
      }
    }
  }

  const sampleLatency = (latency: SimNet.Latency): number => {
    if (latency._tag === "Fixed") return latency.ms
    const span = latency.maxMs - latency.minMs
    return Math.min(latency.maxMs, latency.minMs + Math.floor(random.next() * (span + 1)))
  }

  /** The codec's round trip of one message, or `undefined` (and a violation) if it fails. */
  const roundTrip = (from: number, message: Message): { readonly message: Message } | undefined => {
    if (codec === undefined || sent++ % encodeEvery !== 0) return { message }
    encoded++
    const bytes = codec.encode(message)
    if (Result.isFailure(bytes)) {
      violate(
        "messages survive the codec",
        `${nodes[from]} sent a message ${codec.name} can not encode: ${bytes.failure.message}: ${describeMessage(message)}`,
      )
      return undefined
    }
    if (bytes.success.byteLength > maxDatagramBytes) {
      violate(
        "messages survive the codec",
        `${nodes[from]} sent ${bytes.success.byteLength} B, more than a datagram carries`,
      )
      return undefined
    }
    const decoded = codec.decode(bytes.success)
    if (Result.isFailure(decoded)) {
      violate(
        "messages survive the codec",
        `${codec.name} can not decode what it encoded: ${decoded.failure.message}: ${describeMessage(message)}`,
      )
      return undefined
    }
    return { message: decoded.success }
  }

  /** The loss of the lossier of two addresses; 0 (and no draw) without lossy addresses. */
  const lossOfAddresses = (source: Address, target: Address): number =>
    addressLoss.size === 0
      ? 0
      : Math.max(
          addressLoss.get(describeAddress(source)) ?? 0,
          addressLoss.get(describeAddress(target)) ?? 0,
        )

  const send = (
    from: number,
    to: number,
    source: Address,
    target: Address,
    original: Message,
  ): void => {
    const carried = roundTrip(from, original)
    if (carried === undefined) return
    const message = carried.message
    const config = links[from * count + to]!
    if (random.chance(config.loss)) {
      dropped++
      trace.record(nowMs, TraceNet, nodes[from]!, `drop → ${nodes[to]} (loss)`, message)
      return
    }
    const addressLossP = lossOfAddresses(source, target)
    if (addressLossP > 0 && random.chance(addressLossP)) {
      dropped++
      trace.record(nowMs, TraceNet, nodes[from]!, `drop → ${nodes[to]} (address loss)`, message)
      return
    }
    let copies = 1
    if (random.chance(config.duplicate)) {
      copies = 2
      duplicated++
      trace.record(nowMs, TraceNet, nodes[from]!, `duplicate → ${nodes[to]}`, message)
    }
    for (let copy = 0; copy < copies; copy++) {
      if (queue.size + timers.size >= maxPending) {
        dropped++
        trace.record(nowMs, TraceNet, nodes[from]!, `drop → ${nodes[to]} (queue full)`, message)
        continue
      }
      const latencyMs = sampleLatency(config.latency)
      let delayMs = latencyMs
      if (random.chance(config.reorder)) {
        const extraMs = 1 + Math.floor(random.next() * 2 * Math.max(latencyMs, 1))
        delayMs += extraMs
        reordered++
        trace.record(nowMs, TraceNet, nodes[from]!, `delay → ${nodes[to]} +${extraMs} ms`, message)
      }
      queue.push(new Event(nowMs + delayMs, seq++, Deliver, to, from, message, source, target))
    }
  }

  const perform = (
    node: number,
    outputs: ReadonlyArray<Machine.Output<Message, E, Address>>,
  ): void => {
    for (const output of outputs) {
      switch (output._tag) {
        case "Send": {
          const target = routing.nodeOf(output.to)
          const to = target === undefined ? undefined : index.get(target)
          if (to === undefined) {
            trace.record(
              nowMs,
              TraceNote,
              nodes[node]!,
              `send to unknown ${options.routing === undefined ? "node" : "address"} ${describeAddress(output.to)} dropped`,
              undefined,
            )
          } else {
            send(node, to, sourceOf(node, output.to), output.to, output.message)
          }
          break
        }
        case "Broadcast":
          for (let to = 0; to < count; to++) {
            if (to === node) continue
            const target = routing.addressOf(nodes[to]!)
            send(node, to, sourceOf(node, target), target, output.message)
          }
          break
        case "SetTimer":
          // Two sequence numbers, as when timers were events of the queue: runs replay alike.
          seq += 2
          timers.set(timerKey(node, output.timer), nowMs + Math.max(0, output.afterMs), seq - 1)
          break
        case "CancelTimer":
          timers.cancel(timerKey(node, output.timer))
          break
        case "Emit":
          if (collectEvents) events.push({ atMs: nowMs, node: nodes[node]!, event: output.event })
          break
      }
    }
  }

  const step = (node: number, input: Runner.Init | Machine.Input<Message, C, Address>): void => {
    const before = states[node]
    let result: Machine.Result<State, Message, E, Address>
    try {
      result =
        input._tag === "Init"
          ? machine.init({ self: nodes[node]!, peers: peers[node]!, nowMs })
          : machine.step(before as State, input)
    } catch (error) {
      trace.record(nowMs, TraceStep, nodes[node]!, input, [])
      violate(
        "no node fails",
        `${nodes[node]} threw on ${input._tag}: ${error instanceof Error ? error.message : String(error)}`,
      )
      return
    }
    steps++
    states[node] = result.state
    live.set(nodes[node]!, result.state)
    trace.record(nowMs, TraceStep, nodes[node]!, input, result.outputs)
    perform(node, result.outputs)
    if (everyStep) {
      check(
        {
          node: nodes[node]!,
          input,
          before,
          after: result.state,
          outputs: result.outputs,
          nowMs,
        },
        false,
      )
    }
  }

  const crash = (node: number): void => {
    if (!up[node]) return
    up[node] = false
    states[node] = undefined
    live.delete(nodes[node]!)
    timers.cancelWhere((key) => key.node === node)
  }

  const restart = (node: number): void => {
    if (up[node]) return
    up[node] = true
    step(node, { _tag: "Init", nowMs })
  }

  const apply = (fault: FaultSchedule.Fault): void => {
    switch (fault._tag) {
      case "Crash":
        crash(index.get(fault.node)!)
        return
      case "Restart":
        restart(index.get(fault.node)!)
        return
      case "Partition":
        for (const a of fault.side) {
          for (const b of fault.other) {
            if (a === b) continue
            const from = index.get(a)!
            const to = index.get(b)!
            cut[from * count + to] = 1
            if (!fault.oneWay) cut[to * count + from] = 1
          }
        }
        return
      case "Heal":
        cut.fill(0)
        return
      case "SetLink":
        links[index.get(fault.from)! * count + index.get(fault.to)!] = fault.link
        return
    }
  }

  const runEvent = (event: Event): void => {
    switch (event.kind) {
      case Deliver: {
        const to = event.node
        const from = event.from
        if (cut[from * count + to] === 1) {
          dropped++
          trace.record(
            nowMs,
            TraceNet,
            nodes[from]!,
            `drop → ${nodes[to]} (partition)`,
            event.payload,
          )
        } else if (
          addressesDown.size > 0 &&
          (!addressUp(event.source as Address) || !addressUp(event.target as Address))
        ) {
          dropped++
          trace.record(
            nowMs,
            TraceNet,
            nodes[from]!,
            `drop → ${nodes[to]} (address down)`,
            event.payload,
          )
        } else if (!up[to]) {
          dropped++
          trace.record(
            nowMs,
            TraceNet,
            nodes[from]!,
            `drop → ${nodes[to]} (receiver down)`,
            event.payload,
          )
        } else {
          delivered++
          step(to, {
            _tag: "Receive",
            from: event.source as Address,
            message: event.payload as Message,
            nowMs,
          })
        }
        return
      }
      case Command: {
        const node = event.node
        if (!up[node]) {
          trace.record(nowMs, TraceNote, nodes[node]!, "command dropped: node down", event.payload)
          return
        }
        step(node, { _tag: "Command", command: event.payload as C, nowMs })
        return
      }
      case Tick: {
        const workload = options.workload!
        const view: View<State, Message, C, E, Address> = {
          nowMs,
          nodes,
          states: live,
          history,
          network,
          step: undefined,
          final: false,
          events,
        }
        for (const request of workload.commands(nowMs, view)) {
          const node = indexOf(request.node, "a workload command")
          queue.push(new Event(nowMs, seq++, Command, node, -1, request.command, undefined))
        }
        const nextMs = nowMs + workload.everyMs
        if (nextMs < (workload.endMs ?? durationMs) && nextMs <= durationMs) {
          queue.push(new Event(nextMs, seq++, Tick, -1, -1, undefined, undefined))
        }
        return
      }
    }
  }

  // Commands and the workload are queued before anything runs, so they keep their place.
  for (const request of options.commands ?? []) {
    const node = indexOf(request.node, "a scheduled command")
    queue.push(new Event(request.atMs, seq++, Command, node, -1, request.command, undefined))
  }
  if (options.workload !== undefined) {
    const everyMs = options.workload.everyMs
    if (!(everyMs > 0))
      throw new Error(`FastSim: workload.everyMs must be positive, got ${everyMs}`)
    const startMs = options.workload.startMs ?? everyMs
    if (startMs < (options.workload.endMs ?? durationMs) && startMs <= durationMs) {
      queue.push(new Event(startMs, seq++, Tick, -1, -1, undefined, undefined))
    }
  }

  for (let node = 0; node < count && violation === undefined; node++) {
    step(node, { _tag: "Init", nowMs })
  }
  if (everyStep) check(undefined, false)

  const applyAddressFault = (fault: AddressFault<Address>): void => {
    const key = describeAddress(fault.address)
    if (fault.down === true) addressesDown.add(key)
    else if (fault.down === false) addressesDown.delete(key)
    if (fault.loss !== undefined) {
      if (fault.loss > 0) addressLoss.set(key, fault.loss)
      else addressLoss.delete(key)
    }
    const what = [
      fault.down === undefined ? [] : [fault.down ? "down" : "up"],
      fault.loss === undefined ? [] : [`loss ${fault.loss}`],
    ].flat()
    trace.record(nowMs, TraceNote, "", `ADDRESS ${key} ${what.join(", ")}`, undefined)
  }

  let nextFault = 0
  let nextAddressFault = 0
  /**
   * Runs events up to `deadlineMs` (inclusive), faults before it; stops early once `stop`
   * holds (asked before each event) or after `stepsMax` events. Leaves the time at the last
   * event run.
   */
  const advance = (
    deadlineMs: number,
    stop?: () => boolean,
    stepsMax = Number.POSITIVE_INFINITY,
  ): void => {
    let ran = 0
    while (violation === undefined) {
      if (stop?.() === true || ran++ >= stepsMax) break
      const event = queue.peek()
      const queuedMs = event === undefined || event.atMs > deadlineMs ? Infinity : event.atMs
      const timer = timers.peek()
      const timerMs = timer === undefined || timer.dueMs > deadlineMs ? Infinity : timer.dueMs
      // The timer table and the queue share one (time, seq) order.
      const timerFirst =
        timerMs < queuedMs ||
        (timerMs === queuedMs && timerMs !== Infinity && timer!.order < event!.seq)
      const eventMs = timerFirst ? timerMs : queuedMs
      const scheduled = schedule[nextFault]
      const faultMs =
        scheduled === undefined || scheduled.atMs >= deadlineMs ? Infinity : scheduled.atMs
      const addressFault = addressFaults[nextAddressFault]
      const addressFaultMs =
        addressFault === undefined || addressFault.atMs >= deadlineMs ? Infinity : addressFault.atMs
      if (eventMs === Infinity && faultMs === Infinity && addressFaultMs === Infinity) break
      if (steps >= maxSteps) {
        violate("the run stays within maxSteps", `more than ${maxSteps} steps by ${nowMs} ms`)
        break
      }
      // An event at the time of a fault runs first, as under `Simulation`; a node-pair fault
      // before an address fault of the same time.
      if (addressFaultMs < eventMs && addressFaultMs < faultMs) {
        nextAddressFault++
        nowMs = Math.max(nowMs, addressFault!.atMs)
        applyAddressFault(addressFault!)
        if (everyStep) check(undefined, false)
      } else if (faultMs < eventMs) {
        nextFault++
        nowMs = Math.max(nowMs, scheduled!.atMs)
        const applied = { atMs: nowMs, fault: scheduled!.fault }
        network.apply(applied)
        history.push(applied)
        trace.record(nowMs, TraceFault, "", applied.fault, undefined)
        apply(applied.fault)
        if (everyStep) check(undefined, false)
      } else if (timerFirst) {
        const fired = timers.due(timerMs)!
        nowMs = timerMs
        step(fired.node, { _tag: "TimerFired", timer: fired.name, nowMs })
      } else {
        queue.pop()
        nowMs = event!.atMs
        runEvent(event!)
      }
    }
  }

  const describeInput = (input: Runner.Init | Machine.Input<Message, C, Address>): string => {
    switch (input._tag) {
      case "Init":
        return "init"
      case "Receive":
        return `recv ${describeAddress(input.from)} ${describeMessage(input.message)}`
      case "TimerFired":
        return `timer ${input.timer}`
      case "Command":
        return `command ${json(input.command)}`
    }
  }
  const describeOutput = (output: Machine.Output<Message, E, Address>): string => {
    switch (output._tag) {
      case "Send":
        return `send ${describeAddress(output.to)} ${describeMessage(output.message)}`
      case "Broadcast":
        return `broadcast ${describeMessage(output.message)}`
      case "SetTimer":
        return `set ${output.timer} +${output.afterMs}`
      case "CancelTimer":
        return `cancel ${output.timer}`
      case "Emit":
        return `EMIT ${json(output.event)}`
    }
  }
  const formatLine = (kind: number, first: unknown, second: unknown): string => {
    switch (kind) {
      case TraceStep: {
        const input = describeInput(first as Runner.Init | Machine.Input<Message, C, Address>)
        const outputs = second as ReadonlyArray<Machine.Output<Message, E, Address>>
        return outputs.length === 0
          ? input
          : `${input} => ${outputs.map(describeOutput).join("; ")}`
      }
      case TraceFault:
        return `FAULT ${FaultSchedule.describe(first as FaultSchedule.Fault)}`
      case TraceNet:
        return `${first as string} ${describeMessage(second as Message)}`
      default:
        return second === undefined ? `${first as string}` : `${first as string} ${json(second)}`
    }
  }
  const formatTrace = (): string => trace.lines(formatLine).join("\n")

  /** Throws `FastSimFailure` for the violation found, if any. */
  const throwIfViolated = (): void => {
    const found = violation as Violation | undefined
    if (found !== undefined) {
      const states = [...live].map(([node, state]) => `  ${node}: ${describeState(state)}`)
      const report = [
        "fault schedule:",
        schedule.length === 0 ? "  (none)" : FaultSchedule.format(schedule),
        `states of the live nodes at ${found.atMs} ms:`,
        states.length === 0 ? "  (none)" : states.join("\n"),
        `trace (last ${trace.capacity} lines up to the violation):`,
        formatTrace(),
      ].join("\n")
      throw new FastSimFailure(seed, found.invariant, found.detail, found.atMs, report)
    }
  }

  /** The final check at `endMs`, then the report (or the failure). */
  const finish = (endMs: number): Report<E> => {
    if (violation === undefined) {
      nowMs = Math.max(nowMs, endMs)
      check(undefined, true)
    }
    throwIfViolated()
    return {
      seed,
      steps,
      schedule,
      delivered,
      dropped,
      duplicated,
      reordered,
      encoded,
      events,
      formatTrace,
    }
  }

  return {
    advance,
    finish,
    throwIfViolated,
    nowMs: () => nowMs,
    indexOf,
    states,
    live,
    perform,
    queue,
    timers,
    timerKeys,
    countDropped: () => {
      dropped++
    },
  }
}

/**
 * The trace a report kept, one line per step, fault and network event: for replay
 * comparisons and for printing a passing run.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatTrace = <E>(report: Report<E>): string => report.formatTrace()
