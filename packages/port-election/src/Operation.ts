/**
 * Typed coordinated operations: an operation name with a `Schema` for its request and one
 * for its response, so both sides of `request` / `serve` agree on the shapes and a peer's
 * malformed payload is a typed `RequestFailed`, not a surprise.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Operation } from "@understudy/port-election"
 *
 * const nextBuildNumber = Operation.make("next-build-number", {
 *   request: Schema.Struct({ project: Schema.String }),
 *   response: Schema.Number,
 * })
 * // On every instance (it runs on whichever is supervisor):
 * //   yield* Operation.serve(election, nextBuildNumber, ({ project }) => Effect.succeed(7))
 * // Anywhere:
 * //   const n = yield* Operation.request(election, nextBuildNumber, { project: "web" })
 * ```
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import type { PortElection } from "./Election.ts"
import { RequestFailed } from "./ElectionError.ts"

/** @since 0.1.0 @category models */
export interface Operation<Req, Res> {
  readonly name: string
  readonly request: Schema.Codec<Req, unknown>
  readonly response: Schema.Codec<Res, unknown>
}

/** @since 0.1.0 @category constructors */
export const make = <Req, Res>(
  name: string,
  schemas: {
    readonly request: Schema.Codec<Req, unknown>
    readonly response: Schema.Codec<Res, unknown>
  },
): Operation<Req, Res> => ({ name, ...schemas })

const invalid = (operation: string, what: string, error: unknown) =>
  new RequestFailed({
    operation,
    reason: "HandlerFailed",
    detail: `invalid ${what}: ${error instanceof Error ? error.message : String(error)}`,
  })

/**
 * Sends a typed request to the supervisor and decodes its answer.
 *
 * @since 0.1.0
 * @category operations
 */
export const request = <Req, Res>(
  election: PortElection["Service"],
  operation: Operation<Req, Res>,
  payload: Req,
): Effect.Effect<Res, RequestFailed> =>
  Effect.gen(function* () {
    const encoded = yield* Schema.encodeEffect(operation.request)(payload).pipe(
      Effect.mapError((error) => invalid(operation.name, "request", error)),
    )
    const answer = yield* election.request(operation.name, encoded)
    return yield* Schema.decodeUnknownEffect(operation.response)(answer).pipe(
      Effect.mapError((error) => invalid(operation.name, "response", error)),
    )
  })

/**
 * Registers the typed handler this instance runs while it is supervisor. A request that
 * does not decode is answered with a failure; the handler never sees it.
 *
 * @since 0.1.0
 * @category operations
 */
export const serve = <Req, Res, E>(
  election: PortElection["Service"],
  operation: Operation<Req, Res>,
  handler: (payload: Req, from: string) => Effect.Effect<Res, E>,
): Effect.Effect<void> =>
  election.serve(operation.name, (payload, from) =>
    Effect.gen(function* () {
      const decoded = yield* Schema.decodeUnknownEffect(operation.request)(payload)
      const result = yield* handler(decoded, from)
      return yield* Schema.encodeEffect(operation.response)(result)
    }),
  )
