/**
 * The pool on FastSim: servers (the pool machine) and clients (the client machine) as nodes
 * of one simulated network, the invariants of the pool, and a fast stand-in for the
 * signatures (the real Ed25519 ones are tested on their own).
 *
 * The only glue is what the drivers do: a client's message reaches a server as the
 * `FromClient` command (the server driver gives those that arrived together to the runner's
 * `commandAll`, which steps each the same way), a server's `Reply` event goes out as
 * a datagram to that client, and whatever `Durable` a step produced is on "disk" before its
 * outputs (the server driver writes it in `onStep`).
 */
import { Machine as M } from "@understudy/machine"
import { FastSim, FaultSchedule } from "@understudy/testkit"
import type { SimNet } from "@understudy/transport"
import { HashMap, Option } from "effect"
import * as Client from "../../src/ClientMachine.ts"
import * as Machine from "../../src/Machine.ts"
import type * as Message from "../../src/Message.ts"

export type Msg = Message.Peer | Message.ClientRequest | Message.ServerReply
export type NodeState =
  | {
      readonly kind: "server"
      readonly state: Machine.State
      /** Stopped (SIGSTOP): what arrived meanwhile, handled in order when it continues. */
      readonly stopped?: ReadonlyArray<M.Input<Message.Peer, Machine.Command>>
      /** Killed (SIGKILL) by a command: it takes no input until restarted. */
      readonly killed?: boolean
    }
  | { readonly kind: "client"; readonly state: Client.State }
export type NodeEvent = Machine.Event | Client.Event
/**
 * Faults on a server process chosen while the run goes (the current leader, the busiest
 * follower), which a fault schedule fixed in advance cannot name:
 * - `Stop`, `Continue` (SIGSTOP, SIGCONT): while stopped it takes no step, its datagrams and
 *   timers wait (as in the kernel's socket buffers), and on continuing it handles them all at
 *   the time it continues;
 * - `Kill`, `Restart` (SIGKILL, then a new process): it loses everything but its disk.
 */
export type NodeCommand =
  | { readonly _tag: "Stop" }
  | { readonly _tag: "Continue" }
  | { readonly _tag: "Kill" }
  | { readonly _tag: "Restart" }

const fields = (claims: Omit<Message.Token, "signature">) =>
  `${claims.client}|${claims.server}|${claims.term}|${claims.product}|${claims.seats}|${claims.validUntilMs}`

/** Deterministic and cheap: what the machine needs of signatures is that forgeries fail. */
export const fakeCrypto: Machine.Crypto = {
  signToken: (claims) => `sig:${fields(claims)}`,
  verifyToken: (token) => token.signature === `sig:${fields(token)}`,
  verifyLicense: (license) =>
    license.signature === `vendor:${license.product}|${license.seats}|${license.sequence}`,
}

export const license = (seats: number, sequence = 1): Message.License => ({
  product: "cad",
  seats,
  expiresAtMs: 1e12,
  sequence,
  signature: `vendor:cad|${seats}|${sequence}`,
})

export const timing = {
  heartbeatIntervalMs: 100,
  followerTimeoutMs: 500,
  checkTimeoutMs: 200,
  leaderLeaseMs: 350,
  downAfterMs: 400,
  electionStaggerMs: 150,
  leaseMs: 2_000,
}

/** A follower's acknowledgement of the term-1 leader's heartbeat `seq` (empty record, life 1). */
export const ack = (seq: number): Message.Peer => ({
  _tag: "HeartbeatAck",
  term: 1,
  seq,
  version: 0,
  used: 0,
  sequence: 1,
  life: 1,
  shareUsed: 0,
})

/**
 * s1 (of s1, s2, s3) elected leader of term 1 at 605 ms with s2's vote, both followers'
 * (empty) records merged, its heartbeats acknowledged every 100 ms until `nowMs` (3,000:
 * past the settling time after the election, so it grants new seats).
 */
