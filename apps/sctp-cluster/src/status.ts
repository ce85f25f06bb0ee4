/**
 * `sctp-cluster status`: asks a node's status endpoint and prints what it says, for people
 * or (`--json`) for programs.
 *
 * @since 0.1.0
 */
import * as http from "node:http"
import { Address } from "@understudy/transport"
import { Effect, Schema } from "effect"
import type { Invocation } from "./cli.ts"
import { exitCode } from "./common.ts"
import { formatStatus, type StatusReport } from "./report.ts"

/** The node does not answer within this long: it is down or stuck. */
const requestTimeoutMs = 3_000

/** A status answer larger than this is refused (a node holds few associations). */
const responseBytesMax = 4 * 1024 * 1024

/**
 * The node's status endpoint did not give a status.
 *
 * @since 0.1.0
 * @category errors
 */
export class StatusUnavailable extends Schema.TaggedError<StatusUnavailable>()(
  "StatusUnavailable",
  { address: Schema.String, detail: Schema.String },
) {
  override get message(): string {
    return `no status from ${this.address}: ${this.detail}`
  }
}

/**
 * `GET /status` from a node (TCP or unix socket), parsed.
 *
 * @since 0.1.0
 */
export const fetchStatus = (
  address: Address.StreamAddress,
): Effect.Effect<StatusReport, StatusUnavailable> =>
  Effect.callback<StatusReport, StatusUnavailable>((resume) => {
    const failWith = (detail: string) =>
      resume(Effect.fail(new StatusUnavailable({ address: Address.format(address), detail })))
    const target =
      address._tag === "Tcp"
        ? { host: address.host, port: address.port }
        : { socketPath: address.abstract ? `\0${address.path}` : address.path }
    const request = http.get(
      { ...target, path: "/status", timeout: requestTimeoutMs, headers: { connection: "close" } },
      (response) => {
        let size = 0
        const chunks: Array<Buffer> = []
        response.on("data", (chunk: Buffer) => {
          size += chunk.length
          if (size > responseBytesMax) request.destroy(new Error("the answer is too large"))
          else chunks.push(chunk)
        })
        response.on("end", () => {
          if (response.statusCode !== 200)
            return failWith(`HTTP ${response.statusCode}: ${Buffer.concat(chunks).toString()}`)
          try {
            resume(Effect.succeed(JSON.parse(Buffer.concat(chunks).toString()) as StatusReport))
          } catch (error) {
            failWith(`not JSON: ${String(error)}`)
          }
        })
        response.on("error", (error) => failWith(error.message))
      },
    )
    request.on("timeout", () => request.destroy(new Error(`no answer in ${requestTimeoutMs} ms`)))
    request.on("error", (error) => failWith(error.message))
    return Effect.sync(() => request.destroy())
  })

/** Prints the status once. @since 0.1.0 */
export const status = (
  invocation: Extract<Invocation, { readonly _tag: "Status" }>,
): Effect.Effect<number, StatusUnavailable> =>
  Effect.map(fetchStatus(invocation.status), (report) => {
    process.stdout.write(
      invocation.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatStatus(report)}\n`,
    )
    return exitCode.ok
  })
