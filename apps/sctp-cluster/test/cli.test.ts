import { describe, expect, it } from "@effect/vitest"
import type { Cluster } from "@understudy/multihome"
import { parse, parseStreamAddress } from "../src/cli.ts"
import { formatStatus, type StatusReport } from "../src/report.ts"

const node = ["node", "--role", "primary", "--addresses", "127.0.0.2,127.0.0.3", "--policy"]

const message = (argv: Array<string>) => {
  const invocation = parse(argv)
  return invocation._tag === "UsageError" ? invocation.message : invocation._tag
}

describe("sctp-cluster command line", () => {
  it("--help shows the synopsis, every command's text and the flags", () => {
    const help = parse(["--help"])
    const text = help._tag === "Help" ? help.text : ""
    expect(text).toContain("Usage:")
    expect(text).toContain("sctp-cluster node --role primary|secondary")
    expect(text).toContain("--takeover-interface: takeover across hosts")
    expect(text).toContain("Exit codes: 0 ok; 1 runtime error; 2 bad usage.")
    for (const command of ["node", "status", "handover", "store", "keygen"])
      expect(text).toContain(command)
    const nodeHelp = parse(["node", "--help"])
    for (const flag of [
      "--role",
      "--policy",
      "--fence-lease-ms",
      "--cluster-key-file",
      "--insecure",
    ])
      expect(nodeHelp._tag === "Help" && nodeHelp.text).toContain(flag)
    for (const absent of ["--wizard", "--completions", "--log-level", "--version"])
      expect(text).not.toContain(absent)
  })

  it("parses a node with its defaults", () => {
    const invocation = parse([...node, "every-update", "--cluster-key-file", "/etc/k"])
    expect(invocation).toEqual({
      _tag: "Node",
      role: "primary",
      addresses: ["127.0.0.2", "127.0.0.3"],
      policy: { _tag: "EveryUpdate" },
      port: 7,
      udpPort: 9900,
      // The link defaults to the secondary's address, on the encapsulation port's number.
      link: { _tag: "Tcp", host: "127.0.0.3", port: 9900 },
      standbyLink: undefined,
      service: "echo",
      status: { _tag: "Tcp", host: "127.0.0.1", port: 0 },
      store: undefined,
      fenceLeaseMs: undefined,
      clusterKeyFile: "/etc/k",
      // The takeover asks the peer for its address as primary (ASCONF) and takes the dead
      // node's address over, unless told otherwise.
      failover: "both",
      takeoverInterface: undefined,
    })
    for (const failover of ["asconf", "takeover", "none"]) {
      expect(parse([...node, "every-update", "--insecure", "--failover", failover])).toMatchObject({
        failover,
      })
    }
    expect(message([...node, "every-update", "--insecure", "--failover", "arp"])).toMatch(
      /--failover "arp": expected asconf, takeover, both, none/,
    )
    // Across hosts: the interface the address is added to, a plain interface name.
    expect(
      parse([...node, "every-update", "--insecure", "--takeover-interface", "eth0"]),
    ).toMatchObject({ failover: "both", takeoverInterface: "eth0" })
    expect(
      message([
        ...node,
        "every-update",
        "--insecure",
        "--failover",
        "asconf",
        "--takeover-interface",
        "eth0",
      ]),
    ).toMatch(/--takeover-interface is for --failover takeover or both, not asconf/)
    for (const bad of ["-v", "eth0 up", "a/b", "x".repeat(16)]) {
      expect(
        message([...node, "every-update", "--insecure", `--takeover-interface=${bad}`]),
      ).toMatch(/--takeover-interface .*: not an interface name/)
    }
    // Without '=', an option is never taken for the value.
    expect(message([...node, "every-update", "--insecure", "--takeover-interface", "-v"])).toMatch(
      /Missing value for flag --takeover-interface/,
    )
    // Unauthenticated only when asked, explicitly.
    expect(parse([...node, "every-update", "--insecure"])).toMatchObject({
      _tag: "Node",
      clusterKeyFile: undefined,
    })
  })

  it("parses every option, in both spellings", () => {
    const invocation = parse([
      "node",
      "--role=secondary",
      "--addresses",
      "::1,127.0.0.3",
      "--policy=interval:250",
      "--port",
      "5000",
      "--udp-port=9911",
      "--link",
      "tcp://127.0.0.1:7000",
      "--service",
      "sink",
      "--status",
      "/tmp/node.sock",
      "--cluster-key-file",
      "/tmp/key",
    ])
    expect(invocation).toMatchObject({
      _tag: "Node",
      role: "secondary",
      addresses: ["::1", "127.0.0.3"],
      policy: { _tag: "Interval", every: 250 },
      port: 5000,
      udpPort: 9911,
      link: { _tag: "Tcp", host: "127.0.0.1", port: 7000 },
      service: "sink",
      status: { _tag: "Unix", path: "/tmp/node.sock" },
      clusterKeyFile: "/tmp/key",
    })
    expect(
      parse([...node, "state-node", "--store", "tcp://127.0.0.1:7100", "--insecure"]),
    ).toMatchObject({
      policy: { _tag: "StateNode" },
      store: { _tag: "Tcp", host: "127.0.0.1", port: 7100 },
    })
    expect(parse([...node, "on-event:CommUp,Message", "--insecure"])).toMatchObject({
      policy: { _tag: "OnEvent", events: ["CommUp", "Message"] },
    })
    expect(parse(["status", "--status", "unix:///run/a.sock", "--json"])).toEqual({
      _tag: "Status",
      status: { _tag: "Unix", path: "/run/a.sock", abstract: false },
      json: true,
    })
    expect(parse(["store", "--listen", "tcp://127.0.0.1:0", "--insecure"])).toEqual({
      _tag: "Store",
      listen: { _tag: "Tcp", host: "127.0.0.1", port: 0 },
      clusterKeyFile: undefined,
    })
    expect(parse(["store", "--listen", "tcp://127.0.0.1:0", "--cluster-key-file", "k"])).toEqual({
      _tag: "Store",
      listen: { _tag: "Tcp", host: "127.0.0.1", port: 0 },
      clusterKeyFile: "k",
    })
    expect(
      parse(["handover", "--status", "tcp://127.0.0.2:7080", "--cluster-key-file", "k"]),
    ).toEqual({
      _tag: "HandOver",
      status: { _tag: "Tcp", host: "127.0.0.2", port: 7080 },
      clusterKeyFile: "k",
    })
    expect(parse(["keygen", "--out", "/etc/sctp-cluster.key"])).toEqual({
      _tag: "Keygen",
      out: "/etc/sctp-cluster.key",
    })
  })

  it("explains what is wrong", () => {
    expect(message([])).toMatch(/no command/)
    expect(message(["bogus"])).toMatch(/Unknown subcommand "bogus" for "sctp-cluster"/)
    expect(message([...node, "every-update", "--bogus", "1"])).toMatch(
      /Unrecognized flag: --bogus in command sctp-cluster node/,
    )
    expect(message([...node, "every-update", "stray"])).toMatch(
      /Unexpected positional argument: "stray"/,
    )
    expect(message([...node, "sometimes"])).toMatch(/--policy sometimes: known policies/)
    expect(message([...node, "interval:0"])).toMatch(/--policy interval:0/)
    expect(message([...node, "on-event:Nope"])).toMatch(/unknown events Nope/)
    // etcd as the store: its client URL.
    expect(
      parse([...node, "state-node", "--store", "etcd://127.0.0.1:2379", "--insecure"]),
    ).toMatchObject({ store: { _tag: "Etcd", endpoint: "http://127.0.0.1:2379" } })
    for (const bad of ["etcd://", "etcd://127.0.0.1", "etcd://127.0.0.1:0", "etcd://x:y"]) {
      expect(message([...node, "state-node", "--store", bad, "--insecure"])).toMatch(
        /--store etcd:\/\/.*: expected etcd:\/\/HOST:PORT/,
      )
    }
    expect(message([...node, "state-node"])).toMatch(/needs --store/)
    expect(message([...node, "every-update", "--store", "tcp://127.0.0.1:1"])).toMatch(
      /only for --policy state-node/,
    )
    expect(message([...node, "every-update", "--standby-link", "tcp://127.0.0.2:1"])).toMatch(
      /--standby-link is for the secondary/,
    )
    expect(message([...node, "every-update", "--fence-lease-ms", "1000"])).toMatch(
      /--fence-lease-ms needs --store/,
    )
    expect(
      message([...node, "every-update", "--store", "tcp://127.0.0.1:1", "--fence-lease-ms", "50"]),
    ).toMatch(/--fence-lease-ms 50: expected milliseconds/)
    expect(
      parse([
        ...node,
        "every-update",
        "--store",
        "tcp://127.0.0.1:1",
        "--fence-lease-ms",
        "900",
        "--insecure",
      ]),
    ).toMatchObject({ fenceLeaseMs: 900, store: { _tag: "Tcp", port: 1 } })
    expect(
      message(["node", "--addresses", "127.0.0.2,127.0.0.3", "--policy", "every-update"]),
    ).toMatch(/--role is required/)
    expect(message(["node", "--role", "leader"])).toMatch(/primary or secondary/)
    expect(message([...node.slice(0, 4), "127.0.0.2", "--policy", "every-update"])).toMatch(
      /expected two IPs/,
    )
    expect(message([...node.slice(0, 4), "127.0.0.2,localhost", "--policy", "x"])).toMatch(
      /"localhost" is not an IP/,
    )
    expect(message([...node.slice(0, 4), "127.0.0.2,127.0.0.2", "--policy", "x"])).toMatch(
      /two addresses/,
    )
    expect(message([...node.slice(0, 5)])).toMatch(/--policy is required/)
    expect(message([...node, "every-update", "--port", "0"])).toMatch(/--port 0/)
    expect(message([...node, "every-update", "--udp-port", "70000"])).toMatch(/--udp-port 70000/)
    expect(message([...node, "every-update", "--service", "chargen"])).toMatch(/--service/)
    expect(message([...node, "every-update", "--link", "udp://127.0.0.1:1"])).toMatch(
      /--link udp:\/\/127.0.0.1:1/,
    )
    expect(message([...node, "every-update", "--status", "relative.sock"])).toMatch(/--status/)
    // A seeded node would issue predictable tags: the option is gone.
    expect(message([...node, "every-update", "--seed", "1"])).toMatch(/Unrecognized flag: --seed/)
    expect(message([...node, "every-update"])).toMatch(
      /--cluster-key-file is required \(write one with 'sctp-cluster keygen --out FILE'\), or --insecure/,
    )
    expect(message([...node, "every-update", "--insecure", "--cluster-key-file", "k"])).toMatch(
      /exclude each other/,
    )
    expect(message(["store", "--listen", "tcp://127.0.0.1:1"])).toMatch(
      /--cluster-key-file is required/,
    )
    expect(message(["keygen"])).toMatch(/--out is required/)
    // A toggle given a value is that boolean (effect/cli's reading).
    expect(message([...node, "every-update", "--insecure=false"])).toMatch(
      /--cluster-key-file is required/,
    )
    expect(message([...node, "every-update", "--port", "7", "--port", "8"])).toMatch(
      /--port: "2 occurrences". Expected: at most 1 value/,
    )
    expect(message([...node, "every-update", "--port"])).toMatch(/Missing value for flag --port/)
    expect(message([...node, "every-update", "--port="])).toBe("--port needs a value")
    expect(message(["status"])).toMatch(/--status is required/)
    expect(message(["status", "--listen", "tcp://127.0.0.1:1"])).toBe(
      "Unrecognized flag: --listen in command sctp-cluster status",
    )
    expect(message(["handover", "--insecure"])).toMatch(/--status is required/)
    expect(message(["handover", "--status", "tcp://127.0.0.2:7080"])).toMatch(
      /--cluster-key-file is required/,
    )
    expect(message(["handover", "--status", "tcp://127.0.0.2:1", "--insecure", "--json"])).toMatch(
      /Unrecognized flag: --json in command sctp-cluster handover/,
    )
    expect(message(["store"])).toMatch(/--listen is required/)
    expect(message(["store", "--listen", "tcp://127.0.0.1:1", "--json"])).toMatch(
      /Unrecognized flag: --json in command sctp-cluster store/,
    )
    expect(message(["node", "--help"])).toBe("Help")
  })

  it("reads stream addresses: URLs and absolute unix paths", () => {
    expect(parseStreamAddress("tcp://[::1]:80")).toEqual({ _tag: "Tcp", host: "::1", port: 80 })
    expect(parseStreamAddress("/run/x.sock")).toEqual({
      _tag: "Unix",
      path: "/run/x.sock",
      abstract: false,
    })
    expect(typeof parseStreamAddress("udp://127.0.0.1:1")).toBe("string")
  })
})

