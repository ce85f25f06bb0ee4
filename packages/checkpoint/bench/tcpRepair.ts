/**
 * Benchmark of the `tcp-repair` backend (root only; `node bench/tcpRepair.ts`):
 * - takeover gap for an unmodified curl: from host A's death (link down, SIGKILL) to the
 *   first byte B sends, B being a loaded standby told at A's death; detection (B claims the
 *   bundle once A's lease in the shared checkpoint store lapses) is reported apart, for the
 *   default 600 ms lease and a 300 ms one, alternating in the same run;
 * - throughput of the checkpointed object server (a checkpoint every 4 MiB read, written
 *   to the shared store host) against the same server without checkpoints, same object,
 *   same lab, alternating runs.
 * Prints a table, then one JSON line. UNDERSTUDY_BENCH_TAKEOVERS (default 5 per lease) and
 * UNDERSTUDY_BENCH_THROUGHPUT_RUNS (default 3) set the counts.
 */
import { randomInt } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { NetNs } from "@understudy/testkit"
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
const throughputRuns = Number(process.env.UNDERSTUDY_BENCH_THROUGHPUT_RUNS ?? 3)
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
  const seconds = { checkpointed: [] as Array<number>, plain: [] as Array<number> }
  for (let i = 0; i < throughputRuns; i++) {
    for (const mode of ["checkpointed", "plain"] as const) {
      const { lab, storeAddress, node } = await storeLab(["a"])
      try {
        const service = lab.host("a").address
        const a = watch(
          lab.spawn("a", [
            ...node,
            "serve",
            "A",
            service,
            "8080",
            path.join(workDir, "objects"),
            storeAddress,
            String(checkpointEveryBytes),
            mode === "plain" ? "plain" : "checkpointed",
          ]),
        )
        await a.line("ready", 20_000)
        const started = performance.now()
        lab.exec("client", [
          "curl",
          "-sS",
          "--fail",
          "-o",
          "/dev/null",
          `http://${service}:8080/${name}`,
        ])
        seconds[mode].push((performance.now() - started) / 1000)
      } finally {
        lab.close()
      }
    }
  }
  const mibPerSecond = (s: number) => throughputObjectBytes / 1048576 / s
  const checkpointed = seconds.checkpointed.map(mibPerSecond)
  const plain = seconds.plain.map(mibPerSecond)
  const ratio = median(checkpointed) / median(plain)
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
    }),
  )
} finally {
  sweepLeftovers()
  fs.rmSync(workDir, { recursive: true, force: true })
}
