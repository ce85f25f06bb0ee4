/**
 * The multihome bench: `npm run bench -w @understudy/multihome` (`node bench/throughput.ts`).
 *
 * 1. Throughput of SCTP over UDP on loopback, usrsctp's `tsctp` sending 1,024 and 8,192-byte
 *    messages into: a `tsctp` receiver (the baseline; both sides with nodebug.so, so neither
 *    pays for usrsctp's debug log); our discard endpoint (`Endpoint.make` with a discarding
 *    handler, one OS process on 127.0.0.1); and a two-node cluster with `every-update`
 *    replication (primary 127.0.0.2 and secondary 127.0.0.3, two OS processes, the
 *    `Cluster.services.discard` service). "vs tsctp" is our MB/s over the baseline's in the
 *    same run (target ≥ 0.5); "vs ours" is the cluster's over our single endpoint's: the
 *    cost of replication. Both are medians of per-repetition ratios (each repetition runs
 *    the scenarios back to back), steadier on a shared machine than a ratio of medians.
 *    "CPU ms/MB" is the CPU time (user + system, all threads) our process used per MB
 *    delivered, from before the sender starts to the association's end: the primary's, then
 *    the secondary's. On 2 cores the cluster's three processes (tsctp's sender, primary,
 *    secondary) share the CPU, so this is what a change of the hot path must lower, and,
 *    unlike MB/s, load from other work on the machine barely moves it.
 * 2. Failover (`failover.ts`, whose header defines the figures): a usrsctp peer streams into
 *    the cluster, the primary process is SIGKILLed, and the bench reports the time to the
 *    first SACK of the secondary that answers the peer's DATA ("first ack"), with usrsctp's
 *    default timers and with the tune shim's fast ones.
 *
 * 3. Echo gap (`echoGap.ts`): usrsctp's client streams 50 lines/s to the cluster's echo
 *    service, the primary is SIGKILLed: first echo, longest gap between echoes and time below
 *    half rate, p50 / p99, for `--failover none` (the baseline) and `asconf`.
 *
 * Options: `--repetitions N` (default 3), `--scale X` (multiplies the message counts,
 * default 1), `--failover-repetitions N` (default 3; 0 skips the failover), `--failover-peer
 * client|tsctp` (default client; see `failover.ts` for why not tsctp yet),
 * `--gap-repetitions N` (default 3; 0 skips the echo gap; `node bench/echoGap.ts
 * --gap-repetitions N` runs it alone), `--compare-with DIR` (adds "tsctp → DIR", the single
 * endpoint of another copy of this package, e.g. an older commit's: before/after figures of
 * a change taken in the same run, interleaved with the others).
 *
 * Every throughput run sends a fixed number of messages into a freshly started receiver and
 * is timed by that receiver, from the first message delivered to the end of the association
 * (tsctp's own definition: its first receive to its read of the SHUTDOWN; ours: the first
 * message handed to the service to the association's `closed`, one SHUTDOWN ACK / SHUTDOWN
 * COMPLETE round trip later); the wall time from the sender's spawn to the receiver's report
 * is kept as a cross-check. A run counts only if every message and byte arrived (and, for
 * ours, the association ended with a SHUTDOWN). The median of the repetitions is reported;
 * scenarios are interleaved so that a slow phase of a shared machine hits all alike.
 * MB = 10^6 bytes. Prints the tables, then one JSON line (the last line) with the named
 * `figures`. Exits non-zero when a scenario was not run or failed: a missing number is never
 * printed as a number. Every process it starts is killed after its run, on errors and at
 * exit; our receivers also exit by themselves when the bench is gone (their stdin closes).
 */
import { Usrsctp } from "@understudy/testkit"
import * as EchoGap from "./echoGap.ts"
import * as Failover from "./failover.ts"
import * as Processes from "./processes.ts"

/** What our receiver saw of one association, timed like tsctp's receiver. */
export interface ReceiverRun {
  /** Complete messages delivered. */
  readonly messages: number
  /** User bytes delivered. */
  readonly bytes: number
  /** From the first message delivered to the association's end (SHUTDOWN received). */
  readonly seconds: number
}

