/**
 * A two-way session: the client's application writes bytes to the server and reads the
 * server's bytes back as one continuous, ordered, exactly-once stream in each direction,
 * across takeovers (an Effect `Stream` and `Sink`, or a Node `Duplex`).
 *
 * Both directions use the session layer's sequence numbers, cumulative acknowledgements and
 * windows (`Sequence`), with `window` coverage (the checkpoint holds every byte the peer has
 * not acknowledged):
 * - server → client: the server writes a checkpoint holding its unacknowledged window and
 *   its application's state before any byte of it leaves (write-ahead), so a takeover
 *   server sends again exactly what the client has not acknowledged;
 * - client → server: the server acknowledges the client's bytes only once a checkpoint
 *   holds their effect (the application's state after reading them). The client keeps
 *   every unacknowledged byte and, after a takeover, sends again from the position the
 *   checkpoint records (`Resumed.receiveNext`).
 *
 * The server's application is a pure step (`Handler`): state and bytes read → new state and
 * bytes to write. That is what makes its side exactly-once: the session layer checkpoints
 * the state with both positions at one consistent point, and the takeover server goes on
 * from there. An application whose state cannot be written down cannot be taken over.
 *
 * Served by `ObjectSession.serve` when given a `duplex` handler (one listener for objects,
 * bundles and duplex sessions); the client side is `connect`.
 *
 * @since 0.1.0
 */
import { Duplex } from "node:stream"
import { Machine as MachineLib } from "@understudy/machine"
import { Address, Transport, type TransportError } from "@understudy/transport"
import { type Cause, Deferred, Effect, Option, Queue, type Scope, Sink, Stream } from "effect"
import * as Checkpoint from "./Checkpoint.ts"
import { type CheckpointConfigError, TakeoverRefused } from "./CheckpointError.ts"
import type { CheckpointStore, Ownership } from "./CheckpointStore.ts"
import * as Contributor from "./Contributor.ts"
import * as Discovery from "./Discovery.ts"
import * as Handshake from "./internal/handshake.ts"
import * as Machine from "./Machine.ts"
import type * as Message from "./Message.ts"
import type { ClientOptions, ServerEvent } from "./ObjectSession.ts"

/** The application protocol recorded in checkpoints. @since 0.1.0 @category models */
export const protocol = Machine.duplexProtocol

/** The checkpoint block of the server's application (bundle-wide). @since 0.1.0 @category models */
export const layer = "duplex"

/**
 * The server's application, as a pure step: no I/O, no clock. `receive` is given the
 * client's bytes in order, each once (at most `stepInputBytesMax` at a time), and returns
 * its new state and what to write back (at most `stepBytesMax`). `end` runs once when the
 * client ends its writes; the server's stream ends after its output.
 *
 * @example
 * ```ts
 * import { DuplexSession } from "@understudy/checkpoint"
 *
 * // Echo, counting bytes.
 * const echo: DuplexSession.Handler<number> = {
 *   initial: 0,
 *   receive: (count, bytes) => ({ state: count + bytes.length, write: bytes }),
 *   encode: (count) => new TextEncoder().encode(String(count)),
 *   decode: (block) => Number(new TextDecoder().decode(block)),
 * }
 * ```
 * @since 0.1.0
 * @category models
 */
export interface Handler<S> {
  readonly initial: S
  readonly receive: (
    state: S,
    bytes: Uint8Array,
  ) => { readonly state: S; readonly write?: Uint8Array | undefined }
  readonly end?: (state: S) => Uint8Array | undefined
  /** The state as a checkpoint block (at most `stateBytesMax`). */
  readonly encode: (state: S) => Uint8Array
  /** Back from a block; undefined (or a throw) refuses the takeover. */
  readonly decode: (block: Uint8Array) => S | undefined
}

/**
 * Inputs queued for one session's machine: past it, what offers waits. The server's queue
 * holds the client's messages read and the connection's end (its reader waits); a planned
 * hand-off is held aside and only wakes the driver. The client's holds the application's
 * writes and its end (they wait), and the current connection's messages and its loss (its
 * reader waits).
 */
