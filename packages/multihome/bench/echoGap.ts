/**
 * What the outside peer feels of a failover: usrsctp's `client`, with its default timers,
 * sends a numbered line every 20 ms (50 messages/s) to the cluster's echo service (primary
 * 127.0.0.2, secondary 127.0.0.3, every-update, two OS processes); once it runs and the
 * client confirmed the secondary's address, the bench SIGKILLs the primary and keeps
 * streaming for {@link afterKillMs}. Each echo's arrival is timed as the client prints it
 * (the bench reads its stdout).
 *
 * Figures of one run, from the SIGKILL: `firstEchoMs` (the first echo after it),
 * `longestGapMs` (the longest time between two consecutive echoes, from 1 s before the kill
 * to the end of the run), `belowHalfMs` (the time, in 200 ms bins after the kill, in which
 * fewer than half the expected 10 echoes arrived). Compared: `--failover none` (the peer
 * moves when its T3-rtx timers give up on the dead address: today's behaviour, the
 * baseline), `asconf` (the secondary's ASCONF Set Primary Address) and `takeover` (the
 * secondary binds the dead primary's address and takes in what the client still sends
 * there). A run counts only if every line came back exactly once and in order and the client
 * never lost the association.
 */
import { setTimeout as sleep } from "node:timers/promises"
import { Usrsctp } from "@understudy/testkit"
import * as Processes from "./processes.ts"

/** One run's figures, milliseconds. */
export interface GapRun {
  readonly firstEchoMs: number
  readonly longestGapMs: number
  readonly belowHalfMs: number
}

/** How the takeover moves the peer (`Cluster.Options.failover`). */
export type GapFailover = "none" | "asconf" | "takeover" | "both"

const everyMs = 20
const beforeKillMs = 1_000
/** Long enough for `none`: usrsctp's T3-rtx backs off 1, 2, 4, 8 s before it moves. */
export const afterKillMs = 20_000
const setupTimeoutMs = 20_000
const binMs = 200

/** One failover; every process it starts is killed before it returns. */
export const runEchoGap = async (failover: GapFailover): Promise<GapRun> => {
  let feeder: ReturnType<typeof setInterval> | undefined
  try {
    const cluster = await Processes.startCluster({
      policy: "every-update",
      observe: true,
      service: "echo",
      failover,
    })
    const client = await Usrsctp.startClient({
      host: Processes.clusterHosts.primary,
      port: Processes.sctpPort,
      localEncapsPort: await Usrsctp.freeEncapsulationPort(),
      remoteEncapsPort: cluster.udpPort,
    })
    const echoes: Array<{ readonly n: number; readonly atMs: number }> = []
    let pending = ""
    client.child.stdout?.on("data", (data: Buffer) => {
      const atMs = performance.now()
      pending += data.toString("latin1")
      const lines = pending.split("\n")
      pending = lines.pop() ?? ""
      for (const line of lines) {
        const match = /^n (\d+)$/.exec(line)
        if (match !== null) echoes.push({ n: Number(match[1]), atMs })
      }
    })
    await client.waitFor(/SCTP_COMM_UP/, setupTimeoutMs)
    await client.waitFor(/Peer address 127\.0\.0\.3 is now SCTP_ADDR_CONFIRMED/, setupTimeoutMs)
    let written = 0
    feeder = setInterval(() => client.write(`n ${++written}\n`), everyMs)
    await sleep(beforeKillMs)
    const killAtMs = performance.now()
    cluster.primary.process.kill("SIGKILL")
    await sleep(afterKillMs)
    clearInterval(feeder)
    feeder = undefined
    // The last lines written: their echoes, bounded.
    const last = written
    // Without ASCONF the peer's T3-rtx backs off to 16 s and more before it drains: 90 s.
    for (let waited = 0; waited < 90_000 && (echoes.at(-1)?.n ?? 0) < last; waited += 50) {
      await sleep(50)
    }
    if (/SCTP_COMM_LOST|ABORT|SCTP_SHUTDOWN/.test(client.output()))
      throw new Error(`the client lost its association:\n${client.output().slice(-1000)}`)
    const numbers = echoes.map((echo) => echo.n)
    if (numbers.length !== last || numbers.some((n, index) => n !== index + 1))
      throw new Error(`echoes not once and in order: ${numbers.length} of ${last}`)
    const after = echoes.filter((echo) => echo.atMs > killAtMs)
    const window = echoes.filter((echo) => echo.atMs > killAtMs - beforeKillMs)
    let longestGapMs = 0
    for (let index = 1; index < window.length; index++) {
      longestGapMs = Math.max(longestGapMs, window[index]!.atMs - window[index - 1]!.atMs)
    }
    let belowHalfMs = 0
    const expected = binMs / everyMs
    for (let start = killAtMs; start + binMs <= killAtMs + afterKillMs; start += binMs) {
      const inBin = after.filter((echo) => echo.atMs >= start && echo.atMs < start + binMs).length
      if (inBin < expected / 2) belowHalfMs += binMs
    }
    return {
      firstEchoMs: (after[0]?.atMs ?? Number.NaN) - killAtMs,
      longestGapMs,
      belowHalfMs,
    }
  } finally {
    if (feeder !== undefined) clearInterval(feeder)
    await Usrsctp.killAll()
    await Processes.killAll()
  }
}

