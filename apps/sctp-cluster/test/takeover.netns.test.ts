/**
 * `--failover takeover --takeover-interface` across hosts, in network namespaces this test
 * creates and deletes: a peer host (usrsctp's client, default timers) and the two nodes'
 * hosts on one bridge. The primary's host dies (its link goes down, its processes are
 * SIGKILLed, as a power cut); the secondary adds the primary's address to its interface and
 * announces it with gratuitous ARP, so the peer's neighbour cache sends that address to the
 * secondary's host: the client, never asked to change anything, goes on sending to its
 * primary address and every line is echoed once and in order. Stopped, the secondary takes
 * the address off its interface.
 */
import type { ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Eventually, NetNs, Usrsctp } from "@understudy/testkit"
import { mainPath } from "../src/launch.ts"
import * as App from "./support.ts"

let lab: NetNs.Lab | undefined
let directory: string | undefined

afterEach(async () => {
  lab?.close()
  lab = undefined
  await Usrsctp.killAll()
  await App.killAll()
  if (directory !== undefined) rmSync(directory, { recursive: true, force: true })
  directory = undefined
})

/** The JSON lines a process prints on stdout, as they come. */
const jsonLines = (child: ChildProcess): Array<Record<string, unknown>> => {
  const lines: Array<Record<string, unknown>> = []
  let buffer = ""
  child.stdout!.setEncoding("utf8")
  child.stdout!.on("data", (chunk: string) => {
    buffer += chunk
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      const text = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      if (text.startsWith("{")) lines.push(JSON.parse(text) as Record<string, unknown>)
    }
  })
  return lines
}

/** The link-layer address of a host's interface, and the one the peer's cache holds for `ip`. */
const macOf = (host: string) =>
  /link\/ether ([0-9a-f:]+)/.exec(lab!.exec(host, ["ip", "link", "show", "eth0"]))?.[1]
const peerNeighbour = (ip: string) =>
  /lladdr ([0-9a-f:]+)/.exec(lab!.exec("peer", ["ip", "neigh", "show", ip]))?.[1]

describe("--failover takeover across hosts (network namespaces)", () => {
  it("the secondary's host claims the dead primary's address with gratuitous ARP; the client goes on sending there, every line echoed once and in order", async () => {
    const unavailable = NetNs.unavailableReason()
    if (unavailable !== undefined) throw new Error(unavailable)
    lab = NetNs.Lab.create("sc20", ["peer", "a", "b"])
    const [primaryIp, secondaryIp] = [lab.host("a").address, lab.host("b").address]
    directory = mkdtempSync(join(tmpdir(), "sctp-cluster-netns-"))
    const keyFile = App.newKeyFile()
    const node = (host: "a" | "b", role: "primary" | "secondary") => {
      const child = lab!.spawn(host, [
        process.execPath,
        mainPath,
        "node",
        "--role",
        role,
        "--addresses",
        `${primaryIp},${secondaryIp}`,
        "--policy",
        "every-update",
        "--link",
        `tcp://${secondaryIp}:7000`,
        // A unix socket: reachable from this test's namespace.
        "--status",
        join(directory!, `${host}.sock`),
        "--failover",
        "takeover",
        "--takeover-interface",
        "eth0",
        "--cluster-key-file",
        keyFile,
      ])
      let stderr = ""
      child.stderr!.on("data", (chunk: Buffer) => {
        stderr = (stderr + chunk.toString()).slice(-4_000)
      })
      return { child, lines: jsonLines(child), stderr: () => stderr }
    }
    const lineOf = (
      what: string,
      lines: Array<Record<string, unknown>>,
      match: (line: Record<string, unknown>) => boolean,
    ) =>
      Eventually.promise(what, () => lines.find(match), { within: 30_000 }).catch(
        (error: Error) => {
          throw new Error(
            `${error.message}\nprimary: ${JSON.stringify(primary.lines)}\nsecondary: ${JSON.stringify(secondary.lines)}\n${secondary.stderr()}`,
          )
        },
      )

    const secondary = node("b", "secondary")
    const primary = node("a", "primary")
    await lineOf("the secondary started", secondary.lines, (line) => line.t === "started")
    await lineOf("the link is up", primary.lines, (l) => l.t === "role" && l.link === "up")
    const client = await Usrsctp.start("/usr/sbin/ip", [
      "netns",
      "exec",
      lab.host("peer").netns,
      Usrsctp.programs.client,
      primaryIp,
      "7",
      "0",
      "9899",
      "9900",
    ])
    await client.waitFor(/SCTP_COMM_UP/, 20_000)
    await client.waitFor(
      new RegExp(`Peer address ${secondaryIp} is now SCTP_ADDR_CONFIRMED`),
      20_000,
    )
    const send = App.sender(client, 30_000)
    await send(1, 20)
    const primaryMac = macOf("a")
    expect(peerNeighbour(primaryIp)).toBe(primaryMac)

    lab.kill("a")
    const taken = await lineOf(
      "the secondary took the address over",
      secondary.lines,
      (line) => line.t === "cluster" && line._tag === "AddressTaken",
    )
    expect(taken.host).toBe(primaryIp)
    expect(lab.exec("b", ["ip", "-4", "addr", "show", "dev", "eth0"])).toContain(`${primaryIp}/32`)
    // The peer's cache sends the primary's address to the secondary's host once the
    // announcement arrived (arping runs beside the bind).
    const secondaryMac = macOf("b")
    expect(secondaryMac).not.toBe(primaryMac)
    await Eventually.promise(
      "the peer's neighbour cache learns the secondary's host",
      () => (peerNeighbour(primaryIp) === secondaryMac ? true : undefined),
      { within: 10_000 },
    )
    await send(21, 60)
    expect(App.echoed(client.stdout())).toEqual(Array.from({ length: 60 }, (_, i) => i + 1))
    expect(client.output()).not.toMatch(
      /SCTP_COMM_LOST|ABORT|SCTP_ADDR_MADE_PRIM|SCTP_ADDR_UNREACHABLE/,
    )
    const status = await App.run(["status", "--status", join(directory, "b.sock")])
    expect(status.code).toBe(0)
    expect(status.stdout).toMatch(
      new RegExp(
        `failover {5}takeover, takeover on eth0; took over ${primaryIp.replaceAll(".", "\\.")} \\([1-9][\\d,]* datagrams taken in there\\)`,
      ),
    )
    // A clean stop takes the address off the interface again.
    secondary.child.kill("SIGTERM")
    await Eventually.promise(
      "the secondary's exit",
      () => (secondary.child.exitCode !== null ? true : undefined),
      { within: 20_000 },
    )
    expect(secondary.child.exitCode).toBe(0)
    expect(lab.exec("b", ["ip", "-4", "addr", "show", "dev", "eth0"])).not.toContain(
      `${primaryIp}/32`,
    )
  }, 120_000)
})
