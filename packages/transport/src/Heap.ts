/**
 * A binary min-heap with a caller's ordering: the event queue of `SimNet`'s scheduler, and
 * of any other discrete-event simulation built beside it (order events by time, then by
 * the sequence they were scheduled in, and a run replays exactly).
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 * @category models
 */
export class MinHeap<A> {
  private readonly items: Array<A> = []
  private readonly before: (a: A, b: A) => boolean

  /** `before(a, b)`: whether `a` comes out first. */
  constructor(before: (a: A, b: A) => boolean) {
    this.before = before
  }

  get size(): number {
    return this.items.length
  }

  /** The first item, left in place. */
  peek(): A | undefined {
    return this.items[0]
  }

  // Both sifts move a hole rather than swapping pairs (one write per level): the event
  // queue is the hot path of a simulation (FastSim pops and pushes once per step).
  push(item: A): void {
    const items = this.items
    let index = items.length
    items.push(item)
    while (index > 0) {
      const parent = (index - 1) >> 1
      const above = items[parent]!
      if (!this.before(item, above)) break
      items[index] = above
      index = parent
    }
    items[index] = item
  }

  /** Removes and returns the first item. */
  pop(): A | undefined {
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
      if (right < size && this.before(items[right]!, items[left]!)) child = right
      if (!this.before(items[child]!, last)) break
      items[index] = items[child]!
      index = child
    }
    items[index] = last
    return top
  }
}
