/**
 * The observability page documents every metric the packages export, with its type, and names
 * none that does not exist.
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

/** The metrics a module exports. */
const metricsOf = (module: object) =>
  Object.values(module).filter((value) => Metric.isMetric(value)) as unknown as Array<{
    readonly id: string
    readonly type: string
  }>

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

  it("names no metric that does not exist", () => {
    const documented = [...page.matchAll(/^\| `(understudy_\w+)` \|/gm)].map((match) => match[1])
    expect(documented.filter((id) => !exported.includes(id!))).toEqual([])
  })
})
