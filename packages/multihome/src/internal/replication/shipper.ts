import * as Association from "../../Association.ts"
import { gt32 } from "../../Serial.ts"
import { type ListenerSecrets, type Message, toWire } from "./messages.ts"
import type { Policy } from "./policy.ts"

/**
 * One association's update as the endpoint reports it (its `beforeOutputs` hook).
 *
 * @since 0.1.0
 * @category primary
 */
export interface Update {
  readonly associationId: number
  readonly created: boolean
  readonly inputs: ReadonlyArray<Association.Input>
  readonly outputs: ReadonlyArray<Association.Output>
  readonly state: Association.State
}

/**
 * What to do about an update: send `messages` to the secondary (and, with `waitForAck`,
 * hold the outputs until it acknowledged the last of them), and/or write `store` (the
 * state-node policy; outputs wait for the write).
 *
 * @since 0.1.0
 * @category primary
 */
export interface Plan {
  readonly messages: ReadonlyArray<Message>
  readonly waitForAck: boolean
  readonly store?: { readonly association: number; readonly snapshot: Association.Snapshot }
  /** The association ended: its stored state may be deleted. */
  readonly forget?: number
}

const nothing: Plan = { messages: [], waitForAck: false }

/**
 * How far the primary may run ahead of the copy it last sent under an inexact policy: at
 * most `tsn` TSNs and `ssn` stream sequence numbers per stream. Halfway there it sends a
 * fresh snapshot, whatever the policy's own schedule; a replica that takes over from an
 * older copy skips the whole reserve (PR-SCTP FORWARD TSN), so it never reuses a number
 * the peer may have seen from the primary.
 *
 * @since 0.1.0
 * @category policies
 */
export const reserve: { readonly tsn: number; readonly ssn: number } = { tsn: 8192, ssn: 1024 }

/** The highest Cumulative TSN Ack among the SACKs and SHUTDOWNs of `outputs`. */
const cumulativeTsnAckSent = (outputs: ReadonlyArray<Association.Output>): number | undefined => {
  let highest: number | undefined
  for (const output of outputs) {
    if (output._tag !== "Send") continue
    for (const chunk of output.message.chunks) {
      if (
        (chunk._tag === "Sack" || chunk._tag === "Shutdown") &&
        (highest === undefined || gt32(chunk.cumulativeTsnAck, highest))
      ) {
        highest = chunk.cumulativeTsnAck
      }
    }
  }
  return highest
}

/** Where the copy last sent stood: its next TSN and next SSN per stream. */
interface Mark {
  readonly nextTsn: number
  readonly ssnOut: ReadonlyArray<number>
}

const markOf = (state: Association.State): Mark => ({
  nextTsn: state.nextTsn,
  ssnOut: state.ssnOut.slice(),
})

/** Whether `state` has used half of the reserve since `mark`. */
const pastHalfReserve = (state: Association.State, mark: Mark): boolean => {
  if ((state.nextTsn - mark.nextTsn) >>> 0 >= reserve.tsn / 2) return true
  for (let stream = 0; stream < state.ssnOut.length; stream++) {
    const from = mark.ssnOut[stream] ?? 0
    if (((state.ssnOut[stream]! - from) & 0xffff) >= reserve.ssn / 2) return true
  }
  return false
}

/**
 * The primary's half of a policy: what each update, tick and impending failure sends.
 * Pure; the cluster performs the plans in order.
 *
 * @since 0.1.0
 * @category primary
 */
export class Shipper {
  readonly policy: Policy
  /** The epoch stamped on every message: the fence's, once this node holds it. */
  epoch = 0
  private seq = 0
  /** Associations changed since their last snapshot (interval). */
  private readonly dirty = new Set<number>()
  /** Live associations the secondary has been told about. */
  private readonly known = new Set<number>()
  private readonly states = new Map<number, Association.State>()
  /** Inexact policies: where each association's last shipped copy stood. */
  private readonly marks = new Map<number, Mark>()
  /** Inexact policies: the highest Cumulative TSN Ack the secondary has (waited for). */
  private readonly cumulativeAcks = new Map<number, number>()

  constructor(policy: Policy) {
    this.policy = policy
  }

  /** The sequence number of the last message planned. */
  get lastSeq(): number {
    return this.seq
  }

  private snapshotOf(association: number, state: Association.State): Message {
    this.known.add(association)
    this.marks.set(association, markOf(state))
    return {
      _tag: "Snapshot",
      seq: ++this.seq,
      epoch: this.epoch,
      association,
      snapshot: Association.snapshot(state),
    }
  }

  private gone(association: number): Array<Message> {
    this.states.delete(association)
    this.marks.delete(association)
    this.cumulativeAcks.delete(association)
    this.dirty.delete(association)
    if (!this.known.delete(association)) return []
    return [{ _tag: "Gone", seq: ++this.seq, epoch: this.epoch, association }]
  }

