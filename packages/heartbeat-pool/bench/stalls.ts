/**
 * Prints `{"t":"stall","wallMs","ms"}` whenever this process's event loop ran more than
 * `thresholdMs` late: a timer due every `everyMs` that fired late measures the time the loop
 * spent elsewhere (a long step, a synchronous fsync, the garbage collector, or no CPU). The
 * bench reads them around a kill to tell a stalled process from a slow protocol.
 */
export const watchStalls = (everyMs = 10, thresholdMs = 30): void => {
  let expected = performance.now() + everyMs
  setInterval(() => {
    const now = performance.now()
    const lateMs = now - expected
    if (lateMs > thresholdMs)
      process.stdout.write(
        `${JSON.stringify({ t: "stall", wallMs: Math.round(Date.now() - lateMs), ms: Math.round(lateMs) })}\n`,
      )
    expected = now + everyMs
  }, everyMs).unref()
}
