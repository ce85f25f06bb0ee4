/**
 * A write-ahead log on disk: one file of records, each framed as
 * `[length: u32 big-endian][checksum: first 8 bytes of SHA-256 of the payload][payload]`.
 *
 * `append` writes a batch of records and fsyncs once (group commit): a caller acknowledges
 * nothing it appended before `append` completed. `rewrite` replaces the whole log atomically
 * (a new file, fsynced, renamed over the old one, the directory fsynced): compaction writes a
 * snapshot record followed by the tail that is still needed.
 *
 * Recovery (`open`, pure part `decode`): records are read in order up to the first frame that
 * is incomplete or fails its checksum. If that frame reaches the end of the file, it is a torn
 * tail — a write that did not complete, so an `append` that never returned and was never
 * acknowledged — and the file is truncated to the last whole record. A bad frame with bytes
 * after it is not what a crash leaves: `WalCorrupt`, and nothing is dropped silently.
 *
 * @since 0.1.0
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Result, Schema, type Scope } from "effect"

const headerBytes = 12

/** A length field beyond this is a damaged frame, not an allocation to attempt. */
export const recordBytesMax = 256 * 1024 * 1024

/**
 * The log on disk holds a damaged record that is not a torn tail.
 *
 * @since 0.1.0
 * @category errors
 */
export class WalCorrupt extends Schema.TaggedError<WalCorrupt>()("ElectionWalCorrupt", {
  path: Schema.String,
  offset: Schema.Number,
  reason: Schema.String,
}) {
  override get message(): string {
    return `write-ahead log ${this.path} is damaged at byte ${this.offset}: ${this.reason}`
  }
}

/**
 * Reading, writing or syncing the log failed.
 *
 * @since 0.1.0
 * @category errors
 */
export class WalFailed extends Schema.TaggedError<WalFailed>()("ElectionWalFailed", {
  path: Schema.String,
  operation: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `write-ahead log ${this.path}: ${this.operation} failed: ${this.reason}`
  }
}

const checksum = (payload: Uint8Array): Buffer =>
  createHash("sha256").update(payload).digest().subarray(0, 8)

/** One record as it is stored. @since 0.1.0 @category encoding */
export const frame = (payload: Uint8Array): Uint8Array => {
  const framed = Buffer.alloc(headerBytes + payload.length)
  framed.writeUInt32BE(payload.length, 0)
  checksum(payload).copy(framed, 4)
  framed.set(payload, headerBytes)
  return framed
}

/** What `decode` found. @since 0.1.0 @category models */
export interface Decoded {
  readonly records: ReadonlyArray<Uint8Array>
  /** Bytes of whole, valid records: the file is truncated to this. */
  readonly validBytes: number
  /** Bytes of a torn tail past them (0 when the file ended on a record). */
  readonly tornBytes: number
}

/** Whether every byte of `buffer` from `start` on is zero. */
const zeroFrom = (buffer: Buffer, start: number): boolean => {
  for (let i = start; i < buffer.length; i++) if (buffer[i] !== 0) return false
  return true
}

/**
 * The records of a log file's bytes, a torn tail left out; or where it is damaged.
 *
 * @since 0.1.0
 * @category encoding
 */
export const decode = (
  bytes: Uint8Array,
): Result.Result<Decoded, { readonly offset: number; readonly reason: string }> => {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const records: Array<Uint8Array> = []
  let offset = 0
  const torn = () =>
    Result.succeed({ records, validBytes: offset, tornBytes: buffer.length - offset })
  while (offset < buffer.length) {
    if (buffer.length - offset < headerBytes) return torn()
    const length = buffer.readUInt32BE(offset)
    const end = offset + headerBytes + length
    if (length > recordBytesMax) {
      return Result.fail({ offset, reason: `record length ${length} exceeds ${recordBytesMax}` })
    }
    if (end > buffer.length) return torn()
    const payload = buffer.subarray(offset + headerBytes, end)
    if (!checksum(payload).equals(buffer.subarray(offset + 4, offset + headerBytes))) {
      // The last frame, damaged: a write torn by a crash. So is a damaged frame followed
      // only by zeros: space the file system gave an append whose data never landed (a
      // zero-filled tail, e.g. after a lost fsync). Anything else after it: real damage.
      if (end === buffer.length || zeroFrom(buffer, end)) return torn()
      return Result.fail({ offset, reason: "checksum mismatch before the end of the log" })
    }
    records.push(Uint8Array.from(payload))
    offset = end
  }
  return torn()
}

