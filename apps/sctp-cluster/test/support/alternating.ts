/**
 * Alternating failovers with real processes, for the process tests and the bench: two
 * `sctp-cluster` nodes on 127.0.0.2 and 127.0.0.3 under `every-update`, a usrsctp program as
 * the outside peer. Each round takes the serving node out, the standby takes over, and the
 * node taken out is restarted as the standby of the one that took over (addresses swapped,
 * its own link, a standby link back: the failback); the next round takes the other one out.
 * Every wait is for an event, bounded.
 *
 * - Peer `client` (default): usrsctp's `client` talks to the echo service for the whole run.
 *   Each round sends one message right after the failure: its echo through the node that
 *   takes over is the round's failover time, from just before `kill(2)`.
 * - Peer `tsctp`: the pair runs the discard service and each round runs one `tsctp` sender
 *   of 1,024-byte messages for `tsctpSeconds`; the serving node is taken out once 200 of
 *   them reached it and the standby answered the peer's HEARTBEAT, and the stream must end
 *   with its graceful SHUTDOWN through the node that took over.
 *
 * A round takes the serving node out by SIGKILL, or (`failure` says "stop", with a fence)
 * by SIGSTOP past the link's time-out and the fence's lease: the standby takes over at the
 * next epoch, the stopped node is SIGCONTed, must say it lost the role, is watched while it
 * runs on, then SIGKILLed and restarted as the standby. With a `capture`, each round marks
 * it once the node is stopped or gone (`r<N>-down`), just before a stopped node's SIGCONT
 * (`r<N>-cont`) and before its restart (`r<N>-rejoin`).
 */
import { readFileSync } from "node:fs"
import { Eventually, Ports, Usrsctp } from "@understudy/testkit"
import * as App from "../support.ts"
import * as Capture from "./capture.ts"

/** Short timers for the peer: a dead address is left, and a restored one probed, fast. */
export const tuned: NonNullable<Usrsctp.ShimOptions["tune"]> = {
  rto_min_default: 100,
  rto_max_default: 400,
  rto_initial_default: 200,
  path_rtx_max_default: 2,
  heartbeat_interval_default: 200,
  // A path is left after 2 retransmissions, but the association is not given up before 30
  // (about 12 s at these RTOs): a starved machine may stall both nodes for seconds.
  assoc_rtx_max_default: 30,
}

export type Host = "127.0.0.2" | "127.0.0.3"

export interface Options {
  readonly rounds: number
  /** The outside peer (see the module's doc). Default `client`. */
  readonly peer?: "client" | "tsctp"
  /** Client: messages sent (and echoed) before each failure. Default 3. */
  readonly perRound?: number
  /** tsctp: how long each round's stream sends. Default 3 s. */
  readonly tsctpSeconds?: number
  /** usrsctp's timers (tune.so); "defaults": none (usrsctp's own). Default {@link tuned}. */
  readonly tune?: NonNullable<Usrsctp.ShimOptions["tune"]> | "defaults"
  /** Fence the role in a `sctp-cluster store` with this lease (`--fence-lease-ms`). */
  readonly fenceLeaseMs?: number
  /** How round N takes the serving node out. Default: SIGKILL every round. */
  readonly failure?: (round: number) => "kill" | "stop"
  /** Capture the pair's and the peer's datagrams, the rounds marked (see the module's doc). */
  readonly capture?: boolean
  /** Progress, one line per round. */
  readonly log?: (line: string) => void
}

export interface Round {
  readonly round: number
  readonly failure: "kill" | "stop"
  /** The node taken out, and the one that took over. */
  readonly from: Host
  readonly to: Host
}