export const electedLeader = (machine: Machine.Pool, nowMs = 3_000): Machine.State => {
  let state = machine.init({ self: "s1", peers: ["s2", "s3"], nowMs: 0 }).state
  state = machine.step(state, M.timerFired(Machine.electionTimer, 600)).state
  state = machine.step(state, M.receive("s2", { _tag: "Vote", term: 1, granted: true }, 605)).state
  if (state.role !== "leader") throw new Error(`s1 is ${state.role}, not leader`)
  for (const follower of ["s2", "s3"]) {
    state = machine.step(state, M.receive(follower, ack(1), 610)).state
    const record: Message.Peer = {
      _tag: "Record",
      term: 1,
      version: 0,
      life: 1,
      shareUsed: 0,
      part: 0,
      parts: 1,
      allocations: [],
    }
    state = machine.step(state, M.receive(follower, record, 611)).state
  }
  for (let atMs = 700; atMs < nowMs; atMs += 100) {
    state = machine.step(state, M.timerFired(Machine.tickTimer, atMs)).state
    const seq = state.leaderState!.seq
    for (const follower of ["s2", "s3"])
      state = machine.step(state, M.receive(follower, ack(seq), atMs + 1)).state
  }
  return state
}

export interface World {
  readonly servers: ReadonlyArray<string>
  readonly clients: ReadonlyArray<string>
  readonly capacity: number
  readonly disk: Map<string, Machine.Restored>
  /** Leader of each term, as announced. */
  readonly leaders: Map<number, string>
}

export const makeWorld = (servers: number, clients: number, capacity: number): World => ({
  servers: Array.from({ length: servers }, (_, index) => `s${index + 1}`),
  clients: Array.from({ length: clients }, (_, index) => `c${index + 1}`),
  capacity,
  disk: new Map(),
  leaders: new Map(),
})

/** Servers and clients as one machine, glued as the drivers glue them. */
export const nodeMachine = (world: World): M.Machine<NodeState, Msg, NodeCommand, NodeEvent> => {
  const server = Machine.make({
    servers: world.servers,
    ...timing,
    crypto: fakeCrypto,
    initialLicense: license(world.capacity),
    durable: (self) => world.disk.get(self),
  })
  const serverSet = new Set(world.servers)
  const clients = new Map<string, ReturnType<typeof Client.make>>()
  for (const [index, id] of world.clients.entries()) {
    clients.set(
      id,
      Client.make({
        servers: world.servers,
        product: "cad",
        seats: 1,
        heartbeatIntervalMs: timing.heartbeatIntervalMs,
        firstServer: index,
      }),
    )
  }

  const serverResult = (
    before: Machine.State | undefined,
    result: M.Result<Machine.State, Message.Peer, Machine.Event>,
  ): M.Result<NodeState, Msg, NodeEvent> => {
    const after = result.state
    if (
      before === undefined ||
      before.durable !== after.durable ||
      before.stored !== after.stored
    ) {
      world.disk.set(after.self, {
        ...after.durable,
        record: Array.from(
          HashMap.values(after.record),
          ({ client, seats, grantedAtMs, expiresAtMs }) => ({
            client,
            seats,
            grantedAtMs,
            expiresAtMs,
          }),
        ),
      })
    }
    const outputs: Array<M.Output<Msg, NodeEvent>> = []
    for (const output of result.outputs) {
      if (output._tag === "Emit" && output.event._tag === "Reply") {
        if (output.event.message._tag === "Wait") coverage.waits++
        outputs.push({ _tag: "Send", to: output.event.to, message: output.event.message })
      } else if (output._tag === "Broadcast") {
        for (const peer of world.servers)
          if (peer !== after.self) outputs.push({ _tag: "Send", to: peer, message: output.message })
      } else {
        outputs.push(output)
        if (output._tag === "Emit" && output.event._tag === "BecameLeader") {
          const previous = world.leaders.get(output.event.term)
          if (previous !== undefined && previous !== after.self) {
            throw new Error(
              `two leaders in term ${output.event.term}: ${previous} and ${after.self}`,
            )
          }
          world.leaders.set(output.event.term, after.self)
        }
      }
    }
    return { state: { kind: "server", state: after }, outputs }
  }

  return {
    init: (context) => {
      if (serverSet.has(context.self)) {
        return serverResult(
          undefined,
          server.init({ ...context, peers: world.servers.filter((peer) => peer !== context.self) }),
        )
      }
      const result = clients.get(context.self)!.init({ ...context, peers: world.servers })
      return { state: { kind: "client", state: result.state }, outputs: result.outputs }
    },
    step: (node, input) => {
      if (node.kind === "server") {
        if (input._tag === "Command") {
          const command = input.command
          if (command._tag === "Kill")
            return { state: { kind: "server", state: node.state, killed: true }, outputs: [] }
          if (command._tag === "Restart") {
            if (node.killed !== true) return { state: node, outputs: [] }
            const self = node.state.self
            return serverResult(
              undefined,
              server.init({
                self,
                peers: world.servers.filter((peer) => peer !== self),
                nowMs: input.nowMs,
              }),
            )
          }
          if (node.killed === true) return { state: node, outputs: [] }
          if (command._tag === "Stop")
            return { state: { ...node, stopped: node.stopped ?? [] }, outputs: [] }
          // Continued: everything that waited, at the time it continues.
          let state = node.state
          const outputs: Array<M.Output<Msg, NodeEvent>> = []
          for (const waited of node.stopped ?? []) {
            const result = serverResult(
              state,
              server.step(state, { ...waited, nowMs: input.nowMs } as typeof waited),
            )
            state = result.state.state as Machine.State
            outputs.push(...result.outputs)
          }
          return { state: { kind: "server", state }, outputs }
        }
        const serverInput: M.Input<Message.Peer, Machine.Command> =
          input._tag === "Receive" && !serverSet.has(input.from)
            ? M_command(
                {
                  _tag: "FromClient",
                  from: input.from,
                  message: input.message as Message.ClientRequest,
                },
                input.nowMs,
              )
            : (input as M.Input<Message.Peer, Machine.Command>)
        if (node.killed === true) return { state: node, outputs: [] }
        if (node.stopped !== undefined)
          return { state: { ...node, stopped: [...node.stopped, serverInput] }, outputs: [] }
        return serverResult(node.state, server.step(node.state, serverInput))
      }
      if (input._tag === "Command") return { state: node, outputs: [] }
      const result = clients
        .get(node.state.self)!
        .step(
          node.state,
          input as M.Input<Message.ServerReply | Message.ClientRequest, Client.Command>,
        )
      return { state: { kind: "client", state: result.state }, outputs: result.outputs }
    },
  }
}

