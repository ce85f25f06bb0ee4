/**
 * The driver's metrics and spans after a failover, on SimNet under the TestClock: three
 * servers (each with a metrics registry of its own, as three processes would have) share a
 * memory name server; the master's host crashes; a survivor records the detection, the
 * election, the takeover and the failover, its role and term, and the replication and reads
 * of the writes made before and after.
 */
import { describe, expect, it } from "@effect/vitest"
import { Authentication } from "@understudy/machine"
import { MemoryStore, NameServer } from "@understudy/store"
import { TestTracer } from "@understudy/testkit"
import { Address, SimNet } from "@understudy/transport"
import { Effect, Layer, Logger, Metric, Random, References, Schema } from "effect"
import { TestClock } from "effect/testing"
import * as Machine from "../src/Machine.ts"
import * as Metrics from "../src/Metrics.ts"
import * as ServerGroup from "../src/ServerGroup.ts"
import { driven } from "./support/clock.ts"

type Req = { readonly add: number }
const ids = ["s1", "s2", "s3"]
const servers = ids.map((id, i) => ({ id, capacity: { cpu: 8 - i, bandwidthMbps: 100 } }))
const addresses = Object.fromEntries(ids.map((id) => [id, Address.udp(id, 7000)]))
const timing = { detectionPeriod: 20, inquiryTimeout: 100, baseDelay: 50, floorDelay: 15 }

type Server = ServerGroup.ServerGroup<number, Req, number>
type Registry = Map<string, unknown>

/** `effect` with `registry` as its metrics registry (a server's calls count there). */
const valueIn = <A, E>(registry: Registry, read: Effect.Effect<A, E>) =>
  read.pipe(Effect.provideService(Metric.MetricRegistry, registry as never))

/**
 * The group on a new SimNet, each server with a metrics registry of its own (as three
 * processes would have), and a wait for a serving master that moves the clock on.
 */
const startGroup = (extra: Partial<ServerGroup.Options<number, Req, number>> = {}) =>
  Effect.gen(function* () {
    const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
    const nameServer = yield* Layer.build(NameServer.layer.pipe(Layer.provide(MemoryStore.layer)))
    const running = new Map<string, Server>()
    const registries = new Map<string, Registry>()
    for (const id of ids) {
      const registry: Registry = new Map()
      registries.set(id, registry)
      yield* net.run(
        id,
        Effect.gen(function* () {
          const server = yield* ServerGroup.make<number, Req, number>({
            group: "counter",
            self: id,
            servers,
            addresses,
            authentication: Authentication.insecure,
            request: Schema.Struct({ add: Schema.Int }),
            initial: 0,
            apply: (state, request) => [state + request.add, state + request.add],
            registrationTtl: 500,
            submitTimeout: 1_000,
            ...timing,
            ...extra,
          })
          running.set(id, server)
          yield* Effect.never
        }).pipe(
          Effect.provide(nameServer),
          Effect.provideService(Metric.MetricRegistry, registry as never),
        ),
      )
    }
    /** Advances the clock until a server is a serving, ready master (bounded). */
    const servingMaster = (among: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        for (let elapsed = 0; elapsed < 5_000; elapsed += 10) {
          for (const id of among) {
            const server = running.get(id)
            if (server === undefined) continue
            const status = yield* server.status
            if (status.role === "master" && status.serving && status.ready) return id
          }
          yield* TestClock.adjust(10)
        }
        return yield* Effect.die(new Error("no serving master within 5 s"))
      })

    return { net, running, registries, servingMaster }
  })