describe("status report", () => {
  const report: StatusReport = {
    role: "primary",
    policy: "every-update",
    link: "up",
    unprotected: false,
    fence: { epoch: 3, holding: true, lastKeepAliveMs: 1_000, leaseMs: 1_500 },
    failover: "both",
    addressTakeover: undefined,
    replication: { shipped: 1200, acknowledged: 1199, applied: 0, lagMs: 3, staleRefused: 0 },
    associations: [
      {
        id: 1,
        state: "Established",
        localPort: 7,
        peerPort: 5000,
        paths: [
          {
            host: "127.0.0.1",
            udpPort: 9899,
            confirmed: true,
            active: true,
            errorCount: 0,
            rtoMs: 1000,
            srttMs: 1.4,
            cwnd: 4800,
            ssthresh: 131072,
            flightBytes: 0,
          },
          {
            host: "::1",
            udpPort: 9899,
            confirmed: false,
            active: false,
            errorCount: 2,
            rtoMs: 3000,
            srttMs: undefined,
            cwnd: 4800,
            ssthresh: 131072,
            flightBytes: 0,
          },
        ],
        primary: "127.0.0.1",
        peerRwnd: 131072,
        flightBytes: 0,
        queuedBytes: 0,
        outstandingChunks: 0,
        errorCount: 0,
        inboundStreams: 10,
        outboundStreams: 10,
      },
    ],
    replicas: 0,
    received: { messages: 200, bytes: 1800 },
    endpoint: {
      packetsIn: 400,
      packetsOut: 401,
      bytesIn: 1,
      bytesOut: 1,
      sendErrors: 0,
      dropped: { BadChecksum: 1 },
      associations: 1,
    },
    node: {
      startedAs: "primary",
      pid: 123,
      bind: "udp://127.0.0.2:9900",
      addresses: ["127.0.0.2", "127.0.0.3"],
      port: 7,
      service: "echo",
      link: "tcp://127.0.0.3:9900",
      failover: "both",
      takeoverInterface: undefined,
    },
  }

  it("shows role, link, replication lag and every path", () => {
    const text = formatStatus(report)
    expect(text).toContain("now primary")
    expect(text).toContain("link         up (tcp://127.0.0.3:9900)")
    expect(text).toContain("failover     both\n")
    const taken = (state: Cluster.AddressTakeover["state"]) =>
      formatStatus({
        ...report,
        node: { ...report.node, takeoverInterface: "eth0" },
        addressTakeover: { host: "127.0.0.2", state, packets: 1_234 },
      })
    expect(taken("waiting")).toContain(
      "failover     both, takeover on eth0; waiting for 127.0.0.2 to be free",
    )
    expect(taken("bound")).toContain(
      "failover     both, takeover on eth0; took over 127.0.0.2 (1,234 datagrams taken in there)",
    )
    expect(taken("released")).toContain("gave 127.0.0.2 back to the standby")
    expect(taken("failed")).toContain("could NOT take over 127.0.0.2")
    expect(text).toContain("shipped 1,200, acknowledged 1,199, applied 0; last 3 ms ago")
    expect(text).toContain("association 1: Established, port 7 <-> 5000, primary path 127.0.0.1")
    expect(text).toContain(
      "path 127.0.0.1:9899  confirmed  active  rto 1000 ms  srtt 1 ms  cwnd 4,800  errors 0",
    )
    expect(text).toContain("path [::1]:9899  unconfirmed  inactive  rto 3000 ms  srtt -")
    expect(text).toContain("dropped: BadChecksum 1")
    expect(text).toContain("fence        epoch 3, holding the role (lease 1500 ms)")
    expect(formatStatus({ ...report, fence: undefined })).not.toContain("fence")
    expect(formatStatus({ ...report, associations: [] })).toContain("associations none")
    expect(text).not.toContain("protection")
    expect(formatStatus({ ...report, link: "down", unprotected: true })).toContain(
      "protection   NONE: no secondary holds this node's updates",
    )
  })
})
