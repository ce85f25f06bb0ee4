/**
 * The observability page documents every metric the packages export, and names none that
 * does not exist.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Metrics as CheckpointMetrics } from "@understudy/checkpoint"
import { Metrics as PoolMetrics } from "@understudy/heartbeat-pool"
import { Runner } from "@understudy/machine"
import { Cluster, Metrics as MultihomeMetrics } from "@understudy/multihome"
import { Metrics as ElectionMetrics } from "@understudy/port-election"
import { Metrics as StaggeredMetrics } from "@understudy/staggered-election"
import { Metrics as StoreMetrics } from "@understudy/store"
import { Metric } from "effect"
import { describe, expect, it } from "vitest"

const page = readFileSync(join(import.meta.dirname, "..", "observability.md"), "utf8")

/** The ids of the metrics a module exports. */
const metricIds = (module: object) =>
  Object.values(module)
    .filter((value) => Metric.isMetric(value))
    .map((metric) => (metric as unknown as { readonly id: string }).id)

describe("the observability page", () => {
  const exported = [
    ...metricIds(ElectionMetrics),
    ...metricIds(PoolMetrics),
    ...metricIds(StaggeredMetrics),
    ...metricIds(CheckpointMetrics),
    ...metricIds(Cluster),
    ...metricIds(MultihomeMetrics),
    ...metricIds(StoreMetrics),
    ...metricIds(Runner),
  ]

  it("documents every metric the packages export", () => {
    expect(exported.length).toBeGreaterThanOrEqual(20)
    const missing = exported.filter((id) => !page.includes(`| \`${id}\` |`))
    expect(missing).toEqual([])
  })

  it("names no metric that does not exist", () => {
    const documented = [...page.matchAll(/^\| `(understudy_\w+)` \|/gm)].map((match) => match[1])
    expect(documented.filter((id) => !exported.includes(id!))).toEqual([])
  })
})
