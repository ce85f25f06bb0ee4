/** The scripts that generate the changelog page, the benchmark plots and the diagrams. */
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { parseChangeset, render } from "../scripts/changelog.ts"
import {
  digest,
  names,
  outputDir,
  participants,
  sourceDir,
  stamp,
  stampedDigest,
} from "../scripts/diagrams.ts"
import {
  type Chart,
  cdfSvg,
  charts,
  figuresOf,
  formatFigures,
  samplesOf,
  svg,
} from "../scripts/plots.ts"

describe("changelog", () => {
  it("reads a changeset's packages, bumps and summary", () => {
    const change = parseChangeset(
      "---\n\"@understudy/store\": minor\n'@understudy/transport': patch\n---\n\nWatches resume.\n",
    )
    expect(change).toEqual({
      packages: [
        { name: "@understudy/store", bump: "minor" },
        { name: "@understudy/transport", bump: "patch" },
      ],
      summary: "Watches resume.",
    })
    expect(parseChangeset("no front matter")).toBeUndefined()
  })

  it("has a section for each package with released notes", () => {
    const page = render(join(import.meta.dirname, "..", ".."))
    expect(page).toContain("## @understudy/port-election")
    expect(page).toContain("### 0.1.0")
    expect(page).toContain("## Not yet released")
  })
})

describe("plots", () => {
  const figures = {
    p50_ms_8: 59,
    p99_ms_8: 176,
    elected_p50_ms_8: 45,
    p50_ms_32: 253,
    p99_ms_32: 520,
    elected_p50_ms_32: 122,
    lockfile_p50_ms: 10862,
  }

  it("draws one bar per figure, the same bytes each time", () => {
    const [failover, lockfile] = charts("port-election", figures) as ReadonlyArray<Chart>
    expect(failover!.groups.map((group) => group.label)).toEqual(["8 instances", "32 instances"])
    const drawn = svg(failover!)
    expect(drawn).toBe(svg(failover!))
    expect(drawn.match(/class="bar"/g)).toHaveLength(6)
    expect(drawn).toContain("520")
    expect(lockfile!.groups[0]!.bars.map((bar) => bar.value)).toEqual([59, 10862])
  })

  it("escapes text and ignores packages it has no chart for", () => {
    const drawn = svg({ file: "x.svg", title: "a < b & c", unit: "ms", groups: [] })
    expect(drawn).toContain("a &lt; b &amp; c")
    expect(charts("unknown", figures)).toEqual([])
  })

  it("takes the last JSON line of a bench's output, or every line of a bench naming its scripts", () => {
    expect(figuresOf('table\n{"a":1}\nmore\n{"b":2}\n')).toEqual({ b: 2 })
    expect(figuresOf("no figures\n[1]\n")).toBeUndefined()
    const two = '{"benchmark":"x/one","a":1}\ntable\n{"benchmark":"x/two","b":2}\n'
    expect(figuresOf(`{"stray":0}\n${two}`)).toEqual({ benchmark: "x/two", a: 1, b: 2 })
  })

  it("keeps each array of samples on one line of the recorded JSON", () => {
    const figures = { p50: 1.5, samples: { a_ms: [3, 1.25, 2] }, nested: { median: 2 } }
    const text = formatFigures(figures)
    expect(text).toContain('"a_ms": [3, 1.25, 2]')
    expect(JSON.parse(text)).toEqual(figures)
    expect(samplesOf(figures, "a_ms")).toEqual([3, 1.25, 2])
    expect(samplesOf({ lease600: { gapsMs: [4, "x", 5] } }, "lease600.gapsMs")).toEqual([4, 5])
    expect(samplesOf(figures, "missing")).toEqual([])
  })

  it("draws a distribution only from samples, each series a cumulative step line", () => {
    expect(charts("port-election", figures)).toHaveLength(2)
    const withSamples = {
      ...figures,
      samples: { registered_ms_8: [50, 70, 60, 400], registered_ms_32: [250, 300] },
    }
    const all = charts("port-election", withSamples)
    const distribution = all.find(
      (chart) => chart.file === "port-election-failover-distribution.svg",
    )
    expect(distribution).toBeDefined()
    const drawn = cdfSvg(distribution as Parameters<typeof cdfSvg>[0])
    expect(drawn).toBe(cdfSvg(distribution as Parameters<typeof cdfSvg>[0]))
    expect(drawn.match(/class="cdf"/g)).toHaveLength(2)
    // Sorted samples; nearest-rank percentiles, as the benches compute them.
    expect(drawn).toContain("8 instances: 4 samples, p50 60, p99 400, max 400 ms")
    expect(drawn).toContain("32 instances: 2 samples, p50 250, p99 300, max 300 ms")
    // Each of the 4 samples of a series is one step up, to 100%.
    const path = /<path class="cdf" d="([^"]+)"/.exec(drawn)![1]!
    expect(path.match(/V/g)).toHaveLength(4)
    // A spread beyond a factor of 20 is drawn on a logarithmic axis.
    expect(drawn).not.toContain("logarithmic")
    const wide = cdfSvg({
      file: "w.svg",
      title: "wide",
      unit: "ms",
      series: [{ label: "a", samples: [0.5, 1, 30] }],
    })
    expect(wide).toContain("ms (logarithmic)")
  })
})

describe("diagrams", () => {
  it("reads a sequence diagram's participants, and the digest a picture was drawn from", () => {
    expect(
      participants("sequenceDiagram\n  participant A as Server A\n  actor C\n  A->>C: hi\n"),
    ).toEqual(["Server A", "C"])
    const source = "sequenceDiagram\n  A->>B: hi\n"
    expect(stampedDigest(`${stamp("x", source)}\n<svg/>`)).toBe(digest(source))
    expect(stampedDigest("<svg/>")).toBeUndefined()
  })

  it("every picture is current with its source: drawn from it, each participant shown, no syntax error", () => {
    expect(names().length).toBeGreaterThanOrEqual(5)
    for (const name of names()) {
      const source = readFileSync(join(sourceDir, `${name}.mmd`), "utf8")
      const file = join(outputDir, `${name}.svg`)
      // After editing a .mmd: npm run diagrams -w @understudy/docs
      expect({ name, drawn: existsSync(file) }).toEqual({ name, drawn: true })
      const svg = readFileSync(file, "utf8")
      expect({ name, digest: stampedDigest(svg) }).toEqual({ name, digest: digest(source) })
      expect(svg).toMatch(/<svg [^>]*aria-roledescription="sequence"/)
      expect(svg).not.toContain("Syntax error")
      expect(participants(source).length).toBeGreaterThanOrEqual(3)
      for (const label of participants(source)) expect(svg).toContain(`>${label}<`)
    }
  })

  it("no picture without a source, and every picture is shown on a page", () => {
    const pictures = readdirSync(outputDir).filter((file) => file.endsWith(".svg"))
    expect(pictures.sort()).toEqual(names().map((name) => `${name}.svg`))
    const pages = readdirSync(join(import.meta.dirname, ".."))
      .filter((file) => file.endsWith(".md"))
      .map((file) => readFileSync(join(import.meta.dirname, "..", file), "utf8"))
      .join("\n")
    for (const name of names()) expect(pages).toContain(`(/diagrams/${name}.svg)`)
  })
})
