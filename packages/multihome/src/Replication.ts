/**
 * Replication of associations from a cluster's primary node to its secondary (seed 001,
 * claims 1, 5–7, 13–18, 22–23): the policies, the messages on the intra-cluster link, and
 * the two pure halves — {@link Shipper} on the primary decides what to send after each
 * update of an association, {@link Replicas} on the secondary keeps the copies.
 *
 * Two ways of keeping a copy, both exact because `Association` is deterministic:
 * - `Inputs`: every input the primary stepped (received packet bytes, timer firings, user
 *   commands, with their `nowMs`); the secondary steps its copy with the same inputs and
 *   discards the outputs, so it holds the very state the primary holds.
 * - `Snapshot`: the whole TCB (`Association.snapshot`), tags, TSNs, acknowledgements,
 *   stream sequence numbers, paths and RTO, the unacknowledged outbound queue, the
 *   inbound reassembly queue and the cookie secrets.
 *
 * Policies:
 * - `every-update`: a snapshot when an association is created, then its inputs after every
 *   update; the primary performs an update's outputs (its SACKs, its DATA) only once the
 *   secondary acknowledged it, so whatever the peer saw acknowledged or sent, the secondary
 *   has: nothing is lost whenever the primary dies — while a secondary is linked. With the
 *   link down (the secondary died or hung: its keep-alive timed out) the primary serves on
 *   alone and says so (`Cluster`'s `Unprotected` event, `status.unprotected`, the
 *   `understudy_multihome_unprotected` gauge) until a secondary links up again.
 * - `interval`: a snapshot of every association that changed, every `every` (a
 *   `Duration.Input`, decoded by `Cluster.make`).
 * - `on-event`: a snapshot when an update raises one of the named events.
 * - `on-impending-failure`: one snapshot of everything when the node is told it is about to
 *   fail (SIGTERM, a failing health check), and nothing before.
 * - `state-node`: the snapshot is written to the `Store` (a third node) after every update,
 *   outputs waiting for the write; the secondary reads it from there when it takes over.
 *
 * A copy that may be behind (`interval`, `on-event`) is taken over with `resync` and the
 * {@link reserve} (see `Association.takeOver`). Under those policies the primary still
 * makes one number known before it leaves: the Cumulative TSN Ack of each SACK that
 * acknowledges more than the last (`CumulativeAck`, a few bytes, the SACK waiting for the
 * secondary's ack). The peer frees what a SACK acknowledged and never resends it; without
 * that number a replica could only guess where the peer's retransmissions resume, and a
 * wrong guess loses a message the primary never received.
 *
 * @since 0.1.0
 */
import { Codec } from "@understudy/transport"
import { Duration, Schema } from "effect"
import * as Association from "./Association.ts"
import * as Chunk from "./Chunk.ts"
import type * as Cookie from "./Cookie.ts"
import * as BinaryWire from "./internal/binaryWire.ts"
import { decodePlain, encodePlain, PlainDecodeError } from "./internal/plain.ts"
import * as Packet from "./Packet.ts"
import { gt32 } from "./Serial.ts"

// ---------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------

/**
 * How the primary keeps the secondary's copy.
 *
 * @since 0.1.0
 * @category policies
 */
export type Policy =
  | { readonly _tag: "EveryUpdate" }
  /** `every`: how often (`"100 millis"`, a number of milliseconds, a `Duration`). */
  | { readonly _tag: "Interval"; readonly every: Duration.Input }
  | { readonly _tag: "OnEvent"; readonly events: ReadonlyArray<Association.Event["_tag"]> }
  | { readonly _tag: "OnImpendingFailure" }
  | { readonly _tag: "StateNode" }

/** Events that change what the peer and we agree on, the default of `on-event`. */
const defaultEvents: ReadonlyArray<Association.Event["_tag"]> = [
  "CommUp",
  "Message",
  "PathChange",
  "Restart",
]

