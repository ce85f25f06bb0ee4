/**
 * What every Understudy program offers its operators, the same way in each: its metrics
 * served as Prometheus text (`--metrics HOST:PORT`: `GET http://HOST:PORT/metrics`), and
 * its traces and metrics pushed to an OpenTelemetry collector (`--otlp URL`, OTLP over
 * HTTP with JSON bodies). A program takes the two flags out of its arguments with
 * {@link takeFlags} and provides {@link layer} to what it runs. The Promise facades
 * (`createInstance`, `createServer`, ...) run on {@link facadeRuntime}: with the logger and
 * the layers (a tracer, a metrics exporter) their caller gives.
 *
 * @example
 * ```ts
 * import { Observability } from "@understudy/transport"
 *
 * const taken = Observability.takeFlags(process.argv.slice(2))
 * if (taken._tag === "UsageError") throw new Error(taken.message)
 * await Effect.runPromise(program.pipe(Effect.provide(Observability.layer(taken.flags, "my-app"))))
 * ```
 * @since 0.1.0
 */
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { Effect, type Fiber, Layer, Logger, References, type Scope } from "effect"

// Loaded when a program asks for them, not by every process that imports the transport
// (they cost every process's start several hundred ms on a busy machine).
const observability = Effect.promise(() => import("effect/observability"))
const http = Effect.promise(() => import("effect/http"))

/** @since 0.1.0 @category models */
export interface HostPort {
  readonly host: string
  readonly port: number
}

/** @since 0.1.0 @category models */
export interface Flags {
  /** Where to serve `/metrics` (port 0: any free port, printed on stderr). */
  readonly metrics: HostPort | undefined
  /** The collector's base URL (`http://127.0.0.1:4318`): `/v1/traces`, `/v1/metrics`, ... */
  readonly otlp: string | undefined
}

/** @since 0.1.0 @category constants */
export const none: Flags = { metrics: undefined, otlp: undefined }

/** The flags' lines for a program's `--help`. @since 0.1.0 @category constants */
export const usage = `  --metrics HOST:PORT  serve metrics as Prometheus text at http://HOST:PORT/metrics
  --otlp URL           export traces and metrics to an OpenTelemetry collector over
                       OTLP/HTTP (e.g. http://127.0.0.1:4318)`

/**
 * `HOST:PORT` (an IPv6 host in brackets: `[::1]:9464`), or a reason it is not one.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseHostPort = (text: string): HostPort | string => {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text)
  if (match === null) return "expected HOST:PORT (e.g. 127.0.0.1:9464)"
  const port = Number(match[3])
  if (port > 65535) return "the port must be 0..65535"
  return { host: match[1] ?? match[2]!, port }
}

const parseUrl = (text: string): string | { readonly error: string } => {
  try {
    const url = new URL(text)
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      return { error: "expected an http:// or https:// URL" }
    }
    return url.href.replace(/\/$/, "")
  } catch {
    return { error: "expected a URL (e.g. http://127.0.0.1:4318)" }
  }
}

/**
 * Takes `--metrics` and `--otlp` (as `--flag value` or `--flag=value`) out of `argv`, before
 * any `--`, and leaves the other arguments, in order, to the program's own parser.
 *
 * @since 0.1.0
 * @category parsing
 */
export const takeFlags = (
  argv: ReadonlyArray<string>,
):
  | { readonly _tag: "Taken"; readonly flags: Flags; readonly argv: ReadonlyArray<string> }
  | { readonly _tag: "UsageError"; readonly message: string } => {
  const rest: Array<string> = []
  let metrics: HostPort | undefined
  let otlp: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--") {
      rest.push(...argv.slice(i))
      break
    }
    const equals = arg.indexOf("=")
    const flag = arg.startsWith("--") && equals > 0 ? arg.slice(0, equals) : arg
    if (flag !== "--metrics" && flag !== "--otlp") {
      rest.push(arg)
      continue
    }
    let value: string | undefined
    if (flag !== arg) value = arg.slice(equals + 1)
    else value = argv[++i]
    if (value === undefined || value === "") {
      return { _tag: "UsageError", message: `${flag} needs a value` }
    }
    if ((flag === "--metrics" ? metrics : otlp) !== undefined) {
      return { _tag: "UsageError", message: `${flag} given twice` }
    }
    if (flag === "--metrics") {
      const parsed = parseHostPort(value)
      if (typeof parsed === "string") {
        return { _tag: "UsageError", message: `--metrics ${value}: ${parsed}` }
      }
      metrics = parsed
    } else {
      const parsed = parseUrl(value)
      if (typeof parsed !== "string") {
        return { _tag: "UsageError", message: `--otlp ${value}: ${parsed.error}` }
      }
      otlp = parsed
    }
  }
  return { _tag: "Taken", flags: { metrics, otlp }, argv: rest }
}

/**
 * Serves the metrics of the context it is built in as Prometheus text at `/metrics`,
 * until its scope closes; says where on stderr (`metrics on http://HOST:PORT/metrics`).
 *
 * @since 0.1.0
 * @category layers
 */