/** Our discard endpoint, listening for tsctp. */
export interface OurReceiver {
  /** IPv4 literal it listens on (tsctp only connects to IPv4). */
  readonly host: string
  /** Its SCTP port. */
  readonly sctpPort: number
  /** Its UDP encapsulation port (RFC 6951). */
  readonly udpPort: number
  /** Resolves when the next association to it ends, with what that association delivered. */
  readonly nextAssociation: () => Promise<ReceiverRun>
  /** CPU time used so far (ms, user + system) by each of its processes: the primary first. */
  readonly cpuMs: () => Promise<ReadonlyArray<number>>
  /** Stops it (and its secondary, if any). */
  readonly close: () => Promise<void>
}

/** Options the bench passes when it starts our receiver. */
export interface OurReceiverOptions {
  /** IPv4 literal to listen on. */
  readonly host: string
  /** `none`: one node; `every-update`: a primary replicating to a secondary before it SACKs. */
  readonly replication: "none" | "every-update"
}

/** Starts our discard endpoint; the lead implements it once the endpoint exists. */
export type StartOurReceiver = (options: OurReceiverOptions) => Promise<OurReceiver>

/**
 * Our discard endpoint as separate OS processes (`bench/receiver.ts`): one for `none`, a
 * primary on `host` and a secondary on {@link Processes.clusterHosts}`.secondary` for
 * `every-update`. Each association's end is one `association` line of the primary (or the
 * single endpoint): what the service was handed, timed like tsctp's receiver.
 */
export const startOurReceiver: StartOurReceiver | undefined = async (options) => {
  if (options.replication === "none") {
    const { receiver, udpPort } = await Processes.startSingle(options.host)
    return ourReceiver(options.host, udpPort, receiver, [receiver])
  }
  if (options.host !== Processes.clusterHosts.primary)
    throw new Error(`the cluster's primary listens on ${Processes.clusterHosts.primary}`)
  const cluster = await Processes.startCluster({ policy: "every-update", observe: false })
  return ourReceiver(options.host, cluster.udpPort, cluster.primary, [
    cluster.primary,
    cluster.secondary,
  ])
}

const ourReceiver = (
  host: string,
  udpPort: number,
  reporter: Processes.Receiver,
  all: ReadonlyArray<Processes.Receiver>,
): OurReceiver => {
  let associations = 0
  return {
    host,
    sctpPort: Processes.sctpPort,
    udpPort,
    nextAssociation: async () => {
      const line = await reporter.line("association", runTimeoutMs, associations++)
      const field = (name: string) => {
        const value = line[name]
        if (typeof value !== "number")
          throw new Error(`association line without ${name}: ${JSON.stringify(line)}`)
        return value
      }
      if (line.reason !== "ShutdownComplete")
        throw new Error(`the association ended with ${String(line.reason)}, not a SHUTDOWN`)
      return { messages: field("messages"), bytes: field("bytes"), seconds: field("seconds") }
    },
    cpuMs: () => Promise.all(all.map((receiver) => receiver.cpuMs())),
    close: async () => {
      await Promise.all(all.map((receiver) => receiver.kill()))
    },
  }
}

/** One measured run. */
interface Run {
  readonly messagesPerSecond: number
  readonly megabytesPerSecond: number
  readonly receiverSeconds: number
  readonly wallSeconds: number
  /**
   * Ours: CPU ms per MB delivered, per process (the primary, then the secondary), from
   * before the sender starts to the association's end. Unlike MB/s, load on the shared
   * machine barely moves it: the figure to judge a change of the hot path by.
   */
  readonly cpuMsPerMegabyte?: ReadonlyArray<number>
}

type Outcome =
  | { readonly _tag: "Measured"; readonly runs: ReadonlyArray<Run> }
  | { readonly _tag: "NotRun"; readonly reason: string }
  | { readonly _tag: "Failed"; readonly error: string }

interface Scenario {
  readonly name: string
  readonly receiver: "tsctp" | "ours" | "compared"
  readonly replication: "none" | "every-update"
}

/** The package directory of `--compare-with`, if given. */
const comparedDirectory = ((): string | undefined => {
  const index = process.argv.indexOf("--compare-with")
  return index < 0 ? undefined : process.argv[index + 1]
})()