const eventTags: ReadonlyArray<Association.Event["_tag"]> = [
  "CommUp",
  "Message",
  "PathChange",
  "SendFailed",
  "CommLost",
  "PeerError",
  "Restart",
  "ShutdownComplete",
  "Dropped",
  "Closed",
]

/**
 * A policy name is not known or its parameter is wrong.
 *
 * @since 0.1.0
 * @category errors
 */
export class PolicyError extends Schema.TaggedError<PolicyError>()("PolicyError", {
  text: Schema.String,
  detail: Schema.String,
}) {}

/**
 * Reads a policy from its command-line form: `every-update`, `interval` (100 ms) or
 * `interval:MS`, `on-event` or `on-event:CommUp,Message`, `on-impending-failure`,
 * `state-node`.
 *
 * @since 0.1.0
 * @category policies
 */
export const parsePolicy = (text: string): Policy | PolicyError => {
  const [name, parameter] = text.split(":", 2) as [string, string | undefined]
  switch (name) {
    case "every-update":
      return parameter === undefined ? { _tag: "EveryUpdate" } : bad(text, "takes no parameter")
    case "interval": {
      const everyMs = parameter === undefined ? 100 : Number(parameter)
      return Number.isSafeInteger(everyMs) && everyMs >= 1 && everyMs <= 3_600_000
        ? { _tag: "Interval", every: everyMs }
        : bad(text, "the interval is a whole number of milliseconds, 1 to 3600000")
    }
    case "on-event": {
      if (parameter === undefined) return { _tag: "OnEvent", events: defaultEvents }
      const events = parameter.split(",")
      const unknown = events.filter(
        (event) => !(eventTags as ReadonlyArray<string>).includes(event),
      )
      return unknown.length === 0 && events.length > 0
        ? { _tag: "OnEvent", events: events as Array<Association.Event["_tag"]> }
        : bad(text, `unknown events ${unknown.join(", ")}; known: ${eventTags.join(", ")}`)
    }
    case "on-impending-failure":
      return parameter === undefined
        ? { _tag: "OnImpendingFailure" }
        : bad(text, "takes no parameter")
    case "state-node":
      return parameter === undefined ? { _tag: "StateNode" } : bad(text, "takes no parameter")
    default:
      return bad(
        text,
        "known policies: every-update, interval[:MS], on-event[:EVENTS], on-impending-failure, state-node",
      )
  }
}

const bad = (text: string, detail: string) => new PolicyError({ text, detail })

/**
 * The command-line form of a policy ({@link parsePolicy} reads it back).
 *
 * @since 0.1.0
 * @category policies
 */
export const formatPolicy = (policy: Policy): string => {
  switch (policy._tag) {
    case "EveryUpdate":
      return "every-update"
    case "Interval": {
      // A policy read by `parsePolicy` reads back the same; one written in code may hold
      // a duration the command line can not say (then its whole milliseconds, or nothing).
      const every = Duration.fromInput(policy.every)
      return every._tag === "Some"
        ? `interval:${Math.round(Duration.toMillis(every.value))}`
        : "interval"
    }
    case "OnEvent":
      return `on-event:${policy.events.join(",")}`
    case "OnImpendingFailure":
      return "on-impending-failure"
    case "StateNode":
      return "state-node"
  }
}

/**
 * Whether a copy kept under `policy` is the primary's state when the secondary takes over
 * (so the takeover needs no resynchronisation). `on-impending-failure` counts: the primary
 * falls silent after its one synchronisation, so that copy stays exact (and without a
 * warning there is no copy at all).
 *
 * @since 0.1.0
 * @category policies
 */
export const isExact = (policy: Policy): boolean =>
  policy._tag === "EveryUpdate" ||
  policy._tag === "StateNode" ||
  policy._tag === "OnImpendingFailure"

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

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

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)
const isCount = (value: unknown): value is number =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0
const isTime = (value: unknown): value is number =>
  typeof value === "number" && Number.isFinite(value)

