/** `Options`' durations, decoded once in milliseconds before anything is bound or dialled. */
import { Options as TransportOptions } from "@understudy/transport"
import { type Duration, Result } from "effect"
import type { Options } from "./models.ts"

/** The timings of `Options` in milliseconds. */
export interface Timings {
  readonly linkKeepAlive: { readonly intervalMs: number; readonly timeoutMs: number }
  readonly ackTimeoutMs: number
  readonly healthEveryMs: number
  readonly addressWaitMs: number
  readonly fenceLeaseMs: number | undefined
  /** The `interval` policy's `every`. */
  readonly intervalMs: number | undefined
}

/**
 * `options`' durations in milliseconds with their defaults, or a message naming the one that
 * is not a positive, finite duration (`linkKeepAlive.timeout`, `fence.lease` …).
 */
export const decodeTimings = (options: Options): Result.Result<Timings, string> => {
  const problems: Array<string> = []
  const millis = (option: string, input: Duration.Input | undefined, fallbackMs: number) => {
    if (input === undefined) return fallbackMs
    const decoded = TransportOptions.positiveMillis(option, input)
    if (Result.isSuccess(decoded)) return decoded.success
    problems.push(decoded.failure)
    return fallbackMs
  }
  const keepAlive = options.linkKeepAlive
  const timings: Timings = {
    // The link's keep-alive unless `linkKeepAlive` says otherwise.
    linkKeepAlive: {
      intervalMs: millis("linkKeepAlive.interval", keepAlive?.interval, 100),
      timeoutMs: millis("linkKeepAlive.timeout", keepAlive?.timeout, 500),
    },
    ackTimeoutMs: millis("ackTimeout", options.ackTimeout, 1_000),
    healthEveryMs: millis("healthEvery", options.healthEvery, 200),
    addressWaitMs: millis("addressWait", options.addressWait, 30_000),
    fenceLeaseMs:
      options.fence?.lease === undefined
        ? undefined
        : millis("fence.lease", options.fence.lease, 1_500),
    intervalMs:
      options.policy._tag === "Interval"
        ? millis("policy.every", options.policy.every, 100)
        : undefined,
  }
  return problems.length === 0 ? Result.succeed(timings) : Result.fail(problems.join("; "))
}
