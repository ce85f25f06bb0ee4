/**
 * The command line of `sctp-cluster`, on `effect/cli`: `parse` is a pure function from argv
 * to what to do, so every flag and every error is unit tested without a process.
 *
 * @since 0.1.0
 */
import { isIP } from "node:net"
import { Cli } from "@understudy/app-kit"
import { type Cluster, Replication } from "@understudy/multihome"
import { Address } from "@understudy/transport"
import { Command } from "effect/cli"

/** The application a node runs. @since 0.1.0 @category models */
export type ServiceName = "echo" | "discard" | "sink"

/** @since 0.1.0 @category models */
export interface NodeInvocation {
  readonly _tag: "Node"
  readonly role: "primary" | "secondary"
  /** The primary's IP, then the secondary's: the endpoint's two addresses. */
  readonly addresses: readonly [string, string]
  readonly policy: Replication.Policy
  /** SCTP port of the endpoint (the same on both nodes). */
  readonly port: number
  /** UDP encapsulation port (RFC 6951), bound on this node's own address. */
  readonly udpPort: number
  /** The intra-cluster link: the secondary listens there, the primary connects to it. */
  readonly link: Address.StreamAddress
  /**
   * Secondary: where a node that rejoins as the new secondary listens, once this one took
   * over (failback); without it the cluster fails over once.
   */
  readonly standbyLink: Address.StreamAddress | undefined
  readonly service: ServiceName
  /** Where this node serves its status (HTTP `GET /status`, JSON). */
  readonly status: Address.StreamAddress
  /**
   * `state-node` / the fence: the `StoreServer` (a `sctp-cluster store`) or the etcd member
   * holding the associations and the role.
   */
  readonly store: StoreLocation | undefined
  /**
   * Fences the role in the `--store`: a node sends as the serving node only while its lease
   * there (this long) is kept alive; a takeover waits for the old lease and bumps the epoch.
   */
  readonly fenceLeaseMs: number | undefined
  /** Authenticates the link and the store (HMAC); undefined only with `--insecure`. */
  readonly clusterKeyFile: string | undefined
  /** How a takeover moves the peer's traffic to this node (`Cluster.Options.failover`). */
  readonly failover: Cluster.Failover
  /** Takeover across hosts: the interface the old serving node's address is added to. */
  readonly takeoverInterface: string | undefined
}

/**
 * Where `--store` points: a `sctp-cluster store` (`tcp://` / `unix://`, keyed with the
 * cluster key), or an etcd member (`etcd://HOST:PORT`, secured by etcd's own means).
 *
 * @since 0.1.0
 * @category models
 */
export type StoreLocation =
  | Address.StreamAddress
  | { readonly _tag: "Etcd"; readonly endpoint: string }

/** @since 0.1.0 @category models */
export type Invocation =
  | Cli.Answer
  | NodeInvocation
  | { readonly _tag: "Status"; readonly status: Address.StreamAddress; readonly json: boolean }
  | {
      readonly _tag: "HandOver"
      /** The primary's status endpoint. */
      readonly status: Address.StreamAddress
      /** Signs the request (the node's own key); undefined only with `--insecure`. */
      readonly clusterKeyFile: string | undefined
    }
  | {
      readonly _tag: "Store"
      readonly listen: Address.StreamAddress
      /** Undefined only with `--insecure`. */
      readonly clusterKeyFile: string | undefined
    }
  | { readonly _tag: "Keygen"; readonly out: string }

/** @since 0.1.0 */
export const programName = "sctp-cluster"

/** The SCTP port of the echo service by default (as usrsctp's `echo_server`). @since 0.1.0 */
export const defaultSctpPort = 7

/** Differs from usrsctp's default encapsulation port 9899, which its programs bind on every address. @since 0.1.0 */
export const defaultUdpPort = 9900

