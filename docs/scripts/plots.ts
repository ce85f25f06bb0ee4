/**
 * Turns the benchmarks' JSON (the last line `npm run bench` prints in a package, kept in
 * bench/<package>.json) into SVG plots in public/plots/ — bar charts of the figures, and the
 * cumulative distribution of every latency a bench gave its samples of (its line's optional
 * `samples` field: series name -> every sample, in ms) — drawn here with no library and no
 * network, so the site shows the figures of the last recorded run.
 *
 *   node scripts/plots.ts                redraw every chart (run by `npm run build`)
 *   node scripts/plots.ts --bench [NAME...]
 *                                        run the benches the charts come from (or those
 *                                        named), keep their JSON, redraw: the docs' `bench`
 *                                        script, so `npm run bench` at the root does it too
 *   npm run bench -w @understudy/NAME | node docs/scripts/plots.ts --record NAME
 *                                        keep the JSON of a run made elsewhere, redraw
 */
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"

export interface Bar {
  readonly label: string
  readonly value: number
}
export interface Group {
  readonly label: string
  readonly bars: ReadonlyArray<Bar>
}
export interface Chart {
  readonly file: string
  readonly title: string
  readonly unit: string
  readonly groups: ReadonlyArray<Group>
}

/** A distribution: every sample of one series, drawn as its cumulative distribution. */
export interface Series {
  readonly label: string
  readonly samples: ReadonlyArray<number>
}
export interface Distribution {
  readonly file: string
  readonly title: string
  readonly unit: string
  readonly series: ReadonlyArray<Series>
}

/**
 * A bench's figures: named numbers, some nested in objects, and optionally `samples`: for
 * each series name, every sample measured (in ms unless the chart says otherwise), from
 * which the distribution plots are drawn.
 */
type Figures = Readonly<Record<string, unknown>>

const palette = ["#3e63dd", "#8da4ef", "#e5484d", "#f4a9aa", "#30a46c", "#8eceaa", "#f76b15"]

const escapeXml = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

/** The frame every chart is drawn in: a white canvas of its size with its title. */
const opening = (width: number, height: number, title: string) => [
  `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12" role="img" aria-label="${escapeXml(title)}">`,
  `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
  `<text x="8" y="20" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
]

/** One line of a legend: the series' colour, then its text. */
const legendEntry = (left: number, y: number, color: string | undefined, text: string) => [
  `<rect x="${left}" y="${y - 10}" width="12" height="12" fill="${color}"/>`,
  `<text x="${left + 18}" y="${y}">${escapeXml(text)}</text>`,
]

const closing = (out: ReadonlyArray<string>) => `${[...out, "</svg>"].join("\n")}\n`

/** A grouped bar chart; the same chart always gives the same bytes. */
export const svg = (chart: Chart): string => {
  const barWidth = 28
  const gap = 24
  const left = 64
  const top = 48
  const plotHeight = 220
  const series = [...new Set(chart.groups.flatMap((g) => g.bars.map((b) => b.label)))]
  const groupWidth = series.length * barWidth + gap
  const width = Math.max(
    360,
    left + chart.groups.length * groupWidth + 16,
    16 + chart.title.length * 8,
  )
  const height = top + plotHeight + 48 + series.length * 18
  const max = Math.max(1, ...chart.groups.flatMap((g) => g.bars.map((b) => b.value)))
  const scale = plotHeight / max
  const out = [
    ...opening(width, height, chart.title),
    `<line x1="${left}" y1="${top + plotHeight}" x2="${width - 8}" y2="${top + plotHeight}" stroke="#444"/>`,
    `<text x="8" y="${top - 10}" fill="#444">max ${escapeXml(`${formatValue(max)} ${chart.unit}`)}</text>`,
  ]
  chart.groups.forEach((group, g) => {
    const x0 = left + g * groupWidth + gap / 2
    group.bars.forEach((bar) => {
      const s = series.indexOf(bar.label)
      const h = Math.max(1, bar.value * scale)
      const x = x0 + s * barWidth
      const y = top + plotHeight - h
      out.push(
        `<rect class="bar" x="${x}" y="${y.toFixed(1)}" width="${barWidth - 4}" height="${h.toFixed(1)}" fill="${palette[s % palette.length]}"><title>${escapeXml(`${group.label}, ${bar.label}: ${formatValue(bar.value)} ${chart.unit}`)}</title></rect>`,
        `<text x="${x + (barWidth - 4) / 2}" y="${(y - 4).toFixed(1)}" text-anchor="middle" font-size="10">${escapeXml(formatValue(bar.value))}</text>`,
      )
    })
    out.push(
      `<text x="${x0 + (series.length * barWidth) / 2}" y="${top + plotHeight + 16}" text-anchor="middle">${escapeXml(group.label)}</text>`,
    )
  })
  series.forEach((label, s) => {
    out.push(
      ...legendEntry(left, top + plotHeight + 40 + s * 18, palette[s % palette.length], label),
    )
  })
  return closing(out)
}

