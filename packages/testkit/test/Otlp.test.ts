import { Observability } from "@understudy/transport"
import { Effect, Metric } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { collector, decodeMetrics } from "../src/Otlp.ts"

describe("Otlp.collector", () => {
  it("answers every export with 200 and keeps the trace and the metric exports apart", async () => {
    const otlp = await collector()
    try {
      const metrics = JSON.stringify({
        resourceMetrics: [
          {
            scopeMetrics: [
              {
                metrics: [
                  {
                    name: "m",
                    sum: {
                      dataPoints: [
                        {
                          attributes: [{ key: "k", value: { stringValue: "v" } }],
                          asInt: "7",
                        },
                      ],
                    },
                  },
                ],
              },
            ],
          },
        ],
      })
      for (const [path, body] of [
        ["/v1/traces", '{"span":"a"}'],
        ["/v1/metrics", metrics],
        ["/v1/logs", '{"log":"l"}'],
        ["/v1/traces", '{"span":"b"}'],
      ] as const) {
        const response = await fetch(`${otlp.url}${path}`, { method: "POST", body })
        expect(response.status).toBe(200)
        await response.body?.cancel()
      }
      expect(otlp.traces()).toBe('{"span":"a"}\n{"span":"b"}')
      expect(otlp.metrics()).toEqual([{ name: "m", kind: "sum", attributes: { k: "v" }, value: 7 }])
    } finally {
      await otlp.close()
    }
  })

  it("decodes what effect/observability exports: a counter, a gauge and a histogram with their attributes", async () => {
    const otlp = await collector()
    try {
      const counter = Metric.counter("testkit_otlp_counter_total")
      const gauge = Metric.gauge("testkit_otlp_gauge")
      const histogram = Metric.histogram("testkit_otlp_histogram_ms", {
        boundaries: Metric.linearBoundaries({ start: 0, width: 10, count: 5 }),
      })
      // The exporter flushes when its scope closes, at the end of the program.
      await Effect.runPromise(
        Effect.gen(function* () {
          yield* Metric.update(Metric.withAttributes(counter, { outcome: "ok" }), 3)
          yield* Metric.update(gauge, 42)
          yield* Metric.update(histogram, 5)
          yield* Metric.update(histogram, 25)
        }).pipe(Effect.provide(Observability.otlpLayer(otlp.url, "testkit-test"))),
      )
      expect(otlp.latest("testkit_otlp_counter_total", { outcome: "ok" })?.value).toBe(3)
      expect(otlp.latest("testkit_otlp_counter_total", { outcome: "other" })).toBeUndefined()
      const points = otlp.metrics()
      expect(points).toContainEqual({
        name: "testkit_otlp_counter_total",
        kind: "sum",
        attributes: { outcome: "ok" },
        value: 3,
      })
      expect(points.find((point) => point.name === "testkit_otlp_gauge")).toMatchObject({
        kind: "gauge",
        value: 42,
      })
      expect(points.find((point) => point.name === "testkit_otlp_histogram_ms")).toMatchObject({
        kind: "histogram",
        value: 2,
        sum: 30,
      })
    } finally {
      await otlp.close()
    }
  }, 30_000)

  it("a body that is not an OTLP metrics export is a clear error, never anything else (fuzzed)", () => {
    const body = fc.oneof(
      fc.string(),
      fc.json(),
      fc
        .jsonValue()
        .map((value) =>
          JSON.stringify({ resourceMetrics: [{ scopeMetrics: [{ metrics: [value] }] }] }),
        ),
    )
    fc.assert(
      fc.property(body, (text) => {
        try {
          const points = decodeMetrics(text)
          for (const point of points) {
            expect(typeof point.name).toBe("string")
            expect(Number.isNaN(point.value)).toBe(false)
          }
        } catch (error) {
          // The decoder's own error, not a TypeError from reading what is not there.
          expect((error as Error).constructor).toBe(Error)
          expect((error as Error).message.length).toBeGreaterThan(0)
        }
      }),
      { numRuns: 2_000, seed: 18 },
    )
    expect(() => decodeMetrics("{")).toThrow(/not JSON/)
    expect(() => decodeMetrics('{"resourceMetrics":{}}')).toThrow(/resourceMetrics is not an array/)
    expect(() =>
      decodeMetrics(
        '{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","sum":{"dataPoints":[{"asInt":"many"}]}}]}]}]}',
      ),
    ).toThrow(/x's value is not a number/)
  })
})