const inputsMax = 1_024

/** Bytes the handler reads per step. @since 0.1.0 @category limits */
export const stepInputBytesMax: number = Machine.stepInputBytesMax
/** Bytes one step may write; more ends the session (a defect of the handler). @since 0.1.0 @category limits */
export const stepBytesMax: number = Machine.stepBytesMax
/** The handler's encoded state. @since 0.1.0 @category limits */
export const stateBytesMax = 64 * 1024

type Conn = Handshake.Conn
type Inbox = Handshake.Inbox

/** What the duplex server shares with `ObjectSession.serve`. @internal */
export interface ServerContext {
  readonly checkpoints: CheckpointStore["Service"]
  // biome-ignore lint/suspicious/noExplicitAny: the handler's state type is the caller's
  readonly handler: Handler<any>
  /** Bytes in flight unacknowledged, each way (at most the checkpoint's window bound). */
  readonly windowBytesMax: number
  readonly segmentBytes: number
  readonly local: Checkpoint.Endpoint
  readonly emit: (event: ServerEvent) => Effect.Effect<unknown>
  readonly refuse: (
    connection: Conn,
    reason: TakeoverRefused["reason"],
    detail: string,
  ) => Effect.Effect<void>
  /** Planned hand-off listeners: called with the address the clients go to first. */
  readonly handoffs: Set<(to: string | undefined) => void>
}

/** The app block: a flag byte (input ended) and the handler's state. */
const encodeApp = (handler: Handler<unknown>, held: Machine.Snapshot): Uint8Array => {
  const state = handler.encode(held.app)
  if (state.length > stateBytesMax)
    throw new Error(`handler state of ${state.length} bytes, above ${stateBytesMax}`)
  const block = new Uint8Array(1 + state.length)
  block[0] = held.inputEnded ? 1 : 0
  block.set(state, 1)
  return block
}

const decodeApp = (
  handler: Handler<unknown>,
  block: Uint8Array | undefined,
): { readonly app: unknown; readonly inputEnded: boolean } | undefined => {
  if (block === undefined || block.length < 1 || block[0]! > 1) return undefined
  try {
    const app = handler.decode(block.subarray(1))
    return app === undefined ? undefined : { app, inputEnded: block[0] === 1 }
  } catch {
    return undefined
  }
}

/** The duplex server's handlers, each run in a connection's scope. @internal */
export type DuplexServer = Handshake.ProtocolServer

type MachineInput = MachineLib.Input<Message.Message, Machine.DuplexCommand>
const command = (c: Machine.DuplexCommand): MachineInput => MachineLib.command(c, 0)

/** One session as its server drives it: the machine, and what its checkpoints hold. */
interface Driven {
  readonly bundle: Contributor.Bundle
  readonly secret: Uint8Array
  readonly remote: Checkpoint.Endpoint
  readonly machine: Machine.DuplexServer
  state: Machine.DuplexState
  /** What the next checkpoint of the bundle holds: the latest `WriteCheckpoint`'s. */
  toWrite: Machine.Snapshot
}

/**
 * The duplex server: the session's protocol is `Machine.duplexServer`; this drives it over
 * the connection and the checkpoint store.
 *
 * @internal
 */