/** A sample's position on an axis from `low` to `high`, linear or logarithmic. */
const axis = (low: number, high: number, log: boolean) => (value: number) =>
  log
    ? (Math.log10(Math.max(value, low)) - Math.log10(low)) / (Math.log10(high) - Math.log10(low))
    : (value - low) / (high - low)

/** Tick values: 1-2-5 steps on a logarithmic axis, about five round steps on a linear one. */
const ticks = (low: number, high: number, log: boolean): ReadonlyArray<number> => {
  if (log) {
    const out: Array<number> = []
    // 1-2-5 in each decade; only the powers of ten when more than three decades are shown.
    const steps = Math.log10(high / low) > 3 ? [1] : [1, 2, 5]
    for (let decade = 10 ** Math.floor(Math.log10(low)); decade <= high; decade *= 10)
      for (const m of steps) if (decade * m >= low && decade * m <= high) out.push(decade * m)
    return out
  }
  const raw = (high - low) / 5
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  const step = ([1, 2, 5, 10].find((m) => m * magnitude >= raw) ?? 10) * magnitude
  const out: Array<number> = []
  for (let value = Math.ceil(low / step) * step; value <= high + step / 1e6; value += step)
    out.push(Number(value.toPrecision(12)))
  return out
}

const quantile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!

/**
 * The cumulative distribution of each series: for a time on the x axis, the share of its
 * samples at or below it. The x axis is logarithmic when the samples span more than a
 * factor of 20. The same distribution always gives the same bytes.
 */
