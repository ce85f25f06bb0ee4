/**
 * The pool on FastSim: servers (the pool machine) and clients (the client machine) as nodes
 * of one simulated network, the invariants of the pool, and a fast stand-in for the
 * signatures (the real Ed25519 ones are tested on their own).
 *
 * The only glue is what the drivers do: a client's message reaches a server as the
 * `FromClient` command (the server driver feeds it so), a server's `Reply` event goes out as
 * a datagram to that client, and whatever `Durable` a step produced is on "disk" before its
 * outputs (the server driver writes it in `onStep`).
 */
import { Machine as M } from "@understudy/machine"
import { FastSim, FaultSchedule } from "@understudy/testkit"
import type { SimNet } from "@understudy/transport"
import { HashMap } from "effect"
import * as Client from "../../src/ClientMachine.ts"
import * as Machine from "../../src/Machine.ts"
import type * as Message from "../../src/Message.ts"

export type Msg = Message.Peer | Message.ClientRequest | Message.ServerReply
export type NodeState =
  | { readonly kind: "server"; readonly state: Machine.State }
  | { readonly kind: "client"; readonly state: Client.State }
export type NodeEvent = Machine.Event | Client.Event

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

/**
 * s1 (of s1, s2, s3) elected leader of term 1 at 605 ms with s2's vote, both followers'
 * (empty) records merged, its heartbeats acknowledged every 100 ms until `nowMs` (3,000:
 * past the settling time after the election, so it grants new seats).
 */
export const electedLeader = (machine: Machine.Pool, nowMs = 3_000): Machine.State => {
  const ack = (seq: number): Message.Peer => ({
    _tag: "HeartbeatAck",
    term: 1,
    seq,
    version: 0,
    used: 0,
    sequence: 1,
    life: 1,
    shareUsed: 0,
  })
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
export const nodeMachine = (world: World): M.Machine<NodeState, Msg, never, NodeEvent> => {
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
        if (input._tag === "Receive" && !serverSet.has(input.from)) {
          const message = input.message as Message.ClientRequest
          return serverResult(
            node.state,
            server.step(
              node.state,
              M_command({ _tag: "FromClient", from: input.from, message }, input.nowMs),
            ),
          )
        }
        return serverResult(
          node.state,
          server.step(node.state, input as unknown as M.Input<Message.Peer, Machine.Command>),
        )
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
    if (node?.kind === "server") seats += Machine.shareLeft(node.state, nowMs)
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
}

export const invariants = (
  world: World,
): Array<FastSim.Invariant<NodeState, Msg, never, NodeEvent>> => [
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
      const servers = world.servers
        .map((id) => view.states.get(id))
        .filter((node) => node?.kind === "server")
      const leaders = servers.filter((node) => node!.state.role === "leader")
      if (leaders.length !== 1)
        return `${leaders.length} leaders at the end: ${leaders.map((node) => node!.state.self).join(",")}`
      const leader = leaders[0]!.state as Machine.State
      const union = new Set<string>()
      for (const node of servers)
        for (const client of HashMap.keys(node!.state.record as Machine.State["record"]))
          union.add(client)
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
]

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
  more: Partial<FastSim.Options<NodeState, Msg, never, NodeEvent>> = {},
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
