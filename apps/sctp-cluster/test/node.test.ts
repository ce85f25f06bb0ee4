/**
 * `sctp-cluster` as real processes on loopback: usage errors, a primary and a secondary that
 * find each other over the link, `status` in both forms, SIGTERM's final synchronisation,
 * and the store node of `state-node`.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Eventually } from "@understudy/testkit"
import type { StatusReport } from "../src/report.ts"
import * as App from "./support.ts"

afterEach(App.killAll)

describe("sctp-cluster processes", () => {
  it("prints its usage, and exits 2 on bad usage with the reason", async () => {
    const help = await App.run(["--help"])
    expect(help.code).toBe(0)
    expect(help.stdout).toContain("sctp-cluster node --role primary|secondary")
    const badPolicy = await App.run([
      "node",
      "--role",
      "primary",
      "--addresses",
      "127.0.0.2,127.0.0.3",
      "--policy",
      "whenever",
    ])
    expect(badPolicy.code).toBe(2)
    expect(badPolicy.stderr).toMatch(/--policy whenever: known policies: every-update/)
    expect(badPolicy.stderr).toContain("Try 'sctp-cluster --help'")
    const noCommand = await App.run([])
    expect(noCommand.code).toBe(2)
  })

  it("status of a node that is not there fails with exit code 1", async () => {
    const result = await App.run(["status", "--status", "/tmp/sctp-cluster-nobody-here.sock"])
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/no status from unix:\/\/\/tmp\/sctp-cluster-nobody-here.sock/)
  })

  it("a missing cluster key file is a runtime error, exit code 1", async () => {
    const { keyFile: _keyFile, ...ports } = await App.clusterPorts()
    const primary = App.start(
      App.nodeArgs("primary", ports, ["--cluster-key-file", "/nonexistent/sctp-cluster.key"]),
    )
    await primary.exit()
    expect(primary.child.exitCode).toBe(1)
    expect(primary.stderr).toMatch(/cluster key file \/nonexistent\/sctp-cluster.key: Missing/)
  })

  it("keygen writes a 0600 key; a key others may read is refused; no key needs an explicit --insecure, which warns", async () => {
    const directory = mkdtempSync(join(tmpdir(), "sctp-cluster-keygen-"))
    try {
      const key = join(directory, "cluster.key")
      const generated = await App.run(["keygen", "--out", key])
      expect(generated.code).toBe(0)
      expect(statSync(key).mode & 0o777).toBe(0o600)
      expect(readFileSync(key, "utf8")).toMatch(/^[0-9a-f]{64}\n$/)
      // Never over an existing key: that would split the cluster.
      expect((await App.run(["keygen", "--out", key])).code).toBe(1)

      const { keyFile: _keyFile, ...ports } = await App.clusterPorts()
      chmodSync(key, 0o644)
      const readable = App.start(App.nodeArgs("primary", ports, ["--cluster-key-file", key]))
      await readable.exit()
      expect(readable.child.exitCode).toBe(1)
      expect(readable.stderr).toMatch(/Insecure \(mode 644; run chmod 600/)

      const unkeyed = await App.run([
        "node",
        "--role",
        "primary",
        "--addresses",
        "127.0.0.2,127.0.0.3",
        "--policy",
        "every-update",
      ])
      expect(unkeyed.code).toBe(2)
      expect(unkeyed.stderr).toMatch(/--cluster-key-file is required .* or --insecure/)

      expect(App.nodeArgs("primary", ports)).toContain("--insecure")
      const insecure = App.start(App.nodeArgs("primary", ports))
      const warning = await insecure.line("warning", 20_000)
      expect(warning.warning).toMatch(/not authenticated/)
      expect(insecure.stderr).toMatch(/warning: --insecure/)
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })

  it("a primary and a secondary link up; status shows both roles, then SIGTERM syncs and hands over", async () => {
    const ports = await App.clusterPorts()
    const { primary, secondary, primaryStarted, secondaryStarted } = await App.startPair(ports)
    expect(primaryStarted.bind).toBe(`udp://127.0.0.2:${ports.udpPort}`)
    expect(secondaryStarted.bind).toBe(`udp://127.0.0.3:${ports.udpPort}`)
    expect(primaryStarted.policy).toBe("every-update")

    const [primaryStatus, secondaryStatus] = await Eventually.promise(
      "both nodes report the link up",
      async () => {
        const both = await Promise.all([
          App.statusOf(primaryStarted.status as string),
          App.statusOf(secondaryStarted.status as string),
        ])
        return both.every((status) => status?.link === "up")
          ? (both as [StatusReport, StatusReport])
          : undefined
      },
      { within: 30_000 },
    )
    expect(primaryStatus.role).toBe("primary")
    expect(secondaryStatus.role).toBe("secondary")
    expect(primaryStatus.node.addresses).toEqual(["127.0.0.2", "127.0.0.3"])
    expect(primaryStatus.associations).toEqual([])

    const human = await App.run(["status", "--status", primaryStarted.status as string])
    expect(human.code).toBe(0)
    expect(human.stdout).toContain(`node         udp://127.0.0.2:${ports.udpPort}`)
    expect(human.stdout).toContain("now primary")
    expect(human.stdout).toMatch(/link {9}up/)
    expect(human.stdout).toContain("policy       every-update")
    expect(primary.lines.some((line) => line.t === "role" && line.link === "up")).toBe(true)

    // SIGTERM: an impending failure (claims 5–6): one final synchronisation, then exit 0;
    // the secondary sees the link go and takes over.
    primary.kill("SIGTERM")
    const impending = await primary.line("impending-failure", 30_000)
    expect(impending.synced).toBe(true)
    await primary.exit()
    expect(primary.child.exitCode).toBe(0)
    expect(primary.lines.some((line) => line.t === "cluster" && line._tag === "Synced")).toBe(true)
    const tookOver = await Eventually.promise(
      "the secondary takes over",
      () => secondary.lines.find((line) => line.t === "cluster" && line._tag === "TookOver"),
      { within: 10_000 },
    )
    expect(tookOver.associations).toBe(0)
    const after = await App.statusOf(secondaryStarted.status as string)
    expect(after?.role).toBe("active-secondary")
    expect(after?.link).toBe("down")
  })

  it("the link is authenticated with the cluster key: same key links up, another is refused", async () => {
    const directory = mkdtempSync(join(tmpdir(), "sctp-cluster-key-"))
    try {
      const key = App.newKeyFile()
      const other = App.newKeyFile()
      const { keyFile: _keyFile, ...ports } = await App.clusterPorts()
      const secondary = App.start(App.nodeArgs("secondary", ports, ["--cluster-key-file", key]))
      await secondary.line("started", 20_000)
      const impostor = App.start(App.nodeArgs("primary", ports, ["--cluster-key-file", other]))
      const impostorStarted = await impostor.line("started", 20_000)
      // Give the impostor several connection attempts (it retries every 100 ms).
      await sleep(1_000)
      expect((await App.statusOf(impostorStarted.status as string))?.link).toBe("down")
      expect(secondary.lines.some((line) => line.t === "cluster" && line._tag === "LinkUp")).toBe(
        false,
      )
      impostor.kill("SIGKILL")
      await impostor.exit()
      const primary = App.start(App.nodeArgs("primary", ports, ["--cluster-key-file", key]))
      await primary.line("started", 20_000)
      await App.linkUp("the primary with the right key links up", primary)
      // The secondary says so too, in its own time (at load 28 it had not yet when the
      // primary's line came).
      await Eventually.promise(
        "the secondary's link is up with the right key",
        () => secondary.lines.some((line) => line.t === "cluster" && line._tag === "LinkUp"),
        { within: 30_000 },
      )
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })

  it("state-node: a store node, and a pair that keeps the associations there", async () => {
    const ports = await App.clusterPorts()
    const storeStarted = await App.startStore(ports.keyFile)
    expect(storeStarted.listen).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/)
    const policy = ["state-node", "--store", storeStarted.listen]
    const { primaryStarted: started } = await App.startPair(ports, policy)
    expect(started.policy).toBe("state-node")
    const status = await Eventually.promise(
      "the primary's link is up",
      async () => {
        const found = await App.statusOf(started.status as string)
        return found?.link === "up" ? found : undefined
      },
      { within: 10_000 },
    )
    expect(status.policy).toBe("state-node")
  })
})
