/**
 * Waiting on real processes in the tests that SIGKILL one: until a killed process is gone,
 * and until something is seen, both bounded.
 */
import { readFileSync } from "node:fs"
import { Effect } from "effect"

/**
 * Blocks this process (and so the clients in it) until process `pid` is a zombie or gone: its
 * sockets are closed then. Bounded: 30 s.
 */
export const holdUntilGone = (pid: number) => {
  const pause = new Int32Array(new SharedArrayBuffer(4))
  for (let waited = 0; waited < 30_000; waited += 5) {
    let state: string
    try {
      // `pid (comm) S ...`: the state follows the last parenthesis.
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
      state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3)
    } catch {
      return
    }
    if (state === "Z" || state === "X") return
    Atomics.wait(pause, 0, 0, 5)
  }
  throw new Error(`process ${pid} still running 30 s after SIGKILL`)
}

/** Polls `check` every 20 ms, at most `timeoutMs`. */
export const until = (what: string, check: () => boolean, timeoutMs: number) =>
  Effect.gen(function* () {
    for (let waited = 0; !check(); waited += 20) {
      if (waited > timeoutMs)
        return yield* Effect.die(new Error(`not within ${timeoutMs} ms: ${what}`))
      yield* Effect.sleep(20)
    }
  })