export interface Outcome {
  /** Per round: the failure to the echo of the message sent right after it, ms (client). */
  readonly failoverMs: ReadonlyArray<number>
  /** Client: the numbers echoed, in the order the peer received them. */
  readonly echoed: ReadonlyArray<number>
  readonly sent: number
  /** The client's whole output, or every tsctp's (to look for ABORT, COMM_LOST …). */
  readonly peerOutput: string
  readonly rounds: ReadonlyArray<Round>
  /** The pair's UDP encapsulation port and the peer's. */
  readonly udpPort: number
  readonly peerEncapsPort: number
  /** tsctp: per round, what the sender said and what the nodes received of it. */
  readonly streams: ReadonlyArray<TsctpRound>
  /** The status addresses of the node serving at the end and of its standby. */
  readonly servingStatus: string
  readonly standbyStatus: string
  /** The pair's cluster key file. */
  readonly keyFile: string
  /** With `capture`: the capture, still running (stopped by `App.killAll`). */
  readonly capture: Capture.Capture | undefined
}

export interface TsctpRound {
  readonly round: number
  readonly exitCode: number | null
  /** The sender's summary: messages it sent (all of them acknowledged before its SHUTDOWN). */
  readonly sentMessages: number | undefined
  /** Messages the node taken out had received of this stream before the failure (at least). */
  readonly beforeFailure: number
  /** Messages of this stream the node that took over handed to its service. */
  readonly afterFailure: number
  /** The dropped counters of the node that took over, after the stream. */
  readonly survivorDropped: Readonly<Record<string, number>>
}

const count = (text: string, pattern: RegExp) => [...text.matchAll(pattern)].length

type Report = {
  readonly unprotected: boolean
  readonly endpoint: { readonly packetsOut: number; readonly dropped: Record<string, number> }
  readonly received: { readonly messages: number }
  readonly replicas: number
  readonly link: string
}

/** A node's status over HTTP; undefined while it does not answer. */
const reportOf = async (status: string): Promise<Report | undefined> => {
  try {
    const response = await fetch(`http://${status.replace("tcp://", "")}/status`, {
      signal: AbortSignal.timeout(2_000),
    })
    return (await response.json()) as Report
  } catch {
    return undefined
  }
}

/** Whether the process is stopped (state T in /proc/PID/stat). */
const stopped = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T")
  } catch {
    return false
  }
}

/**
 * A node's `started` line comes within this long. It needs about 0.6 s of CPU (Node
 * loading the app, measured to the line) and a rejoining standby also its link up, for the
 * serving node to give its address back: 11 s at load 35 on this 2-core machine, past 30 s
 * at load 60.
 */
const startedWithinMs = 60_000

type Lines = { readonly lines: ReadonlyArray<Record<string, unknown>> }

/** The node's last `role` line: its role and link as they are now. */
const roleNow = (node: Lines) => node.lines.findLast((line) => line.t === "role")

/**
 * Waits (at most 30 s) until the standby is the linked secondary and the serving node's link
 * is up, as they are now, not once: a link the keep-alive ended while a starting standby was
 * starved had printed "up" for a moment, and the run went on with no standby behind the
 * serving node.
 */
const linkedNow = (what: string, standby: Lines, serving: Lines) =>
  Eventually.promise(
    what,
    () => {
      const standbyRole = roleNow(standby)
      return standbyRole?.role === "secondary" &&
        standbyRole.link === "up" &&
        roleNow(serving)?.link === "up"
        ? true
        : undefined
    },
    { within: 30_000 },
  )

const otherOf = (host: Host): Host => (host === "127.0.0.2" ? "127.0.0.3" : "127.0.0.2")
const hostPattern = (host: Host) => host.replaceAll(".", "\\.")

/** Runs `rounds` alternating failovers; processes are left to `App.killAll`. */
export const run = async (options: Options): Promise<Outcome> => {
  const nodes: Array<ReturnType<typeof App.start>> = []
  try {
    return await runNodes(options, nodes)
  } catch (error) {
    // What every node said, in the failure (CI shows it).
    const said = nodes.map(
      (node, index) =>
        `node ${index} (${node.exited ? "exited" : "running"}):\n${node.lines
          .slice(-20)
          .map((line) => JSON.stringify(line))
          .join("\n")}\nstderr: ${node.stderr.slice(-1_500)}`,
    )
    throw new Error(`${String(error)}\n${said.join("\n")}`, { cause: error })
  }
}

