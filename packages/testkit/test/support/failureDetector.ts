/**
 * The heartbeat failure detector's simulation setup and invariants, shared by the SimNet
 * suite (FailureDetector.sim.test.ts) and the FastSim suite: the same network, fault
 * schedule and checks, so the two simulators are held to one standard.
 */
import { FailureDetector } from "@understudy/machine"
import type { SimNet } from "@understudy/transport"
import * as FaultSchedule from "../../src/FaultSchedule.ts"
import type * as Simulation from "../../src/Simulation.ts"

export const nodes = ["n1", "n2", "n3", "n4", "n5"]
export const durationMs = 3_000

/** A healthy link: at most 40 ms, nothing lost or reordered. */
export const goodLink: SimNet.LinkConfig = {
  latency: { _tag: "Uniform", minMs: 1, maxMs: 40 },
  loss: 0,
  duplicate: 0.05,
  reorder: 0,
}
export const goodDelayMs = FaultSchedule.maxDelayMs(goodLink)

export const faults = {
  startMs: 200,
  // Faults stop 1.2 s before the end, then everything is healed: room to check convergence.
  endMs: durationMs - 1_200,
  gapMs: { minMs: 40, maxMs: 350 },
  maxDown: 2,
  degraded: { maxLatencyMs: 150, maxLoss: 0.6, maxDuplicate: 0.3, maxReorder: 0.3 },
}
export const worstDelayMs = FaultSchedule.maxDelayOverallMs({ ...faults, nodes, goodLink })

export type View = Simulation.View<FailureDetector.State>

/** How often each invariant's premise held, so a suite that checks nothing is noticed. */
export const coverage = { crashedAndSuspected: 0, suspectedExcused: 0, healthyAtEnd: 0 }

/**
 * Completeness: a node that crashed and was not restarted is suspected by every live node
 * within `timeoutMs + intervalMs + worstDelayMs` of its crash or of the observer's own
 * start, whichever is later (a heartbeat sent just before the crash may arrive late).
 */
export const completeness = (
  config: FailureDetector.Config,
): Simulation.Invariant<FailureDetector.State> => ({
  name: "completeness",
  check: (view: View) => {
    const boundMs = config.timeoutMs + config.intervalMs + worstDelayMs
    for (const [observer, state] of view.states) {
      const observerUpMs = view.network.node(observer).sinceMs
      for (const peer of view.nodes) {
        const peerState = view.network.node(peer)
        if (peer === observer || peerState.up) continue
        const fromMs = Math.max(peerState.sinceMs, observerUpMs)
        if (view.nowMs < fromMs + boundMs) continue
        if (state.peers[peer]?.status !== "Suspected") {
          return `${observer} still trusts ${peer}, down since ${peerState.sinceMs} ms (observer up since ${observerUpMs} ms, bound ${boundMs} ms)`
        }
        coverage.crashedAndSuspected++
      }
    }
    return undefined
  },
})

/**
 * Accuracy: no live node suspects a peer that has been up, over a link that has been uncut
 * and healthy (lossless, delay at most `goodDelayMs`), for at least the last `timeoutMs`.
 */
export const accuracy = (
  config: FailureDetector.Config,
): Simulation.Invariant<FailureDetector.State> => ({
  name: "accuracy",
  check: (view: View) => {
    const sinceMs = view.nowMs - config.timeoutMs
    // Up, and heard over an uncut, lossless link within the delay bound, since `sinceMs`.
    const trustworthy = (peer: string, observer: string): boolean => {
      const peerState = view.network.node(peer)
      if (!peerState.up || peerState.sinceMs > sinceMs) return false
      const link = view.network.link(peer, observer)
      const healthy =
        !link.cut && link.config.loss === 0 && FaultSchedule.maxDelayMs(link.config) <= goodDelayMs
      return healthy && link.sinceMs <= sinceMs
    }
    for (const [observer, state] of view.states) {
      for (const peer of FailureDetector.suspected(state)) {
        if (trustworthy(peer, observer)) {
          const peerState = view.network.node(peer)
          const link = view.network.link(peer, observer)
          return `${observer} suspects ${peer}, up since ${peerState.sinceMs} ms over a healthy link since ${link.sinceMs} ms`
        }
        coverage.suspectedExcused++
      }
      if (view.final) {
        for (const peer of view.nodes) {
          if (peer !== observer && trustworthy(peer, observer)) coverage.healthyAtEnd++
        }
      }
    }
    return undefined
  },
})
