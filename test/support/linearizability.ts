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
  const maskKey = () => {
    let text = ""
    for (let i = 0; i < count; i++) text += done[i] === 1 ? "1" : "0"
    return text
  }
  const search = (value: string | null, finished: number): boolean | "limit" => {
    if (finished === mustFinish) return true
    if (++explored > statesMax) return "limit"
    const memo = `${maskKey()}|${value === null ? "\u0000" : value}`
    if (seen.has(memo)) return false
    seen.add(memo)
    // Only an operation invoked before every pending operation's response can come next.
    let minEndMs = Number.POSITIVE_INFINITY
    for (let i = 0; i < count; i++)
      if (done[i] === 0 && ops[i]!.endMs < minEndMs) minEndMs = ops[i]!.endMs
    for (let i = 0; i < count; i++) {
      const op = ops[i]!
      if (done[i] === 1) continue
      if (op.startMs > minEndMs) break
      if (op.kind === "read" && op.value !== value) continue
      done[i] = 1
      const next = search(
        op.kind === "write" ? op.value : value,
        finished + (Number.isFinite(op.endMs) ? 1 : 0),
      )
      done[i] = 0
      if (next !== false) return next
    }
    return false
  }
  const found = search(initial, 0)
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
