/**
 * The messages between a subordinate and its supervisor, on top of the transport's
 * framing and (per-user key) authentication. The subordinate speaks first with
 * `Register`; the supervisor answers `Welcome` or `Refused`.
 *
 * A standby connection (to the designated successor) starts the same way, ahead of time:
 * the `Register` is a pre-registration, kept unanswered until the successor has bound the
 * election address; then its `Welcome` is the takeover. The member answers it with a second
 * `Register`, whose holdings are the ones adopted: those of the pre-registration may be
 * stale by then.
 */
import { Codec } from "@understudy/transport"
import { Schema } from "effect"

/** Bumped on any incompatible change; instances of different versions refuse each other. */
export const protocolVersion = 3

const HoldingSchema = Schema.Struct({
  resource: Schema.String,
  limit: Schema.Int,
  permits: Schema.Int,
})

/**
 * The pid namespace a pid means something in (`/proc/self/ns/pid`'s link target): two
 * containers may share a network namespace, and so an election, but not their pids.
 */
const PidNamespace = Schema.optionalKey(Schema.String.check(Schema.isMaxLength(64)))

export const MemberSchema = Schema.Struct({
  instanceId: Schema.String,
  pid: Schema.Int,
  pidNamespace: PidNamespace,
  startedAtMs: Schema.Number,
  metadata: Schema.Record(Schema.String, Schema.String),
  role: Schema.Literals(["supervisor", "subordinate"]),
  joinedAtMs: Schema.Number,
  holdings: Schema.Array(HoldingSchema),
  waiting: Schema.Array(Schema.String),
})

/** The designated successor and where it listens for standby connections. */
export const SuccessorSchema = Schema.Struct({
  instanceId: Schema.String,
  address: Schema.String,
})

/**
 * The timing every instance of an election must share: a holder gives its permits up at a
 * deadline computed from its own `graceMs` and keep-alive, and a supervisor regrants them
 * after its own; if they differ, one permit can be held twice.
 */
export const SettingsSchema = Schema.Struct({
  graceMs: Schema.Number,
  keepAliveIntervalMs: Schema.Number,
  keepAliveTimeoutMs: Schema.Number,
})

export const Register = Schema.TaggedStruct("Register", {
  program: Schema.String,
  version: Schema.Int,
  instanceId: Schema.String,
  pid: Schema.Int,
  pidNamespace: PidNamespace,
  startedAtMs: Schema.Number,
  metadata: Schema.Record(Schema.String, Schema.String),
  holdings: Schema.Array(HoldingSchema),
  /**
   * The subordinates of the last registry this instance had from another supervisor, if
   * any: a supervisor that never saw a registry learns from it whose permits to wait for.
   */
  previous: Schema.optionalKey(Schema.Array(Schema.String)),
  /** This instance's timing; a supervisor refuses a member whose timing differs from its own. */
  settings: Schema.optionalKey(SettingsSchema),
})

export const Welcome = Schema.TaggedStruct("Welcome", {
  supervisorId: Schema.String,
  /** Re-registered permits that could not be kept (the resource had no room left). */
  lost: Schema.Array(HoldingSchema),
  /** Where to stand by, so that a newcomer need not wait for the next registry. */
  successor: Schema.optionalKey(SuccessorSchema),
})

export const Refused = Schema.TaggedStruct("Refused", {
  reason: Schema.Literals([
    "DifferentProgram",
    "IncompatibleVersion",
    "DuplicateInstance",
    "InvalidRegistration",
    "DifferentSettings",
  ]),
  program: Schema.String,
  version: Schema.Int,
  /** The supervisor's timing, which the refused member's must equal. */
  settings: Schema.optionalKey(SettingsSchema),
})

/** The supervisor's registry, sent to every subordinate on each change: a new supervisor
 * knows from it whose permits to wait for, and every subordinate where to stand by. */
export const Members = Schema.TaggedStruct("Members", {
  members: Schema.Array(MemberSchema),
  successor: Schema.optionalKey(SuccessorSchema),
})

/**
 * Supervisor to one subordinate: you are the successor. It opens a standby listener and
 * answers `StandbyAt`; the others connect to it ahead of time, so that a failover needs no
 * new connection or handshake when it wins the bind.
 */
export const Designate = Schema.TaggedStruct("Designate", {})

/** Successor to supervisor: the address of its standby listener. */
export const StandbyAt = Schema.TaggedStruct("StandbyAt", { address: Schema.String })

export const Request = Schema.TaggedStruct("Request", {
  id: Schema.String,
  operation: Schema.String,
  payload: Schema.Unknown,
})

export const Reply = Schema.TaggedStruct("Reply", {
  id: Schema.String,
  ok: Schema.Boolean,
  payload: Schema.Unknown,
})