export const cdfSvg = (chart: Distribution): string => {
  const left = 56
  const top = 48
  const plotWidth = 480
  const plotHeight = 220
  const sorted = chart.series.map((s) => [...s.samples].sort((a, b) => a - b))
  const summaries = sorted.map(
    (samples, s) =>
      `${chart.series[s]!.label}: ${samples.length} samples, p50 ${formatMeasure(quantile(samples, 0.5))}, p99 ${formatMeasure(quantile(samples, 0.99))}, max ${formatMeasure(samples.at(-1)!)} ${chart.unit}`,
  )
  const width = Math.max(
    left + plotWidth + 32,
    16 + chart.title.length * 8,
    left + 24 + Math.max(...summaries.map((summary) => summary.length)) * 7,
  )
  const height = top + plotHeight + 56 + chart.series.length * 18
  const all = sorted.flat()
  const positive = all.filter((x) => x > 0)
  const high = Math.max(...all, 1e-9)
  const log = positive.length > 0 && high / Math.min(...positive) > 20
  // A logarithmic axis runs between 1-2-5 values around the samples.
  const round125 = (value: number, direction: "down" | "up") => {
    const decade = 10 ** Math.floor(Math.log10(value))
    const steps = direction === "down" ? [5, 2, 1] : [1, 2, 5, 10]
    return (
      (direction === "down"
        ? steps.find((m) => m * decade <= value)
        : steps.find((m) => m * decade >= value))! * decade
    )
  }
  const low = log ? round125(Math.min(...positive), "down") : 0
  const topOfAxis = log ? round125(high, "up") : high
  const position = axis(low, topOfAxis, log)
  const x = (value: number) => (left + position(value) * plotWidth).toFixed(1)
  const y = (share: number) => (top + (1 - share) * plotHeight).toFixed(1)
  const out = [
    ...opening(width, height, chart.title),
    `<text x="8" y="${top - 14}" fill="#444">share of samples at or below (cumulative)</text>`,
  ]
  for (const share of [0, 0.25, 0.5, 0.75, 1]) {
    out.push(
      `<line x1="${left}" y1="${y(share)}" x2="${left + plotWidth}" y2="${y(share)}" stroke="${share === 0 ? "#444" : "#ddd"}"/>`,
      `<text x="${left - 6}" y="${(Number(y(share)) + 4).toFixed(1)}" text-anchor="end" font-size="10">${share * 100}%</text>`,
    )
  }
  out.push(
    `<line x1="${left}" y1="${y(0.99)}" x2="${left + plotWidth}" y2="${y(0.99)}" stroke="#bbb" stroke-dasharray="4 3"/>`,
    `<text x="${left + plotWidth + 4}" y="${(Number(y(0.99)) + 8).toFixed(1)}" font-size="10">99%</text>`,
  )
  for (const tick of ticks(low === 0 ? 0 : low, topOfAxis, log)) {
    out.push(
      `<line x1="${x(tick)}" y1="${top}" x2="${x(tick)}" y2="${top + plotHeight}" stroke="#eee"/>`,
      `<text x="${x(tick)}" y="${top + plotHeight + 14}" text-anchor="middle" font-size="10">${escapeXml(formatMeasure(tick))}</text>`,
    )
  }
  out.push(
    `<text x="${left + plotWidth / 2}" y="${top + plotHeight + 30}" text-anchor="middle" fill="#444">${escapeXml(`${chart.unit}${log ? " (logarithmic)" : ""}`)}</text>`,
  )
  sorted.forEach((samples, s) => {
    const color = palette[s % palette.length]
    // A step at each sample: the share rises by 1/n there.
    const steps = [`M${x(samples[0]!)},${y(0)}`]
    samples.forEach((sample, i) => {
      steps.push(`H${x(sample)}`, `V${y((i + 1) / samples.length)}`)
    })
    const summary = summaries[s]!
    out.push(
      `<path class="cdf" d="${steps.join("")}" fill="none" stroke="${color}" stroke-width="2"><title>${escapeXml(summary)}</title></path>`,
    )
    out.push(...legendEntry(left, top + plotHeight + 52 + s * 18, color, summary))
  })
  return closing(out)
}

/** Draws a chart of either kind. */
export const render = (chart: Chart | Distribution): string =>
  "series" in chart ? cdfSvg(chart) : svg(chart)

/** A measured time: two significant digits below 10, whole numbers above. */
const formatMeasure = (value: number) =>
  (value >= 10 ? Math.round(value) : Number(value.toPrecision(2))).toLocaleString("en")

const formatValue = (value: number) =>
  Number(value.toFixed(Number.isInteger(value) ? 0 : 1)).toLocaleString("en")

/** The figure at `path` (dots step into nested objects), if it is a finite number. */
const numeric = (figures: Figures, path: string) => {
  const value = at(figures, path)
  return typeof value === "number" && Number.isFinite(value) ? value : undefined
}

const at = (figures: Figures, path: string): unknown =>
  path
    .split(".")
    .reduce<unknown>(
      (value, key) =>
        typeof value === "object" && value !== null
          ? (value as Record<string, unknown>)[key]
          : undefined,
      figures,
    )

