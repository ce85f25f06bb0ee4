/**
 * One etcd request as an Effect: a gRPC deadline from the Effect `Clock` (so a request to
 * an unreachable or silent etcd never hangs), and the etcd3 client's errors sorted into the
 * few outcomes the `Store` distinguishes.
 */
import { Data, Effect } from "effect"
import type { KVClient } from "etcd3"
import { InvalidRequest, Unavailable } from "../StoreError.ts"
import { etcd3 } from "./etcd3.ts"

/** gRPC call options, as the etcd3 client takes them (without a direct @grpc/grpc-js import). */
export type CallOptions = NonNullable<Parameters<KVClient["range"]>[1]>

/** etcd said the lease does not exist: the caller decides what that means. */
export class LeaseNotFound extends Data.TaggedError("LeaseNotFound") {}

/** etcd said the requested revision was compacted away. */
export class RevisionCompacted extends Data.TaggedError("RevisionCompacted") {}

/** etcd said the requested revision is later than its current one. */
export class RevisionInFuture extends Data.TaggedError("RevisionInFuture") {}

export type EtcdFailure =
  | Unavailable
  | InvalidRequest
  | LeaseNotFound
  | RevisionCompacted
  | RevisionInFuture

const messageOf = (error: unknown): string =>
  error instanceof Error ? error.message : String(error)

/** Sorts an etcd3 / gRPC error into what the `Store` can report. */
export const classify = (operation: string, error: unknown): EtcdFailure => {
  const message = messageOf(error)
  if (
    error instanceof etcd3.EtcdLeaseInvalidError ||
    message.includes("requested lease not found")
  ) {
    return new LeaseNotFound()
  }
  if (message.includes("required revision has been compacted")) return new RevisionCompacted()
  if (message.includes("required revision is a future revision")) return new RevisionInFuture()
  if (
    message.includes("request is too large") ||
    error instanceof etcd3.GRPCResourceExhastedError
  ) {
    return new InvalidRequest({ detail: `${operation}: ${message}` })
  }
  if (
    error instanceof etcd3.GRPCUnavailableError ||
    error instanceof etcd3.GRPCDeadlineExceededError ||
    error instanceof etcd3.GRPCCancelledError ||
    error instanceof etcd3.GRPCAbortedError ||
    error instanceof etcd3.GRPCInternalError ||
    error instanceof etcd3.GRPCUnknownError ||
    error instanceof etcd3.ClientClosedError
  ) {
    return new Unavailable({ detail: `${operation}: ${message}` })
  }
  // Anything else (no leader, an alarm such as "no space", a refused permission) also
  // means the store cannot serve this request now; the detail keeps etcd's words.
  return new Unavailable({ detail: `${operation}: ${message}` })
}

/**
 * Runs one etcd request with a gRPC deadline `timeoutMs` from now, mapping its failure.
 * The deadline is the only timer: grpc-js fails the call with DEADLINE_EXCEEDED when it
 * passes, whether the channel is connecting, the server is silent or the answer is slow,
 * and etcd3 adds nothing that could wait without a call in flight (no auth, our run-once
 * policy). An Effect time-out on top cost a measurable share of a loopback request.
 */
export const call = <A>(
  operation: string,
  timeoutMs: number,
  run: (options: CallOptions) => Promise<A>,
): Effect.Effect<A, EtcdFailure> =>
  Effect.clockWith((clock) =>
    Effect.tryPromise({
      try: () => run({ deadline: clock.currentTimeMillisUnsafe() + timeoutMs }),
      catch: (error) => classify(operation, error),
    }),
  )
