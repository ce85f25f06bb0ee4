/**
 * Benchmark of the `tcp-repair` backend (root only; `node bench/tcpRepair.ts`):
 * - takeover gap for an unmodified curl: from host A's death (link down, SIGKILL) to the
 *   first byte B sends, B being a loaded standby told at A's death; detection (B claims the
 *   bundle once A's lease in the shared checkpoint store lapses) is reported apart, for the
 *   default 600 ms lease and a 300 ms one, alternating in the same run;
 * - throughput of the checkpointed object server (a checkpoint every 4 MiB read, 25 ms
 *   apart at least, written to the shared store host) against the same server without
 *   checkpoints, same object, same lab, alternating downloads after one warm-up download
 *   each (shown apart); with the server's CPU time per download (from /proc), the
 *   checkpoints it wrote, what one cost it, the largest step of the acknowledgement between
 *   two and what a takeover's refill of that many bytes costs.
 * Prints a table, then one JSON line. UNDERSTUDY_BENCH_TAKEOVERS (default 5 per lease) and
 * UNDERSTUDY_BENCH_THROUGHPUT_RUNS (default 9) set the counts.
 */

import { execFileSync } from "node:child_process"
import { randomInt } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { NetNs } from "@understudy/testkit"
import * as Kernel from "../src/internal/tcpRepair/kernelTcp.ts"
import * as ObjectServer from "../src/internal/tcpRepair/objectServer.ts"
import * as TcpRepair from "../src/TcpRepair.ts"
import {
  objectOf,
  sha256,
  storeLab,
  sweepLeftovers,
  takeoverRun,
  watch,
} from "../test/TcpRepairLab.ts"

const takeovers = Number(process.env.UNDERSTUDY_BENCH_TAKEOVERS ?? 5)
const throughputRuns = Number(process.env.UNDERSTUDY_BENCH_THROUGHPUT_RUNS ?? 9)
const throughputObjectBytes = 128 * 1024 * 1024
const checkpointEveryBytes = 4 * 1024 * 1024

const unavailable =
  NetNs.unavailableReason() ??
  (typeof TcpRepair.probe() === "string" ? String(TcpRepair.probe()) : undefined)
if (unavailable !== undefined) {
  console.log(`tcp-repair benchmark skipped: ${unavailable}`)
  console.log(JSON.stringify({ benchmark: "checkpoint/tcp-repair", skipped: unavailable }))
  process.exit(0)
}

const percentile = (values: ReadonlyArray<number>, p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}
const median = (values: ReadonlyArray<number>) => percentile(values, 50)
/** A process's CPU time so far (user + system), in ms. */
const cpuMs = (pid: number): number => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks
}
const clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }))

/**
 * What a takeover's refill of `bytes` costs, median of 5: the bytes read back from the
 * object and put in a rebuilt socket's send queue as sent (repair mode on loopback, to a
 * peer that is never sent anything; closed in repair mode, silently).
 */
const refillMs = (source: ObjectServer.ObjectSource, id: string, bytes: number): number => {
  const libc = TcpRepair.probe() as Exclude<ReturnType<typeof TcpRepair.probe>, string>
  const state: Kernel.KernelTcpState = {
    sendSeq: 1,
    recvSeq: 1,
    mss: 1448,
    sack: true,
    wscale: { send: 7, receive: 7 },
    timestamp: undefined,
    window: { sndWl1: 1, sndWnd: 1 << 22, maxWindow: 1 << 22, rcvWnd: 1 << 16, rcvWup: 1 },
  }
  const times: Array<number> = []
  for (let i = 0; i < 5; i++) {
    const fd = Kernel.rebuild(libc, {
      local: { host: "127.0.0.1", port: 0 },
      remote: { host: "127.0.0.1", port: 9 },
      sendSeq: 1,
      recvSeq: 1,
      state,
      timestamp: undefined,
    })
    try {
      const started = performance.now()
      // The takeover's own read: from the object's first byte (no response head).
      Kernel.fillSentQueue(libc, fd, ObjectServer.readResponse(source, id, "", 0, bytes))
      times.push(performance.now() - started)
    } finally {
      libc.close(fd)
    }
  }
  return median(times)
}

