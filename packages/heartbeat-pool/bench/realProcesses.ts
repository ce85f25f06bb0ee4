/**
 * The benchmark's real-process case: three servers as OS processes on loopback, each also
 * serving the embedded store; the clients in client processes of their own
 * (`clientProcess.ts`), all starting at the leader: pool clients, and as many clients of the
 * baseline keeping a TTL lease each on the leader's store. Once every client holds, the
 * leader of the moment is SIGKILLed (it ends the pool server and the store alike); per
 * client it held, the time from the kill to its `Reattached` line (the baseline's: its lease
 * re-acquired at the next store), in heartbeat intervals.
 *
 * Nothing is left out quietly: the run reports whom the leader held when it was killed, who
 * did not re-attach, seats lost, and the elections seen, and the caller shows them.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { JsonLinesProcess as Jl, Ports } from "@understudy/testkit"
import { ClusterKey } from "@understudy/transport"
import { Redacted, Result } from "effect"
import { decodeServer } from "../src/Config.ts"
import * as Signing from "../src/Signing.ts"
import type { Options as ClientProcessOptions } from "./clientProcess.ts"

export interface RealRun {
  /** Pool clients the killed leader held, and each one's re-attachment time, in intervals. */
  readonly pool: Kind
  /** Baseline clients whose lease was on the killed leader's store, and their re-acquisition. */
  readonly lease: Kind
  /** The server placed first (where the clients started) and the one killed. */
  readonly placedAt: string
  readonly killed: string
  /** `BecameLeader` lines from the start to the kill (1 when no election moved the leader). */
  readonly electionsBeforeKill: number
  /**
   * Where the clients held when the leader was killed (`pool@s2`: pool clients at s2): a
   * pool client whose heartbeats went unanswered too long (a leader busy or starved) walks to
   * the next server, which carries it; it stays there.
   */
  readonly heldAtKill: Readonly<Record<string, number>>
  /** `Lost` lines before the kill (no server had died yet). */
  readonly lostBeforeKill: number
  /**
   * Why the run was not measured: not every client held a seat by the deadline, so the
   * leader was not killed (a kill then would measure fewer clients than the run claims).
   */
  readonly failed?: string
}

export interface Kind {
  /** Clients held at the killed server. */
  readonly victims: number
  /** Their re-attachment times, in heartbeat intervals (one per client re-attached). */
  readonly intervals: ReadonlyArray<number>
  /** `Lost` lines after the kill. */
  readonly lost: number
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const waitFor = async (what: string, check: () => boolean, timeoutMs: number) => {
  const deadline = performance.now() + timeoutMs
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`bench: not within ${timeoutMs} ms: ${what}`)
    await sleep(25)
  }
}

interface ClientLine {
  readonly t: string
  readonly kind: "pool" | "lease"
  readonly client: string
  readonly server: string
  readonly reason?: string
  readonly wallMs: number
}