export const prometheusLayer = (at: HostPort): Layer.Layer<never, Error> =>
  Layer.effectDiscard(
    Effect.gen(function* () {
      const { PrometheusMetrics } = yield* observability
      const context = yield* Effect.context<never>()
      const server = yield* Effect.acquireRelease(
        Effect.callback<Server, Error>((resume) => {
          const server = createServer((request, response) => {
            if (request.method !== "GET" || request.url?.split("?")[0] !== "/metrics") {
              response.writeHead(404, { "content-type": "text/plain" }).end("not found\n")
              return
            }
            response
              .writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" })
              .end(PrometheusMetrics.formatUnsafe(context))
          })
          server.once("error", (error) =>
            resume(Effect.fail(new Error(`--metrics ${at.host}:${at.port}: ${error.message}`))),
          )
          server.listen(at.port, at.host, () => resume(Effect.succeed(server)))
        }),
        (server) =>
          Effect.callback<void>((resume) => {
            server.closeAllConnections()
            server.close(() => resume(Effect.void))
          }),
      )
      const { address, port } = server.address() as AddressInfo
      const host = address.includes(":") ? `[${address}]` : address
      process.stderr.write(`metrics on http://${host}:${port}/metrics\n`)
    }),
  )

/**
 * Exports the program's spans, metrics and logs to an OpenTelemetry collector (OTLP/HTTP,
 * JSON), under `serviceName`; what is buffered is flushed when the scope closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const otlpLayer = (baseUrl: string, serviceName: string): Layer.Layer<never> =>
  // What it provides are references (the tracer, the logger) and a flusher that no program
  // asks for: typed as providing nothing a program requires, it still installs them.
  Layer.unwrap(
    Effect.gen(function* () {
      const { Otlp } = yield* observability
      const { FetchHttpClient } = yield* http
      return Otlp.layerJson({
        baseUrl,
        resource: { serviceName },
        metricsExportInterval: "5 seconds",
        tracerExportInterval: "1 second",
      }).pipe(Layer.provide(FetchHttpClient.layer))
    }),
  ) as Layer.Layer<never>

/**
 * Both, as the flags ask (nothing when neither is given).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (flags: Flags, serviceName: string): Layer.Layer<never, Error> =>
  Layer.mergeAll(
    flags.metrics === undefined ? Layer.empty : prometheusLayer(flags.metrics),
    flags.otlp === undefined ? Layer.empty : otlpLayer(flags.otlp, serviceName),
  )

/**
 * One log line, as a Promise facade hands it to the caller's logger: its level (`Info`,
 * `Warn`, ...), its message, and its annotations (the node's id, role, term or epoch).
 *
 * @since 0.1.0
 * @category models
 */
export interface LogEntry {
  readonly level: string
  readonly message: string
  readonly annotations: Readonly<Record<string, unknown>>
  readonly date: Date
}

/**
 * What every Promise facade's options take, for code that does not use Effect.
 *
 * @since 0.1.0
 * @category models
 */
export interface FacadeOptions {
  /**
   * Receives every log line instead of the console (e.g. `(entry) =>
   * pino[entry.level.toLowerCase()](entry.annotations, entry.message)`).
   */
  readonly logger?: ((entry: LogEntry) => void) | undefined
  /**
   * Services the facade's effects run with, built once and closed with it: a tracer
   * (`OtlpTracer.layer`), a metrics exporter (`OtlpMetrics.layer`), loggers, ...
   */
  readonly layer?: Layer.Layer<never> | undefined
}

/** @since 0.1.0 @category models */
export interface FacadeRuntime {
  readonly runPromise: <A, E>(effect: Effect.Effect<A, E>) => Promise<A>
  readonly runFork: <A, E>(effect: Effect.Effect<A, E>) => Fiber.Fiber<A, E>
  readonly runSync: <A, E>(effect: Effect.Effect<A, E>) => A
}

const text = (value: unknown): string => {
  if (typeof value === "string") return value
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/**
 * Builds a facade's services (its caller's layer and logger) in `scope`, and runs effects
 * with them; without either, effects run as with `Effect.runPromise`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const facadeRuntime = async (
  options: FacadeOptions,
  scope: Scope.Scope,
): Promise<FacadeRuntime> => {
  const log = options.logger
  const loggerLayer =
    log === undefined
      ? Layer.empty
      : Logger.layer([
          Logger.make<unknown, void>(({ message, logLevel, fiber, date }) =>
            log({
              level: logLevel,
              message: (Array.isArray(message) ? message : [message]).map(text).join(" "),
              annotations: fiber.getRef(References.CurrentLogAnnotations),
              date,
            }),
          ),
        ])
  const context = await Effect.runPromise(
    Layer.buildWithScope(Layer.merge(options.layer ?? Layer.empty, loggerLayer), scope),
  )
  return {
    runPromise: (effect) => Effect.runPromiseWith(context)(effect),
    runFork: (effect) => Effect.runForkWith(context)(effect),
    runSync: (effect) => Effect.runSyncWith(context)(effect),
  }
}