describe("staggered election metrics", () => {
  it.effect(
    "a crashed master: a survivor records detection, election, takeover and failover, its role and term",
    () => {
      const tracer = TestTracer.make()
      const logs: Array<{ readonly message: unknown; readonly annotations: object }> = []
      const collect = Logger.make<unknown, void>(({ message, fiber }) => {
        logs.push({ message, annotations: fiber.getRef(References.CurrentLogAnnotations) })
      })
      return Effect.gen(function* () {
        const { net, running, registries, servingMaster } = yield* startGroup()
        const first = yield* servingMaster(ids)
        const master = running.get(first)!
        for (let i = 1; i <= 3; i++)
          yield* valueIn(
            registries.get(first)!,
            driven(master.submit({ clientId: "c", requestId: i, request: { add: i } })),
          )
        expect(yield* valueIn(registries.get(first)!, driven(master.read))).toBe(6)
        // The entry and byte counters are added to each detection period.
        yield* TestClock.adjust(timing.detectionPeriod)
        const before = yield* valueIn(
          registries.get(first)!,
          Metric.value(Metrics.entriesCommitted),
        )
        // Three writes and the new master's no-op, at least, are committed on the master.
        expect(before.count).toBeGreaterThanOrEqual(4)
        const termBefore = (yield* master.status).term

        yield* net.crash(first)
        const survivors = ids.filter((id) => id !== first)
        const second = yield* servingMaster(survivors)
        // The backups hear of it within a detection period or two.
        yield* TestClock.adjust(100)
        const backup = survivors.find((id) => id !== second)!
        const newTerm = (yield* running.get(second)!.status).term
        expect(newTerm).toBeGreaterThan(termBefore)

        const registry = registries.get(second)!
        const failover = yield* valueIn(
          registry,
          Metric.value(Metric.withAttributes(Metrics.failoverMs, { role: "master" })),
        )
        expect(failover.count).toBe(1)
        // At least the inquiry time-out (the detection) and the election delay went by.
        expect(failover.sum).toBeGreaterThanOrEqual(timing.inquiryTimeout)
        const detection = yield* valueIn(registry, Metric.value(Metrics.detectionMs))
        expect(detection.count).toBe(1)
        expect(detection.sum).toBeGreaterThanOrEqual(timing.inquiryTimeout)
        expect(detection.sum).toBeLessThan(failover.sum)
        const takeover = yield* valueIn(registry, Metric.value(Metrics.takeoverMs))
        expect(takeover.count).toBe(1)
        // Two elections: the first (at the start, lost to the first master), then this one.
        for (const [outcome, times] of [
          ["started", 2],
          ["lost", 1],
          ["won", 1],
        ] as const) {
          const counted = yield* valueIn(
            registry,
            Metric.value(Metric.withAttributes(Metrics.elections, { outcome })),
          )
          expect(counted.count, outcome).toBe(times)
        }
        const gauge = (metric: typeof Metrics.term, attributes: Record<string, string> = {}) =>
          valueIn(
            registry,
            Metric.value(Metric.withAttributes(metric, { server: second, ...attributes })),
          )
        expect((yield* gauge(Metrics.term)).value).toBe(newTerm)
        expect((yield* gauge(Metrics.role, { role: "master" })).value).toBe(1)
        expect((yield* gauge(Metrics.role, { role: "backup" })).value).toBe(0)
        expect((yield* gauge(Metrics.serversInView)).value).toBe(2)

        // The backup that did not win closed its failover as a backup.
        const backupFailover = yield* valueIn(
          registries.get(backup)!,
          Metric.value(Metric.withAttributes(Metrics.failoverMs, { role: "backup" })),
        )
        expect(backupFailover.count).toBe(1)

        // Replication and reads on the new master; a backup refuses (not the master).
        const next = running.get(second)!
        expect(
          yield* valueIn(
            registry,
            driven(next.submit({ clientId: "c", requestId: 4, request: { add: 4 } })),
          ),
        ).toBe(10)
        expect(yield* valueIn(registry, driven(next.read))).toBe(10)
        const refused = yield* Effect.flip(
          valueIn(registries.get(backup)!, driven(running.get(backup)!.read)),
        )
        expect(refused._tag).toBe("NotMaster")
        yield* TestClock.adjust(timing.detectionPeriod * 2)
        expect(
          (yield* valueIn(
            registry,
            Metric.value(
              Metric.withAttributes(Metrics.reads, { mode: "index", outcome: "answered" }),
            ),
          )).count,
        ).toBe(1)
        expect(
          (yield* valueIn(
            registries.get(backup)!,
            Metric.value(
              Metric.withAttributes(Metrics.refusals, { op: "read", reason: "not-master" }),
            ),
          )).count,
        ).toBe(1)
        expect(
          (yield* valueIn(registry, Metric.value(Metrics.replicationBytes))).count,
        ).toBeGreaterThan(0)
        expect(
          (yield* valueIn(registry, Metric.value(Metrics.entriesAppended))).count,
        ).toBeGreaterThanOrEqual(6)
        // The live backup caught up; the crashed one lags by what was written since.
        expect((yield* gauge(Metrics.replicationLagEntries, { backup })).value).toBe(0)
        expect(
          (yield* gauge(Metrics.replicationLagEntries, { backup: first })).value,
        ).toBeGreaterThan(0)

        const ended = (name: string, server: string) =>
          tracer.spans
            .filter((span) => span.name === name && span.attributes.get("server") === server)
            .map((span) => [span.status._tag, span.attributes.get("outcome")])
        expect(ended("staggered-election.failover", second)).toEqual([["Ended", "new-master"]])
        expect(ended("staggered-election.takeover", second)).toEqual([["Ended", "serving"]])
        expect(ended("staggered-election.election", second)).toEqual([
          ["Ended", "lost"],
          ["Ended", "won"],
        ])
        expect(ended("staggered-election.failover", backup)).toEqual([["Ended", "new-master"]])
        expect(Machine.termOf((yield* next.status).epoch)).toBe(newTerm)

        // The role change is logged at info with the server, its new role and term.
        const changed = logs.filter(
          (entry) =>
            String(entry.message).includes("role: waiting -> master") &&
            (entry.annotations as Record<string, unknown>).node === second,
        )
        expect(changed.map((entry) => entry.annotations)).toEqual([
          expect.objectContaining({ node: second, role: "master", term: newTerm }),
        ])
      }).pipe(
        tracer.provide,
        Effect.scoped,
        Effect.provide(Logger.layer([collect])),
        Random.withSeed(1),
      )
    },
  )

  it.effect(
    "leader-lease reads: within the lease answered at once; cut off from the backups past it, a round that no majority confirms",
    () =>
      Effect.gen(function* () {
        const { net, running, registries, servingMaster } = yield* startGroup({ reads: "lease" })
        const first = yield* servingMaster(ids)
        const registry = registries.get(first)!
        const master = running.get(first)!
        const onMaster = <A, E>(effect: Effect.Effect<A, E>) => valueIn(registry, driven(effect))
        expect(
          yield* onMaster(master.submit({ clientId: "c", requestId: 1, request: { add: 2 } })),
        ).toBe(2)
        expect(yield* onMaster(master.read)).toBe(2)
        const counted = (metric: typeof Metrics.reads, attributes: Record<string, string>) =>
          Effect.map(
            valueIn(registry, Metric.value(Metric.withAttributes(metric, attributes))),
            (value) => value.count,
          )
        expect(yield* counted(Metrics.leaseReads, { lease: "held" })).toBe(1)
        expect(yield* counted(Metrics.leaseReads, { lease: "not-held" })).toBe(0)

        // Past the lease (98 ms) with no backup's acknowledgement: a round, never confirmed.
        yield* net.partition(
          [first],
          ids.filter((id) => id !== first),
        )
        yield* TestClock.adjust(120)
        const refused = yield* Effect.flip(onMaster(master.read))
        expect(refused._tag).toBe("GroupUnavailable")
        expect(yield* counted(Metrics.leaseReads, { lease: "not-held" })).toBe(1)
        expect(yield* counted(Metrics.reads, { mode: "lease", outcome: "answered" })).toBe(1)
        expect(yield* counted(Metrics.reads, { mode: "lease", outcome: "refused" })).toBe(1)
        expect(yield* counted(Metrics.refusals, { op: "read", reason: "no-majority" })).toBe(1)
      }).pipe(Effect.scoped, Random.withSeed(2)),
  )
})
