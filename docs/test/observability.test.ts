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
import { labelsInSource, labelsOnPage } from "./metricLabels.ts"

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

/** Each metric whose labels on `text` are not the labels its package's code records. */
const labelMismatches = (text: string) => {
  const onPage = labelsOnPage(text)
  return inCode.flatMap((labels) =>
    [...labels].flatMap(([id, code]) => {
      const documented = [...(onPage.get(id) ?? [])].sort()
      const recorded = [...code].sort()
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

  it("the label check fails on a planted mismatch, on the page or in the code", () => {
    // A label renamed on the page, and one dropped from it.
    const planted = page
      .replace("| `side`: `client`, `server` |", "| `direction`: `client`, `server` |")
      .replace("| `role`: `leader`, `follower` |", "| |")
    expect(labelMismatches(planted)).toEqual([
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
      expect([...found.get("understudy_test_hits_total")!].sort()).toEqual(["reason", "server"])
      expect([...found.get("understudy_test_misses_total")!]).toEqual(["cache"])
    } finally {
      rmSync(src, { recursive: true, force: true })
    }
  })

  it("names no metric that does not exist", () => {
    const documented = [...page.matchAll(/^\| `(understudy_\w+)` \|/gm)].map((match) => match[1])
    expect(documented.filter((id) => !exported.includes(id!))).toEqual([])
  })
})
