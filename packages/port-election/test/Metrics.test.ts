import { randomBytes } from "node:crypto"
import * as net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Address, NodeTransport, type Transport } from "@understudy/transport"
import { Effect, Exit, type Layer, Metric, Redacted, Scope } from "effect"
import * as Election from "../src/Election.ts"
import { Grants } from "../src/Grants.ts"
import * as Metrics from "../src/Metrics.ts"
import { recording } from "./support/transport.ts"

const member = {
  instanceId: "m",
  pid: 1,
  role: "subordinate",
  metadata: {},
  joinedAtMs: 0,
  holdings: [],
  waiting: [],
} as never

/** A supervisor and a subordinate on one address, each in a scope of its own. */
const supervisorAndSubordinate = (supervisorLayer: Layer.Layer<Transport.Transport>) =>
  Effect.gen(function* () {
    const address = Address.abstract(`understudy-test-${randomBytes(6).toString("hex")}`)
    const start = (scope: Scope.Scope, layer: Layer.Layer<Transport.Transport>) =>
      Election.make({
        program: "metrics-test",
        address,
        secret: Redacted.make(new Uint8Array(32).fill(7)),
        keepAlive: { interval: 100, timeout: 600 },
        grace: 500,
      }).pipe(Scope.provide(scope), Effect.provide(layer))
    const supervisorScope = yield* Scope.make()
    const subordinateScope = yield* Scope.make()
    yield* Effect.addFinalizer(() =>
      Effect.andThen(
        Scope.close(subordinateScope, Exit.void),
        Scope.close(supervisorScope, Exit.void),
      ),
    )
    const supervisor = yield* start(supervisorScope, supervisorLayer)
    const subordinate = yield* start(subordinateScope, NodeTransport.layer)
    expect((yield* supervisor.role)._tag).toBe("Supervisor")
    expect((yield* subordinate.role)._tag).toBe("Subordinate")
    return { supervisorScope, subordinate }
  })

/** Until the subordinate took over (its loss of the supervisor is recorded before). */
const tookOver = (election: Election.PortElection["Service"]) =>
  Effect.gen(function* () {
    while ((yield* election.role)._tag !== "Supervisor") yield* Effect.sleep(10)
  }).pipe(Effect.timeout(20_000))

const detections = (reason: string) =>
  Effect.map(
    Metric.value(Metric.withAttributes(Metrics.detectionMs, { reason })),
    (state) => state.count,
  )

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

  it.effect("the supervisor's permit gauges follow its grants, by resource, and end at zero", () =>
    Effect.gen(function* () {
      const held = (resource: string) =>
        Effect.map(
          Metric.value(Metric.withAttributes(Metrics.permitsHeld, { resource })),
          (state) => state.value,
        )
      const waiting = (resource: string) =>
        Effect.map(
          Metric.value(Metric.withAttributes(Metrics.permitsWaiting, { resource })),
          (state) => state.value,
        )
      const grants = new Grants()
      grants.acquire("a", "1", "db", 2)
      grants.acquire("b", "2", "db", 2)
      grants.acquire("c", "3", "db", 2)
      grants.acquire("a", "4", "lock", 1)
      let reported = yield* Metrics.recordPermits(grants.counts(), new Map())
      expect([yield* held("db"), yield* waiting("db")]).toEqual([2, 1])
      expect([yield* held("lock"), yield* waiting("lock")]).toEqual([1, 0])
      grants.release("a", "lock")
      grants.release("a", "db")
      reported = yield* Metrics.recordPermits(grants.counts(), reported)
      // c got a's permit of db; nobody uses lock any more.
      expect([yield* held("db"), yield* waiting("db")]).toEqual([2, 0])
      expect([yield* held("lock"), yield* waiting("lock")]).toEqual([0, 0])
      // The term ends: nothing is held at this instance as supervisor.
      yield* Metrics.recordPermits(new Map(), reported)
      expect([yield* held("db"), yield* waiting("db")]).toEqual([0, 0])
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())),
  )

  it.live("an election given up moves the failed-elections counter, by error", () =>
    Effect.gen(function* () {
      // Something that is not a supervisor holds the address: it answers in another protocol.
      const sockets = new Set<net.Socket>()
      const server = net.createServer((socket) => {
        sockets.add(socket)
        socket.on("error", () => {})
        socket.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
      })
      yield* Effect.acquireRelease(
        Effect.promise(
          () => new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve)),
        ),
        () =>
          Effect.promise(() => {
            for (const socket of sockets) socket.destroy()
            return new Promise((resolve) => server.close(resolve))
          }),
      )
      const port = (server.address() as net.AddressInfo).port
      const failed = Metric.withAttributes(Metrics.electionsFailed, { error: "StrangerOnAddress" })
      expect((yield* Metric.value(failed)).count).toBe(0)
      const error = yield* Effect.flip(
        Election.make({
          program: "metrics-test",
          address: Address.tcp("127.0.0.1", port),
          secret: Redacted.make(new Uint8Array(32).fill(7)),
        }),
      )
      expect(error._tag).toBe("StrangerOnAddress")
      expect((yield* Metric.value(failed)).count).toBe(1)
    }).pipe(
      Effect.scoped,
      Effect.provide(NodeTransport.layer),
      Effect.provideService(Metric.MetricRegistry, new Map()),
    ),
  )
  it.live("a supervisor that stops on purpose says so: its subordinate records no detection", () =>
    Effect.gen(function* () {
      const { supervisorScope, subordinate } = yield* supervisorAndSubordinate(NodeTransport.layer)
      // Its Resigning comes before its connections close (the address is freed first).
      yield* Scope.close(supervisorScope, Exit.void)
      yield* tookOver(subordinate)
      expect(yield* detections("End")).toBe(0)
      expect(yield* detections("Reset")).toBe(0)
      expect(yield* detections("Timeout")).toBe(0)
    }).pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map())),
  )

  it.live("a subordinate records the time it took to notice its supervisor's end", () =>
    Effect.gen(function* () {
      const transport = recording()
      const { supervisorScope, subordinate } = yield* supervisorAndSubordinate(transport.layer)
      expect(yield* detections("End")).toBe(0)
      // Killed: its connections end with nothing said (the kernel closes a dead process's
      // sockets), then its program stops.
      yield* Effect.forEach(transport.connections, (connection) => connection.close, {
        discard: true,
      })
      yield* Scope.close(supervisorScope, Exit.void)
      yield* tookOver(subordinate)
      expect(yield* detections("End")).toBe(1)
      expect(yield* detections("Reset")).toBe(0)
      expect(yield* detections("Timeout")).toBe(0)
      const supervisorsLost = yield* Metric.value(Metrics.supervisorsLost)
      expect(supervisorsLost.count).toBe(1)
    }).pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map())),
  )
})
