import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Metric, Scope } from "effect"
import fc from "fast-check"
import * as Observability from "../src/Observability.ts"

/** A TCP port the OS says is free on 127.0.0.1 (bound to port 0, then closed). */
const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })

describe("Observability.takeFlags", () => {
  it("takes --metrics and --otlp out, leaving every other argument in order", () => {
    expect(
      Observability.takeFlags([
        "node",
        "--metrics",
        "127.0.0.1:9464",
        "--role=primary",
        "--otlp=http://collector:4318/",
        "--",
        "--metrics",
        "x",
      ]),
    ).toEqual({
      _tag: "Taken",
      flags: { metrics: { host: "127.0.0.1", port: 9464 }, otlp: "http://collector:4318" },
      argv: ["node", "--role=primary", "--", "--metrics", "x"],
    })
    expect(Observability.takeFlags(["--metrics=[::1]:0"])).toMatchObject({
      flags: { metrics: { host: "::1", port: 0 } },
    })
    expect(Observability.takeFlags(["a"])).toEqual({
      _tag: "Taken",
      flags: Observability.none,
      argv: ["a"],
    })
  })

  it("says what is wrong with a bad value", () => {
    const message = (argv: ReadonlyArray<string>) => {
      const taken = Observability.takeFlags(argv)
      return taken._tag === "UsageError" ? taken.message : undefined
    }
    expect(message(["--metrics"])).toBe("--metrics needs a value")
    expect(message(["--metrics", "9464"])).toMatch(/^--metrics 9464: expected HOST:PORT/)
    expect(message(["--metrics", "h:70000"])).toMatch(/0\.\.65535/)
    expect(message(["--otlp", "ftp://x"])).toMatch(/http:\/\/ or https:\/\//)
    expect(message(["--otlp", "not a url"])).toMatch(/expected a URL/)
    expect(message(["--otlp=http://a", "--otlp=http://b"])).toBe("--otlp given twice")
  })

  it("never throws, and keeps every argument it does not take (fuzzed)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constantFrom("--metrics", "--otlp", "--", "="), fc.string())),
        (argv) => {
          const taken = Observability.takeFlags(argv)
          if (taken._tag === "UsageError") {
            expect(taken.message.length).toBeGreaterThan(0)
            return
          }
          const others = argv.filter((arg) => !/^--(metrics|otlp)(=|$)/.test(arg))
          expect(taken.argv.length).toBeLessThanOrEqual(argv.length)
          for (const arg of taken.argv) expect(argv).toContain(arg)
          if (!argv.includes("--metrics") && !argv.includes("--otlp")) {
            expect(taken.argv).toEqual(others)
          }
        },
      ),
      { numRuns: 500 },
    )
  })
})

describe("Observability layers", () => {
  it.live("serves the metrics as Prometheus text at /metrics until its scope closes", () =>
    Effect.gen(function* () {
      const counter = Metric.counter("understudy_test_observability_total", {
        description: "A counter of the Observability test",
      })
      yield* Metric.update(Metric.withAttributes(counter, { kind: "a" }), 3)
      const port = yield* Effect.promise(freePort)
      const scope = yield* Scope.make()
      yield* Layer.buildWithScope(
        Observability.layer({ metrics: { host: "127.0.0.1", port }, otlp: undefined }, "test"),
        scope,
      )
      const response = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/metrics`))
      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/)
      const text = yield* Effect.promise(() => response.text())
      expect(text).toContain("# TYPE understudy_test_observability_total counter")
      expect(text).toContain('understudy_test_observability_total{kind="a"} 3')
      const other = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/other`))
      expect(other.status).toBe(404)
      yield* Scope.close(scope, Exit.void)
      const after = yield* Effect.promise(() =>
        fetch(`http://127.0.0.1:${port}/metrics`).then(
          () => "answered",
          () => "refused",
        ),
      )
      expect(after).toBe("refused")
    }),
  )

  it.live("fails to build, saying which flag, when the address is taken", () =>
    Effect.gen(function* () {
      const holder = createServer()
      const port = yield* Effect.promise(
        () =>
          new Promise<number>((resolve) =>
            holder.listen(0, "127.0.0.1", () => resolve((holder.address() as AddressInfo).port)),
          ),
      )
      const error = yield* Layer.build(
        Observability.prometheusLayer({ host: "127.0.0.1", port }),
      ).pipe(Effect.scoped, Effect.flip)
      holder.close()
      expect(error.message).toMatch(new RegExp(`^--metrics 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`))
    }),
  )

  it.live("exports spans and metrics to an OTLP collector, flushed when its scope closes", () =>
    Effect.gen(function* () {
      const received: Array<{ readonly path: string; readonly body: string }> = []
      const collector = createServer((request, response) => {
        let body = ""
        request.on("data", (chunk: Buffer) => {
          body += chunk.toString()
        })
        request.on("end", () => {
          received.push({ path: request.url ?? "", body })
          response.writeHead(200, { "content-type": "application/json" }).end("{}")
        })
      })
      const port = yield* Effect.promise(
        () =>
          new Promise<number>((resolve) =>
            collector.listen(0, "127.0.0.1", () =>
              resolve((collector.address() as AddressInfo).port),
            ),
          ),
      )
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        Observability.layer(
          { metrics: undefined, otlp: `http://127.0.0.1:${port}` },
          "observability-test",
        ),
        scope,
      )
      const gauge = Metric.gauge("understudy_test_otlp_gauge")
      yield* Metric.update(gauge, 7).pipe(
        Effect.withSpan("understudy-test-span"),
        Effect.provideContext(context),
      )
      yield* Scope.close(scope, Exit.void)
      yield* Effect.promise(() => new Promise((resolve) => collector.close(resolve)))
      const traces = received.filter((request) => request.path === "/v1/traces")
      const metrics = received.filter((request) => request.path === "/v1/metrics")
      expect(traces.map((request) => request.body).join()).toContain("understudy-test-span")
      expect(traces.map((request) => request.body).join()).toContain("observability-test")
      expect(metrics.map((request) => request.body).join()).toContain("understudy_test_otlp_gauge")
    }),
  )
})