/** @since 0.1.0 */
export const usage = `Usage:
  ${programName} node --role primary|secondary --addresses PRIMARY_IP,SECONDARY_IP --policy POLICY
               [--port 7] [--udp-port 9900] [--link tcp://HOST:PORT] [--service echo|discard|sink]
               [--status tcp://HOST:PORT | unix:///PATH | /PATH]
               [--store tcp://HOST:PORT | etcd://HOST:PORT]
               [--fence-lease-ms MS] [--standby-link tcp://HOST:PORT]
               [--failover asconf|takeover|both|none] [--takeover-interface IFACE]
               (--cluster-key-file FILE | --insecure)
  ${programName} status --status ADDRESS [--json]
  ${programName} handover --status ADDRESS (--cluster-key-file FILE | --insecure)
  ${programName} store --listen tcp://HOST:PORT (--cluster-key-file FILE | --insecure)
  ${programName} keygen --out FILE
  ${programName} --help

node     runs one node of a two-node SCTP endpoint (RFC 9260 over UDP, RFC 6951). The peer
         sees one endpoint with both --addresses; the primary (first address) runs the
         association, the secondary (second address) keeps a replica and takes over when
         the primary is gone, answering from its own address. Each node binds its own
         address on --udp-port (default ${defaultUdpPort}; usrsctp's programs bind 9899 on every
         address, so it must differ) and serves --service (default echo) on SCTP --port
         (default ${defaultSctpPort}).
         --policy: every-update | interval[:MS] | on-event[:EVENTS] | on-impending-failure |
           state-node (needs --store: a '${programName} store', or an etcd member as
           etcd://HOST:PORT).
         --link: the intra-cluster link, the same on both nodes (the secondary listens on it);
           default tcp://SECONDARY_IP:UDP_PORT.
         --standby-link: (secondary) once it took over, the node connects there and keeps
           a node that rejoins as the new secondary in sync, so the cluster can fail over
           again: restart the old primary with --role secondary, the two --addresses
           swapped, --link at its own address (this address) and --standby-link at this
           node's --link.
         --failover: how the secondary, once it took over, makes the peer's traffic reach
           it: asconf asks the peer in an authenticated ASCONF (RFC 5061 Set Primary
           Address; peers that negotiated ASCONF, as usrsctp does) to send to its address;
           takeover binds the dead node's address (same UDP port) once it is free and takes
           in what the peer still sends there (peers without ASCONF, as Linux's SCTP by
           default), and gives it back to a node that rejoins as its standby; both (default)
           does the two; none waits for the peer's retransmission timers to give up on the
           dead node's address.
         --takeover-interface: takeover across hosts: before binding it, the node adds the
           dead node's address to IFACE ('ip addr add ADDR/32 dev IFACE') and announces it
           with gratuitous ARP ('arping -U', Debian iputils-arping), as keepalived moves a
           virtual IP; the address leaves IFACE when it is given back. Needs root
           (CAP_NET_ADMIN, CAP_NET_RAW).
         --fence-lease-ms: fence the role in --store (any policy): a node sends as the
           serving node only while its lease there is kept alive (a primary paused or cut
           off longer falls silent); the secondary takes over once that lease ended, at the
           next epoch.
         --status: where GET /status answers (default tcp://127.0.0.1:0, the port chosen is
           printed; it shows no tag, TSN or key).
         --cluster-key-file: the cluster key (written by 'keygen'; mode 0600, refused if
           others may read it) authenticates the link and the store. Without it the node
           refuses to start unless --insecure says to run them unauthenticated (anyone who
           reaches the link could read every association's state and depose the primary).
         stdout: one JSON line per fact ("t": started, cluster, role, association,
         impending-failure, stopping).
         SIGTERM: one final synchronisation to the secondary (an impending failure), then
         exit 0. SIGINT: exit.
status   prints the node's role, link, replication lag, and each association with its
         paths (host, UDP port, confirmed / active, RTO, cwnd); --json prints the raw status.
handover asks the primary (at its --status address) for a planned handover: it stops
         stepping what reaches it and forwards it to the secondary, which takes over with
         an exact copy and asks the peer (ASCONF Set Primary Address) to send to it; no
         DATA is sent twice. The old primary then exits (restart it as the new standby,
         as after a failure). Signed with the cluster key; prints one JSON line.
store    runs a store server over memory: the third node of the state-node policy.
keygen   writes a new random cluster key to --out (mode 0600; never over an existing file):
         copy it to every node.

Exit codes: 0 ok; 1 runtime error; 2 bad usage.`

