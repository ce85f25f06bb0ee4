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

  push(item: A): void {
    const items = this.items
    items.push(item)
    let index = items.length - 1
    while (index > 0) {
      const parent = (index - 1) >> 1
      if (!this.before(items[index]!, items[parent]!)) break
      ;[items[index], items[parent]] = [items[parent]!, items[index]!]
      index = parent
    }
  }

  /** Removes and returns the first item. */
  pop(): A | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (top === undefined || last === undefined || items.length === 0) return top
    items[0] = last
    let index = 0
    for (;;) {
      const left = index * 2 + 1
      const right = left + 1
      let smallest = index
      if (left < items.length && this.before(items[left]!, items[smallest]!)) smallest = left
      if (right < items.length && this.before(items[right]!, items[smallest]!)) smallest = right
      if (smallest === index) break
      ;[items[index], items[smallest]] = [items[smallest]!, items[index]!]
      index = smallest
    }
    return top
  }
}
