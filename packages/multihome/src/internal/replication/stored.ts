import type { Message } from "./messages.ts"

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
