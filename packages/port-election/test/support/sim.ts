/**
 * The port election's machines on FastSim: every node is one instance of the program, which
 * runs the shipped machines as their drivers do: the election loop's (`ElectionLoop.ts`:
 * bind, else connect; back off; wait for the successor's takeover over the standby link), the
 * supervisor's (`Machine.ts`) and the subordinate's (`Subordinate.ts`: register with what it
 * holds, re-register after a loss, give permits up at the cut-off deadline, hand back what it
 * gave up but still claimed). What the kernel does is the workload's: it answers each bind
 * (the address is held by the supervisor, else one of those binding it now gets it, the
 * designated successor first) and each connect (to the holder, unless it is stopped), closes
 * connections to a process that died or restarted, and stops a supervisor now and then
 * (SIGSTOP-like: it runs nothing, then everything that waited, late). Messages travel in
 * order over healthy links (a stream connection), wrapped with the connection and the process
 * they are for, so nothing reaches a later process of the same node.
 */
import { Machine as M } from "@understudy/machine"
import { FastSim, FaultSchedule, Prng, Seeds } from "@understudy/testkit"
import * as ElectionLoop from "../../src/ElectionLoop.ts"
import type { Member, Message } from "../../src/internal/protocol.ts"
import { protocolVersion } from "../../src/internal/protocol.ts"
import * as Machine from "../../src/Machine.ts"
import * as Registry from "../../src/Registry.ts"
import * as Subordinate from "../../src/Subordinate.ts"

export const settings: Registry.Settings = {
  graceMs: 300,
  keepAliveIntervalMs: 20,
  keepAliveTimeoutMs: 100,
}

/** The resources instances contend for, and their limits: a mutex and a semaphore of 2. */
export const limits: Readonly<Record<string, number>> = { mutex: 1, pool: 2 }

/** Faults and acquisitions end here; a quiet second follows. */
const usersEndMs = 1_500

export type Wire =
  | {
      readonly _tag: "Frame"
      readonly conn: string
      /** The process it is for: a restarted node is another process. */
      readonly to: string
      readonly from: string
      readonly message: Message
      /** Sent over a standby connection, to the designated successor's listener. */
      readonly standby?: boolean
    }
  /** The connection was closed by the other end. */
  | { readonly _tag: "Fin"; readonly conn: string; readonly to: string }

export type Command =
  /** The kernel answers the election's bind: bound, or the address is in use. */
  | { readonly _tag: "BindAnswer"; readonly bound: boolean }
  /** The kernel answers the election's connect: connected to this supervisor, or to nobody. */
  | {
      readonly _tag: "ConnectAnswer"
      readonly supervisor: { readonly node: string; readonly instanceId: string } | undefined
    }
  /**
   * The kernel: the connection to the supervisor closed. The supervisor was last seen alive
   * at `aliveAtMs`; its keep-alives came every interval until then. After a cut, the last
   * keep-alive came at `lastHeardAtMs` instead (the latest it can have: just before the cut).
   */
  | {
      readonly _tag: "SupervisorLost"
      readonly aliveAtMs: number
      readonly lastHeardAtMs?: number
      /** The supervisor is stopped, not gone: this end closes the connection (a Fin). */
      readonly stalled?: boolean
    }
  /** The process stops (SIGSTOP-like) until `untilMs`: it runs nothing meanwhile. */
  | { readonly _tag: "Stall"; readonly untilMs: number }
  /** The stopped process runs again: what waited for it runs now, late. */
  | { readonly _tag: "Continue" }
  /**
   * The kernel: the network between this process and the other end of `conn` was cut. The
   * connection is dead from now on (nothing more is read on it); its end is noticed later,
   * by the keep-alives (`SupervisorLost` or `Closed`).
   */
  | { readonly _tag: "Cut"; readonly conn: string }
  /** The kernel, to the supervisor: this member connection closed. */
  | { readonly _tag: "Closed"; readonly conn: string }
  | { readonly _tag: "Acquire"; readonly resource: string }
  | { readonly _tag: "Release"; readonly resource: string }

interface Upstream {
  readonly node: string
  readonly instanceId: string
  readonly conn: string
}

export interface NodeState {
  readonly node: string
  readonly instanceId: string
  readonly startedAtMs: number
  readonly counter: number
  /** Permits held, per resource. */
  readonly held: Readonly<Record<string, number>>
  /** Own requests waiting, by request id: the resource. */
  readonly pending: ReadonlyMap<string, string>
  readonly lastMembers: ReadonlyArray<Member>
  readonly lastSupervisorId: string | undefined
  readonly lastSuccessor: string | undefined
  /** Its standby connection to the successor, where it pre-registered. */
  readonly link: Upstream | undefined
  /** The successor's Welcome over `link`, kept until the election waits for it. */
  readonly linkWelcome: Registry.Welcome | undefined
  /** The election loop's machine (`ElectionLoop.ts`), for the whole life of the process. */
  readonly election: ElectionLoop.State
  /** Why the election failed (an invariant says it never does). */
  readonly failed: string | undefined
  /** Stopped until then: `backlog` is what arrived meanwhile, its timers too. */
  readonly stalledUntilMs: number | undefined
  readonly backlog: ReadonlyArray<M.Input<Wire, Command>>
  /** As designated successor: the members standing by at it, with their pre-registrations. */
  readonly standing: ReadonlyMap<
    string,
    {
      readonly node: string
      readonly instanceId: string
      readonly preRegistration: Registry.Register
    }
  >
  /** The subordinate side's machine, for the whole life of the process. */
  readonly subordinate: Subordinate.State
  /** Permits this process lost while alive: `Welcome.lost`, or its deadline passed. */
  readonly lost: number
  /** Connections cut by a partition: dead, nothing more read on them. */
  readonly cut: ReadonlySet<string>
  /** A partition cut this process off its supervisor: it may lose permits honestly. */
  readonly cutOff: boolean
  readonly role:
    | { readonly _tag: "Electing" }
    | {
        readonly _tag: "Subordinate"
        readonly upstream: Upstream
        readonly welcomed: boolean
        /** The last frame from the supervisor (keep-alives are modelled by the kernel). */
        readonly lastHeardMs: number
      }
    | {
        readonly _tag: "Supervisor"
        readonly machine: Machine.Supervisor
        readonly state: Machine.State
        /** Member connections open at this end. */
        readonly open: ReadonlyMap<string, { readonly node: string; readonly instanceId: string }>
        /** Every connection this term accepted: a frame on a closed one is not read. */
        readonly seen: ReadonlySet<string>
      }
}