const M_command = (command: Machine.Command, nowMs: number): M.Command<Machine.Command> => ({
  _tag: "Command",
  command,
  nowMs,
})

export const goodLink: SimNet.LinkConfig = {
  latency: { _tag: "Uniform", minMs: 1, maxMs: 5 },
  loss: 0,
  duplicate: 0.01,
  reorder: 0,
}

export const faultsEndMs = 5_000
export const durationMs = 11_000

export const schedule = (world: World, seed: number): Array<FaultSchedule.Scheduled> =>
  FaultSchedule.generate(seed, {
    nodes: world.servers,
    startMs: 1_000,
    endMs: faultsEndMs,
    gapMs: { minMs: 100, maxMs: 700 },
    goodLink,
    degraded: { maxLatencyMs: 80, maxLoss: 0.4, maxDuplicate: 0.1, maxReorder: 0.2 },
    healAtEnd: true,
    restartAtEnd: true,
  })

const heldSeats = (world: World, states: ReadonlyMap<string, NodeState>, nowMs: number): number => {
  let seats = 0
  for (const id of world.clients) {
    const node = states.get(id)
    if (node?.kind === "client" && Client.holds(node.state, nowMs)) seats += 1
  }
  return seats
}

/** Seats the followers may still grant from their shares without asking the leader. */
const unusedShares = (
  world: World,
  states: ReadonlyMap<string, NodeState>,
  nowMs: number,
): number => {
  let seats = 0
  for (const id of world.servers) {
    const node = states.get(id)
    if (node?.kind === "server" && node.killed !== true)
      seats += Machine.shareLeft(node.state, nowMs)
  }
  return seats
}

/** Counts what the runs exercised, so a suite can show its premises were met. */
export const coverage = {
  reattached: 0,
  denied: 0,
  leaderChanges: 0,
  merged: 0,
  checks: 0,
  shareGrants: 0,
  /** `Wait` replies: a request that fits once the followers' shares are back. */
  waits: 0,
}

/**
 * Whether `step` ends the run of the leader's tally kept change by change: a tick (its expiry
 * counts the tally again), a merge, a stop, a kill, or no longer leading.
 */
const tallyCountedAgain = (
  step: NonNullable<FastSim.View<NodeState, Msg, NodeCommand, NodeEvent>["step"]>,
): boolean => {
  if (step.after.kind !== "server" || step.after.state.leaderState === undefined) return true
  for (const input of step.inputs ?? [step.input]) {
    if (input._tag === "TimerFired" && input.timer === Machine.tickTimer) return true
    if (input._tag === "Command" && "_tag" in input.command) {
      const tag = input.command._tag
      if (tag === "Stop" || tag === "Continue" || tag === "Kill") return true
    }
  }
  return step.outputs.some(
    (output) => output._tag === "Emit" && output.event._tag === "RecordMerged",
  )
}

