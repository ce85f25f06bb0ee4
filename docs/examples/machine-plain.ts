/**
 * Machine guide, without Effect: a machine is plain data and functions, so code that does
 * not use Effect steps it directly. The same failure detector as the Effect example: time is
 * an input, and the caller decides when a timer fires.
 */
import { FailureDetector } from "@understudy/machine"

export const main = () => {
  const detector = FailureDetector.make({ intervalMs: 100, timeoutMs: 500 })
  const { state } = detector.init({ self: "a", peers: ["b"], nowMs: 0 })
  // b stays silent; at 500 ms its time-out timer fires.
  const timer = FailureDetector.timeoutTimer("b")
  const next = detector.step(state, { _tag: "TimerFired", timer, nowMs: 500 })
  const events = next.outputs.flatMap((output) => (output._tag === "Emit" ? [output.event] : []))
  return { suspected: FailureDetector.suspected(next.state), events: events.map((e) => e._tag) }
}

if (import.meta.main) {
  console.log(main())
}