/**
 * Permits an instance gave up at its cut-off deadline, and what its election loop went
 * through: a back-off, a takeover over the standby link, a standby wait that ran out (the
 * schedules' premises).
 */
export type SimEvent =
  | { readonly _tag: "GaveUp"; readonly permits: number }
  | { readonly _tag: "Election"; readonly step: "BackedOff" | "TakenOver" | "StandbyRanOut" }

type Output = M.Output<Wire, SimEvent>

const holdingsOf = (held: Readonly<Record<string, number>>) =>
  Object.entries(held)
    .filter(([, permits]) => permits > 0)
    .map(([resource, permits]) => ({ resource, limit: limits[resource]!, permits }))

const add = (record: Record<string, number>, resource: string, permits: number) => {
  record[resource] = (record[resource] ?? 0) + permits
}

const subordinateMachine = Subordinate.make({
  graceMs: settings.graceMs,
  keepAliveIntervalMs: settings.keepAliveIntervalMs,
  requestTimeoutMs: 200,
})

const electionConfig: ElectionLoop.Config = {
  address: "sim",
  attemptsMax: 2_000,
  // As `Election.ts` sets it: a member waits a keep-alive time-out for the takeover.
  standbyWaitMs: settings.keepAliveTimeoutMs,
  seed: 0,
}
const electionMachine = ElectionLoop.make(electionConfig)

/**
 * One instance: the election loop's machine, and the supervisor's or the subordinate's as the
 * election makes it. Each process draws its back-off's jitter from the run's seed.
 */
export const makeNode = (seed: number): M.Machine<NodeState, Wire, Command, SimEvent> => ({
  init: (context) => ({
    state: {
      node: context.self,
      // A restarted node is another process, with another id.
      instanceId: `${context.self}@${context.nowMs}`,
      startedAtMs: context.nowMs,
      counter: 0,
      held: {},
      pending: new Map(),
      lastMembers: [],
      lastSupervisorId: undefined,
      lastSuccessor: undefined,
      link: undefined,
      standing: new Map(),
      subordinate: subordinateMachine.init(context).state,
      linkWelcome: undefined,
      // Its first output is the first bind, which the kernel answers.
      election: ElectionLoop.make({
        ...electionConfig,
        seed: seed ^ Math.imul(context.nowMs + 1, 0x9e3779b1) ^ context.self.charCodeAt(1),
      }).init(context).state,
      failed: undefined,
      stalledUntilMs: undefined,
      backlog: [],
      lost: 0,
      cut: new Set(),
      cutOff: false,
      role: { _tag: "Electing" },
    },
    outputs: [],
  }),
  step: (state, input) => stallable(state, input, running),
})

/**
 * A process stopped (SIGSTOP-like) runs nothing: what arrives for it, its timers and the
 * kernel's commands wait, and run in order once it continues, late.
 */
const stallable = (
  state: NodeState,
  input: M.Input<Wire, Command>,
  running: (state: NodeState, input: M.Input<Wire, Command>) => M.Result<NodeState, Wire, SimEvent>,
): M.Result<NodeState, Wire, SimEvent> => {
  if (input._tag === "Command" && input.command._tag === "Stall") {
    return M.result({ ...state, stalledUntilMs: input.command.untilMs })
  }
  if (state.stalledUntilMs === undefined) return running(state, input)
  if (input._tag !== "Command" || input.command._tag !== "Continue") {
    return M.result({ ...state, backlog: [...state.backlog, input] })
  }
  let resumed: NodeState = { ...state, stalledUntilMs: undefined, backlog: [] }
  const outputs: Array<Output> = []
  for (const waiting of state.backlog) {
    const next = running(resumed, { ...waiting, nowMs: input.nowMs })
    resumed = next.state
    outputs.push(...next.outputs)
  }
  return M.result(resumed, outputs)
}