export const realRun = async (
  clientCount: number,
  heartbeatMs: number,
  clientProcesses: number,
): Promise<RealRun> => {
  const dir = mkdtempSync(join(tmpdir(), "heartbeat-pool-bench-"))
  const servers = new Map<string, Jl.JsonLinesProcess>()
  const clientProcs: Array<Jl.JsonLinesProcess> = []
  try {
    const secret = ClusterKey.generate()
    const secretHex = Buffer.from(Redacted.value(secret)).toString("hex")
    const vendor = Signing.generateVendorKeys()
    const license = Signing.signLicense(vendor.privatePem, {
      product: "cad",
      seats: clientCount,
      expiresAtMs: 4e12,
      sequence: 1,
    })
    const udp = await Ports.freeUdpPorts(6)
    const tcp = await Promise.all([0, 1, 2].map(() => Ports.freeTcpPort()))
    const members = ["s1", "s2", "s3"].map((id, index) => ({
      id,
      peer: { _tag: "Udp" as const, host: "127.0.0.1", port: udp[index]! },
      client: { _tag: "Udp" as const, host: "127.0.0.1", port: udp[index + 3]! },
      store: { _tag: "Tcp" as const, host: "127.0.0.1", port: tcp[index]! },
    }))
    // The timings license-server derives from its --heartbeat (the defaults), lease included.
    const decoded = decodeServer({ heartbeatInterval: heartbeatMs })
    if (Result.isFailure(decoded)) throw decoded.failure
    const timing = decoded.success.timing
    for (const member of members) {
      const options = {
        self: member.id,
        members: members.map(({ id, peer, client }) => ({ id, peer, client })),
        vendorPublicKey: vendor.publicPem,
        stateDir: join(dir, member.id),
        license,
        timing,
        clientsPerServerMax: clientCount,
        storePort: member.store.port,
      }
      servers.set(
        member.id,
        new Jl.JsonLinesProcess(
          join(import.meta.dirname, "serverProcess.ts"),
          [JSON.stringify(options)],
          { env: { POOL_SECRET_HEX: secretHex } },
        ),
      )
    }
    for (const server of servers.values()) await server.line("ready", 60_000)
    /**
     * The server leading the highest term, by its lines, and since when: a `BecameLeader` not
     * followed by a `SteppedDown` of that term (on a loaded machine the first leader may not
     * last).
     */
    const currentLeader = () => {
      let best: { readonly id: string; readonly term: number; readonly sinceMs: number } | undefined
      for (const [id, server] of servers) {
        let led: { term: number; sinceMs: number } | undefined
        for (const line of server.lines) {
          if (line.t === "BecameLeader")
            led = { term: Number(line.term), sinceMs: Number(line.wallMs) }
          else if (line.t === "SteppedDown" && Number(line.term) === led?.term) led = undefined
        }
        if (led !== undefined && (best === undefined || led.term > best.term)) best = { id, ...led }
      }
      return best
    }
    const elections = () =>
      [...servers.values()].reduce(
        (sum, server) => sum + server.lines.filter((line) => line.t === "BecameLeader").length,
        0,
      )
    // Clients come once the leader settled (it grants no new seat for a lease after its
    // election), so that every one holds its seat there.
    await waitFor(
      "a settled leader",
      () => {
        const leader = currentLeader()
        return leader !== undefined && Date.now() - leader.sinceMs > timing.leaseMs + heartbeatMs
      },
      timing.leaseMs * 4,
    ).catch((error: Error) => console.error(`${error.message}: ${currentLeader()?.id ?? "none"}`))
    // Under elections that never settle, the clients go to whoever leads (refused with
    // `electing` until it settled).
    const placedAt = currentLeader()?.id ?? "s1"
    const perProcess = Math.ceil(clientCount / clientProcesses)
    for (let from = 0; from < clientCount; from += perProcess) {
      const options: ClientProcessOptions = {
        from,
        count: Math.min(perProcess, clientCount - from),
        first: members.findIndex((member) => member.id === placedAt),
        servers: members.map(({ id, client, store }) => ({ id, client, store })),
        heartbeatMs,
        leaseMs: timing.leaseMs,
      }
      clientProcs.push(
        new Jl.JsonLinesProcess(
          join(import.meta.dirname, "clientProcess.ts"),
          [JSON.stringify(options)],
          { env: { POOL_SECRET_HEX: secretHex } },
        ),
      )
    }
    for (const proc of clientProcs) await proc.line("ready", 120_000)
    const lines = () =>
      clientProcs.flatMap((proc) => proc.lines.filter((line) => line.t !== "ready")) as Array<
        ClientLine & Record<string, unknown>
      >
    /** Where each client holds now: its latest Granted / Reattached line, unless Lost since. */
    const holders = () => {
      const holder = new Map<string, string>()
      for (const line of lines()) {
        if (line.t === "Granted" || line.t === "Reattached") holder.set(line.client, line.server)
        else if (line.t === "Lost") holder.delete(line.client)
      }
      return holder
    }
    /** How many clients of each kind hold at each server (`pool@s2`). */
    const heldCounts = () => {
      const held: Record<string, number> = {}
      for (const [client, server] of holders()) {
        const name = `${client.split("-")[0]}@${server}`
        held[name] = (held[name] ?? 0) + 1
      }
      return held
    }
    /** Where the clients are, for a wait that runs out. */
    const situation = () => {
      const count = (key: (line: ClientLine) => string | undefined) => {
        const counts: Record<string, number> = {}
        for (const line of lines()) {
          const name = key(line)
          if (name !== undefined) counts[name] = (counts[name] ?? 0) + 1
        }
        return counts
      }
      return JSON.stringify({
        held: heldCounts(),
        lines: count((line) => `${line.kind} ${line.t} ${line.reason ?? ""}`),
        leader: currentLeader(),
        servers: Object.fromEntries([...servers].map(([id, server]) => [id, server.lines])),
      })
    }
    // The leader is killed only once every client holds a seat; past the deadline the run
    // fails, and says where the clients were.
    const notGranted = await waitFor(
      "every client granted",
      () => holders().size === 2 * clientCount,
      timing.leaseMs * 4,
    ).then(
      () => undefined,
      (error: Error) => {
        console.error(`${error.message}: ${situation()}`)
        return `${holders().size} of ${2 * clientCount} clients held a seat after ${(timing.leaseMs * 4) / 1000} s: ${JSON.stringify(heldCounts())}`
      },
    )
    if (notGranted !== undefined) {
      const none: Kind = { victims: 0, intervals: [], lost: 0 }
      return {
        pool: none,
        lease: none,
        placedAt,
        killed: "none",
        electionsBeforeKill: elections(),
        heldAtKill: heldCounts(),
        lostBeforeKill: lines().filter((line) => line.t === "Lost").length,
        failed: notGranted,
      }
    }
    await sleep(heartbeatMs * 5)
    // The leader of the moment (an election may have moved it since the clients came).
    const killed = currentLeader()?.id ?? placedAt
    const electionsBeforeKill = elections()
    const victims = { pool: new Set<string>(), lease: new Set<string>() }
    for (const [client, server] of holders())
      if (server === killed) victims[client.startsWith("pool-") ? "pool" : "lease"].add(client)
    const heldAtKill = heldCounts()
    const killedAtMs = Date.now()
    const lostBeforeKill = lines().filter((line) => line.t === "Lost").length
    servers.get(killed)!.kill("SIGKILL")
    await servers.get(killed)!.exit()
    const after = () => lines().filter((line) => line.wallMs >= killedAtMs)
    const reattached = () => {
      const at = new Map<string, number>()
      for (const line of after())
        if (line.t === "Reattached" && !at.has(line.client)) at.set(line.client, line.wallMs)
      return at
    }
    await waitFor(
      "the killed leader's clients re-attached",
      () => {
        const at = reattached()
        return [...victims.pool, ...victims.lease].every((client) => at.has(client))
      },
      timing.leaseMs,
    ).catch(() => undefined)
    const at = reattached()
    const kind = (of: ReadonlySet<string>): Kind => ({
      victims: of.size,
      intervals: [...of].flatMap((client) => {
        const wallMs = at.get(client)
        return wallMs === undefined ? [] : [(wallMs - killedAtMs) / heartbeatMs]
      }),
      lost: after().filter((line) => line.t === "Lost" && of.has(line.client)).length,
    })
    return {
      pool: kind(victims.pool),
      lease: kind(victims.lease),
      placedAt,
      killed,
      electionsBeforeKill,
      heldAtKill,
      lostBeforeKill,
    }
  } finally {
    const all = [...clientProcs, ...servers.values()]
    for (const proc of all) if (!proc.exited) proc.kill("SIGTERM")
    await Promise.race([Promise.all(all.map((proc) => proc.exit())), sleep(3_000)])
    Jl.killAll()
    rmSync(dir, { recursive: true, force: true })
  }
}