const scenarios: ReadonlyArray<Scenario> = [
  { name: "tsctp → tsctp", receiver: "tsctp", replication: "none" },
  { name: "tsctp → ours", receiver: "ours", replication: "none" },
  { name: "tsctp → ours (every-update)", receiver: "ours", replication: "every-update" },
  ...(comparedDirectory === undefined
    ? []
    : [{ name: "tsctp → --compare-with", receiver: "compared", replication: "none" } as const]),
]

/** The single endpoint of the `--compare-with` copy, started by that copy's own bench code. */
const startCompared = async (): Promise<OurReceiver> => {
  const other: typeof Processes = await import(`${comparedDirectory}/bench/processes.ts`)
  const { receiver, udpPort } = await other.startSingle(host)
  return ourReceiver(host, udpPort, receiver, [receiver])
}

/** Message sizes and the message count per run (about 100–160 MB, 2–3 s at the baseline). */
const sizes: ReadonlyArray<{ readonly messageLength: number; readonly messages: number }> = [
  { messageLength: 1024, messages: 100_000 },
  { messageLength: 8192, messages: 20_000 },
]

const runTimeoutMs = 120_000
const host = "127.0.0.1"

const option = (name: string, fallback: number, minimum = Number.MIN_VALUE): number => {
  const index = process.argv.indexOf(`--${name}`)
  if (index < 0) return fallback
  const value = Number(process.argv[index + 1])
  if (!Number.isFinite(value) || value < minimum)
    throw new Error(`--${name} needs a number of at least ${minimum}`)
  return value
}

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

const withTimeout = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

const check = (
  seen: { readonly messages: number; readonly bytes: number; readonly seconds: number },
  messages: number,
  messageLength: number,
  wallSeconds: number,
): Run => {
  if (seen.messages !== messages || seen.bytes !== messages * messageLength)
    throw new Error(
      `received ${seen.messages} messages / ${seen.bytes} bytes, sent ${messages} / ${messages * messageLength}`,
    )
  if (!(seen.seconds > 0)) throw new Error(`the receiver reported ${seen.seconds} s`)
  return {
    messagesPerSecond: messages / seen.seconds,
    megabytesPerSecond: seen.bytes / seen.seconds / 1e6,
    receiverSeconds: seen.seconds,
    wallSeconds,
  }
}

const sendWithTsctp = async (
  target: { readonly host: string; readonly sctpPort: number; readonly udpPort: number },
  messageLength: number,
  messages: number,
) => {
  const sender = await Usrsctp.startTsctp({
    role: "sender",
    host: target.host,
    port: target.sctpPort,
    localEncapsPort: await Usrsctp.freeEncapsulationPort(),
    remoteEncapsPort: target.udpPort,
    messageLength,
    messages,
    nodebug: true,
  })
  return sender
}

/** One run into a fresh tsctp receiver. */
const runBaseline = async (messageLength: number, messages: number): Promise<Run> => {
  const udpPort = await Usrsctp.freeEncapsulationPort()
  const receiver = await Usrsctp.startTsctp({
    role: "receiver",
    localEncapsPort: udpPort,
    nodebug: true,
  })
  try {
    const started = performance.now()
    const sender = await sendWithTsctp(
      { host, sctpPort: Usrsctp.tsctpDefaultSctpPort, udpPort },
      messageLength,
      messages,
    )
    await receiver.waitFor(Usrsctp.tsctpReceiverLinePattern, runTimeoutMs)
    const wallSeconds = (performance.now() - started) / 1000
    const [seen] = Usrsctp.parseTsctpReceiver(receiver.stdout())
    if (seen === undefined) throw new Error("the tsctp receiver's line did not parse")
    // The sender lingers until its association is gone; let it, so runs do not overlap.
    await withTimeout(sender.exited, runTimeoutMs, "tsctp sender exit")
    return check(seen, messages, messageLength, wallSeconds)
  } finally {
    await Usrsctp.killAll()
  }
}

