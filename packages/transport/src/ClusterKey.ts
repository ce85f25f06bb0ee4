/**
 * Cluster key files: the shared secret that authenticates a group's traffic (the
 * transport's `clusterKey` handshake, the `Runner`'s datagram MACs, an app's HTTP API).
 *
 * A key file holds 32 random bytes from `node:crypto`, hex-encoded on one line. It is
 * written atomically (a temporary file with mode 0600, fsynced, then hard-linked into
 * place, so it never exists half-written and an existing key is never overwritten), and
 * it is refused when anyone but its owner could read or write it: a key others can read
 * authenticates nothing.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ClusterKey } from "@understudy/transport"
 *
 * const program = Effect.gen(function* () {
 *   yield* ClusterKey.generateFile("/etc/my-group/cluster.key") // once, by an operator
 *   const key = yield* ClusterKey.readFile("/etc/my-group/cluster.key")
 *   // pass `key` as `clusterKey` to the transport, or to Runner.Authentication.keyed
 * })
 * ```
 * @since 0.1.0
 */
import { randomBytes } from "node:crypto"
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readSync,
  unlinkSync,
  writeSync,
} from "node:fs"
import { dirname } from "node:path"
import { Effect, Redacted, Schema } from "effect"

/**
 * A key file could not be used: `Missing` (no such file), `Exists` (generating over an
 * existing key), `Insecure` (group or others may read or write it), `NotOwner`,
 * `NotAFile`, `Malformed` (not 32–64 bytes of hex), or `Io` (any other file-system error).
 *
 * @since 0.1.0
 * @category errors
 */
export class ClusterKeyError extends Schema.TaggedError<ClusterKeyError>()("ClusterKeyError", {
  path: Schema.String,
  reason: Schema.Literals([
    "Missing",
    "Exists",
    "Insecure",
    "NotOwner",
    "NotAFile",
    "Malformed",
    "Io",
  ]),
  detail: Schema.String,
}) {
  override get message(): string {
    return `cluster key file ${this.path}: ${this.reason} (${this.detail})`
  }
}

/** Bytes of a generated key. @since 0.1.0 @category constants */
export const keyBytes = 32

/** The largest key file read: a longer file is not a key. */
const fileBytesMax = 4096

const errorCode = (error: unknown): string =>
  typeof error === "object" && error !== null && "code" in error
    ? String(error.code)
    : String(error)

/**
 * A new random key, for tests and for programs that hand it to their children themselves.
 *
 * @since 0.1.0
 * @category constructors
 */
export const generate = (): Redacted.Redacted<Uint8Array> =>
  Redacted.make(new Uint8Array(randomBytes(keyBytes)))

/**
 * Decodes a key file's text: 32 to 64 bytes as hex, surrounding white space ignored.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode = (path: string, text: string): Uint8Array | ClusterKeyError => {
  const hex = text.trim()
  if (!/^[0-9a-fA-F]*$/.test(hex) || hex.length % 2 !== 0 || hex.length < 64 || hex.length > 128) {
    return new ClusterKeyError({
      path,
      reason: "Malformed",
      detail: "expected one line of 64 to 128 hex digits (write one with the keygen command)",
    })
  }
  return new Uint8Array(Buffer.from(hex, "hex"))
}

const readSync_ = (path: string): Uint8Array | ClusterKeyError => {
  let fd: number
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (error) {
    const code = errorCode(error)
    return new ClusterKeyError({ path, reason: code === "ENOENT" ? "Missing" : "Io", detail: code })
  }
  try {
    const stat = fstatSync(fd)
    if (!stat.isFile()) {
      return new ClusterKeyError({ path, reason: "NotAFile", detail: "not a regular file" })
    }
    if (process.getuid !== undefined && stat.uid !== process.getuid()) {
      return new ClusterKeyError({ path, reason: "NotOwner", detail: `owned by uid ${stat.uid}` })
    }
    if ((stat.mode & 0o077) !== 0) {
      return new ClusterKeyError({
        path,
        reason: "Insecure",
        detail: `mode ${(stat.mode & 0o777).toString(8)}; run chmod 600 ${path}`,
      })
    }
    const buffer = Buffer.alloc(fileBytesMax + 1)
    const size = readSync(fd, buffer, 0, buffer.length, 0)
    if (size > fileBytesMax) {
      return new ClusterKeyError({ path, reason: "Malformed", detail: "longer than a key" })
    }
    return decode(path, buffer.subarray(0, size).toString("utf8"))
  } catch (error) {
    return new ClusterKeyError({ path, reason: "Io", detail: errorCode(error) })
  } finally {
    closeSync(fd)
  }
}

/**
 * Reads the key at `path`, refusing a file that others could read or write.
 *
 * @since 0.1.0
 * @category constructors
 */
export const readFile = (
  path: string,
): Effect.Effect<Redacted.Redacted<Uint8Array>, ClusterKeyError> =>
  Effect.suspend(() => {
    const key = readSync_(path)
    return key instanceof ClusterKeyError ? Effect.fail(key) : Effect.succeed(Redacted.make(key))
  })

/**
 * Writes a new random key to `path` (mode 0600, parent directories created 0700) and
 * returns it. Fails with `Exists` rather than replace a key: replacing one splits a group.
 *
 * @since 0.1.0
 * @category constructors
 */
export const generateFile = (
  path: string,
): Effect.Effect<Redacted.Redacted<Uint8Array>, ClusterKeyError> =>
  Effect.suspend(() => {
    const key = new Uint8Array(randomBytes(keyBytes))
    const temporary = `${path}.${randomBytes(6).toString("hex")}.tmp`
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
      const fd = openSync(
        temporary,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL,
        0o600,
      )
      try {
        writeSync(fd, `${Buffer.from(key).toString("hex")}\n`)
        fsyncSync(fd)
      } finally {
        closeSync(fd)
      }
      try {
        linkSync(temporary, path)
      } finally {
        unlinkSync(temporary)
      }
      // The new name is durable only once its directory is.
      const directory = openSync(dirname(path), constants.O_RDONLY)
      try {
        fsyncSync(directory)
      } finally {
        closeSync(directory)
      }
    } catch (error) {
      const code = errorCode(error)
      return Effect.fail(
        new ClusterKeyError({ path, reason: code === "EEXIST" ? "Exists" : "Io", detail: code }),
      )
    }
    return Effect.succeed(Redacted.make(key))
  })
