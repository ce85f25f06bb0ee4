/**
 * The messages between a subordinate and its supervisor, on top of the transport's
 * framing and (per-user key) authentication. The subordinate speaks first with
 * `Register`; the supervisor answers `Welcome` or `Refused`.
 */
import { Codec } from "@understudy/transport"
import { Schema } from "effect"

/** Bumped on any incompatible change; instances of different versions refuse each other. */
export const protocolVersion = 1

const HoldingSchema = Schema.Struct({
  resource: Schema.String,
  limit: Schema.Int,
  permits: Schema.Int,
})

export const MemberSchema = Schema.Struct({
  instanceId: Schema.String,
  pid: Schema.Int,
  startedAtMs: Schema.Number,
  metadata: Schema.Record(Schema.String, Schema.String),
  role: Schema.Literals(["supervisor", "subordinate"]),
  joinedAtMs: Schema.Number,
  holdings: Schema.Array(HoldingSchema),
  waiting: Schema.Array(Schema.String),
})

export const Register = Schema.TaggedStruct("Register", {
  program: Schema.String,
  version: Schema.Int,
  instanceId: Schema.String,
  pid: Schema.Int,
  startedAtMs: Schema.Number,
  metadata: Schema.Record(Schema.String, Schema.String),
  holdings: Schema.Array(HoldingSchema),
})

export const Welcome = Schema.TaggedStruct("Welcome", {
  supervisorId: Schema.String,
  /** Re-registered permits that could not be kept (the resource had no room left). */
  lost: Schema.Array(HoldingSchema),
})

export const Refused = Schema.TaggedStruct("Refused", {
  reason: Schema.Literals([
    "DifferentProgram",
    "IncompatibleVersion",
    "DuplicateInstance",
    "InvalidRegistration",
  ]),
  program: Schema.String,
  version: Schema.Int,
})

/** The supervisor's registry, sent to every subordinate on each change: a new supervisor
 * knows from it whose permits to wait for. */
export const Members = Schema.TaggedStruct("Members", {
  members: Schema.Array(MemberSchema),
})

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

export const Message = Schema.Union([
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
])

export type Message = typeof Message.Type
export type Member = typeof MemberSchema.Type
export type Holding = typeof HoldingSchema.Type

export const codec: Codec.Codec<Message> = Codec.json(Message, "port-election")

/** Largest message: registries of many members stay well under it. */
export const maxFrameBytes = 1024 * 1024
