/**
 * What a node's status endpoint answers (`GET /status`): the cluster's `Status` plus who the
 * node is, and its human-readable form for `sctp-cluster status`.
 *
 * @since 0.1.0
 */
import type { Cluster } from "@understudy/multihome"

/** @since 0.1.0 @category models */
export interface StatusReport extends Cluster.Status {
  readonly node: {
    /** The role the node was started with (`role` says what it is now). */
    readonly startedAs: "primary" | "secondary"
    readonly pid: number
    /** Its own UDP address, `udp://IP:PORT`. */
    readonly bind: string
    readonly addresses: ReadonlyArray<string>
    readonly port: number
    readonly service: string
    readonly link: string
    /** How a takeover moves the peer's traffic (`--failover`). */
    readonly failover: string
    /** `--takeover-interface`: where a takeover adds the old serving node's address. */
    readonly takeoverInterface: string | undefined
  }
}

const count = (n: number) => n.toLocaleString("en-US")

/** What became of the old serving node's address (`--failover takeover|both`). */
const takeoverText = (taken: Cluster.AddressTakeover | undefined): string => {
  if (taken === undefined) return ""
  switch (taken.state) {
    case "waiting":
      return `; waiting for ${taken.host} to be free`
    case "bound":
      return `; took over ${taken.host} (${count(taken.packets)} datagrams taken in there)`
    case "released":
      return `; gave ${taken.host} back to the standby (${count(taken.packets)} datagrams taken in)`
    case "failed":
      return `; could NOT take over ${taken.host}`
  }
}

/**
 * `sctp-cluster status` without `--json`: role, link, replication, and every association
 * with each of its paths.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatStatus = (report: StatusReport): string => {
  const lines: Array<string> = []
  const { node, replication } = report
  lines.push(
    `node         ${node.bind} (pid ${node.pid}), started as ${node.startedAs}, now ${report.role}`,
  )
  lines.push(`endpoint     ${node.addresses.join(", ")} SCTP port ${node.port}, ${node.service}`)
  lines.push(`policy       ${report.policy}`)
  const across =
    node.takeoverInterface === undefined ? "" : `, takeover on ${node.takeoverInterface}`
  lines.push(`failover     ${node.failover}${across}${takeoverText(report.addressTakeover)}`)
  lines.push(`link         ${report.link} (${node.link})`)
  if (report.unprotected) {
    lines.push("protection   NONE: no secondary holds this node's updates; they die with it")
  }
  const lag = replication.lagMs === undefined ? "no exchange yet" : `${replication.lagMs} ms ago`
  lines.push(
    `replication  shipped ${count(replication.shipped)}, acknowledged ${count(replication.acknowledged)}, applied ${count(replication.applied)}; last ${lag}`,
  )
  if (report.fence !== undefined) {
    const fence = report.fence
    lines.push(
      `fence        epoch ${fence.epoch}, ${fence.holding ? "holding" : "NOT holding"} the role (lease ${fence.leaseMs} ms)`,
    )
  }
  lines.push(`replicas     ${report.replicas} association(s) held for takeover`)
  lines.push(
    `service      received ${count(report.received.messages)} messages, ${count(report.received.bytes)} bytes`,
  )
  const dropped = Object.entries(report.endpoint.dropped)
    .map(([reason, n]) => `${reason} ${n}`)
    .join(", ")
  lines.push(
    `packets      in ${count(report.endpoint.packetsIn)}, out ${count(report.endpoint.packetsOut)}, dropped: ${dropped.length > 0 ? dropped : "none"}`,
  )
  if (report.associations.length === 0) lines.push("associations none")
  for (const association of report.associations) {
    lines.push(
      `association ${association.id}: ${association.state}, port ${association.localPort} <-> ${association.peerPort}, primary path ${association.primary ?? "-"}`,
    )
    lines.push(
      `  in flight ${count(association.flightBytes)} bytes, queued ${count(association.queuedBytes)} bytes, peer rwnd ${count(association.peerRwnd)}, streams ${association.inboundStreams} in / ${association.outboundStreams} out`,
    )
    for (const path of association.paths) {
      const host = path.host.includes(":") ? `[${path.host}]` : path.host
      const srtt = path.srttMs === undefined ? "-" : `${Math.round(path.srttMs)} ms`
      lines.push(
        `  path ${host}:${path.udpPort}  ${path.confirmed ? "confirmed" : "unconfirmed"}  ${path.active ? "active" : "inactive"}  rto ${Math.round(path.rtoMs)} ms  srtt ${srtt}  cwnd ${count(path.cwnd)}  errors ${path.errorCount}`,
      )
    }
  }
  return lines.join("\n")
}