/** The samples of a series: `samples.<name>`, or an array of numbers at `path`; none if absent. */
export const samplesOf = (figures: Figures, path: string): ReadonlyArray<number> => {
  const value = at(figures, path) ?? at(figures, `samples.${path}`)
  return Array.isArray(value)
    ? value.filter((x): x is number => typeof x === "number" && Number.isFinite(x))
    : []
}

/** The numbers `pattern`'s group finds in an object's keys (`lease600`: 600), ascending. */
const keyNumbers = (object: unknown, pattern: RegExp): Array<number> =>
  Object.keys(object ?? {})
    .flatMap((key) => {
      const match = pattern.exec(key)
      return match === null ? [] : [Number(match[1])]
    })
    .sort((a, b) => a - b)

/** The distribution of the series that have samples; none if no series has. */
const distribution = (
  file: string,
  title: string,
  unit: string,
  series: ReadonlyArray<Series>,
): ReadonlyArray<Distribution> => {
  const measured = series.filter((s) => s.samples.length > 0)
  return measured.length === 0 ? [] : [{ file, title, unit, series: measured }]
}

/** The charts one package's figures give (none for a package without a chart here). */
export const charts = (name: string, figures: Figures): ReadonlyArray<Chart | Distribution> => {
  switch (name) {
    case "port-election": {
      const sizes = keyNumbers(figures, /^p50_ms_(\d+)$/)
      const groups = sizes.map((size) => ({
        label: `${size} instances`,
        bars: [
          { label: "elected, p50", value: numeric(figures, `elected_p50_ms_${size}`) ?? 0 },
          { label: "all registered, p50", value: numeric(figures, `p50_ms_${size}`) ?? 0 },
          { label: "all registered, p99", value: numeric(figures, `p99_ms_${size}`) ?? 0 },
        ],
      }))
      const lockfile = numeric(figures, "lockfile_p50_ms")
      return [
        {
          file: "port-election-failover.svg",
          title: "Port election: SIGKILL of the supervisor to every survivor registered",
          unit: "ms",
          groups,
        },
        ...distribution(
          "port-election-failover-distribution.svg",
          "Port election: SIGKILL of the supervisor to every survivor registered, each failover",
          "ms",
          sizes.map((size) => ({
            label: `${size} instances`,
            samples: samplesOf(figures, `registered_ms_${size}`),
          })),
        ),
        ...(lockfile === undefined
          ? []
          : [
              {
                file: "port-election-vs-lockfile.svg",
                title: "Port election vs a lock-file election (8 instances, p50)",
                unit: "ms",
                groups: [
                  {
                    label: "time to the next holder",
                    bars: [
                      { label: "port election", value: numeric(figures, "p50_ms_8") ?? 0 },
                      { label: "proper-lockfile (defaults)", value: lockfile },
                    ],
                  },
                ],
              },
            ]),
      ]
    }
    case "transport":
      return [
        {
          file: "transport-throughput.svg",
          title: "Transport: 256 B messages per second over loopback TCP",
          unit: "msgs/s",
          groups: [
            {
              label: "same run, same machine",
              bars: [
                { label: "NodeTransport", value: numeric(figures, "msgs_per_s") ?? 0 },
                {
                  label: "hand-written node:net framing",
                  value: numeric(figures, "baseline_msgs_per_s") ?? 0,
                },
              ],
            },
          ],
        },
      ]
    case "staggered-election": {
      const sizes = keyNumbers(figures, /^simFailoverMsP99_staggered_n(\d+)$/)
      // The bench's comparison: a Raft-style randomised election with the same detection,
      // its time-out drawn over the same base delay, then over the floor delay.
      const variants = [
        ["staggered", "staggered election"],
        ["raft100", "randomised, 100 ms"],
        ["raft40", "randomised, 40 ms"],
      ] as const
      return [
        ...(sizes.length === 0
          ? []
          : [
              {
                file: "staggered-election-failover.svg",
                title: "Server group failover in simulation: crash to a new master followed by all",
                unit: "ms",
                groups: sizes.map((size) => ({
                  label: `${size} servers`,
                  bars: variants.flatMap(([key, label]) => [
                    {
                      label: `${label}, mean`,
                      value: numeric(figures, `simFailoverMsMean_${key}_n${size}`) ?? 0,
                    },
                    {
                      label: `${label}, p99`,
                      value: numeric(figures, `simFailoverMsP99_${key}_n${size}`) ?? 0,
                    },
                  ]),
                })),
              },
              {
                file: "staggered-election-contested.svg",
                title: "Server group elections in simulation: how often two or more servers stood",
                unit: "%",
                groups: sizes.map((size) => ({
                  label: `${size} servers`,
                  bars: variants.map(([key, label]) => ({
                    label,
                    value:
                      Math.round(
                        (numeric(figures, `simContestedRatio_${key}_n${size}`) ?? 0) * 1000,
                      ) / 10,
                  })),
                })),
              },
            ]),
        // Each failover at the largest group size, when the bench gave its samples.
        ...distribution(
          "staggered-election-failover-distribution.svg",
          `Server group failover in simulation, ${sizes.at(-1)} servers: each crash to a new master followed by all`,
          "ms",
          variants.map(([key, label]) => ({
            label,
            samples: samplesOf(figures, `simFailoverMs_${key}_n${sizes.at(-1)}`),
          })),
        ),
      ]
    }
    case "store":
      return [
        {
          file: "store-cas.svg",
          title: "Store: compare-and-set (a get, then a conditional put) per second",
          unit: "ops/s",
          groups: [
            {
              label: "etcd, 16 workers",
              bars: [
                { label: "EtcdStore", value: numeric(figures, "etcd_cas_per_s") ?? 0 },
                {
                  label: "the etcd3 client by hand",
                  value: numeric(figures, "raw_etcd_cas_per_s") ?? 0,
                },
              ],
            },
            {
              label: "etcd, one at a time",
              bars: [
                { label: "EtcdStore", value: numeric(figures, "etcd_cas_sequential_per_s") ?? 0 },
                {
                  label: "the etcd3 client by hand",
                  value: numeric(figures, "raw_etcd_cas_sequential_per_s") ?? 0,
                },
              ],
            },
            {
              label: "served, 16 workers",
              bars: [
                { label: "RemoteStore", value: numeric(figures, "remote_cas_per_s") ?? 0 },
                {
                  label: "MemoryStore in process",
                  value: numeric(figures, "memory_cas_per_s") ?? 0,
                },
              ],
            },
            {
              label: "served, one at a time",
              bars: [
                {
                  label: "RemoteStore",
                  value: numeric(figures, "remote_cas_sequential_per_s") ?? 0,
                },
                {
                  label: "MemoryStore in process",
                  value: numeric(figures, "memory_cas_sequential_per_s") ?? 0,
                },
              ],
            },
          ],
        },
        ...distribution(
          "store-watch-distribution.svg",
          "Store: a put to its change reaching a watch, each put",
          "ms",
          [
            { label: "EtcdStore", samples: samplesOf(figures, "etcd_watch_ms") },
            { label: "the etcd3 client by hand", samples: samplesOf(figures, "raw_watch_ms") },
            { label: "RemoteStore", samples: samplesOf(figures, "remote_watch_ms") },
            { label: "MemoryStore in process", samples: samplesOf(figures, "memory_watch_ms") },
          ],
        ),
      ]
    case "heartbeat-pool": {
      const intervals = (key: string) => numeric(figures, `${key}.median`) ?? 0
      return [
        {
          file: "heartbeat-pool-reattach.svg",
          title: `Heartbeat pool: SIGKILL of the leader to its clients re-attached (${numeric(figures, "realClients") ?? 100} clients, median of the runs)`,
          unit: "heartbeat intervals",
          groups: ["P50", "P99"].map((p) => ({
            label: p.toLowerCase(),
            bars: [
              { label: "pool client", value: intervals(`realReattach${p}Intervals`) },
              {
                label: "baseline: a TTL lease per client on the embedded store, re-acquired",
                value: intervals(`realBaseline${p}Intervals`),
              },
            ],
          })),
        },
        {
          file: "heartbeat-pool-cpu.svg",
          title: "Heartbeat pool: leader CPU per 1,000 client heartbeats",
          unit: "ms",
          groups: [
            {
              label: "same run, same machine",
              bars: [
                {
                  label: "the pool's leader",
                  value: numeric(figures, "leaderCpuMsPer1000Heartbeats") ?? 0,
                },
                {
                  label: "baseline: a store lease per client, kept alive",
                  value: numeric(figures, "baselineStoreCpuMsPer1000KeepAlives") ?? 0,
                },
              ],
            },
          ],
        },
        ...distribution(
          "heartbeat-pool-reattach-sim-distribution.svg",
          "Heartbeat pool in simulation, 1,000 clients: the leader's crash to a client re-attached",
          "ms",
          [
            {
              label: "each client of the crashed leader",
              samples: samplesOf(figures, "reattachSimMs"),
            },
          ],
        ),
        ...distribution(
          "heartbeat-pool-reattach-distribution.svg",
          "Heartbeat pool: SIGKILL of the leader to a client re-attached, each client",
          "heartbeat intervals",
          [
            { label: "pool client", samples: samplesOf(figures, "realReattachIntervals") },
            {
              label: "baseline: a TTL lease per client, re-acquired",
              samples: samplesOf(figures, "realBaselineReattachIntervals"),
            },
          ],
        ),
      ]
    }
    case "checkpoint": {
      // The longest lease first.
      const leases = keyNumbers(figures, /^lease(\d+)$/).reverse()
      return [
        {
          file: "checkpoint-throughput.svg",
          title:
            "Checkpoint: an object's transfer with its checkpoints written (median of the runs)",
          unit: "MiB/s",
          groups: [
            {
              label: "session backend",
              bars: [
                {
                  label: "checkpointed every 4 MiB",
                  value: numeric(figures, "checkpointedMiBps") ?? 0,
                },
                {
                  label: "baseline: without checkpoints",
                  value: numeric(figures, "baselineMiBps") ?? 0,
                },
                {
                  label: "plain node:net streaming",
                  value: numeric(figures, "plainTcpMiBps") ?? 0,
                },
              ],
            },
            ...(numeric(figures, "throughputCheckpointedMiBps") === undefined
              ? []
              : [
                  {
                    label: "TCP repair backend",
                    bars: [
                      {
                        label: "checkpointed every 4 MiB",
                        value: numeric(figures, "throughputCheckpointedMiBps") ?? 0,
                      },
                      {
                        label: "baseline: without checkpoints",
                        value: numeric(figures, "throughputPlainMiBps") ?? 0,
                      },
                    ],
                  },
                ]),
          ],
        },
        {
          file: "checkpoint-takeover.svg",
          title: "Checkpoint: the gap a client sees when its server is taken over",
          unit: "ms",
          groups: [
            {
              label: "SIGKILL to the first resumed byte",
              bars: [
                { label: "p50", value: numeric(figures, "sigkillGapP50Ms") ?? 0 },
                { label: "p99", value: numeric(figures, "sigkillGapP99Ms") ?? 0 },
              ],
            },
            {
              label: "of which detection",
              bars: [
                { label: "p50", value: numeric(figures, "sigkillDetectionP50Ms") ?? 0 },
                { label: "p99", value: numeric(figures, "sigkillDetectionP99Ms") ?? 0 },
              ],
            },
            {
              label: "after detection",
              bars: [
                { label: "p50", value: numeric(figures, "sigkillAfterDetectionP50Ms") ?? 0 },
                { label: "p99", value: numeric(figures, "sigkillAfterDetectionP99Ms") ?? 0 },
              ],
            },
          ],
        },
        ...distribution(
          "checkpoint-takeover-distribution.svg",
          "Checkpoint: SIGKILL to the first resumed byte, each takeover",
          "ms",
          [
            {
              label: "session, SIGKILL of its server",
              samples: samplesOf(figures, "sigkillGapMs"),
            },
            {
              label: "two-way session, SIGKILL of its server",
              samples: samplesOf(figures, "duplexSigkillGapMs"),
            },
            ...leases.map((lease) => ({
              label: `TCP repair, curl client, store lease ${lease} ms`,
              samples: samplesOf(figures, `lease${lease}.takeoverGapsMs`),
            })),
          ],
        ),
      ]
    }
    case "multihome": {
      const lengths = keyNumbers(at(figures, "figures"), /^tsctpMegabytesPerSecond(\d+)$/)
      const scenarios = [
        ["tsctp", "usrsctp's tsctp receiving (baseline)"],
        ["ours", "a multihome endpoint receiving"],
        ["everyUpdate", "a node, every update replicated"],
      ] as const
      const runs = (
        rows: string,
        match: (row: Record<string, unknown>) => boolean,
        field: string,
      ) => {
        const row = (at(figures, rows) as ReadonlyArray<Record<string, unknown>> | undefined)?.find(
          match,
        )
        return Array.isArray(row?.runs)
          ? (row.runs as ReadonlyArray<Record<string, unknown>>).flatMap((run) =>
              typeof run[field] === "number" ? [run[field] as number] : [],
            )
          : []
      }
      const echoGaps = [
        {
          label: "the standby moves the peer (ASCONF)",
          samples: runs("echoGap", (row) => row.failover === "asconf", "longestGapMs"),
        },
        {
          label: "baseline: the peer moves when its timers give up",
          samples: runs("echoGap", (row) => row.failover === "none", "longestGapMs"),
        },
      ]
      return [
        ...(lengths.length === 0
          ? []
          : [
              {
                file: "multihome-throughput.svg",
                title: "Multihome: an SCTP stream from usrsctp's tsctp over loopback",
                unit: "MB/s",
                groups: lengths.map((length) => ({
                  label: `${length}-byte messages`,
                  // A scenario that failed or did not run has no bar.
                  bars: scenarios.flatMap(([key, label]) => {
                    const value = numeric(figures, `figures.${key}MegabytesPerSecond${length}`)
                    return value === undefined ? [] : [{ label, value }]
                  }),
                })),
              },
            ]),
        ...distribution(
          "multihome-failover-distribution.svg",
          "Multihome: SIGKILL of the serving node to the standby acknowledging the peer's stream",
          "ms",
          [
            {
              label: "peer with usrsctp's default timers",
              samples: runs("failover", (row) => row.timers === "default", "firstAckMs"),
            },
            {
              label: "peer with fast timers",
              samples: runs("failover", (row) => row.timers === "fast", "firstAckMs"),
            },
          ],
        ),
        // Drawn only with its baseline: the same stream when the peer moves by itself.
        ...(echoGaps.every((series) => series.samples.length > 0)
          ? distribution(
              "multihome-echo-gap-distribution.svg",
              "Multihome: the longest pause of an echo stream across a SIGKILL of the serving node",
              "ms",
              echoGaps,
            )
          : []),
      ]
    }
    default:
      return []
  }
}

