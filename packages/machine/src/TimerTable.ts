/**
 * A machine's timers as a table: the one timer driver behind the `Runner` and the simulators.
 * `SetTimer` arms a name (replacing its previous deadline), `CancelTimer` disarms it, and
 * the driver asks when the `next` one is due and pops the `due` ones in order. Pure and
 * synchronous, so the `Runner` drives it from one sleeper on the Effect `Clock` and a
 * simulator from its own event loop.
 *
 * Arming and re-arming are O(log n) on the transport's `Heap.MinHeap`; cancelling is O(1): a
 * map from each name to its current entry is the generation check, and an entry that is no
 * longer current (cancelled or re-armed) is skipped when it reaches the top. The heap is
 * rebuilt from the live entries when stale ones outnumber them, so a machine that re-arms the
 * same timer on every message keeps a heap the size of its armed timers.
 *
 * Order: earliest deadline first; among equal deadlines, the one armed first (or with the
 * lower `order` the caller gave).
 *
 * @example
 * ```ts
 * import { TimerTable } from "@understudy/machine"
 *
 * const timers = new TimerTable.TimerTable<string>()
 * timers.set("heartbeat", 100)
 * timers.set("election", 50)
 * timers.set("election", 300) // re-armed: the 50 ms deadline is gone
 * timers.next() // 100
 * timers.due(100) // "heartbeat"
 * timers.due(100) // undefined: "election" is due at 300
 * ```
 * @since 0.1.0
 */
import { Heap } from "@understudy/transport"

/**
 * One armed timer.
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry<K> {
  readonly key: K
  readonly dueMs: number
  /** Among timers due at the same time, the lower fires first. */
  readonly order: number
}

const before = <K>(a: Entry<K>, b: Entry<K>): boolean =>
  a.dueMs < b.dueMs || (a.dueMs === b.dueMs && a.order < b.order)

/** Stale entries tolerated beyond the live ones before the heap is rebuilt. */
const staleSlack = 64

/**
 * @since 0.1.0
 * @category models
 */
export class TimerTable<K> {
  private heap = new Heap.MinHeap<Entry<K>>(before)
  /** Each armed key's current entry: an entry in the heap that is not this one is stale. */
  private readonly armed = new Map<K, Entry<K>>()
  private nextOrder = 0

  /** How many timers are armed. */
  get size(): number {
    return this.armed.size
  }

  /**
   * Arms `key` to be due at `dueMs`, replacing its previous deadline. `order` places it
   * among timers due at the same time; by default, after every timer armed before it.
   */
  set(key: K, dueMs: number, order?: number): void {
    const entry: Entry<K> = { key, dueMs, order: order ?? this.nextOrder++ }
    this.armed.set(key, entry)
    this.heap.push(entry)
    if (this.heap.size > 2 * this.armed.size + staleSlack) this.rebuild()
  }

  /** Disarms `key`; whether it was armed. */
  cancel(key: K): boolean {
    return this.armed.delete(key)
  }

  /** Disarms every key `matches` selects (a crashed node's timers, say): O(n). */
  cancelWhere(matches: (key: K) => boolean): void {
    for (const key of this.armed.keys()) if (matches(key)) this.armed.delete(key)
  }

  /** Disarms every timer. */
  clear(): void {
    this.armed.clear()
    this.heap = new Heap.MinHeap<Entry<K>>(before)
  }

  /** The deadline of `key`, if it is armed. */
  dueOf(key: K): number | undefined {
    return this.armed.get(key)?.dueMs
  }

  /** The earliest armed timer, left armed. */
  peek(): Entry<K> | undefined {
    const heap = this.heap
    for (;;) {
      const top = heap.peek()
      if (top === undefined || this.armed.get(top.key) === top) return top
      heap.pop()
    }
  }

  /** When the earliest armed timer is due, or `undefined` when none is armed. */
  next(): number | undefined {
    return this.peek()?.dueMs
  }

  /** Disarms and returns the earliest timer due at or before `nowMs`, if any. */
  due(nowMs: number): K | undefined {
    const top = this.peek()
    if (top === undefined || top.dueMs > nowMs) return undefined
    this.heap.pop()
    this.armed.delete(top.key)
    return top.key
  }

  private rebuild(): void {
    const heap = new Heap.MinHeap<Entry<K>>(before)
    for (const entry of this.armed.values()) heap.push(entry)
    this.heap = heap
  }
}