const fail = Cli.usageError

/**
 * A stream address as `--status`, `--link`, `--store` and `--listen` take it: `tcp://` or
 * `unix://` URLs, or an absolute path for a unix socket.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseStreamAddress = (text: string): Address.StreamAddress | string => {
  if (text.startsWith("/")) return parseStreamAddress(`unix://${text}`)
  const parsed = Address.parseStream(text)
  return parsed instanceof Address.InvalidAddress ? parsed.reason : parsed
}

const flags = {
  role: Cli.text("role", "primary|secondary", "which node this is (required)"),
  addresses: Cli.text(
    "addresses",
    "PRIMARY_IP,SECONDARY_IP",
    "the endpoint's two addresses, the primary's first (required)",
  ),
  policy: Cli.text(
    "policy",
    "POLICY",
    "every-update | interval[:MS] | on-event[:EVENTS] | on-impending-failure | state-node (required)",
  ),
  port: Cli.text("port", "7", `SCTP port of the endpoint (default ${defaultSctpPort})`),
  "udp-port": Cli.text(
    "udp-port",
    "9900",
    `UDP encapsulation port on this node's address (default ${defaultUdpPort})`,
  ),
  link: Cli.text(
    "link",
    "tcp://HOST:PORT",
    "the intra-cluster link (default tcp://SECONDARY_IP:UDP_PORT)",
  ),
  service: Cli.text("service", "echo|discard|sink", "what the endpoint serves (default echo)"),
  status: Cli.text("status", "tcp://HOST:PORT | unix:///PATH | /PATH", "where GET /status answers"),
  store: Cli.text(
    "store",
    "tcp://HOST:PORT | etcd://HOST:PORT",
    "a 'sctp-cluster store' or an etcd member (state-node, --fence-lease-ms)",
  ),
  "fence-lease-ms": Cli.text(
    "fence-lease-ms",
    "MS",
    "fence the role in --store with a lease this long",
  ),
  "standby-link": Cli.text(
    "standby-link",
    "tcp://HOST:PORT",
    "(secondary) where a rejoining node listens, once this one took over",
  ),
  failover: Cli.text(
    "failover",
    "asconf|takeover|both|none",
    "how the peer's traffic reaches the node that took over (default both)",
  ),
  "takeover-interface": Cli.text(
    "takeover-interface",
    "IFACE",
    "takeover across hosts: the interface the dead node's address is added to",
  ),
  "cluster-key-file": Cli.text(
    "cluster-key-file",
    "FILE",
    "the cluster key (from keygen) that authenticates the link and the store",
  ),
  insecure: Cli.toggle("insecure", "run the link and the store unauthenticated"),
  json: Cli.toggle("json", "print the raw status"),
  listen: Cli.text("listen", "tcp://HOST:PORT", "where the store server listens"),
  out: Cli.text("out", "FILE", "where keygen writes the key"),
}

/**
 * A subcommand with the flags it takes; its handler checks them together (`check`, below:
 * called through a function, as it is defined later).
 */
const subcommand = Cli.subcommands(flags, (command, values) => check(command, values))

const services: ReadonlyArray<ServiceName> = ["echo", "discard", "sink"]

const addressFlag = (
  values: ReadonlyMap<string, string>,
  flag: string,
): Address.StreamAddress | string | undefined => {
  const text = values.get(flag)
  if (text === undefined) return undefined
  const parsed = parseStreamAddress(text)
  return typeof parsed === "string" ? `${flag} ${text}: ${parsed}` : parsed
}

