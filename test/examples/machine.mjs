// @understudy/machine: the heartbeat failure detector, a pure machine, stepped by hand.
import { FailureDetector } from "@understudy/machine"

const detector = FailureDetector.make({ intervalMs: 100, timeoutMs: 500 })
const started = detector.init({ self: "a", peers: ["b"], nowMs: 0 })
// No heartbeat from b for 500 ms: its time-out timer fires.
const { state, outputs } = detector.step(started.state, {
  _tag: "TimerFired",
  timer: FailureDetector.timeoutTimer("b"),
  nowMs: 500,
})
const events = outputs.filter((output) => output._tag === "Emit").map((output) => output.event)
console.log(
  JSON.stringify({
    events: events.map((event) => event._tag),
    suspected: FailureDetector.suspected(state),
  }),
)
