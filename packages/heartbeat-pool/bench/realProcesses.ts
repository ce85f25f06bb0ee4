/**
 * The benchmark's real-process case: three servers as OS processes on loopback, each with
 * the embedded store beside it in a process of its own (`storeProcess.ts`: each system is
 * measured on its own, the baseline's reconnections never stall a pool server); the clients
 * in client processes of their own (`clientProcess.ts`), all starting at the leader: pool
 * clients, and as many clients of the baseline keeping a TTL lease each on the leader's
 * store. Once every client holds, the leader of the moment and its store are SIGKILLed
 * together; per client it held, the time from the kill to its `Reattached` line (the
 * baseline's: its lease re-acquired at the next store), in heartbeat intervals.
 *
 * Nothing is left out quietly: the run reports whom the leader held when it was killed, who
 * did not re-attach, seats lost, and the elections seen, and the caller shows them.
 */

import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { JsonLinesProcess as Jl, Ports } from "@understudy/testkit"
import { ClusterKey } from "@understudy/transport"
import { Redacted, Result } from "effect"
import { decodeServer } from "../src/Config.ts"
import * as Signing from "../src/Signing.ts"
import type { Options as ClientProcessOptions, Trace } from "./clientProcess.ts"

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
  /** `Denied` lines before the kill, by reason (`electing`, `capacity`, ...). */
  readonly deniedBeforeKill: Readonly<Record<string, number>>
  /**
   * How the killed leader's pool clients left it: on a port unreachable (`unreachable`) or
   * after `missLimit` unanswered messages (`timed`), first walks only.
   */
  readonly detectedBy: Readonly<Record<string, number>>
  /** The 1-minute load average when the leader was killed (0 when it was not). */
  readonly loadAtKill: number
  /** Where the pool clients' re-attachment time went (see `Phases`); absent when not killed. */
  readonly phases?: Phases
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
  /** `Denied` lines after the kill, by reason (a client says so once per reason in a row). */
  readonly denied: Readonly<Record<string, number>>
}

/** The window after the kill in which stalls and event-loop delay are taken. */
const delayWindowMs = 5_000

/**
 * A pool client's re-attachment cut into phases, each one's p50 / p99 over the killed
 * leader's pool clients, in ms from the kill: its first heartbeat the leader did not answer
 * (`unanswered`, which may precede the kill), its first heartbeat sent after the kill
 * (`beat`), its walk away from the leader (`detected`: the step that read the port-unreachable
 * report, or the timer that ended its waits), its first message to the server that took it
 * (`asked`), that server's step taking it (`taken`, from the server's `Carried` / `Allocated`
 * line), and its `Reattached` (`reattached`). `gaps`: the same cut per client, each gap's
 * p50 / p99 (`beatToDetected`: the kernel's report and the client reading it;
 * `detectedToAsked`: its walk; `askedToTaken`: the way in, kernel queue and server backlog;
 * `takenToReattached`: the way back, reply and client process). Besides: walks per client,
 * how late the clients' timers fired, each process's event-loop stalls and delay and the
 * servers' milestones after the kill, and the datagrams the kernel dropped meanwhile.
 */
export interface Phases {
  readonly client: Readonly<Record<string, Percentiles>>
  readonly gaps: Readonly<Record<string, Percentiles>>
  readonly walksPerClient: Percentiles
  /**
   * The time between consecutive messages to the killed server once it stopped answering: the
   * waits of the detection (between `minRetryIntervalMs` and `retryIntervalMs`, following the
   * replies' round-trip times before the kill), graces included.
   */
  readonly retryWaitMs: Percentiles
  readonly timerLateMs: Percentiles
  /** Per server: its milestones (ms from the kill) and how many clients it took. */
  readonly servers: Readonly<Record<string, Readonly<Record<string, number | undefined>>>>
  /** Per process (`s2`, `store-s2`, `clients-0`): event-loop stall ms in the 5 s after the kill, total and longest. */
  readonly stalls: Readonly<Record<string, { readonly totalMs: number; readonly maxMs: number }>>
  /**
   * Per surviving process: its event-loop delay (`perf_hooks.monitorEventLoopDelay`, 10 ms
   * resolution, which the figures include) in the 5 s after the kill.
   */
  readonly delay: Readonly<Record<string, Delay>>
  /** Datagrams the kernel dropped during the re-attachment (`/proc/net/snmp`, all sockets). */
  readonly udpReceiveBufferErrors: number
  /**
   * When this process saw the killed server exit, ms from the kill (an upper bound of its
   * death): heartbeats sent to it before it died are lost without a port unreachable.
   */
  readonly exitedMs: number
}

