/**
 * The cluster's role machine (`ClusterRole`, the one `Cluster.ts` runs) under FastSim: two
 * nodes, each the shipped machine inside a model of what `Cluster.ts` does around it — the
 * link (a connection with keep-alive: the serving node connects, the other listens), the
 * fence (a lease and an epoch in a store shared by the run) and replication (the serving
 * node ships at every tick while it proves its lease, and once, unconditionally, when its
 * link comes up: the resend `Cluster.ts` makes before it checks the lease again).
 *
 * The listening node's kernel completes a dialled connection even while the node is paused
 * (its `Welcome`); the node reads it when it runs. The dialler's keep-alive ends a silent
 * connection (`Bye`, its FIN): a standby paused (starved) while starting so reads a connection
 * its primary already replaced — `LinkUp`, the replication, the end — before the new one.
 *
 * Faults: FastSim's crashes and restarts (a restarted node rejoins as the standby: the
 * failback; a crash is a host's, silent), partitions and degraded links between the nodes;
 * pauses (SIGSTOP): a paused node handles nothing until it resumes, then everything that
 * arrived meanwhile, in order, at the resumed time — so a primary paused past its lease
 * comes back with its old epoch and may reach a node that restarted as the new standby; a
 * process's exit, its host up (`Exit`: its kernel answers a probe with a port unreachable);
 * and a link that ends under a live node slow to link again (`Relink`).
 *
 * A standby waiting the relink grace probes its primary every tick, as `Cluster.ts` does
 * with an SCTP INIT: a serving node answers (`PartnerAlive`), a silent or exited one's port
 * is closed (`PartnerClosed`), a paused one answers when it resumes.
 *
 * What must hold: never two nodes serving while each can prove its lease; a node that takes
 * over at epoch E does so from no copy or from a copy of epoch E − 1 (the last holder's),
 * never from replication the cluster had moved past.
 *
 * Unfenced (`fenced: false`), a partition or a pause makes two serving nodes, as it must
 * without a store: then the tie-break must hold (never both nodes stepped down), and once
 * they can talk again one steps down. A serving node refuses a link with its claim
 * (`Deposed`) and, as `Cluster.ts` does, reads that connection for the dialler's answer for
 * a link time-out before it hangs up.
 */
import { Machine } from "@understudy/machine"
import { FastSim, Prng } from "@understudy/testkit"
import * as ClusterRole from "../../src/ClusterRole.ts"

export const nodes = ["a", "b"] as const
const tickMs = 50
const fenceTickMs = 70
const linkTimeoutMs = 300
export const leaseMs = 400
/** The role's relink grace (see `ClusterRole.Config`): a few of the dialler's ticks. */
const relinkGraceMs = 150
/** A keep-alive's round trip to the store. */
const storeMs = 30

/** What travels between the nodes, each on one connection (`conn`, numbered per run). */
export type Wire = (
  | ClusterRole.Message
  | { readonly _tag: "Hello" }
  | { readonly _tag: "Welcome" }
  | { readonly _tag: "Ping" }
  | { readonly _tag: "Bye" }
  /** The standby's probe of its primary (`Cluster.ts`: an SCTP INIT), and its answers. */
  | { readonly _tag: "Probe" }
  /** A live SCTP stack's INIT ACK: the node serves (a silent or standby node sends none). */
  | { readonly _tag: "ProbeAnswer" }
  /** The kernel's ICMP port unreachable: the node's process is gone (or fell silent). */
  | { readonly _tag: "ProbeClosed" }
) & { readonly conn: number }

export type Cmd =
  | { readonly _tag: "Pause"; readonly forMs: number }
  /** The process exits (SIGKILL), its host up: its link ends, its kernel answers probes closed. */
  | { readonly _tag: "Exit" }
  /**
   * The node's link ends and it dials again only after `afterMs` (alive and answering all
   * along): a link cut under a live primary, or one starved too long to link again.
   */
  | { readonly _tag: "Relink"; readonly afterMs: number }

/** What the model records for the invariants. */
export type Note =
  | { readonly _tag: "TakeOver"; readonly epoch: number; readonly copyEpoch: number | undefined }
  | { readonly _tag: "Refused"; readonly epoch: number; readonly floor: number }
  | { readonly _tag: "Applied"; readonly epoch: number }
  /** The node stopped serving for another serving node's claim (the tie-break). */
  | { readonly _tag: "SteppedDown"; readonly epoch: number }

