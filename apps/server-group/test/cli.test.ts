import { describe, expect, it } from "@effect/vitest"
import { ServerGroupCommand } from "@understudy/app-kit"
import { parse, parseDuration } from "../src/cli.ts"
import { windows } from "../src/load.ts"

const peers = "1=udp://127.0.0.1:7001?cpu=8&bw=100,2=udp://127.0.0.1:7002"

describe("server-group command line", () => {
  it("--help shows the synopsis, every command's text and the flags", () => {
    const help = parse(["--help"])
    const text = help._tag === "Help" ? help.text : ""
    expect(text).toContain("Usage:")
    expect(text).toContain("server-group serve --id ID")
    expect(text).toContain("x-cluster-token: HMAC-SHA256")
    expect(text).toContain("Exit codes: 0 ok; 2 bad usage; 1 runtime error.")
    for (const command of ["serve", "nameserver", "keygen", "load"]) expect(text).toContain(command)
    const serve = parse(["serve", "--help"])
    for (const flag of ["--peers", "--cluster-key", "--insecure", "--data-dir", "--reads"])
      expect(serve._tag === "Help" && serve.text).toContain(flag)
    for (const absent of ["--wizard", "--completions", "--log-level", "--version"])
      expect(text).not.toContain(absent)
  })

  it("parses serve with per-peer capacities and --capacity for itself", () => {
    const invocation = parse([
      "serve",
      "--id",
      "2",
      "--peers",
      peers,
      "--http",
      "127.0.0.1:0",
      "--store",
      "tcp://127.0.0.1:7100",
      "--capacity",
      "cpu=4,bw=1000",
      "--insecure",
    ])
    expect(invocation._tag).toBe("Serve")
    if (invocation._tag !== "Serve") return
    expect(invocation.peers.map((p) => [p.id, p.cpu, p.bandwidthMbps])).toEqual([
      ["1", 8, 100],
      ["2", 4, 1000],
    ])
    expect(invocation.http).toEqual({ host: "127.0.0.1", port: 0 })
    expect(invocation.group).toBe("kv")
  })

  it("explains what is wrong", () => {
    const message = (argv: Array<string>) => {
      const invocation = parse(argv)
      return invocation._tag === "UsageError" ? invocation.message : invocation._tag
    }
    expect(message([])).toMatch(/no command/)
    expect(message(["bogus"])).toMatch(/Unknown subcommand "bogus" for "server-group"/)
    expect(message(["serve", "--bogus"])).toMatch(/Unrecognized flag: --bogus/)
    expect(message(["serve", "--id", "1", "--id", "2"])).toMatch(/--id: "2 occurrences"/)
    expect(message(["serve", "--id"])).toMatch(/Missing value for flag --id/)
    expect(message(["serve", "--id="])).toBe("--id needs a value")
    expect(
      message([
        "serve",
        "--id",
        "3",
        "--peers",
        peers,
        "--http",
        "h:1",
        "--store",
        "tcp://127.0.0.1:1",
      ]),
    ).toMatch(/not in --peers/)
    expect(
      message([
        "serve",
        "--id",
        "1",
        "--peers",
        peers,
        "--http",
        "h:1",
        "--store",
        "tcp://127.0.0.1:1",
        "--capacity",
        "cpu=2",
      ]),
    ).toMatch(/disagrees/)
    expect(message(["load", "--store", "tcp://127.0.0.1:1", "--rate", "0"])).toMatch(/--rate/)
    expect(message(["nameserver", "--listen", "nope"])).toMatch(/--listen/)
    expect(message(["nameserver", "--rate", "3"])).toBe(
      "Unrecognized flag: --rate in command server-group nameserver",
    )
    expect(message(["load", "--help"])).toBe("Help")
    expect(message(["serve", "--insecure", "stray"])).toMatch(/Unexpected positional argument/)
  })

  it("reads durations and finds unavailability windows", () => {
    expect(parseDuration("10s")).toBe(10_000)
    expect(parseDuration("250ms")).toBe(250)
    expect(parseDuration("2m")).toBe(120_000)
    expect(parseDuration("x")).toBeUndefined()
    expect(windows([0, 10, 20, 500, 510], 100)).toEqual([{ fromMs: 20, toMs: 500, ms: 480 }])
  })
})

