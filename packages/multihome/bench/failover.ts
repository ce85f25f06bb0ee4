/**
 * Failover time of the every-update cluster under a real peer: a usrsctp program streams
 * messages into the cluster's discard service (primary 127.0.0.2, secondary 127.0.0.3, two
 * OS processes); once the stream runs and the peer has confirmed the secondary's address
 * (the secondary answered its HEARTBEAT), the bench SIGKILLs the primary process and
 * watches the secondary's reports (see `receiver.ts`, `--observe`).
 *
 * The figure, `firstAckMs`: from the SIGKILL (the bench's clock just before `kill(2)`) to the
 * first datagram carrying a SACK chunk that leaves the secondary's UDP socket after a DATA
 * chunk reached that socket: the peer's stream, retransmitted to the alternate address,
 * acknowledged by the secondary. Before the takeover the secondary sends nothing but
 * HEARTBEAT ACKs (it forwards every other packet to the primary over the link), and the
 * peer sends no DATA to it while the primary answers (a run where it did is refused).
 * Also reported, from the same SIGKILL: `takeoverMs` (the secondary saw the link close and
 * adopted the association), `firstSackMs` (its first SACK of any kind: usually the replica's
 * pending delayed SACK, re-armed by the takeover, which acknowledges what the primary
 * received before it died but had not acknowledged yet), `firstDataInMs` (the first DATA
 * chunk reached the secondary's socket: the peer's T3-rtx timer expired and it retransmitted
 * to the alternate address) and `firstMessageMs` (the first message handed to the
 * secondary's service). Times are wall-clock with sub-millisecond resolution, taken in two
 * processes of one machine.
 *
 * With usrsctp's default timers (RTO min 1 s, initial 3 s) the first retransmission reaches
 * the secondary about one RTO after the primary's death, so `firstAckMs` is about 1–3 s by the
 * peer's design, not ours; with the tune shim's fast timers (rto_min 100, rto_max 400,
 * rto_initial 200, path_rtx_max 2) it is a few hundred milliseconds at most. A run counts
 * only if the association lived on: the peer still running 200 ms after the secondary's
 * first message, with no ABORT or COMM_LOST in its output.
 *
 * The peer: `client` by default, fed 20 lines (at most 79 bytes each: one message each)
 * every 5 ms on its stdin. `tsctp` (1,024-byte messages, as fast as it can) is the better
 * stream, but tsctp lists no address in its INIT, and usrsctp drops every packet addressed
 * to 127.0.0.1, where a loopback peer's packets come from: the primary answers it at this
 * host's interface address (`Endpoint.loopbackAlias`), but the secondary does not know that
 * alias (`Endpoint.aliasesOf` of a replica whose peer listed none is empty, and the cluster
 * does not replicate the primary's alias table), so its HEARTBEAT ACKs never confirm the
 * address, the peer never retransmits there and aborts the association. `--failover-peer
 * tsctp` runs it anyway.
 */
import { setTimeout as sleep } from "node:timers/promises"
import { Usrsctp } from "@understudy/testkit"
import * as Processes from "./processes.ts"

/** usrsctp's timers through the tune shim (milliseconds). */
export const fastTimers = {
  rto_min_default: 100,
  rto_max_default: 400,
  rto_initial_default: 200,
  path_rtx_max_default: 2,
} as const

/** Which timers the peer runs with. */
export type Timers = "default" | "fast"

/** Which usrsctp program streams into the cluster. */
export type Peer = "client" | "tsctp"

/** One failover, times from the SIGKILL in milliseconds (see the module header). */
export interface FailoverRun {
  readonly takeoverMs: number
  readonly firstSackMs: number
  readonly firstDataInMs: number
  readonly firstAckMs: number
  readonly firstMessageMs: number
}

/** How long the stream runs into the primary before the SIGKILL. */
const streamBeforeKillMs = 1_000
/** Bounds on each wait (the default timers need one RTO, at most 3 s, plus start-up). */
const setupTimeoutMs = 15_000
const failoverTimeoutMs = 30_000

