/** What the nodes of a cluster say to each other on the intra-cluster link, and its codec. */
import { Codec } from "@understudy/transport"
import type * as Association from "../../Association.ts"
import type * as Cookie from "../../Cookie.ts"
import * as Packet from "../../Packet.ts"
import * as BinaryWire from "../binaryWire.ts"
import { decodePlain, encodePlain, PlainDecodeError } from "../plain.ts"
import { checkInput, isCount, isRecord, snapshotProblem } from "./shape.ts"

/**
 * An input as it travels: a received packet as its bytes.
 *
 * @since 0.1.0
 * @category messages
 */
export type WireInput =
  | {
      readonly _tag: "Receive"
      readonly host: string
      readonly udpPort: number
      readonly bytes: Uint8Array
      readonly nowMs: number
    }
  | { readonly _tag: "TimerFired"; readonly timer: string; readonly nowMs: number }
  | { readonly _tag: "Command"; readonly command: Association.Command; readonly nowMs: number }

/**
 * What the nodes of a cluster say to each other. Primary → secondary: `Snapshot`, `Inputs`,
 * `CumulativeAck` (the inexact policies: the highest Cumulative TSN Ack the primary is
 * about to send the peer), `Gone`, `Secrets`, `Aliases` (the endpoint's table of where to
 * answer peers that send from an unlisted loopback address, e.g. usrsctp's tsctp, which
 * lists no address); secondary → primary: `Ack` (every message up to `seq` is applied),
 * `Forward` (a packet that reached the secondary's address while the primary is alive) and
 * `Deposed` (the secondary took over: a primary that comes back, say from SIGSTOP, must
 * fall silent; after a planned handover, the peer moved to the new primary).
 *
 * A planned handover (`Cluster`'s `handOver`): the primary stops stepping what reaches it
 * and sends it on as `Forward`; `HandOver` tells the secondary to take over once it applied
 * every message up to `after` (the last the primary shipped before it stopped).
 *
 * Every primary → secondary message carries the `epoch` its sender serves (the fence's,
 * 0 without one): a secondary refuses those of an epoch older than it knows of (see
 * `ClusterRole`).
 *
 * @since 0.1.0
 * @category messages
 */
export type Message =
  | {
      readonly _tag: "Snapshot"
      readonly seq: number
      readonly epoch: number
      readonly association: number
      readonly snapshot: Association.Snapshot
    }
  | {
      readonly _tag: "Inputs"
      readonly seq: number
      readonly epoch: number
      readonly association: number
      readonly inputs: ReadonlyArray<WireInput>
    }
  | {
      readonly _tag: "CumulativeAck"
      readonly seq: number
      readonly epoch: number
      readonly association: number
      readonly tsn: number
    }
  | {
      readonly _tag: "Gone"
      readonly seq: number
      readonly epoch: number
      readonly association: number
    }
  | {
      readonly _tag: "Secrets"
      readonly seq: number
      readonly epoch: number
      readonly listener: ListenerSecrets
    }
  | { readonly _tag: "Ack"; readonly seq: number }
  | {
      readonly _tag: "Forward"
      readonly host: string
      readonly udpPort: number
      readonly bytes: Uint8Array
    }
  /**
   * With the sender's epoch (absent: 0): a node the fence moved past deposes nobody; and,
   * from a serving node, its id (absent from an older sender), the tie-break between two
   * serving nodes of one epoch (see `ClusterRole.outranks`).
   */
  | { readonly _tag: "Deposed"; readonly epoch?: number; readonly node?: string }
  | { readonly _tag: "HandOver"; readonly epoch: number; readonly after: number }
  | {
      readonly _tag: "Aliases"
      readonly seq: number
      readonly epoch: number
      readonly aliases: ReadonlyArray<{
        readonly from: { readonly host: string; readonly udpPort: number }
        readonly host: string
      }>
    }

/**
 * The listener's cookie secrets: the secondary accepts a COOKIE ECHO the primary's
 * INIT ACK asked for.
 *
 * @since 0.1.0
 * @category messages
 */
export type ListenerSecrets = Cookie.CookieSecretsSnapshot

/**
 * The input as it travels.
 *
 * @since 0.1.0
 * @category messages
 */
export const toWire = (input: Association.Input): WireInput =>
  input._tag === "Receive"
    ? {
        _tag: "Receive",
        host: input.from.host,
        udpPort: input.from.udpPort,
        // The datagram as received: the secondary decodes the very bytes the primary did.
        bytes: input.bytes ?? Packet.encode(input.message),
        nowMs: input.nowMs,
      }
    : input