/**
 * A server's seats in its record, and a leader's tally and its count at the edge of the
 * capacity, against its record and pool counted again: what differs, if anything.
 */
const tallyWrong = (state: Machine.State, nowMs: number): string | undefined => {
  let recordSeats = 0
  for (const held of HashMap.values(state.record)) recordSeats += held.seats
  if (state.recordSeats !== recordSeats)
    return `${state.self}'s record seats ${state.recordSeats}, counted ${recordSeats}`
  if (state.leaderState === undefined) return undefined
  const { tally, pool } = state.leaderState
  const counted = Machine.tallyOf(state.record, pool)
  const sameSeats =
    HashMap.size(tally.seats) === HashMap.size(counted.seats) &&
    [...HashMap.entries(counted.seats)].every(([client, seats]) =>
      Option.contains(HashMap.get(tally.seats, client), seats),
    )
  const servers = new Set([...Object.keys(tally.moved), ...Object.keys(counted.moved)])
  const sameMoved = [...servers].every(
    (server) => (tally.moved[server] ?? 0) === (counted.moved[server] ?? 0),
  )
  // What the leader counts at the edge of the capacity: never fewer seats than are in use
  // (the license would be exceeded), with and without a client that stops counting.
  const except = state.leaderState.endingSoon[0]
  for (const client of except === undefined ? [undefined] : [undefined, except]) {
    const atEdge = Machine.seatsCounted(state, nowMs, timing.leaseMs, client)
    const inUse = Machine.poolSeatsInUse(state, nowMs, timing.leaseMs, client)
    if (atEdge < inUse)
      return `${state.self} counts ${atEdge} seats at the edge of the capacity${client === undefined ? "" : ` but ${client}'s`}, ${inUse} in use`
  }
  return tally.total === counted.total && sameSeats && sameMoved
    ? undefined
    : `${state.self}'s tally ${tally.total} over ${HashMap.size(tally.seats)} clients ${JSON.stringify(tally.moved)}, counted ${counted.total} over ${HashMap.size(counted.seats)} ${JSON.stringify(counted.moved)}`
}