/** One run into our receiver. */
const runOurs = async (
  start: StartOurReceiver,
  replication: "none" | "every-update",
  messageLength: number,
  messages: number,
): Promise<Run> => {
  let ours: OurReceiver | undefined
  try {
    ours = await start({
      host: replication === "none" ? host : Processes.clusterHosts.primary,
      replication,
    })
    const association = ours.nextAssociation()
    // A failed run must not leave this promise rejected and unobserved.
    association.catch(() => {})
    const cpuBefore = await ours.cpuMs()
    const started = performance.now()
    const sender = await sendWithTsctp(ours, messageLength, messages)
    const seen = await withTimeout(association, runTimeoutMs, "our receiver")
    const wallSeconds = (performance.now() - started) / 1000
    const cpuAfter = await ours.cpuMs()
    await withTimeout(sender.exited, runTimeoutMs, "tsctp sender exit")
    const run = check(seen, messages, messageLength, wallSeconds)
    const megabytes = seen.bytes / 1e6
    return {
      ...run,
      cpuMsPerMegabyte: cpuAfter.map(
        (ms, index) => (ms - (cpuBefore[index] as number)) / megabytes,
      ),
    }
  } finally {
    await Usrsctp.killAll()
    // The compared copy's processes are not in this module's list.
    await ours?.close()
    await Processes.killAll()
  }
}

/** One run of `scenario`, or why it cannot run. */
const runOnce = (
  scenario: Scenario,
  start: StartOurReceiver | undefined,
  messageLength: number,
  messages: number,
): Promise<Run> | undefined => {
  if (scenario.receiver === "tsctp") return runBaseline(messageLength, messages)
  if (scenario.receiver === "compared")
    return runOurs(startCompared, "none", messageLength, messages)
  if (start === undefined) return undefined
  return runOurs(start, scenario.replication, messageLength, messages)
}

/**
 * Every scenario `repetitions` times, interleaved (baseline, ours, …, baseline, ours, …) so
 * that a slow phase of a shared machine hits all scenarios alike.
 */
const measure = async (
  start: StartOurReceiver | undefined,
  messageLength: number,
  messages: number,
  repetitions: number,
): Promise<Array<Outcome>> => {
  const runs: Array<Array<Run>> = scenarios.map(() => [])
  const failures: Array<string | undefined> = scenarios.map(() => undefined)
  for (let repetition = 0; repetition < repetitions; repetition++) {
    for (const [index, scenario] of scenarios.entries()) {
      if (failures[index] !== undefined) continue
      try {
        const run = runOnce(scenario, start, messageLength, messages)
        if (run !== undefined) runs[index]?.push(await run)
      } catch (error) {
        failures[index] = error instanceof Error ? error.message : String(error)
      }
    }
  }
  return scenarios.map((scenario, index): Outcome => {
    const failure = failures[index]
    if (failure !== undefined) return { _tag: "Failed", error: failure }
    if (scenario.receiver === "ours" && start === undefined)
      return { _tag: "NotRun", reason: "startOurReceiver is not implemented yet" }
    return { _tag: "Measured", runs: runs[index] ?? [] }
  })
}

/** Options of {@link runThroughputBench}. */
export interface BenchOptions {
  /** Our receiver; undefined: its rows are "not run" and the result is incomplete. */
  readonly startOurReceiver: StartOurReceiver | undefined
  /** Runs per scenario and size (the median is reported). */
  readonly repetitions: number
  /** Multiplies the message counts per run. */
  readonly scale: number
  /** Failovers per timer setting (the median is reported); 0 skips them. */
  readonly failoverRepetitions: number
  /** The usrsctp program that streams into the cluster for the failover. */
  readonly failoverPeer: Failover.Peer
  /** SIGKILLs per `--failover` setting of the echo-gap bench (`echoGap.ts`); 0 skips it. */
  readonly gapRepetitions: number
  /** Where the tables and the JSON line go. */
  readonly print: (line: string) => void
}

const fixed = (value: number, digits: number): number => Number(value.toFixed(digits))

/**
 * The median over repetitions of `runs[i] / against[i]`: each pair ran back to back, so a
 * slow phase of a shared machine hits both sides of a ratio alike.
 */
const pairedRatio = (
  runs: ReadonlyArray<number>,
  against: ReadonlyArray<number> | undefined,
): number | undefined => {
  if (against === undefined || against.length !== runs.length || runs.length === 0) return undefined
  return median(runs.map((value, index) => value / (against[index] as number)))
}

/** Per process (primary, then secondary): the median, min and max CPU ms per MB of the runs. */
const cpuPerProcess = (
  runs: ReadonlyArray<Run>,
):
  | ReadonlyArray<{ readonly median: number; readonly min: number; readonly max: number }>
  | undefined => {
  const first = runs[0]?.cpuMsPerMegabyte
  if (first === undefined) return undefined
  return first.map((_, index) => {
    const values = runs.map((run) => run.cpuMsPerMegabyte?.[index] ?? Number.NaN)
    return { median: median(values), min: Math.min(...values), max: Math.max(...values) }
  })
}

