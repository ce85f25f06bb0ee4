/**
 * A server's durable state on disk as a snapshot and a journal of the record's changes since
 * it. A step that adds or drops allocations appends one line per client changed (one write,
 * one fdatasync): the cost follows the change, not the size of the record. The snapshot is
 * written again (atomically: `writeAtomic`) and the journal emptied when the term, vote or
 * license changed (rare, and readers of the file see them at once), when the journal has grown
 * past a few snapshots' worth, or when the machine no longer lists the changes since the
 * last write. Restoring reads the snapshot and replays the journal; each line sets or drops a
 * client's whole entry, so replaying lines the snapshot already holds (a crash between its
 * rename and the journal's truncation) changes nothing. A crash during an append leaves a
 * torn last line, from a step whose outputs were never performed: it is ignored.
 */
import { closeSync, constants, fdatasyncSync, fsyncSync, ftruncateSync, openSync } from "node:fs"
import { dirname } from "node:path"
import { HashMap, Option, Schema } from "effect"
import * as Machine from "../Machine.ts"
import * as Message from "../Message.ts"
import { readIfExists, syncDirectory, writeAll, writeAtomic } from "./durableFile.ts"

/** What the snapshot holds: `Machine.Restored`. */
export const Restored = Schema.Struct({
  term: Schema.Int,
  votedFor: Schema.NullOr(Schema.String),
  license: Schema.NullOr(Message.License),
  record: Schema.Array(Message.Allocation),
})
export type Restored = typeof Restored.Type

/** One line of the journal: a client's allocation as it is now, or its removal. */
const Line = Schema.Union([
  Schema.Struct({ set: Message.Allocation }),
  Schema.Struct({ drop: Schema.String }),
])
export type Line = typeof Line.Type

const decodeRestored = Schema.decodeUnknownSync(Restored)
const decodeLine = Schema.decodeUnknownSync(Line)

/** The journal is compacted past this many times the snapshot's size (and this floor). */
const journalPerSnapshot = 4
const journalFloorBytes = 64 * 1024

export interface StateFiles {
  /** What was on disk when opened (undefined: nothing). */
  readonly restored: Restored | undefined
  /** Writes the whole state as the snapshot and empties the journal. */
  readonly snapshot: (state: Restored) => void
  /**
   * Appends `lines` and waits for them to be on disk; then, if the journal has grown past its
   * bound, writes `whole()` as the snapshot instead of letting it grow.
   */
  readonly append: (lines: ReadonlyArray<Line>, whole: () => Restored) => void
  readonly close: () => void
}

/** The snapshot's allocations with the journal's lines applied, in order. */
const replay = (snapshot: Restored, journal: string, path: string): Restored => {
  const record = new Map(snapshot.record.map((allocation) => [allocation.client, allocation]))
  const lines = journal.split("\n")
  // The text after the last newline is a line whose append did not finish: ignored.
  lines.pop()
  for (const [index, text] of lines.entries()) {
    let line: Line
    try {
      line = decodeLine(JSON.parse(text))
    } catch (error) {
      throw new Error(`${path} line ${index + 1}: ${String(error)}`)
    }
    if ("set" in line) record.set(line.set.client, line.set)
    else record.delete(line.drop)
  }
  return { ...snapshot, record: Array.from(record.values()) }
}

/** Opens the state kept at `path` (the snapshot) and `path`'s journal. Throws on a bad file. */
export const open = (path: string): StateFiles => {
  const journalPath = `${path}.journal`
  const snapshotText = readIfExists(path)
  const journalText = readIfExists(journalPath)
  const snapshot = snapshotText === undefined ? undefined : decodeRestored(JSON.parse(snapshotText))
  const restored =
    snapshot === undefined || journalText === undefined
      ? snapshot
      : replay(snapshot, journalText, journalPath)

  let fd: number | undefined
  let journalBytes = Buffer.byteLength(journalText ?? "")
  let snapshotBytes = Buffer.byteLength(snapshotText ?? "")

  /** The journal, opened (and its directory entry made durable) on the first append. */
  const journal = (): number => {
    if (fd !== undefined) return fd
    const created = journalText === undefined
    fd = openSync(journalPath, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND, 0o600)
    if (created) syncDirectory(dirname(journalPath))
    return fd
  }

  const snapshotNow = (state: Restored) => {
    const text = JSON.stringify(state)
    writeAtomic(path, text)
    snapshotBytes = Buffer.byteLength(text)
    // After the snapshot is durable: a crash before this leaves lines it holds (harmless).
    if (journalBytes > 0) {
      const journalFd = journal()
      ftruncateSync(journalFd)
      fsyncSync(journalFd)
      journalBytes = 0
    }
  }

  return {
    restored,
    snapshot: snapshotNow,
    append: (lines, whole) => {
      if (lines.length === 0) return
      if (journalBytes > Math.max(journalFloorBytes, journalPerSnapshot * snapshotBytes)) {
        snapshotNow(whole())
        return
      }
      let text = ""
      for (const line of lines) text += `${JSON.stringify(line)}\n`
      const bytes = Buffer.from(text)
      const journalFd = journal()
      writeAll(journalFd, bytes, journalPath)
      fdatasyncSync(journalFd)
      journalBytes += bytes.byteLength
    },
    close: () => {
      if (fd !== undefined) closeSync(fd)
      fd = undefined
    },
  }
}

const allocationOf = (held: Machine.Held): Message.Allocation => ({
  client: held.client,
  seats: held.seats,
  grantedAtMs: held.grantedAtMs,
  expiresAtMs: held.expiresAtMs,
})

/** The whole durable state of a server: what a snapshot holds. */
export const wholeOf = (state: Machine.State): Restored => ({
  ...state.durable,
  record: Array.from(HashMap.values(state.record), allocationOf),
})

/**
 * Puts the durable changes of a step from `before` to `after` on disk: the record's changes
 * as journal lines (each client changed, as it is now), or the whole state when the term,
 * vote or license changed, at the first step (`before` undefined), or when the machine no
 * longer lists every change since `before` (`Machine.storedSince`).
 */
export const persistStep = (
  files: StateFiles,
  before: Machine.State | undefined,
  after: Machine.State,
): void => {
  const changed =
    before === undefined || before.durable !== after.durable
      ? undefined
      : Machine.storedSince(after, before.stored)
  if (changed === undefined) {
    files.snapshot(wholeOf(after))
    return
  }
  const lines: Array<Line> = []
  const seen = new Set<string>()
  for (const client of changed) {
    if (seen.has(client)) continue
    seen.add(client)
    const held = HashMap.get(after.record, client)
    lines.push(Option.isSome(held) ? { set: allocationOf(held.value) } : { drop: client })
  }
  files.append(lines, () => wholeOf(after))
}