/** One step of a running process. */
const running = (
  previous: NodeState,
  input: M.Input<Wire, Command>,
): M.Result<NodeState, Wire, SimEvent> => {
  let s: {
    -readonly [K in keyof NodeState]: NodeState[K]
  } = {
    ...previous,
    held: { ...previous.held },
    pending: new Map(previous.pending),
  }
  const held = s.held as Record<string, number>
  const pending = s.pending as Map<string, string>
  const out: Array<Output> = []
  const nowMs = input.nowMs

  const frame = (upstream: Upstream, message: Message, standby = false) =>
    out.push(
      M.send(upstream.node, {
        _tag: "Frame",
        conn: upstream.conn,
        to: upstream.instanceId,
        from: s.instanceId,
        message,
        ...(standby ? { standby } : {}),
      }),
    )

  /** This instance's registration as of now. */
  const registration = (): Registry.Register => ({
    _tag: "Register",
    program: "app",
    version: protocolVersion,
    instanceId: s.instanceId,
    pid: 1 + Number(s.node.replace(/\D/g, "")),
    startedAtMs: s.startedAtMs,
    metadata: {},
    holdings: holdingsOf(held),
    ...(Registry.sawRegistry(s.lastMembers, s.instanceId)
      ? {
          previous: Registry.previousSubordinates(s.lastMembers, s.instanceId, s.lastSupervisorId),
        }
      : {}),
    settings,
  })

  /** Closes the standby connection: the successor no longer counts this instance standing by. */
  const dropLink = () => {
    if (s.link !== undefined) {
      out.push(M.send(s.link.node, { _tag: "Fin", conn: s.link.conn, to: s.link.instanceId }))
    }
    s.link = undefined
    s.linkWelcome = undefined
  }

  /** Stands by at the successor a registry names: connects to it and pre-registers. */
  const follow = (
    successor: { readonly instanceId: string; readonly address: string } | undefined,
  ) => {
    if (successor === undefined || successor.instanceId === s.instanceId) return dropLink()
    if (s.link?.instanceId === successor.instanceId) return
    dropLink()
    s.counter++
    s.link = {
      node: successor.address.slice("standby:".length),
      instanceId: successor.instanceId,
      conn: `${s.instanceId}#${s.counter}`,
    }
    frame(s.link, registration(), true)
  }

  const losePermits = (lost: ReadonlyArray<{ resource: string; permits: number }>) => {
    for (const { resource, permits } of lost) {
      const dropped = Math.min(permits, held[resource] ?? 0)
      held[resource] = (held[resource] ?? 0) - dropped
      s.lost += dropped
    }
  }

  // ---- supervisor: the real machine, its outputs performed as the driver does ----

  const supervise = (first: M.Input<Message, Machine.Command>) => {
    const queue: Array<M.Input<Message, Machine.Command>> = [first]
    while (queue.length > 0) {
      const role = s.role
      if (role._tag !== "Supervisor") return
      const next = role.machine.step(role.state, queue.shift()!)
      s.role = { ...role, state: next.state }
      perform(next.outputs, (input) => queue.push(input))
    }
  }

  const perform = (
    outputs: ReadonlyArray<Machine.Output>,
    later: (input: M.Input<Message, Machine.Command>) => void,
  ) => {
    for (const output of outputs) {
      const role = s.role
      if (role._tag !== "Supervisor") return
      switch (output._tag) {
        case "Send": {
          const target = role.open.get(output.to)
          if (target !== undefined) frame({ ...target, conn: output.to }, output.message)
          break
        }
        case "Broadcast":
          break
        case "SetTimer":
          out.push(M.setTimer(`s:${output.timer}`, output.afterMs))
          break
        case "CancelTimer":
          out.push(M.cancelTimer(`s:${output.timer}`))
          break
        case "Emit": {
          const event = output.event
          switch (event._tag) {
            case "Close": {
              const target = role.open.get(event.connection)
              if (target === undefined) break
              const open = new Map(role.open)
              open.delete(event.connection)
              s.role = { ...role, open }
              out.push(
                M.send(target.node, {
                  _tag: "Fin",
                  conn: event.connection,
                  to: target.instanceId,
                }),
              )
              // Its reader ends: the driver steps the close.
              later(
                M.command(
                  { _tag: "Closed", connection: event.connection, reason: "closed here" },
                  nowMs,
                ),
              )
              break
            }
            case "Granted":
              if (pending.delete(event.requestId)) add(held, event.resource, 1)
              else later(M.command({ _tag: "Release", resource: event.resource }, nowMs))
              break
            case "Refused":
              pending.delete(event.requestId)
              break
            case "Lost":
              losePermits(event.lost)
              break
            case "RegistrySent":
              s.lastMembers = event.members
              break
            default:
              break
          }
          break
        }
      }
    }
  }

  const bind = () => {
    const takeover: Machine.Takeover = {
      expected: Registry.previousSubordinates(s.lastMembers, s.instanceId, s.lastSupervisorId),
      blind: !Registry.sawRegistry(s.lastMembers, s.instanceId),
      announced: s.lastMembers.map((m) => m.instanceId),
      standingBy: [...s.standing.values()].map((standing) => standing.instanceId),
      holdings: holdingsOf(held),
      waiting: [...pending].map(([requestId, resource]) => ({
        requestId,
        resource,
        limit: limits[resource]!,
      })),
    }
    const machine = Machine.make({
      program: "app",
      settings,
      self: { instanceId: s.instanceId, pid: 1, startedAtMs: s.startedAtMs, metadata: {} },
      requestTimeoutMs: 200,
      membersBatchMs: 25,
      takeover,
    })
    // Supervising, it takes its own holdings back: the subordinate side's deadline is off.
    subordinate(M.command({ _tag: "Supervising" }, nowMs))
    const initial = machine.init({ self: s.node, peers: [], nowMs })
    const standing = [...s.standing]
    s.standing = new Map()
    dropLink()
    s.role = {
      _tag: "Supervisor",
      machine,
      state: initial.state,
      open: new Map(standing.map(([conn, { node, instanceId }]) => [conn, { node, instanceId }])),
      seen: new Set(standing.map(([conn]) => conn)),
    }
    const queue: Array<M.Input<Message, Machine.Command>> = []
    perform(initial.outputs, (input) => queue.push(input))
    for (const input of queue) supervise(input)
    // Every member standing by is welcomed over its standby connection and admitted.
    if (standing.length > 0) {
      supervise(
        M.command(
          {
            _tag: "Admit",
            standing: standing.map(([connection, { preRegistration }]) => ({
              connection,
              preRegistration,
            })),
          },
          nowMs,
        ),
      )
    }
  }

  // ---- subordinate: the real machine, its outputs performed as its driver does ----

  const subordinate = (first: M.Input<Message, Subordinate.Command>) => {
    const queue: Array<M.Input<Message, Subordinate.Command>> = [first]
    // Not welcomed, or refused: the subordinate's term ends, and the election tries again.
    let unwelcomed = false
    while (queue.length > 0) {
      const next = subordinateMachine.step(s.subordinate, queue.shift()!)
      s.subordinate = next.state
      for (const output of next.outputs) {
        const role = s.role
        switch (output._tag) {
          case "Send":
            if (role._tag === "Subordinate" && role.upstream.conn === output.to) {
              frame(role.upstream, output.message)
            }
            break
          case "SetTimer":
            out.push(M.setTimer(`u:${output.timer}`, output.afterMs))
            break
          case "CancelTimer":
            out.push(M.cancelTimer(`u:${output.timer}`))
            break
          case "Broadcast":
            break
          case "Emit": {
            const event = output.event
            switch (event._tag) {
              case "Welcome":
                s.lastSupervisorId = event.supervisorId
                break
              case "LosePermits":
                losePermits(event.lost)
                break
              case "Follow":
                if (event.successor !== undefined) s.lastSuccessor = event.successor.instanceId
                follow(event.successor)
                break
              case "Registry":
                s.lastMembers = event.members
                s.lastSuccessor = event.successor?.instanceId
                follow(event.successor)
                break
              case "Registered":
                if (role._tag === "Subordinate") s.role = { ...role, welcomed: true }
                break
              case "NotWelcomed":
              case "Refused":
                if (role._tag === "Subordinate" && role.upstream.conn === event.connection) {
                  s.role = { _tag: "Electing" }
                  unwelcomed = true
                }
                break
              case "Designated":
                if (role._tag === "Subordinate") {
                  frame(role.upstream, { _tag: "StandbyAt", address: `standby:${s.node}` })
                }
                break
              case "Granted":
                if (pending.delete(event.requestId)) add(held, event.resource, 1)
                // Given up meanwhile: the driver hands it back.
                else queue.push(M.command({ _tag: "Release", resource: event.resource }, nowMs))
                break
              case "AcquireRefused":
                pending.delete(event.requestId)
                break
              default:
                break
            }
            break
          }
        }
      }
    }
    if (unwelcomed) elect(M.command({ _tag: "Ended", outcome: "retry", standingBy: false }, nowMs))
  }

  /** Connects (or, with `takeover`, was taken over over `upstream`) and registers. */
  const connect = (upstream: Upstream, takeover?: Extract<Message, { _tag: "Welcome" }>) => {
    s.role = { _tag: "Subordinate", upstream, welcomed: false, lastHeardMs: nowMs }
    subordinate(
      M.command(
        {
          _tag: "Connected",
          connection: upstream.conn,
          registration: registration(),
          waiting: [...pending].map(([id, resource]) => [
            id,
            { resource, limit: limits[resource]! },
          ]),
          ...(takeover === undefined ? {} : { takeover }),
        },
        nowMs,
      ),
    )
  }

  /** The connection to the supervisor is gone: its end is stepped, then the deadline set. */
  const supervisorLost = (aliveAtMs?: number, heardAtMs?: number, stalled = false) => {
    const role = s.role
    if (role._tag !== "Subordinate") return
    if (stalled) {
      // Its keep-alives stopped: this end closes, and may honestly lose its permits.
      s.cutOff = true
      out.push(
        M.send(role.upstream.node, {
          _tag: "Fin",
          conn: role.upstream.conn,
          to: role.upstream.instanceId,
        }),
      )
    }
    s.role = { _tag: "Electing" }
    subordinate(M.command({ _tag: "Closed", connection: role.upstream.conn, reason: "End" }, nowMs))
    if (role.welcomed) {
      // The last keep-alive came at most an interval before the supervisor was last alive.
      const lastHeardAtMs = Math.max(
        role.lastHeardMs,
        heardAtMs ?? (aliveAtMs ?? role.lastHeardMs) - settings.keepAliveIntervalMs,
      )
      subordinate(M.command({ _tag: "Lost", lastHeardAtMs }, nowMs))
    }
    elect(
      M.command(
        {
          _tag: "Ended",
          outcome: role.welcomed ? "lost" : "retry",
          standingBy: role.welcomed && s.link !== undefined,
        },
        nowMs,
      ),
    )
  }

  const fromSupervisor = (message: Message) => {
    const role = s.role
    if (role._tag !== "Subordinate") return
    s.role = { ...role, lastHeardMs: nowMs }
    subordinate(M.receive(role.upstream.conn, message, nowMs))
  }

  /**
   * The successor took over and welcomes this instance over its standby connection: the
   * election, waiting for it, has it answer with the Register that confirms what it holds
   * now, and serve it from then on.
   */
  const takenOver = (welcome: Registry.Welcome) => {
    s.linkWelcome = welcome
    // Its supervisor is gone (the kernel may not have said so yet).
    if (s.role._tag === "Subordinate") supervisorLost()
    else if (s.election.phase._tag === "AwaitingTakeover") {
      elect(M.command({ _tag: "TakenOver" }, nowMs))
    }
  }

  /** The standby connection closed, or a cut killed it: no takeover comes over it. */
  const linkGone = () => {
    s.link = undefined
    s.linkWelcome = undefined
    if (s.election.phase._tag === "AwaitingTakeover") {
      elect(M.command({ _tag: "NoTakeover" }, nowMs))
    }
  }

  // ---- the election loop: the real machine, its outputs performed as its driver does ----

  /** The supervisor the kernel connected this instance to, for the `Serve` that follows. */
  let connectedTo: Upstream | undefined

  const elect = (first: M.Input<never, ElectionLoop.Command>) => {
    const queue = [first]
    while (queue.length > 0) {
      const before = s.election.phase._tag
      const next = electionMachine.step(s.election, queue.shift()!)
      s.election = next.state
      for (const output of next.outputs) {
        if (output._tag === "SetTimer") {
          out.push(M.setTimer(`e:${output.timer}`, output.afterMs))
          if (output.timer === ElectionLoop.backoffTimer) {
            out.push(M.emit({ _tag: "Election", step: "BackedOff" }))
          }
        } else if (output._tag === "CancelTimer") out.push(M.cancelTimer(`e:${output.timer}`))
        else if (output._tag === "Emit") {
          const event = output.event
          switch (event._tag) {
            case "Bind":
            case "Connect":
              // The kernel answers (`BindAnswer`, `ConnectAnswer`).
              break
            case "StopStandingBy":
              // No successor any more: who stands by here elects the usual way.
              for (const [conn, standing] of s.standing) {
                out.push(M.send(standing.node, { _tag: "Fin", conn, to: standing.instanceId }))
              }
              s.standing = new Map()
              break
            case "Supervise":
              bind()
              break
            case "Serve":
              if (event.takeover && s.link !== undefined && s.linkWelcome !== undefined) {
                out.push(M.emit({ _tag: "Election", step: "TakenOver" }))
                const link = s.link
                const welcome = s.linkWelcome
                s.link = undefined
                s.linkWelcome = undefined
                connect(link, welcome)
              } else if (!event.takeover && connectedTo !== undefined) connect(connectedTo)
              break
            case "AwaitTakeover":
              if (s.link === undefined) queue.push(M.command({ _tag: "NoTakeover" }, nowMs))
              else if (s.linkWelcome !== undefined) {
                queue.push(M.command({ _tag: "TakenOver" }, nowMs))
              }
              break
            case "AttemptOver":
              // The standby connection waited on is given up.
              if (before === "AwaitingTakeover" && !event.keep) {
                if (s.link !== undefined) {
                  out.push(M.emit({ _tag: "Election", step: "StandbyRanOut" }))
                }
                dropLink()
              }
              break
            case "Failed":
              s.failed = event.error.message
              break
          }
        }
      }
    }
  }

  const commanded = (command: Command) => {
    const role = s.role
    switch (command._tag) {
      case "BindAnswer":
        if (s.election.phase._tag !== "Binding") return
        return elect(
          M.command(
            command.bound
              ? { _tag: "Bound" }
              : { _tag: "BindFailed", addressInUse: true, detail: "in use" },
            nowMs,
          ),
        )
      case "ConnectAnswer": {
        if (s.election.phase._tag !== "Connecting") return
        if (command.supervisor === undefined) {
          return elect(
            M.command({ _tag: "ConnectFailed", reason: "Unreachable", detail: "refused" }, nowMs),
          )
        }
        dropLink()
        s.counter++
        connectedTo = { ...command.supervisor, conn: `${s.instanceId}#${s.counter}` }
        return elect(M.command({ _tag: "Connected" }, nowMs))
      }
      case "SupervisorLost":
        return supervisorLost(command.aliveAtMs, command.lastHeardAtMs, command.stalled)
      case "Stall":
      case "Continue":
        // Taken by `stallable`.
        return
      case "Cut": {
        s.cut = new Set(s.cut).add(command.conn)
        if (s.link?.conn === command.conn) linkGone()
        if (s.standing.has(command.conn)) {
          const standing = new Map(s.standing)
          standing.delete(command.conn)
          s.standing = standing
        }
        if (role._tag === "Subordinate" && role.upstream.conn === command.conn) s.cutOff = true
        return
      }
      case "Closed":
        if (s.standing.has(command.conn)) {
          const standing = new Map(s.standing)
          standing.delete(command.conn)
          s.standing = standing
          return
        }
        if (role._tag !== "Supervisor" || !role.open.has(command.conn)) return
        {
          const open = new Map(role.open)
          open.delete(command.conn)
          s.role = { ...role, open }
        }
        return supervise(
          M.command({ _tag: "Closed", connection: command.conn, reason: "gone" }, nowMs),
        )
      case "Acquire": {
        const resource = command.resource
        if ([...pending.values()].includes(resource)) return
        if ((held[resource] ?? 0) >= limits[resource]!) return
        s.counter++
        const requestId = `${s.instanceId}:${s.counter}`
        pending.set(requestId, resource)
        if (role._tag === "Supervisor") {
          return supervise(
            M.command({ _tag: "Acquire", requestId, resource, limit: limits[resource]! }, nowMs),
          )
        }
        return subordinate(
          M.command({ _tag: "Acquire", requestId, resource, limit: limits[resource]! }, nowMs),
        )
      }
      case "Release": {
        const resource = command.resource
        if ((held[resource] ?? 0) === 0) return
        held[resource] = held[resource]! - 1
        if (role._tag === "Supervisor")
          return supervise(M.command({ _tag: "Release", resource }, nowMs))
        // Released while electing, the machine counts it given up: a Register already on
        // its way may claim it.
        return subordinate(M.command({ _tag: "Release", resource }, nowMs))
      }
    }
  }

  switch (input._tag) {
    case "Receive": {
      const wire = input.message
      if (wire.to !== s.instanceId || s.cut.has(wire.conn)) break
      const role = s.role
      if (role._tag === "Supervisor") {
        if (wire._tag === "Fin") {
          // A member closed its end (a standby connection it gave up, admitted here).
          if (!role.open.has(wire.conn)) break
          const open = new Map(role.open)
          open.delete(wire.conn)
          s.role = { ...role, open }
          supervise(
            M.command({ _tag: "Closed", connection: wire.conn, reason: "closed there" }, nowMs),
          )
          break
        }
        if (!role.open.has(wire.conn)) {
          if (role.seen.has(wire.conn)) break
          s.role = {
            ...role,
            open: new Map(role.open).set(wire.conn, { node: input.from, instanceId: wire.from }),
            seen: new Set(role.seen).add(wire.conn),
          }
          // A member pre-registering at this instance's standby listener after the takeover.
          if (wire.standby === true && wire.message._tag === "Register") {
            supervise(
              M.command(
                {
                  _tag: "PreRegistered",
                  connection: wire.conn,
                  preRegistration: wire.message,
                },
                nowMs,
              ),
            )
            break
          }
          supervise(M.command({ _tag: "Connected", connection: wire.conn }, nowMs))
        }
        supervise(M.receive(wire.conn, wire.message, nowMs))
      } else if (role._tag === "Subordinate" && wire.conn === role.upstream.conn) {
        if (wire._tag === "Fin") supervisorLost()
        else fromSupervisor(wire.message)
      } else if (wire._tag === "Fin") {
        if (wire.conn === s.link?.conn) linkGone()
        if (s.standing.has(wire.conn)) {
          const standing = new Map(s.standing)
          standing.delete(wire.conn)
          s.standing = standing
        }
      } else if (wire.standby === true) {
        // A member standing by at this instance, the designated successor.
        if (wire.message._tag === "Register" && !s.standing.has(wire.conn)) {
          s.standing = new Map(s.standing).set(wire.conn, {
            node: input.from,
            instanceId: wire.from,
            preRegistration: wire.message,
          })
        }
      } else if (
        wire._tag === "Frame" &&
        wire.conn === s.link?.conn &&
        wire.message._tag === "Welcome"
      ) {
        takenOver(wire.message)
      }
      break
    }
    case "Command":
      commanded(input.command)
      break
    case "TimerFired":
      if (input.timer.startsWith("u:")) {
        const before = holdingsOf(held).reduce((sum, h) => sum + h.permits, 0)
        subordinate(M.timerFired(input.timer.slice(2), nowMs))
        const after = holdingsOf(held).reduce((sum, h) => sum + h.permits, 0)
        if (after < before) out.push(M.emit({ _tag: "GaveUp", permits: before - after }))
      } else if (input.timer.startsWith("s:")) {
        supervise(M.timerFired(input.timer.slice(2), nowMs))
      } else if (input.timer.startsWith("e:")) {
        elect(M.timerFired(input.timer.slice(2), nowMs))
      }
      break
  }
  s = { ...s }
  return M.result(s as NodeState, out)
}

