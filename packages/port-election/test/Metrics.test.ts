import { describe, expect, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import * as Metrics from "../src/Metrics.ts"

const member = {
  instanceId: "m",
  pid: 1,
  role: "subordinate",
  metadata: {},
  joinedAtMs: 0,
  holdings: [],
  waiting: [],
} as never

describe("port-election metrics", () => {
  it.effect("a failover's duration runs from the supervisor's loss to the next role", () =>
    Effect.gen(function* () {
      const record = Metrics.recorder()
      yield* record({ _tag: "BecameSubordinate", supervisorId: "s", atMs: 100 })
      yield* record({ _tag: "MemberJoined", member })
      yield* record({ _tag: "MemberJoined", member })
      yield* record({ _tag: "MemberLeft", member, reason: "closed" })
      yield* record({ _tag: "SupervisorLost", supervisorId: "s", reason: "reset", atMs: 1_000 })
      yield* record({ _tag: "Elected", instanceId: "me", atMs: 1_042 })
      yield* record({ _tag: "PermitLost", resource: "db" })
      const failover = yield* Metric.value(
        Metric.withAttributes(Metrics.failoverMs, { role: "supervisor" }),
      )
      expect(failover.count).toBe(1)
      expect(failover.sum).toBe(42)
      expect(
        (yield* Metric.value(Metric.withAttributes(Metrics.failoverMs, { role: "subordinate" })))
          .count,
      ).toBe(0)
      expect(
        (yield* Metric.value(Metric.withAttributes(Metrics.elections, { role: "subordinate" })))
          .count,
      ).toBe(1)
      expect(
        (yield* Metric.value(Metric.withAttributes(Metrics.elections, { role: "supervisor" })))
          .count,
      ).toBe(1)
      expect((yield* Metric.value(Metrics.members)).value).toBe(1)
      expect((yield* Metric.value(Metrics.supervisorsLost)).count).toBe(1)
      expect(
        (yield* Metric.value(Metric.withAttributes(Metrics.permitsLost, { resource: "db" }))).count,
      ).toBe(1)
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())),
  )
})
