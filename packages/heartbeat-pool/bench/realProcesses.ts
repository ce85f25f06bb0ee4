/**
 * The benchmark's real-process case: three servers as OS processes on loopback, clients in
 * this process (one UDP socket each), the leader SIGKILLed once every client holds a seat;
 * per client of the killed leader, the time from the kill to its `Reattached` event, in
 * heartbeat intervals.
 *
 * Half the clients detect a dead server as the client did before (3 heartbeats unanswered,
 * no quicker retry): the baseline, measured in the same run against the same servers.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { JsonLinesProcess as Jl, Ports } from "@understudy/testkit"
import { ClusterKey } from "@understudy/transport"
import { Redacted } from "effect"
import { createClient, type PoolClient } from "../src/Facade.ts"
import * as Signing from "../src/Signing.ts"

export interface RealRun {
  /** Re-attachment times of the clients of the killed leader, in heartbeat intervals. */
  readonly current: ReadonlyArray<number>
  readonly baseline: ReadonlyArray<number>
  /** Clients of the killed leader that did not re-attach within the wait. */
  readonly missing: number
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const waitFor = async (what: string, check: () => boolean, timeoutMs: number) => {
  const deadline = performance.now() + timeoutMs
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`bench: not within ${timeoutMs} ms: ${what}`)
    await sleep(20)
  }
}

export const realRun = async (clientCount: number, heartbeatMs: number): Promise<RealRun> => {
  const dir = mkdtempSync(join(tmpdir(), "heartbeat-pool-bench-"))
  const servers = new Map<string, Jl.JsonLinesProcess>()
  const clients: Array<PoolClient> = []
  try {
    const secret = ClusterKey.generate()
    const vendor = Signing.generateVendorKeys()
    const license = Signing.signLicense(vendor.privatePem, {
      product: "cad",
      seats: clientCount,
      expiresAtMs: 4e12,
      sequence: 1,
    })
    const ports = await Ports.freeUdpPorts(6)
    const members = ["s1", "s2", "s3"].map((id, index) => ({
      id,
      peer: { _tag: "Udp" as const, host: "127.0.0.1", port: ports[index]! },
      client: { _tag: "Udp" as const, host: "127.0.0.1", port: ports[index + 3]! },
    }))
    const timing = {
      heartbeatIntervalMs: heartbeatMs,
      followerTimeoutMs: heartbeatMs * 5,
      checkTimeoutMs: heartbeatMs * 2,
      leaderLeaseMs: Math.round(heartbeatMs * 3.5),
      downAfterMs: heartbeatMs * 4,
      electionStaggerMs: Math.round(heartbeatMs * 1.5),
      leaseMs: heartbeatMs * 40,
    }
    for (const member of members) {
      const options = {
        self: member.id,
        members,
        vendorPublicKey: vendor.publicPem,
        stateDir: join(dir, member.id),
        license,
        timing,
      }
      servers.set(
        member.id,
        new Jl.JsonLinesProcess(
          join(import.meta.dirname, "serverProcess.ts"),
          [JSON.stringify(options)],
          {
            env: { POOL_SECRET_HEX: Buffer.from(Redacted.value(secret)).toString("hex") },
          },
        ),
      )
    }
    for (const server of servers.values()) await server.line("ready", 30_000)
    /**
     * The server leading the highest term, by its lines: a `BecameLeader` not followed by a
     * `SteppedDown` of that term (on a loaded machine the first leader may not last).
     */
    const currentLeader = (): string | undefined => {
      let best: { readonly id: string; readonly term: number } | undefined
      for (const [id, server] of servers) {
        let led: number | undefined
        for (const line of server.lines) {
          if (line.t === "BecameLeader") led = Number(line.term)
          else if (line.t === "SteppedDown" && Number(line.term) === led) led = undefined
        }
        if (led !== undefined && (best === undefined || led > best.term)) best = { id, term: led }
      }
      return best?.id
    }
    await waitFor("a leader", () => currentLeader() !== undefined, 30_000)
    // Clients come once the leader settled (it grants no new seat for a lease after its
    // election): those that ask it first then hold their seat there, not at a follower.
    await sleep(timing.leaseMs + heartbeatMs * 5)
    // Who holds where, and when each re-attached, by this process's clock.
    const holder: Array<string | undefined> = []
    const reattachedAt: Array<number | undefined> = []
    for (let index = 0; index < clientCount; index++) {
      const baseline = index % 2 === 1
      const client = await createClient({
        id: `bench-${index}`,
        bind: { _tag: "Udp", host: "127.0.0.1", port: 0 },
        servers: members.map((member) => ({ id: member.id, address: member.client })),
        poolSecret: secret,
        product: "cad",
        heartbeatIntervalMs: heartbeatMs,
        firstServer: Math.floor(index / 2),
        ...(baseline ? { missLimit: 3, retryIntervalMs: heartbeatMs } : {}),
      })
      client.on("Granted", (event: { readonly server: string }) => {
        holder[index] = event.server
      })
      client.on("Reattached", (event: { readonly server: string }) => {
        holder[index] = event.server
        reattachedAt[index] ??= performance.now()
      })
      clients.push(client)
    }
    // Every client holds.
    await waitFor(
      "every client granted",
      () => holder.filter((server) => server !== undefined).length === clientCount,
      timing.leaseMs * 3,
    )
    await sleep(heartbeatMs * 5)
    const leader = currentLeader()!
    const victims = holder.flatMap((server, index) => (server === leader ? [index] : []))
    for (const index of victims) reattachedAt[index] = undefined
    const killedAt = performance.now()
    servers.get(leader)!.kill("SIGKILL")
    await servers.get(leader)!.exit()
    await waitFor(
      "the killed leader's clients re-attached",
      () => victims.every((index) => reattachedAt[index] !== undefined),
      timing.leaseMs,
    ).catch(() => undefined)
    const intervals = (index: number) => (reattachedAt[index]! - killedAt) / heartbeatMs
    const done = victims.filter((index) => reattachedAt[index] !== undefined)
    return {
      current: done.filter((index) => index % 2 === 0).map(intervals),
      baseline: done.filter((index) => index % 2 === 1).map(intervals),
      missing: victims.length - done.length,
    }
  } finally {
    for (const client of clients) await client.close()
    for (const server of servers.values()) if (!server.exited) server.kill("SIGTERM")
    await Promise.race([
      Promise.all([...servers.values()].map((server) => server.exit())),
      sleep(3_000),
    ])
    Jl.killAll()
    rmSync(dir, { recursive: true, force: true })
  }
}
