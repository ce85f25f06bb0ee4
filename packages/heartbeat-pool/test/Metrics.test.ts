/**
 * The recorder on the machine's own steps: a follower loses its leader, sends a check
 * message, stands and wins; the detection, election and failover durations, the counters,
 * and the two spans come out of those steps.
 */
import { describe, expect, it } from "@effect/vitest"
import { Machine as M } from "@understudy/machine"
import { TestTracer } from "@understudy/testkit"
import { Effect, Metric } from "effect"
import * as Machine from "../src/Machine.ts"
import type * as Message from "../src/Message.ts"
import * as Metrics from "../src/Metrics.ts"
import { fakeCrypto, license, timing } from "./support/sim.ts"

const servers = ["s1", "s2", "s3"]
const pool = Machine.make({ servers, ...timing, crypto: fakeCrypto, initialLicense: license(2) })

const heartbeat: Message.Peer = {
  _tag: "Heartbeat",
  term: 1,
  seq: 1,
  sequence: 1,
  authorityUntilMs: 0,
  wantRecord: false,
  live: servers,
  shareLife: 0,
  shareLimit: 0,
  merged: null,
}

/**
 * Server s2 of `pool` stepped by hand, each step given to the metrics recorder: `step` runs
 * one input and returns its outputs, `current` is the state after the latest.
 */
const recorded = () => {
  const record = Metrics.recorder("s2")
  let state = pool.init({ self: "s2", peers: ["s1", "s3"], nowMs: 0 }).state
  const step = (input: M.Input<Message.Peer, Machine.Command>) =>
    Effect.gen(function* () {
      const next = pool.step(state, input)
      yield* record({ before: state, after: next.state, outputs: next.outputs, nowMs: input.nowMs })
      state = next.state
      return next.outputs
    })
  return { step, current: () => state }
}

describe("heartbeat pool metrics", () => {
  it.effect(
    "a lost leader: detection at the check message, then an election won and the failover closed",
    () => {
      const tracer = TestTracer.make()
      const { spans } = tracer
      return Effect.gen(function* () {
        const { step, current } = recorded()
        yield* step(M.receive("s1", heartbeat, 10))
        expect(current().leader).toBe("s1")
        // The leader falls silent: ticks until the check message, then until the election.
        let atMs = 10
        while (current().checkSentMs === undefined && atMs < 2_000) {
          atMs += 50
          yield* step(M.timerFired(Machine.tickTimer, atMs))
        }
        const checkAtMs = atMs
        expect(checkAtMs).toBeGreaterThanOrEqual(10 + timing.followerTimeoutMs)
        while (current().role !== "candidate" && atMs < 4_000) {
          atMs += 50
          for (const timer of [Machine.tickTimer, Machine.electionTimer])
            yield* step(M.timerFired(timer, atMs))
        }
        expect(current().role).toBe("candidate")
        const term = current().durable.term
        yield* step(M.receive("s3", { _tag: "Vote", term, granted: true }, atMs + 5))
        expect(current().role).toBe("leader")

        const detection = yield* Metric.value(
          Metric.withAttributes(Metrics.detectionMs, { lost: "leader" }),
        )
        expect(detection.count).toBe(1)
        expect(detection.sum).toBe(checkAtMs - 10)
        const failover = yield* Metric.value(
          Metric.withAttributes(Metrics.failoverMs, { role: "leader" }),
        )
        expect(failover.count).toBe(1)
        expect(failover.sum).toBe(atMs + 5 - 10)
        const won = yield* Metric.value(
          Metric.withAttributes(Metrics.electionMs, { outcome: "won" }),
        )
        expect(won.count).toBe(1)
        for (const outcome of ["started", "won"]) {
          const counted = yield* Metric.value(Metric.withAttributes(Metrics.elections, { outcome }))
          expect(counted.count).toBe(1)
        }

        expect(spans.map((span) => [span.name, span.status._tag])).toEqual([
          ["heartbeat-pool.failover", "Ended"],
          ["heartbeat-pool.election", "Ended"],
        ])
        expect(TestTracer.attributes(spans[0]!)).toMatchObject({ outcome: "new-leader", term })
        expect(TestTracer.attributes(spans[1]!).outcome).toBe("won")
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map()), tracer.provide)
    },
  )

  it.effect("a check answered by the leader closes the failover span, records no failover", () =>
    Effect.gen(function* () {
      const { step, current } = recorded()
      yield* step(M.receive("s1", heartbeat, 10))
      let atMs = 10
      while (current().checkSentMs === undefined && atMs < 2_000) {
        atMs += 50
        yield* step(M.timerFired(Machine.tickTimer, atMs))
      }
      yield* step(M.receive("s1", { _tag: "CheckReply", term: 1 }, atMs + 5))
      expect(current().checkSentMs).toBeUndefined()
      expect(current().leader).toBe("s1")
      const failover = yield* Metric.value(
        Metric.withAttributes(Metrics.failoverMs, { role: "follower" }),
      )
      expect(failover.count).toBe(0)
      expect(
        (yield* Metric.value(Metric.withAttributes(Metrics.detectionMs, { lost: "leader" }))).count,
      ).toBe(1)
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())),
  )

  it.effect(
    "a newer term while following a leader is a failover too (another server noticed first)",
    () =>
      Effect.gen(function* () {
        const { step, current } = recorded()
        yield* step(M.receive("s1", heartbeat, 10))
        // s3 won term 2 while s2 still heard s1: its first heartbeat is the news.
        yield* step(M.receive("s3", { ...heartbeat, term: 2, seq: 1 }, 450))
        expect(current().durable.term).toBe(2)
        expect(current().leader).toBe("s3")
        const failover = yield* Metric.value(
          Metric.withAttributes(Metrics.failoverMs, { role: "follower" }),
        )
        expect([failover.count, failover.sum]).toEqual([1, 440])
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())),
  )
})

