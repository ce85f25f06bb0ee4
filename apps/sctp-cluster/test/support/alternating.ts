/**
 * Alternating failovers with real processes, for the process test and the bench: two
 * `sctp-cluster` nodes on 127.0.0.2 and 127.0.0.3 under `every-update`, usrsctp's `client`
 * as the outside peer. Each round SIGKILLs the serving node, sends one message at once (its
 * echo through the node that takes over is the round's failover time, from just before
 * `kill(2)`), restarts the killed node as the standby of the one that took over (addresses
 * swapped, its own link, a standby link back), and waits until the peer reaches it again
 * (usrsctp reports its address available: it answered a HEARTBEAT from its copy). Every
 * wait is for an event, bounded.
 */
import { Ports, type Usrsctp } from "@understudy/testkit"
import * as App from "../support.ts"

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

export interface Options {
  readonly rounds: number
  /** Messages sent (and echoed) before each kill. Default 3. */
  readonly perRound?: number
  readonly tune?: NonNullable<Usrsctp.ShimOptions["tune"]>
  /** Progress, one line per round. */
  readonly log?: (line: string) => void
}

export interface Outcome {
  /** Per round: SIGKILL to the echo of the message sent right after it, milliseconds. */
  readonly failoverMs: ReadonlyArray<number>
  /** The numbers echoed, in the order the peer received them. */
  readonly echoed: ReadonlyArray<number>
  readonly sent: number
  /** The peer's whole output (to look for ABORT, COMM_LOST …). */
  readonly peerOutput: string
}

const count = (text: string, pattern: RegExp) => [...text.matchAll(pattern)].length

/** Datagrams a node sent (its status over HTTP); 0 while it does not answer. */
const packetsOut = async (status: string): Promise<number> => {
  try {
    const response = await fetch(`http://${status.replace("tcp://", "")}/status`, {
      signal: AbortSignal.timeout(2_000),
    })
    const report = (await response.json()) as { endpoint: { packetsOut: number } }
    return report.endpoint.packetsOut
  } catch {
    return 0
  }
}

type Host = "127.0.0.2" | "127.0.0.3"
const otherOf = (host: Host): Host => (host === "127.0.0.2" ? "127.0.0.3" : "127.0.0.2")

/** Runs `rounds` alternating failovers; processes are left to `App.killAll`. */
export const run = async (options: Options): Promise<Outcome> => {
  const perRound = options.perRound ?? 3
  const log = options.log ?? (() => {})
  const ports = await App.clusterPorts()
  const links: Record<Host, string> = {
    "127.0.0.2": `tcp://127.0.0.2:${await Ports.freeTcpPort("127.0.0.2")}`,
    "127.0.0.3": ports.link,
  }
  /** A node (re)joining at `host` as the standby of the other one. */
  const standbyAt = (host: Host) =>
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
    ])

  let standby = standbyAt("127.0.0.3")
  let serving = App.start(App.nodeArgs("primary", ports, [], ["every-update"]))
  await serving.line("started", 30_000)
  await standby.line("started", 30_000)
  await App.linkUp("the primary's link to the secondary is up", serving, 30_000)
  const { client } = await App.connectClient(ports, options.tune ?? tuned, 30_000)

  let sent = 0
  const echoOf = (n: number) => client.waitFor(new RegExp(`^n ${n}$`, "m"), 30_000)
  const send = async (messages: number) => {
    for (let i = 0; i < messages; i++) client.write(`n ${++sent}\n`)
    await echoOf(sent)
  }

  let servingHost: Host = "127.0.0.2"
  const failoverMs: Array<number> = []
  for (let round = 1; round <= options.rounds; round++) {
    await send(perRound)
    const deadHost = servingHost
    const address = `Peer address ${deadHost.replaceAll(".", "\\.")} is now SCTP_ADDR_`
    const available = new RegExp(`${address}AVAILABLE`, "g")
    const unreachable = new RegExp(`${address}UNREACHABLE`, "g")
    const availableBefore = count(client.output(), available)
    const unreachableBefore = count(client.output(), unreachable)
    const startedAt = performance.now()
    serving.kill("SIGKILL")
    client.write(`n ${++sent}\n`)
    const echo = echoOf(sent)
    const phases: Array<string> = []
    const phase = (name: string) =>
      phases.push(`${name} ${(performance.now() - startedAt).toFixed(0)}`)
    // The killed node comes back as the standby of the one that takes over: started at
    // once (its start-up, the slow part, overlaps the failover; it waits for the other
    // node to connect to it).
    await serving.exit()
    const rejoined = standbyAt(deadHost)
    await echo
    failoverMs.push(performance.now() - startedAt)
    const takingOver = standby
    await App.eventually(
      `round ${round}: the standby took over`,
      () => takingOver.lines.find((line) => line.t === "cluster" && line._tag === "TookOver"),
      30_000,
    )
    phase("took-over")
    const rejoinedStatus = (await rejoined.line("started", 30_000)).status as string
    phase("restarted")
    await App.linkUp(`round ${round}: the rejoined node's link is up`, rejoined, 30_000)
    phase("linked")
    // The peer reaches the rejoined node's address again: it has somewhere to go next time.
    // The rejoined node answered a HEARTBEAT (the only datagrams a standby sends), and the
    // address is not marked unreachable (it came back, or it never went: a quick restart).
    await App.eventually(
      `round ${round}: the peer reaches ${deadHost} again`,
      async () => {
        const output = client.output()
        const down = count(output, unreachable) - unreachableBefore
        const up = count(output, available) - availableBefore
        if (up < down) return undefined
        return (await packetsOut(rejoinedStatus)) > 0 ? true : undefined
      },
      30_000,
    )
    phase("reached")
    serving = takingOver
    standby = rejoined
    servingHost = otherOf(deadHost)
    log(
      `round ${round}: failover ${failoverMs.at(-1)!.toFixed(0)} ms (${phases.join(", ")} ms), now serving ${servingHost}`,
    )
  }
  await send(perRound)
  return { failoverMs, echoed: App.echoed(client.stdout()), sent, peerOutput: client.output() }
}