const parseNode = (values: ReadonlyMap<string, string>): Invocation => {
  const role = values.get("--role")
  if (role === undefined) return fail("--role is required (primary or secondary)")
  if (role !== "primary" && role !== "secondary")
    return fail(`--role ${JSON.stringify(role)}: expected primary or secondary`)

  const addressesText = values.get("--addresses")
  if (addressesText === undefined) return fail("--addresses is required (PRIMARY_IP,SECONDARY_IP)")
  const addresses = addressesText.split(",")
  if (addresses.length !== 2)
    return fail(
      `--addresses ${addressesText}: expected two IPs, the primary's then the secondary's`,
    )
  for (const address of addresses) {
    if (isIP(address) === 0) return fail(`--addresses: ${JSON.stringify(address)} is not an IP`)
  }
  if (addresses[0] === addresses[1]) return fail("--addresses: the two nodes need two addresses")

  const policyText = values.get("--policy")
  if (policyText === undefined) return fail("--policy is required (e.g. every-update)")
  const policy = Replication.parsePolicy(policyText)
  if (policy instanceof Replication.PolicyError)
    return fail(`--policy ${policyText}: ${policy.detail}`)

  const portText = values.get("--port") ?? String(defaultSctpPort)
  const port = Cli.parseInteger(portText, 1, 65535)
  if (port === undefined) return fail(`--port ${portText}: expected an SCTP port, 1..65535`)
  const udpPortText = values.get("--udp-port") ?? String(defaultUdpPort)
  const udpPort = Cli.parseInteger(udpPortText, 1, 65535)
  if (udpPort === undefined) return fail(`--udp-port ${udpPortText}: expected a UDP port, 1..65535`)

  const service = values.get("--service") ?? "echo"
  if (!(services as ReadonlyArray<string>).includes(service))
    return fail(`--service ${JSON.stringify(service)}: expected ${services.join(", ")}`)

  const secondary = addresses[1]!
  const link = addressFlag(values, "--link") ?? Address.tcp(secondary, udpPort)
  if (typeof link === "string") return fail(link)
  const standbyLink = addressFlag(values, "--standby-link")
  if (typeof standbyLink === "string") return fail(standbyLink)
  if (standbyLink !== undefined && role !== "secondary")
    return fail("--standby-link is for the secondary (the node that takes over)")
  const status = addressFlag(values, "--status") ?? Address.tcp("127.0.0.1", 0)
  if (typeof status === "string") return fail(status)
  const store = storeFlag(values.get("--store"))
  if (typeof store === "string") return fail(store)
  if (policy._tag === "StateNode" && store === undefined)
    return fail("--policy state-node needs --store (the address of a 'sctp-cluster store')")
  const fenceText = values.get("--fence-lease-ms")
  const fenceLeaseMs =
    fenceText === undefined ? undefined : Cli.parseInteger(fenceText, 100, 86_400_000)
  if (fenceText !== undefined && fenceLeaseMs === undefined)
    return fail(`--fence-lease-ms ${fenceText}: expected milliseconds, 100..86400000`)
  if (fenceLeaseMs !== undefined && store === undefined)
    return fail("--fence-lease-ms needs --store (the address of a 'sctp-cluster store')")
  if (policy._tag !== "StateNode" && store !== undefined && fenceLeaseMs === undefined)
    return fail(`--store is only for --policy state-node or --fence-lease-ms, not ${policyText}`)

  const failover = values.get("--failover") ?? "both"
  if (!(failovers as ReadonlyArray<string>).includes(failover))
    return fail(`--failover ${JSON.stringify(failover)}: expected ${failovers.join(", ")}`)
  const takeoverInterface = values.get("--takeover-interface")
  if (takeoverInterface !== undefined) {
    if (failover !== "takeover" && failover !== "both")
      return fail(`--takeover-interface is for --failover takeover or both, not ${failover}`)
    // An interface name as Linux takes it (IFNAMSIZ): no path, no option for `ip`.
    if (!/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$/.test(takeoverInterface))
      return fail(
        `--takeover-interface ${JSON.stringify(takeoverInterface)}: not an interface name`,
      )
  }

  const key = keyFlags(values)
  if (typeof key === "object") return key

  return {
    _tag: "Node",
    role,
    addresses: [addresses[0]!, secondary],
    policy,
    port,
    udpPort,
    link,
    standbyLink,
    service: service as ServiceName,
    status,
    store,
    fenceLeaseMs,
    clusterKeyFile: key,
    failover: failover as Cluster.Failover,
    takeoverInterface,
  }
}