/**
 * An open log.
 *
 * @since 0.1.0
 * @category models
 */
export interface Wal {
  readonly path: string
  /** Appends the records and fsyncs once; durable when it succeeds. */
  readonly append: (records: ReadonlyArray<Uint8Array>) => Effect.Effect<void, WalFailed>
  /** Atomically replaces the whole log with these records (compaction). */
  readonly rewrite: (records: ReadonlyArray<Uint8Array>) => Effect.Effect<void, WalFailed>
  /** The log's size on disk, in bytes. */
  readonly size: Effect.Effect<number>
}

/** What `open` recovered. @since 0.1.0 @category models */
export interface Recovered {
  readonly wal: Wal
  readonly records: ReadonlyArray<Uint8Array>
  /** Bytes of a torn tail that were truncated away. */
  readonly truncatedBytes: number
}

const attempt = <A>(file: string, operation: string, run: () => A): Effect.Effect<A, WalFailed> =>
  Effect.try({
    try: run,
    catch: (cause) =>
      new WalFailed({
        path: file,
        operation,
        reason: cause instanceof Error ? cause.message : String(cause),
      }),
  })

/** `writeSync` may write less than asked: loop until all of it is written. */
const writeAll = (fd: number, bytes: Uint8Array) => {
  let written = 0
  while (written < bytes.length) written += fs.writeSync(fd, bytes, written)
}

const syncDirectory = (file: string) => {
  const directory = fs.openSync(path.dirname(file), "r")
  try {
    fs.fsyncSync(directory)
  } finally {
    fs.closeSync(directory)
  }
}

/**
 * Opens (creating it, mode 0600) the log at `file`, recovers its records and truncates a
 * torn tail; the file stays open for the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const open = (file: string): Effect.Effect<Recovered, WalCorrupt | WalFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const bytes = yield* attempt(file, "read", () =>
      fs.existsSync(file) ? fs.readFileSync(file) : Buffer.alloc(0),
    )
    const decoded = decode(bytes)
    if (Result.isFailure(decoded)) {
      return yield* new WalCorrupt({ path: file, ...decoded.failure })
    }
    const { records, validBytes, tornBytes } = decoded.success
    // The descriptor changes with every `rewrite`: the release closes the current one.
    let fd: number = yield* Effect.acquireRelease(
      attempt(file, "open", () => fs.openSync(file, "a", 0o600)),
      (): Effect.Effect<void> => Effect.sync(() => fs.closeSync(fd)),
    )
    if (tornBytes > 0) {
      yield* attempt(file, "truncate", () => {
        fs.ftruncateSync(fd, validBytes)
        fs.fsyncSync(fd)
      })
    }
    let size = validBytes
    const wal: Wal = {
      path: file,
      append: (batch) =>
        batch.length === 0
          ? Effect.void
          : attempt(file, "append", () => {
              const framed = Buffer.concat(batch.map(frame))
              writeAll(fd, framed)
              fs.fsyncSync(fd)
              size += framed.length
            }),
      rewrite: (batch) =>
        attempt(file, "rewrite", () => {
          const next = `${file}.next`
          const framed = Buffer.concat(batch.map(frame))
          const out = fs.openSync(next, "w", 0o600)
          try {
            writeAll(out, framed)
            fs.fsyncSync(out)
          } finally {
            fs.closeSync(out)
          }
          fs.renameSync(next, file)
          syncDirectory(file)
          fs.closeSync(fd)
          fd = fs.openSync(file, "a", 0o600)
          size = framed.length
        }),
      size: Effect.sync(() => size),
    }
    return { wal, records, truncatedBytes: tornBytes }
  })