export const packagesWithCharts = [
  "port-election",
  "staggered-election",
  "transport",
  "store",
  "heartbeat-pool",
  "checkpoint",
  "multihome",
] as const

/**
 * The figures of a bench's output: its last line that is a JSON object. A bench that runs
 * several scripts, each naming its `benchmark` in its line, gives the lines of all of them,
 * merged in order.
 */
export const figuresOf = (output: string): Figures | undefined => {
  const lines: Array<Figures> = []
  for (const line of output.trim().split("\n")) {
    if (!line.startsWith("{")) continue
    try {
      const parsed: unknown = JSON.parse(line)
      if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
        lines.push(parsed as Figures)
      }
    } catch {}
  }
  const last = lines.at(-1)
  if (last === undefined || typeof last.benchmark !== "string") return last
  return Object.assign({}, ...lines.filter((line) => typeof line.benchmark === "string"))
}

const docs = join(import.meta.dirname, "..")

/** Figures as JSON, two-space indented, each array of numbers on one line. */
export const formatFigures = (figures: Figures) =>
  `${JSON.stringify(figures, null, 2).replace(/\[[-\d.e+,\s]*\]/g, (array) =>
    array.replace(/\s+/g, "").replace(/,/g, ", "),
  )}\n`

/** Keeps the figures of a bench's output in `directory`/<name>.json; false if it has none. */
export const record = (name: string, output: string, directory = join(docs, "bench")) => {
  const figures = figuresOf(output)
  if (figures === undefined) return false
  mkdirSync(directory, { recursive: true })
  writeFileSync(join(directory, `${name}.json`), formatFigures(figures))
  return true
}