/** `key` of a scenario for the JSON figures. */
const figureKey = (scenario: Scenario): string =>
  scenario.receiver === "tsctp" || scenario.receiver === "compared"
    ? scenario.receiver
    : scenario.replication === "none"
      ? "ours"
      : "everyUpdate"

const failoverTimers: ReadonlyArray<Failover.Timers> = ["default", "fast"]

/** The failover figures per timer setting: medians, and the spread of `firstAckMs`. */
const measureFailover = async (
  options: BenchOptions,
  figures: Record<string, number | null>,
): Promise<{ readonly rows: Array<Record<string, unknown>>; readonly lines: Array<string> }> => {
  const rows: Array<Record<string, unknown>> = []
  const lines: Array<string> = []
  const runs = new Map<Failover.Timers, Array<Failover.FailoverRun>>()
  const failures = new Map<Failover.Timers, string>()
  // Interleaved like the throughput runs.
  for (let repetition = 0; repetition < options.failoverRepetitions; repetition++) {
    for (const timers of failoverTimers) {
      if (failures.has(timers)) continue
      try {
        const run = await Failover.runFailover(options.failoverPeer, timers)
        runs.set(timers, [...(runs.get(timers) ?? []), run])
      } catch (error) {
        failures.set(timers, error instanceof Error ? error.message : String(error))
      }
    }
  }
  const suffix = (timers: Failover.Timers) =>
    timers === "default" ? "DefaultTimers" : "FastTimers"
  for (const timers of failoverTimers) {
    const label = `${options.failoverPeer}, ${timers === "default" ? "usrsctp defaults" : "fast timers"}`
    const row: Record<string, unknown> = {
      peer: options.failoverPeer,
      timers,
      ...(timers === "fast" ? { tune: Failover.fastTimers } : {}),
      repetitions: options.failoverRepetitions,
    }
    const failure = failures.get(timers)
    const measured = runs.get(timers) ?? []
    if (failure !== undefined || measured.length === 0) {
      const words = (failure ?? "").split("\n").filter((line) => line.trim() !== "")
      const text =
        failure === undefined
          ? "not run"
          : `FAILED: ${words[0] ?? ""}${words.length > 1 ? ` … ${words[words.length - 1]}` : ""}`
      Object.assign(
        row,
        failure === undefined ? { status: "not run" } : { status: "failed", error: failure },
      )
      figures[`failoverFirstAckMs${suffix(timers)}`] = null
      lines.push(`${label.padEnd(30)}  ${text}`)
      rows.push(row)
      continue
    }
    const of = (field: keyof Failover.FailoverRun) => measured.map((run) => run[field])
    const medianOf = (field: keyof Failover.FailoverRun) => median(of(field))
    const firstAck = of("firstAckMs")
    Object.assign(row, {
      status: "measured",
      takeoverMs: fixed(medianOf("takeoverMs"), 1),
      firstSackMs: fixed(medianOf("firstSackMs"), 1),
      firstDataInMs: fixed(medianOf("firstDataInMs"), 1),
      firstAckMs: fixed(medianOf("firstAckMs"), 1),
      firstAckMsMin: fixed(Math.min(...firstAck), 1),
      firstAckMsMax: fixed(Math.max(...firstAck), 1),
      firstMessageMs: fixed(medianOf("firstMessageMs"), 1),
      runs: measured.map((run) =>
        Object.fromEntries(Object.entries(run).map(([key, value]) => [key, fixed(value, 1)])),
      ),
    })
    figures[`failoverFirstAckMs${suffix(timers)}`] = fixed(medianOf("firstAckMs"), 1)
    figures[`failoverTakeoverMs${suffix(timers)}`] = fixed(medianOf("takeoverMs"), 1)
    figures[`failoverFirstDataInMs${suffix(timers)}`] = fixed(medianOf("firstDataInMs"), 1)
    lines.push(
      [
        label.padEnd(30),
        medianOf("takeoverMs").toFixed(1).padStart(9),
        medianOf("firstSackMs").toFixed(1).padStart(10),
        medianOf("firstDataInMs").toFixed(1).padStart(10),
        medianOf("firstAckMs").toFixed(1).padStart(10),
        `${Math.min(...firstAck).toFixed(0)}–${Math.max(...firstAck).toFixed(0)}`.padStart(11),
        medianOf("firstMessageMs").toFixed(1).padStart(10),
      ].join("  "),
    )
    rows.push(row)
  }
  return { rows, lines }
}