/** When a connection cut by a partition is found dead at each end, as keep-alives tell. */
interface Doom {
  /** The supervisor closes it: its member's keep-alives stopped (or the member closed). */
  readonly closeAtMs: number
  /** The member notices: the supervisor's keep-alives stopped (or its close came). */
  readonly lostAtMs: number
  /** The member's last keep-alive: the latest it can be, just before the cut. */
  readonly heardAtMs: number
}

/**
 * The network as the schedule cuts it, followed as time passes: since when each way between
 * two nodes is cut, and when each connection a cut killed is found dead at either end.
 */
const partitions = (schedule: ReadonlyArray<FaultSchedule.Scheduled>) => {
  const { keepAliveIntervalMs: intervalMs, keepAliveTimeoutMs: timeoutMs } = settings
  const cutSince = new Map<string, number>()
  const dooms = new Map<string, Doom>()
  /** When the kernel first saw each connection: one opened during a cut dies from then on. */
  const opened = new Map<string, number>()
  let next = 0
  return {
    /** Faults up to now (one at this very time comes after the workload). */
    advance: (nowMs: number) => {
      for (; next < schedule.length && schedule[next]!.atMs < nowMs; next++) {
        const { atMs, fault } = schedule[next]!
        if (fault._tag === "Heal") cutSince.clear()
        if (fault._tag !== "Partition") continue
        for (const a of fault.side) {
          for (const b of fault.other) {
            if (!cutSince.has(`${a}>${b}`)) cutSince.set(`${a}>${b}`, atMs)
            if (!fault.oneWay && !cutSince.has(`${b}>${a}`)) cutSince.set(`${b}>${a}`, atMs)
          }
        }
      }
    },
    cut: (a: string, b: string) => cutSince.has(`${a}>${b}`) || cutSince.has(`${b}>${a}`),
    /** The connection between a supervisor and a member, if a cut killed it. */
    doom: (conn: string, supervisor: string, member: string, nowMs: number): Doom | undefined => {
      const known = dooms.get(conn)
      if (known !== undefined) return known
      if (!opened.has(conn)) opened.set(conn, nowMs)
      const since = (from: string, to: string) => {
        const atMs = cutSince.get(`${from}>${to}`)
        return atMs === undefined ? undefined : Math.max(atMs, opened.get(conn)!)
      }
      const down = since(supervisor, member)
      const up = since(member, supervisor)
      if (down === undefined && up === undefined) return undefined
      // Worst cases: the supervisor notices as early as it can (its member's last keep-alive
      // an interval before the cut), the member as late as it can.
      const closeAtMs = Math.min(
        up === undefined ? Infinity : up + timeoutMs - intervalMs,
        down === undefined ? Infinity : down + timeoutMs,
      )
      const doom: Doom =
        down === undefined
          ? { closeAtMs, lostAtMs: closeAtMs, heardAtMs: closeAtMs }
          : { closeAtMs, lostAtMs: down + timeoutMs, heardAtMs: down }
      dooms.set(conn, doom)
      return doom
    },
  }
}