export const Command = Schema.TaggedStruct("Command", {
  id: Schema.String,
  name: Schema.String,
  payload: Schema.Unknown,
})

export const CommandDone = Schema.TaggedStruct("CommandDone", {
  id: Schema.String,
  ok: Schema.Boolean,
  payload: Schema.Unknown,
})

export const Acquire = Schema.TaggedStruct("Acquire", {
  id: Schema.String,
  resource: Schema.String,
  limit: Schema.Int,
})

export const Granted = Schema.TaggedStruct("Granted", {
  id: Schema.String,
  resource: Schema.String,
})

export const AcquireRefused = Schema.TaggedStruct("AcquireRefused", {
  id: Schema.String,
  resource: Schema.String,
  reason: Schema.String,
})

export const Release = Schema.TaggedStruct("Release", { resource: Schema.String })

export const CancelAcquire = Schema.TaggedStruct("CancelAcquire", { id: Schema.String })

/** A one-off query of the registry, by a client that does not join (`status` displays). */
export const Inspect = Schema.TaggedStruct("Inspect", {
  program: Schema.String,
  version: Schema.Int,
})

/** A supervisor leaving on purpose: subordinates elect again at once. */
export const Resigning = Schema.TaggedStruct("Resigning", {})

/** Every message's schema, by its tag. */
const byTag = {
  Register,
  Welcome,
  Refused,
  Members,
  Request,
  Reply,
  Command,
  CommandDone,
  Acquire,
  Granted,
  AcquireRefused,
  Release,
  CancelAcquire,
  Resigning,
  Inspect,
  Designate,
  StandbyAt,
} as const

export type Message = (typeof byTag)[keyof typeof byTag]["Type"]
export type Member = typeof MemberSchema.Type
export type Holding = typeof HoldingSchema.Type
export type Successor = typeof SuccessorSchema.Type

// Each key is its schema's tag (a schema filed under another tag would be a type error).
byTag satisfies {
  readonly [Tag in Message["_tag"]]: Schema.Codec<Extract<Message, { _tag: Tag }>, unknown>
}

interface Coder {
  readonly encode: (message: Message) => unknown
  readonly decode: (json: unknown) => Message
}

/**
 * The JSON form of each message, built on first use. A message is encoded and decoded with
 * the schema its tag names rather than with the whole union: the same validation, without
 * trying the union's members in turn, and a failover's first messages do not pay for
 * compiling the parsers of messages they never see.
 */
const coders = new Map<string, Coder>()

const coderOf = (tag: unknown): Coder | undefined => {
  if (typeof tag !== "string" || !Object.hasOwn(byTag, tag)) return undefined
  const known = coders.get(tag)
  if (known !== undefined) return known
  const schema = Schema.toCodecJson(byTag[tag as Message["_tag"]] as Schema.Codec<Message, unknown>)
  const coder: Coder = {
    encode: Schema.encodeUnknownSync(schema),
    decode: Schema.decodeUnknownSync(schema),
  }
  coders.set(tag, coder)
  return coder
}

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder("utf-8", { fatal: true })

/**
 * Each message's bytes, kept while the message lives. Messages are never mutated after
 * they are built, so the same object always has the same bytes: the supervisor's one
 * registry object sent to every member is encoded once (a broadcast stays linear in the
 * size of the group), and `preEncode` fills it ahead of sending.
 */
const encoded = new WeakMap<Message, Uint8Array>()

const encodeOnce = (message: Message): Uint8Array => {
  const known = encoded.get(message)
  if (known !== undefined) return known
  const coder = coderOf(message._tag)
  if (coder === undefined) throw new Error(`no message is tagged ${String(message._tag)}`)
  const bytes = textEncoder.encode(JSON.stringify(coder.encode(message)))
  encoded.set(message, bytes)
  return bytes
}

/**
 * Encodes `message` now, so that sending it later costs no encoding: for a message that may
 * have to go out when the CPU is scarce. Throws on a message no schema accepts.
 */
export const preEncode = (message: Message): void => {
  encodeOnce(message)
}

export const codec: Codec.Codec<Message> = Codec.make({
  name: "port-election",
  encode: encodeOnce,
  decode: (payload) => {
    const json: unknown = JSON.parse(textDecoder.decode(payload))
    const tag =
      typeof json === "object" && json !== null ? (json as { _tag?: unknown })._tag : undefined
    const coder = coderOf(tag)
    if (coder === undefined)
      throw new Error(`no message is tagged ${JSON.stringify(tag) ?? "undefined"}`)
    return coder.decode(json)
  },
})

/** Largest message: registries of many members stay well under it. */
export const frameBytesMax = 1024 * 1024