export const invariants = (
  world: World,
): Array<FastSim.Invariant<NodeState, Msg, NodeCommand, NodeEvent>> => {
  let leaderSteps = 0
  /**
   * How often a leader's tally is counted again besides the counts that end its run: every
   * 8th leader step, or every clients-th in a big world (so O(1) a step there).
   */
  const tallyEvery = Math.max(8, world.clients.length)
  return [
    {
      name: "valid allocations plus unused shares never exceed the license",
      check: (view) => {
        const step = view.step
        const over = () => {
          const seats = heldSeats(world, view.states, view.nowMs)
          const shares = unusedShares(world, view.states, view.nowMs)
          return seats + shares > world.capacity
            ? `${seats} seats held and ${shares} unused in shares, license ${world.capacity}`
            : undefined
        }
        if (step === undefined || view.final) return over()
        const before = step.before
        const after = step.after
        for (const output of step.outputs) {
          if (output._tag !== "Emit") continue
          const tag = output.event._tag
          if (tag === "Reattached") coverage.reattached++
          else if (tag === "Denied") coverage.denied++
          else if (tag === "BecameLeader") coverage.leaderChanges++
          else if (tag === "RecordMerged") coverage.merged++
          else if (tag === "CheckSent") coverage.checks++
          else if (tag === "Allocated" && output.event.fromShare) coverage.shareGrants++
        }
        // The count only grows when a client starts holding or a follower's share grows: check
        // then.
        if (after.kind === "server") {
          const shareBefore =
            before?.kind === "server" ? Machine.shareLeft(before.state, step.nowMs) : 0
          return Machine.shareLeft(after.state, step.nowMs) > shareBefore ? over() : undefined
        }
        const held = before?.kind === "client" && Client.holds(before.state, step.nowMs)
        if (held || !Client.holds(after.state, step.nowMs)) return undefined
        return over()
      },
    },
    {
      name: "a client whose seat fits is never refused on re-attaching",
      check: (view) => {
        const step = view.step
        if (step === undefined || step.before?.kind !== "client") return undefined
        const before = step.before.state
        if (!Client.holds(before, step.nowMs)) return undefined
        for (const output of step.outputs) {
          if (
            output._tag === "Emit" &&
            output.event._tag === "Denied" &&
            output.event.reason === "capacity"
          ) {
            return `${before.self} held a seat and was refused for capacity by ${output.event.server}`
          }
        }
        return undefined
      },
    },
    {
      name: "after healing: one leader, whose record is the union of the records",
      check: (view) => {
        if (!view.final) return undefined
        const servers: Array<Machine.State> = []
        for (const id of world.servers) {
          const node = view.states.get(id)
          if (node?.kind === "server" && node.killed !== true) servers.push(node.state)
        }
        const leaders = servers.filter((server) => server.role === "leader")
        if (leaders.length !== 1)
          return `${leaders.length} leaders at the end: ${leaders.map((server) => server.self).join(",")}`
        const leader = leaders[0]!
        const union = new Set<string>()
        for (const server of servers)
          for (const client of HashMap.keys(server.record)) union.add(client)
        const record = Machine.poolRecord(leader)
        const missing = [...union].filter((client) => !record.has(client))
        const extra = [...record.keys()].filter((client) => !union.has(client))
        if (missing.length > 0 || extra.length > 0) {
          return `leader ${leader.self}'s record differs from the union: missing ${missing.join(",")}, extra ${extra.join(",")}`
        }
        const holders = heldSeats(world, view.states, view.nowMs)
        const expected = Math.min(world.clients.length, world.capacity)
        return holders < expected
          ? `only ${holders} clients hold a seat at the end, ${expected} could`
          : undefined
      },
    },
    {
      name: "the leader's tally and the record's seats, kept with each change, equal their count",
      check: (view) => {
        // A leader's tally is kept change by change from one count to the next: the tick's
        // expiry (every heartbeat interval), a merge, its election. A change kept wrong stays
        // wrong until then, unless a later change of the same client hides it: so the tally is
        // counted again as it stands when that happens (the state before the step), and after
        // every `tallyEvery`-th step of a leader, not at every step (O(clients) each, a third of
        // the suite's time). A planted defect (a client's seats left at 0 instead of removed)
        // is caught in 5 of 200 schedules this way, 6 of 200 counting at every step.
        if (view.final) {
          for (const node of view.states.values()) {
            const live = node.kind === "server" && node.killed !== true
            const wrong = live ? tallyWrong(node.state, view.nowMs) : undefined
            if (wrong !== undefined) return wrong
          }
          return undefined
        }
        const step = view.step
        if (step?.before?.kind !== "server" || step.before.state.leaderState === undefined)
          return undefined
        if (tallyCountedAgain(step)) return tallyWrong(step.before.state, view.nowMs)
        leaderSteps++
        return leaderSteps % tallyEvery === 0 && step.after.kind === "server"
          ? tallyWrong(step.after.state, view.nowMs)
          : undefined
      },
    },
  ]
}

export const describeState = (node: NodeState): string =>
  node.kind === "client"
    ? JSON.stringify(node.state)
    : JSON.stringify({
        ...node.state,
        record: Array.from(HashMap.keys(node.state.record)),
        pending: Array.from(HashMap.keys(node.state.pending)),
        leaderState: node.state.leaderState && {
          ...node.state.leaderState,
          pool: Array.from(HashMap.entries(node.state.leaderState.pool)),
        },
      })

export const run = (
  seed: number,
  world: World,
  more: Partial<FastSim.Options<NodeState, Msg, NodeCommand, NodeEvent>> = {},
): FastSim.Report<NodeEvent> =>
  FastSim.run({
    machine: nodeMachine(world),
    nodes: [...world.servers, ...world.clients],
    seed,
    durationMs,
    link: goodLink,
    schedule: schedule(world, seed),
    invariants: invariants(world),
    describeState,
    collectEvents: false,
    ...more,
  })

/** The stalls of the last `runRounds` with `stalls` (for a failure's story). */
export const stallLog: Array<string> = []
/**
 * The last `runRounds` with stalls: each seat lost when its server did not run for its whole
 * lease, or a majority of the servers ran for at most half of it (an honest expiry, not a
 * failure).
 */
export const honestExpiries: Array<string> = []

/** One fault of a round: the kinds of the real-process test, in its rotation. */
export type RoundFault = "kill-leader" | "stop-leader" | "kill-follower"

