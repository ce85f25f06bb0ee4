/**
 * The receiver's record of DATA TSNs (RFC 9260 §6.2, §6.7): the Cumulative TSN Ack Point,
 * the TSNs received above it (reported as Gap Ack Blocks, §3.3.4), and the duplicates
 * received since the last SACK.
 *
 * TSNs above the cumulative point are kept as a sorted array of disjoint, non-adjacent
 * runs (`starts[i] … ends[i]`, absolute TSNs, ordered by their distance from the
 * cumulative point), so a receipt costs a binary search over the runs and the memory is
 * proportional to the number of holes, not of TSNs; the cumulative point swallows a run as
 * soon as the hole before it fills. All arithmetic is modulo 2^32 (RFC 1982).
 *
 * The tracker does not police the window: a TSN more than 2^31 − 1 after the cumulative
 * point reads as one before it (a duplicate), and TSNs far above it are recorded but only
 * those within 65,535 of it can be reported (Gap Ack Block offsets are 16-bit). The
 * association drops DATA beyond its receive window before calling {@link TsnTracker.receive}
 * (§6.2).
 *
 * @since 0.1.0
 */
import type { GapAckBlock } from "./Chunk.ts"

const half32 = 0x8000_0000

/**
 * The most duplicates remembered between two SACKs; later ones are not reported (the
 * list is advisory, §3.3.4, and must stay bounded).
 *
 * @since 0.1.0
 * @category constants
 */
export const maxDuplicatesKept = 4096

/**
 * Plain-data image of a {@link TsnTracker}.
 *
 * @since 0.1.0
 * @category snapshot
 */
export interface TsnTrackerSnapshot {
  readonly cumulative: number
  /** Runs above the cumulative point, in order: `starts[i] … ends[i]` (inclusive). */
  readonly starts: ReadonlyArray<number>
  readonly ends: ReadonlyArray<number>
  readonly duplicates: ReadonlyArray<number>
}

/**
 * Received TSNs of one association (mutable).
 *
 * @since 0.1.0
 * @category models
 */
export class TsnTracker {
  private cumulativeTsn: number
  private readonly starts: Array<number>
  private readonly ends: Array<number>
  private duplicates: Array<number>

  private constructor(
    cumulative: number,
    starts: Array<number>,
    ends: Array<number>,
    duplicates: Array<number>,
  ) {
    this.cumulativeTsn = cumulative
    this.starts = starts
    this.ends = ends
    this.duplicates = duplicates
  }

  /**
   * A tracker for a peer whose Initial TSN is `peerInitialTsn` (from its INIT or INIT
   * ACK): nothing received yet, so the cumulative point is `peerInitialTsn − 1` (§6.2:
   * the peer's first DATA carries the Initial TSN).
   *
   * @since 0.1.0
   * @category constructors
   */
  static create(peerInitialTsn: number): TsnTracker {
    return new TsnTracker((peerInitialTsn - 1) >>> 0, [], [], [])
  }

  /**
   * Rebuilds a tracker from {@link TsnTracker.snapshot}.
   *
   * @since 0.1.0
   * @category snapshot
   */
  static restore(snapshot: TsnTrackerSnapshot): TsnTracker {
    return new TsnTracker(
      snapshot.cumulative >>> 0,
      [...snapshot.starts],
      [...snapshot.ends],
      [...snapshot.duplicates],
    )
  }

  /**
   * The Cumulative TSN Ack Point: the last TSN of the contiguous run received from the
   * start (§3.3.4, Cumulative TSN Ack).
   *
   * @since 0.1.0
   * @category getters
   */
  get cumulative(): number {
    return this.cumulativeTsn
  }

  /**
   * The highest TSN received (the cumulative point when there is no gap).
   *
   * @since 0.1.0
   * @category getters
   */
  get highest(): number {
    const last = this.ends.length - 1
    return last < 0 ? this.cumulativeTsn : (this.ends[last] as number)
  }

  /**
   * Whether some TSN above the cumulative point arrived (a hole exists): §6.7, the
   * receiver then SACKs every packet with DATA at once.
   *
   * @since 0.1.0
   * @category getters
   */
  get hasGaps(): boolean {
    return this.starts.length > 0
  }

  /**
   * The number of runs above the cumulative point (all of them, reportable or not).
   *
   * @since 0.1.0
   * @category getters
   */
  get gapCount(): number {
    return this.starts.length
  }

  /**
   * Duplicates waiting for the next SACK.
   *
   * @since 0.1.0
   * @category getters
   */
  get duplicateCount(): number {
    return this.duplicates.length
  }

  /** Distance of `tsn` above the cumulative point, 0 … 2^32 − 1. */
  private offset(tsn: number): number {
    return (tsn - this.cumulativeTsn) >>> 0
  }

  /** Index of the first run whose start is above `offset` (binary search). */
  private firstRunAbove(offset: number): number {
    let low = 0
    let high = this.starts.length
    while (low < high) {
      const middle = (low + high) >>> 1
      if (this.offset(this.starts[middle] as number) <= offset) low = middle + 1
      else high = middle
    }
    return low
  }

