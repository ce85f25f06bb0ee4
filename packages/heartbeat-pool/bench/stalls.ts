/**
 * How a bench process's event loop fared. Prints `{"t":"stall","wallMs","ms"}` whenever the
 * loop ran more than `thresholdMs` late: a timer due every `everyMs` that fired late measures
 * the time the loop spent elsewhere (a long step, a synchronous fsync, the garbage collector,
 * or no CPU). Besides, the bench writes commands on the process's stdin, one a line: `mark`
 * starts a window of `perf_hooks.monitorEventLoopDelay`; `report` ends it and prints
 * `{"t":"delay","p50Ms","p99Ms","maxMs","meanMs"}`. With `BENCH_CPU_PROFILE_DIR` set,
 * `profile` starts the V8 CPU profiler (starting it stalls a big process for a second or
 * more: the bench does it well before the kill) and `report` writes the profile to that
 * directory, named after `BENCH_PROCESS`. The bench reads them around a kill to tell a stalled process from a slow
 * protocol, and where its time went.
 */
import { writeFileSync } from "node:fs"
import { Session } from "node:inspector"
import { join } from "node:path"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { createInterface } from "node:readline"

const print = (line: Record<string, unknown>) =>
  void process.stdout.write(`${JSON.stringify(line)}\n`)

/** The V8 profiler of this process, for the window between `mark` and `report`. */
const profiler = (dir: string | undefined) => {
  if (dir === undefined || dir === "") return undefined
  const session = new Session()
  session.connect()
  return {
    start: () => {
      session.post("Profiler.enable")
      session.post("Profiler.start")
    },
    stop: () =>
      session.post("Profiler.stop", (error, result) => {
        if (error !== null) return
        const name = process.env.BENCH_PROCESS ?? String(process.pid)
        writeFileSync(join(dir, `${name}.cpuprofile`), JSON.stringify(result.profile))
      }),
  }
}

export const watchStalls = (everyMs = 10, thresholdMs = 30): void => {
  let expected = performance.now() + everyMs
  setInterval(() => {
    const now = performance.now()
    const lateMs = now - expected
    if (lateMs > thresholdMs)
      print({ t: "stall", wallMs: Math.round(Date.now() - lateMs), ms: Math.round(lateMs) })
    expected = now + everyMs
  }, everyMs).unref()

  // 10 ms resolution: finer sampling would itself load a process already short of CPU.
  const delay = monitorEventLoopDelay({ resolution: 10 })
  const profile = profiler(process.env.BENCH_CPU_PROFILE_DIR)
  const ms = (ns: number) => Math.round(ns / 1e5) / 10
  createInterface({ input: process.stdin }).on("line", (command) => {
    if (command === "mark") {
      delay.reset()
      delay.enable()
    } else if (command === "profile") {
      profile?.start()
    } else if (command === "report") {
      delay.disable()
      profile?.stop()
      print({
        t: "delay",
        wallMs: Date.now(),
        p50Ms: ms(delay.percentile(50)),
        p99Ms: ms(delay.percentile(99)),
        maxMs: ms(delay.max),
        meanMs: ms(delay.mean),
      })
    }
  })
  process.stdin.unref()
}
