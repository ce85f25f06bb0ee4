/**
 * An OpenTelemetry collector for tests: an HTTP server on loopback that answers every
 * OTLP/HTTP (JSON) export with 200 and keeps the trace and metric exports' bodies, so a test
 * can pass a program `--otlp URL` and look for its spans and its metrics' data points.
 *
 * @since 0.1.0
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"

/**
 * One data point of an exported metric, as `effect/observability`'s OTLP exporter sends it
 * (a sum, a gauge, or a histogram: its count and sum).
 *
 * @since 0.1.0
 * @category models
 */
export interface MetricPoint {
  readonly name: string
  readonly kind: "sum" | "gauge" | "histogram" | "exponentialHistogram" | "summary"
  /** The point's attributes, values as sent (strings, numbers, booleans). */
  readonly attributes: Readonly<Record<string, unknown>>
  /** A sum's or gauge's value; a histogram's (or summary's) count. */
  readonly value: number
  /** A histogram's (or summary's) sum of the values it counted. */
  readonly sum?: number
}

/** @since 0.1.0 @category models */
export interface Collector {
  /** The base URL to export to (`--otlp`). */
  readonly url: string
  /** Every `/v1/traces` body received so far, joined. */
  readonly traces: () => string
  /**
   * Every data point of every `/v1/metrics` export received so far, in the order they came.
   * Throws, naming the body, on one that is not an OTLP JSON metrics export.
   */
  readonly metrics: () => ReadonlyArray<MetricPoint>
  /**
   * The latest data point of metric `name` whose attributes include `attributes` (each
   * export carries every metric's current value), or `undefined` if none came.
   */
  readonly latest: (
    name: string,
    attributes?: Readonly<Record<string, unknown>>,
  ) => MetricPoint | undefined
  readonly close: () => Promise<void>
}

type Json = Record<string, unknown>

const isObject = (value: unknown): value is Json =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const arrayOf = (value: unknown, what: string): ReadonlyArray<unknown> => {
  if (value === undefined) return []
  if (!Array.isArray(value)) throw new Error(`${what} is not an array`)
  return value
}

/** An OTLP `AnyValue` as a plain value (int64 values arrive as strings or numbers). */
const anyValue = (value: unknown): unknown => {
  if (!isObject(value)) return undefined
  if ("stringValue" in value) return value.stringValue
  if ("boolValue" in value) return value.boolValue
  if ("doubleValue" in value) return Number(value.doubleValue)
  if ("intValue" in value) return Number(value.intValue)
  return undefined
}

const numberOf = (value: unknown, what: string): number => {
  const number = typeof value === "string" ? Number(value) : value
  if (typeof number !== "number" || Number.isNaN(number)) throw new Error(`${what} is not a number`)
  return number
}

const kinds = ["sum", "gauge", "histogram", "exponentialHistogram", "summary"] as const

/**
 * The data points of one `/v1/metrics` body (OTLP JSON: resourceMetrics → scopeMetrics →
 * metrics, each with one kind of data points). Throws a plain `Error` saying what is wrong.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeMetrics = (body: string): ReadonlyArray<MetricPoint> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch (error) {
    throw new Error(`not JSON: ${error instanceof Error ? error.message : String(error)}`)
  }
  if (!isObject(parsed)) throw new Error("not an object")
  const points: Array<MetricPoint> = []
  for (const resource of arrayOf(parsed.resourceMetrics, "resourceMetrics")) {
    if (!isObject(resource)) throw new Error("a resourceMetrics entry is not an object")
    for (const scope of arrayOf(resource.scopeMetrics, "scopeMetrics")) {
      if (!isObject(scope)) throw new Error("a scopeMetrics entry is not an object")
      for (const metric of arrayOf(scope.metrics, "metrics")) {
        if (!isObject(metric) || typeof metric.name !== "string")
          throw new Error("a metric has no name")
        const name = metric.name
        const kind = kinds.find((candidate) => isObject(metric[candidate]))
        if (kind === undefined) throw new Error(`metric ${name} has no data`)
        const data = metric[kind] as Json
        for (const point of arrayOf(data.dataPoints, `${name}'s dataPoints`)) {
          if (!isObject(point)) throw new Error(`a data point of ${name} is not an object`)
          const attributes: Record<string, unknown> = {}
          for (const attribute of arrayOf(point.attributes, `${name}'s attributes`)) {
            if (isObject(attribute) && typeof attribute.key === "string")
              attributes[attribute.key] = anyValue(attribute.value)
          }
          const single = kind === "sum" || kind === "gauge"
          points.push({
            name,
            kind,
            attributes,
            value: single
              ? numberOf(point.asDouble ?? point.asInt, `${name}'s value`)
              : numberOf(point.count, `${name}'s count`),
            ...(single || point.sum === undefined
              ? {}
              : { sum: numberOf(point.sum, `${name}'s sum`) }),
          })
        }
      }
    }
  }
  return points
}

/**
 * Starts a collector on a free loopback port; `close` it at the end.
 *
 * @since 0.1.0
 * @category constructors
 */
export const collector = async (): Promise<Collector> => {
  const traces: Array<string> = []
  const metrics: Array<string> = []
  const server = createServer((request, response) => {
    let body = ""
    request.on("data", (chunk: Buffer) => {
      body += chunk.toString()
    })
    request.on("end", () => {
      if (request.url === "/v1/traces") traces.push(body)
      if (request.url === "/v1/metrics") metrics.push(body)
      response.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const points = (): ReadonlyArray<MetricPoint> =>
    metrics.flatMap((body, index) => {
      try {
        return decodeMetrics(body)
      } catch (error) {
        throw new Error(
          `metrics export ${index + 1} is not OTLP JSON (${error instanceof Error ? error.message : String(error)}): ${body.slice(0, 200)}`,
        )
      }
    })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    traces: () => traces.join("\n"),
    metrics: points,
    latest: (name, attributes = {}) =>
      points()
        .filter(
          (point) =>
            point.name === name &&
            Object.entries(attributes).every(([key, value]) => point.attributes[key] === value),
        )
        .at(-1),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