const checkCommand = (value: unknown): boolean => {
  if (!isRecord(value)) return false
  switch (value._tag) {
    case "Send":
      return (
        isCount(value.stream) &&
        isCount(value.ppid) &&
        value.data instanceof Uint8Array &&
        typeof value.unordered === "boolean"
      )
    case "Shutdown":
      return true
    case "Abort":
      return value.reason === undefined || typeof value.reason === "string"
    case "SetPrimary":
    case "RequestHeartbeat":
      return typeof value.host === "string"
    default:
      return false
  }
}

const checkInput = (value: unknown): boolean => {
  if (!isRecord(value) || !isTime(value.nowMs)) return false
  switch (value._tag) {
    case "Receive":
      return (
        typeof value.host === "string" &&
        isCount(value.udpPort) &&
        value.bytes instanceof Uint8Array
      )
    case "TimerFired":
      return typeof value.timer === "string"
    case "Command":
      return checkCommand(value.command)
    default:
      return false
  }
}

// The shape of `Association.Snapshot`, checked before a copy is restored from one: a
// damaged or partial snapshot restores to a TCB that throws later, in the middle of
// `step`, where the replica can no longer say which message was wrong.

const isNumber = (value: unknown): value is number =>
  typeof value === "number" && Number.isFinite(value)
const isBoolean = (value: unknown): value is boolean => typeof value === "boolean"
const isBytes = (value: unknown): value is Uint8Array => value instanceof Uint8Array
const isString = (value: unknown): value is string => typeof value === "string"
const fieldsAre = (
  value: unknown,
  check: (field: unknown) => boolean,
  names: ReadonlyArray<string>,
): boolean => isRecord(value) && names.every((name) => check(value[name]))
const arrayOf = (value: unknown, check: (item: unknown) => boolean): boolean =>
  Array.isArray(value) && value.every(check)
const orUndefined =
  (check: (value: unknown) => boolean) =>
  (value: unknown): boolean =>
    value === undefined || check(value)

const stateNames: ReadonlyArray<string> = [
  "Closed",
  "CookieWait",
  "CookieEchoed",
  "Established",
  "ShutdownPending",
  "ShutdownSent",
  "ShutdownReceived",
  "ShutdownAckSent",
]

const checkPath = (value: unknown): boolean =>
  isRecord(value) &&
  isString(value.host) &&
  fieldsAre(value, isNumber, [
    "udpPort",
    "errorCount",
    "flightBytes",
    "heartbeatNonce",
    "lastSendMs",
    "rttTsn",
    "rttSentMs",
  ]) &&
  fieldsAre(value, isBoolean, ["confirmed", "active", "heartbeatOutstanding", "rttPending"]) &&
  isRecord(value.rto) &&
  isNumber(value.rto.rto) &&
  orUndefined(isNumber)(value.rto.srtt) &&
  orUndefined(isNumber)(value.rto.rttvar) &&
  fieldsAre(value.congestion, isNumber, ["cwnd", "ssthresh", "partialBytesAcked"])

const fragmentFields = ["stream", "ssn", "ppid"]
const fragmentFlags = ["unordered", "beginning", "ending"]
const checkQueued = (value: unknown): boolean =>
  fieldsAre(value, isNumber, fragmentFields) &&
  fieldsAre(value, isBoolean, fragmentFlags) &&
  isRecord(value) &&
  isBytes(value.data)
const checkOutstanding = (value: unknown): boolean =>
  checkQueued(value) &&
  fieldsAre(value, isNumber, ["tsn", "path", "transmissions", "missIndications"]) &&
  fieldsAre(value, isBoolean, ["acked", "inFlight", "retransmit", "fast", "fastDone"])
const checkTracker = (value: unknown): boolean =>
  isRecord(value) &&
  isNumber(value.cumulative) &&
  ["starts", "ends", "duplicates"].every((name) => arrayOf(value[name], isNumber)) &&
  (value.starts as Array<number>).length === (value.ends as Array<number>).length