export interface NodeState {
  readonly self: string
  readonly role: ClusterRole.State
  readonly linkedTo: string | undefined
  /** The connection of the link, or the one being dialled. */
  readonly conn: number
  readonly heardMs: number
  /** The fence as this node knows it. */
  readonly epoch: number
  readonly lastKeepAliveMs: number | undefined
  /** When the keep-alive waiting for the store's answer was started. */
  readonly keepAliveSentMs: number | undefined
  readonly acquiring: boolean
  readonly connecting: boolean
  /** The epoch of the replication its copy holds. */
  readonly copyEpoch: number | undefined
  readonly pausedUntil: number | undefined
  /** The process exited (`Exit`): only its kernel answers, until FastSim restarts it. */
  readonly exited: boolean
  /** It dials no link before this time (`Relink`). */
  readonly dialAfterMs: number | undefined
  readonly buffered: ReadonlyArray<Machine.Input<Wire, Cmd>>
  /** A refused connection a serving node still reads, for the dialler's claim. */
  readonly contest: { readonly conn: number; readonly from: string } | undefined
}

export interface Options {
  /** A broken secondary that never reads the store's epoch (shows what the floor prevents). */
  readonly ignoreStoreEpoch?: boolean
  /** The role's relink grace; 0: a link end is a takeover at once (shows what it prevents). */
  readonly relinkGraceMs?: number
  /** The role is fenced in the run's store (default true). */
  readonly fenced?: boolean
  /** A standby waiting the relink grace probes its primary (default true; false: the grace alone). */
  readonly probe?: boolean
}

/** The store of one run: who holds the fence, until when, and the epoch. */
interface Store {
  epoch: number
  holder: string | undefined
  expiresAtMs: number
}

/** The fence's proof (unfenced: always). */
const holds = (state: NodeState, nowMs: number) =>
  !state.role.config.fenced ||
  (state.epoch > 0 &&
    state.lastKeepAliveMs !== undefined &&
    nowMs - state.lastKeepAliveMs < leaseMs)

/** The epoch the node serves: the fence's, or unfenced the role's own. */
const servedEpoch = (state: NodeState) =>
  state.role.config.fenced ? state.epoch : state.role.epoch

/** Whether the node may transmit as the serving node now (the fence's proof). */
export const transmits = (state: NodeState, nowMs: number): boolean =>
  ClusterRole.serving(state.role) && holds(state, nowMs)

const other = (self: string) => (self === "a" ? "b" : "a")

