/**
 * Seed 001, the replicated SCTP association: `apps/sctp-cluster` as two OS processes, a
 * primary at 127.0.0.2 and a secondary at 127.0.0.3 (`every-update` replication over the
 * intra-cluster link), serving echo as one SCTP endpoint with both addresses. The outside
 * computer is usrsctp's example `client` (a real SCTP stack we did not write): it connects
 * to 127.0.0.2 and sends numbered lines, paced; the primary is SIGKILLed midway. Measured:
 * the time from the SIGKILL to the first echo the client gets from the secondary. Checked:
 * every numbered message came back exactly once and in order, and the client's output shows
 * nothing but peer address changes (no COMM_LOST, ABORT or SHUTDOWN) until it ends the
 * association itself, gracefully, with the secondary.
 *
 * usrsctp's timers are tuned (`tune.so`: RTO min 100 ms, max 400 ms, initial 200 ms, path
 * max retransmissions 2) so the client moves to the alternate address quickly; with its
 * defaults (RTO min 1 s) the failover takes about a second longer and is otherwise the same.
 *
 * @since 0.1.0
 */
import { mainPath, nodeArgs } from "@understudy/app-sctp-cluster/src/launch.ts"
import { Ports, Usrsctp } from "@understudy/testkit"
import { type Child, makeGroup, sleep, waitFor } from "../processes.ts"
import type { Row, Scenario, ScenarioContext } from "../Scenario.ts"

/** @since 0.1.0 @category models */
export interface Settings {
  readonly messages: number
  /** The primary is SIGKILLed once this many messages have been sent. */
  readonly killAfter: number
  /** Pause between two messages. */
  readonly paceMs: number
  /** usrsctp's sysctls for the client (see `Usrsctp.TuneName`). */
  readonly tune: Partial<Record<Usrsctp.TuneName, number>>
  /** A failover slower than this fails the row. */
  readonly failoverBoundMs: number
  readonly startBoundMs: number
}

/** @since 0.1.0 */
export const defaultSettings: Settings = {
  messages: 200,
  killAfter: 100,
  paceMs: 10,
  tune: {
    rto_min_default: 100,
    rto_max_default: 400,
    rto_initial_default: 200,
    path_rtx_max_default: 2,
  },
  failoverBoundMs: 10_000,
  startBoundMs: 20_000,
}

type Line = Record<string, unknown> & { readonly t?: string; readonly _tag?: string }

interface Node {
  readonly role: "primary" | "secondary"
  readonly child: Child
  readonly lines: Array<Line>
}

const parse = (text: string): Line | undefined => {
  try {
    return JSON.parse(text) as Line
  } catch {
    return undefined
  }
}

/** Echo lines as the client prints them: the message as sent, `n <number>`. */
const echoPattern = /^n (\d+)$/

/** The client's notices that would mean the peer noticed more than a path change. */
const failureNotice = /SCTP_COMM_LOST|SCTP_RESTART|SCTP_SHUTDOWN|SCTP_CANT_STR_ASSOC|ABORT/

/** The tuned timers, briefly: what the table row says about them. */
const tuneSummary = (tune: Settings["tune"]) =>
  [
    tune.rto_min_default !== undefined && tune.rto_max_default !== undefined
      ? `RTO ${tune.rto_min_default}-${tune.rto_max_default} ms`
      : undefined,
    tune.rto_initial_default !== undefined ? `initial ${tune.rto_initial_default} ms` : undefined,
    tune.path_rtx_max_default !== undefined
      ? `path max retrans ${tune.path_rtx_max_default}`
      : undefined,
  ]
    .filter((part) => part !== undefined)
    .join(", ")

/**
 * Runs the scenario with `settings` (the showcase uses the defaults; tests may shorten).
 *
 * @since 0.1.0
 */
