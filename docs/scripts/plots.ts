/**
 * Turns the benchmarks' JSON (the last line `npm run bench` prints in a package, kept in
 * bench/<package>.json) into SVG bar charts in public/plots/, drawn here with no library and
 * no network, so the site shows the figures of the last recorded run.
 *
 *   node scripts/plots.ts                        redraw every chart (run by `npm run build`)
 *   npm run bench -w @understudy/port-election | node docs/scripts/plots.ts --record port-election
 *                                                keep a fresh run's JSON, then redraw
 */
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

type Figures = Readonly<Record<string, number | null>>

const palette = ["#3e63dd", "#e5484d", "#30a46c", "#f76b15", "#8e4ec6"]

const escapeXml = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

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
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12" role="img" aria-label="${escapeXml(chart.title)}">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="8" y="20" font-size="14" font-weight="bold">${escapeXml(chart.title)}</text>`,
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
    const y = top + plotHeight + 40 + s * 18
    out.push(
      `<rect x="${left}" y="${y - 10}" width="12" height="12" fill="${palette[s % palette.length]}"/>`,
      `<text x="${left + 18}" y="${y}">${escapeXml(label)}</text>`,
    )
  })
  out.push("</svg>")
  return `${out.join("\n")}\n`
}

const formatValue = (value: number) =>
  Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(2)

const numeric = (figures: Figures, key: string) => {
  const value = figures[key]
  return typeof value === "number" && Number.isFinite(value) ? value : undefined
}

/** The charts one package's figures give (none for a package without a chart here). */
export const charts = (name: string, figures: Figures): ReadonlyArray<Chart> => {
  const sizes = (prefix: string) =>
    Object.keys(figures)
      .flatMap((key) => (key.startsWith(prefix) ? [Number(key.slice(prefix.length))] : []))
      .filter(Number.isInteger)
      .sort((a, b) => a - b)
  switch (name) {
    case "port-election": {
      const groups = sizes("p50_ms_").map((size) => ({
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
      const variants = Object.keys(figures)
        .flatMap((key) =>
          key.startsWith("simFailoverMsP50_") ? [key.slice("simFailoverMsP50_".length)] : [],
        )
        .sort()
      return [
        {
          file: "staggered-election-failover.svg",
          title: "Server group failover in simulation: crash to accepted by all live servers",
          unit: "ms",
          groups: variants.map((variant) => ({
            label: variant,
            bars: [
              { label: "p50", value: numeric(figures, `simFailoverMsP50_${variant}`) ?? 0 },
              { label: "p99", value: numeric(figures, `simFailoverMsP99_${variant}`) ?? 0 },
            ],
          })),
        },
      ]
    }
    default:
      return []
  }
}

export const packagesWithCharts = ["port-election", "staggered-election", "transport"] as const

/** The last line of a bench's output that is a JSON object of figures. */
export const lastFigures = (output: string): Figures | undefined => {
  for (const line of output.trim().split("\n").reverse()) {
    if (!line.startsWith("{")) continue
    try {
      const parsed: unknown = JSON.parse(line)
      if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
        return parsed as Figures
      }
    } catch {}
  }
  return undefined
}

const docs = join(import.meta.dirname, "..")

const draw = () => {
  const directory = join(docs, "public", "plots")
  mkdirSync(directory, { recursive: true })
  for (const name of packagesWithCharts) {
    const path = join(docs, "bench", `${name}.json`)
    if (!existsSync(path)) continue
    // Recorded as one line; a formatter may spread it over several.
    const figures = JSON.parse(readFileSync(path, "utf8")) as Figures
    for (const chart of charts(name, figures))
      writeFileSync(join(directory, chart.file), svg(chart))
  }
}

if (import.meta.main) {
  const record = process.argv.indexOf("--record")
  if (record !== -1) {
    const name = process.argv[record + 1] ?? ""
    const figures = lastFigures(readFileSync(0, "utf8"))
    if (figures === undefined) {
      console.error(`plots: no JSON line of figures on standard input for ${name}`)
      process.exit(1)
    }
    writeFileSync(join(docs, "bench", `${name}.json`), `${JSON.stringify(figures, null, 2)}\n`)
  }
  draw()
}
