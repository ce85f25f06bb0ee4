/**
 * The association machine: Inputs, outputs, events.
 */
import type { Machine } from "@understudy/machine"
import type * as Chunk from "../../Chunk.ts"
import type * as Packet from "../../Packet.ts"
import type { State } from "./state.ts"

/**
 * A path's far end: the peer's IP and the UDP port its packets come from (RFC 6951).
 *
 * @since 0.1.0
 * @category models
 */
export interface PeerAddress {
  readonly host: string
  readonly udpPort: number
}

/**
 * A user command.
 *
 * @since 0.1.0
 * @category models
 */
export type Command =
  | {
      readonly _tag: "Send"
      readonly stream: number
      readonly ppid: number
      /** Taken over by the machine: the caller must not change it afterwards. */
      readonly data: Uint8Array
      readonly unordered: boolean
    }
  | { readonly _tag: "Shutdown" }
  | { readonly _tag: "Abort"; readonly reason?: string }
  | { readonly _tag: "SetPrimary"; readonly host: string }
  | { readonly _tag: "RequestHeartbeat"; readonly host: string }

/**
 * A packet arrived: the contract's `Receive`, its `message` the packet (decoded, CRC
 * already verified).
 *
 * @since 0.1.0
 * @category models
 */
export interface Receive extends Machine.Receive<Packet.Packet, PeerAddress> {
  /** The datagram as received, when the driver has it: replication ships it as it is. */
  readonly bytes?: Uint8Array
}

/**
 * An input of {@link step}: the inputs of the `@understudy/machine` contract.
 *
 * @since 0.1.0
 * @category models
 */
export type Input = Receive | Machine.TimerFired | Machine.Command<Command>

/**
 * Something the user learns.
 *
 * - `SendFailed.reason`: "WouldBlock" (send buffer full), "InvalidStream", "NotEstablished",
 *   "Closed" (queued or outstanding data dropped by an abort or restart).
 * - `PeerError`: an ERROR chunk from the peer (its causes, views into the packet).
 * - `Dropped`: a packet or chunk ignored by a rule (for counters).
 * - `Closed`: the TCB is gone; the driver forgets the association.
 *
 * @since 0.1.0
 * @category models
 */
export type Event =
  | {
      readonly _tag: "CommUp"
      readonly peerAddresses: ReadonlyArray<string>
      readonly inboundStreams: number
      readonly outboundStreams: number
    }
  | {
      readonly _tag: "Message"
      readonly stream: number
      readonly ppid: number
      readonly unordered: boolean
      readonly data: Uint8Array
    }
  | {
      readonly _tag: "PathChange"
      readonly host: string
      readonly state: "Confirmed" | "Unreachable" | "Available" | "Primary"
    }
  | {
      readonly _tag: "SendFailed"
      readonly reason: "WouldBlock" | "InvalidStream" | "NotEstablished" | "Closed"
      readonly stream: number
      readonly ppid: number
      readonly bytes: number
    }
  | { readonly _tag: "CommLost"; readonly reason: string }
  | { readonly _tag: "PeerError"; readonly causes: ReadonlyArray<Chunk.ErrorCause> }
  | { readonly _tag: "Restart" }
  | { readonly _tag: "ShutdownComplete" }
  | { readonly _tag: "Dropped"; readonly reason: string }
  | { readonly _tag: "Closed" }

/**
 * What {@link step} asks the driver to do, in order: the outputs of the `@understudy/machine`
 * contract, with a peer named by its {@link PeerAddress}. `Send` is a packet to transmit,
 * `SetTimer` counts `afterMs` from the input's `nowMs`, `Emit` is an {@link Event} for the
 * user. The association never broadcasts.
 *
 * @since 0.1.0
 * @category models
 */
export type Output = Machine.Output<Packet.Packet, Event, PeerAddress>

/**
 * What {@link step} returns: the state it was given, updated in place (the contract's
 * in-place variant: the driver owns the state alone), and the outputs.
 *
 * @since 0.1.0
 * @category models
 */
export type Result = Machine.Result<State, Packet.Packet, Event, PeerAddress>