export const runSctpCluster = async (
  context: ScenarioContext,
  settings: Settings = defaultSettings,
): Promise<ReadonlyArray<Row>> => {
  const { log } = context
  // The nodes end when our stdin pipe to them closes (this process died).
  process.env.SCTP_CLUSTER_EXIT_ON_STDIN_EOF = "1"
  const group = makeGroup()
  const rows: Array<Row> = []
  const nodes: Array<Node> = []
  try {
    // Held together, so the client's encapsulation port differs from the nodes'.
    const [udpPort, clientEncapsPort] = (await Usrsctp.freeEncapsulationPorts(2)) as [
      number,
      number,
    ]
    const link = `tcp://127.0.0.3:${await Ports.freeTcpPort("127.0.0.3")}`
    for (const role of ["secondary", "primary"] as const) {
      const lines: Array<Line> = []
      const child = group.spawnScript(role, mainPath, nodeArgs(role, { udpPort, link }), (text) => {
        const line = parse(text)
        if (line !== undefined) lines.push(line)
      })
      nodes.push({ role, child, lines })
    }
    const [secondary, primary] = nodes as [Node, Node]
    await waitFor(
      "the primary linked to the secondary",
      () => primary.lines.find((line) => line.t === "role" && line.link === "up"),
      settings.startBoundMs,
    )
    log(
      `primary 127.0.0.2 and secondary 127.0.0.3 (UDP ${udpPort}, SCTP port 7, echo), every-update over ${link}`,
    )

    const client = await Usrsctp.startClient({
      host: "127.0.0.2",
      port: 7,
      localEncapsPort: clientEncapsPort,
      remoteEncapsPort: udpPort,
      tune: settings.tune,
    })
    /** Arrival time of each echo, by message number, in the order they came. */
    const echoes: Array<{ readonly n: number; readonly atMs: number }> = []
    let pending = ""
    client.child.stdout?.on("data", (data: Buffer) => {
      pending += data.toString("latin1")
      for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
        const match = echoPattern.exec(pending.slice(0, nl))
        pending = pending.slice(nl + 1)
        if (match !== null) echoes.push({ n: Number(match[1]), atMs: performance.now() })
      }
    })
    await client.waitFor(/SCTP_COMM_UP/, settings.startBoundMs)
    await client.waitFor(
      /Peer address 127\.0\.0\.3 is now SCTP_ADDR_CONFIRMED/,
      settings.startBoundMs,
    )
    log(
      `usrsctp client (tuned: ${tuneSummary(settings.tune)}) associated with 127.0.0.2; the peer confirmed 127.0.0.3 too`,
    )
    rows.push({
      scenario: "sctp-cluster: association up",
      failoverMs: undefined,
      invariant: "usrsctp sees one endpoint: both nodes' addresses confirmed",
      ok: true,
      detail: "COMM_UP at 127.0.0.2, 127.0.0.3 confirmed by HEARTBEAT from the replica",
    })

    let killedAtMs: number | undefined
    let killedWallMs = 0
    let outputAtKill = ""
    for (let n = 1; n <= settings.messages; n++) {
      client.write(`n ${n}\n`)
      if (n === settings.killAfter) {
        outputAtKill = client.stdout()
        killedWallMs = Date.now()
        killedAtMs = performance.now()
        primary.child.process.kill("SIGKILL")
        log(`SIGKILL primary (pid ${primary.child.pid}) after message ${n}`)
      }
      await sleep(settings.paceMs)
    }
    const echoedBeforeKill = echoes.filter((echo) => echo.atMs <= killedAtMs!).length
    let error: string | undefined
    try {
      await waitFor(
        `all ${settings.messages} echoes`,
        () => (echoes.length >= settings.messages ? true : undefined),
        settings.failoverBoundMs,
      )
    } catch (e) {
      error = e instanceof Error ? e.message : String(e)
    }
    const firstAfter = echoes.find((echo) => echo.atMs > killedAtMs! && echo.n > echoedBeforeKill)
    const failoverMs = firstAfter === undefined ? undefined : firstAfter.atMs - killedAtMs!
    for (const line of secondary.lines) {
      if (line.t !== "cluster" && line.t !== "role") continue
      const at = Number(line.wallMs) - killedWallMs
      if (at < 0) continue
      const what =
        line.t === "cluster"
          ? `${line._tag}${line.reason !== undefined ? ` (${line.reason})` : ""}`
          : `role ${line.role}, link ${line.link}`
      log(`  +${at} ms secondary: ${what}`)
    }
    const notices = client
      .stdout()
      .slice(outputAtKill.length)
      .split("\n")
      .filter((text) => text.startsWith("Peer address") || text.startsWith("Association change"))
    for (const notice of notices) log(`  usrsctp: ${notice}`)
    // The secondary retransmits the echoes still outstanding as it takes over; the first
    // message the client sent after the kill tells when the client itself had moved.
    const firstSentAfter = echoes.find((echo) => echo.n === settings.killAfter + 1)
    const movedMs = firstSentAfter === undefined ? undefined : firstSentAfter.atMs - killedAtMs!
    if (failoverMs !== undefined) {
      log(
        `  first echo from the secondary ${failoverMs.toFixed(1)} ms after the SIGKILL (message ${firstAfter!.n})`,
      )
    }
    if (movedMs !== undefined) {
      log(
        `  message ${settings.killAfter + 1}, the first sent after the kill, echoed after ${movedMs.toFixed(1)} ms`,
      )
    }
    rows.push({
      scenario: "sctp-cluster: SIGKILL primary",
      failoverMs,
      invariant: `the secondary goes on with the association (usrsctp tuned: ${tuneSummary(settings.tune)})`,
      ok: failoverMs !== undefined && failoverMs <= settings.failoverBoundMs,
      detail:
        error ??
        `${echoedBeforeKill} echoes before the kill; first after it: message ${firstAfter?.n}; ` +
          `message ${settings.killAfter + 1} (first sent after it) echoed after ${movedMs?.toFixed(1) ?? "-"} ms`,
    })

    const numbers = echoes.map((echo) => echo.n)
    const expected = Array.from({ length: settings.messages }, (_, i) => i + 1)
    const missing = expected.filter((n) => !numbers.includes(n))
    const duplicates = numbers.filter((n, i) => numbers.indexOf(n) !== i)
    const inOrder = numbers.every((n, i) => i === 0 || n > numbers[i - 1]!)
    const failure = client.output().match(failureNotice)
    rows.push({
      scenario: "sctp-cluster: echoes",
      failoverMs: undefined,
      invariant:
        "every message echoed exactly once, in order; usrsctp saw only peer address changes",
      ok: missing.length === 0 && duplicates.length === 0 && inOrder && failure === null,
      detail:
        `${numbers.length} of ${settings.messages} echoed, ${missing.length} missing, ` +
        `${duplicates.length} duplicated, ${inOrder ? "in order" : "OUT OF ORDER"}; ` +
        (failure === null
          ? `client notices: ${notices.length} path change(s)`
          : `client printed ${failure[0]}`),
    })

    // The client ends the association itself: a graceful SHUTDOWN, answered by the secondary.
    client.endInput()
    let shutdown = true
    try {
      await client.waitFor(/SCTP_SHUTDOWN_COMP/, 5_000)
    } catch {
      shutdown = false
    }
    log(
      shutdown
        ? "usrsctp client shut the association down with the secondary"
        : "no SHUTDOWN COMPLETE",
    )
    rows.push({
      scenario: "sctp-cluster: graceful end",
      failoverMs: undefined,
      invariant: "the client's SHUTDOWN completes with the secondary",
      ok: shutdown,
      detail: shutdown ? "SHUTDOWN_COMP" : client.output().slice(-300),
    })
    return rows
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    const stderr = nodes
      .map((node) => node.child.stderr().trim())
      .filter((text) => text.length > 0)
      .slice(0, 1)
      .join(" | ")
    rows.push({
      scenario: "sctp-cluster",
      failoverMs: undefined,
      invariant: "the scenario ran to its end",
      ok: false,
      detail: stderr.length > 0 ? `${message}; node stderr: ${stderr.slice(-500)}` : message,
    })
    return rows
  } finally {
    await Usrsctp.killAll()
    await group.killAll()
  }
}

/** @since 0.1.0 */
export const scenario: Scenario = {
  name: "sctp-cluster",
  description:
    "usrsctp's client sends numbered lines to a two-node SCTP echo cluster (every-update); the primary is SIGKILLed midway",
  run: (context) => runSctpCluster(context),
}