/** A fresh machine for one run (the store and who has started are per run). */
export const machine = (options: Options = {}): Machine.Machine<NodeState, Wire, Cmd, Note> => {
  const store: Store = { epoch: 0, holder: undefined, expiresAtMs: 0 }
  const started = new Set<string>()
  let connections = 0

  const run = (start: NodeState, input: Machine.Input<Wire, Cmd>) => {
    let state = start
    const self = start.self
    const outputs: Array<Machine.Output<Wire, Note>> = []
    const nowMs = input.nowMs
    const send = (to: string, message: Wire) => outputs.push(Machine.send(to, message))
    /** On the link's connection (or the one being answered). */
    let conn = state.conn
    const note = (event: Note) => outputs.push(Machine.emit(event))

    const role = (input: Machine.Input<ClusterRole.Message, ClusterRole.Command>) => {
      const result = ClusterRole.make(state.role.config).step(state.role, input)
      state = { ...state, role: result.state }
      for (const output of result.outputs) {
        if (output._tag === "Send") send(output.to, { ...output.message, conn })
        if (output._tag === "Emit") perform(output.event)
        if (output._tag === "SetTimer" || output._tag === "CancelTimer") outputs.push(output)
      }
      return result.outputs
    }
    const command = (c: ClusterRole.Command) => role(Machine.command(c, nowMs))

    const perform = (action: ClusterRole.Action) => {
      switch (action._tag) {
        case "AcquireFence":
          state = { ...state, acquiring: true }
          return
        case "TakeOver":
          note({ _tag: "TakeOver", epoch: servedEpoch(state), copyEpoch: state.copyEpoch })
          state = { ...state, copyEpoch: undefined }
          command({ _tag: "TakenOver", associations: 1 })
          return
        case "ConnectStandby":
          state = { ...state, connecting: true }
          return
        case "FallSilent":
          if (action.reason === "Deposed") note({ _tag: "SteppedDown", epoch: state.role.epoch })
          if (state.linkedTo !== undefined) send(state.linkedTo, { _tag: "Bye", conn: state.conn })
          state = { ...state, linkedTo: undefined, connecting: false }
          return
        case "Refused":
          note({ _tag: "Refused", epoch: action.epoch, floor: action.floor })
          return
        default:
          return
      }
    }

    const linkUp = (to: string, on: number) => {
      state = { ...state, linkedTo: to, conn: on, heardMs: nowMs }
      conn = on
      command({ _tag: "LinkUp" })
      if (!options.ignoreStoreEpoch && state.role.role === "secondary") {
        command({ _tag: "EpochSeen", epoch: store.epoch })
      }
      // On link up `Cluster.ts` resends everything once it ever held the fence.
      if (ClusterRole.serving(state.role) && (state.epoch > 0 || !state.role.config.fenced)) {
        send(to, { _tag: "Replicate", epoch: servedEpoch(state), conn: on })
      }
    }
    const linkDown = (reason: string) => {
      if (state.linkedTo === undefined) return
      state = { ...state, linkedTo: undefined }
      command({ _tag: "LinkDown", reason })
    }

    const onTimer = (timer: string) => {
      if (timer === "relink") {
        role(Machine.timerFired(timer, nowMs))
        return
      }
      if (timer === "contest") {
        // No answer within the link's time-out: the refused connection is closed.
        if (state.contest !== undefined)
          send(state.contest.from, { _tag: "Bye", conn: state.contest.conn })
        state = { ...state, contest: undefined }
        return
      }
      if (timer === "fence") {
        outputs.push(Machine.setTimer("fence", fenceTickMs))
        if (state.acquiring && (store.holder === undefined || store.expiresAtMs <= nowMs)) {
          store.epoch++
          store.holder = self
          store.expiresAtMs = nowMs + leaseMs
          state = { ...state, acquiring: false, epoch: store.epoch, lastKeepAliveMs: nowMs }
          command({ _tag: "FenceAcquired", epoch: store.epoch })
        } else if (
          state.epoch > 0 &&
          ClusterRole.serving(state.role) &&
          state.keepAliveSentMs === undefined
        ) {
          state = { ...state, keepAliveSentMs: nowMs }
          outputs.push(Machine.setTimer("fenceReply", storeMs))
        }
        return
      }
      if (timer === "fenceReply") {
        // As `Fence`: the proof is the time the successful keep-alive was started.
        const sentMs = state.keepAliveSentMs
        state = { ...state, keepAliveSentMs: undefined }
        if (sentMs === undefined || !ClusterRole.serving(state.role)) return
        if (store.holder === self && store.epoch === state.epoch && store.expiresAtMs > sentMs) {
          store.expiresAtMs = sentMs + leaseMs
          state = { ...state, lastKeepAliveMs: sentMs }
        } else command({ _tag: "FenceLost", reason: "the store ended the lease" })
        return
      }
      if (timer !== "tick") return
      outputs.push(Machine.setTimer("tick", tickMs))
      if (state.linkedTo !== undefined && nowMs - state.heardMs > linkTimeoutMs) {
        send(state.linkedTo, { _tag: "Bye", conn: state.conn })
        linkDown("Timeout")
      }
      const serving = ClusterRole.serving(state.role)
      // Waiting the relink grace: its primary is probed every tick (see `Cluster.ts`).
      if (state.role.awaitingRelink !== undefined && options.probe !== false) {
        send(other(self), { _tag: "Probe", conn: 0 })
      }
      if (state.linkedTo === undefined) {
        const connects =
          (state.role.role === "primary" || (state.connecting && state.role.tookOver)) &&
          serving &&
          (state.dialAfterMs === undefined || nowMs >= state.dialAfterMs)
        if (connects) {
          state = { ...state, conn: ++connections }
          send(other(self), { _tag: "Hello", conn: state.conn })
        }
        return
      }
      send(state.linkedTo, { _tag: "Ping", conn: state.conn })
      // Every update is shipped only with the fence's proof (`beforeOutputs`).
      if (serving && holds(state, nowMs)) {
        send(state.linkedTo, { _tag: "Replicate", epoch: servedEpoch(state), conn: state.conn })
      }
    }

    const onReceive = (from: string, message: Wire) => {
      const onLink = from === state.linkedTo && message.conn === state.conn
      if (onLink) state = { ...state, heardMs: nowMs }
      switch (message._tag) {
        case "Hello": {
          conn = message.conn
          if (onLink) return send(from, { _tag: "Welcome", conn })
          if (state.linkedTo !== undefined) return send(from, { _tag: "Bye", conn })
          const answer = command({ _tag: "Incoming", from })
          const accepted = answer.some(
            (output) => output._tag === "Emit" && output.event._tag === "AcceptLink",
          )
          if (!accepted) {
            // A serving node told the dialler its claim: it reads the connection for the
            // answer (a link time-out at most), one such connection at a time.
            const claimed = answer.some((output) => output._tag === "Send")
            if (!claimed || state.contest !== undefined) return send(from, { _tag: "Bye", conn })
            state = { ...state, contest: { conn, from } }
            outputs.push(Machine.setTimer("contest", linkTimeoutMs))
            return
          }
          send(from, { _tag: "Welcome", conn })
          return linkUp(from, message.conn)
        }
        case "Welcome": {
          const dialled = state.linkedTo === undefined && message.conn === state.conn
          if (!dialled || !ClusterRole.serving(state.role)) {
            if (!onLink) send(from, { _tag: "Bye", conn: message.conn })
            return
          }
          return linkUp(from, message.conn)
        }
        case "Bye":
          if (onLink) linkDown("Closed")
          return
        case "Ping":
          return
        case "Probe":
          // A serving node's endpoint answers an INIT; a silent one's is closed; a standby
          // forwards it to its own primary or drops it (no answer from here).
          if (ClusterRole.serving(state.role)) return send(from, { _tag: "ProbeAnswer", conn: 0 })
          if (state.role.role === "deposed" || state.role.role === "handed-over") {
            return send(from, { _tag: "ProbeClosed", conn: 0 })
          }
          return
        case "ProbeAnswer":
          command({ _tag: "PartnerAlive" })
          return
        case "ProbeClosed":
          command({ _tag: "PartnerClosed" })
          return
        case "Deposed": {
          const claim: ClusterRole.Message = {
            _tag: "Deposed",
            epoch: message.epoch,
            ...(message.node !== undefined ? { node: message.node } : {}),
          }
          const deposed = Machine.receive(from, claim, nowMs)
          // Also on a connection just dialled: the node that took over answers with it.
          if (onLink || (state.linkedTo === undefined && message.conn === state.conn)) {
            role(deposed)
            return
          }
          // The dialler's answer on a connection this serving node refused: then hung up.
          if (state.contest !== undefined && message.conn === state.contest.conn) {
            conn = message.conn
            role(deposed)
            send(from, { _tag: "Bye", conn: message.conn })
            state = { ...state, contest: undefined }
          }
          return
        }
        case "Replicate": {
          // Only what arrives on the link counts (a closed connection delivers nothing).
          if (!onLink) return
          const verdict = role(
            Machine.receive(from, { _tag: "Replicate", epoch: message.epoch }, nowMs),
          )
          for (const output of verdict) {
            if (output._tag !== "Emit") continue
            if (output.event._tag === "Apply") {
              state = { ...state, copyEpoch: message.epoch }
              note({ _tag: "Applied", epoch: message.epoch })
            }
            if (output.event._tag === "Refused") {
              send(from, { _tag: "Bye", conn: message.conn })
              linkDown("refused")
            }
          }
          return
        }
      }
    }

    switch (input._tag) {
      case "TimerFired":
        onTimer(input.timer)
        break
      case "Receive":
        onReceive(input.from, input.message)
        break
      case "Command":
        if (input.command._tag === "Relink") {
          if (state.linkedTo !== undefined) {
            send(state.linkedTo, { _tag: "Bye", conn: state.conn })
            linkDown("Closed")
          }
          state = { ...state, dialAfterMs: nowMs + input.command.afterMs }
        }
        break
    }
    return Machine.result(state, outputs)
  }

  return {
    init: (context) => {
      // A node started again rejoins as the standby (the failback).
      const first = !started.has(context.self)
      started.add(context.self)
      const config: ClusterRole.Config = {
        role: first && context.self === "a" ? "primary" : "secondary",
        fenced: options.fenced ?? true,
        standby: true,
        relinkGraceMs: options.relinkGraceMs ?? relinkGraceMs,
      }
      const init = ClusterRole.make(config).init(context)
      const state: NodeState = {
        self: context.self,
        role: init.state,
        linkedTo: undefined,
        conn: 0,
        heardMs: context.nowMs,
        epoch: 0,
        lastKeepAliveMs: undefined,
        keepAliveSentMs: undefined,
        acquiring: init.outputs.some(
          (output) => output._tag === "Emit" && output.event._tag === "AcquireFence",
        ),
        connecting: false,
        copyEpoch: undefined,
        pausedUntil: undefined,
        exited: false,
        dialAfterMs: undefined,
        buffered: [],
        contest: undefined,
      }
      return Machine.result(state, [
        Machine.setTimer("tick", tickMs),
        Machine.setTimer("fence", 10),
      ])
    },
    step: (state, input) => {
      if (state.exited) {
        // Only the kernel is left: a probe finds the port closed; the rest is dropped.
        return input._tag === "Receive" && input.message._tag === "Probe"
          ? Machine.result(state, [Machine.send(input.from, { _tag: "ProbeClosed", conn: 0 })])
          : Machine.result(state)
      }
      if (input._tag === "Command" && input.command._tag === "Exit") {
        // Its sockets close with it: the link's peer reads the end.
        const bye =
          state.linkedTo === undefined
            ? []
            : [Machine.send(state.linkedTo, { _tag: "Bye" as const, conn: state.conn })]
        return Machine.result({ ...state, exited: true, linkedTo: undefined }, bye)
      }
      if (input._tag === "Command" && input.command._tag === "Pause") {
        if (state.pausedUntil !== undefined) return Machine.result(state)
        return Machine.result({ ...state, pausedUntil: input.nowMs + input.command.forMs }, [
          Machine.setTimer("resume", input.command.forMs),
        ])
      }
      if (state.pausedUntil !== undefined) {
        if (input._tag !== "TimerFired" || input.timer !== "resume") {
          const buffered = { ...state, buffered: [...state.buffered, input] }
          // A listening node's kernel completes the connection (a node started as the
          // secondary listens; the one started as the primary dials).
          const accepted =
            input._tag === "Receive" &&
            input.message._tag === "Hello" &&
            state.role.config.role === "secondary"
          return accepted
            ? Machine.result(buffered, [
                Machine.send(input.from, { _tag: "Welcome", conn: input.message.conn }),
              ])
            : Machine.result(buffered)
        }
        // Resumed: everything that arrived meanwhile, in order, at the time it is now.
        let current: NodeState = { ...state, pausedUntil: undefined, buffered: [] }
        const outputs: Array<Machine.Output<Wire, Note>> = []
        for (const held of state.buffered) {
          const result = run(current, { ...held, nowMs: input.nowMs })
          current = result.state
          outputs.push(...result.outputs)
        }
        return Machine.result(current, outputs)
      }
      return run(state, input)
    },
  }
}

