/**
 * A host's program for the `tcp-repair` process tests, run inside a network namespace.
 * One JSON line per event on stdout.
 *
 *   node TcpRepairHost.ts probe
 *   node TcpRepairHost.ts serve <serverId> <host> <port> <objectDir> <checkpointDir> [plain]
 *   node TcpRepairHost.ts takeover <objectDir> <checkpointDir> <serviceAddress> <refillBytesMax>
 */
import { execFileSync } from "node:child_process"
import * as TcpRepair from "../src/TcpRepair.ts"

const print = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(event)}\n`)
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const libc = TcpRepair.probe()
if (typeof libc === "string") {
  print({ t: "unavailable", reason: libc })
  process.exit(2)
}
const [mode, ...args] = process.argv.slice(2)
if (mode === "probe") {
  print({ t: "available" })
} else if (mode === "serve") {
  const [serverId, host, port, objects, checkpoints, plain] = args as [
    string,
    string,
    string,
    string,
    string,
    string,
  ]
  await TcpRepair.serve({
    // "plain": the same server without checkpoints, the benchmark's baseline.
    libc: plain === "plain" ? undefined : libc,
    serverId,
    host,
    port: Number(port),
    source: { root: objects },
    store: new TcpRepair.DirectoryStore(checkpoints),
    checkpointEveryBytes: 4 * 1024 * 1024,
    nowMs: () => Date.now(),
    onEvent: print,
  })
  print({ t: "ready" })
} else if (mode === "takeover") {
  // A standby: loaded and ready, it takes over when told (a line on stdin), as a standby
  // server would when its failure detector fires.
  print({ t: "standby", atMs: Date.now() })
  await new Promise<void>((resolve) => process.stdin.once("data", () => resolve()))
  print({ t: "started", atMs: Date.now() })
  const [objects, checkpoints, serviceAddress, refillBytesMax] = args as [
    string,
    string,
    string,
    string,
  ]
  const store = new TcpRepair.DirectoryStore(checkpoints)
  let claimed = false
  for (const checkpoint of store.readAll()) {
    const outcome = await TcpRepair.takeover({
      libc,
      source: { root: objects },
      checkpoint,
      claimAddress: async () => {
        if (claimed) return
        claimed = true
        execFileSync("ip", ["addr", "add", `${serviceAddress}/24`, "dev", "eth0"])
        TcpRepair.announce(libc, "eth0", serviceAddress)
      },
      nowMs: () => Date.now(),
      sleep,
      probesMax: 8,
      refillBytesMax: Number(refillBytesMax),
    })
    if (outcome._tag === "Resumed") {
      print({
        t: "resumed",
        bundleId: checkpoint.bundleId,
        objectOffset: outcome.objectOffset,
        refilledBytes: outcome.refilledBytes,
        atMs: Date.now(),
      })
      outcome.socket.on("close", () => print({ t: "closed", bundleId: checkpoint.bundleId }))
    } else {
      print({
        t: "refused",
        bundleId: checkpoint.bundleId,
        reason: outcome.reason,
        detail: outcome.detail,
        reset: outcome.reset,
      })
    }
  }
  print({ t: "done", atMs: Date.now() })
  process.stdin.destroy()
}