sweepLeftovers()
const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "us14-bench-"))
fs.mkdirSync(path.join(workDir, "objects"))
try {
  // The detection is the dead server's store lease lapsing: the default lease (600 ms, a
  // keep-alive every 200 ms) against a short one (300 ms, every 100 ms), alternating.
  const leases = [600, 300] as const
  const byLease = new Map(
    leases.map((leaseMs) => [
      leaseMs,
      { gaps: [] as Array<number>, told: [] as Array<number>, detected: [] as Array<number> },
    ]),
  )
  for (let i = 0; i < takeovers; i++) {
    for (const leaseMs of leases) {
      const size = randomInt(8, 17) * 1024 * 1024
      const result = await takeoverRun({
        workDir,
        client: "curl",
        size,
        fractions: [randomInt(20, 60) / 100],
        leaseMs,
      })
      if (
        result.outcome?.t !== "resumed" ||
        result.exitCode !== 0 ||
        sha256(result.out) !== sha256(result.object)
      )
        throw new Error(
          `takeover ${i + 1} (lease ${leaseMs} ms) failed: ${JSON.stringify(result.outcome)} exit ${result.exitCode}`,
        )
      const figures = byLease.get(leaseMs)!
      figures.gaps.push(result.gapMs)
      figures.told.push(result.startMs)
      figures.detected.push(result.hops[0]!.claimMs)
      fs.rmSync(result.out)
      process.stderr.write(
        `takeover ${i + 1}/${takeovers}, lease ${leaseMs} ms: gap ${result.gapMs} ms\n`,
      )
    }
  }

  const name = objectOf(workDir, throughputObjectBytes)
  const loadBefore = os.loadavg()[0]!.toFixed(1)
  const modes = ["checkpointed", "plain"] as const
  const seconds = { checkpointed: [] as Array<number>, plain: [] as Array<number> }
  const coldSeconds = { checkpointed: 0, plain: 0 }
  const serverCpuMs = { checkpointed: [] as Array<number>, plain: [] as Array<number> }
  const written: Array<number> = []
  const ackedStepMaxBytes: Array<number> = []
  // One lab: the checkpointed server on host a, the plain one on host b, one store. Each
  // server's first download is its warm-up (the JIT, the store codecs' first use), timed
  // apart; then the timed downloads alternate between them.
  const { lab, storeAddress, node } = await storeLab(["a", "b"])
  try {
    const servers = modes.map((mode, i) => {
      const host = i === 0 ? "a" : "b"
      const address = lab.host(host).address
      // `ip netns exec` execs the server: the child's pid is the server's.
      const child = lab.spawn(host, [
        ...node,
        "serve",
        host.toUpperCase(),
        address,
        "8080",
        path.join(workDir, "objects"),
        storeAddress,
        String(checkpointEveryBytes),
        mode,
      ])
      return { mode, address, child, lines: watch(child) }
    })
    for (const server of servers) await server.lines.line("ready", 20_000)
    for (let i = -1; i < throughputRuns; i++) {
      for (const { mode, address, child, lines } of servers) {
        const reports = lines.lines.filter((line) => line.t === "checkpoints").length
        const cpuBefore = cpuMs(child.pid!)
        const started = performance.now()
        lab.exec("client", [
          "curl",
          "-sS",
          "--fail",
          "-o",
          "/dev/null",
          `http://${address}:8080/${name}`,
        ])
        const elapsed = (performance.now() - started) / 1000
        if (mode === "checkpointed") {
          // Reported once the connection closed and its last write landed.
          const deadline = performance.now() + 20_000
          while (lines.lines.filter((line) => line.t === "checkpoints").length === reports) {
            if (performance.now() > deadline) throw new Error("no checkpoints line in 20 s")
            await sleep(5)
          }
          const report = lines.lines.filter((line) => line.t === "checkpoints")[reports]!
          if (i >= 0) {
            written.push(Number(report.written))
            ackedStepMaxBytes.push(Number(report.ackedStepMaxBytes))
          }
        }
        if (i < 0) coldSeconds[mode] = elapsed
        else {
          seconds[mode].push(elapsed)
          serverCpuMs[mode].push(cpuMs(child.pid!) - cpuBefore)
        }
      }
    }
  } finally {
    lab.close()
  }
  const mibPerSecond = (s: number) => throughputObjectBytes / 1048576 / s
  const checkpointed = seconds.checkpointed.map(mibPerSecond)
  const plain = seconds.plain.map(mibPerSecond)
  const ratio = median(checkpointed) / median(plain)
  const largestStep = Math.max(...ackedStepMaxBytes)
  const largestRefillMs = refillMs({ root: path.join(workDir, "objects") }, name, largestStep)
  const cpuPerCheckpointMs =
    (median(serverCpuMs.checkpointed) - median(serverCpuMs.plain)) / median(written)
  const loadAfter = os.loadavg()[0]!.toFixed(1)
  const takeoverRows = leases.flatMap((leaseMs): Array<[string, string]> => {
    const { gaps, told, detected } = byLease.get(leaseMs)!
    return [
      [`takeover gap, curl, lease ${leaseMs} ms (n=${gaps.length}) p50`, `${median(gaps)} ms`],
      [
        "takeover gap p99",
        `${percentile(gaps, 99)} ms (min ${Math.min(...gaps)}, max ${Math.max(...gaps)})`,
      ],
      ["  of which telling the standby p50", `${median(told)} ms`],
      [
        `  of which detection (the dead server's store lease lapsing, ${leaseMs} ms TTL) p50`,
        `${median(detected)} ms`,
      ],
      [
        "  after detection (rebuild, ARP, probe, refill, resume) p50",
        `${median(gaps.map((gap, i) => gap - detected[i]!))} ms`,
      ],
    ]
  })
  const rows: Array<[string, string]> = [
    ...takeoverRows,
    ["CRIU published (dump / restore)", "10-20 ms / 50-70 ms, with the network blocked meanwhile"],
    [
      `throughput, checkpointed (n=${checkpointed.length}) median`,
      `${median(checkpointed).toFixed(0)} MiB/s (${Math.min(...checkpointed).toFixed(0)}-${Math.max(...checkpointed).toFixed(0)})`,
    ],
    [
      `throughput, no checkpoints (n=${plain.length}) median`,
      `${median(plain).toFixed(0)} MiB/s (${Math.min(...plain).toFixed(0)}-${Math.max(...plain).toFixed(0)})`,
    ],
    ["ratio (target >= 0.8)", ratio.toFixed(2)],
    [
      "server CPU per transfer, checkpointed / no checkpoints, median",
      `${median(serverCpuMs.checkpointed).toFixed(0)} ms / ${median(serverCpuMs.plain).toFixed(0)} ms`,
    ],
    [
      "checkpoints written per transfer, median",
      `${median(written)} (${Math.min(...written)}-${Math.max(...written)})`,
    ],
    [
      "  server CPU per checkpoint (difference of the medians / checkpoints)",
      `${cpuPerCheckpointMs.toFixed(2)} ms`,
    ],
    [
      "  largest acknowledgement step between two (what a takeover refills), max",
      `${(largestStep / 1048576).toFixed(1)} MiB`,
    ],
    [
      "  a takeover's refill of that many bytes (read back, into the send queue)",
      `${largestRefillMs.toFixed(1)} ms`,
    ],
    [
      "first download of each server (warm-up, not in the above), checkpointed / none",
      `${mibPerSecond(coldSeconds.checkpointed).toFixed(0)} / ${mibPerSecond(coldSeconds.plain).toFixed(0)} MiB/s`,
    ],
    ["load average (1 min) before / after the throughput runs", `${loadBefore} / ${loadAfter}`],
  ]
  const width = Math.max(...rows.map(([label]) => label.length))
  for (const [label, value] of rows) console.log(`${label.padEnd(width)}  ${value}`)
  console.log(
    JSON.stringify({
      benchmark: "checkpoint/tcp-repair",
      ...Object.fromEntries(
        leases.map((leaseMs) => {
          const { gaps, told, detected } = byLease.get(leaseMs)!
          return [
            `lease${leaseMs}`,
            {
              takeoverGapMsP50: median(gaps),
              takeoverGapMsP99: percentile(gaps, 99),
              takeoverGapsMs: gaps,
              tellStandbyMsP50: median(told),
              detectionMsP50: median(detected),
              afterDetectionMsP50: median(gaps.map((gap, i) => gap - detected[i]!)),
            },
          ]
        }),
      ),
      throughputCheckpointedMiBps: median(checkpointed),
      throughputPlainMiBps: median(plain),
      throughputRatio: Number(ratio.toFixed(3)),
      serverCpuMsCheckpointed: median(serverCpuMs.checkpointed),
      serverCpuMsPlain: median(serverCpuMs.plain),
      checkpointsPerTransfer: median(written),
      serverCpuMsPerCheckpoint: Number(cpuPerCheckpointMs.toFixed(2)),
      ackedStepMaxBytes: largestStep,
      largestRefillMs: Number(largestRefillMs.toFixed(1)),
      loadAverage: [Number(loadBefore), Number(loadAfter)],
    }),
  )
} finally {
  sweepLeftovers()
  fs.rmSync(workDir, { recursive: true, force: true })
}