/**
 * The pauses of one schedule (SIGSTOP … SIGCONT), drawn from the seed, and in some a link
 * that ends under a live node slow to link again (`Relink`).
 */
export const pauses = (seed: number, endMs: number): Array<FastSim.ScheduledCommand<Cmd>> => {
  const rng = Prng.make(seed ^ 0x51a7e)
  const count = rng.int(0, 2)
  const drawn: Array<FastSim.ScheduledCommand<Cmd>> = Array.from({ length: count }, () => ({
    atMs: rng.int(300, endMs),
    node: nodes[rng.int(0, 1)]!,
    command: { _tag: "Pause" as const, forMs: rng.int(100, 2_500) },
  }))
  if (rng.chance(0.25)) {
    drawn.push({
      atMs: rng.int(300, endMs),
      node: nodes[rng.int(0, 1)]!,
      command: { _tag: "Relink", afterMs: rng.int(100, 1_500) },
    })
  }
  return drawn
}

/** The view FastSim checks, for this model. */
export type View = FastSim.View<NodeState, Wire, Cmd, Note>

/** An invariant of this model. */
export type Invariant = FastSim.Invariant<NodeState, Wire, Cmd, Note>

/**
 * One run of the model on 2 ms links, with the states at its end: `options` for the model,
 * the rest for FastSim (a schedule or generated faults, commands, invariants).
 */
export const run = (
  run: Omit<
    FastSim.Options<NodeState, Wire, Cmd, Note>,
    "machine" | "nodes" | "link" | "invariants"
  > & { readonly options?: Options; readonly invariants?: ReadonlyArray<Invariant> },
): { readonly report: FastSim.Report<Note>; readonly final: View } => {
  let final: View | undefined
  const { options, invariants = [], ...rest } = run
  const report = FastSim.run({
    ...rest,
    machine: machine(options),
    nodes,
    link: { ...FastSim.healthyLink, latency: { _tag: "Fixed", ms: 2 } },
    invariants: [
      ...invariants,
      {
        name: "(keeps the last view)",
        check: (view: View) => {
          final = view
          return undefined
        },
      },
    ],
  })
  return { report, final: final! }
}
