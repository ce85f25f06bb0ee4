/**
 * The session backend's wire messages, one per transport frame. `Data` and `Ack` are the
 * hot path and binary (a tag byte, a sequence number as a float64 — exact for safe
 * integers — and the payload); the handshake messages are JSON checked by a `Schema`.
 * Decoding is total: bad bytes give a `CodecError` and the one connection is closed.
 *
 * @since 0.1.0
 */
import { Codec } from "@understudy/transport"
import { Schema } from "effect"
import { RefusalReason } from "./CheckpointError.ts"

const Seq = Schema.Number.check(
  Schema.isInt(),
  Schema.isBetween({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
)
const Name = Schema.String.check(Schema.isPattern(/^[a-z][a-z0-9-]{0,31}$/))
const SessionId = Schema.String.check(Schema.isPattern(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/))
const Bytes = Schema.Uint8ArrayFromBase64
const Channels = Schema.Array(Schema.Struct({ name: Name, initialSeq: Seq })).check(
  Schema.isMaxLength(16),
)
const Acks = Schema.Record(Name, Seq)
/**
 * The sender's window (bytes in flight unacknowledged): a receiver acknowledges at least
 * every half window, or a sender with a window below the receiver's interval waits forever.
 */
const Window = Schema.optionalKey(
  Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 1, maximum: 2 ** 40 })),
)

/** Client: start a new session with these channels (and the client's initial sequence numbers). @since 0.1.0 @category messages */
export const Open = Schema.TaggedStruct("Open", { protocol: Schema.String, channels: Channels })
/** A UDP endpoint or multicast group, `HOST:PORT` (IPv4). */
const UdpEndpoint = Schema.String.check(
  Schema.isPattern(/^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}:\d{1,5}$/),
)
/** The server's UDP endpoint, for a bundle's UDP data flows. */
const Udp = Schema.optionalKey(UdpEndpoint)

const ObjectName = Schema.String.check(Schema.isMaxLength(1024))

/**
 * Server: the session is open; the secret proves resumes later. `object`: the object an
 * object transfer sends (the checkpoint's application information: its id and size), so
 * the client knows how much is coming.
 *
 * @since 0.1.0
 * @category messages
 */
export const Opened = Schema.TaggedStruct("Opened", {
  sessionId: SessionId,
  secret: Bytes,
  channels: Channels,
  window: Window,
  udp: Udp,
  object: Schema.optionalKey(Schema.Struct({ id: ObjectName, size: Seq })),
})
/** Client: take my session over; I acknowledge `acks`. @since 0.1.0 @category messages */
export const Resume = Schema.TaggedStruct("Resume", {
  sessionId: SessionId,
  counter: Seq,
  acks: Acks,
  proof: Bytes,
})
/** Server: resumed; send again from `receiveNext` on each channel. @since 0.1.0 @category messages */
export const Resumed = Schema.TaggedStruct("Resumed", {
  receiveNext: Acks,
  window: Window,
  udp: Udp,
})
/** Client: this transport connection carries `channel` of the session. @since 0.1.0 @category messages */
export const Attach = Schema.TaggedStruct("Attach", {
  sessionId: SessionId,
  channel: Name,
  counter: Seq,
  proof: Bytes,
})
/** Server: the channel is attached. @since 0.1.0 @category messages */
export const Attached = Schema.TaggedStruct("Attached", { window: Window })
/** Server: refused, with why. @since 0.1.0 @category messages */
export const Refused = Schema.TaggedStruct("Refused", {
  reason: RefusalReason,
  detail: Schema.String,
})
/** Server: planned hand-off; reconnect (to `to` first, when given). @since 0.1.0 @category messages */
export const Handoff = Schema.TaggedStruct("Handoff", { to: Schema.optionalKey(Schema.String) })
/** Client: the session is over; forget it. @since 0.1.0 @category messages */
export const Finish = Schema.TaggedStruct("Finish", {})

/**
 * Client, on a bundle's control connection: command number `seq` (from the control channel's
 * initial sequence number, one per command): `LIST` the objects, `GET` one (a new data
 * connection), `PAUSE` or `RESUME` a transfer (by its channel).
 *
 * @since 0.1.0
 * @category messages
 */
export const Command = Schema.TaggedStruct("Command", {
  seq: Seq,
  op: Schema.Literals(["LIST", "GET", "PAUSE", "RESUME"]),
  name: Schema.optionalKey(ObjectName),
  transfer: Schema.optionalKey(Name),
  /** `GET`: the transfer starts paused (nothing is sent before a `RESUME`). */
  paused: Schema.optionalKey(Schema.Boolean),
  /** `GET`: the data flow's transport (default TCP). */
  transport: Schema.optionalKey(Schema.Literals(["tcp", "udp", "udp-multicast"])),
})
/** @since 0.1.0 @category messages */
export type Command = typeof Command.Type