export interface Delay {
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
  readonly meanMs: number
}

export interface Percentiles {
  readonly p50: number
  readonly p99: number
  readonly n: number
}

const percentiles = (values: ReadonlyArray<number>): Percentiles => {
  const sorted = [...values].sort((a, b) => a - b)
  const at = (p: number) =>
    sorted.length === 0
      ? Number.NaN
      : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
  return { p50: at(50), p99: at(99), n: sorted.length }
}

/** The kernel's count of UDP datagrams dropped for a full receive buffer (this namespace). */
const udpReceiveBufferErrors = (): number => {
  const lines = readFileSync("/proc/net/snmp", "utf8").split("\n")
  const header = lines.find((line) => line.startsWith("Udp: InDatagrams"))?.split(/\s+/)
  const values = lines.find((line) => line.startsWith("Udp: ") && /^Udp: \d/.test(line))
  if (header === undefined || values === undefined) return 0
  return Number(values.split(/\s+/)[header.indexOf("RcvbufErrors")] ?? 0)
}

/** The `Denied` lines among `lines`, by reason. */
const deniedOf = (lines: ReadonlyArray<ClientLine>): Record<string, number> => {
  const counts: Record<string, number> = {}
  for (const line of lines)
    if (line.t === "Denied") counts[line.reason ?? "?"] = (counts[line.reason ?? "?"] ?? 0) + 1
  return counts
}

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