export const makeServer = (context: ServerContext): DuplexServer => {
  const { checkpoints, handler } = context
  // The application writes while less than a window is unacknowledged, so one step may go
  // past it: a checkpoint's window holds at most a window and a step.
  const windowBytesMax = Math.min(
    context.windowBytesMax,
    Checkpoint.limits.windowBytesMax - stepBytesMax,
  )

  /** The session layer's and the application's part in checkpoints, at one consistent point. */
  const contributor = (driven: Driven): Contributor.Contributor => ({
    layer: "session",
    append: (draft) =>
      Effect.sync(() => {
        const held = driven.toWrite
        const next = Contributor.putConnection(draft, {
          name: "data",
          role: "data",
          transport: "tcp",
          source: context.local,
          destination: driven.remote,
          initialSeqSource: held.initialSeqSource,
          initialSeqDestination: held.initialSeqDestination,
          currentSeqSource: held.currentSeqSource,
          currentSeqDestination: held.currentSeqDestination,
          ackedSeqSource: held.ackedSeqSource,
          // Write-ahead: the checkpoint holds everything written, so all of it may leave.
          sendHorizonSeq: held.currentSeqSource,
          coverage: "window",
          window: held.window,
          layers: {},
        })
        return Contributor.putLayer(
          Contributor.putLayer(next, "session", driven.secret),
          layer,
          encodeApp(handler, held),
        )
      }),
    // `resumed` builds the session from its checkpoint before registering.
    restore: () => Effect.void,
    ready: Effect.void,
  })

  /** The machine started, its contributor registered: its first message is not sent yet. */
  const start = (
    id: string,
    secret: Uint8Array,
    remote: Checkpoint.Endpoint,
    from: Machine.DuplexStart,
  ) =>
    Effect.gen(function* () {
      const machine = Machine.duplexServer({
        handler,
        windowBytesMax,
        segmentBytes: context.segmentBytes,
        start: from,
      })
      const first = machine.init({ self: "server", peers: [Machine.client], nowMs: 0 })
      const driven: Driven = {
        bundle: Contributor.makeBundle(id, protocol),
        secret,
        remote,
        machine,
        state: first.state,
        toWrite: Machine.snapshot(first.state),
      }
      yield* driven.bundle.register(contributor(driven))
      return { driven, outputs: first.outputs }
    })

  /**
   * Serves the session on `connection` until it ends, the client goes, or it is fenced:
   * steps the machine with what arrives and does what it answers, a checkpoint write before
   * anything else.
   */
  const run = (
    driven: Driven,
    ownership: Ownership,
    connection: Conn,
    inbox: Inbox,
    outputs: ReadonlyArray<Machine.DuplexOutput>,
  ) =>
    Effect.gen(function* () {
      const inputs = yield* Queue.bounded<MachineInput>(inputsMax)
      // A planned hand-off asked for, held here: the queue may be full, so what is offered
      // to it only wakes the driver (and may be dropped); the latest ask is the one stepped.
      let handoff: MachineInput | undefined
      const onHandoff = (to: string | undefined) => {
        handoff = command({ _tag: "Handoff", to })
        Queue.offerUnsafe(inputs, handoff)
      }
      const handOff = () => {
        const input = handoff
        handoff = undefined
        return input === undefined ? Effect.succeed(false) : step(input)
      }
      yield* Effect.acquireRelease(
        Effect.sync(() => context.handoffs.add(onHandoff)),
        () => Effect.sync(() => context.handoffs.delete(onHandoff)),
      )
      yield* Effect.forkScoped(
        Stream.fromQueue(inbox).pipe(
          Stream.runForEach((message) =>
            Queue.offer(inputs, MachineLib.receive(Machine.client, message, 0)),
          ),
          Effect.andThen(Queue.offer(inputs, command({ _tag: "ConnectionEnded" }))),
        ),
      )
      /** Does what a step answered; `true` once the session is over here. */
      const perform = (
        outputs: ReadonlyArray<Machine.DuplexOutput>,
      ): Effect.Effect<boolean, unknown> =>
        Effect.gen(function* () {
          for (const output of outputs) {
            if (output._tag === "Send") yield* connection.send(output.message)
            else if (output._tag === "Emit") {
              const event = output.event
              switch (event._tag) {
                case "WriteCheckpoint": {
                  driven.toWrite = event.snapshot
                  const written = yield* checkpoints.take(driven.bundle, ownership, "bytes")
                  yield* context.emit({
                    _tag: "Checkpointed",
                    sessionId: driven.bundle.id,
                    reason: "bytes",
                    bytes: written.bytes,
                    generation: written.checkpoint.generation,
                  })
                  if (yield* step(command({ _tag: "Checkpointed" }))) return true
                  break
                }
                case "Finished":
                  yield* checkpoints.finish(driven.bundle.id)
                  yield* context.emit({
                    _tag: "Finished",
                    sessionId: driven.bundle.id,
                    bytes: event.bytes,
                  })
                  return true
                case "HandedOff":
                  // The session given up for the next server to claim at once.
                  yield* checkpoints.release(driven.bundle.id)
                  yield* context.emit({
                    _tag: "HandedOff",
                    sessionId: driven.bundle.id,
                    to: event.to,
                  })
                  return true
                case "Broken":
                  return yield* Effect.fail(event.reason)
                case "Defect":
                  return yield* Effect.die(new Error(event.message))
              }
            }
          }
          return false
        })
      const step = (input: MachineInput): Effect.Effect<boolean, unknown> => {
        const next = driven.machine.step(driven.state, input)
        driven.state = next.state
        return next.outputs.length === 0 ? Effect.succeed(false) : perform(next.outputs)
      }
      if (yield* perform(outputs)) return
      // What arrived together is stepped in one go (one wake-up of this fiber, not one each).
      // A hand-off's wake-up in the queue steps the held hand-off (if not stepped yet); one
      // whose wake-up a full queue dropped is stepped after the batch it came behind.
      while (true) {
        for (const input of yield* Queue.takeAll(inputs))
          if (
            yield* input._tag === "Command" && input.command._tag === "Handoff"
              ? handOff()
              : step(input)
          )
            return
        if (yield* handOff()) return
      }
    }).pipe(
      Effect.scoped,
      // The client went away mid-session: its checkpoint stays, the session is free for
      // whichever server it reconnects to (a no-op when a takeover already fenced us).
      Effect.onExit((exit) =>
        exit._tag === "Success" ? Effect.void : checkpoints.release(driven.bundle.id),
      ),
    )

  const open: DuplexServer["open"] = (connection, inbox, hello, remote) =>
    Effect.gen(function* () {
      const clientIsn = Handshake.soleChannel(hello, "data")
      if (clientIsn === undefined)
        return yield* context.refuse(connection, "WrongSession", "expected one data channel")
      const { sessionId, secret, isn } = Handshake.newSession()
      const { driven, outputs } = yield* start(sessionId, secret, remote, {
        _tag: "Open",
        sessionId,
        secret,
        initialSeq: isn,
        clientInitialSeq: clientIsn,
      })
      const ownership = yield* checkpoints.open(driven.bundle)
      // `Opened` goes out once the session's first checkpoint is written.
      yield* run(driven, ownership, connection, inbox, outputs).pipe(
        Effect.annotateLogs({ sessionId }),
      )
    })

  const resumed: DuplexServer["resumed"] = (
    connection,
    inbox,
    { secret, ownership, plan, remote, served },
  ) =>
    Effect.gen(function* () {
      const checkpoint = ownership.latest()
      const data = checkpoint.connections.find((c) => c.name === "data")
      const app = decodeApp(handler, checkpoint.layers[layer])
      const at = plan.resumes.data
      if (data === undefined || data.coverage !== "window" || app === undefined || !at) {
        yield* checkpoints.release(checkpoint.bundleId)
        return yield* context.refuse(connection, "WrongSession", "not a duplex checkpoint")
      }
      // Recreated unready: nothing sent before `Resumed`, the machine's first message.
      const { driven, outputs } = yield* start(checkpoint.bundleId, secret, remote, {
        _tag: "Resume",
        checkpoint: {
          initialSeqSource: data.initialSeqSource,
          ackedSeqSource: data.ackedSeqSource,
          currentSeqSource: data.currentSeqSource,
          window: data.window ?? new Uint8Array(0),
          initialSeqDestination: data.initialSeqDestination,
          currentSeqDestination: data.currentSeqDestination,
          app: app.app,
          inputEnded: app.inputEnded,
        },
        sendHorizonSeq: data.sendHorizonSeq,
        resumeSeq: at.resumeSeq,
      })
      yield* Contributor.restoreAll(driven.bundle, checkpoint)
      yield* Handshake.tookOver(context.emit, {
        sessionId: checkpoint.bundleId,
        offset: at.resumeSeq - data.initialSeqSource,
        bytesResent: at.resendBytes,
      })
      // Ready: `Resumed` (the client sends again from what the checkpoint has read), then served.
      const [resumedMessage, ...rest] = outputs
      if (resumedMessage?._tag === "Send") yield* connection.send(resumedMessage.message)
      yield* served
      yield* run(driven, ownership, connection, inbox, rest)
    })

  return { open, resumed }
}