  /** The listener's cookie secrets, sent when the link (re)connects. */
  secrets(listener: ListenerSecrets): Message {
    return { _tag: "Secrets", seq: ++this.seq, epoch: this.epoch, listener }
  }

  /** The endpoint's alias table, sent when the link (re)connects and when it grows. */
  aliases(aliases: Extract<Message, { _tag: "Aliases" }>["aliases"]): Message {
    return { _tag: "Aliases", seq: ++this.seq, epoch: this.epoch, aliases }
  }

  /** Everything the secondary needs after the link (re)connects: a snapshot of each association. */
  resend(): ReadonlyArray<Message> {
    if (this.policy._tag === "OnImpendingFailure" || this.policy._tag === "StateNode") return []
    this.known.clear()
    return [...this.states].map(([association, state]) => this.snapshotOf(association, state))
  }

  /** The plan for one update. */
  onUpdate(update: Update): Plan {
    const closed = update.outputs.some((o) => o._tag === "Emit" && o.event._tag === "Closed")
    if (closed) {
      const messages = this.gone(update.associationId)
      return this.policy._tag === "StateNode"
        ? { messages: [], waitForAck: false, forget: update.associationId }
        : { messages, waitForAck: false }
    }
    this.states.set(update.associationId, update.state)
    switch (this.policy._tag) {
      case "EveryUpdate": {
        const message: Message =
          update.created || !this.known.has(update.associationId)
            ? this.snapshotOf(update.associationId, update.state)
            : {
                _tag: "Inputs",
                seq: ++this.seq,
                epoch: this.epoch,
                association: update.associationId,
                inputs: update.inputs.map(toWire),
              }
        return { messages: [message], waitForAck: true }
      }
      case "StateNode":
        return {
          messages: [],
          waitForAck: false,
          store: {
            association: update.associationId,
            snapshot: Association.snapshot(update.state),
          },
        }
      case "Interval":
        this.dirty.add(update.associationId)
        return this.beforeAcknowledging(update, this.keepWithinReserve(update))
      case "OnEvent": {
        const events = this.policy.events
        const raised = update.outputs.some(
          (output) => output._tag === "Emit" && events.includes(output.event._tag),
        )
        return this.beforeAcknowledging(
          update,
          raised || update.created
            ? { messages: [this.snapshotOf(update.associationId, update.state)], waitForAck: false }
            : this.keepWithinReserve(update),
        )
      }
      case "OnImpendingFailure":
        return nothing
    }
  }

  /**
   * Inexact policies: an update's outputs wait for the secondary when it creates the
   * association (the peer's association is never up without a copy to take over) and when
   * its SACK (or SHUTDOWN) acknowledges beyond the Cumulative TSN Ack the secondary has —
   * carried by a snapshot in the plan, or by a `CumulativeAck`.
   */
  private beforeAcknowledging(update: Update, plan: Plan): Plan {
    const association = update.associationId
    const tsn = cumulativeTsnAckSent(update.outputs)
    const known = this.cumulativeAcks.get(association)
    const acknowledges = tsn !== undefined && (known === undefined || gt32(tsn, known))
    if (!acknowledges && !update.created) return plan
    const messages = [...plan.messages]
    if (acknowledges) {
      this.cumulativeAcks.set(association, tsn)
      const carried = messages.some(
        (message) => message._tag === "Snapshot" && message.association === association,
      )
      if (!carried) {
        messages.push({
          _tag: "CumulativeAck",
          seq: ++this.seq,
          epoch: this.epoch,
          association,
          tsn,
        })
      }
    }
    return { messages, waitForAck: true }
  }

  /** A snapshot now if the association used half the {@link reserve} since its last one. */
  private keepWithinReserve(update: Update): Plan {
    const mark = this.marks.get(update.associationId)
    if (mark !== undefined && !pastHalfReserve(update.state, mark)) return nothing
    this.dirty.delete(update.associationId)
    return { messages: [this.snapshotOf(update.associationId, update.state)], waitForAck: false }
  }

  /** The interval policy's tick: a snapshot of each association changed since the last. */
  onTick(): ReadonlyArray<Message> {
    if (this.policy._tag !== "Interval") return []
    const messages: Array<Message> = []
    for (const association of this.dirty) {
      const state = this.states.get(association)
      if (state !== undefined) messages.push(this.snapshotOf(association, state))
    }
    this.dirty.clear()
    return messages
  }

  /** One final snapshot of every association (impending failure; any policy may use it). */
  onImpendingFailure(): ReadonlyArray<Message> {
    if (this.policy._tag === "StateNode") return []
    this.dirty.clear()
    return [...this.states].map(([association, state]) => this.snapshotOf(association, state))
  }
}
