/**
 * The takeover server's decision on a resume request, as a pure function: the session and
 * proof are checked first, then the counter (replay), then each connection's
 * acknowledgement is compared with the checkpoint. The outcome is either
 * the plan to recreate every connection at its exact byte, or a typed refusal.
 *
 * @since 0.1.0
 */
import { Result } from "effect"
import * as Checkpoint from "./Checkpoint.ts"
import type { RefusalReason } from "./CheckpointError.ts"
import * as Proof from "./Proof.ts"

/** What a client presents to resume its session. @since 0.1.0 @category models */
export interface Request {
  readonly sessionId: string
  /** Raised by the client with every attempt; accepted only above every earlier one. */
  readonly counter: number
  /** Per connection of the bundle: the next byte the client expects from the server. */
  readonly acks: Readonly<Record<string, number>>
  readonly proof: Uint8Array
}

/** @since 0.1.0 @category models */
export interface Plan {
  /** Per connection: where to resume. */
  readonly resumes: Readonly<Record<string, Checkpoint.Resume>>
  /** The checkpoint to adopt: the client's acknowledgements recorded, the counter used up. */
  readonly checkpoint: Checkpoint.Checkpoint
}

/** @since 0.1.0 @category models */
export interface Refusal {
  readonly reason: RefusalReason
  readonly detail: string
}

/** The resume-attempt counter's bound (the client library stops long before). @since 0.1.0 @category limits */
export const counterMax = 2 ** 31

/**
 * Decides a resume request against the latest checkpoint and the session's secret.
 *
 * @since 0.1.0
 * @category decisions
 */
export const evaluate = (
  checkpoint: Checkpoint.Checkpoint,
  secret: Uint8Array,
  request: Request,
): Result.Result<Plan, Refusal> => {
  if (request.sessionId !== checkpoint.bundleId)
    return Result.fail({ reason: "WrongSession", detail: "the checkpoint is of another session" })
  if (!Number.isSafeInteger(request.counter) || request.counter < 1 || request.counter > counterMax)
    return Result.fail({
      reason: "WrongSession",
      detail: `counter ${request.counter} out of range`,
    })
  if (!Proof.verify(secret, request.sessionId, request.counter, request.acks, request.proof))
    return Result.fail({
      reason: "WrongSession",
      detail: "the proof does not verify for this session",
    })
  if (request.counter <= checkpoint.resumeCounter)
    return Result.fail({
      reason: "ReplayedProof",
      detail: `counter ${request.counter} not above ${checkpoint.resumeCounter}, already used`,
    })
  const names = Object.keys(request.acks)
  if (names.length !== checkpoint.connections.length)
    return Result.fail({
      reason: "WrongSession",
      detail: "the acknowledgements do not name the bundle's connections",
    })
  const resumes: Record<string, Checkpoint.Resume> = {}
  const connections: Array<Checkpoint.ConnectionState> = []
  for (const connection of checkpoint.connections) {
    const ack = request.acks[connection.name]
    if (ack === undefined)
      return Result.fail({
        reason: "WrongSession",
        detail: `no acknowledgement for connection ${connection.name}`,
      })
    const compared = Checkpoint.compare(connection, ack)
    if (Result.isFailure(compared)) return Result.fail(compared.failure)
    resumes[connection.name] = compared.success
    connections.push(acknowledged(connection, compared.success.resumeSeq))
  }
  return Result.succeed({
    resumes,
    checkpoint: { ...checkpoint, resumeCounter: request.counter, connections },
  })
}

/**
 * The connection as the takeover recreates it: everything below the client's
 * acknowledgement is delivered; from there it is sent again.
 */
const acknowledged = (
  connection: Checkpoint.ConnectionState,
  ack: number,
): Checkpoint.ConnectionState => {
  if (connection.coverage === "window") {
    const window = Checkpoint.windowFrom(connection, ack)
    return { ...connection, ackedSeqSource: ack, window }
  }
  // The object source sends again from the acknowledgement.
  return { ...connection, ackedSeqSource: ack, currentSeqSource: ack }
}