/** Deterministic choices of one schedule of rounds (not a secret: a simulation's dice). */
const dice = (seed: number) => {
  let bits = Math.imul(seed, 2654435761) >>> 0 || 1
  return (below: number): number => {
    bits ^= bits << 13
    bits >>>= 0
    bits ^= bits >>> 17
    bits ^= bits << 5
    bits >>>= 0
    return Math.floor((bits / 2 ** 32) * below)
  }
}

const serverOf = (states: ReadonlyMap<string, NodeState>, id: string) => {
  const node = states.get(id)
  return node?.kind === "server" ? node : undefined
}

/**
 * Rounds of single failures, as the real-process test injects them: once every seat is held,
 * each round SIGKILLs the leader (restarted after 0 to 4 heartbeat intervals), SIGSTOPs it
 * (continued once a new leader exists and its clients re-attached), or SIGKILLs the busiest
 * follower (restarted likewise). The next round starts as soon as the failover is over:
 * every server up and agreeing on the leader and its term, every follower renewing under its
 * authority (the leader merged its record), the victim's clients re-attached, and every seat
 * renewed since the last fault. Never two faults within one lease, so no client may lose its
 * seat.
 */
export const runRounds = (
  seed: number,
  world: World,
  rounds: number,
  more: Partial<FastSim.Options<NodeState, Msg, NodeCommand, NodeEvent>> = {},
  /**
   * A loaded machine: at each workload tick, with chance `1 / every`, a server that is not
   * stopped is stalled (SIGSTOP-like: its datagrams and timers wait) for up to `maxMs`.
   */
  stalls?: { readonly every: number; readonly maxMs: number },
): FastSim.Report<NodeEvent> & { readonly rounds: number } => {
  const roll = dice(seed)
  const stalled = new Map<string, number>()
  /** A majority of the servers running (neither killed nor stopped): an election can end. */
  let majorityRuns = false
  let majorityMs = 0
  let lastCheckMs = 0
  /** Each change of `majorityRuns`, with the time with a running majority summed until then. */
  const majorityLog: Array<{ readonly atMs: number; readonly majorityMs: number }> = []
  /** Since when each server that is not running has not been. */
  const downSince = new Map<string, number>()
  /**
   * Each time a leader stopped running (killed or stopped), until it ran again: a leader killed,
   * or stopped for a follower time-out or more, failed (the others must elect another).
   */
  const leaderOutages: Array<{
    readonly server: string
    readonly term: number
    readonly killed: boolean
    readonly fromMs: number
    untilMs?: number
  }> = []
  stallLog.length = 0
  honestExpiries.length = 0
  const servers = world.servers
  let round = 0
  let waiting: { fault: RoundFault; victim: string; atMs: number; term: number } | undefined
  let moved: ReadonlyArray<string> = []
  let restartAtMs: number | undefined
  let lastFaultAtMs = Number.NEGATIVE_INFINITY
  const holders = (view: FastSim.View<NodeState, Msg, NodeCommand, NodeEvent>, at?: string) =>
    world.clients.filter((id) => {
      const node = view.states.get(id)
      return (
        node?.kind === "client" &&
        Client.holds(node.state, view.nowMs) &&
        (at === undefined || node.state.server === at)
      )
    })
  /**
   * Every seat held was renewed since `sinceMs`. Without it, a seat moved off a killed follower
   * and not yet renewed was at the leader the next round killed: two faults within its lease
   * (SEED=31 at 400 ms stalls).
   */
  const renewedSince = (
    view: FastSim.View<NodeState, Msg, NodeCommand, NodeEvent>,
    sinceMs: number,
  ) =>
    holders(view).every((id) => {
      const node = view.states.get(id)
      return node?.kind === "client" && node.state.leaseUntilMs > sinceMs + timing.leaseMs
    })
  // Stalls slow the rounds down: twice the time, and none begins that would outlast the
  // workload (a server left stopped would be a second failure).
  const roundsMs = rounds * (stalls === undefined ? 4_000 : 8_000)
  const report = FastSim.run<NodeState, Msg, NodeCommand, NodeEvent>({
    machine: nodeMachine(world),
    nodes: [...servers, ...world.clients],
    seed,
    durationMs: 2_000 + roundsMs + 5_000,
    link: goodLink,
    invariants: [
      ...invariants(world).slice(0, 2),
      {
        name: "no client loses its seat through single failures",
        check: (view) => {
          // How long a majority of the servers ran, and since when each one that does not
          // has not, so that a loss tells whether its lease honestly ran out.
          const nowMs = view.nowMs
          if (majorityRuns) majorityMs += nowMs - lastCheckMs
          lastCheckMs = nowMs
          let running = 0
          for (const id of servers) {
            const node = serverOf(view.states, id)
            if (node !== undefined && node.killed !== true && node.stopped === undefined) {
              running++
              if (downSince.delete(id))
                for (const outage of leaderOutages)
                  if (outage.server === id && outage.untilMs === undefined) outage.untilMs = nowMs
            } else if (!downSince.has(id)) {
              downSince.set(id, nowMs)
              if (node?.state.role === "leader")
                leaderOutages.push({
                  server: id,
                  term: node.state.durable.term,
                  killed: node.killed === true,
                  fromMs: nowMs,
                })
            }
          }
          const before = majorityRuns
          majorityRuns = running * 2 > servers.length
          if (majorityRuns !== before) majorityLog.push({ atMs: nowMs, majorityMs })
          for (const output of view.step?.outputs ?? [])
            if (output._tag === "Emit" && output.event._tag === "Lost") {
              const { server, term, reason } = output.event
              const sinceMs = nowMs - timing.leaseMs
              // The entries alternate: an even one starts a time with a running majority, an odd
              // one ends it.
              let index = majorityLog.length - 1
              while (index >= 0 && majorityLog[index]!.atMs > sinceMs) index--
              const atStart =
                index < 0
                  ? 0
                  : majorityLog[index]!.majorityMs +
                    (index % 2 === 0 ? sinceMs - majorityLog[index]!.atMs : 0)
              const withMajority = Math.round(majorityMs - atStart)
              const holderDown = server !== undefined && (downSince.get(server) ?? nowMs) <= sinceMs
              const failedLeaders = leaderOutages.filter((outage) => {
                const untilMs = outage.untilMs ?? nowMs
                return (
                  untilMs > sinceMs &&
                  (outage.killed || untilMs - outage.fromMs >= timing.followerTimeoutMs)
                )
              })
              const failedTerms = new Set(failedLeaders.map((outage) => outage.term)).size
              const loss = `${view.step!.node} lost its seat at ${server} term ${term} (${reason}); a majority of the servers ran for ${withMajority} ms of the last lease (${timing.leaseMs} ms)${holderDown ? `, ${server} for none of it` : ""}${failedLeaders.length === 0 ? "" : `; leaders failed in it: ${failedLeaders.map((outage) => `${outage.server} of term ${outage.term} ${outage.killed ? "killed" : `stopped ${Math.round((outage.untilMs ?? nowMs) - outage.fromMs)} ms`} at ${Math.round(outage.fromMs)}`).join(", ")}`}`
              // On stalling servers a lease may run out honestly, by its cause: the server that
              // held it did not run for the whole lease; or a majority of the servers ran for at
              // most half of it (ten heartbeats), too little for an election (~850 ms from a
              // silent leader) and a renewal; or the leaders of two terms failed within it (each
              // killed, or stopped for a follower time-out or more: two failovers, two faults).
              // A lease that ran out while a majority ran for longer, with at most one leader
              // failed, is an election that did not end or a seat not renewed: a defect.
              if (
                stalls !== undefined &&
                reason === "expired" &&
                (holderDown || withMajority * 2 <= timing.leaseMs || failedTerms >= 2)
              ) {
                honestExpiries.push(loss)
                continue
              }
              return loss
            }
          return undefined
        },
      },
    ],
    describeState,
    collectEvents: false,
    workload: {
      everyMs: timing.heartbeatIntervalMs / 4,
      endMs: 2_000 + roundsMs,
      commands: (nowMs, view) => {
        const stallCommands: Array<FastSim.CommandFor<NodeCommand>> = []
        if (stalls !== undefined) {
          for (const [id, untilMs] of stalled)
            if (nowMs >= untilMs) {
              stalled.delete(id)
              stallLog.push(`${nowMs} continue ${id}`)
              stallCommands.push({ node: id, command: { _tag: "Continue" } })
            }
          if (roll(stalls.every) === 0 && nowMs + stalls.maxMs < 2_000 + roundsMs - 500) {
            const id = servers[roll(servers.length)]!
            if (!stalled.has(id) && serverOf(view.states, id)?.stopped === undefined) {
              stalled.set(id, nowMs + roll(stalls.maxMs))
              stallLog.push(`${nowMs} stall ${id} until ${stalled.get(id)}`)
              stallCommands.push({ node: id, command: { _tag: "Stop" } })
            }
          }
        }
        return [...stallCommands, ...roundCommands(nowMs, view)]
      },
    },
    ...more,
  })
  return { ...report, rounds: round }

  function roundCommands(
    nowMs: number,
    view: FastSim.View<NodeState, Msg, NodeCommand, NodeEvent>,
  ): Array<FastSim.CommandFor<NodeCommand>> {
    if (round >= rounds) return []
    const nodes = servers.map((id) => serverOf(view.states, id)!)
    if (waiting === undefined) {
      const leader = nodes.find((node) => node.state.role === "leader")
      const over =
        leader !== undefined &&
        nodes.every(
          (node) =>
            node.killed !== true &&
            node.stopped === undefined &&
            node.state.durable.term === leader.state.durable.term &&
            node.state.leader === leader.state.self &&
            (node === leader || node.state.authorityUntilMs > nowMs),
        ) &&
        renewedSince(view, lastFaultAtMs)
      // Round 0 waits for every seat to be taken.
      if (!over || (round === 0 && holders(view).length < world.capacity)) return []
      const fault = (["kill-leader", "stop-leader", "kill-follower"] as const)[round % 3]!
      const victim =
        fault === "kill-follower"
          ? servers
              .filter((id) => id !== leader.state.self)
              .sort((a, b) => holders(view, b).length - holders(view, a).length)[0]!
          : leader.state.self
      moved = holders(view, victim)
      waiting = { fault, victim, atMs: nowMs, term: leader.state.durable.term }
      lastFaultAtMs = nowMs
      restartAtMs =
        fault === "stop-leader" ? undefined : nowMs + roll(17) * (timing.heartbeatIntervalMs / 4)
      return [{ node: victim, command: { _tag: fault === "stop-leader" ? "Stop" : "Kill" } }]
    }
    const { fault, victim, atMs, term } = waiting
    const commands: Array<FastSim.CommandFor<NodeCommand>> = []
    if (restartAtMs !== undefined && nowMs >= restartAtMs) {
      restartAtMs = undefined
      commands.push({ node: victim, command: { _tag: "Restart" } })
    }
    const newLeader = nodes.some(
      (node) =>
        node.killed !== true &&
        node.stopped === undefined &&
        node.state.role === "leader" &&
        node.state.durable.term > term,
    )
    // A client re-attached elsewhere, or held on at its restarted server and is renewed.
    const reattached = moved.every((id) => {
      const node = view.states.get(id)
      return (
        node?.kind === "client" &&
        Client.holds(node.state, nowMs) &&
        (node.state.server !== victim || node.state.leaseUntilMs > atMs + timing.leaseMs)
      )
    })
    if ((fault !== "kill-follower" && !newLeader) || !reattached || restartAtMs !== undefined)
      return commands
    if (fault === "stop-leader") commands.push({ node: victim, command: { _tag: "Continue" } })
    round++
    waiting = undefined
    return commands
  }
}

