/**
 * The Promise facade over real UDP on loopback: three servers and two clients on a one-seat
 * license; one client holds the seat, the other is denied for capacity; the holder's server
 * is closed and the client re-attaches. The servers run with the caller's logger, tracer and
 * metrics registries.
 * Waits are for events, bounded generously (a loaded machine).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Eventually, Ports, TestTracer } from "@understudy/testkit"
import { ClusterKey, type Observability } from "@understudy/transport"
import { Effect, Layer, Metric } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { createClient, createServer, type PoolClient, type PoolServer } from "../src/Facade.ts"
import * as Metrics from "../src/Metrics.ts"
import * as Signing from "../src/Signing.ts"

const dir = mkdtempSync(join(tmpdir(), "heartbeat-pool-"))
const opened: Array<{ close(): Promise<void> }> = []
afterAll(async () => {
  for (const item of opened.reverse()) await item.close()
  rmSync(dir, { recursive: true, force: true })
})

const next = (emitter: PoolClient, tag: string, timeoutMs: number, seen?: Array<string>) =>
  new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(new Error(`no ${tag} within ${timeoutMs} ms; events: ${seen?.join(" ") ?? "?"}`)),
      timeoutMs,
    )
    emitter.once(tag, (event: Record<string, unknown>) => {
      clearTimeout(timer)
      resolve(event)
    })
  })

describe("Promise facade", () => {
  it("grants the only seat once, denies the second client, and re-attaches after the server closes; logs, spans and metrics go to the caller's logger, tracer and registry", async () => {
    const secret = ClusterKey.generate()
    const vendor = Signing.generateVendorKeys()
    const license = Signing.signLicense(vendor.privatePem, {
      product: "cad",
      seats: 1,
      expiresAtMs: 4e12,
      sequence: 1,
    })
    const ports = await Ports.freeUdpPorts(6)
    const members = ["s1", "s2", "s3"].map((id, index) => ({
      id,
      peer: { _tag: "Udp" as const, host: "127.0.0.1", port: ports[index]! },
      client: { _tag: "Udp" as const, host: "127.0.0.1", port: ports[index + 3]! },
    }))
    // Margins for a loaded machine (other suites may starve these processes for seconds): a
    // lease of 50 heartbeats, a leader lease of 7.
    const timing = {
      heartbeatIntervalMs: 100,
      followerTimeoutMs: 1_000,
      checkTimeoutMs: 300,
      leaderLeaseMs: 700,
      downAfterMs: 800,
      electionStaggerMs: 200,
      leaseMs: 5_000,
    }
    const logs: Array<Observability.LogEntry> = []
    const tracer = TestTracer.make()
    // Each server's metrics go to a registry of the caller's own.
    const registries = new Map(members.map((member) => [member.id, new Map()]))
    /** A metric's value in a server's registry. */
    const valueAt = <S>(id: string, metric: Metric.Metric<number, S>): Promise<S> =>
      Effect.runPromise(
        Metric.value(metric).pipe(
          Effect.provideService(Metric.MetricRegistry, registries.get(id) as never),
        ),
      )
    const servers = new Map<string, PoolServer>()
    for (const member of members) {
      const server = await createServer({
        logger: (entry) => logs.push(entry),
        layer: Layer.merge(
          tracer.layer,
          Layer.succeed(Metric.MetricRegistry, registries.get(member.id) as never),
        ),
        self: member.id,
        members,
        poolSecret: secret,
        vendorPublicKey: vendor.publicPem,
        stateDir: join(dir, member.id),
        license,
        timing,
      })
      servers.set(member.id, server)
      opened.push(server)
    }
    const clientOptions = (id: string) => ({
      id,
      bind: { _tag: "Udp" as const, host: "127.0.0.1", port: 0 },
      servers: members.map((member) => ({ id: member.id, address: member.client })),
      poolSecret: secret,
      product: "cad",
      heartbeatInterval: 100,
    })
    const first = await createClient(clientOptions("first"))
    opened.push(first)
    // What the holder saw, for the message of a failed wait.
    const seen: Array<string> = []
    for (const tag of ["Granted", "Reattached", "Lost", "Denied"])
      first.on(tag, (event: Record<string, unknown>) =>
        seen.push(
          `${tag}@${String(event.server)}${event.reason ? `:${String(event.reason)}` : ""}`,
        ),
      )
    const granted = await next(first, "Granted", 60_000)
    const second = await createClient(clientOptions("second"))
    opened.push(second)
    for (;;) {
      const denied = await next(second, "Denied", 60_000)
      if (denied.reason === "capacity") break
    }
    const holder = String(granted.server)
    // In the caller's registries: the holder's server counts the seat; the servers count the
    // clients' heartbeats and the second client's refusal for capacity (the first client may
    // have walked on from a starved holder: counted over every server).
    const held = Metric.withAttributes(Metrics.seatsInUse, { server: holder, scope: "server" })
    await Eventually.promise(
      "the holder's seat gauge at 1",
      async () => (await valueAt(holder, held)).value === 1,
      { within: "10 seconds", every: 50 },
    )
    /** Resolves once `metric` counted at some server. */
    const counted = (what: string, metric: Metric.Metric<number, Metric.CounterState<number>>) =>
      Eventually.promise(
        what,
        async () => {
          let sum = 0
          for (const member of members) sum += (await valueAt(member.id, metric)).count
          return sum > 0
        },
        { within: "10 seconds", every: 50 },
      )
    await counted("client heartbeats counted", Metrics.clientHeartbeats)
    await counted(
      "the second client's refusal counted",
      Metric.withAttributes(Metrics.refusals, { reason: "capacity" }),
    )
    const reattached = next(first, "Reattached", 60_000, seen)
    await servers.get(holder)!.close()
    expect((await reattached).server).not.toBe(holder)
    expect((await second.state()).phase).toBe("requesting")
    // The first leader's election: a span of the caller's tracer, won, and its log line at the
    // caller's logger, annotated with the server, its role and term.
    const won = tracer
      .ended("heartbeat-pool.election")
      .filter((span) => span.attributes.get("outcome") === "won")
    expect(won.length).toBeGreaterThanOrEqual(1)
    const leader = String(won[0]!.attributes.get("server"))
    const became = logs.find(
      (entry) => entry.message.startsWith("BecameLeader") && entry.annotations.server === leader,
    )
    expect(became?.level).toBe("Info")
    // Events about one client are Debug, below the default level: none reached the logger.
    expect(logs.filter((entry) => /^(Allocated|Carried|Released)\b/.test(entry.message))).toEqual(
      [],
    )
    // The role and term are read when the line is logged: a starved leader may have lost its
    // lease by then, so its role may be another and its term later.
    const { role, term } = became!.annotations
    expect(["leader", "follower", "candidate"]).toContain(role)
    expect(term).toBeGreaterThanOrEqual(Number(won[0]!.attributes.get("term")))
  }, 240_000)
})
