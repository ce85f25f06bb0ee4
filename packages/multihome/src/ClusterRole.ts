/**
 * The cluster node's role as a pure machine (the `@understudy/machine` contract): which node
 * serves the associations, when a secondary takes over, when a serving node falls silent,
 * and which replication a secondary accepts. `Cluster` runs it against its link, its fence
 * and its endpoint; the simulations run the same machine against modelled ones.
 *
 * Roles: the `primary` serves; the `secondary` keeps a copy and answers HEARTBEATs from it;
 * when the link to its primary ends (and the primary neither linked again nor answered a
 * probe within the relink grace, or its address is closed) it becomes the
 * `active-secondary`, acquires the fence
 * (when there is one) and takes every association over; with a standby link it then keeps
 * a rejoining node in sync (failback), so the cluster can fail over again. A serving node
 * told `Deposed`, or whose fence is lost, is `deposed`; one that made its final
 * synchronisation before an announced failure is `handed-over`. Both stay silent for good.
 *
 * Planned handover: a linked primary asked to hand over becomes `handing-over` (it stops
 * stepping what reaches it and sends it on to the secondary); the secondary takes over
 * when `HandOver` arrives, once it holds everything the primary stepped before it; the
 * old primary becomes `handed-over` when the new one says the peer moved (`Deposed`), or
 * when the link ends (the secondary then takes over as after a failure).
 *
 * Epochs: every replication message carries the epoch its sender serves. With a fence it is
 * the fence's; without one a takeover serves the epoch after the newest it knew of (a first
 * primary serves 0). A secondary refuses replication older than the newest epoch it knows
 * of — the store's, read when a primary links to it, or the last it applied — and counts
 * it: a primary paused past its lease that comes back must not overwrite the copy with state
 * the cluster has moved past.
 *
 * Two serving nodes (a partition healed, a primary resumed from a pause, both taken over):
 * when one reaches the other (its link, or a standby link), the one that listens tells the
 * dialler it serves (`Deposed` with its epoch and node id). Exactly one steps down, by
 * {@link outranks}: the newer epoch serves on; on equal epochs, the node whose id sorts
 * first. The winner answers a loser's `Deposed` with its own, so the loser learns it either
 * way.
 *
 * @since 0.1.0
 */
import { Machine } from "@understudy/machine"
import * as Association from "./Association.ts"
import type * as Chunk from "./Chunk.ts"
import type * as Packet from "./Packet.ts"

/**
 * @since 0.1.0
 * @category models
 */
export type Role =
  | "primary"
  | "secondary"
  | "active-secondary"
  | "deposed"
  | "handing-over"
  | "handed-over"

/**
 * @since 0.1.0
 * @category models
 */