const percentile = (values: ReadonlyArray<number>, p: number): number => {
  // Nearest rank: with few runs p99 is the worst one.
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

/** The settings a run measures by default; `both` (ASCONF and the address) on request. */
const failovers: ReadonlyArray<GapFailover> = ["none", "asconf", "takeover"]
const known: ReadonlyArray<GapFailover> = [...failovers, "both"]

const usage = `node bench/echoGap.ts [--gap-repetitions N] [--failover none,asconf,takeover,both]

  --gap-repetitions N   SIGKILLs per setting, interleaved (default 3)
  --failover LIST       the settings to run: none, asconf, takeover (the default) and both;
                        none, the baseline, takes ~1 min a kill against ~25 s for the others`

/** The runs measured so far, per setting, and the error that stopped a setting. */
export interface GapRuns {
  readonly runs: Map<GapFailover, Array<GapRun>>
  readonly failures: Map<GapFailover, string>
}

/**
 * `repetitions` SIGKILLs per setting, interleaved (none, asconf, takeover, none, …) so a slow
 * phase of a shared machine hits them all; `onRun` hears of each run as it ends (a 20-kill
 * bench runs for about 45 minutes), and `into` keeps what is measured so far (a run
 * interrupted midway can still be summarised).
 */
export const collectEchoGap = async (
  repetitions: number,
  onRun: (failover: GapFailover, repetition: number, run: GapRun | string) => void = () => {},
  into: GapRuns = { runs: new Map(), failures: new Map() },
  settings: ReadonlyArray<GapFailover> = failovers,
): Promise<GapRuns> => {
  const { runs, failures } = into
  for (let repetition = 0; repetition < repetitions; repetition++) {
    for (const failover of settings) {
      if (failures.has(failover)) continue
      try {
        const run = await runEchoGap(failover)
        runs.set(failover, [...(runs.get(failover) ?? []), run])
        onRun(failover, repetition, run)
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error)
        failures.set(failover, message)
        onRun(failover, repetition, message)
      }
    }
  }
  return into
}

/**
 * The summary of the runs: a table of p50 / p99 (and min–max) per figure, the JSON rows, the
 * named figures (`echoLongestGapMsP50None`, …, `echoLongestGapRatioAsconfToNone`,
 * `echoLongestGapRatioTakeoverToNone`), the runs done per setting, and whether every setting
 * ran its `repetitions` (not when one failed or the bench was interrupted).
 */
