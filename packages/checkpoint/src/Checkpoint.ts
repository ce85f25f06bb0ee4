/**
 * The checkpoint: the shared state a takeover server needs to recreate a bundle of related
 * connections exactly where the first server left them. It holds at least the first server's
 * id, the time, both addresses and ports, the application protocol, both initial and both
 * current sequence numbers, and application information such as the sequence number of the
 * first byte of the object being sent and the object's id. Every layer of the stack adds its own block (`layers`), through a
 * `Contributor`.
 *
 * A checkpoint says which backend made it (`backend`): `session` (the portable session
 * layer of this package, the client uses our client library) or `tcp-repair` (the Linux
 * kernel's TCP connection itself, for unmodified clients). A server refuses to restore a
 * backend it does not run.
 *
 * Sequence numbers are linear byte positions, safe integers that never wrap: the session
 * backend starts each direction at a random value below 2^48 and may carry 2^52 bytes. A
 * backend whose wire numbers wrap (TCP's 32 bits) stores them unwrapped here.
 *
 * @since 0.1.0
 */
import { Result, Schema } from "effect"
import { CheckpointDecodeError, CheckpointTooLarge, type RefusalReason } from "./CheckpointError.ts"

/** Bounds every checkpoint obeys. @since 0.1.0 @category limits */
export const limits = {
  /** Encoded size; below the store's 1 MiB value limit. */
  checkpointBytesMax: 768 * 1024,
  connectionsPerBundleMax: 16,
  layersMax: 32,
  /** Bytes of unacknowledged window one connection may hold in a checkpoint. */
  windowBytesMax: 256 * 1024,
  /** The largest sequence number: 2^53 - 1. */
  seqMax: Number.MAX_SAFE_INTEGER,
} as const

/** Which backend made a checkpoint. @since 0.1.0 @category models */
export const Backend = Schema.Literals(["session", "tcp-repair"])
/** @since 0.1.0 @category models */
export type Backend = typeof Backend.Type

/** A byte position in one direction of a connection. @since 0.1.0 @category models */
export const Seq = Schema.Number.check(
  Schema.isInt(),
  Schema.isBetween({ minimum: 0, maximum: limits.seqMax }),
)

const Port = Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 0, maximum: 65_535 }))

/** One end of a connection. @since 0.1.0 @category models */
export const Endpoint = Schema.Struct({ host: Schema.String, port: Port })
/** @since 0.1.0 @category models */
export type Endpoint = typeof Endpoint.Type

/** What carries a connection of a bundle. @since 0.1.0 @category models */
export const ConnectionTransport = Schema.Literals(["tcp", "udp", "udp-multicast"])
/** @since 0.1.0 @category models */
export type ConnectionTransport = typeof ConnectionTransport.Type

/** What a connection is for within its bundle. @since 0.1.0 @category models */
export const ConnectionRole = Schema.Literals(["control", "data"])
/** @since 0.1.0 @category models */
export type ConnectionRole = typeof ConnectionRole.Type

/**
 * How the bytes the client has not acknowledged are recovered at a takeover: the honest
 * limit of this package, stated per connection.
 * - `window`: the checkpoint holds them (`window`); the session layer writes a checkpoint
 *   before it sends bytes past the last one (write-ahead), so a sender never has in flight
 *   what no checkpoint holds.
 * - `source`: the object source regenerates them (an object server re-reads the file at
 *   `object.firstByteSeq + offset`); the checkpoint holds only positions.
 *
 * @since 0.1.0
 * @category models
 */
export const Coverage = Schema.Literals(["window", "source"])
/** @since 0.1.0 @category models */
export type Coverage = typeof Coverage.Type

/** The object a data connection is sending. @since 0.1.0 @category models */
export const ObjectPosition = Schema.Struct({
  /** The application's name for the object. */
  id: Schema.String,
  /** Sequence number of the object's first byte on this connection. */
  firstByteSeq: Seq,
  /** The object's size in bytes; its last byte has `firstByteSeq + size - 1`. */
  size: Seq,
})
/** @since 0.1.0 @category models */
export type ObjectPosition = typeof ObjectPosition.Type

/**
 * One connection of a bundle, seen from the server ("source") towards its client
 * ("destination").
 *
 * @since 0.1.0
 * @category models
 */
