/**
 * Machine guide: a protocol is a pure state machine. The heartbeat failure detector shipped
 * with @understudy/machine is stepped by hand here: time is an input, so a test (or a
 * simulator) decides when a timer fires.
 */
import { FailureDetector } from "@understudy/machine"
import { Effect } from "effect"

export const program = Effect.sync(() => {
  const detector = FailureDetector.make({ intervalMs: 100, timeoutMs: 500 })
  const { state } = detector.init({ self: "a", peers: ["b"], nowMs: 0 })
  // b stays silent; at 500 ms its time-out timer fires.
  const timer = FailureDetector.timeoutTimer("b")
  const next = detector.step(state, { _tag: "TimerFired", timer, nowMs: 500 })
  const events = next.outputs.flatMap((output) => (output._tag === "Emit" ? [output.event] : []))
  return { suspected: FailureDetector.suspected(next.state), events: events.map((e) => e._tag) }
})

if (import.meta.main) {
  console.log(Effect.runSync(program))
}