/** Runs every scenario and the failovers; true when every row was measured. */
export const runThroughputBench = async (options: BenchOptions): Promise<boolean> => {
  const { repetitions, scale } = options
  const rows: Array<Record<string, unknown>> = []
  const lines: Array<string> = []
  const figures: Record<string, number | null> = {}
  let complete = true
  for (const size of sizes) {
    const messages = Math.max(1, Math.round(size.messages * scale))
    const outcomes = await measure(
      options.startOurReceiver,
      size.messageLength,
      messages,
      repetitions,
    )
    /** Each scenario's MB/s per repetition, for the paired ratios. */
    const megabytesRuns = new Map<string, ReadonlyArray<number>>()
    for (const [index, scenario] of scenarios.entries()) {
      const outcome = outcomes[index] as Outcome
      const key = figureKey(scenario)
      const row: Record<string, unknown> = {
        scenario: scenario.name,
        replication: scenario.replication,
        messageLength: size.messageLength,
        messages,
        repetitions,
      }
      if (outcome._tag !== "Measured") {
        complete = false
        const text =
          outcome._tag === "NotRun" ? `not run: ${outcome.reason}` : `FAILED: ${outcome.error}`
        Object.assign(
          row,
          outcome._tag === "NotRun"
            ? { status: "not run", reason: outcome.reason }
            : { status: "failed", error: outcome.error },
        )
        figures[`${key}MegabytesPerSecond${size.messageLength}`] = null
        lines.push(
          `${scenario.name.padEnd(30)}  ${String(size.messageLength).padStart(6)}  ${text}`,
        )
        rows.push(row)
        continue
      }
      const messagesPerSecond = median(outcome.runs.map((run) => run.messagesPerSecond))
      const megabytesPerSecond = median(outcome.runs.map((run) => run.megabytesPerSecond))
      const runs = outcome.runs.map((run) => run.megabytesPerSecond)
      megabytesRuns.set(key, runs)
      const ratio = pairedRatio(runs, megabytesRuns.get("tsctp"))
      // Against our single endpoint: the cost of replication (every-update), or the
      // compared copy's figure over this one's.
      const replicationRatio =
        key === "everyUpdate" || key === "compared"
          ? pairedRatio(runs, megabytesRuns.get("ours"))
          : undefined
      const cpu = cpuPerProcess(outcome.runs)
      Object.assign(row, {
        status: "measured",
        messagesPerSecond: Math.round(messagesPerSecond),
        megabytesPerSecond: fixed(megabytesPerSecond, 2),
        ratioToBaseline: ratio === undefined ? null : fixed(ratio, 3),
        ...(key === "everyUpdate" || key === "compared"
          ? { ratioToOurs: replicationRatio === undefined ? null : fixed(replicationRatio, 3) }
          : {}),
        receiverSecondsMedian: fixed(median(outcome.runs.map((run) => run.receiverSeconds)), 3),
        wallSecondsMedian: fixed(median(outcome.runs.map((run) => run.wallSeconds)), 3),
        megabytesPerSecondRuns: outcome.runs.map((run) => fixed(run.megabytesPerSecond, 2)),
        ...(cpu === undefined
          ? {}
          : {
              cpuMsPerMegabyte: cpu.map((process) => fixed(process.median, 2)),
              cpuMsPerMegabyteMin: cpu.map((process) => fixed(process.min, 2)),
              cpuMsPerMegabyteMax: cpu.map((process) => fixed(process.max, 2)),
            }),
      })
      cpu?.forEach((process, index) => {
        figures[`${key}${index === 0 ? "" : "Secondary"}CpuMsPerMegabyte${size.messageLength}`] =
          fixed(process.median, 2)
      })
      figures[`${key}MessagesPerSecond${size.messageLength}`] = Math.round(messagesPerSecond)
      figures[`${key}MegabytesPerSecond${size.messageLength}`] = fixed(megabytesPerSecond, 2)
      if (key !== "tsctp")
        figures[`${key}RatioToTsctp${size.messageLength}`] =
          ratio === undefined ? null : fixed(ratio, 3)
      if (key === "everyUpdate" || key === "compared")
        figures[`${key}RatioToOurs${size.messageLength}`] =
          replicationRatio === undefined ? null : fixed(replicationRatio, 3)
      lines.push(
        [
          scenario.name.padEnd(30),
          String(size.messageLength).padStart(6),
          String(Math.round(messagesPerSecond)).padStart(11),
          megabytesPerSecond.toFixed(2).padStart(9),
          (ratio === undefined ? "—" : ratio.toFixed(3)).padStart(9),
          (replicationRatio === undefined ? "—" : replicationRatio.toFixed(3)).padStart(8),
          median(outcome.runs.map((run) => run.wallSeconds))
            .toFixed(2)
            .padStart(7),
          (cpu === undefined
            ? "—"
            : cpu.map((process) => process.median.toFixed(1)).join(" + ")
          ).padStart(12),
        ].join("  "),
      )
      rows.push(row)
    }
  }
  const failover =
    options.failoverRepetitions > 0
      ? await measureFailover(options, figures)
      : { rows: [], lines: ["failover: not run (--failover-repetitions 0)"] }
  if (failover.rows.some((row) => row.status !== "measured") || failover.rows.length === 0)
    complete = false
  options.print(
    `${"scenario".padEnd(30)}  ${"bytes".padStart(6)}  ${"messages/s".padStart(11)}  ${"MB/s".padStart(9)}  ${"vs tsctp".padStart(9)}  ${"vs ours".padStart(8)}  ${"wall s".padStart(7)}  ${"CPU ms/MB".padStart(12)}`,
  )
  for (const line of lines) options.print(line)
  options.print("")
  options.print(
    `${"failover (SIGKILL → …, ms)".padEnd(30)}  ${"takeover".padStart(9)}  ${"first SACK".padStart(10)}  ${"DATA in".padStart(10)}  ${"first ack".padStart(10)}  ${"ack range".padStart(11)}  ${"message".padStart(10)}`,
  )
  for (const line of failover.lines) options.print(line)
  const gap =
    options.gapRepetitions > 0
      ? await EchoGap.measureEchoGap(options.gapRepetitions)
      : {
          lines: ["echo gap: not run (--gap-repetitions 0)"],
          rows: [],
          figures: {},
          complete: false,
        }
  if (!gap.complete) complete = false
  Object.assign(figures, gap.figures)
  options.print("")
  for (const line of gap.lines) options.print(line)
  options.print(
    JSON.stringify({
      bench: "multihome",
      complete,
      repetitions,
      scale,
      failoverRepetitions: options.failoverRepetitions,
      figures,
      rows,
      failover: failover.rows,
      gapRepetitions: options.gapRepetitions,
      echoGap: gap.rows,
    }),
  )
  return complete
}