const checkReassembly = (value: unknown): boolean =>
  isRecord(value) &&
  isCount(value.inboundStreams) &&
  value.inboundStreams <= 0xffff &&
  arrayOf(value.nextSsn, isCount) &&
  (value.nextSsn as Array<number>).every(
    (n, index) => index % 2 === 1 || n < (value.inboundStreams as number),
  ) &&
  arrayOf(
    value.fragments,
    (fragment) => checkQueued(fragment) && isNumber((fragment as Record<string, unknown>).tsn),
  )
const checkInit = (value: unknown): boolean =>
  isRecord(value) &&
  value._tag === "Init" &&
  fieldsAre(value, isNumber, [
    "initiateTag",
    "advertisedReceiverWindowCredit",
    "outboundStreams",
    "inboundStreams",
    "initialTsn",
  ]) &&
  arrayOf(value.parameters, (parameter) => isRecord(parameter) && isString(parameter._tag))
const checkSecrets = (value: unknown): boolean =>
  isRecord(value) &&
  isBytes(value.current) &&
  orUndefined(isBytes)(value.previous) &&
  isNumber(value.rotatedAtMs)
const checkRng = (value: unknown): boolean =>
  fieldsAre(value, (n) => isCount(n) && (n as number) <= 0xffffffff, ["a", "b", "c", "d"])

const checkAuth = (value: unknown): boolean =>
  isRecord(value) &&
  isBytes(value.key) &&
  isNumber(value.sendHmacId) &&
  isBytes(value.peerChunks) &&
  isBytes(value.localChunks) &&
  isBoolean(value.asconf)
/** An ASCONF (ACK) the TCB keeps: one the codec writes and reads back as the same kind. */
const checkAsconfChunk =
  (tag: "Asconf" | "AsconfAck") =>
  (value: unknown): boolean => {
    if (!isRecord(value) || value._tag !== tag || !isNumber(value.serialNumber)) return false
    try {
      const bytes = Chunk.encodeChunk(value as unknown as Chunk.Chunk)
      const length = (bytes[2]! << 8) | bytes[3]!
      const decoded = Chunk.decodeChunk(bytes, bytes[0]!, bytes[1]!, 4, length)
      return !Chunk.isFault(decoded) && decoded._tag === tag
    } catch {
      return false
    }
  }
const checkAsconf = (value: unknown): boolean =>
  isRecord(value) &&
  isNumber(value.nextSerial) &&
  isNumber(value.peerSerial) &&
  isString(value.pendingHost) &&
  orUndefined(isString)(value.nextPrimary) &&
  orUndefined(checkAsconfChunk("Asconf"))(value.pending) &&
  orUndefined(checkAsconfChunk("AsconfAck"))(value.lastAck)

/**
 * What is wrong with a snapshot, or undefined: every field of `Association.Snapshot` with
 * its type, and the path indexes within the paths.
 *
 * @since 0.1.0
 * @category messages
 */