const runNodes = async (
  options: Options,
  nodes: Array<ReturnType<typeof App.start>>,
): Promise<Outcome> => {
  const peer = options.peer ?? "client"
  const perRound = options.perRound ?? 3
  const tsctpSeconds = options.tsctpSeconds ?? 3
  /** The serving node is taken out once this many messages of the stream reached it. */
  const tsctpCutAfter = 200
  const tune = options.tune === "defaults" ? undefined : (options.tune ?? tuned)
  const failureOf = options.failure ?? (() => "kill" as const)
  const log = options.log ?? (() => {})
  const ports = await App.clusterPorts()
  const capture =
    options.capture === true
      ? await Capture.start([ports.udpPort, ports.clientEncapsPort])
      : undefined
  const mark = async (label: string) => {
    if (capture !== undefined) await capture.mark(label)
  }
  const links: Record<Host, string> = {
    "127.0.0.2": `tcp://127.0.0.2:${await Ports.freeTcpPort("127.0.0.2")}`,
    "127.0.0.3": ports.link,
  }
  const shared: Array<string> = []
  if (peer === "tsctp") shared.push("--service", "discard")
  if (options.fenceLeaseMs !== undefined) {
    const storeAddress = (await App.startStore(ports.keyFile)).listen
    shared.push("--store", storeAddress, "--fence-lease-ms", String(options.fenceLeaseMs))
  }
  /** A node (re)joining at `host` as the standby of the other one. */
  const tracked = (node: ReturnType<typeof App.start>) => {
    nodes.push(node)
    return node
  }
  const standbyAt = (host: Host) =>
    tracked(
      App.start([
        "node",
        "--role",
        "secondary",
        "--addresses",
        `${otherOf(host)},${host}`,
        "--policy",
        "every-update",
        "--udp-port",
        String(ports.udpPort),
        "--link",
        links[host],
        "--standby-link",
        links[otherOf(host)],
        "--status",
        "tcp://127.0.0.1:0",
        "--cluster-key-file",
        ports.keyFile,
        ...shared,
      ]),
    )

  let standby = standbyAt("127.0.0.3")
  let serving = tracked(App.start(App.nodeArgs("primary", ports, shared, ["every-update"])))
  let servingStatus = (await serving.line("started", startedWithinMs)).status as string
  let standbyStatus = (await standby.line("started", startedWithinMs)).status as string
  await linkedNow("the primary's link to the secondary is up", standby, serving)
  if (options.fenceLeaseMs !== undefined) {
    await Eventually.promise(
      "the primary holds the fence",
      () => serving.lines.find((line) => line.t === "cluster" && line._tag === "Fenced"),
      { within: 30_000 },
    )
  }

  let client: Usrsctp.UsrsctpProcess | undefined
  if (peer === "client") {
    client = (await App.connectClient(ports, tune, 30_000)).client
  }
  let sent = 0
  let tsctpOutput = ""
  const echoOf = (n: number) => client!.waitFor(new RegExp(`^n ${n}$`, "m"), 30_000)
  const send = async (messages: number) => {
    if (client === undefined) return
    for (let i = 0; i < messages; i++) client.write(`n ${++sent}\n`)
    await echoOf(sent)
  }
  const peerOutput = () => client?.output() ?? tsctpOutput

  let servingHost: Host = "127.0.0.2"
  const failoverMs: Array<number> = []
  const rounds: Array<Round> = []
  const streams: Array<TsctpRound> = []
  for (let round = 1; round <= options.rounds; round++) {
    const failure = failureOf(round)
    if (failure === "stop" && options.fenceLeaseMs === undefined)
      throw new Error("a SIGSTOP round needs a fence (fenceLeaseMs)")
    const deadHost = servingHost
    const address = `Peer address ${hostPattern(deadHost)} is now SCTP_ADDR_`
    const available = new RegExp(`${address}AVAILABLE`, "g")
    const unreachable = new RegExp(`${address}UNREACHABLE`, "g")
    const availableBefore = count(peerOutput(), available)
    const unreachableBefore = count(peerOutput(), unreachable)
    const phases: Array<string> = []
    let startedAt = performance.now()
    const phase = (name: string) =>
      phases.push(`${name} ${(performance.now() - startedAt).toFixed(0)}`)

    // tsctp: a new stream, taken out from under once it runs on both nodes.
    let stream: Usrsctp.UsrsctpProcess | undefined
    let servingBefore = 0
    let standbyBefore = 0
    if (peer === "tsctp") {
      servingBefore = (await reportOf(servingStatus))?.received.messages ?? 0
      const standbyOut = (await reportOf(standbyStatus))?.endpoint.packetsOut ?? 0
      stream = await Usrsctp.startTsctp({
        role: "sender",
        host: servingHost,
        port: 7,
        localEncapsPort: ports.clientEncapsPort,
        remoteEncapsPort: ports.udpPort,
        messageLength: 1_024,
        // Endless, for `tsctpSeconds`: a stream of a fixed count ends in well under a second
        // on a quiet machine, maybe before the standby confirmed its address.
        messages: 0,
        runtimeSeconds: tsctpSeconds,
        nodebug: true,
        ...(tune !== undefined ? { tune } : {}),
      })
      await Eventually.promise(
        `round ${round}: the stream reached ${servingHost} and the standby answered its HEARTBEAT`,
        async () => {
          if (stream!.child.exitCode !== null)
            throw new Error(`round ${round}: tsctp ended before the failure: ${stream!.output()}`)
          const [onServing, onStandby] = await Promise.all([
            reportOf(servingStatus),
            reportOf(standbyStatus),
          ])
          return onServing !== undefined &&
            onStandby !== undefined &&
            onServing.received.messages - servingBefore >= tsctpCutAfter &&
            onStandby.endpoint.packetsOut > standbyOut
            ? true
            : undefined
        },
        { within: 30_000 },
      )
      standbyBefore = (await reportOf(standbyStatus))?.received.messages ?? 0
    } else {
      await send(perRound)
    }

    // Linked right before the failure, not only once after the restart: under CPU
    // starvation the keep-alive may have ended a just-started standby's link since, and the
    // serving node then runs unprotected until it links again; a failure in that window
    // loses what it acknowledged alone (every-update's documented limit, not what this run
    // is about). At load 20-37 with 4-10 CPU hogs that window was hit in 2 of 6 runs.
    await linkedNow(
      `round ${round}: the standby is linked right before the failure`,
      standby,
      serving,
    )
    await Eventually.promise(
      `round ${round}: the serving node is protected right before the failure`,
      async () => (await reportOf(servingStatus))?.unprotected === false,
      { within: 30_000 },
    )
    const beforeFailure =
      stream === undefined
        ? 0
        : ((await reportOf(servingStatus))?.received.messages ?? servingBefore) - servingBefore
    // Nothing between that count and the failure: a mark waits for the capture, which may
    // lag far behind a tsctp stream, and the stream could end meanwhile.
    startedAt = performance.now()
    serving.kill(failure === "stop" ? "SIGSTOP" : "SIGKILL")
    let echo: Promise<unknown> | undefined
    if (client !== undefined) {
      client.write(`n ${++sent}\n`)
      echo = echoOf(sent)
    }
    const takingOver = standby
    let rejoined: typeof standby
    if (failure === "kill") {
      // The killed node comes back as the standby of the one that takes over: started at
      // once (its start-up, the slow part, overlaps the failover; it waits for the other
      // node to connect to it).
      await serving.exit()
      await mark(`r${round}-down`)
      await mark(`r${round}-rejoin`)
      rejoined = standbyAt(deadHost)
      if (echo !== undefined) {
        await echo
        failoverMs.push(performance.now() - startedAt)
      }
    } else {
      const pid = serving.child.pid!
      await Eventually.promise(
        `round ${round}: the node is stopped`,
        () => (stopped(pid) ? true : undefined),
        { within: 10_000 },
      )
      await mark(`r${round}-down`)
      if (echo !== undefined) {
        await echo
        failoverMs.push(performance.now() - startedAt)
      }
      await Eventually.promise(
        `round ${round}: the standby took over`,
        () => takingOver.lines.find((line) => line.t === "cluster" && line._tag === "TookOver"),
        { within: 30_000 },
      )
      // The stopped node resumes: it must find it lost the role and say so, and it runs on
      // (silent, the capture says) while the peer talks to the node that took over.
      const resumed = serving
      await mark(`r${round}-cont`)
      resumed.kill("SIGCONT")
      await Eventually.promise(
        `round ${round}: the resumed node falls silent`,
        () =>
          resumed.lines.find(
            (line) =>
              line.t === "cluster" && (line._tag === "FencedOut" || line._tag === "Deposed"),
          ),
        { within: 30_000 },
      )
      phase("resumed-silent")
      await send(perRound)
      resumed.kill("SIGKILL")
      await resumed.exit()
      await mark(`r${round}-rejoin`)
      rejoined = standbyAt(deadHost)
    }
    await Eventually.promise(
      `round ${round}: the standby took over`,
      () => takingOver.lines.find((line) => line.t === "cluster" && line._tag === "TookOver"),
      { within: 30_000 },
    )
    phase("took-over")
    if (stream !== undefined) {
      const exited = await Promise.race([
        stream.exited,
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 60_000)),
      ])
      if (exited === undefined) throw new Error(`round ${round}: tsctp did not end in 60 s`)
      tsctpOutput += `--- round ${round}\n${stream.output()}\n`
      const survivor = await reportOf(takingOverStatus(takingOver))
      streams.push({
        round,
        exitCode: exited.code,
        sentMessages: Usrsctp.parseTsctpSender(stream.output())?.messages,
        beforeFailure,
        afterFailure: (survivor?.received.messages ?? 0) - standbyBefore,
        survivorDropped: survivor?.endpoint.dropped ?? {},
      })
      phase(`stream-ended (${beforeFailure} + ${streams.at(-1)!.afterFailure} messages)`)
    }
    const rejoinedStatus = (await rejoined.line("started", startedWithinMs)).status as string
    phase("restarted")
    await linkedNow(
      `round ${round}: the rejoined node is the linked secondary`,
      rejoined,
      takingOver,
    )
    phase("linked")
    if (client !== undefined) {
      // The peer reaches the rejoined node's address again: it has somewhere to go next
      // time. Tuned, the rejoined node answered a HEARTBEAT (the only datagrams a standby
      // sends); with usrsctp's default timers a HEARTBEAT comes every 30 s, so it is enough
      // that the node holds the copy. Either way the address is not marked unreachable (it
      // came back, or it never went: a quick restart).
      await Eventually.promise(
        `round ${round}: the peer can reach ${deadHost} again`,
        async () => {
          const output = client!.output()
          const down = count(output, unreachable) - unreachableBefore
          const up = count(output, available) - availableBefore
          if (up < down) return undefined
          const report = await reportOf(rejoinedStatus)
          if (report === undefined) return undefined
          return (tune === undefined ? report.replicas > 0 : report.endpoint.packetsOut > 0)
            ? true
            : undefined
        },
        { within: 30_000 },
      )
      phase("reached")
    }
    rounds.push({ round, failure, from: deadHost, to: otherOf(deadHost) })
    serving = takingOver
    servingStatus = takingOverStatus(takingOver)
    standby = rejoined
    standbyStatus = rejoinedStatus
    servingHost = otherOf(deadHost)
    log(
      `round ${round} (${failure}): failover ${failoverMs.at(-1)?.toFixed(0) ?? "-"} ms (${phases.join(", ")} ms), now serving ${servingHost}`,
    )
  }
  await send(perRound)
  return {
    failoverMs,
    echoed: client === undefined ? [] : App.echoed(client.stdout()),
    sent,
    peerOutput: peerOutput(),
    rounds,
    udpPort: ports.udpPort,
    peerEncapsPort: ports.clientEncapsPort,
    streams,
    servingStatus,
    standbyStatus,
    keyFile: ports.keyFile,
    capture,
  }
}

/** The status address a node printed in its `started` line. */
const takingOverStatus = (node: { readonly lines: ReadonlyArray<Record<string, unknown>> }) =>
  node.lines.find((line) => line.t === "started")!.status as string