/**
 * The kernel and the users: closes connections to processes that are gone or cut off (when
 * the keep-alives say so), gives the bind to one electing instance when no supervisor lives
 * (the successor the last registry named, if it is electing), connects the others, and has
 * instances acquire and release.
 */
export const workload = (
  seed: number,
  schedule: ReadonlyArray<FaultSchedule.Scheduled>,
  world: World,
): FastSim.Workload<NodeState, Wire, Command, SimEvent> => {
  const random = Prng.make(seed ^ 0x2f0e1ec7)
  const resources = Object.keys(limits)
  /** When each process was last seen alive. */
  const aliveAt = new Map<string, number>()
  /** Since when each stopped process is stopped. */
  const stalledSince = new Map<string, number>()
  const network = partitions(schedule)
  return {
    everyMs: 5,
    commands: (nowMs, view) => {
      const commands: Array<FastSim.CommandFor<Command>> = []
      const live = view.states
      network.advance(nowMs)
      for (const state of live.values()) aliveAt.set(state.instanceId, nowMs)
      /** Tells `state` its connection `conn` is dead, once. */
      const cut = (state: NodeState, conn: string) => {
        if (!state.cut.has(conn))
          commands.push({ node: state.node, command: { _tag: "Cut", conn } })
      }
      let supervisor: NodeState | undefined
      const electing: Array<NodeState> = []
      for (const state of live.values()) {
        const role = state.role
        if (role._tag === "Supervisor") {
          supervisor = state
          for (const [conn, target] of role.open) {
            const doom = network.doom(conn, state.node, target.node, nowMs)
            if (doom !== undefined) cut(state, conn)
            if (
              live.get(target.node)?.instanceId !== target.instanceId ||
              (doom !== undefined && nowMs >= doom.closeAtMs)
            ) {
              commands.push({ node: state.node, command: { _tag: "Closed", conn } })
            }
          }
        } else if (role._tag === "Subordinate") {
          for (const [conn, standing] of state.standing) {
            if (network.cut(state.node, standing.node)) cut(state, conn)
            else if (live.get(standing.node)?.instanceId !== standing.instanceId) {
              commands.push({ node: state.node, command: { _tag: "Closed", conn } })
            }
          }
          const upstream = live.get(role.upstream.node)
          const doom = network.doom(role.upstream.conn, role.upstream.node, state.node, nowMs)
          // A stopped supervisor sends no keep-alives: its members time it out.
          const stalled =
            upstream?.instanceId === role.upstream.instanceId &&
            upstream.stalledUntilMs !== undefined
              ? stalledSince.get(upstream.instanceId)
              : undefined
          if (doom !== undefined) cut(state, role.upstream.conn)
          if (doom !== undefined && nowMs >= doom.lostAtMs) {
            commands.push({
              node: state.node,
              command: { _tag: "SupervisorLost", aliveAtMs: nowMs, lastHeardAtMs: doom.heardAtMs },
            })
          } else if (stalled !== undefined && nowMs >= stalled + settings.keepAliveTimeoutMs) {
            commands.push({
              node: state.node,
              command: {
                _tag: "SupervisorLost",
                aliveAtMs: nowMs,
                lastHeardAtMs: stalled,
                stalled: true,
              },
            })
          } else if (
            upstream?.instanceId !== role.upstream.instanceId ||
            upstream.role._tag !== "Supervisor"
          ) {
            commands.push({
              node: state.node,
              command: {
                _tag: "SupervisorLost",
                aliveAtMs: aliveAt.get(role.upstream.instanceId) ?? role.lastHeardMs,
              },
            })
          }
        } else electing.push(state)
        // A standby connection a cut killed is given up: the member elects the usual way.
        if (state.link !== undefined && network.cut(state.node, state.link.node)) {
          cut(state, state.link.conn)
        }
      }
      // The address: held by the supervisor, else bound by one of those binding it now (the
      // successor the last registry named first); connects reach its holder.
      const binding = electing.filter((state) => state.election.phase._tag === "Binding")
      const successors = new Set([...live.values()].map((state) => state.lastSuccessor))
      const binder =
        supervisor !== undefined || binding.length === 0
          ? undefined
          : (binding.find((state) => successors.has(state.instanceId)) ?? random.pick(binding))
      const holder = supervisor ?? binder
      // A stopped holder accepts nothing: a connect to it times out.
      const answering = holder?.stalledUntilMs === undefined ? holder : undefined
      for (const state of electing) {
        if (state.election.phase._tag === "Binding") {
          commands.push({
            node: state.node,
            command: { _tag: "BindAnswer", bound: state === binder },
          })
        } else if (state.election.phase._tag === "Connecting") {
          commands.push({
            node: state.node,
            command: {
              _tag: "ConnectAnswer",
              supervisor:
                answering === undefined
                  ? undefined
                  : { node: answering.node, instanceId: answering.instanceId },
            },
          })
        }
      }
      // Stopped processes continue at their time; a running supervisor stops now and then
      // (about every 300 ms), never past the users' end, so that every run settles.
      for (const state of live.values()) {
        if (state.stalledUntilMs !== undefined && nowMs >= state.stalledUntilMs) {
          commands.push({ node: state.node, command: { _tag: "Continue" } })
        }
      }
      if (
        world.stallMaxMs > 0 &&
        supervisor?.stalledUntilMs === undefined &&
        supervisor !== undefined &&
        nowMs + world.stallMaxMs < usersEndMs &&
        random.next() < 1 / 60
      ) {
        stalledSince.set(supervisor.instanceId, nowMs)
        commands.push({
          node: supervisor.node,
          command: { _tag: "Stall", untilMs: nowMs + random.int(20, world.stallMaxMs) },
        })
      }
      if (nowMs >= usersEndMs) return commands
      for (const state of live.values()) {
        if (random.next() < 0.3) continue
        const resource = random.pick(resources)
        const release = (state.held[resource] ?? 0) > 0 && random.next() < world.releaseChance
        commands.push({
          node: state.node,
          command: release ? { _tag: "Release", resource } : { _tag: "Acquire", resource },
        })
      }
      return commands
    },
  }
}

