/**
 * A client of a server group: it resolves the master from the `NameServer`, sends each
 * request there, follows `NotMaster` redirects, and retries with the same request id until
 * it gets an answer or its deadline passes, so every request is applied exactly once.
 *
 * How a request reaches a server is the caller's `call` (an HTTP request, a stream
 * connection, or, in one process, `ServerGroup.submit` itself: see `local`). Requests of one
 * client go one at a time: the group answers a client's request ids in increasing order,
 * and a later one applied before an earlier retry would make the retry `stale-request`.
 * For concurrency, use several clients.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Client } from "@understudy/staggered-election"
 *
 * const program = Effect.gen(function* () {
 *   const client = yield* Client.make({ group: "kv", call: Client.local(servers) })
 *   const result = yield* client.submit({ op: "put", key: "a", value: "1" })
 * })
 * ```
 * @since 0.1.0
 */
import { NameServer } from "@understudy/store"
import { Options } from "@understudy/transport"
import { type Duration, Effect, Option, Random, Result, Schedule, Semaphore } from "effect"
import * as Machine from "./Machine.ts"
import * as ServerGroup from "./ServerGroup.ts"

/** How a client reaches one server. @since 0.1.0 @category models */
export type Call<Req, Res> = (
  target: ServerGroup.Holder,
  submission: ServerGroup.Submission<Req>,
) => Effect.Effect<Res, ServerGroup.SubmitError>

/** @since 0.1.0 @category models */
export interface ClientOptions<Req, Res> {
  /** The group's role in the name server. */
  readonly group: string
  /** Default: random. Reuse it only for the same logical client (its ids continue). */
  readonly clientId?: string
  /** The first request id minus one (a restarted client continues after its last id). */
  readonly lastRequestId?: number
  readonly call: Call<Req, Res>
  /** How long one request may take, retries included. Default 10 seconds. */
  readonly deadline?: Duration.Input
  /**
   * The pauses before retrying after an unavailable master or none registered (`deadline`
   * and `attemptsMax` bound it). Default `retryDefault`: 25 ms each time.
   */
  readonly retry?: Schedule.Schedule<unknown>
  /** Attempts of one request, at most. Default 1,000. */
  readonly attemptsMax?: number
}

/** Counters since the client started. @since 0.1.0 @category models */
export interface Stats {
  readonly requests: number
  readonly attempts: number
  readonly redirects: number
  readonly failures: number
}

/** @since 0.1.0 @category models */
export interface Client<Req, Res> {
  readonly clientId: string
  /**
   * Applies `request` once. Fails with `GroupUnavailable` when no master answered before the
   * deadline (the request may still have been applied: nothing retries it after that), or
   * `Rejected` when the master refused it.
   */
  readonly submit: (
    request: Req,
  ) => Effect.Effect<Res, ServerGroup.GroupUnavailable | ServerGroup.Rejected>
  readonly stats: Effect.Effect<Stats>
}

/**
 * A `call` for servers of the same process.
 *
 * @since 0.1.0
 * @category constructors
 */
export const local =
  <Req, Res>(
    servers: Readonly<Record<string, ServerGroup.ServerGroup<unknown, Req, Res>>>,
  ): Call<Req, Res> =>
  (target, submission) => {
    const server = servers[target.id]
    return server === undefined
      ? Effect.fail(new ServerGroup.GroupUnavailable({ reason: `no server ${target.id}` }))
      : server.submit(submission)
  }

/**
 * The default pause between a client's attempts: 25 ms, whatever went wrong (a failover
 * takes its detection and election time however often the client asks).
 *
 * @since 0.1.0
 * @category scheduling
 */
export const retryDefault: Schedule.Schedule<unknown> = Schedule.spaced("25 millis")

/**
 * A client on the `NameServer` in context. A `deadline` that is not a positive duration
 * fails with `InvalidConfig` naming it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <Req, Res>(
  options: ClientOptions<Req, Res>,
): Effect.Effect<Client<Req, Res>, Machine.InvalidConfig, NameServer.NameServer> =>
  Effect.gen(function* () {
    const deadline = Options.positiveMillis("deadline", options.deadline ?? 10_000)
    if (Result.isFailure(deadline)) {
      return yield* new Machine.InvalidConfig({ reason: deadline.failure })
    }
    const deadlineMs = deadline.success
    const nameServer = yield* NameServer.NameServer
    const clientId =
      options.clientId ??
      `client-${(yield* Random.nextIntBetween(0, 2 ** 31)).toString(36)}-${(yield* Random.nextIntBetween(0, 2 ** 31)).toString(36)}`
    const attemptsMax = options.attemptsMax ?? 1_000
    const oneAtATime = yield* Semaphore.make(1)
    let requestId = options.lastRequestId ?? 0
    const stats = { requests: 0, attempts: 0, redirects: 0, failures: 0 }
    /** What each server advertised when last registered, for redirects by id. */
    const advertised = new Map<string, string | undefined>()

    const resolve = Effect.gen(function* () {
      const found = yield* nameServer.resolve(options.group).pipe(
        Effect.map(Option.map((holder) => ServerGroup.parseHolder(holder.holder))),
        Effect.orElseSucceed(() => Option.none<ServerGroup.Holder>()),
      )
      if (Option.isSome(found)) advertised.set(found.value.id, found.value.advertise)
      return found
    })

    /** Between attempts that found no master, or a master that could not answer. */
    const retry = options.retry ?? retryDefault

    const attempt = (submission: ServerGroup.Submission<Req>) => {
      let target: ServerGroup.Holder | undefined
      let tries = 0
      /** Up to the next failure, following redirects (a server naming its master) at once. */
      const once = Effect.gen(function* () {
        while (tries++ < attemptsMax) {
          if (target === undefined) {
            const found = yield* resolve
            if (Option.isNone(found)) {
              return yield* new ServerGroup.GroupUnavailable({ reason: "no master registered" })
            }
            target = found.value
          }
          stats.attempts++
          const outcome = yield* Effect.result(options.call(target, submission))
          if (outcome._tag === "Success") return outcome.success
          const error = outcome.failure
          if (error._tag === "NotMaster" && error.master !== null && error.master !== target.id) {
            stats.redirects++
            target = { id: error.master, advertise: advertised.get(error.master) }
            continue
          }
          if (error._tag !== "Rejected") target = undefined
          return yield* error
        }
        return yield* new ServerGroup.GroupUnavailable({
          reason: `no answer in ${attemptsMax} attempts`,
        })
      })
      return once.pipe(
        Effect.retry({
          schedule: retry,
          while: (error) => error._tag !== "Rejected" && tries < attemptsMax,
        }),
        Effect.catchTag("NotMaster", () =>
          Effect.fail(
            new ServerGroup.GroupUnavailable({ reason: `no answer in ${attemptsMax} attempts` }),
          ),
        ),
      )
    }

    const submit = (request: Req) =>
      oneAtATime.withPermits(1)(
        Effect.suspend(() => {
          requestId++
          stats.requests++
          return attempt({ clientId, requestId, request }).pipe(
            Effect.timeoutOrElse({
              duration: deadlineMs,
              orElse: () =>
                Effect.fail(
                  new ServerGroup.GroupUnavailable({ reason: `no answer within ${deadlineMs} ms` }),
                ),
            }),
            Effect.tapError(() => Effect.sync(() => void stats.failures++)),
          )
        }),
      )

    return { clientId, submit, stats: Effect.sync(() => ({ ...stats })) } satisfies Client<Req, Res>
  })
