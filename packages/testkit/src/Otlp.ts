/**
 * An OpenTelemetry collector for tests: an HTTP server on loopback that answers every
 * OTLP/HTTP (JSON) export with 200 and keeps the trace exports' bodies, so a test can pass a
 * program `--otlp URL` and look for its spans.
 *
 * @since 0.1.0
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"

/** @since 0.1.0 @category models */
export interface Collector {
  /** The base URL to export to (`--otlp`). */
  readonly url: string
  /** Every `/v1/traces` body received so far, joined. */
  readonly traces: () => string
  readonly close: () => Promise<void>
}

/**
 * Starts a collector on a free loopback port; `close` it at the end.
 *
 * @since 0.1.0
 * @category constructors
 */
export const collector = async (): Promise<Collector> => {
  const traces: Array<string> = []
  const server = createServer((request, response) => {
    let body = ""
    request.on("data", (chunk: Buffer) => {
      body += chunk.toString()
    })
    request.on("end", () => {
      if (request.url === "/v1/traces") traces.push(body)
      response.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    traces: () => traces.join("\n"),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
