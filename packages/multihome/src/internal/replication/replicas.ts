import { Schema } from "effect"
import * as Association from "../../Association.ts"
import { fromWire, type ListenerSecrets, type Message } from "./messages.ts"
import { isExact, type Policy } from "./policy.ts"
import { snapshotProblem } from "./shape.ts"
import { reserve } from "./shipper.ts"

/**
 * A replication message the secondary can not apply (a damaged snapshot or packet, inputs
 * for an association it never had): the link is reset and the primary resends.
 *
 * @since 0.1.0
 * @category errors
 */
export class ReplicaError extends Schema.TaggedError<ReplicaError>()("ReplicaError", {
  association: Schema.Number,
  detail: Schema.String,
}) {}

/**
 * The secondary's copies: associations by the primary's id, the listener's secrets, and how
 * far it has applied.
 *
 * @since 0.1.0
 * @category secondary
 */
export class Replicas {
  readonly config: Association.Config
  readonly states = new Map<number, Association.State>()
  /** The highest Cumulative TSN Ack the primary sent the peer, per association (inexact policies). */
  readonly cumulativeAcks = new Map<number, number>()
  listener: ListenerSecrets | undefined
  /** The last sequence number applied. */
  applied = 0

  constructor(config: Association.Config) {
    this.config = config
  }

  /**
   * Applies one message from the primary (`Ack`, `Forward`, `Deposed` and `HandOver` are
   * not for it).
   */
  apply(message: Message): ReplicaError | undefined {
    switch (message._tag) {
      case "Snapshot": {
        const wrong = snapshotProblem(message.snapshot)
        if (wrong !== undefined) {
          this.states.delete(message.association)
          return new ReplicaError({
            association: message.association,
            detail: `a damaged snapshot (${wrong})`,
          })
        }
        try {
          this.states.set(message.association, Association.restore(this.config, message.snapshot))
        } catch (error) {
          this.states.delete(message.association)
          return new ReplicaError({
            association: message.association,
            detail: `the snapshot does not restore: ${String(error)}`,
          })
        }
        break
      }
      case "Inputs": {
        const state = this.states.get(message.association)
        if (state === undefined) {
          return new ReplicaError({
            association: message.association,
            detail: "inputs for an association without a snapshot",
          })
        }
        for (const wire of message.inputs) {
          const input = fromWire(wire)
          if (input === undefined) {
            this.states.delete(message.association)
            return new ReplicaError({
              association: message.association,
              detail: "a replicated packet does not decode",
            })
          }
          // The outputs are the primary's to perform; the copy only follows. A copy that
          // can not take an input the primary took is not the primary's state any more.
          try {
            Association.step(state, input)
          } catch (error) {
            this.states.delete(message.association)
            return new ReplicaError({
              association: message.association,
              detail: `a replicated input does not apply: ${String(error)}`,
            })
          }
        }
        break
      }
      case "CumulativeAck":
        this.cumulativeAcks.set(message.association, message.tsn)
        break
      case "Gone":
        this.states.delete(message.association)
        this.cumulativeAcks.delete(message.association)
        break
      case "Secrets":
        this.listener = message.listener
        break
      case "Aliases":
        // The endpoint applies them (where to answer a peer that sends from loopback).
        break
      case "Ack":
      case "Forward":
      case "Deposed":
      case "HandOver":
        return undefined
    }
    this.applied = message.seq
    return undefined
  }

  /**
   * How to take the copy of `association` over (see `Association.takeOver`): as it is when
   * the policy keeps it exact; else resynchronised, past the highest Cumulative TSN Ack
   * the primary sent and the numbers it may have used (the {@link reserve}).
   */
  takeOverOptions(policy: Policy, association: number): Association.TakeOverOptions {
    if (isExact(policy)) return {}
    const cumulativeTsnAck = this.cumulativeAcks.get(association)
    return {
      resync: true,
      reserve,
      ...(cumulativeTsnAck === undefined ? {} : { cumulativeTsnAck }),
    }
  }

  /** The copy of the association a packet with this verification tag belongs to. */
  byTag(tag: number): Association.State | undefined {
    for (const state of this.states.values()) {
      if (Association.myTag(state) === tag) return state
    }
    return undefined
  }
}