export const snapshotProblem = (value: unknown): string | undefined => {
  if (!isRecord(value)) return "the snapshot is not an object"
  if (value.version !== 1) return "unknown snapshot version"
  if (!checkRng(value.rng)) return "rng"
  if (!isString(value.name) || !stateNames.includes(value.name)) return "name"
  const numbers = [
    "localPort",
    "peerPort",
    "myTag",
    "peerTag",
    "myInitialTsn",
    "peerInitialTsn",
    "outboundStreams",
    "inboundStreams",
    "primary",
    "retransmitPath",
    "peerRwnd",
    "nextTsn",
    "lastCumAck",
    "flightBytes",
    "retransmitCount",
    "fastRecoveryExit",
    "queuedBytes",
    "bufferedBytes",
    "packetsSinceSack",
    "lastDataPath",
    "errorCount",
    "initRetransmits",
  ]
  const wrongNumber = numbers.find((name) => !isNumber(value[name]))
  if (wrongNumber !== undefined) return wrongNumber
  const wrongFlag = ["fastRecovery", "sackNow", "resynchronizing"].find(
    (name) => !isBoolean(value[name]),
  )
  if (wrongFlag !== undefined) return wrongFlag
  if (!arrayOf(value.paths, checkPath)) return "paths"
  const paths = (value.paths as Array<unknown>).length
  for (const name of ["primary", "retransmitPath"]) {
    const index = value[name] as number
    if (!isCount(index) || (paths > 0 && index >= paths)) return name
  }
  if (!arrayOf(value.outstanding, checkOutstanding)) return "outstanding"
  if (!arrayOf(value.queue, checkQueued)) return "queue"
  if (!arrayOf(value.ssnOut, isNumber)) return "ssnOut"
  if (!orUndefined(checkTracker)(value.tracker)) return "tracker"
  if (!orUndefined(checkReassembly)(value.reassembly)) return "reassembly"
  if (!orUndefined(checkAuth)(value.auth)) return "auth"
  if (!orUndefined(checkAsconf)(value.asconf)) return "asconf"
  // Past COOKIE-WAIT the TCB holds the peer's TSNs and the reassembly queue (§5.1).
  if (value.name !== "CookieWait" && value.name !== "Closed") {
    if (value.tracker === undefined) return "tracker"
    if (value.reassembly === undefined) return "reassembly"
  }
  if (!orUndefined(checkInit)(value.init)) return "init"
  if (!orUndefined(isBytes)(value.cookie)) return "cookie"
  if (!checkSecrets(value.cookieSecrets)) return "cookieSecrets"
  if (!orUndefined(isNumber)(value.secretsRotatedAt)) return "secretsRotatedAt"
  const timer = (entry: unknown) =>
    Array.isArray(entry) && entry.length === 2 && isString(entry[0]) && isNumber(entry[1])
  if (!arrayOf(value.timers, timer)) return "timers"
  return undefined
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

// ---------------------------------------------------------------------------------------
// The primary's half
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// The secondary's half
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// The state-node policy's store
// ---------------------------------------------------------------------------------------

/**
 * A snapshot as a primary wrote it to the store (state-node), under its key.
 *
 * @since 0.1.0
 * @category state-node
 */
export interface Stored {
  readonly key: string
  readonly message: Extract<Message, { readonly _tag: "Snapshot" }>
}

/**
 * Which stored snapshots a takeover adopts (state-node). Each primary writes an association
 * under its own epoch's key, so a primary paused past its lease whose write lands late never
 * overwrites the newer primary's snapshot: per association the newest epoch wins, ties by
 * sequence number. `floor` is the epoch of the last primary that completed a takeover (it
 * rewrote every association it adopted at its epoch): a snapshot of an older epoch was
 * written late by a primary already fenced out, or is of an association that primary closed,
 * and is refused.
 *
 * @since 0.1.0
 * @category state-node
 */
export const chooseStored = (
  stored: ReadonlyArray<Stored>,
  floor: number,
): { readonly adopt: ReadonlyArray<Stored>; readonly stale: ReadonlyArray<Stored> } => {
  const newest = new Map<number, Stored>()
  const stale: Array<Stored> = []
  for (const entry of stored) {
    if (entry.message.epoch < floor) {
      stale.push(entry)
      continue
    }
    const best = newest.get(entry.message.association)
    const newer =
      best === undefined ||
      entry.message.epoch > best.message.epoch ||
      (entry.message.epoch === best.message.epoch && entry.message.seq > best.message.seq)
    if (!newer) {
      stale.push(entry)
      continue
    }
    if (best !== undefined) stale.push(best)
    newest.set(entry.message.association, entry)
  }
  return { adopt: [...newest.values()], stale }
}
