/**
 * Twenty failovers in a row with real processes under usrsctp's client: the serving node is
 * SIGKILLed, the standby takes over, the killed node is restarted as the new standby (the
 * failback) and receives the association's state; then the other node is killed, and so on
 * (see `support/alternating.ts`). Every message is echoed exactly once and in order, and the
 * peer never reports the association lost.
 */
import { afterEach, describe, expect, it } from "@effect/vitest"
import * as Alternating from "./support/alternating.ts"
import * as App from "./support.ts"

afterEach(App.killAll)

const failureNotice = /SCTP_COMM_LOST|SCTP_SHUTDOWN|SCTP_CANT_STR_ASSOC|ABORT|Connection refused/

describe("alternating failovers under usrsctp's client", () => {
  it("20 failovers and failbacks: every message echoed once and in order", async () => {
    const outcome = await Alternating.run({ rounds: 20 })
    expect(outcome.failoverMs).toHaveLength(20)
    expect(outcome.echoed).toEqual(Array.from({ length: outcome.sent }, (_, i) => i + 1))
    expect(outcome.sent).toBe(20 * 4 + 3)
    expect(outcome.peerOutput).not.toMatch(failureNotice)
    const sorted = [...outcome.failoverMs].sort((a, b) => a - b)
    console.log(
      `[failovers] 20 rounds: failover p50 ${sorted[9]!.toFixed(0)} ms, max ${sorted[19]!.toFixed(0)} ms`,
    )
  }, 600_000)
})