export const ConnectionState = Schema.Struct({
  /** Unique in the bundle: `control`, `data`, `data-2`, ... */
  name: Schema.String,
  role: ConnectionRole,
  transport: ConnectionTransport,
  source: Endpoint,
  destination: Endpoint,
  /** The multicast group a `udp-multicast` connection sends to. */
  group: Schema.optionalKey(Endpoint),
  initialSeqSource: Seq,
  initialSeqDestination: Seq,
  /** The next byte the server would send. */
  currentSeqSource: Seq,
  /** The next byte the server expects from the client: what it acknowledges. */
  currentSeqDestination: Seq,
  /** The client's cumulative acknowledgement known to the server when the checkpoint was taken. */
  ackedSeqSource: Seq,
  /**
   * The send horizon: no byte at or beyond it was sent before a newer checkpoint was
   * written. An acknowledgement above it is of bytes never sent.
   */
  sendHorizonSeq: Seq,
  coverage: Coverage,
  /** With `window` coverage: the bytes from `ackedSeqSource` to `currentSeqSource`. */
  window: Schema.optionalKey(Schema.Uint8ArrayFromBase64),
  /** The object being sent (application information). */
  object: Schema.optionalKey(ObjectPosition),
  /** Per-layer blocks for this connection, by layer name. */
  layers: Schema.Record(Schema.String, Schema.Uint8ArrayFromBase64),
})
/** @since 0.1.0 @category models */
export type ConnectionState = typeof ConnectionState.Type

/**
 * The part of a checkpoint the contributors write: everything but its identity and time.
 *
 * @since 0.1.0
 * @category models
 */
export interface Draft {
  readonly connections: ReadonlyArray<ConnectionState>
  /** Bundle-wide blocks (the application protocol's state), by layer name. */
  readonly layers: Readonly<Record<string, Uint8Array>>
}

/** @since 0.1.0 @category models */
export const Checkpoint = Schema.Struct({
  version: Schema.Literal(1),
  backend: Backend,
  /** The bundle (for the session backend, the session id). */
  bundleId: Schema.String,
  /** The server that took the checkpoint. */
  serverId: Schema.String,
  /** When it was gathered, in ms since the epoch, from the server's `Clock`. */
  takenAtMs: Schema.Number.check(Schema.isInt()),
  /** Grows by one with every checkpoint of the bundle, across takeovers. */
  generation: Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(1)),
  /** The application layer protocol (`takeover-stream/1`, `http/1.1`, ...). */
  protocol: Schema.String,
  /** The highest resume-proof counter accepted so far: a lower or equal one is a replay. */
  resumeCounter: Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0)),
  connections: Schema.Array(ConnectionState),
  layers: Schema.Record(Schema.String, Schema.Uint8ArrayFromBase64),
})
/** @since 0.1.0 @category models */
export type Checkpoint = typeof Checkpoint.Type

const CheckpointJson = Schema.toCodecJson(Checkpoint)
const encodeJson = Schema.encodeSync(CheckpointJson)
const decodeJson = Schema.decodeUnknownResult(CheckpointJson)
const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder("utf-8", { fatal: true })

/**
 * Checks what the schema can not: bounds, unique connection names, a window that matches
 * its positions. Undefined when the checkpoint is consistent.
 *
 * @since 0.1.0
 * @category validation
 */
export const inconsistency = (checkpoint: Checkpoint): string | undefined => {
  if (checkpoint.connections.length > limits.connectionsPerBundleMax)
    return `${checkpoint.connections.length} connections, above ${limits.connectionsPerBundleMax}`
  if (Object.keys(checkpoint.layers).length > limits.layersMax) return "too many layers"
  const names = new Set<string>()
  for (const connection of checkpoint.connections) {
    if (names.has(connection.name)) return `connection ${connection.name} twice`
    names.add(connection.name)
    if (Object.keys(connection.layers).length > limits.layersMax) return "too many layers"
    if (connection.ackedSeqSource > connection.currentSeqSource)
      return `${connection.name}: acknowledged beyond current`
    if (connection.currentSeqSource > connection.sendHorizonSeq)
      return `${connection.name}: current beyond the send horizon`
    if (connection.ackedSeqSource < connection.initialSeqSource)
      return `${connection.name}: acknowledged below the initial sequence number`
    if (connection.currentSeqDestination < connection.initialSeqDestination)
      return `${connection.name}: received below the initial sequence number`
    if (connection.coverage === "window") {
      const held = connection.window?.length ?? 0
      if (held > limits.windowBytesMax) return `${connection.name}: window above its bound`
      if (held !== connection.currentSeqSource - connection.ackedSeqSource)
        return `${connection.name}: window of ${held} bytes does not span acked..current`
      if (connection.sendHorizonSeq !== connection.currentSeqSource)
        return `${connection.name}: a window checkpoint's horizon is its current sequence number`
    } else if (
      connection.object === undefined &&
      connection.ackedSeqSource !== connection.currentSeqSource
    ) {
      return `${connection.name}: source coverage without an object can not regenerate unacknowledged bytes`
    }
  }
  return undefined
}

/**
 * Encodes a checkpoint (JSON, byte blocks in base64) and checks its bound.
 *
 * @since 0.1.0
 * @category codecs
 */
