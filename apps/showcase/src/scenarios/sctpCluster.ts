/**
 * Seed 001, the replicated SCTP association: `apps/sctp-cluster` as two OS processes, a
 * primary at 127.0.0.2 and a secondary at 127.0.0.3 (`every-update` replication over the
 * intra-cluster link), serving echo as one SCTP endpoint with both addresses. The outside
 * computer is usrsctp's example `client` (a real SCTP stack we did not write), or, where
 * usrsctp is not installed and cannot be, Understudy's own SCTP endpoint, and the rows say
 * so (`sctpPeer.ts`): it connects to 127.0.0.2 and sends numbered lines, paced; the primary
 * is SIGKILLed midway. Measured:
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
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { Ports, Usrsctp } from "@understudy/app-kit"
import { nodeArgs } from "@understudy/app-sctp-cluster/launch"
import { ClusterKey } from "@understudy/transport"
import { Effect } from "effect"
import { commandPath } from "../apps.ts"
import { type Child, makeGroup, waitFor } from "../processes.ts"
import { defaultOptions, type Row, type Scenario, type ScenarioContext } from "../Scenario.ts"
import {
  decidePeer,
  machineEnvironment,
  type PeerEnvironment,
  type SctpPeer,
  startUnderstudyPeer,
  startUsrsctpPeer,
} from "./sctpPeer.ts"

/** @since 0.1.0 @category models */
export interface Settings {
  readonly messages: number
  /** The primary is SIGKILLed once this many messages have been sent. */
  readonly killAfter: number
  /** Pause between two messages. */
  readonly paceMs: number
  /** The peer's timers, as usrsctp's sysctls (see `Usrsctp.TuneName`). */
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
 * Runs the scenario with `settings` (the showcase uses the defaults; tests may shorten) and
 * the peer `context.options` asks for; `environment` is this machine unless a test
 * says otherwise.
 *
 * @since 0.1.0
 */
export const runSctpCluster = async (
  context: ScenarioContext,
  settings: Settings = defaultSettings,
  environment: PeerEnvironment = machineEnvironment(context.log),
): Promise<ReadonlyArray<Row>> => {
  const { log } = context
  const decision = await decidePeer((context.options ?? defaultOptions).sctpPeer, environment)
  if (decision.note !== undefined) log(decision.note)
  /** A row, with the note on the peer when it is not usrsctp. */
  const row = (fields: Omit<Row, "note">): Row =>
    decision.note === undefined ? fields : { ...fields, note: decision.note }
  let peer: SctpPeer | undefined
  // The nodes end when our stdin pipe to them closes (this process died).
  process.env.SCTP_CLUSTER_EXIT_ON_STDIN_EOF = "1"
  const group = makeGroup()
  const rows: Array<Row> = []
  const nodes: Array<Node> = []
  const dir = mkdtempSync(join(tmpdir(), "showcase-sctp-cluster-"))
  try {
    // Keyed, as the nodes are by default: the link and its snapshots are authenticated.
    const keyFile = join(dir, "cluster.key")
    await Effect.runPromise(ClusterKey.generateFile(keyFile))
    // Held together, so the client's encapsulation port differs from the nodes'.
    const [udpPort, clientEncapsPort] = (await Usrsctp.freeEncapsulationPorts(2)) as [
      number,
      number,
    ]
    const link = `tcp://127.0.0.3:${await Ports.freeTcpPort("127.0.0.3")}`
    for (const role of ["secondary", "primary"] as const) {
      const lines: Array<Line> = []
      const child = group.spawnScript(
        role,
        commandPath("@understudy/app-sctp-cluster", "sctp-cluster"),
        nodeArgs(role, { udpPort, link, keyFile }),
        (text) => {
          const line = parse(text)
          if (line !== undefined) lines.push(line)
        },
      )
      nodes.push({ role, child, lines })
    }
    const [secondary, primary] = nodes as [Node, Node]
    await waitFor(
      "the primary linked to the secondary",
      () => primary.lines.find((line) => line.t === "role" && line.link === "up"),
      settings.startBoundMs,
    )
    log(
      `primary 127.0.0.2 and secondary 127.0.0.3 (UDP ${udpPort}, SCTP port 7, echo), every-update over ${link}, keyed`,
    )

    const target = {
      host: "127.0.0.2",
      alternate: "127.0.0.3",
      udpPort,
      port: 7,
      localEncapsPort: clientEncapsPort,
      tune: settings.tune,
      startBoundMs: settings.startBoundMs,
    }
    peer =
      decision.kind === "usrsctp"
        ? await startUsrsctpPeer(target)
        : await startUnderstudyPeer(target)
    const { echoes } = peer
    log(
      `${peer.name} (tuned: ${tuneSummary(settings.tune)}) associated with 127.0.0.2; the peer confirmed 127.0.0.3 too`,
    )
    rows.push(
      row({
        scenario: "sctp-cluster: association up",
        failoverMs: undefined,
        invariant: "the peer sees one endpoint: both nodes' addresses confirmed",
        ok: true,
        detail: "COMM_UP at 127.0.0.2, 127.0.0.3 confirmed by HEARTBEAT from the replica",
      }),
    )

    let killedAtMs: number | undefined
    let killedWallMs = 0
    let noticesAtKill = 0
    for (let n = 1; n <= settings.messages; n++) {
      peer.send(n)
      if (n === settings.killAfter) {
        noticesAtKill = peer.notices().length
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
    const notices = peer.notices().slice(noticesAtKill)
    for (const notice of notices) log(`  ${peer.name}: ${notice}`)
    // The secondary retransmits the echoes still outstanding as it takes over; the first
    // message the peer sent after the kill tells when the peer itself had moved.
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
    rows.push(
      row({
        scenario: "sctp-cluster: SIGKILL primary",
        failoverMs,
        invariant: `the secondary goes on with the association (--failover ${String(secondary.lines.find((line) => line.t === "started")?.failover ?? "-")}; peer tuned: ${tuneSummary(settings.tune)})`,
        ok: failoverMs !== undefined && failoverMs <= settings.failoverBoundMs,
        detail:
          error ??
          `${echoedBeforeKill} echoes before the kill; first after it: message ${firstAfter?.n}; ` +
            `message ${settings.killAfter + 1} (first sent after it) echoed after ${movedMs?.toFixed(1) ?? "-"} ms` +
            (notices.some((notice) => notice.includes("SCTP_ADDR_MADE_PRIM"))
              ? "; the peer made 127.0.0.3 its primary (ASCONF)"
              : "") +
            (secondary.lines.some((line) => line.t === "cluster" && line._tag === "AddressTaken")
              ? "; the secondary took over 127.0.0.2"
              : ""),
      }),
    )

    const numbers = echoes.map((echo) => echo.n)
    const expected = Array.from({ length: settings.messages }, (_, i) => i + 1)
    const missing = expected.filter((n) => !numbers.includes(n))
    const duplicates = numbers.filter((n, i) => numbers.indexOf(n) !== i)
    const inOrder = numbers.every((n, i) => i === 0 || n > numbers[i - 1]!)
    const failure = peer.failure()
    rows.push(
      row({
        scenario: "sctp-cluster: echoes",
        failoverMs: undefined,
        invariant:
          "every message echoed exactly once, in order; the peer saw only peer address changes",
        ok: missing.length === 0 && duplicates.length === 0 && inOrder && failure === undefined,
        detail:
          `${numbers.length} of ${settings.messages} echoed, ${missing.length} missing, ` +
          `${duplicates.length} duplicated, ${inOrder ? "in order" : "OUT OF ORDER"}; ` +
          (failure === undefined
            ? `peer notices: ${notices.length} path change(s)`
            : `the peer saw ${failure}`),
      }),
    )

    // The peer ends the association itself: a graceful SHUTDOWN, answered by the secondary.
    const shutdown = await peer.shutdown(5_000)
    log(
      shutdown
        ? `${peer.name} shut the association down with the secondary`
        : "no SHUTDOWN COMPLETE",
    )
    rows.push(
      row({
        scenario: "sctp-cluster: graceful end",
        failoverMs: undefined,
        invariant: "the peer's SHUTDOWN completes with the secondary",
        ok: shutdown,
        detail: shutdown ? "SHUTDOWN_COMP" : `last notices: ${peer.notices().slice(-3).join("; ")}`,
      }),
    )
    return rows
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    const stderr = nodes
      .map((node) => node.child.stderr().trim())
      .filter((text) => text.length > 0)
      .slice(0, 1)
      .join(" | ")
    rows.push(
      row({
        scenario: "sctp-cluster",
        failoverMs: undefined,
        invariant: "the scenario ran to its end",
        ok: false,
        detail: stderr.length > 0 ? `${message}; node stderr: ${stderr.slice(-500)}` : message,
      }),
    )
    return rows
  } finally {
    await peer?.close().catch(() => {})
    await Usrsctp.killAll()
    await group.killAll()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** @since 0.1.0 */
export const scenario: Scenario = {
  name: "sctp-cluster",
  description:
    "usrsctp's client (or, without usrsctp, Understudy's own SCTP endpoint) sends numbered lines to a two-node SCTP echo cluster (every-update); the primary is SIGKILLed midway",
  run: (context) => runSctpCluster(context),
}