  /**
   * Records the arrival of a DATA chunk's TSN. "Duplicate" when it was received before
   * (at or below the cumulative point, or inside a run): it is then listed for the next
   * SACK, once per arrival (§3.3.4, Duplicate TSN: "if a receiver were to get the TSN 19
   * three times, it would list 19 twice"), and §6.2 asks for an immediate SACK.
   *
   * @since 0.1.0
   * @category mutations
   */
  receive(tsn: number): "New" | "Duplicate" {
    const value = tsn >>> 0
    const offset = this.offset(value)
    if (offset === 0 || offset >= half32) return this.duplicate(value)
    if (offset === 1) {
      this.cumulativeTsn = value
      // The hole before the first run is filled: the cumulative point jumps over it.
      if (this.starts.length > 0 && this.starts[0] === (value + 1) >>> 0) {
        this.cumulativeTsn = this.ends[0] as number
        this.starts.shift()
        this.ends.shift()
      }
      return "New"
    }
    const next = this.firstRunAbove(offset)
    const previous = next - 1
    const previousEnd = previous >= 0 ? this.offset(this.ends[previous] as number) : 0
    if (previous >= 0 && previousEnd >= offset) return this.duplicate(value)
    const joinsPrevious = previous >= 0 && previousEnd + 1 === offset
    const joinsNext =
      next < this.starts.length && this.offset(this.starts[next] as number) === offset + 1
    if (joinsPrevious && joinsNext) {
      this.ends[previous] = this.ends[next] as number
      this.starts.splice(next, 1)
      this.ends.splice(next, 1)
    } else if (joinsPrevious) {
      this.ends[previous] = value
    } else if (joinsNext) {
      this.starts[next] = value
    } else {
      this.starts.splice(next, 0, value)
      this.ends.splice(next, 0, value)
    }
    return "New"
  }

  private duplicate(tsn: number): "Duplicate" {
    if (this.duplicates.length < maxDuplicatesKept) this.duplicates.push(tsn)
    return "Duplicate"
  }

  /**
   * Moves the cumulative point forward to `tsn` as if every TSN up to it had arrived, then
   * over any run that now touches it; runs at or below `tsn` are forgotten. A `tsn` at or
   * before the cumulative point changes nothing. Used for a FORWARD TSN's New Cumulative
   * TSN (RFC 3758 §3.6) and for a replica resynchronising with its peer after a takeover.
   * Returns whether the point moved.
   *
   * @since 0.1.0
   * @category mutations
   */
  skipTo(tsn: number): boolean {
    const value = tsn >>> 0
    const offset = this.offset(value)
    if (offset === 0 || offset >= half32) return false
    let drop = 0
    // Bounded by the runs held.
    while (drop < this.starts.length && this.offset(this.ends[drop] as number) <= offset) drop++
    this.starts.splice(0, drop)
    this.ends.splice(0, drop)
    this.cumulativeTsn = value
    const first = this.starts[0]
    // A run starting at or below the new point (it ends above it) or right after it joins.
    const firstOffset = first === undefined ? 0 : this.offset(first)
    if (first !== undefined && (firstOffset <= 1 || firstOffset >= half32)) {
      this.cumulativeTsn = this.ends[0] as number
      this.starts.shift()
      this.ends.shift()
    }
    return true
  }

  /**
   * Whether `tsn` was received (at or below the cumulative point, or in a run).
   *
   * @since 0.1.0
   * @category getters
   */
  isReceived(tsn: number): boolean {
    const offset = this.offset(tsn >>> 0)
    if (offset === 0 || offset >= half32) return true
    const previous = this.firstRunAbove(offset) - 1
    return previous >= 0 && this.offset(this.ends[previous] as number) >= offset
  }

  /**
   * Up to `limit` Gap Ack Blocks, lowest first, as offsets from the cumulative point
   * (§3.3.4: block start/end are 16-bit offsets, so `cumulative + start … cumulative + end`
   * were received). Runs that start more than 65,535 above the cumulative point are not
   * reportable and left out; a run crossing that bound is reported up to 65,535, which
   * states only TSNs that did arrive.
   *
   * @since 0.1.0
   * @category getters
   */
  gapBlocks(limit: number): Array<GapAckBlock> {
    const blocks: Array<GapAckBlock> = []
    const count = Math.min(this.starts.length, Math.max(0, limit))
    for (let index = 0; index < count; index++) {
      const start = this.offset(this.starts[index] as number)
      if (start > 0xffff) break
      blocks.push({ start, end: Math.min(0xffff, this.offset(this.ends[index] as number)) })
    }
    return blocks
  }

  /**
   * The duplicates received since the last call, at most `limit` of them, and forgets
   * them all (§3.3.4: the list restarts empty after each SACK).
   *
   * @since 0.1.0
   * @category mutations
   */
  takeDuplicates(limit: number): Array<number> {
    const taken =
      this.duplicates.length <= limit
        ? this.duplicates
        : this.duplicates.slice(0, Math.max(0, limit))
    this.duplicates = []
    return taken
  }

  /**
   * Plain data (fresh arrays) for replication.
   *
   * @since 0.1.0
   * @category snapshot
   */
  snapshot(): TsnTrackerSnapshot {
    return {
      cumulative: this.cumulativeTsn,
      starts: [...this.starts],
      ends: [...this.ends],
      duplicates: [...this.duplicates],
    }
  }
}
