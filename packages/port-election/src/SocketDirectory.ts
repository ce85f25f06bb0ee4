/**
 * The per-user directory that holds default election sockets. A Linux abstract socket has
 * no permissions, so any local user who binds its name first blocks every election on it;
 * a socket file in a directory only its owner can enter can be neither bound nor reached
 * by anyone else (root aside). The directory is `$XDG_RUNTIME_DIR` when set, else
 * `~/.understudy` (where the secret lives too); it is created with mode 0700 if missing,
 * and refused if it is not a directory of this user's that nobody else can enter.
 *
 * @since 0.1.0
 */
import { lstatSync, mkdirSync } from "node:fs"
import { homedir } from "node:os"
import { join } from "node:path"
import { Address } from "@understudy/transport"
import { Effect, Schema } from "effect"
import { errorCode } from "./internal/errorCode.ts"

/** @since 0.1.0 @category errors */
export class SocketDirectoryError extends Schema.TaggedError<SocketDirectoryError>()(
  "SocketDirectoryError",
  {
    path: Schema.String,
    reason: Schema.Literals(["NotADirectory", "NotOwner", "Insecure", "Unusable", "PathTooLong"]),
    detail: Schema.String,
  },
) {
  override get message(): string {
    return `socket directory ${this.path}: ${this.reason} (${this.detail})`
  }
}

/** The longest socket path the kernel takes (`sun_path` is 108 bytes with its NUL). */
const maxSocketPathBytes = 107

/** `$XDG_RUNTIME_DIR` if set (and absolute), else `~/.understudy`. @since 0.1.0 */
export const defaultPath = (): string => {
  const runtime = process.env.XDG_RUNTIME_DIR
  return runtime?.startsWith("/") ? runtime : join(homedir(), ".understudy")
}

/** Why `path` is not a safe socket directory for this user, or undefined if it is. */
const check = (path: string): SocketDirectoryError | undefined => {
  let stat: ReturnType<typeof lstatSync>
  try {
    stat = lstatSync(path)
  } catch (error) {
    return new SocketDirectoryError({ path, reason: "Unusable", detail: errorCode(error) })
  }
  // lstat: a symbolic link is refused, since whoever owns its target decides who enters.
  if (!stat.isDirectory()) {
    return new SocketDirectoryError({ path, reason: "NotADirectory", detail: "not a directory" })
  }
  const uid = process.getuid?.()
  if (uid !== undefined && stat.uid !== uid) {
    return new SocketDirectoryError({
      path,
      reason: "NotOwner",
      detail: `owned by uid ${stat.uid}`,
    })
  }
  if ((stat.mode & 0o077) !== 0) {
    return new SocketDirectoryError({
      path,
      reason: "Insecure",
      detail: `mode ${(stat.mode & 0o777).toString(8)}; run chmod 700 ${path}`,
    })
  }
  return undefined
}

/**
 * Creates `path` (mode 0700) if it is missing, and checks that it belongs to this user and
 * that nobody else may enter it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const ensure = (path: string = defaultPath()): Effect.Effect<string, SocketDirectoryError> =>
  Effect.suspend(() => {
    try {
      mkdirSync(path, { mode: 0o700 })
    } catch (error) {
      if (errorCode(error) !== "EEXIST") {
        return Effect.fail(
          new SocketDirectoryError({ path, reason: "Unusable", detail: errorCode(error) }),
        )
      }
    }
    const refusal = check(path)
    return refusal === undefined ? Effect.succeed(path) : Effect.fail(refusal)
  })

/**
 * The default election address of `program`'s election `name`: the socket file
 * `understudy-PROGRAM-NAME.sock` in the per-user socket directory (`ensure`d).
 *
 * @example
 * ```ts
 * import { SocketDirectory } from "@understudy/port-election"
 * // unix:///run/user/1000/understudy-builder-nightly.sock
 * const address = SocketDirectory.defaultAddress("builder", "nightly")
 * ```
 * @since 0.1.0
 * @category constructors
 */
export const defaultAddress = (
  program: string,
  name: string,
  directory: string = defaultPath(),
): Effect.Effect<Address.Unix, SocketDirectoryError> =>
  Effect.flatMap(ensure(directory), (path) => {
    const socket = join(path, `understudy-${program}-${name}.sock`)
    return Buffer.byteLength(socket) > maxSocketPathBytes
      ? Effect.fail(
          new SocketDirectoryError({
            path,
            reason: "PathTooLong",
            detail: `${socket} is longer than ${maxSocketPathBytes} bytes; give an --address`,
          }),
        )
      : Effect.succeed(Address.unix(socket))
  })