/**
 * A travelled input back as an input of `Association.step`; `undefined` when the packet
 * bytes do not decode (they did on the primary: the message was damaged).
 *
 * @since 0.1.0
 * @category messages
 */
export const fromWire = (input: WireInput): Association.Input | undefined => {
  if (input._tag !== "Receive") return input
  // The primary verified this checksum, and the link (TCP, keyed by default) carries the
  // bytes intact: a second CRC32c would add nothing (it is no MAC against a forger either).
  const decoded = Packet.decode(input.bytes, { checksum: "verified" })
  if (decoded._tag === "Failure") return undefined
  return {
    _tag: "Receive",
    from: { host: input.host, udpPort: input.udpPort },
    message: decoded.success,
    nowMs: input.nowMs,
  }
}

/** The messages a primary sends, each stamped with its epoch. */
const fromPrimary: ReadonlySet<string> = new Set([
  "Snapshot",
  "Inputs",
  "CumulativeAck",
  "Gone",
  "Secrets",
  "Aliases",
  "HandOver",
])

/**
 * The epoch a primary → secondary message carries, or undefined for the secondary's own
 * messages (`Ack`, `Forward`, `Deposed`).
 *
 * @since 0.1.0
 * @category messages
 */
export const epochOf = (message: Message): number | undefined => {
  switch (message._tag) {
    case "Ack":
    case "Forward":
    case "Deposed":
      return undefined
    default:
      return message.epoch
  }
}

/** What is wrong with a decoded message, or undefined. */
const problem = (value: unknown): string | undefined => {
  if (!isRecord(value)) return "not an object"
  if (fromPrimary.has(value._tag as string) && !isCount(value.epoch)) {
    return `a ${String(value._tag)} needs an epoch`
  }
  const seqOk = isCount(value.seq)
  switch (value._tag) {
    case "Snapshot": {
      if (!seqOk || !isCount(value.association)) return "a Snapshot needs seq and association"
      const wrong = snapshotProblem(value.snapshot)
      return wrong === undefined ? undefined : `a damaged snapshot (${wrong})`
    }
    case "Inputs":
      return seqOk &&
        isCount(value.association) &&
        Array.isArray(value.inputs) &&
        value.inputs.every(checkInput)
        ? undefined
        : "an Inputs needs seq, association and well-formed inputs"
    case "CumulativeAck":
      return seqOk && isCount(value.association) && isCount(value.tsn) && value.tsn <= 0xffffffff
        ? undefined
        : "a CumulativeAck needs seq, association and a 32-bit tsn"
    case "Gone":
      return seqOk && isCount(value.association) ? undefined : "a Gone needs seq and association"
    case "Secrets":
      return seqOk && isRecord(value.listener) ? undefined : "a Secrets needs seq and listener"
    case "Aliases":
      return seqOk &&
        Array.isArray(value.aliases) &&
        value.aliases.every(
          (alias: unknown) =>
            isRecord(alias) &&
            typeof alias.host === "string" &&
            isRecord(alias.from) &&
            typeof alias.from.host === "string" &&
            isCount(alias.from.udpPort),
        )
        ? undefined
        : "an Aliases needs seq and aliases of { from: { host, udpPort }, host }"
    case "Ack":
      return seqOk ? undefined : "an Ack needs seq"
    case "Forward":
      return typeof value.host === "string" &&
        isCount(value.udpPort) &&
        value.bytes instanceof Uint8Array
        ? undefined
        : "a Forward needs host, udpPort and bytes"
    case "Deposed":
      return (value.epoch === undefined || isCount(value.epoch)) &&
        (value.node === undefined || typeof value.node === "string")
        ? undefined
        : "a Deposed's epoch is a count, its node a string"
    case "HandOver":
      return isCount(value.after) ? undefined : "a HandOver needs after (a seq)"
    default:
      return `unknown message ${String(value._tag)}`
  }
}

/**
 * The intra-cluster link's codec (binary fields stay binary). Malformed bytes are a
 * `CodecError`, so the transport closes the link with a `ProtocolError`.
 *
 * @since 0.1.0
 * @category messages
 */
export const codec: Codec.Codec<Message> = Codec.make<Message>({
  name: "multihome-replication",
  // The per-update `Inputs` and `Ack` in binary (see `internal/binaryWire.ts`).
  encode: (message) => BinaryWire.encode(message) ?? encodePlain(message),
  decode: (payload) => {
    const value = BinaryWire.isBinary(payload) ? BinaryWire.decode(payload) : decodePlain(payload)
    const wrong = problem(value)
    if (wrong !== undefined) throw new PlainDecodeError(wrong)
    return value as Message
  },
})