export const realRun = async (clientCount: number, heartbeatMs: number): Promise<RealRun> => {
  const dir = mkdtempSync(join(tmpdir(), "heartbeat-pool-bench-"))
  const servers = new Map<string, Jl.JsonLinesProcess>()
  const stores = new Map<string, Jl.JsonLinesProcess>()
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
        // To compare kernel receive buffers (the pool's default is 4 MiB).
        ...(process.env.BENCH_CLIENT_RECEIVE_BUFFER_BYTES === undefined
          ? {}
          : { clientReceiveBufferBytes: Number(process.env.BENCH_CLIENT_RECEIVE_BUFFER_BYTES) }),
      }
      stores.set(
        member.id,
        new Jl.JsonLinesProcess(
          join(import.meta.dirname, "storeProcess.ts"),
          [String(member.store.port)],
          { env: { BENCH_PROCESS: `store-${member.id}` } },
        ),
      )
      servers.set(
        member.id,
        new Jl.JsonLinesProcess(
          join(import.meta.dirname, "serverProcess.ts"),
          [JSON.stringify(options)],
          { env: { POOL_SECRET_HEX: secretHex, BENCH_PROCESS: member.id } },
        ),
      )
    }
    for (const server of [...servers.values(), ...stores.values()])
      await server.line("ready", 60_000)
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
    // Both kinds of client in each of two processes (500 of each). BENCH_SEPARATE_CLIENTS=1:
    // each kind in two processes of its own, so that the baseline's 500 TCP reconnections per
    // process after the kill (28-33% of a shared client process's CPU profile in the 5 s after
    // it, the pool's own UDP work 12-18%, load 31-34) do not stall the pool clients, nor the
    // pool's the baseline's. Not the default: the two full runs of each layout (3 kills each)
    // at load 5-28 do not say which is faster (shared, load 5-10: pool p99 3.54-16.41
    // intervals; separate, load 21-28: 2.99-22.73, load 6-9: 6.79-11.37, where the pool
    // clients, no longer slowed by the baseline, reached the follower all at once and stalled
    // it 2.3-4.2 s of 5); the recorded figures are of the shared layout. Under load both often
    // fail before the kill (separate 4 of 7 runs through at load 20-45, shared 7 of 12 at 5-35).
    const layout: ReadonlyArray<ReadonlyArray<"pool" | "lease">> =
      process.env.BENCH_SEPARATE_CLIENTS === "1"
        ? [["pool"], ["pool"], ["lease"], ["lease"]]
        : [
            ["pool", "lease"],
            ["pool", "lease"],
          ]
    const hosting = (kinds: ReadonlyArray<string>) =>
      layout.filter((other) => other.join() === kinds.join()).length
    const started = new Map<string, number>()
    for (const kinds of layout) {
      // This process's share of the clients of its kinds.
      const index = started.get(kinds.join()) ?? 0
      started.set(kinds.join(), index + 1)
      const perProcess = Math.ceil(clientCount / hosting(kinds))
      const from = index * perProcess
      const options: ClientProcessOptions = {
        kinds,
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
          { env: { POOL_SECRET_HEX: secretHex, BENCH_PROCESS: `clients-${clientProcs.length}` } },
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
      const none: Kind = { victims: 0, intervals: [], lost: 0, denied: {} }
      return {
        pool: none,
        lease: none,
        placedAt,
        killed: "none",
        detectedBy: {},
        loadAtKill: 0,
        electionsBeforeKill: elections(),
        heldAtKill: heldCounts(),
        lostBeforeKill: lines().filter((line) => line.t === "Lost").length,
        deniedBeforeKill: deniedOf(lines()),
        failed: notGranted,
      }
    }
    // The profiler's start stalls a process for a second or more: well before the kill.
    if (process.env.BENCH_CPU_PROFILE_DIR !== undefined)
      for (const proc of [...servers.values(), ...stores.values(), ...clientProcs])
        proc.child.stdin!.write("profile\n")
    await sleep(heartbeatMs * 5)
    // The leader of the moment (an election may have moved it since the clients came).
    const killed = currentLeader()?.id ?? placedAt
    const electionsBeforeKill = elections()
    const victims = { pool: new Set<string>(), lease: new Set<string>() }
    for (const [client, server] of holders())
      if (server === killed) victims[client.startsWith("pool-") ? "pool" : "lease"].add(client)
    const heldAtKill = heldCounts()
    const dropsBefore = udpReceiveBufferErrors()
    const loadAtKill = loadavg()[0]!
    const killedAtMs = Date.now()
    const lostBeforeKill = lines().filter((line) => line.t === "Lost").length
    const deniedBeforeKill = deniedOf(lines())
    // The survivors' event-loop delay (and CPU profile) from the kill on (`stalls.ts`).
    const survivors = new Map<string, Jl.JsonLinesProcess>([
      ...[...servers].filter(([id]) => id !== killed),
      ...[...stores].flatMap(([id, store]) =>
        id === killed ? [] : [[`store-${id}`, store] as const],
      ),
      ...clientProcs.map((proc, index) => [`clients-${index}`, proc] as const),
    ])
    for (const proc of survivors.values()) proc.child.stdin!.write("mark\n")
    servers.get(killed)!.kill("SIGKILL")
    stores.get(killed)!.kill("SIGKILL")
    await servers.get(killed)!.exit()
    const exitedAtMs = Date.now()
    await stores.get(killed)!.exit()
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
    await sleep(Math.max(0, killedAtMs + delayWindowMs - Date.now()))
    for (const proc of survivors.values()) proc.child.stdin!.write("report\n")
    const delay: Record<string, Delay> = {}
    for (const [name, proc] of survivors) {
      const line = await proc.line("delay", 30_000).catch(() => undefined)
      if (line !== undefined)
        delay[name] = {
          p50Ms: Number(line.p50Ms),
          p99Ms: Number(line.p99Ms),
          maxMs: Number(line.maxMs),
          meanMs: Number(line.meanMs),
        }
    }
    const phases = phasesOf({
      killed,
      killedAtMs,
      heartbeatMs,
      victims: victims.pool,
      clientLines: clientProcs.map((proc) => proc.lines),
      serverLines: new Map([...servers].map(([id, server]) => [id, server.lines])),
      storeLines: new Map([...stores].map(([id, store]) => [id, store.lines])),
      udpDrops: udpReceiveBufferErrors() - dropsBefore,
      exitedMs: exitedAtMs - killedAtMs,
      delay,
    })
    const kind = (of: ReadonlySet<string>): Kind => ({
      victims: of.size,
      intervals: [...of].flatMap((client) => {
        const wallMs = at.get(client)
        return wallMs === undefined ? [] : [(wallMs - killedAtMs) / heartbeatMs]
      }),
      lost: after().filter((line) => line.t === "Lost" && of.has(line.client)).length,
      denied: deniedOf(after().filter((line) => of.has(line.client))),
    })
    const detectedBy: Record<string, number> = {}
    for (const proc of clientProcs)
      for (const line of proc.lines) {
        if (line.t !== "trace" || !victims.pool.has(String(line.client))) continue
        const walk = (line.steps as ReadonlyArray<Trace>).find(
          (step) => step[0] >= killedAtMs && step[1] === "walk" && step[2] === killed,
        )
        const how = String(walk?.[4] ?? "none")
        detectedBy[how] = (detectedBy[how] ?? 0) + 1
      }
    return {
      pool: kind(victims.pool),
      lease: kind(victims.lease),
      placedAt,
      killed,
      detectedBy,
      loadAtKill,
      electionsBeforeKill,
      heldAtKill,
      lostBeforeKill,
      deniedBeforeKill,
      phases,
    }
  } finally {
    const all = [...clientProcs, ...servers.values(), ...stores.values()]
    for (const proc of all) if (!proc.exited) proc.kill("SIGTERM")
    await Promise.race([Promise.all(all.map((proc) => proc.exit())), sleep(3_000)])
    Jl.killAll()
    rmSync(dir, { recursive: true, force: true })
  }
}