/** The objects a `LIST` names, with their sizes (at most this many). @since 0.1.0 @category limits */
export const listMax = 1_000

/**
 * Server: the outcome of command `seq`, sent only once its effect is checkpointed.
 *
 * @since 0.1.0
 * @category messages
 */
export const Reply = Schema.TaggedStruct("Reply", {
  seq: Seq,
  ok: Schema.Boolean,
  detail: Schema.optionalKey(Schema.String.check(Schema.isMaxLength(1024))),
  objects: Schema.optionalKey(
    Schema.Array(Schema.Struct({ name: ObjectName, size: Seq })).check(Schema.isMaxLength(listMax)),
  ),
  transfer: Schema.optionalKey(
    Schema.Struct({
      channel: Name,
      name: ObjectName,
      size: Seq,
      initialSeq: Seq,
      transport: Schema.optionalKey(Schema.Literals(["tcp", "udp", "udp-multicast"])),
      /** `udp-multicast`: the group the data goes to. */
      group: Schema.optionalKey(UdpEndpoint),
    }),
  ),
})
/** @since 0.1.0 @category messages */
export type Reply = typeof Reply.Type

/**
 * How often a receiver acknowledges: its own interval, or half the sender's window when
 * that is smaller (so the window never fills with bytes the receiver holds unacknowledged).
 *
 * @since 0.1.0
 * @category models
 */
export const ackInterval = (ackEveryBytes: number, window: number | undefined): number =>
  window === undefined
    ? ackEveryBytes
    : Math.max(1, Math.min(ackEveryBytes, Math.floor(window / 2)))

/** @since 0.1.0 @category messages */
export const Control = Schema.Union([
  Open,
  Opened,
  Resume,
  Resumed,
  Attach,
  Attached,
  Refused,
  Handoff,
  Finish,
  Command,
  Reply,
])
/** @since 0.1.0 @category messages */
export type Control = typeof Control.Type

/** Bytes of one channel from `seq`. @since 0.1.0 @category messages */
export interface Data {
  readonly _tag: "Data"
  readonly seq: number
  readonly bytes: Uint8Array
}

/** Every byte below `ack` was received. @since 0.1.0 @category messages */
export interface Ack {
  readonly _tag: "Ack"
  readonly ack: number
}

/** @since 0.1.0 @category messages */
export type Message = Data | Ack | Control

const tagData = 1
const tagAck = 2
const tagControl = 3
const headerBytes = 9

const controlCodec = Codec.json(Control, "checkpoint-control")

const isSeq = (value: number) => Number.isSafeInteger(value) && value >= 0

/**
 * The codec of every session frame.
 *
 * @since 0.1.0
 * @category codecs
 */
export const codec: Codec.Codec<Message> = Codec.make({
  name: "checkpoint-session",
  encode: (message) => {
    if (message._tag === "Data" || message._tag === "Ack") {
      const body = message._tag === "Data" ? message.bytes : undefined
      const frame = new Uint8Array(headerBytes + (body?.length ?? 0))
      const view = new DataView(frame.buffer)
      frame[0] = message._tag === "Data" ? tagData : tagAck
      view.setFloat64(1, message._tag === "Data" ? message.seq : message.ack)
      if (body !== undefined) frame.set(body, headerBytes)
      return frame
    }
    const json = controlCodec.encode(message)
    if (json._tag === "Failure") throw new Error(json.failure.detail)
    const frame = new Uint8Array(1 + json.success.length)
    frame[0] = tagControl
    frame.set(json.success, 1)
    return frame
  },
  decode: (payload) => {
    const tag = payload[0]
    if (tag === tagData || tag === tagAck) {
      if (payload.length < headerBytes) throw new Error("truncated data or ack frame")
      const value = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getFloat64(
        1,
      )
      if (!isSeq(value)) throw new Error(`bad sequence number ${value}`)
      if (tag === tagAck) {
        if (payload.length !== headerBytes) throw new Error("ack frame with a body")
        return { _tag: "Ack", ack: value }
      }
      return { _tag: "Data", seq: value, bytes: payload.subarray(headerBytes) }
    }
    if (tag === tagControl) {
      const decoded = controlCodec.decode(payload.subarray(1))
      if (decoded._tag === "Failure") throw new Error(decoded.failure.detail)
      return decoded.success
    }
    throw new Error(`unknown frame tag ${tag}`)
  },
})
