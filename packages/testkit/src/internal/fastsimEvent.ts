/**
 * The events of `FastSim` and their order, (time, sequence number): events at the same time
 * run in the order they were scheduled, so a run is a pure function of its seed. The queue
 * is the transport's `Heap.MinHeap` with this order; timers are in machine's `TimerTable`,
 * whose entries carry a sequence number of the same count.
 */

/** One pending event. A class with a fixed shape keeps the heap's property accesses monomorphic. */
export class Event {
  readonly atMs: number
  readonly seq: number
  /** What kind of event: see `Kind` in FastSim. */
  readonly kind: number
  /** The node it happens at (the receiver of a delivery). */
  readonly node: number
  /** The sender of a delivery; -1 otherwise. */
  readonly from: number
  /** The message or command. */
  readonly payload: unknown
  /** A delivery's source address, as the receiver sees it; undefined otherwise. */
  readonly source: unknown
  /** A delivery's destination address; undefined otherwise. */
  readonly target: unknown

  // Plain fields, not parameter properties: Node's type stripping runs this file directly.
  constructor(
    atMs: number,
    seq: number,
    kind: number,
    node: number,
    from: number,
    payload: unknown,
    source: unknown,
    target?: unknown,
  ) {
    this.atMs = atMs
    this.seq = seq
    this.kind = kind
    this.node = node
    this.from = from
    this.payload = payload
    this.source = source
    this.target = target
  }
}

/** Whether `a` runs before `b`: earlier, or as early and scheduled first. */
export const before = (a: Event, b: Event): boolean =>
  a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq)