export const encode = (checkpoint: Checkpoint): Result.Result<Uint8Array, CheckpointTooLarge> => {
  const bytes = textEncoder.encode(JSON.stringify(encodeJson(checkpoint)))
  return bytes.length > limits.checkpointBytesMax
    ? Result.fail(
        new CheckpointTooLarge({
          bundleId: checkpoint.bundleId,
          bytes: bytes.length,
          bytesMax: limits.checkpointBytesMax,
        }),
      )
    : Result.succeed(bytes)
}

/**
 * Decodes and validates a checkpoint. Total: bad bytes give a `CheckpointDecodeError`.
 *
 * @since 0.1.0
 * @category codecs
 */
export const decode = (bytes: Uint8Array): Result.Result<Checkpoint, CheckpointDecodeError> => {
  if (bytes.length > limits.checkpointBytesMax)
    return Result.fail(
      new CheckpointDecodeError({ what: "checkpoint", detail: "above its size bound" }),
    )
  let json: unknown
  try {
    json = JSON.parse(textDecoder.decode(bytes))
  } catch (error) {
    return Result.fail(new CheckpointDecodeError({ what: "checkpoint", detail: String(error) }))
  }
  const decoded = decodeJson(json)
  if (Result.isFailure(decoded))
    return Result.fail(
      new CheckpointDecodeError({ what: "checkpoint", detail: decoded.failure.message }),
    )
  const problem = inconsistency(decoded.success)
  return problem === undefined
    ? Result.succeed(decoded.success)
    : Result.fail(new CheckpointDecodeError({ what: "checkpoint", detail: problem }))
}

/**
 * Where to resume one connection: the comparison of the client's acknowledgement with the
 * checkpoint.
 *
 * @since 0.1.0
 * @category models
 */
export interface Resume {
  /** The first byte to send again: the client's acknowledgement. */
  readonly resumeSeq: number
  /** Bytes from `resumeSeq` to the checkpoint's current position: what is sent again. */
  readonly resendBytes: number
  /** With an object: the byte of the object at `resumeSeq` (may equal its size: all sent). */
  readonly objectOffset: number | undefined
}

/** @since 0.1.0 @category models */
export interface Uncovered {
  readonly reason: Extract<RefusalReason, "TooOld" | "BeyondSent">
  readonly detail: string
}

/**
 * Compares the sequence number the client acknowledges with what the checkpoint covers.
 * Within it: where to resume. Below what the window or object holds: `TooOld`. Above the
 * send horizon: `BeyondSent`, an acknowledgement of bytes never sent.
 *
 * @example
 * ```ts
 * import { Checkpoint } from "@understudy/checkpoint"
 * declare const connection: Checkpoint.ConnectionState
 * const outcome = Checkpoint.compare(connection, 1_000_042)
 * ```
 * @since 0.1.0
 * @category comparison
 */
export const compare = (
  connection: ConnectionState,
  ackSeq: number,
): Result.Result<Resume, Uncovered> => {
  if (!Number.isSafeInteger(ackSeq) || ackSeq < 0)
    return Result.fail({
      reason: "BeyondSent",
      detail: `acknowledgement ${ackSeq} is not a sequence number`,
    })
  if (ackSeq > connection.sendHorizonSeq)
    return Result.fail({
      reason: "BeyondSent",
      detail: `${connection.name}: acknowledgement ${ackSeq} above the send horizon ${connection.sendHorizonSeq}`,
    })
  const object = connection.object
  const low =
    connection.coverage === "window" || object === undefined
      ? connection.ackedSeqSource
      : object.firstByteSeq
  if (ackSeq < low)
    return Result.fail({
      reason: "TooOld",
      detail: `${connection.name}: acknowledgement ${ackSeq} below ${low}, the oldest byte the checkpoint covers`,
    })
  if (
    object !== undefined &&
    connection.coverage === "source" &&
    ackSeq > object.firstByteSeq + object.size
  )
    return Result.fail({
      reason: "BeyondSent",
      detail: `${connection.name}: acknowledgement ${ackSeq} past the end of object ${object.id}`,
    })
  return Result.succeed({
    resumeSeq: ackSeq,
    resendBytes: Math.max(0, connection.currentSeqSource - ackSeq),
    objectOffset: object === undefined ? undefined : ackSeq - object.firstByteSeq,
  })
}

/**
 * The bytes to send again from a `window` checkpoint, from the client's acknowledgement.
 *
 * @since 0.1.0
 * @category comparison
 */
export const windowFrom = (connection: ConnectionState, resumeSeq: number): Uint8Array =>
  (connection.window ?? new Uint8Array(0)).subarray(resumeSeq - connection.ackedSeqSource)