/** Redraws every chart from the recorded figures in `from` into `to`; the files written. */
export const draw = (from = join(docs, "bench"), to = join(docs, "public", "plots")) => {
  mkdirSync(to, { recursive: true })
  const written: Array<string> = []
  for (const name of packagesWithCharts) {
    const path = join(from, `${name}.json`)
    if (!existsSync(path)) continue
    const figures = JSON.parse(readFileSync(path, "utf8")) as Figures
    for (const chart of charts(name, figures)) {
      writeFileSync(join(to, chart.file), render(chart))
      written.push(chart.file)
    }
  }
  return written
}

/**
 * Runs a package's benchmark (`npm run bench -w @understudy/<name>`), its output shown as it
 * comes, and records its figures. Rejects if the bench fails or prints no figures.
 */
export const runBench = (
  name: string,
  command: ReadonlyArray<string>,
  directory = join(docs, "bench"),
) =>
  new Promise<void>((resolve, reject) => {
    const child = spawn(command[0]!, command.slice(1), {
      cwd: join(docs, ".."),
      stdio: ["ignore", "pipe", "inherit"],
    })
    let output = ""
    child.stdout.setEncoding("utf8")
    child.stdout.on("data", (chunk: string) => {
      output += chunk
      process.stdout.write(chunk)
    })
    child.once("error", reject)
    child.once("close", (code) => {
      if (code !== 0) reject(new Error(`plots: the ${name} bench exited with ${code}`))
      else if (!record(name, output, directory))
        reject(new Error(`plots: the ${name} bench printed no figures`))
      else resolve()
    })
  })