export interface Config {
  /** The role the node starts in. */
  readonly role: "primary" | "secondary"
  /** The role is held in a store (see `Fence`): nothing is served before it is acquired. */
  readonly fenced: boolean
  /** After a takeover, keep a rejoining node in sync (a standby link is configured). */
  readonly standby: boolean
  /**
   * How long a secondary whose link ended waits for its primary to link again, or to show
   * it is alive, before it takes over (default 0: at once). A link end is not always the
   * primary's failure: a standby starved of CPU past the keep-alive has its link ended by
   * the primary's keep-alive (or ends it with its own), and the live primary links again at
   * once — slowly, when the machine is starved too. So the secondary probes its primary:
   * every answer (`PartnerAlive`) starts the grace again, so a primary that answers is
   * never taken over however long it takes to link again; a closed address
   * (`PartnerClosed`) ends it at once. The grace decides only when nothing answers at all
   * (a stopped process, a host down or cut off).
   */
  readonly relinkGraceMs?: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface State {
  readonly config: Config
  /** This node's id (the machine's `self`): the tie-break between two serving nodes. */
  readonly self: Machine.NodeId
  readonly role: Role
  /**
   * Serving: the epoch it acquired (0 before, or without a fence). Secondary: the newest
   * epoch it knows of; replication older than it is refused.
   */
  readonly epoch: number
  /** A link to the other node is up. */
  readonly linked: boolean
  /**
   * Secondary: its link ended for this reason and it waits the relink grace for its primary
   * to link again (packets for the copies are dropped meanwhile); the takeover follows
   * when the grace ends unlinked.
   */
  readonly awaitingRelink: string | undefined
  /**
   * A takeover began with the fence's acquisition (`AcquireFence`), not answered yet. Should
   * the primary link again meanwhile, it is alive (it holds the lease this node waits for):
   * the node is its secondary again, and an acquisition that still succeeds later means the
   * primary was fenced out since: the node takes over then, at the epoch it acquired.
   */
  readonly awaitingFence: boolean
  /**
   * A primary's replication was ever accepted: only then is there something to take over (a
   * link whose sender was refused, or that carried nothing, does not count).
   */
  readonly primaryKnown: boolean
  /** The takeover is complete: every copy is a live association. */
  readonly tookOver: boolean
  /** Replication messages refused for a stale epoch. */
  readonly refused: number
}

/**
 * What the role sees of the link: `Replicate` stands for every primary → secondary message
 * (snapshots, inputs, secrets …) with the epoch it carries.
 *
 * @since 0.1.0
 * @category models
 */
export type Message =
  | { readonly _tag: "Replicate"; readonly epoch: number }
  /**
   * Stop serving: `node` (absent: an older sender, which wins ties) serves at `epoch`. A
   * serving node that {@link outranks} the sender serves on and answers in kind — the sender
   * is one the fence moved past that does not know it yet (a primary resumed from a pause
   * whose link reaches the node that took over), or loses the tie-break.
   */
  | { readonly _tag: "Deposed"; readonly epoch: number; readonly node?: Machine.NodeId }
  /**
   * Planned handover: take over now; the secondary steps it once it applied everything the
   * primary shipped before it.
   */
  | { readonly _tag: "HandOver"; readonly epoch: number }

/**
 * What happened to the node.
 *
 * @since 0.1.0
 * @category models
 */
export type Command =
  | { readonly _tag: "LinkUp" }
  | { readonly _tag: "LinkDown"; readonly reason: string }
  /** Another node connects to this node's link. */
  | { readonly _tag: "Incoming"; readonly from: Machine.NodeId }
  /** The store's current epoch, read by a secondary as a primary links to it. */
  | { readonly _tag: "EpochSeen"; readonly epoch: number }
  | { readonly _tag: "FenceAcquired"; readonly epoch: number }
  | { readonly _tag: "FenceLost"; readonly reason: string }
  /** The copies are adopted: the node serves them. */
  | { readonly _tag: "TakenOver"; readonly associations: number }
  /** A packet for no copy reached the secondary, which has no link: its primary is gone. */
  | { readonly _tag: "Stray" }
  /**
   * The primary's address is closed (an ICMP port unreachable: its process is gone, its host
   * up): a secondary waiting the relink grace takes over at once.
   */
  | { readonly _tag: "PartnerClosed" }
  /**
   * The primary answered the probe of a secondary waiting the relink grace (its SCTP stack
   * is alive): the grace starts again.
   */
  | { readonly _tag: "PartnerAlive" }
  /** The final synchronisation before an announced failure is acknowledged. */
  | { readonly _tag: "HandedOver" }
  /** Planned handover: the primary is asked to hand its associations to the secondary. */
  | { readonly _tag: "HandOver" }

/**
 * What the node must do, or say.
 *
 * @since 0.1.0
 * @category models
 */
export type Action =
  /** Wait until the fence is this node's, then step `FenceAcquired`. */
  | { readonly _tag: "AcquireFence" }
  | { readonly _tag: "Fenced"; readonly epoch: number }
  /**
   * Adopt every copy, then step `TakenOver`; `planned`: a handover, the copy is exact and
   * the old primary sent what it says it sent (nothing is retransmitted).
   */
  | { readonly _tag: "TakeOver"; readonly why: string; readonly planned: boolean }
  /**
   * Planned handover: send everything that reaches the node to the secondary from now on,
   * and tell it `HandOver` once it holds everything stepped so far.
   */
  | { readonly _tag: "HandOver" }
  /** The handover asked for can not be made (not a linked primary, or fenced). */
  | { readonly _tag: "HandOverRefused"; readonly detail: string }
  | { readonly _tag: "TookOver"; readonly associations: number }
  /** Keep connecting to the standby link (failback). */
  | { readonly _tag: "ConnectStandby" }
  /** Serve the incoming link (`Incoming`) / close it. */
  | { readonly _tag: "AcceptLink" }
  | { readonly _tag: "RejectLink" }
  /** Apply the replication message just received. */
  | { readonly _tag: "Apply" }
  /** The message is older than the newest epoch known: dropped, counted, the link closed. */
  | { readonly _tag: "Refused"; readonly epoch: number; readonly floor: number }
  /** Close the endpoint and stay silent: the role went elsewhere, or may have. */
  | {
      readonly _tag: "FallSilent"
      readonly reason: "Deposed" | "FencedOut" | "HandedOver"
      readonly detail: string
    }

/** @since 0.1.0 @category models */
export type Output = Machine.Output<Message, Action>

type Step = Machine.Result<State, Message, Action>

/**
 * Whether the node runs the associations (and replicates them to a linked standby).
 *
 * @since 0.1.0
 * @category accessors
 */
export const serving = (state: State): boolean =>
  state.role === "primary" || state.role === "active-secondary"

/**
 * What to do with a packet that reached the node's endpoint for no association of its own:
 * `pass` it to the endpoint, `drop` it (the peer retransmits), `answer` its HEARTBEATs from
 * the copy, `forward` it to the primary, or `take-over` (step `Stray`, then pass it).
 *
 * @since 0.1.0
 * @category accessors
 */
export const intercept = (
  state: State,
  packet: { readonly heartbeatsForCopy: boolean },
): "pass" | "drop" | "answer" | "forward" | "take-over" => {
  // Mid-takeover (the fence's wait for the old lease) a packet for a copy not adopted yet
  // would look out of the blue and draw an ABORT; its HEARTBEATs are still answered from the
  // copy, or a peer with short timers marks this address unreachable before the takeover.
  if (state.role === "active-secondary" && !state.tookOver) {
    return packet.heartbeatsForCopy ? "answer" : "drop"
  }
  if (state.role !== "secondary") return "pass"
  if (packet.heartbeatsForCopy) return "answer"
  if (state.linked) return "forward"
  // The primary may link again (see `relinkGraceMs`): the peer retransmits.
  if (state.awaitingRelink !== undefined) return "drop"
  // No primary was ever linked (starting, restarted): no copy, and taking over now would
  // only make two active nodes.
  if (!state.primaryKnown) return "drop"
  // With a fence the takeover waits for the store, which the link's end starts.
  if (state.config.fenced) return "drop"
  return "take-over"
}

/**
 * Whether a packet for no association of the node's own is one a secondary answers from its
 * copy (see {@link intercept}): only HEARTBEATs, for an association it holds a copy of.
 *
 * @since 0.1.0
 * @category accessors
 */
export const heartbeatsForCopy = (
  copy: Association.State | undefined,
  chunks: ReadonlyArray<Chunk.Chunk>,
): boolean => copy !== undefined && chunks.length > 0 && chunks.every((c) => c._tag === "Heartbeat")

/**
 * A secondary's answers from its copy to a packet of HEARTBEATs (`intercept` said `answer`):
 * one HEARTBEAT ACK per HEARTBEAT, from the endpoint's SCTP `port` to the copy's peer with
 * the peer's tag, so the peer confirms the secondary's address while the primary serves.
 *
 * @since 0.1.0
 * @category constructors
 */
export const heartbeatAnswers = (
  copy: Association.State,
  port: number,
  chunks: ReadonlyArray<Chunk.Chunk>,
): Array<Packet.Packet> =>
  chunks.flatMap((chunk) =>
    chunk._tag === "Heartbeat"
      ? [
          {
            sourcePort: port,
            destinationPort: Association.peerPort(copy),
            verificationTag: Association.peerTag(copy),
            chunks: [{ _tag: "HeartbeatAck" as const, info: chunk.info }],
          },
        ]
      : [],
  )

/**
 * Whether a serving node at `epoch` with id `self` stays serving against another serving
 * node's claim (its `Deposed`): the newer epoch wins; on equal epochs the node whose id sorts
 * first (a claim with no id, from an older node, wins the tie). Total on distinct ids: of
 * two serving nodes exactly one outranks the other.
 *
 * @since 0.1.0
 * @category accessors
 */
export const outranks = (
  mine: { readonly epoch: number; readonly self: Machine.NodeId },
  claim: { readonly epoch: number; readonly node?: Machine.NodeId | undefined },
): boolean =>
  mine.epoch !== claim.epoch
    ? mine.epoch > claim.epoch
    : claim.node !== undefined && mine.self < claim.node

/** This node's claim to serve, told to another serving node it meets. */
const claim = (state: State, to: Machine.NodeId): Output =>
  Machine.send(to, { _tag: "Deposed", epoch: state.epoch, node: state.self })

const result = (state: State, outputs: ReadonlyArray<Output> = []): Step =>
  Machine.result(state, outputs)

const act = (action: Action): Output => Machine.emit(action)

/** The timer of the relink grace (see `Config.relinkGraceMs`). */
const relinkTimer = "relink"

/** The secondary's link ended, or the peer reached it with none: take over. */
const beginTakeOver = (state: State, why: string): Step => {
  if (state.role !== "secondary" || !state.primaryKnown) return result(state)
  // Nothing goes out before the old primary's lease ended and the epoch moved on.
  if (state.config.fenced) {
    return result({ ...state, role: "active-secondary", awaitingFence: true }, [
      act({ _tag: "AcquireFence" }),
    ])
  }
  // Without a fence the takeover's own epoch: after the newest this node knew of.
  return result({ ...state, role: "active-secondary", epoch: state.epoch + 1 }, [
    act({ _tag: "TakeOver", why, planned: false }),
  ])
}

const fallSilent = (
  state: State,
  role: "deposed" | "handed-over",
  reason: "Deposed" | "FencedOut" | "HandedOver",
  detail: string,
): Step => result({ ...state, role, linked: false }, [act({ _tag: "FallSilent", reason, detail })])

const refuseHandOver = (state: State): string | undefined => {
  if (state.role !== "primary") return `a ${state.role} node has nothing to hand over`
  if (!state.linked) return "no secondary is linked"
  // The secondary would wait for the primary's lease before it may serve.
  if (state.config.fenced) return "not with a fence"
  return undefined
}

const onCommand = (state: State, command: Command): Step => {
  switch (command._tag) {
    case "LinkUp":
      return state.awaitingRelink === undefined
        ? result({ ...state, linked: true })
        : result({ ...state, linked: true, awaitingRelink: undefined }, [
            Machine.cancelTimer(relinkTimer),
          ])
    case "LinkDown": {
      const down: State = { ...state, linked: false }
      // Mid-handover: the secondary takes over as after a failure; this node never serves again.
      if (state.role === "handing-over") {
        return fallSilent(down, "handed-over", "HandedOver", "the link closed during the handover")
      }
      if (state.config.role !== "secondary") return result(down)
      const why = `the link closed (${command.reason})`
      const graceMs = state.config.relinkGraceMs ?? 0
      if (graceMs <= 0 || state.role !== "secondary" || !state.primaryKnown) {
        return beginTakeOver(down, why)
      }
      return result({ ...down, awaitingRelink: why }, [Machine.setTimer(relinkTimer, graceMs)])
    }
    case "Incoming":
      if (state.role === "secondary" && !state.linked)
        return result(state, [act({ _tag: "AcceptLink" })])
      // Still waiting for the primary's lease: the primary is alive after all (see
      // `awaitingFence`); refused, it would serve on unprotected and the copy go stale.
      if (state.role === "active-secondary" && state.awaitingFence && !state.linked)
        return result({ ...state, role: "secondary" }, [act({ _tag: "AcceptLink" })])
      // Another serving node (a primary back after the takeover, a partition healed): the
      // dialler is told this node's claim; the one `outranks` says loses steps down.
      if (serving(state))
        return result(state, [claim(state, command.from), act({ _tag: "RejectLink" })])
      return result(state, [act({ _tag: "RejectLink" })])
    case "EpochSeen":
      return command.epoch > state.epoch
        ? result({ ...state, epoch: command.epoch })
        : result(state)
    case "FenceAcquired": {
      // A takeover given up for a primary that linked again: the lease is this node's now,
      // so that primary was fenced out since; the copy is its last replication.
      if (state.role === "secondary" && state.awaitingFence && state.primaryKnown) {
        return result(
          { ...state, role: "active-secondary", awaitingFence: false, epoch: command.epoch },
          [
            act({ _tag: "Fenced", epoch: command.epoch }),
            act({ _tag: "TakeOver", why: `epoch ${command.epoch}`, planned: false }),
          ],
        )
      }
      if (!serving(state)) return result(state)
      const next: State = { ...state, epoch: command.epoch, awaitingFence: false }
      const fenced = act({ _tag: "Fenced", epoch: command.epoch })
      return next.role === "active-secondary" && !next.tookOver
        ? result(next, [
            fenced,
            act({ _tag: "TakeOver", why: `epoch ${command.epoch}`, planned: false }),
          ])
        : result(next, [fenced])
    }
    case "FenceLost":
      return serving(state)
        ? fallSilent(state, "deposed", "FencedOut", command.reason)
        : result(state)
    case "TakenOver": {
      if (state.role !== "active-secondary" || state.tookOver) return result(state)
      const outputs: Array<Output> = [act({ _tag: "TookOver", associations: command.associations })]
      if (state.config.standby) outputs.push(act({ _tag: "ConnectStandby" }))
      return result({ ...state, tookOver: true }, outputs)
    }
    case "PartnerClosed": {
      const why = state.awaitingRelink
      if (why === undefined || state.linked || state.role !== "secondary") return result(state)
      const gone = beginTakeOver(
        { ...state, awaitingRelink: undefined },
        `${why}, and its address is closed`,
      )
      return result(gone.state, [Machine.cancelTimer(relinkTimer), ...gone.outputs])
    }
    case "PartnerAlive":
      return state.awaitingRelink === undefined || state.linked || state.role !== "secondary"
        ? result(state)
        : result(state, [Machine.setTimer(relinkTimer, state.config.relinkGraceMs ?? 0)])
    case "Stray":
      return state.config.fenced || state.linked || state.awaitingRelink !== undefined
        ? result(state)
        : beginTakeOver(state, "the peer reached the secondary's address with no primary")
    case "HandedOver":
      return state.role === "primary"
        ? fallSilent(state, "handed-over", "HandedOver", "final synchronisation acknowledged")
        : result(state)
    case "HandOver": {
      const refused = refuseHandOver(state)
      return refused === undefined
        ? result({ ...state, role: "handing-over" }, [act({ _tag: "HandOver" })])
        : result(state, [act({ _tag: "HandOverRefused", detail: refused })])
    }
  }
}

const onReceive = (state: State, from: Machine.NodeId, message: Message): Step => {
  switch (message._tag) {
    case "Deposed":
      // The node it handed over to serves, and the peer sends there.
      if (state.role === "handing-over") {
        return fallSilent(state, "handed-over", "HandedOver", "the secondary took over")
      }
      if (!serving(state)) return result(state)
      // Sent by a node the store has moved past, which does not know it yet, or one that
      // loses the tie-break: not obeyed, and told this node's claim, so it steps down.
      if (outranks(state, message)) return result(state, [claim(state, from)])
      return fallSilent(
        state,
        "deposed",
        "Deposed",
        message.node === undefined
          ? "the secondary took over"
          : `${message.node} serves at epoch ${message.epoch}`,
      )
    case "Replicate": {
      if (state.role !== "secondary") return result(state)
      if (message.epoch < state.epoch) {
        // A primary the store has moved past: tell it, and do not let it near the copy.
        return result({ ...state, refused: state.refused + 1 }, [
          act({ _tag: "Refused", epoch: message.epoch, floor: state.epoch }),
          Machine.send(from, { _tag: "Deposed", epoch: state.epoch }),
        ])
      }
      return result({ ...state, epoch: message.epoch, primaryKnown: true }, [
        act({ _tag: "Apply" }),
      ])
    }
    case "HandOver":
      if (
        state.role !== "secondary" ||
        !state.linked ||
        !state.primaryKnown ||
        state.config.fenced ||
        message.epoch < state.epoch
      ) {
        return result(state)
      }
      return result({ ...state, role: "active-secondary", epoch: state.epoch + 1 }, [
        act({ _tag: "TakeOver", why: "planned handover", planned: true }),
      ])
  }
}

/**
 * The role machine of one node.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (config: Config): Machine.Machine<State, Message, Command, Action> => ({
  init: (context) =>
    result(
      {
        config,
        self: context.self,
        role: config.role,
        epoch: 0,
        linked: false,
        awaitingRelink: undefined,
        awaitingFence: false,
        primaryKnown: false,
        tookOver: false,
        refused: 0,
      },
      config.role === "primary" && config.fenced ? [act({ _tag: "AcquireFence" })] : [],
    ),
  step: (state, input) => {
    switch (input._tag) {
      case "Command":
        return onCommand(state, input.command)
      case "Receive":
        return onReceive(state, input.from, input.message)
      case "TimerFired": {
        // The relink grace ended with no link and no answer: the primary is gone after all.
        const why = state.awaitingRelink
        if (input.timer !== relinkTimer || why === undefined || state.linked) return result(state)
        return beginTakeOver(
          { ...state, awaitingRelink: undefined },
          `${why}, no link and no answer within ${state.config.relinkGraceMs} ms`,
        )
      }
    }
  },
})