export const summariseEchoGap = (
  { runs, failures }: GapRuns,
  repetitions: number,
  settings: ReadonlyArray<GapFailover> = failovers,
): {
  readonly lines: Array<string>
  readonly rows: Array<Record<string, unknown>>
  readonly figures: Record<string, number | null>
  readonly runsDone: Record<GapFailover, number>
  readonly complete: boolean
} => {
  const lines = [
    `${"echo gap (SIGKILL → …, ms)".padEnd(30)}  ${"first echo p50/p99".padStart(19)}  ${"longest gap p50/p99".padStart(20)}  ${"gap min–max".padStart(12)}  ${"below half p50/p99".padStart(19)}`,
  ]
  const rows: Array<Record<string, unknown>> = []
  const figures: Record<string, number | null> = {}
  const name = (failover: GapFailover) => `${failover[0]!.toUpperCase()}${failover.slice(1)}`
  const shown = known.filter(
    (failover) => failovers.includes(failover) || settings.includes(failover),
  )
  for (const failover of shown) {
    const measured = runs.get(failover) ?? []
    const failure = failures.get(failover)
    const label = `client, usrsctp defaults, ${failover}`
    if (failure !== undefined || measured.length === 0) {
      lines.push(
        `${label.padEnd(30)}  ${failure === undefined ? "not run" : `FAILED: ${failure.split("\n")[0]}`}`,
      )
      rows.push({ failover, status: failure === undefined ? "not run" : "failed", error: failure })
      figures[`echoLongestGapMsP50${name(failover)}`] = null
      figures[`echoLongestGapMsP99${name(failover)}`] = null
      continue
    }
    const of = (field: keyof GapRun) => measured.map((run) => run[field])
    const pair = (field: keyof GapRun) =>
      `${percentile(of(field), 50).toFixed(0)} / ${percentile(of(field), 99).toFixed(0)}`
    const gaps = of("longestGapMs")
    lines.push(
      [
        label.padEnd(30),
        pair("firstEchoMs").padStart(19),
        pair("longestGapMs").padStart(20),
        `${Math.min(...gaps).toFixed(0)}–${Math.max(...gaps).toFixed(0)}`.padStart(12),
        pair("belowHalfMs").padStart(19),
      ].join("  "),
    )
    rows.push({
      failover,
      status: "measured",
      repetitions: measured.length,
      runs: measured.map((run) =>
        Object.fromEntries(Object.entries(run).map(([key, value]) => [key, Math.round(value)])),
      ),
    })
    for (const field of ["firstEchoMs", "longestGapMs", "belowHalfMs"] as const) {
      const stem = `echo${field[0]!.toUpperCase()}${field.slice(1)}`
      figures[`${stem}P50${name(failover)}`] = Math.round(percentile(of(field), 50))
      figures[`${stem}P99${name(failover)}`] = Math.round(percentile(of(field), 99))
    }
  }
  const none = figures.echoLongestGapMsP50None
  for (const failover of shown.filter((f) => f !== "none")) {
    const measured = figures[`echoLongestGapMsP50${name(failover)}`]
    figures[`echoLongestGapRatio${name(failover)}ToNone`] =
      typeof none === "number" && typeof measured === "number" && none > 0
        ? Number((measured / none).toFixed(3))
        : null
  }
  const runsDone = Object.fromEntries(
    shown.map((failover) => [failover, runs.get(failover)?.length ?? 0]),
  ) as Record<GapFailover, number>
  const complete =
    failures.size === 0 && settings.every((failover) => runsDone[failover] >= repetitions)
  return { lines, rows, figures, runsDone, complete }
}

/**
 * Every run, each printed as it ends ({@link printRun}), then the summary (see
 * {@link collectEchoGap}, {@link summariseEchoGap}).
 */
export const measureEchoGap = async (
  repetitions: number,
  onRun: Parameters<typeof collectEchoGap>[1] = printRun,
): Promise<ReturnType<typeof summariseEchoGap>> =>
  summariseEchoGap(await collectEchoGap(repetitions, onRun), repetitions)

/** One line per run as it ends, on stderr (the table and the JSON line stay on stdout). */
export const printRun = (failover: GapFailover, repetition: number, run: GapRun | string): void => {
  const figures =
    typeof run === "string"
      ? { error: run.split("\n")[0] }
      : Object.fromEntries(Object.entries(run).map(([key, value]) => [key, Math.round(value)]))
  process.stderr.write(
    `${JSON.stringify({ run: "multihome-echo-gap", failover, repetition: repetition + 1, ...figures })}\n`,
  )
}

if (import.meta.main) {
  if (process.argv.includes("--help")) {
    console.log(usage)
    process.exit(0)
  }
  const index = process.argv.indexOf("--gap-repetitions")
  const repetitions = index < 0 ? 3 : Number(process.argv[index + 1])
  const at = process.argv.indexOf("--failover")
  const asked = at < 0 ? failovers : (process.argv[at + 1] ?? "").split(",")
  const settings = known.filter((failover) => asked.includes(failover))
  const unknown = asked.filter((setting) => !known.includes(setting as GapFailover))
  if (!Number.isInteger(repetitions) || repetitions < 1 || unknown.length > 0) {
    console.error(`bad arguments${unknown.length > 0 ? `: ${unknown.join(", ")}` : ""}\n${usage}`)
    process.exit(2)
  }
  process.once("exit", () => {
    Processes.killAllNow()
    void Usrsctp.killAll()
  })
  const report = (result: ReturnType<typeof summariseEchoGap>) => {
    for (const line of result.lines) console.log(line)
    console.log(
      JSON.stringify({
        bench: "multihome-echo-gap",
        complete: result.complete,
        // Asked for, and done per setting (fewer when interrupted or a setting failed).
        repetitions,
        runsDone: result.runsDone,
        figures: result.figures,
        rows: result.rows,
      }),
    )
  }
  const measured: GapRuns = { runs: new Map(), failures: new Map() }
  // Interrupted (Ctrl-C, a time limit's SIGTERM): the summary of the runs that ended.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      report(summariseEchoGap(measured, repetitions, settings))
      process.exit(1)
    })
  }
  const result = summariseEchoGap(
    await collectEchoGap(repetitions, printRun, measured, settings),
    repetitions,
    settings,
  )
  report(result)
  process.exitCode = result.complete ? 0 : 1
}