const phasesOf = (run: {
  readonly killed: string
  readonly killedAtMs: number
  readonly heartbeatMs: number
  readonly victims: ReadonlySet<string>
  readonly clientLines: ReadonlyArray<ReadonlyArray<Record<string, unknown>>>
  readonly serverLines: ReadonlyMap<string, ReadonlyArray<Record<string, unknown>>>
  readonly storeLines: ReadonlyMap<string, ReadonlyArray<Record<string, unknown>>>
  readonly udpDrops: number
  readonly exitedMs: number
  readonly delay: Readonly<Record<string, Delay>>
}): Phases => {
  const { killed, killedAtMs } = run
  const since = (wallMs: number) => wallMs - killedAtMs
  // When each server took each client (its first Carried / Allocated after the kill).
  const taken = new Map<string, number>()
  const servers: Record<string, Record<string, number | undefined>> = {}
  for (const [id, lines] of run.serverLines) {
    const after = lines.filter((line) => Number(line.wallMs) >= killedAtMs)
    const first = (t: string) => {
      const line = after.find((candidate) => candidate.t === t)
      return line === undefined ? undefined : since(Number(line.wallMs))
    }
    const takes = after.filter((line) => line.t === "Carried" || line.t === "Allocated")
    for (const line of takes) {
      const key = `${id}/${String(line.client)}`
      if (!taken.has(key)) taken.set(key, Number(line.wallMs))
    }
    servers[id] = {
      checkSent: first("CheckSent"),
      electionStarted: first("ElectionStarted"),
      becameLeader: first("BecameLeader"),
      recordMerged: first("RecordMerged"),
      firstTaken: takes.length === 0 ? undefined : since(Number(takes[0]!.wallMs)),
      lastTaken: takes.length === 0 ? undefined : since(Number(takes.at(-1)!.wallMs)),
      carried: takes.filter((line) => line.t === "Carried").length,
      allocatedReattached: takes.filter((line) => line.t === "Allocated" && line.reattached).length,
    }
  }
  const window = (lines: ReadonlyArray<Record<string, unknown>>) => {
    const stalls = lines.filter(
      (line) =>
        line.t === "stall" &&
        Number(line.wallMs) >= killedAtMs &&
        Number(line.wallMs) < killedAtMs + delayWindowMs,
    )
    return {
      totalMs: stalls.reduce((sum, line) => sum + Number(line.ms), 0),
      maxMs: stalls.reduce((max, line) => Math.max(max, Number(line.ms)), 0),
    }
  }
  const stalls: Record<string, { totalMs: number; maxMs: number }> = {}
  for (const [id, lines] of run.serverLines) stalls[id] = window(lines)
  for (const [id, lines] of run.storeLines) stalls[`store-${id}`] = window(lines)
  run.clientLines.forEach((lines, index) => {
    stalls[`clients-${index}`] = window(lines)
  })

  const phase: Record<string, Array<number>> = {
    unanswered: [],
    beat: [],
    detected: [],
    asked: [],
    taken: [],
    reattached: [],
  }
  const gap: Record<string, Array<number>> = {
    beatToDetected: [],
    detectedToAsked: [],
    askedToTaken: [],
    takenToReattached: [],
  }
  const walks: Array<number> = []
  const waits: Array<number> = []
  const late: Array<number> = []
  for (const lines of run.clientLines) {
    for (const line of lines) {
      if (line.t !== "trace" || !run.victims.has(String(line.client))) continue
      const steps = (line.steps as ReadonlyArray<Trace>).filter(
        ([wallMs]) => wallMs >= killedAtMs - 2 * run.heartbeatMs,
      )
      const answeredSeq = Math.max(
        0,
        ...steps.flatMap((step) =>
          step[1] === "reply" && step[2] === killed ? [Number(step[4])] : [],
        ),
      )
      const unanswered = steps.find(
        (step) => step[1] === "send" && step[2] === killed && Number(step[4]) > answeredSeq,
      )
      const after = steps.filter(([wallMs]) => wallMs >= killedAtMs)
      const beat = after.find((step) => step[1] === "send" && step[2] === killed)
      const detected = after.find((step) => step[1] === "walk" && step[2] === killed)
      // The reply that re-attached it: the last reply in the trace (it ends at Reattached).
      const last = [...after].reverse().find((step) => step[1] === "reply")
      const server = last?.[2] as string | undefined
      const asked = after.find(
        (step) => step[1] === "send" && step[2] === server && step[0] >= (detected?.[0] ?? 0),
      )
      const takenAt =
        server === undefined ? undefined : taken.get(`${server}/${String(line.client)}`)
      if (unanswered !== undefined) phase.unanswered!.push(since(unanswered[0]))
      if (beat !== undefined) phase.beat!.push(since(beat[0]))
      const between = (name: string, from: number | undefined, to: number | undefined) => {
        if (from !== undefined && to !== undefined) gap[name]!.push(to - from)
      }
      between("beatToDetected", beat?.[0], detected?.[0])
      between("detectedToAsked", detected?.[0], asked?.[0])
      between("askedToTaken", asked?.[0], takenAt)
      between("takenToReattached", takenAt, last?.[0])
      if (detected !== undefined) phase.detected!.push(since(detected[0]))
      if (asked !== undefined) phase.asked!.push(since(asked[0]))
      if (takenAt !== undefined) phase.taken!.push(since(takenAt))
      if (last !== undefined) phase.reattached!.push(since(last[0]))
      walks.push(after.filter((step) => step[1] === "walk").length)
      const retries = steps.filter(
        (step) =>
          step[1] === "send" &&
          step[2] === killed &&
          Number(step[4]) >= Number(unanswered?.[4] ?? Number.POSITIVE_INFINITY),
      )
      for (let index = 1; index < retries.length; index++)
        waits.push(retries[index]![0] - retries[index - 1]![0])
      for (const step of after)
        if (step[1] === "timeout" || step[1] === "grace") late.push(Number(step[2]))
    }
  }
  return {
    client: Object.fromEntries(
      Object.entries(phase).map(([name, values]) => [name, percentiles(values)]),
    ),
    gaps: Object.fromEntries(
      Object.entries(gap).map(([name, values]) => [name, percentiles(values)]),
    ),
    walksPerClient: percentiles(walks),
    retryWaitMs: percentiles(waits),
    timerLateMs: percentiles(late),
    servers,
    stalls,
    udpReceiveBufferErrors: run.udpDrops,
    exitedMs: run.exitedMs,
    delay: run.delay,
  }
}