describe("a follower's gauges", () => {
  it.effect(
    "share seats, requests waiting and clients follow its share, its questions and its record",
    () =>
      Effect.gen(function* () {
        const { step } = recorded()
        const gauge = (metric: typeof Metrics.clients) =>
          Effect.map(
            Metric.value(Metric.withAttributes(metric, { server: "s2" })),
            (value) => value.value,
          )
        const gauges = Effect.all([
          gauge(Metrics.shareSeats),
          gauge(Metrics.requestsWaiting),
          gauge(Metrics.clients),
        ])
        const request = (client: string, nowMs: number) =>
          step(
            M.command<Machine.Command>(
              {
                _tag: "FromClient",
                from: client,
                message: { _tag: "Request", client, seq: 1, product: "cad", seats: 1 },
              },
              nowMs,
            ),
          )
        // The leader's heartbeat gives s2 (life 1) a share of one seat, its authority to 3,250.
        yield* step(
          M.receive(
            "s1",
            { ...heartbeat, authorityUntilMs: 3_250, shareLife: 1, shareLimit: 1 },
            3_000,
          ),
        )
        expect(yield* gauges).toEqual([1, 0, 0])
        // Granted from the share, without asking: the share is used up, the record has c1.
        yield* request("c1", 3_001)
        expect(yield* gauges).toEqual([0, 0, 1])
        // Beyond the share: the leader is asked, and the request waits for its answer.
        const asked = yield* request("c2", 3_002)
        expect(asked.some((output) => output._tag === "Send")).toBe(true)
        expect(yield* gauges).toEqual([0, 1, 1])
        yield* step(
          M.receive(
            "s1",
            {
              _tag: "Reserved",
              term: 1,
              client: "c2",
              seats: 1,
              refused: null,
              reservedAtMs: 3_002,
            },
            3_010,
          ),
        )
        expect(yield* gauges).toEqual([0, 0, 2])
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())),
  )
})
