/** The scripts that generate the changelog page and the benchmark plots. */
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { parseChangeset, render } from "../scripts/changelog.ts"
import { charts, lastFigures, svg } from "../scripts/plots.ts"

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
    const [failover, lockfile] = charts("port-election", figures)
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

  it("takes the last JSON line of a bench's output", () => {
    expect(lastFigures('table\n{"a":1}\nmore\n{"b":2}\n')).toEqual({ b: 2 })
    expect(lastFigures("no figures\n[1]\n")).toBeUndefined()
  })
})
