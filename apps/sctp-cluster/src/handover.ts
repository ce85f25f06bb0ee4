/**
 * `sctp-cluster handover`: asks a primary, on its status endpoint (`POST /handover`), to hand
 * its associations to the secondary (`Cluster`'s planned handover), and prints what it did.
 *
 * The request moves the service, so it is authenticated with the cluster key, as the link
 * and the store are: an HMAC-SHA256 over the request, its time and a fresh nonce, in the
 * `x-understudy-handover` header. The node refuses a request older or newer than 30 s, or
 * whose nonce it has seen (a replay). A node run with `--insecure` takes it unsigned.
 *
 * @since 0.1.0
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import * as http from "node:http"
import type { Cluster } from "@understudy/multihome"
import { Address } from "@understudy/transport"
import { Clock, Effect, Redacted, Schema } from "effect"
import type { Invocation } from "./cli.ts"
import { clusterKeyOf, exitCode, line } from "./common.ts"

/** The header that carries `TIME.NONCE.HMAC`. @since 0.1.0 */
export const authHeader = "x-understudy-handover"

/** How far a request's time may be from the node's clock. */
const windowMs = 30_000

/** The handover waits for the peer's ASCONF-ACK (at most about 10 s, see `Cluster`). */
const requestTimeoutMs = 20_000

const mac = (key: Uint8Array, timeMs: number, nonce: string): Buffer =>
  createHmac("sha256", key).update(`POST /handover ${timeMs} ${nonce}`).digest()

/** The header value for a request made now. @since 0.1.0 */
export const sign = (key: Uint8Array, nowMs: number): string => {
  const nonce = randomBytes(16).toString("hex")
  return `${nowMs}.${nonce}.${mac(key, nowMs, nonce).toString("hex")}`
}

/**
 * Checks requests against `key`: the MAC, the time window and the nonce (each accepted once;
 * remembered for the window).
 *
 * @since 0.1.0
 */
export const verifier = (key: Uint8Array) => {
  const seen = new Map<string, number>()
  return (header: string | undefined, nowMs: number): string | undefined => {
    for (const [nonce, atMs] of seen) if (atMs < nowMs - 2 * windowMs) seen.delete(nonce)
    const [time, nonce, given] = (header ?? "").split(".")
    const timeMs = Number(time)
    if (nonce === undefined || given === undefined || !/^[0-9a-f]{32}$/.test(nonce))
      return `no valid ${authHeader} header`
    if (!Number.isSafeInteger(timeMs) || Math.abs(nowMs - timeMs) > windowMs)
      return "the request's time is not within 30 s of the node's"
    const expected = mac(key, timeMs, nonce)
    const actual = Buffer.from(/^[0-9a-f]{64}$/.test(given) ? given : "", "hex")
    if (actual.length !== expected.length || !timingSafeEqual(actual, expected))
      return "the request is not signed with the cluster key"
    if (seen.has(nonce)) return "the request was made before (a replay)"
    seen.set(nonce, nowMs)
    return undefined
  }
}

/**
 * The handover request failed, or the node refused it.
 *
 * @since 0.1.0
 * @category errors
 */
export class HandOverFailed extends Schema.TaggedError<HandOverFailed>()("HandOverFailed", {
  address: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `no handover by ${this.address}: ${this.detail}`
  }
}

/**
 * `POST /handover` to a node, signed at the time of the Effect's `Clock`; its answer (the
 * handover's report).
 *
 * @since 0.1.0
 */
export const requestHandOver = (
  address: Address.StreamAddress,
  key: Redacted.Redacted<Uint8Array> | undefined,
): Effect.Effect<Cluster.HandOverReport, HandOverFailed> =>
  Effect.flatMap(Clock.currentTimeMillis, (nowMs) => request(address, key, nowMs))

const request = (
  address: Address.StreamAddress,
  key: Redacted.Redacted<Uint8Array> | undefined,
  nowMs: number,
): Effect.Effect<Cluster.HandOverReport, HandOverFailed> =>
  Effect.callback<Cluster.HandOverReport, HandOverFailed>((resume) => {
    const failWith = (detail: string) =>
      resume(Effect.fail(new HandOverFailed({ address: Address.format(address), detail })))
    const target =
      address._tag === "Tcp"
        ? { host: address.host, port: address.port }
        : { socketPath: address.abstract ? `\0${address.path}` : address.path }
    const headers: Record<string, string> = { connection: "close", "content-length": "0" }
    if (key !== undefined) headers[authHeader] = sign(Redacted.value(key), nowMs)
    const request = http.request(
      { ...target, method: "POST", path: "/handover", timeout: requestTimeoutMs, headers },
      (response) => {
        const chunks: Array<Buffer> = []
        response.on("data", (chunk: Buffer) => chunks.push(chunk))
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString()
          if (response.statusCode !== 200) return failWith(`HTTP ${response.statusCode}: ${text}`)
          try {
            resume(Effect.succeed(JSON.parse(text) as Cluster.HandOverReport))
          } catch (error) {
            failWith(`not JSON: ${String(error)}`)
          }
        })
        response.on("error", (error) => failWith(error.message))
      },
    )
    request.on("timeout", () => request.destroy(new Error(`no answer in ${requestTimeoutMs} ms`)))
    request.on("error", (error) => failWith(error.message))
    request.end()
    return Effect.sync(() => request.destroy())
  })

/** `sctp-cluster handover`: one JSON line with the report. @since 0.1.0 */
export const handover = (
  invocation: Extract<Invocation, { readonly _tag: "HandOver" }>,
): Effect.Effect<number, unknown> =>
  Effect.gen(function* () {
    const key = yield* clusterKeyOf(invocation.clusterKeyFile)
    const report = yield* requestHandOver(invocation.status, key)
    line({ t: "handed-over", ...report })
    return exitCode.ok
  })