const atMs = (line: Record<string, unknown>): number => {
  const value = line.atMs
  if (typeof value !== "number") throw new Error(`a line without atMs: ${JSON.stringify(line)}`)
  return value
}

const alive = (program: Usrsctp.UsrsctpProcess): boolean =>
  program.child.exitCode === null && program.child.signalCode === null

/** The client's feed: this many lines every this many milliseconds (4,000 messages/s). */
const linesPerTick = 20
const feedEveryMs = 5

/** Starts `peer` streaming into the cluster; `stop` ends the feeding (not the process). */
const startPeer = async (
  peer: Peer,
  timers: Timers,
  udpPort: number,
): Promise<{ readonly program: Usrsctp.UsrsctpProcess; readonly stop: () => void }> => {
  const common = {
    host: Processes.clusterHosts.primary,
    port: Processes.sctpPort,
    localEncapsPort: await Usrsctp.freeEncapsulationPort(),
    remoteEncapsPort: udpPort,
    ...(timers === "fast" ? { tune: fastTimers } : {}),
  }
  if (peer === "tsctp") {
    const program = await Usrsctp.startTsctp({
      ...common,
      role: "sender",
      messageLength: 1024,
      // Endless, bounded by time: the run ends by killing it long before.
      messages: 0,
      runtimeSeconds: 120,
      nodebug: true,
    })
    return { program, stop: () => {} }
  }
  const program = await Usrsctp.startClient(common)
  let line = 0
  const feeder = setInterval(() => {
    let text = ""
    for (let count = 0; count < linesPerTick; count++) text += `message ${line++}\n`
    program.write(text)
  }, feedEveryMs)
  return { program, stop: () => clearInterval(feeder) }
}

/** One failover; every process it starts is killed before it returns. */
export const runFailover = async (peer: Peer, timers: Timers): Promise<FailoverRun> => {
  let stopFeeding = () => {}
  try {
    const cluster = await Processes.startCluster({ policy: "every-update", observe: true })
    const { program, stop } = await startPeer(peer, timers, cluster.udpPort)
    stopFeeding = stop
    await cluster.primary.line("message", setupTimeoutMs)
    await cluster.secondary.line("heartbeatAckOut", setupTimeoutMs)
    await sleep(streamBeforeKillMs)
    if (!alive(program)) throw new Error(`${peer} ended before the kill:\n${program.output()}`)
    if (cluster.secondary.find("sackOut") !== undefined)
      throw new Error("the secondary sent a SACK while the primary was alive")
    const killAtMs = Processes.wallMs()
    cluster.primary.process.kill("SIGKILL")
    // A peer that gives the association up ends the wait at once, with its words.
    const peerGone = program.exited.then(() => {
      throw new Error(`${peer} exited after the kill:\n${program.output().slice(-1000)}`)
    })
    peerGone.catch(() => {})
    const ack = await Promise.race([
      cluster.secondary.line("sackAfterDataOut", failoverTimeoutMs),
      peerGone,
    ])
    const dataIn = await cluster.secondary.line("dataIn", failoverTimeoutMs)
    const sack = await cluster.secondary.line("sackOut", failoverTimeoutMs)
    const message = await cluster.secondary.line("message", failoverTimeoutMs)
    const tookOver = await cluster.secondary.line("tookOver", failoverTimeoutMs)
    if (atMs(dataIn) < killAtMs)
      throw new Error("DATA reached the secondary before the kill: firstAckMs would mean nothing")
    // The association must live on: the peer keeps sending, and never aborted.
    await sleep(200)
    const lost = /abort|COMM_LOST/i
    if (!alive(program) || lost.test(program.output()))
      throw new Error(`${peer} lost its association:\n${program.output().slice(-1000)}`)
    return {
      takeoverMs: atMs(tookOver) - killAtMs,
      firstSackMs: atMs(sack) - killAtMs,
      firstDataInMs: atMs(dataIn) - killAtMs,
      firstAckMs: atMs(ack) - killAtMs,
      firstMessageMs: atMs(message) - killAtMs,
    }
  } finally {
    stopFeeding()
    await Usrsctp.killAll()
    await Processes.killAll()
  }
}
