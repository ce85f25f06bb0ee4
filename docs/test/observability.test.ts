/**
 * The observability page documents every metric the packages export, with its type and the
 * labels the code gives it, and names none that does not exist.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Metrics as CheckpointMetrics } from "@understudy/checkpoint"
import { Metrics as PoolMetrics } from "@understudy/heartbeat-pool"
import { Runner } from "@understudy/machine"
import { Cluster, Metrics as MultihomeMetrics } from "@understudy/multihome"
import { Metrics as ElectionMetrics } from "@understudy/port-election"
import { Metrics as StaggeredMetrics } from "@understudy/staggered-election"
import { Metrics as StoreMetrics } from "@understudy/store"
import { Metrics as TransportMetrics } from "@understudy/transport"
import { Metric } from "effect"
import { describe, expect, it } from "vitest"
import { labelColumns, labelsInSource, labelsOnPage } from "./metricLabels.ts"

const page = readFileSync(join(import.meta.dirname, "..", "observability.md"), "utf8")

/** The metrics a module exports. */
const metricsOf = (module: object) =>
  Object.values(module).filter((value) => Metric.isMetric(value)) as unknown as Array<{
    readonly id: string
    readonly type: string
  }>

const packagesWithMetrics = [
  "port-election",
  "heartbeat-pool",
  "staggered-election",
  "checkpoint",
  "multihome",
  "store",
  "machine",
  "transport",
]
const inCode = packagesWithMetrics.map((pkg) =>
  labelsInSource(join(import.meta.dirname, "..", "..", "packages", pkg, "src")),
)

/** Each label value the code writes as a string that the metric's row does not name. */
const valueMismatches = (text: string) => {
  const columns = labelColumns(text)
  return inCode.flatMap((labels) =>
    [...labels].flatMap(([id, code]) =>
      [...code].flatMap(([label, values]) =>
        [...values]
          .filter((value) => !(columns.get(id) ?? "").includes(`\`${value}\``))
          .map((value) => `${id} ${label}=${value}`),
      ),
    ),
  )
}

/** Each metric whose labels on `text` are not the labels its package's code records. */
const labelMismatches = (text: string) => {
  const onPage = labelsOnPage(text)
  return inCode.flatMap((labels) =>
    [...labels].flatMap(([id, code]) => {
      const documented = [...(onPage.get(id) ?? [])].sort()
      const recorded = [...code.keys()].sort()
      return documented.join() === recorded.join() ? [] : [{ id, code: recorded, page: documented }]
    }),
  )
}

describe("the observability page", () => {
  const allMetrics = [
    ...metricsOf(ElectionMetrics),
    ...metricsOf(PoolMetrics),
    ...metricsOf(StaggeredMetrics),
    ...metricsOf(CheckpointMetrics),
    ...metricsOf(Cluster),
    ...metricsOf(MultihomeMetrics),
    ...metricsOf(StoreMetrics),
    ...metricsOf(Runner),
    ...metricsOf(TransportMetrics),
  ]
  const exported = allMetrics.map((metric) => metric.id)

  it("documents every metric the packages export", () => {
    expect(exported.length).toBeGreaterThanOrEqual(20)
    const missing = exported.filter((id) => !page.includes(`| \`${id}\` |`))
    expect(missing).toEqual([])
  })

  it("gives each metric the type it has (counter, gauge or histogram)", () => {
    const documentedType = new Map(
      [...page.matchAll(/^\| `(understudy_\w+)` \| (\w+) \|/gm)].map((match) => [
        match[1]!,
        match[2]!,
      ]),
    )
    const wrong = allMetrics
      .map((metric) => ({ id: metric.id, type: metric.type.toLowerCase() }))
      .filter(({ id, type }) => documentedType.get(id) !== type)
    expect(wrong).toEqual([])
  })

  it("gives each metric the labels its package's code records it with", () => {
    expect(labelMismatches(page)).toEqual([])
  })

  it("names every label value the code writes as a string, in the metric's row", () => {
    expect(valueMismatches(page)).toEqual([])
  })

  it("the label check fails on a planted mismatch, on the page or in the code", () => {
    // A label renamed on the page, one dropped from it, two values renamed. Only what the
    // plants add is compared: a mismatch already on the page is the test above's to report.
    const added = <A>(check: (text: string) => Array<A>, text: string) => {
      const before = new Set(check(page).map((found) => JSON.stringify(found)))
      return check(text).filter((found) => !before.has(JSON.stringify(found)))
    }
    const planted = page
      .replace("| `side`: `client`, `server` |", "| `direction`: `client`, `server` |")
      .replace("| `role`: `leader`, `follower` |", "| |")
      .replace("`target`: `link`, `store`", "`target`: `link`, `disk`")
    expect(
      added(valueMismatches, planted.replace("`held`, `not-held`", "`held`, `lapsed`")),
    ).toEqual([
      "understudy_staggered_election_lease_reads_total lease=not-held",
      "understudy_multihome_replication_bytes_total target=store",
    ])
    expect(added(labelMismatches, planted)).toEqual([
      { id: "understudy_pool_failover_ms", code: ["role"], page: [] },
      { id: "understudy_transport_connections", code: ["side"], page: ["direction"] },
    ])
    // In the code: labels passed through a helper, from a spread and from a local object.
    const src = mkdtempSync(join(tmpdir(), "labels-"))
    try {
      writeFileSync(
        join(src, "Metrics.ts"),
        `import { Metric } from "effect"
export const hits = Metric.counter("understudy_test_hits_total")
export const misses = Metric.counter("understudy_test_misses_total")
const count = (metric: typeof hits, labels: Record<string, string>) =>
  Metric.update(Metric.withAttributes(metric, { server: "a", ...labels }), 1)
export const hit = count(hits, { reason: "x" })
const labels = { cache: "l1" }
export const miss = Metric.withAttributes(misses, labels)
`,
      )
      const found = labelsInSource(src)
      const hits = found.get("understudy_test_hits_total")!
      expect([...hits.keys()].sort()).toEqual(["reason", "server"])
      expect([...hits.get("reason")!]).toEqual(["x"])
      expect([...found.get("understudy_test_misses_total")!.get("cache")!]).toEqual(["l1"])
    } finally {
      rmSync(src, { recursive: true, force: true })
    }
  })

  it("names no metric that does not exist", () => {
    const documented = [...page.matchAll(/^\| `(understudy_\w+)` \|/gm)].map((match) => match[1])
    expect(documented.filter((id) => !exported.includes(id!))).toEqual([])
  })
})