/** Never more permits held than a resource's limit, counting every live instance's own. */
export const withinLimits: FastSim.Invariant<NodeState, Wire, Command, SimEvent> = {
  name: "permits within limits",
  check: (view) => {
    for (const [resource, limit] of Object.entries(limits)) {
      let total = 0
      const holders: Array<string> = []
      for (const state of view.states.values()) {
        const permits = state.held[resource] ?? 0
        total += permits
        if (permits > 0) holders.push(`${state.instanceId}×${permits}`)
      }
      if (total > limit) return `${resource} (limit ${limit}) held by ${holders.join(", ")}`
    }
    return undefined
  },
}

/** The election never gives up: no instance fails it (a stranger never holds the address here). */
export const noElectionFailed: FastSim.Invariant<NodeState, Wire, Command, SimEvent> = {
  name: "no election failed",
  check: (view) => {
    for (const state of view.states.values()) {
      if (state.failed !== undefined) return `${state.instanceId}: ${state.failed}`
    }
    return undefined
  },
}

export const oneSupervisor: FastSim.Invariant<NodeState, Wire, Command, SimEvent> = {
  name: "one supervisor",
  check: (view) => {
    const supervisors = [...view.states.values()].filter((s) => s.role._tag === "Supervisor")
    return supervisors.length > 1
      ? `supervisors ${supervisors.map((s) => s.instanceId).join(", ")}`
      : undefined
  },
}

