/**
 * The event queue of `FastSim`: a binary min-heap ordered by (time, sequence number), so
 * events at the same time run in the order they were scheduled and a run is a pure
 * function of its seed.
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
  /** The message, timer name or command. */
  readonly payload: unknown
  /** The timer's generation; 0 otherwise. */
  readonly gen: number

  // Plain fields, not parameter properties: Node's type stripping runs this file directly.
  constructor(
    atMs: number,
    seq: number,
    kind: number,
    node: number,
    from: number,
    payload: unknown,
    gen: number,
  ) {
    this.atMs = atMs
    this.seq = seq
    this.kind = kind
    this.node = node
    this.from = from
    this.payload = payload
    this.gen = gen
  }
}

const before = (a: Event, b: Event): boolean =>
  a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq)

export class Queue {
  private readonly items: Array<Event> = []

  get size(): number {
    return this.items.length
  }

  peek(): Event | undefined {
    return this.items[0]
  }

  push(event: Event): void {
    const items = this.items
    let index = items.length
    items.push(event)
    while (index > 0) {
      const parent = (index - 1) >> 1
      const above = items[parent]!
      if (!before(event, above)) break
      items[index] = above
      index = parent
    }
    items[index] = event
  }

  pop(): Event | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (top === undefined || last === undefined || items.length === 0) return top
    const size = items.length
    let index = 0
    for (;;) {
      const left = 2 * index + 1
      if (left >= size) break
      const right = left + 1
      let child = left
      if (right < size && before(items[right]!, items[left]!)) child = right
      if (!before(items[child]!, last)) break
      items[index] = items[child]!
      index = child
    }
    items[index] = last
    return top
  }
}
