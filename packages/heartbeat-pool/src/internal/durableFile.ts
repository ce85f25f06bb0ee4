/**
 * Atomic, durable small files: written to a temporary file, fsynced, renamed over the old
 * one, and the directory fsynced, so a crash leaves either the old or the new content.
 */
import { randomBytes } from "node:crypto"
import {
  closeSync,
  constants,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs"
import { dirname } from "node:path"

export const writeAtomic = (path: string, text: string): void => {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  const temporary = `${path}.${randomBytes(6).toString("hex")}.tmp`
  const fd = openSync(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600)
  try {
    writeAll(fd, Buffer.from(text), temporary)
    fsyncSync(fd)
  } catch (error) {
    closeSync(fd)
    unlinkSync(temporary)
    throw error
  }
  closeSync(fd)
  renameSync(temporary, path)
  syncDirectory(dirname(path))
}

/**
 * Writes all of `bytes` at `fd`'s position: a short write is written on from where it stopped;
 * no progress at all is an error (`path` names the file in it).
 */
export const writeAll = (fd: number, bytes: Uint8Array, path: string): void => {
  for (let written = 0; written < bytes.byteLength; ) {
    const count = writeSync(fd, bytes, written)
    if (count === 0) throw new Error(`${path}: the write made no progress`)
    written += count
  }
}

/** Makes the directory's entries (a file created, renamed or removed in it) durable. */
export const syncDirectory = (path: string): void => {
  const directory = openSync(path, constants.O_RDONLY)
  try {
    fsyncSync(directory)
  } finally {
    closeSync(directory)
  }
}

/** The file's text, or undefined when it does not exist. */
export const readIfExists = (path: string): string | undefined => {
  try {
    return readFileSync(path, "utf8")
  } catch (error) {
    if (typeof error === "object" && error !== null && "code" in error && error.code === "ENOENT") {
      return undefined
    }
    throw error
  }
}
