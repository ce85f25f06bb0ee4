/**
 * Turns the benchmarks' JSON (the last line `npm run bench` prints in a package, kept in
 * bench/<package>.json) into SVG bar charts in public/plots/, drawn here with no library and
 * no network, so the site shows the figures of the last recorded run.
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

type Figures = Readonly<Record<string, number | null>>

const palette = ["#3e63dd", "#8da4ef", "#e5484d", "#f4a9aa", "#30a46c", "#8eceaa", "#f76b15"]

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
  Number(value.toFixed(Number.isInteger(value) ? 0 : 1)).toLocaleString("en")

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
      const sizes = Object.keys(figures)
        .flatMap((key) => {
          const match = /^simFailoverMsP99_staggered_n(\d+)$/.exec(key)
          return match === null ? [] : [Number(match[1])]
        })
        .sort((a, b) => a - b)
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

/** Keeps the figures of a bench's output in `directory`/<name>.json; false if it has none. */
export const record = (name: string, output: string, directory = join(docs, "bench")) => {
  const figures = lastFigures(output)
  if (figures === undefined) return false
  mkdirSync(directory, { recursive: true })
  writeFileSync(join(directory, `${name}.json`), `${JSON.stringify(figures, null, 2)}\n`)
  return true
}

/** Redraws every chart from the recorded figures in `from` into `to`; the files written. */
export const draw = (from = join(docs, "bench"), to = join(docs, "public", "plots")) => {
  mkdirSync(to, { recursive: true })
  const written: Array<string> = []
  for (const name of packagesWithCharts) {
    const path = join(from, `${name}.json`)
    if (!existsSync(path)) continue
    // Recorded as one line; a formatter may spread it over several.
    const figures = JSON.parse(readFileSync(path, "utf8")) as Figures
    for (const chart of charts(name, figures)) {
      writeFileSync(join(to, chart.file), svg(chart))
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
    // the plots are drawn from (or those named), keep their figures, redraw.
    const names = args.length > 1 ? args.slice(1) : packagesWithCharts
    for (const name of names) {
      try {
        await runBench(name, ["npm", "run", "bench", "-w", `@understudy/${name}`])
      } catch (error) {
        // Its last recorded figures stay, and so do their plots.
        console.error(error instanceof Error ? error.message : error)
        process.exit(1)
      }
    }
  }
  for (const file of draw()) console.log(`plots: public/plots/${file}`)
}
