/**
 * Throughput of SCTP over UDP on loopback: usrsctp's `tsctp` sending into a `tsctp` receiver
 * (the baseline, both with nodebug.so so neither pays for usrsctp's debug log) and into our
 * discard endpoint, with 1,024 and 8,192-byte messages. Prints a table, then one JSON line.
 *
 * Run: `npm run bench -w @understudy/multihome` (`node bench/throughput.ts`), options
 * `--repetitions N` (default 3) and `--scale X` (multiplies the message counts, default 1).
 *
 * Every run sends a fixed number of messages and is timed by its receiver, from the first
 * message delivered to the end of the association (tsctp's own definition); the wall time
 * from the sender's spawn to the receiver's report is kept as a cross-check. A run counts
 * only if every message and byte arrived. The median of the repetitions is reported.
 * MB = 10^6 bytes. Exits non-zero when a scenario was not run or failed: a missing number is
 * never printed as a number.
 */
import { Usrsctp } from "@understudy/testkit"
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
}

type Outcome =
  | { readonly _tag: "Measured"; readonly runs: ReadonlyArray<Run> }
  | { readonly _tag: "NotRun"; readonly reason: string }
  | { readonly _tag: "Failed"; readonly error: string }

interface Scenario {
  readonly name: string
  readonly receiver: "tsctp" | "ours"
  readonly replication: "none" | "every-update"
}

const scenarios: ReadonlyArray<Scenario> = [
  { name: "tsctp → tsctp", receiver: "tsctp", replication: "none" },
  { name: "tsctp → ours", receiver: "ours", replication: "none" },
  { name: "tsctp → ours (every-update)", receiver: "ours", replication: "every-update" },
]

/** Message sizes and the message count per run (about 100–160 MB, 2–3 s at the baseline). */
const sizes: ReadonlyArray<{ readonly messageLength: number; readonly messages: number }> = [
  { messageLength: 1024, messages: 100_000 },
  { messageLength: 8192, messages: 20_000 },
]

const runTimeoutMs = 120_000
const host = "127.0.0.1"

const option = (name: string, fallback: number): number => {
  const index = process.argv.indexOf(`--${name}`)
  if (index < 0) return fallback
  const value = Number(process.argv[index + 1])
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} needs a positive number`)
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
  const ours = await start({ host, replication })
  try {
    const association = ours.nextAssociation()
    const started = performance.now()
    const sender = await sendWithTsctp(ours, messageLength, messages)
    const seen = await withTimeout(association, runTimeoutMs, "our receiver")
    const wallSeconds = (performance.now() - started) / 1000
    await withTimeout(sender.exited, runTimeoutMs, "tsctp sender exit")
    return check(seen, messages, messageLength, wallSeconds)
  } finally {
    await Usrsctp.killAll()
    await ours.close()
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
  /** Where the table and the JSON line go. */
  readonly print: (line: string) => void
}

/** Runs every scenario; true when every row was measured. */
export const runThroughputBench = async (options: BenchOptions): Promise<boolean> => {
  const { repetitions, scale } = options
  const rows: Array<Record<string, unknown>> = []
  const lines: Array<string> = []
  let complete = true
  for (const size of sizes) {
    const messages = Math.max(1, Math.round(size.messages * scale))
    let baselineMegabytes: number | undefined
    const outcomes = await measure(
      options.startOurReceiver,
      size.messageLength,
      messages,
      repetitions,
    )
    for (const [index, scenario] of scenarios.entries()) {
      const outcome = outcomes[index] as Outcome
      const row: Record<string, unknown> = {
        scenario: scenario.name,
        replication: scenario.replication,
        messageLength: size.messageLength,
        messages,
        repetitions,
      }
      if (outcome._tag === "Measured") {
        const messagesPerSecond = median(outcome.runs.map((run) => run.messagesPerSecond))
        const megabytesPerSecond = median(outcome.runs.map((run) => run.megabytesPerSecond))
        if (scenario.receiver === "tsctp") baselineMegabytes = megabytesPerSecond
        const ratio =
          baselineMegabytes === undefined ? undefined : megabytesPerSecond / baselineMegabytes
        Object.assign(row, {
          status: "measured",
          messagesPerSecond: Math.round(messagesPerSecond),
          megabytesPerSecond: Number(megabytesPerSecond.toFixed(2)),
          ratioToBaseline: ratio === undefined ? null : Number(ratio.toFixed(3)),
          receiverSecondsMedian: Number(
            median(outcome.runs.map((run) => run.receiverSeconds)).toFixed(3),
          ),
          wallSecondsMedian: Number(median(outcome.runs.map((run) => run.wallSeconds)).toFixed(3)),
        })
        lines.push(
          [
            scenario.name.padEnd(30),
            String(size.messageLength).padStart(6),
            String(Math.round(messagesPerSecond)).padStart(11),
            megabytesPerSecond.toFixed(2).padStart(9),
            (ratio === undefined ? "—" : ratio.toFixed(3)).padStart(7),
            median(outcome.runs.map((run) => run.wallSeconds))
              .toFixed(2)
              .padStart(8),
          ].join("  "),
        )
      } else {
        complete = false
        const text =
          outcome._tag === "NotRun" ? `not run: ${outcome.reason}` : `FAILED: ${outcome.error}`
        Object.assign(
          row,
          outcome._tag === "NotRun"
            ? { status: "not run", reason: outcome.reason }
            : { status: "failed", error: outcome.error },
        )
        lines.push(
          `${scenario.name.padEnd(30)}  ${String(size.messageLength).padStart(6)}  ${text}`,
        )
      }
      rows.push(row)
    }
  }
  options.print(
    `${"scenario".padEnd(30)}  ${"bytes".padStart(6)}  ${"messages/s".padStart(11)}  ${"MB/s".padStart(9)}  ${"ratio".padStart(7)}  ${"wall s".padStart(8)}`,
  )
  for (const line of lines) options.print(line)
  options.print(
    JSON.stringify({ bench: "multihome-throughput", repetitions, scale, complete, rows }),
  )
  return complete
}

if (import.meta.main) {
  const interrupted = () => {
    void Usrsctp.killAll().finally(() => process.exit(130))
  }
  process.once("SIGINT", interrupted)
  process.once("SIGTERM", interrupted)
  const complete = await runThroughputBench({
    startOurReceiver,
    repetitions: Math.round(option("repetitions", 3)),
    scale: option("scale", 1),
    print: (line) => console.log(line),
  }).finally(() => Usrsctp.killAll())
  process.exitCode = complete ? 0 : 1
}