/** `--store`: `etcd://HOST:PORT` (etcd's client URL is `http://HOST:PORT`), else a stream address. */
const storeFlag = (text: string | undefined): StoreLocation | string | undefined => {
  if (text === undefined) return undefined
  if (!text.startsWith("etcd://")) return addressFlag(new Map([["--store", text]]), "--store")
  const hostPort = text.slice("etcd://".length)
  const parsed = Address.parseStream(`tcp://${hostPort}`)
  if (parsed instanceof Address.InvalidAddress || parsed._tag !== "Tcp" || parsed.port === 0)
    return `--store ${text}: expected etcd://HOST:PORT`
  return { _tag: "Etcd", endpoint: `http://${hostPort}` }
}

/** The values of `--failover`. */
const failovers: ReadonlyArray<Cluster.Failover> = ["asconf", "takeover", "both", "none"]

/** `--cluster-key-file` or an explicit `--insecure`, never both, never neither. */
const keyFlags = (values: ReadonlyMap<string, string>): string | undefined | Invocation => {
  const file = values.get("--cluster-key-file")
  const insecure = values.has("--insecure")
  if (file !== undefined && insecure)
    return fail("--cluster-key-file and --insecure exclude each other")
  if (file === undefined && !insecure)
    return fail(
      `--cluster-key-file is required (write one with '${programName} keygen --out FILE'), or --insecure to run unauthenticated`,
    )
  return file
}

const commandLine = Command.make(programName).pipe(
  Command.withDescription(Cli.description(usage)),
  Command.withSubcommands([
    subcommand(
      "node",
      [
        "role",
        "addresses",
        "policy",
        "port",
        "udp-port",
        "link",
        "service",
        "status",
        "store",
        "fence-lease-ms",
        "standby-link",
        "failover",
        "takeover-interface",
        "cluster-key-file",
        "insecure",
      ],
      "Runs one node of a two-node SCTP endpoint",
    ),
    subcommand(
      "status",
      ["status", "json"],
      "Prints the node's role, link, replication lag and associations",
    ),
    subcommand(
      "handover",
      ["status", "cluster-key-file", "insecure"],
      "Asks the primary for a planned handover to the secondary",
    ),
    subcommand(
      "store",
      ["listen", "cluster-key-file", "insecure"],
      "Runs a store server over memory: the third node of the state-node policy",
    ),
    subcommand("keygen", ["out"], "Writes a new random cluster key (mode 0600)"),
  ]),
)

/**
 * Parses the arguments after the program name. Never throws: bad input is a `UsageError`
 * whose message says what is wrong.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (argv: ReadonlyArray<string>): Invocation =>
  Cli.parse<Invocation>(commandLine, argv, {
    noCommand: "no command: node, status, handover, store or keygen",
  })

/** The flags of `command`, checked together. */
const check = (command: string, values: ReadonlyMap<string, string>): Invocation => {
  switch (command) {
    case "status": {
      const status = addressFlag(values, "--status")
      if (status === undefined) return fail("--status is required (the node's status address)")
      if (typeof status === "string") return fail(status)
      return { _tag: "Status", status, json: values.has("--json") }
    }
    case "handover": {
      const status = addressFlag(values, "--status")
      if (status === undefined) return fail("--status is required (the primary's status address)")
      if (typeof status === "string") return fail(status)
      const key = keyFlags(values)
      if (typeof key === "object") return key
      return { _tag: "HandOver", status, clusterKeyFile: key }
    }
    case "store": {
      const listen = addressFlag(values, "--listen")
      if (listen === undefined) return fail("--listen is required")
      if (typeof listen === "string") return fail(listen)
      const key = keyFlags(values)
      if (typeof key === "object") return key
      return { _tag: "Store", listen, clusterKeyFile: key }
    }
    case "keygen": {
      const out = values.get("--out")
      if (out === undefined) return fail("--out is required (where to write the key)")
      return { _tag: "Keygen", out }
    }
    default:
      return parseNode(values)
  }
}