/**
 * A live holder never loses a permit, unless a cut kept it from its supervisor: every
 * failover is over long before the grace period.
 */
export const noPermitLost: FastSim.Invariant<NodeState, Wire, Command, SimEvent> = {
  name: "no permit lost across failover",
  check: (view) => {
    for (const state of view.states.values()) {
      if (state.lost > 0 && !state.cutOff) return `${state.instanceId} lost ${state.lost} permit(s)`
    }
    return undefined
  },
}

/**
 * At the end, after a quiet time longer than the grace period: one supervisor, thawed,
 * whose record of who holds what is exactly what each live instance holds.
 */
export const settled: FastSim.Invariant<NodeState, Wire, Command, SimEvent> = {
  name: "registry agrees with the holders at the end",
  check: (view) => {
    if (!view.final) return undefined
    const supervisor = [...view.states.values()].find((s) => s.role._tag === "Supervisor")
    if (supervisor === undefined || supervisor.role._tag !== "Supervisor") return "no supervisor"
    const state = supervisor.role.state
    if (state.grants.frozen) return "grants still frozen"
    const recorded = new Map<string, number>()
    for (const r of state.grants.snapshot()) {
      for (const h of r.holders) recorded.set(`${h.instanceId}/${r.resource}`, h.permits)
    }
    for (const s of view.states.values()) {
      if (s.role._tag === "Electing") return `${s.instanceId} still electing`
      for (const resource of Object.keys(limits)) {
        const key = `${s.instanceId}/${resource}`
        const mine = s.held[resource] ?? 0
        if ((recorded.get(key) ?? 0) !== mine) {
          return `${key}: holds ${mine}, the supervisor records ${recorded.get(key) ?? 0}`
        }
        recorded.delete(key)
      }
    }
    for (const [key, permits] of recorded) {
      if (permits > 0) return `${key}: ${permits} recorded for a process that is gone`
    }
    return undefined
  },
}

