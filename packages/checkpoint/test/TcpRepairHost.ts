/**
 * A host's program for the `tcp-repair` process tests, run inside a network namespace:
 * `serve` (the first server: objects over HTTP/1.1, checkpointed) or `takeover` (the
 * second: claims the service address, takes every checkpointed connection over). One JSON
 * line per event on stdout.
 *
 *   node TcpRepairHost.ts serve <serverId> <host> <port> <objectDir> <checkpointDir>
 *   node TcpRepairHost.ts takeover <objectDir> <checkpointDir> <serviceAddress>
 */
import { execFileSync, spawn } from "node:child_process"
import * as L from "../src/internal/tcpRepair/libc.ts"
import * as ObjectServer from "../src/internal/tcpRepair/objectServer.ts"

const print = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(event)}\n`)
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const libc = L.load()
if (typeof libc === "string") {
  print({ t: "unavailable", reason: libc })
  process.exit(2)
}
const [mode, ...args] = process.argv.slice(2)
if (mode === "serve") {
  const [serverId, host, port, objects, checkpoints] = args as [
    string,
    string,
    string,
    string,
    string,
  ]
  await ObjectServer.serve({
    libc,
    serverId,
    host,
    port: Number(port),
    source: { root: objects },
    store: new ObjectServer.DirectoryStore(checkpoints),
    checkpointEveryBytes: 1024 * 1024,
    nowMs: () => Date.now(),
    onEvent: print,
  })
  print({ t: "ready" })
} else if (mode === "takeover") {
  const [objects, checkpoints, serviceAddress] = args as [string, string, string]
  const startedAt = performance.now()
  const store = new ObjectServer.DirectoryStore(checkpoints)
  let claimed = false
  for (const checkpoint of store.readAll()) {
    const outcome = await ObjectServer.takeover({
      libc,
      source: { root: objects },
      checkpoint,
      claimAddress: async () => {
        if (claimed) return
        claimed = true
        execFileSync("ip", ["addr", "add", `${serviceAddress}/24`, "dev", "eth0"])
        // Announced without waiting for arping's own one-second wait.
        spawn("arping", ["-q", "-U", "-c", "1", "-I", "eth0", serviceAddress], { stdio: "ignore" })
        await sleep(20)
      },
      nowMs: () => Date.now(),
      sleep,
      probesMax: 8,
      refillBytesMax: 64 * 1024 * 1024,
    })
    if (outcome._tag === "Resumed") {
      print({
        t: "resumed",
        bundleId: checkpoint.bundleId,
        objectOffset: outcome.objectOffset,
        refilledBytes: outcome.refilledBytes,
        ms: performance.now() - startedAt,
      })
      outcome.socket.on("close", () => print({ t: "closed", bundleId: checkpoint.bundleId }))
      outcome.socket.on("error", (error) => print({ t: "socket-error", error: String(error) }))
    } else {
      print({
        t: "refused",
        bundleId: checkpoint.bundleId,
        reason: outcome.reason,
        detail: outcome.detail,
      })
    }
  }
  print({ t: "done" })
}
