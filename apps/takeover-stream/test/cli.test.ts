import { describe, expect, it } from "vitest"
import { parse } from "../src/cli.ts"

const key = ["--key-file", "/k"]
const store = ["--store", "tcp://127.0.0.1:7000"]

const usageError = (argv: ReadonlyArray<string>): string => {
  const parsed = parse(argv)
  if (parsed._tag !== "UsageError") throw new Error(`not refused: ${JSON.stringify(parsed)}`)
  return parsed.message
}

describe("takeover-stream's command line", () => {
  it("serve: every flag, with the defaults for those left out", () => {
    expect(
      parse([
        "serve",
        "--id",
        "A",
        "--listen",
        "tcp://127.0.0.1:7001",
        "--dir",
        "/d",
        ...store,
        ...key,
      ]),
    ).toEqual({
      _tag: "Serve",
      id: "A",
      listen: { _tag: "Tcp", host: "127.0.0.1", port: 7001 },
      dir: "/d",
      store: { _tag: "Store", address: { _tag: "Tcp", host: "127.0.0.1", port: 7000 } },
      key: { _tag: "KeyFile", path: "/k" },
      everyBytes: 4 * 1024 * 1024,
      leaseTtlMs: 1_000,
      backend: "session",
      interfaceName: "eth0",
    })
    const tuned = parse([
      "serve",
      "--id=B",
      "--listen",
      "tcp://127.0.0.1:7002",
      "--dir",
      "/d",
      "--etcd",
      "http://127.0.0.1:2379,http://127.0.0.2:2379",
      "--insecure",
      "--every-bytes",
      "65536",
      "--lease-ms",
      "250",
      "--backend",
      "tcp-repair",
      "--interface",
      "veth0",
    ])
    expect(tuned).toMatchObject({
      _tag: "Serve",
      id: "B",
      store: { _tag: "Etcd", endpoints: ["http://127.0.0.1:2379", "http://127.0.0.2:2379"] },
      key: { _tag: "Insecure" },
      everyBytes: 65536,
      leaseTtlMs: 250,
      backend: "tcp-repair",
      interfaceName: "veth0",
    })
  })

  it("get and bundle: positionals before, between and after flags", () => {
    expect(
      parse([
        "get",
        "a.bin",
        "-o",
        "/out",
        "--service",
        "tcp://127.0.0.1:1,tcp://127.0.0.1:2",
        ...key,
        "--progress",
        "--sha256",
        "AB".repeat(32),
      ]),
    ).toMatchObject({
      _tag: "Get",
      name: "a.bin",
      output: "/out",
      service: { _tag: "Servers", servers: [{ port: 1 }, { port: 2 }] },
      progress: true,
      sha256: "ab".repeat(32),
    })
    expect(parse(["get", "a.bin", "--output", "/out", ...store, "--insecure"])).toMatchObject({
      service: { _tag: "Store" },
      progress: false,
      sha256: undefined,
    })
    expect(
      parse([
        "bundle",
        "a",
        "b",
        "--paused",
        "b",
        "-o",
        "/dir",
        "--udp",
        "a",
        "--multicast",
        "b",
        "--udp",
        "c",
        ...store,
        ...key,
        "--multicast-interface",
        "127.0.0.1",
      ]),
    ).toMatchObject({
      _tag: "Bundle",
      names: ["a", "b"],
      dir: "/dir",
      paused: "b",
      udp: ["a", "c"],
      multicast: ["b"],
      multicastInterface: "127.0.0.1",
    })
  })

  it("store and handoff", () => {
    expect(parse(["store", "--listen", "tcp://127.0.0.1:7000", ...key])).toEqual({
      _tag: "Store",
      listen: { _tag: "Tcp", host: "127.0.0.1", port: 7000 },
      key: { _tag: "KeyFile", path: "/k" },
    })
    expect(parse(["handoff", "--from", "A", ...store, ...key, "--on-stdin"])).toMatchObject({
      _tag: "Handoff",
      from: "A",
      to: undefined,
      onStdin: true,
    })
    expect(parse(["handoff", "--from", "A", "--to", "B", ...store, ...key])).toMatchObject({
      to: "B",
      onStdin: false,
    })
  })

  it("refuses what it cannot run, saying why", () => {
    const serve = ["serve", "--id", "A", "--listen", "tcp://127.0.0.1:7001", "--dir", "/d"]
    expect(usageError([])).toBe("no command: store, serve, get, bundle or handoff")
    expect(usageError(["fetch"])).toMatch(/fetch/)
    expect(usageError([...serve, ...store, ...key, "--backend", "kernel"])).toBe(
      "--backend is session or tcp-repair",
    )
    expect(usageError([...serve, ...store])).toBe(
      "give --key-file FILE, or --insecure to run unauthenticated",
    )
    expect(usageError([...serve, ...store, ...key, "--insecure"])).toBe(
      "--key-file and --insecure exclude each other",
    )
    expect(usageError([...serve, ...key])).toBe("--store or --etcd is required")
    expect(usageError([...serve, ...store, "--etcd", "http://e:2379", ...key])).toBe(
      "--store and --etcd exclude each other",
    )
    expect(usageError([...serve, ...store, ...key, "--lease-ms", "0"])).toBe(
      "--lease-ms must be a positive integer",
    )
    expect(usageError([...serve, ...store, ...key, "--every-bytes", "1e3"])).toBe(
      "--every-bytes must be a positive integer",
    )
    expect(
      usageError([
        "serve",
        "--id",
        "a b",
        "--listen",
        "tcp://127.0.0.1:1",
        "--dir",
        "/d",
        ...store,
        ...key,
      ]),
    ).toMatch(/--id ID is required/)
    expect(
      usageError(["serve", "--id", "A", "--listen", "nowhere", "--dir", "/d", ...store, ...key]),
    ).toMatch(/^--listen: /)
    expect(usageError(["get", "a", ...store, ...key])).toBe("-o FILE is required")
    expect(usageError(["get", "a", "-o", "/o", ...key])).toBe(
      "--service, --store or --etcd is required",
    )
    expect(usageError(["get", "a", "-o", "/o", ...store, ...key, "--sha256", "abc"])).toBe(
      "--sha256 is 64 hexadecimal digits",
    )
    expect(usageError(["bundle", "-o", "/dir", ...store, ...key])).toBe(
      "bundle NAME...: at least one object",
    )
    expect(usageError(["handoff", ...store, ...key])).toMatch(/--from ID is required/)
    expect(usageError(["handoff", "--from", "A", "--to", "!", ...store, ...key])).toBe(
      "--to ID: letters, digits, - and _",
    )
    expect(
      usageError(["store", "--listen", "tcp://127.0.0.1:1", ...key, "--every-bytes", "5"]),
    ).toMatch(/every-bytes/)
  })

  it("--help shows the usage", () => {
    const help = parse(["--help"])
    expect(help._tag).toBe("Help")
    if (help._tag === "Help") expect(help.text).toContain("takeover-stream handoff --from ID")
  })
})