if (import.meta.main) {
  const args = process.argv.slice(2)
  if (args[0] === "--record") {
    // A bench run elsewhere: `npm run bench -w @understudy/NAME | node docs/scripts/plots.ts --record NAME`
    const name = args[1] ?? ""
    if (!record(name, readFileSync(0, "utf8"))) {
      console.error(`plots: no JSON line of figures on standard input for ${name}`)
      process.exit(1)
    }
  } else if (args[0] === "--bench") {
    // `npm run bench -w @understudy/docs`, and `npm run bench` at the root: run the benches
    // the plots are drawn from (or those named), keep their figures, redraw. A bench that
    // fails keeps its last recorded figures (and so its plots); the others still run.
    const names = args.length > 1 ? args.slice(1) : packagesWithCharts
    const failed: Array<string> = []
    for (const name of names) {
      try {
        await runBench(name, ["npm", "run", "bench", "-w", `@understudy/${name}`])
      } catch (error) {
        console.error(error instanceof Error ? error.message : error)
        failed.push(name)
      }
    }
    for (const file of draw()) console.log(`plots: public/plots/${file}`)
    if (failed.length > 0) {
      console.error(`plots: kept the last figures of ${failed.join(", ")}`)
      process.exit(1)
    }
    process.exit(0)
  }
  for (const file of draw()) console.log(`plots: public/plots/${file}`)
}