/** @since 0.1.0 @category models */
export interface ConnectOptions extends ClientOptions {
  /** Told of each takeover: the gap in ms and where each direction resumed. */
  readonly onResumed?: (event: {
    readonly gapMs: number
    readonly server: string
    /** Bytes of the server's stream read before the takeover. */
    readonly readOffset: number
    /** Bytes of the client's stream the takeover server has read (sent again from there). */
    readonly writeOffset: number
  }) => void
}

/** @since 0.1.0 @category models */
export interface DuplexClient {
  /** The session id, once the first server opened it. */
  readonly sessionId: () => string | undefined
  /** The server's bytes, each once, in order, across takeovers. Read it once. */
  readonly read: Stream.Stream<Uint8Array, TakeoverRefused>
  /** Writes bytes to the server; waits while the window is full. */
  readonly write: (bytes: Uint8Array) => Effect.Effect<void, TakeoverRefused>
  /** No more writes: the server's stream ends after its answer to the last byte. */
  readonly end: Effect.Effect<void, TakeoverRefused>
  /** `write` for each chunk, then `end`. */
  readonly sink: Sink.Sink<void, Uint8Array, never, TakeoverRefused>
}

const handshakeMs = 10_000

type ClientInput = MachineLib.Input<Message.Message, Machine.DuplexClientCommand>
const clientCommand = (c: Machine.DuplexClientCommand): ClientInput => MachineLib.command(c, 0)

