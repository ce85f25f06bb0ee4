/**
 * A machine's timers as a table: the one timer driver behind the `Runner` and the simulators.
 * `SetTimer` arms a name (replacing its previous deadline), `CancelTimer` disarms it, and
 * the driver asks when the `next` one is due and pops the `due` ones in order. Pure and
 * synchronous, so the `Runner` drives it from one sleeper on the Effect `Clock` and a
 * simulator from its own event loop.
 *
 * Arming is O(log n) on the transport's `Heap.MinHeap`; cancelling is O(1). Each armed name
 * has one entry, which re-arming and cancelling change in place rather than replace: the heap
 * keeps the entry where it was put (its `heapDueMs`), and an entry that reaches the top
 * cancelled is dropped, or re-armed later than that place is put back at its deadline. So
 * re-arming a timer to a later deadline, or a cancelled one that is still in the heap (a
 * retransmission or delayed-acknowledgement timer restarted on every packet), allocates
 * nothing; only re-arming earlier than the heap has it makes a new entry (the old one is
 * dropped when it reaches the top). The heap is rebuilt from the armed entries when those it
 * holds for nothing outnumber them, so it stays the size of the armed timers.
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

/** An entry as the table keeps it: changed in place when its key is re-armed or cancelled. */
class Slot<K> implements Entry<K> {
  readonly key: K
  dueMs: number
  order: number
  /** Where the heap has it; at or before (`dueMs`, `order`) while it is in the heap. */
  heapDueMs: number
  heapOrder: number
  armed = true

  constructor(key: K, dueMs: number, order: number) {
    this.key = key
    this.dueMs = dueMs
    this.order = order
    this.heapDueMs = dueMs
    this.heapOrder = order
  }
}

const heapBefore = <K>(a: Slot<K>, b: Slot<K>): boolean =>
  a.heapDueMs < b.heapDueMs || (a.heapDueMs === b.heapDueMs && a.heapOrder < b.heapOrder)

/** Slots in the heap beyond the armed ones tolerated before it is rebuilt. */
const staleSlack = 64

/**
 * @since 0.1.0
 * @category models
 */
export class TimerTable<K> {
  private heap = new Heap.MinHeap<Slot<K>>(heapBefore)
  /** Each key's current slot, armed or cancelled (a cancelled one until it leaves the heap). */
  private readonly slots = new Map<K, Slot<K>>()
  private armedCount = 0
  private nextOrder = 0

  /** How many timers are armed. */
  get size(): number {
    return this.armedCount
  }

  /**
   * Arms `key` to be due at `dueMs`, replacing its previous deadline. `order` places it
   * among timers due at the same time; by default, after every timer armed before it.
   */
  set(key: K, dueMs: number, order?: number): void {
    const at = order ?? this.nextOrder++
    const slot = this.slots.get(key)
    if (slot === undefined) {
      const fresh = new Slot(key, dueMs, at)
      this.slots.set(key, fresh)
      this.heap.push(fresh)
      this.armedCount++
      return
    }
    if (!slot.armed) {
      slot.armed = true
      this.armedCount++
    }
    if (dueMs > slot.heapDueMs || (dueMs === slot.heapDueMs && at >= slot.heapOrder)) {
      // At or after where the heap has it: moved when it reaches the top.
      slot.dueMs = dueMs
      slot.order = at
      return
    }
    // Earlier than the heap has it: a new slot; the old one is dropped at the top.
    slot.armed = false
    const fresh = new Slot(key, dueMs, at)
    this.slots.set(key, fresh)
    this.heap.push(fresh)
    if (this.heap.size > 2 * this.armedCount + staleSlack) this.rebuild()
  }

  /** Disarms `key`; whether it was armed. */
  cancel(key: K): boolean {
    const slot = this.slots.get(key)
    if (slot === undefined || !slot.armed) return false
    slot.armed = false
    this.armedCount--
    if (this.heap.size > 2 * this.armedCount + staleSlack) this.rebuild()
    return true
  }

  /** Disarms every key `matches` selects (a crashed node's timers, say): O(n). */
  cancelWhere(matches: (key: K) => boolean): void {
    for (const slot of this.slots.values()) {
      if (slot.armed && matches(slot.key)) {
        slot.armed = false
        this.armedCount--
      }
    }
    if (this.heap.size > 2 * this.armedCount + staleSlack) this.rebuild()
  }

  /** Disarms every timer. */
  clear(): void {
    this.slots.clear()
    this.armedCount = 0
    this.heap = new Heap.MinHeap<Slot<K>>(heapBefore)
  }

  /** The deadline of `key`, if it is armed. */
  dueOf(key: K): number | undefined {
    const slot = this.slots.get(key)
    return slot?.armed === true ? slot.dueMs : undefined
  }

  /** The earliest armed timer, left armed. */
  peek(): Entry<K> | undefined {
    const heap = this.heap
    for (;;) {
      const top = heap.peek()
      if (top === undefined) return undefined
      if (this.slots.get(top.key) === top && top.armed) {
        if (top.heapDueMs === top.dueMs && top.heapOrder === top.order) return top
        // Re-armed later than the heap had it: put it where it belongs now.
        heap.pop()
        top.heapDueMs = top.dueMs
        top.heapOrder = top.order
        heap.push(top)
        continue
      }
      // Cancelled, or replaced by an earlier arming: dropped.
      heap.pop()
      if (this.slots.get(top.key) === top) this.slots.delete(top.key)
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
    this.slots.delete(top.key)
    this.armedCount--
    return top.key
  }

  private rebuild(): void {
    const heap = new Heap.MinHeap<Slot<K>>(heapBefore)
    for (const [key, slot] of this.slots) {
      if (slot.armed) {
        slot.heapDueMs = slot.dueMs
        slot.heapOrder = slot.order
        heap.push(slot)
      } else this.slots.delete(key)
    }
    this.heap = heap
  }
}
