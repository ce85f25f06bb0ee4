/**
 * The per-user secret that keeps other local users out of an election: instances prove
 * knowledge of it in the transport's HMAC handshake, and only this user can read it.
 *
 * The file is created atomically (written under a temporary name with mode 0600, then
 * hard-linked into place, so two instances starting together agree on one secret) and is
 * refused if anyone else could read or write it, or if it is not this user's.
 *
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
import { homedir } from "node:os"
import { dirname, join } from "node:path"
import { Effect, Redacted, Schema } from "effect"
import { errorCode } from "./internal/errorCode.ts"

/** @since 0.1.0 @category errors */
export class SecretError extends Schema.TaggedError<SecretError>()("SecretError", {
  path: Schema.String,
  reason: Schema.Literals(["Insecure", "NotOwner", "NotAFile", "Unreadable", "TooShort"]),
  detail: Schema.String,
}) {
  override get message(): string {
    return `secret file ${this.path}: ${this.reason} (${this.detail})`
  }
}

/** Bytes of a new secret. */
const secretBytes = 32

/** `~/.understudy/secret`: one per user, shared by every program's elections. @since 0.1.0 */
export const defaultPath = (): string => join(homedir(), ".understudy", "secret")

const readExisting = (path: string): Uint8Array | SecretError | "missing" => {
  let fd: number
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (error) {
    if (errorCode(error) === "ENOENT") return "missing"
    return new SecretError({ path, reason: "Unreadable", detail: errorCode(error) })
  }
  try {
    const stat = fstatSync(fd)
    if (!stat.isFile())
      return new SecretError({ path, reason: "NotAFile", detail: "not a regular file" })
    if (process.getuid !== undefined && stat.uid !== process.getuid()) {
      return new SecretError({ path, reason: "NotOwner", detail: `owned by uid ${stat.uid}` })
    }
    if ((stat.mode & 0o077) !== 0) {
      return new SecretError({
        path,
        reason: "Insecure",
        detail: `mode ${(stat.mode & 0o777).toString(8)}; run chmod 600 ${path}`,
      })
    }
    const buffer = Buffer.alloc(256)
    const size = readSync(fd, buffer, 0, buffer.length, 0)
    if (size < 16) return new SecretError({ path, reason: "TooShort", detail: `${size} bytes` })
    return new Uint8Array(buffer.subarray(0, size))
  } finally {
    closeSync(fd)
  }
}

const createAtomically = (path: string): void => {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`
  const fd = openSync(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600)
  try {
    writeSync(fd, randomBytes(secretBytes))
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  try {
    // link fails with EEXIST if another instance won the race: then its secret is used.
    linkSync(temporary, path)
  } catch (error) {
    if (errorCode(error) !== "EEXIST") throw error
  } finally {
    unlinkSync(temporary)
  }
}

/**
 * Reads the secret at `path`, creating it first if it does not exist.
 *
 * @since 0.1.0
 * @category constructors
 */
export const load = (
  path: string = defaultPath(),
): Effect.Effect<Redacted.Redacted<Uint8Array>, SecretError> =>
  Effect.try({
    try: () => {
      let existing = readExisting(path)
      if (existing === "missing") {
        createAtomically(path)
        existing = readExisting(path)
      }
      if (existing === "missing") throw new Error("the secret vanished after it was created")
      return existing
    },
    catch: (error) => new SecretError({ path, reason: "Unreadable", detail: errorCode(error) }),
  }).pipe(
    Effect.flatMap((result) =>
      result instanceof SecretError ? Effect.fail(result) : Effect.succeed(Redacted.make(result)),
    ),
  )
