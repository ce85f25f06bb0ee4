/**
 * A linearizability checker for a history of register operations (Wing & Gong's search with
 * Lowe's memoisation, as Knossos and Porcupine do), one register per key: the history is
 * linearizable iff each key's sub-history is (locality, Herlihy & Wing).
 *
 * An operation took effect at one instant between its invocation (`startMs`) and its response
 * (`endMs`). A write whose outcome is unknown (time-out, connection lost) has `endMs`
 * Infinity: it may take effect at any instant after its start, or never. Operations known
 * not to have taken effect (refused, redirected) are left out of the history.
 */

/** One client operation on a key; `value` null is a delete (or a read of a missing key). */
export interface Operation {
  readonly key: string
  readonly kind: "write" | "read"
  readonly value: string | null
  readonly startMs: number
  readonly endMs: number
  readonly client?: string
}

export type Verdict =
  | { readonly ok: true; readonly checked: number }
  | {
      readonly ok: false
      readonly key: string
      readonly reason: "not-linearizable" | "search-limit"
      readonly operations: ReadonlyArray<Operation>
    }

/** Search states explored per key, at most: beyond it the verdict is `search-limit`. */
const statesMax = 2_000_000

const checkKey = (
  operations: ReadonlyArray<Operation>,
  initial: string | null,
): "ok" | "not-linearizable" | "search-limit" => {
  const ops = [...operations].sort((a, b) => a.startMs - b.startMs)
  const count = ops.length
  const done = new Uint8Array(count)
  const mustFinish = ops.filter((op) => Number.isFinite(op.endMs)).length
  const seen = new Set<string>()
  let explored = 0
  /**
   * The set of operations done, as a memo key: the length of the prefix of done operations
   * (in start order) and the done ones past it, a few at most (those overlapping the
   * prefix's end). Built from the prefix, so a state's key costs the window, not the history.
   */
  let prefix = 0
  let doneCount = 0
  const mark = (i: number) => {
    done[i] = 1
    doneCount++
    while (prefix < count && done[prefix] === 1) prefix++
  }
  const unmark = (i: number) => {
    done[i] = 0
    doneCount--
    if (i < prefix) prefix = i
  }
  const maskKey = () => {
    let text = `${prefix}`
    let past = doneCount - prefix
    for (let i = prefix + 1; past > 0; i++)
      if (done[i] === 1) {
        text += `,${i}`
        past--
      }
    return text
  }
  /**
   * Depth-first over the orders the operations may have taken effect in, with an explicit
   * stack (one frame per operation linearized so far: a long history must not overflow the
   * call stack). A frame is a state to expand: the register's value, how many operations that
   * must finish are done, and the next candidate to try.
   */
  interface Frame {
    readonly value: string | null
    readonly finished: number
    /** The operation this frame marked done to reach it (-1 for the first). */
    readonly chosen: number
    next: number
    minEndMs: number
  }
  const enter = (
    value: string | null,
    finished: number,
    chosen: number,
  ): Frame | boolean | "limit" => {
    if (finished === mustFinish) return true
    if (++explored > statesMax) return "limit"
    const memo = `${maskKey()}|${value === null ? "\u0000" : value}`
    if (seen.has(memo)) return false
    seen.add(memo)
    // Only an operation invoked before every pending operation's response can come next.
    let minEndMs = Number.POSITIVE_INFINITY
    // (Everything before the done prefix is done: start there.)
    for (let i = prefix; i < count; i++)
      if (done[i] === 0 && ops[i]!.endMs < minEndMs) minEndMs = ops[i]!.endMs
    return { value, finished, chosen, next: prefix, minEndMs }
  }
  const search = (initial: string | null): boolean | "limit" => {
    const first = enter(initial, 0, -1)
    if (typeof first !== "object") return first
    const stack: Array<Frame> = [first]
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!
      let descended = false
      while (frame.next < count) {
        const i = frame.next++
        const op = ops[i]!
        if (done[i] === 1) continue
        if (op.startMs > frame.minEndMs) {
          frame.next = count
          break
        }
        if (op.kind === "read" && op.value !== frame.value) continue
        mark(i)
        const child = enter(
          op.kind === "write" ? op.value : frame.value,
          frame.finished + (Number.isFinite(op.endMs) ? 1 : 0),
          i,
        )
        if (child === true || child === "limit") return child
        if (child === false) {
          unmark(i)
          continue
        }
        stack.push(child)
        descended = true
        break
      }
      if (descended) continue
      // Every candidate of this state failed: undo the step that led here.
      stack.pop()
      if (frame.chosen !== -1) unmark(frame.chosen)
    }
    return false
  }
  const found = search(initial)
  return found === true ? "ok" : found === "limit" ? "search-limit" : "not-linearizable"
}

/** Checks every key's history; every register starts missing (null). */
export const check = (history: ReadonlyArray<Operation>): Verdict => {
  const byKey = new Map<string, Array<Operation>>()
  for (const op of history) {
    const list = byKey.get(op.key)
    if (list === undefined) byKey.set(op.key, [op])
    else list.push(op)
  }
  for (const [key, operations] of byKey) {
    const outcome = checkKey(operations, null)
    if (outcome !== "ok") return { ok: false, key, reason: outcome, operations }
  }
  return { ok: true, checked: history.length }
}