/**
 * `runRounds` over `seeds`, each on `worldFor(seed)`: the rounds done in all, and the seats
 * lost to honest expiries (with stalls only). Fails, once all ran, naming every schedule that
 * broke an invariant (replay one with `UNDERSTUDY_SEED`).
 */
export const runRoundsOver = (
  seeds: ReadonlyArray<number>,
  worldFor: (seed: number) => World,
  rounds: number,
  stalls?: { readonly every: number; readonly maxMs: number },
): { readonly rounds: number; readonly honestExpiries: ReadonlyArray<string> } => {
  const failures: Array<FastSim.FastSimFailure> = []
  const honest: Array<string> = []
  let done = 0
  for (const seed of seeds) {
    try {
      done += runRounds(seed, worldFor(seed), rounds, {}, stalls).rounds
    } catch (error) {
      if (!(error instanceof FastSim.FastSimFailure)) throw error
      failures.push(error)
    }
    honest.push(...honestExpiries.map((loss) => `SEED=${seed}: ${loss}`))
  }
  if (failures.length > 0) {
    const list = failures.map((failure) => `  SEED=${failure.seed}: ${failure.detail}`)
    throw new Error(
      `${failures[0]!.message}\n\n${failures.length} of ${seeds.length} schedules failed:\n${list.join("\n")}`,
    )
  }
  return { rounds: done, honestExpiries: honest }
}