export const nodes = ["n1", "n2", "n3", "n4", "n5"]

/** The faults drawn, and how long a holder keeps a permit. */
export interface World {
  readonly weights: FaultSchedule.Weights
  /** At each of its turns (every 5 ms, 7 in 10), the chance a holder releases: the hold's length. */
  readonly releaseChance: number
  /** The longest a supervisor stops (SIGSTOP-like) at a time; 0: never. */
  readonly stallMaxMs: number
}

/** Crashes and restarts only; permits held for ~30 ms. */
export const crashes: World = {
  weights: {
    crash: 2,
    restart: 2,
    partition: 0,
    oneWayPartition: 0,
    heal: 0,
    degrade: 0,
    restore: 0,
  },
  releaseChance: 0.5,
  stallMaxMs: 0,
}

/**
 * Crashes and restarts, and cuts of the network between instances (both ways or one way)
 * that last from one fault to a later heal; permits held for ~half a second, so that members
 * cut off their live supervisor past the keep-alive time-out still hold some at the cut-off
 * deadline, and the supervisor grants them again after the grace period.
 */
export const partitioned: World = {
  weights: { ...crashes.weights, partition: 1, oneWayPartition: 1, heal: 1 },
  releaseChance: 0.03,
  stallMaxMs: 0,
}

/**
 * Crashes and restarts, and supervisors that stop for up to 400 ms and then continue: their
 * members time them out, find the address held but nobody answering and back off until it
 * runs again (or dies), and give their permits up at the cut-off deadline if the stop outlasts
 * it; the supervisor, continued, reads their closes late and reserves their permits.
 */
export const stalls: World = {
  weights: crashes.weights,
  releaseChance: 0.1,
  stallMaxMs: 400,
}

/** One schedule: faults for 1.5 s, then a quiet second. */
export const run = (seed: number, world: World = crashes): FastSim.Report<SimEvent> => {
  const schedule = FaultSchedule.generate(seed, {
    nodes,
    goodLink: FastSim.healthyLink,
    endMs: usersEndMs,
    startMs: 100,
    gapMs: { minMs: 40, maxMs: 300 },
    weights: world.weights,
    restartAtEnd: true,
  })
  return FastSim.run({
    machine: makeNode(seed),
    nodes,
    seed,
    durationMs: 2_500,
    schedule,
    workload: workload(seed, schedule, world),
    invariants: [withinLimits, oneSupervisor, noElectionFailed, noPermitLost, settled],
    // Replaying one seed: the whole run.
    traceLines: Seeds.isReplay() ? 1_000_000 : 200,
    describeState: (state) =>
      JSON.stringify({
        id: state.instanceId,
        role: state.role._tag,
        election: state.election.phase._tag,
        held: state.held,
        pending: [...state.pending.values()],
        ...(state.role._tag === "Supervisor"
          ? {
              frozen: state.role.state.grants.frozen,
              grants: state.role.state.grants.snapshot(),
              expected: [...state.role.state.expected],
            }
          : {}),
      }),
  })
}