describe("--store", () => {
  const serve = (store: string) =>
    parse(ServerGroupCommand.serve({ id: "1", peers, store, args: ["--insecure"] }))

  it("takes the embedded name server (tcp://) or etcd (etcd://)", () => {
    expect(serve("tcp://127.0.0.1:7100")).toMatchObject({
      _tag: "Serve",
      store: { _tag: "Remote", address: { host: "127.0.0.1", port: 7100 } },
    })
    expect(serve("etcd://127.0.0.1:2379")).toMatchObject({
      _tag: "Serve",
      store: { _tag: "Etcd", endpoint: "http://127.0.0.1:2379" },
    })
  })

  it("refuses an etcd URL without a usable host and port", () => {
    for (const bad of [
      "etcd://",
      "etcd://127.0.0.1",
      "etcd://127.0.0.1:x",
      "http://127.0.0.1:2379",
    ]) {
      expect(serve(bad)._tag).toBe("UsageError")
    }
  })
})

describe("--cluster-key", () => {
  it("or --insecure is required by serve; load takes no --insecure", () => {
    const base = [
      "serve",
      "--id",
      "1",
      "--peers",
      peers,
      "--http",
      "127.0.0.1:0",
      "--store",
      "tcp://127.0.0.1:7100",
    ]
    const missing = parse(base)
    expect(missing).toMatchObject({ _tag: "UsageError" })
    expect(missing._tag === "UsageError" && missing.message).toContain("--insecure")
    expect(parse([...base, "--insecure"])).toMatchObject({
      _tag: "Serve",
      clusterKey: undefined,
      insecure: true,
      dataDir: undefined,
    })
    expect(parse([...base, "--cluster-key", "/etc/kv/cluster.key"])).toMatchObject({
      _tag: "Serve",
      clusterKey: "/etc/kv/cluster.key",
      insecure: false,
    })
    expect(parse([...base, "--cluster-key", "k", "--insecure"])._tag).toBe("UsageError")
    expect(parse([...base, "--insecure", "--data-dir", "/var/lib/kv"])).toMatchObject({
      _tag: "Serve",
      dataDir: "/var/lib/kv",
    })
    expect(parse(["load", "--store", "tcp://127.0.0.1:1", "--insecure"])._tag).toBe("UsageError")
    // --reads: read index by default, or the leader lease; anything else is a usage error.
    expect(parse([...base, "--insecure"])).toMatchObject({ reads: "index" })
    expect(parse([...base, "--insecure", "--reads", "lease"])).toMatchObject({ reads: "lease" })
    for (const bad of ["local", "LEASE", "lease "]) {
      const parsed = parse([...base, "--insecure", "--reads", bad])
      expect(parsed._tag === "UsageError" && parsed.message).toContain("expected index or lease")
    }
  })

  it("or --insecure is required by nameserver, and exclude each other", () => {
    const base = ["nameserver", "--listen", "tcp://127.0.0.1:0"]
    const missing = parse(base)
    expect(missing._tag === "UsageError" && missing.message).toMatch(
      /--cluster-key FILE.*--insecure/,
    )
    expect(parse([...base, "--insecure"])).toMatchObject({
      _tag: "NameServer",
      clusterKey: undefined,
      insecure: true,
    })
    expect(parse([...base, "--cluster-key", "/etc/kv/cluster.key"])).toMatchObject({
      _tag: "NameServer",
      clusterKey: "/etc/kv/cluster.key",
      insecure: false,
    })
    expect(parse([...base, "--cluster-key", "k", "--insecure"])._tag).toBe("UsageError")
    expect(parse(["load", "--store", "tcp://127.0.0.1:1", "--cluster-key", "k"])).toMatchObject({
      _tag: "Load",
      clusterKey: "k",
    })
  })
})

describe("keygen", () => {
  it("takes --out FILE", () => {
    expect(parse(["keygen", "--out", "/tmp/k"])).toEqual({ _tag: "KeyGen", out: "/tmp/k" })
    expect(parse(["keygen"])._tag).toBe("UsageError")
    expect(parse(["keygen", "--out", "/tmp/k", "--id", "1"])._tag).toBe("UsageError")
  })
})
