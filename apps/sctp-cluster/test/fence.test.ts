/**
 * The fence with real processes: a store node holds the role's lease; the primary is
 * SIGSTOPped past the link's time-out and the lease, the secondary takes over at the next
 * epoch, and the primary, SIGCONTed, finds it can no longer prove its role: it sends not one
 * datagram from its address (a capture on the loopback says so) and falls silent, while
 * usrsctp's client goes on with one sender, every message echoed once and in order.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { afterEach, describe, expect, it } from "@effect/vitest"
import type { Usrsctp } from "@understudy/testkit"
import * as App from "./support.ts"

const captures = new Set<ChildProcess>()

afterEach(async () => {
  for (const capture of captures) capture.kill("SIGKILL")
  captures.clear()
  await App.killAll()
})

const failureNotice = /SCTP_COMM_LOST|SCTP_SHUTDOWN|SCTP_CANT_STR_ASSOC|ABORT|Connection refused/

/** A loopback capture needs root and tcpdump. */
const canCapture = (() => {
  if (process.getuid?.() !== 0) return false
  try {
    execFileSync("tcpdump", ["--version"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()

/**
 * Captures on `lo` the UDP datagrams matching `filter`, one line each, until `stop`:
 * resolves once tcpdump listens.
 */
const capture = async (filter: string) => {
  const child = spawn("tcpdump", ["-i", "lo", "-n", "-l", "-q", filter], {
    stdio: ["ignore", "pipe", "pipe"],
  })
  captures.add(child)
  let lines = ""
  let errors = ""
  child.stdout.on("data", (chunk: Buffer) => {
    lines += chunk.toString()
  })
  child.stderr.on("data", (chunk: Buffer) => {
    errors += chunk.toString()
  })
  await App.eventually(
    "tcpdump listens",
    () => (errors.includes("listening on") ? true : undefined),
    10_000,
  )
  return {
    stop: async () => {
      const exited = new Promise((resolve) => child.once("exit", resolve))
      child.kill("SIGINT")
      await exited
      captures.delete(child)
      return lines.split("\n").filter((line) => line.includes("UDP"))
    },
  }
}

const tuned: Usrsctp.ShimOptions["tune"] = {
  rto_min_default: 100,
  rto_max_default: 400,
  rto_initial_default: 200,
  path_rtx_max_default: 2,
}

describe.skipIf(!canCapture)("fencing under usrsctp's client", () => {
  it("a primary SIGSTOPped past its lease and resumed sends nothing; the client has one sender", async () => {
    const ports = await App.clusterPorts()
    const store = App.start([
      "store",
      "--listen",
      "tcp://127.0.0.1:0",
      "--cluster-key-file",
      ports.keyFile,
    ])
    const storeAddress = (await store.line("started", 20_000)).listen as string
    const { primary, secondary, primaryStarted } = await App.startPair(ports, [
      "every-update",
      "--store",
      storeAddress,
      "--fence-lease-ms",
      // Long enough that a busy machine does not cost the serving node its own lease.
      "3000",
    ])
    await App.linkUp("the primary's link to the secondary is up", primary)
    const fenced = (node: typeof primary, epoch: number) =>
      App.eventually(
        `epoch ${epoch} acquired`,
        () =>
          node.lines.find(
            (line) => line.t === "cluster" && line._tag === "Fenced" && line.epoch === epoch,
          ),
        20_000,
      )
    await fenced(primary, 1)
    const { client, send } = await App.connectClient(ports, tuned)
    await send(1, 10)
    await App.eventually(
      "every update acknowledged by the secondary",
      async () => {
        const status = await App.statusOf(primaryStarted.status as string)
        return status !== undefined &&
          status.replication.shipped > 0 &&
          status.replication.acknowledged === status.replication.shipped
          ? true
          : undefined
      },
      5_000,
    )

    primary.kill("SIGSTOP")
    await fenced(secondary, 2)
    await App.eventually(
      "the secondary takes over",
      () => secondary.lines.find((line) => line.t === "cluster" && line._tag === "TookOver"),
      20_000,
    )
    await send(11, 20)

    // Everything the old primary's address sends from now on.
    const fromPrimary = await capture(`udp and src host 127.0.0.2 and src port ${ports.udpPort}`)
    primary.kill("SIGCONT")
    const silent = await App.eventually(
      "the resumed primary falls silent",
      () =>
        primary.lines.find(
          (line) => line.t === "cluster" && (line._tag === "FencedOut" || line._tag === "Deposed"),
        ),
      20_000,
    )
    expect(["FencedOut", "Deposed"]).toContain(silent._tag)
    await send(21, 30)
    expect(await fromPrimary.stop()).toEqual([])

    expect(App.echoed(client.stdout())).toEqual(Array.from({ length: 30 }, (_, i) => i + 1))
    expect(client.output()).not.toMatch(failureNotice)
    expect(client.child.exitCode).toBeNull()
    const secondaryStatus = await App.statusOf(
      secondary.lines.find((line) => line.t === "started")!.status as string,
    )
    expect(secondaryStatus?.fence?.epoch).toBe(2)
    expect(secondaryStatus?.fence?.holding).toBe(true)
  }, 120_000)
})
