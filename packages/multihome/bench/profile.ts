/**
 * Where the keyed every-update cluster's CPU goes, for whoever tunes the hot path (not part
 * of `npm run bench`): `node bench/profile.ts [--mode cluster|single] [--message-length N]
 * [--messages N] [--out DIR]`. Starts the two nodes (or the single endpoint) with
 * `--cpu-prof`, sends one tsctp run into it, then stops them with SIGTERM so that each
 * writes its `.cpuprofile` into DIR (default a fresh temporary directory), and prints the
 * run's line with its MB/s and DIR. The secondary's profile is the older file.
 *
 * V8's profiler samples wall time: on a loaded machine a process descheduled inside a
 * system call that wakes another (a loopback TCP or UDP send) is charged there. For
 * on-CPU time, run the nodes under `perf record -g` with `--perf-basic-prof` instead, and
 * judge a change by the bench's "CPU ms/MB" column.
 */
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Usrsctp } from "@understudy/testkit"
import * as Processes from "./processes.ts"

const option = (name: string): string | undefined => {
  const index = process.argv.indexOf(`--${name}`)
  return index < 0 ? undefined : process.argv[index + 1]
}
const messageLength = Number(option("message-length") ?? 1024)
const messages = Number(option("messages") ?? 100_000)
const out = option("out") ?? mkdtempSync(join(tmpdir(), "multihome-profile-"))
const mode = option("mode") ?? "cluster"

process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ""} --cpu-prof --cpu-prof-dir=${out}`
try {
  const started =
    mode === "single"
      ? await Processes.startSingle("127.0.0.1").then((single) => ({
          reporter: single.receiver,
          all: [single.receiver],
          host: "127.0.0.1",
          udpPort: single.udpPort,
        }))
      : await Processes.startCluster({ policy: "every-update", observe: false }).then(
          (cluster) => ({
            reporter: cluster.primary,
            all: [cluster.primary, cluster.secondary],
            host: Processes.clusterHosts.primary,
            udpPort: cluster.udpPort,
          }),
        )
  delete process.env.NODE_OPTIONS
  const sender = await Usrsctp.startTsctp({
    role: "sender",
    host: started.host,
    port: Processes.sctpPort,
    localEncapsPort: await Usrsctp.freeEncapsulationPort(),
    remoteEncapsPort: started.udpPort,
    messageLength,
    messages,
    nodebug: true,
  })
  const line = await started.reporter.line("association", 120_000)
  await sender.exited
  const bytes = Number(line.bytes)
  const seconds = Number(line.seconds)
  console.log(JSON.stringify({ ...line, megabytesPerSecond: bytes / seconds / 1e6, out }))
  for (const receiver of started.all) receiver.process.kill("SIGTERM")
  await Promise.all(started.all.map((receiver) => receiver.process.exit()))
} finally {
  await Usrsctp.killAll()
  await Processes.killAll()
}