const failoverPeerOption = (): Failover.Peer => {
  const index = process.argv.indexOf("--failover-peer")
  if (index < 0) return "client"
  const value = process.argv[index + 1]
  if (value !== "client" && value !== "tsctp") throw new Error("--failover-peer is client or tsctp")
  return value
}

if (import.meta.main) {
  const cleanUp = () => Promise.all([Usrsctp.killAll(), Processes.killAll()])
  const interrupted = () => {
    void cleanUp().finally(() => process.exit(130))
  }
  process.once("SIGINT", interrupted)
  process.once("SIGTERM", interrupted)
  // Whatever happens, no receiver outlives the bench (they also exit when their stdin closes).
  process.once("exit", () => {
    Processes.killAllNow()
    // Sends every SIGKILL synchronously; nothing can be awaited here.
    void Usrsctp.killAll()
  })
  const complete = await runThroughputBench({
    startOurReceiver,
    repetitions: Math.round(option("repetitions", 3)),
    scale: option("scale", 1),
    failoverRepetitions: Math.round(option("failover-repetitions", 3, 0)),
    failoverPeer: failoverPeerOption(),
    gapRepetitions: Math.round(option("gap-repetitions", 3, 0)),
    print: (line) => console.log(line),
  }).finally(cleanUp)
  process.exitCode = complete ? 0 : 1
}
