import { describe, expect, it } from "vitest"
import { defaultSettings, runSctpCluster } from "../src/scenarios/sctpCluster.ts"
import { decidePeer, type PeerEnvironment } from "../src/scenarios/sctpPeer.ts"
import { formatTable } from "../src/table.ts"

/** A machine as `decidePeer` sees it, recording what was attempted. */
const machine = (fields: {
  installed: boolean
  isRoot: boolean
  installWorks?: boolean
  gcc?: boolean
}) => {
  const attempts: Array<string> = []
  let installed = fields.installed
  const environment: PeerEnvironment = {
    usrsctpInstalled: () => installed,
    isRoot: fields.isRoot,
    install: async () => {
      attempts.push("install")
      installed = fields.installWorks ?? false
      return installed
    },
    shimsBuild: async () => {
      attempts.push("shims")
      return fields.gcc ?? true
    },
    log: () => {},
  }
  return { environment, attempts }
}

describe("sctp-cluster: the outside peer", () => {
  it("auto: usrsctp's client when it is installed, nothing installed", async () => {
    const { environment, attempts } = machine({ installed: true, isRoot: true })
    expect(await decidePeer("auto", environment)).toEqual({ kind: "usrsctp", note: undefined })
    expect(attempts).toEqual(["shims"])
  })

  it("auto, not root, usrsctp missing: Understudy's endpoint, and the row says how to install usrsctp", async () => {
    const { environment, attempts } = machine({ installed: false, isRoot: false })
    expect(await decidePeer("auto", environment)).toEqual({
      kind: "understudy",
      note: "peer: understudy (usrsctp not installed: apt-get install libusrsctp-examples)",
    })
    expect(attempts).toEqual([])
  })

  it("auto, root, usrsctp missing: installs it and uses it", async () => {
    const { environment, attempts } = machine({
      installed: false,
      isRoot: true,
      installWorks: true,
    })
    expect(await decidePeer("auto", environment)).toEqual({ kind: "usrsctp", note: undefined })
    expect(attempts).toEqual(["install", "shims"])
  })

  it("auto, root, the install fails: Understudy's endpoint, saying so", async () => {
    const { environment } = machine({ installed: false, isRoot: true, installWorks: false })
    expect(await decidePeer("auto", environment)).toEqual({
      kind: "understudy",
      note: "peer: understudy (usrsctp could not be installed: apt-get install libusrsctp-examples)",
    })
  })

  it("auto, usrsctp installed but no gcc for the timer shim: Understudy's endpoint, saying so", async () => {
    const { environment } = machine({ installed: true, isRoot: false, gcc: false })
    const decision = await decidePeer("auto", environment)
    expect(decision.kind).toBe("understudy")
    expect(decision.note).toContain("apt-get install gcc")
  })

  it("an explicit choice is followed without looking further", async () => {
    const { environment, attempts } = machine({ installed: false, isRoot: true })
    expect(await decidePeer("understudy", environment)).toEqual({
      kind: "understudy",
      note: "peer: understudy (--sctp-peer understudy)",
    })
    expect(await decidePeer("usrsctp", environment)).toEqual({ kind: "usrsctp", note: undefined })
    expect(attempts).toEqual([])
  })

  // A machine without usrsctp where we are not root: the scenario runs to its end with
  // Understudy's own endpoint as the outside peer (real processes), every row ok and saying so.
  it("runs with Understudy's endpoint where usrsctp is missing: every row ok, each naming the peer", async () => {
    const { environment } = machine({ installed: false, isRoot: false })
    const lines: Array<string> = []
    const rows = await runSctpCluster(
      { log: (line) => lines.push(line), options: { sctpPeer: "auto" } },
      { ...defaultSettings, messages: 60, killAfter: 30 },
      environment,
    )
    const table = formatTable(rows)
    expect(rows.map((row) => row.scenario)).toEqual([
      "sctp-cluster: association up",
      "sctp-cluster: SIGKILL primary",
      "sctp-cluster: echoes",
      "sctp-cluster: graceful end",
    ])
    expect(
      rows.filter((row) => !row.ok),
      table,
    ).toEqual([])
    for (const row of rows)
      expect(row.note).toBe(
        "peer: understudy (usrsctp not installed: apt-get install libusrsctp-examples)",
      )
    expect(table).toContain("ok; peer: understudy (usrsctp not installed")
    expect(rows[1]!.failoverMs).toBeGreaterThan(0)
    expect(lines.some((line) => line.startsWith("SIGKILL primary"))).toBe(true)
  }, 60_000)
})
