/**
 * The steps of opening and resuming a session that `ObjectSession`, `ObjectBundle` and
 * `DuplexSession` take alike: what a new session is given, the one channel a client opens,
 * a takeover's accounting at the server, how a client takes a refusal, and the gap it reports
 * once resumed.
 */
import type { Connection, Options } from "@understudy/transport"
import { type Cause, Effect, Metric, type Queue, type Scope } from "effect"
import type * as Checkpoint from "../Checkpoint.ts"
import { type CheckpointConfigError, TakeoverRefused } from "../CheckpointError.ts"
import type { Ownership } from "../CheckpointStore.ts"
import * as Message from "../Message.ts"
import * as Metrics from "../Metrics.ts"
import type { ClientOptions, ServerEvent } from "../ObjectSession.ts"
import * as Proof from "../Proof.ts"
import type * as Resume from "../Resume.ts"
import * as Durations from "./durations.ts"

/** A client's connection to the server. */
export type Conn = Connection.Connection<Message.Message>
/** What arrived on it, read by one fiber. */
export type Inbox = Queue.Queue<Message.Message, Cause.Done>

/** A takeover this server claimed, evaluated and adopted, handed to the session's protocol. */
export interface Resuming {
  /** The client's resume secret. */
  readonly secret: Uint8Array
  readonly ownership: Ownership
  readonly plan: Resume.Plan
  readonly remote: Checkpoint.Endpoint
  /** Run once the session is served again (`Resumed` sent): records the takeover's duration. */
  readonly served: Effect.Effect<void>
}

/**
 * The server side of a protocol `ObjectSession.serve` hands sessions to (bundles, duplex
 * sessions): a new session's `Open`, and a takeover. Each runs in its connection's scope.
 */
export interface ProtocolServer {
  readonly open: (
    connection: Conn,
    inbox: Inbox,
    hello: Message.Control & { _tag: "Open" },
    remote: Checkpoint.Endpoint,
  ) => Effect.Effect<void, unknown, Scope.Scope>
  readonly resumed: (
    connection: Conn,
    inbox: Inbox,
    resuming: Resuming,
  ) => Effect.Effect<void, unknown, Scope.Scope>
}

/** A new session's identity: its id, the client's resume secret, the server's first sequence number. */
export const newSession = () => ({
  sessionId: Proof.newSessionId(),
  secret: Proof.newSecret(),
  isn: Proof.newInitialSeq(),
})

/**
 * The client's initial sequence number on `channel`, when its `Open` names that channel and
 * no other; `undefined` otherwise (the server refuses it).
 */
export const soleChannel = (
  hello: Message.Control & { _tag: "Open" },
  channel: string,
): number | undefined =>
  hello.channels.length === 1 && hello.channels[0]!.name === channel
    ? hello.channels[0]!.initialSeq
    : undefined

/**
 * A takeover done at this server: counted as resumed with the bytes it sends again, logged,
 * and told to the server's events. `offset`: where the session's stream resumed.
 */
export const tookOver = (
  emit: (event: ServerEvent) => Effect.Effect<unknown>,
  taken: { readonly sessionId: string; readonly offset: number; readonly bytesResent: number },
) =>
  Effect.gen(function* () {
    yield* Metric.update(Metric.withAttributes(Metrics.takeovers, { outcome: "resumed" }), 1)
    yield* Metric.update(Metrics.bytesResent, taken.bytesResent)
    yield* Effect.logInfo("checkpoint: took over").pipe(
      Effect.annotateLogs({ offset: taken.offset, bytesResent: taken.bytesResent }),
    )
    yield* emit({ _tag: "TakenOver", ...taken })
  })

/** A client's settings: see {@link clientSettings}. */
export interface ClientSettings {
  readonly retryMs: number
  readonly attemptsMax: number
  readonly ackEveryBytes: number
  readonly connectOptions: Options.ConnectionOptions<Message.Message>
  readonly clientIsn: number
}

/**
 * What every client reads from its options before it connects (a bad duration is a
 * `CheckpointConfigError`), and its own first sequence number.
 */
export const clientSettings = (
  options: ClientOptions,
): Effect.Effect<ClientSettings, CheckpointConfigError> =>
  Effect.gen(function* () {
    const { retryDelay } = yield* Durations.millis(options, ["retryDelay"])
    return {
      retryMs: retryDelay ?? 50,
      attemptsMax: options.attemptsMax ?? 100,
      ackEveryBytes: options.ackEveryBytes ?? 256 * 1024,
      connectOptions: {
        codec: Message.codec,
        ...(options.clusterKey === undefined ? {} : { clusterKey: options.clusterKey }),
      },
      clientIsn: Proof.newInitialSeq(),
    }
  })

/**
 * A client's answer to `Refused`: a server that does not hold the session now (`Owned`) or is
 * full (`Overloaded`) is left, so the next server of the service may take it (`close`); any
 * other refusal fails the session.
 */
export const refused = <A>(
  message: Message.Message & { _tag: "Refused" },
  sessionId: string | undefined,
  close: Effect.Effect<A>,
): Effect.Effect<A, TakeoverRefused> =>
  message.reason === "Owned" || message.reason === "Overloaded"
    ? close
    : Effect.fail(
        new TakeoverRefused({
          reason: message.reason,
          sessionId: sessionId ?? "",
          detail: message.detail,
        }),
      )

/** A client gave up: `attemptsMax` connections, and no server served the session. */
export const attemptsExhausted = (attemptsMax: number, sessionId: string | undefined) =>
  new TakeoverRefused({
    reason: "AttemptsExhausted",
    sessionId: sessionId ?? "",
    detail: `${attemptsMax} connection attempts`,
  })

/**
 * A client's takeover once its stream flows again: the gap since it lost its server, in the
 * histogram and the log (with `annotations`). Gives the gap, for the caller's `onResumed`.
 */
export const resumedAfter = (lostAtMs: number, annotations: Record<string, unknown>) =>
  Effect.gen(function* () {
    const gapMs = (yield* Effect.clockWith((clock) => clock.currentTimeMillis)) - lostAtMs
    yield* Metric.update(Metrics.takeoverGapMs, gapMs)
    yield* Effect.logInfo("checkpoint: resumed").pipe(
      Effect.annotateLogs({ ...annotations, gapMs }),
    )
    return gapMs
  })