type Verdict = "go" | "close" | "complete"

/**
 * What the client's machine is stepped with, and from which connection (0: the application):
 * a connection's messages that arrived together, or one command of the application.
 */
interface Queued {
  readonly attempt: number
  readonly inputs: ReadonlyArray<ClientInput>
}

/**
 * Opens a duplex session on the service and keeps it across takeovers until the server's
 * stream ends, the scope closes, or a takeover is refused (the stream's error and every
 * later write's). The session's protocol is `Machine.duplexClient`; this drives it over one
 * connection after another, stepping it from one fiber at a time.
 *
 * @since 0.1.0
 * @category constructors
 */
export const connect = (
  options: ConnectOptions,
): Effect.Effect<DuplexClient, CheckpointConfigError, Transport.Transport | Scope.Scope> =>
  Effect.gen(function* () {
    const { retryMs, attemptsMax, ackEveryBytes, connectOptions, clientIsn } =
      yield* Handshake.clientSettings(options)
    const transport = yield* Transport.Transport
    const machine = Machine.duplexClient({ initialSeq: clientIsn, ackEveryBytes })
    let state = machine.init({ self: "client", peers: [Machine.server], nowMs: 0 }).state
    // The application's writes and the current connection's messages, in one order.
    const inputs = yield* Queue.bounded<Queued>(inputsMax)
    /** Bytes the application wrote that the machine has not taken yet. */
    let queuedBytes = 0
    let ended = false
    const out = yield* Queue.bounded<Uint8Array, TakeoverRefused | Cause.Done>(64)
    const fatal = yield* Deferred.make<never, TakeoverRefused>()
    let signal = Deferred.makeUnsafe<void>()
    const wake = () => {
      const previous = signal
      signal = Deferred.makeUnsafe<void>()
      Deferred.doneUnsafe(previous, Effect.void)
    }
    let handedTo: Address.StreamAddress | undefined
    let attempts = 0
    const now = Effect.clockWith((clock) => clock.currentTimeMillis)
    const sessionId = () => state.session?.id

    /** One connection: true when the session is complete, false when the connection was lost. */
    const attempt = (address: Address.StreamAddress, lostAtMs: number | undefined) =>
      Effect.gen(function* () {
        const connection = yield* transport.connect(address, connectOptions)
        const current = ++attempts
        const ready = yield* Deferred.make<void>()
        yield* Effect.forkScoped(
          Stream.runForEachArray(connection.messages, (messages) =>
            Queue.offer(inputs, {
              attempt: current,
              inputs: messages.map((message) => MachineLib.receive(Machine.server, message, 0)),
            }),
          ).pipe(
            Effect.ignore,
            Effect.andThen(
              Queue.offer(inputs, {
                attempt: current,
                inputs: [clientCommand({ _tag: "Lost" })],
              }),
            ),
          ),
        )
        /** Steps the machine and does what it answers: "go" on, "close" the connection, "complete". */
        const step = (
          input: ClientInput,
        ): Effect.Effect<
          Verdict,
          TakeoverRefused | TransportError.ConnectionClosed | TransportError.CodecError
        > =>
          Effect.gen(function* () {
            if (input._tag === "Command" && input.command._tag === "Write")
              queuedBytes -= input.command.bytes.length
            const { acked, windowBytesMax } = state.sender
            const next = machine.step(state, input)
            state = next.state
            // Writers wait for room: it grows with an acknowledgement or a larger window.
            if (state.sender.acked !== acked || state.sender.windowBytesMax !== windowBytesMax)
              wake()
            for (const output of next.outputs) {
              if (output._tag === "Send") {
                yield* connection.send(output.message)
                continue
              }
              if (output._tag !== "Emit") continue
              const event = output.event
              switch (event._tag) {
                case "Deliver": {
                  // Counted as read only once the application has it: an offer cut short by
                  // the scope's close leaves them to be sent again.
                  yield* Queue.offer(out, event.bytes)
                  const taken = yield* step(clientCommand({ _tag: "Delivered" }))
                  if (taken !== "go") return taken
                  break
                }
                case "Ready":
                  yield* Deferred.succeed(ready, undefined)
                  break
                case "Resumed":
                  if (lostAtMs !== undefined) {
                    const gapMs = yield* Handshake.resumedAfter(lostAtMs, {
                      sessionId: sessionId(),
                    })
                    options.onResumed?.({
                      gapMs,
                      server: Address.format(address),
                      readOffset: event.readOffset,
                      writeOffset: event.writeOffset,
                    })
                  }
                  break
                case "Close":
                  return "close" as const
                case "Refused":
                  return yield* Handshake.refused(
                    event.message,
                    sessionId(),
                    Effect.succeed<Verdict>("close"),
                  )
                case "ResumeRefused":
                  return yield* new TakeoverRefused({
                    reason: event.reason,
                    sessionId: sessionId() ?? "",
                    detail: event.detail,
                  })
                case "HandedOff": {
                  const to = event.to === undefined ? undefined : Address.parseStream(event.to)
                  if (to !== undefined && !(to instanceof Address.InvalidAddress)) handedTo = to
                  break
                }
                case "Complete":
                  yield* Queue.end(out)
                  return "complete" as const
              }
            }
            return "go" as const
          })
        const run = Effect.gen(function* () {
          if ((yield* step(clientCommand({ _tag: "Connected" }))) !== "go") return false
          while (true) {
            // One item at a time: what follows a connection's end (the application's writes)
            // stays queued for the next connection; the rest of this connection's messages
            // after its end go with it.
            const next = yield* Queue.take(inputs)
            // What an earlier connection left behind is dropped with it.
            if (next.attempt !== 0 && next.attempt !== current) continue
            for (const input of next.inputs) {
              const verdict = yield* step(input)
              if (verdict !== "go") return verdict === "complete"
              if (input._tag === "Command" && input.command._tag === "Lost") return false
            }
          }
        })
        // No answer to the handshake: this connection is given up (the next may do).
        const unanswered = Deferred.await(ready).pipe(
          Effect.timeoutOption(handshakeMs),
          Effect.flatMap((answered) =>
            answered._tag === "None" ? Effect.succeed(false) : Effect.never,
          ),
        )
        return yield* Effect.raceFirst(run, unanswered)
      }).pipe(
        Effect.scoped,
        Effect.withSpan("checkpoint.client.connect", {
          attributes: { server: Address.format(address), resume: state.session !== undefined },
        }),
        Effect.catchTags({
          ConnectError: () => Effect.succeed(false),
          HandshakeError: () => Effect.succeed(false),
          ConnectionClosed: () => Effect.succeed(false),
          CodecError: () => Effect.succeed(false),
        }),
        // Complete once the server's `Finish` was read, even if the connection broke after it.
        Effect.map((done) => done || state.complete),
        // Whatever ended it, the connection is gone.
        Effect.tap(() =>
          Effect.sync(() => {
            state = machine.step(state, clientCommand({ _tag: "Lost" })).state
          }),
        ),
      )

    const loop = Effect.gen(function* () {
      let lostAtMs: number | undefined
      for (let tried = 0; tried < attemptsMax; tried++) {
        const address =
          handedTo ?? Option.getOrUndefined(yield* Discovery.locate(options.service, tried))
        handedTo = undefined
        if (address !== undefined && (yield* attempt(address, lostAtMs))) return
        if (state.session !== undefined) lostAtMs ??= yield* now
        yield* Effect.sleep(retryMs)
      }
      return yield* Handshake.attemptsExhausted(attemptsMax, sessionId())
    })
    yield* Effect.forkScoped(
      loop.pipe(
        Effect.matchEffect({
          onFailure: (error) =>
            Queue.fail(out, error).pipe(Effect.andThen(Deferred.fail(fatal, error))),
          onSuccess: () => Queue.end(out),
        }),
      ),
    )

    const write = (bytes: Uint8Array) =>
      Effect.gen(function* () {
        if (ended) return yield* Effect.die(new Error("write after end"))
        // A copy: the caller may reuse its buffer.
        let rest = bytes.slice()
        while (rest.length > 0) {
          const room =
            state.sender.acked +
            Math.max(state.sender.windowBytesMax, 1) -
            state.written.end -
            queuedBytes
          if (room <= 0) {
            yield* Effect.raceFirst(
              Deferred.await(signal).pipe(Effect.timeoutOption(1_000)),
              Deferred.await(fatal),
            )
            continue
          }
          const chunk = rest.subarray(0, room)
          queuedBytes += chunk.length
          yield* Queue.offer(inputs, {
            attempt: 0,
            inputs: [clientCommand({ _tag: "Write", bytes: chunk })],
          })
          rest = rest.subarray(chunk.length)
        }
      })

    const end = Effect.suspend(() => {
      if (Deferred.isDoneUnsafe(fatal)) return Deferred.await(fatal)
      ended = true
      return Queue.offer(inputs, { attempt: 0, inputs: [clientCommand({ _tag: "End" })] }).pipe(
        Effect.asVoid,
      )
    })

    return {
      sessionId,
      read: Stream.fromQueue(out),
      write,
      end,
      sink: Sink.forEach(write).pipe(Sink.mapEffect(() => end)),
    } satisfies DuplexClient
  })

/**
 * A Node `Duplex` over a session: what is written goes to the server, what the server sends
 * is read; `end()` ends the client's writes. Runs with the services of the effect that
 * built it (its `Transport`, logger, tracer).
 *
 * @since 0.1.0
 * @category conversions
 */
export const toNodeDuplex = (client: DuplexClient): Effect.Effect<Duplex> =>
  Effect.gen(function* () {
    const readable = yield* Stream.toReadableStreamEffect(client.read)
    const services = yield* Effect.context<never>()
    const run = <A>(effect: Effect.Effect<A, TakeoverRefused>) =>
      Effect.runPromiseWith(services)(effect)
    const writable = new WritableStream<Uint8Array>({
      write: (chunk) => run(client.write(chunk)),
      close: () => run(client.end),
    })
    return Duplex.fromWeb({ readable, writable })
  })
