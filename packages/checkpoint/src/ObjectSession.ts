/**
 * The session backend for object transfers, over `@understudy/transport` TCP connections:
 * a client asks for an object by name; a server sends it with byte sequence numbers from a
 * random initial value, and checkpoints its session (source coverage: the object source
 * regenerates unacknowledged bytes) before it sends past its horizon. When the server dies
 * (its lease lapses) or hands off, the client reconnects to another server of the service,
 * presents its session id, a proof and its acknowledgement, and reads on: the bytes it
 * yields are the object, each once, in order, or a `TakeoverRefused` error.
 *
 * One bundle per session with one connection (`data`). The application protocol: the
 * client's first bytes are the object name; the server ends the object with `Finish`.
 *
 * @since 0.1.0
 */
import { open, readdir, stat } from "node:fs/promises"
import { isIPv4 } from "node:net"
import { join } from "node:path"
import { Address, type Connection, Transport } from "@understudy/transport"
import {
  type Cause,
  Clock,
  Deferred,
  type Duration,
  Effect,
  Metric,
  Option,
  PubSub,
  Queue,
  type Redacted,
  Result,
  type Scope,
  Stream,
} from "effect"
import type * as Checkpoint from "./Checkpoint.ts"
import {
  type CheckpointConfigError,
  CheckpointContributorFailed,
  type TakeoverRefused,
} from "./CheckpointError.ts"
import { CheckpointStore } from "./CheckpointStore.ts"
import * as Contributor from "./Contributor.ts"
import * as Discovery from "./Discovery.ts"
import * as DuplexSession from "./DuplexSession.ts"
import * as DatagramFlow from "./internal/datagramFlow.ts"
import * as Durations from "./internal/durations.ts"
import * as Handshake from "./internal/handshake.ts"
import * as Message from "./Message.ts"
import * as Metrics from "./Metrics.ts"
import * as ObjectBundle from "./ObjectBundle.ts"
import * as Policy from "./Policy.ts"
import * as Proof from "./Proof.ts"
import * as Resume from "./Resume.ts"
import * as Sequence from "./Sequence.ts"

/** The application protocol recorded in checkpoints. @since 0.1.0 @category models */
export const protocol = "understudy-object/1"

/** Where objects come from: a source that can read any byte again. @since 0.1.0 @category models */
export interface ObjectSource {
  /** The object's size, or undefined when there is none by that name. */
  readonly size: (name: string) => Effect.Effect<number | undefined>
  readonly read: (name: string, offset: number, length: number) => Effect.Effect<Uint8Array>
  /** The objects, for a bundle's `LIST` (none when absent). */
  readonly list?: Effect.Effect<ReadonlyArray<{ readonly name: string; readonly size: number }>>
}

const fileNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/

/**
 * The files of a directory as objects, by file name (no path: letters, digits, `.`, `_`,
 * `-`). A takeover re-reads the file at the client's offset: `source` coverage.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fileSource = (dir: string): ObjectSource => ({
  list: Effect.promise(async () => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
    const objects: Array<{ name: string; size: number }> = []
    for (const entry of entries) {
      if (objects.length >= Message.listMax) break
      if (!entry.isFile() || !fileNamePattern.test(entry.name)) continue
      const size = await stat(join(dir, entry.name)).then(
        (s) => s.size,
        () => undefined,
      )
      if (size !== undefined) objects.push({ name: entry.name, size })
    }
    return objects
  }),
  size: (name) =>
    fileNamePattern.test(name)
      ? Effect.promise(() =>
          stat(join(dir, name)).then(
            (s) => (s.isFile() ? s.size : undefined),
            () => undefined,
          ),
        )
      : Effect.succeed(undefined),
  read: (name, offset, length) =>
    Effect.promise(async () => {
      const handle = await open(join(dir, name), "r")
      try {
        const buffer = new Uint8Array(length)
        let done = 0
        while (done < length) {
          const { bytesRead } = await handle.read(buffer, done, length - done, offset + done)
          if (bytesRead === 0) break
          done += bytesRead
        }
        return buffer.subarray(0, done)
      } finally {
        await handle.close()
      }
    }),
})

/** @since 0.1.0 @category models */
export interface ServerOptions {
  readonly listen: Address.StreamAddress
  /** The cluster key; required unless `insecure`. */
  readonly clusterKey?: Redacted.Redacted<Uint8Array | string>
  readonly insecure?: boolean
  /**
   * When checkpoints are written: `{ everyBytes, every, objectBoundaries }` (`every` a
   * `Duration.Input`), decoded by `Policy.decode`. Default `Policy.defaultPolicy`.
   */
  readonly policy?: Policy.PolicyInput
  /** Bytes in flight unacknowledged. Default 4 MiB. */
  readonly windowBytesMax?: number
  /** Bytes per data frame. Default 64 KiB. */
  readonly segmentBytes?: number
  readonly sessionsMax?: number
  /**
   * How long a takeover waits for a previous owner's lease to lapse (a `Duration.Input`).
   * Default 3 × the lease TTL.
   */
  readonly claimWait?: Duration.Input
  /**
   * Serves two-way sessions (`DuplexSession.connect`) with this application; without it
   * they are refused as `Unsupported`.
   */
  // biome-ignore lint/suspicious/noExplicitAny: the handler's state type is the caller's
  readonly duplex?: DuplexSession.Handler<any>
}

/**
 * What a server tells about its sessions: a checkpoint written, a takeover carried out or
 * refused, a session finished.
 *
 * @since 0.1.0
 * @category models
 */
export type ServerEvent =
  | {
      readonly _tag: "Checkpointed"
      readonly sessionId: string
      readonly reason: CheckpointStore["Service"] extends {
        take: (a: never, b: never, reason: infer R) => unknown
      }
        ? R
        : never
      readonly bytes: number
      readonly generation: number
    }
  | {
      readonly _tag: "TakenOver"
      readonly sessionId: string
      /** The object byte it resumed at. */
      readonly offset: number
      readonly bytesResent: number
    }
  | {
      readonly _tag: "Refused"
      readonly reason: TakeoverRefused["reason"]
      readonly detail: string
    }
  | { readonly _tag: "Finished"; readonly sessionId: string; readonly bytes: number }
  /** A planned hand-off: the session was checkpointed and its client sent to `to` (an address). */
  | { readonly _tag: "HandedOff"; readonly sessionId: string; readonly to: string | undefined }

/** @since 0.1.0 @category models */
export interface Server {
  readonly address: Address.StreamAddress
  /** Sessions served now. */
  readonly sessions: () => number
  /** Events from now on (a bounded buffer: a slow reader loses the oldest). */
  readonly events: Stream.Stream<ServerEvent>
}

const nameBytesMax = 1024
const handshakeMs = 5_000
const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

/** Serves objects until the scope closes. @since 0.1.0 @category constructors */
export const serve = (
  options: ServerOptions,
  source: ObjectSource,
): Effect.Effect<Server, unknown, Transport.Transport | CheckpointStore | Scope.Scope> =>
  Effect.gen(function* () {
    const decoded = Policy.decode(options.policy ?? {})
    if (Result.isFailure(decoded)) return yield* Effect.fail(decoded.failure)
    const policy = decoded.success
    const transport = yield* Transport.Transport
    const checkpoints = yield* CheckpointStore
    if (options.clusterKey === undefined && options.insecure !== true)
      return yield* Effect.die(new Error("a cluster key is required (or insecure: true)"))
    if (options.clusterKey === undefined)
      yield* Effect.logWarning("checkpoint: serving without a cluster key")
    const windowBytesMax = options.windowBytesMax ?? 4 * 1024 * 1024
    const segmentBytes = options.segmentBytes ?? 64 * 1024
    const sessionsMax = options.sessionsMax ?? 256
    const claimWaitMs =
      (yield* Durations.millis(options, ["claimWait"])).claimWait ?? 3 * checkpoints.leaseTtlMs
    let sessions = 0
    const handoffs = new Set<(to: string | undefined) => void>()
    const events = yield* PubSub.sliding<ServerEvent>(1_024)
    const emit = (event: ServerEvent) => PubSub.publish(events, event)
    const listener = yield* transport.listen(options.listen, {
      codec: Message.codec,
      ...(options.clusterKey === undefined ? {} : { clusterKey: options.clusterKey }),
    })

    const refuse = (
      connection: Connection.Connection<Message.Message>,
      reason: TakeoverRefused["reason"],
      detail: string,
    ) =>
      Metric.update(Metric.withAttributes(Metrics.takeovers, { outcome: reason }), 1).pipe(
        Effect.andThen(Effect.logInfo(`checkpoint: refused (${reason}): ${detail}`)),
        Effect.andThen(emit({ _tag: "Refused", reason, detail })),
        Effect.andThen(connection.send({ _tag: "Refused", reason, detail })),
        Effect.ignore,
        Effect.andThen(connection.close),
      )

    // UDP data flows of bundles: a socket on the listener's IPv4 address, its multicast
    // going out (and looped back) through that interface. None for another listener (a
    // Unix socket, a simulated host): its bundles carry TCP data flows only.
    const udpHost =
      listener.address._tag === "Tcp" && isIPv4(listener.address.host)
        ? listener.address.host
        : undefined
    const udp =
      udpHost === undefined
        ? undefined
        : yield* DatagramFlow.bind({
            host: udpHost,
            port: 0,
            multicastInterface: udpHost === "0.0.0.0" ? "127.0.0.1" : udpHost,
          })
    const bundles = ObjectBundle.makeServer({
      checkpoints,
      source,
      policy,
      windowBytesMax,
      segmentBytes,
      local: endpoint(listener.address),
      emit,
      refuse,
      handoffs,
      udp,
    })
    if (udp !== undefined)
      yield* Effect.forkScoped(
        Stream.runForEach(udp.unclaimed, ({ from, datagram }) =>
          Effect.forkScoped(bundles.attachUdp(from, datagram).pipe(Effect.ignore)),
        ),
      )

    const duplexes =
      options.duplex === undefined
        ? undefined
        : DuplexSession.makeServer({
            checkpoints,
            handler: options.duplex,
            windowBytesMax,
            segmentBytes,
            local: endpoint(listener.address),
            emit,
            refuse,
            handoffs,
          })

    /** Runs one session on `connection` from its state until the object is sent, the client goes, or it is fenced. */
    const run = (
      connection: Connection.Connection<Message.Message>,
      inbox: Queue.Queue<Message.Message, Cause.Done>,
      bundle: Contributor.Bundle,
      state: {
        sender: Sequence.Sender
        receiver: Sequence.Receiver
        object: Checkpoint.ObjectPosition
      },
      ownership: CheckpointStore["Service"] extends {
        open: (...a: never) => Effect.Effect<infer O, infer _E>
      }
        ? O
        : never,
    ) =>
      Effect.gen(function* () {
        const end = state.object.firstByteSeq + state.object.size
        let acked = Deferred.makeUnsafe<void>()
        let finished = false
        const wake = () => {
          const previous = acked
          acked = Deferred.makeUnsafe<void>()
          Deferred.doneUnsafe(previous, Effect.void)
        }
        // A planned hand-off asked for (`to`: the address the client goes to first).
        let handoff: { readonly to: string | undefined } | undefined
        const onHandoff = (to: string | undefined) => {
          handoff = { to }
          wake()
        }
        yield* Effect.acquireRelease(
          Effect.sync(() => handoffs.add(onHandoff)),
          () => Effect.sync(() => handoffs.delete(onHandoff)),
        )
        // Acknowledgements from the client.
        yield* Effect.forkScoped(
          Stream.fromQueue(inbox).pipe(
            Stream.runForEach((message) =>
              Effect.sync(() => {
                if (message._tag === "Ack") {
                  const outcome = Sequence.acknowledge(state.sender, message.ack)
                  if (outcome._tag === "Advanced") state.sender = outcome.state
                  if (outcome._tag === "BeyondSent") finished = true
                } else if (message._tag === "Finish") finished = true
                wake()
              }),
            ),
          ),
        )
        const checkpointNow = (reason: "bytes" | "horizon" | "on-demand") =>
          checkpoints.take(bundle, ownership, reason).pipe(
            Effect.tap((written) => {
              state.sender = Sequence.extendHorizon(
                state.sender,
                written.checkpoint.connections[0]!.sendHorizonSeq,
              )
              return emit({
                _tag: "Checkpointed",
                sessionId: bundle.id,
                reason,
                bytes: written.bytes,
                generation: written.checkpoint.generation,
              })
            }),
          )
        while (state.sender.next < end && !finished) {
          if (handoff !== undefined) {
            // Checkpointed where it stands, told to go, given up: the next server claims it
            // at once and resumes at the client's acknowledgement.
            yield* checkpointNow("on-demand")
            yield* connection.send({
              _tag: "Handoff",
              ...(handoff.to === undefined ? {} : { to: handoff.to }),
            })
            yield* checkpoints.release(bundle.id)
            yield* emit({ _tag: "HandedOff", sessionId: bundle.id, to: handoff.to })
            return
          }
          const wanted = Math.min(segmentBytes, end - state.sender.next)
          if (
            state.sender.horizon - state.sender.next < policy.everyBytes / 2 &&
            state.sender.horizon < end
          )
            yield* checkpointNow("bytes")
          const n = Sequence.sendable(state.sender, wanted)
          if (n === 0) {
            if (state.sender.next >= state.sender.horizon) yield* checkpointNow("horizon")
            else yield* Deferred.await(acked).pipe(Effect.timeoutOption(1_000))
            continue
          }
          const offset = state.sender.next - state.object.firstByteSeq
          const bytes = yield* source.read(state.object.id, offset, n)
          if (bytes.length !== n)
            return yield* Effect.die(new Error(`object ${state.object.id} changed size`))
          const seq = state.sender.next
          state.sender = Sequence.sent(state.sender, n)
          yield* connection.send({ _tag: "Data", seq, bytes })
        }
        if (!finished) yield* connection.send({ _tag: "Finish" })
        // The session is over once the client confirms it read everything.
        while (!finished && state.sender.acked < end)
          yield* Deferred.await(acked).pipe(Effect.timeoutOption(1_000))
        yield* checkpoints.finish(bundle.id)
        yield* emit({ _tag: "Finished", sessionId: bundle.id, bytes: state.object.size })
      }).pipe(
        // The client went away mid-transfer: its checkpoint stays, the bundle is free for
        // whichever server it reconnects to (a no-op when a takeover already fenced us).
        Effect.onExit((exit) =>
          exit._tag === "Success" ? Effect.void : checkpoints.release(bundle.id),
        ),
      )

    /** The session layer's part in checkpoints. */
    const sessionLayer = (
      secret: Uint8Array,
      state: {
        sender: Sequence.Sender
        receiver: Sequence.Receiver
        object: Checkpoint.ObjectPosition
      },
      remote: Address.StreamAddress,
    ): Contributor.Contributor => ({
      layer: "session",
      append: (draft) =>
        Effect.sync(() =>
          Contributor.putLayer(
            Contributor.putConnection(draft, {
              name: "data",
              role: "data",
              transport: "tcp",
              source: endpoint(listener.address),
              destination: endpoint(remote),
              initialSeqSource: state.sender.initialSeq,
              initialSeqDestination: state.receiver.initialSeq,
              currentSeqSource: state.sender.next,
              currentSeqDestination: state.receiver.next,
              ackedSeqSource: state.sender.acked,
              sendHorizonSeq: Math.min(
                state.sender.next + policy.everyBytes,
                state.object.firstByteSeq + state.object.size,
              ),
              coverage: "source",
              object: state.object,
              layers: {},
            }),
            "session",
            secret,
          ),
        ),
      restore: (checkpoint) =>
        Effect.suspend(() => {
          const connection = checkpoint.connections.find((c) => c.name === "data")
          if (connection?.object === undefined)
            return Effect.fail(
              new CheckpointContributorFailed({
                layer: "session",
                phase: "restore",
                detail: "no data connection",
              }),
            )
          state.sender = {
            initialSeq: connection.initialSeqSource,
            acked: connection.ackedSeqSource,
            next: connection.ackedSeqSource,
            horizon: connection.sendHorizonSeq,
            windowBytesMax,
          }
          state.receiver = {
            initialSeq: connection.initialSeqDestination,
            next: connection.currentSeqDestination,
          }
          state.object = connection.object
          return Effect.void
        }),
      ready: Effect.void,
    })

    const open = (
      connection: Connection.Connection<Message.Message>,
      inbox: Queue.Queue<Message.Message, Cause.Done>,
      hello: Message.Control & { _tag: "Open" },
    ) =>
      Effect.gen(function* () {
        const clientIsn = hello.channels.find((c) => c.name === "data")?.initialSeq
        const first = yield* Queue.take(inbox).pipe(
          Effect.timeoutOption(handshakeMs),
          Effect.option,
        )
        const request = Option.flatten(first)
        if (
          clientIsn === undefined ||
          Option.isNone(request) ||
          request.value._tag !== "Data" ||
          request.value.seq !== clientIsn ||
          request.value.bytes.length > nameBytesMax
        )
          return yield* refuse(
            connection,
            "WrongSession",
            "expected Open with a data channel, then the object name",
          )
        let name: string
        try {
          name = decoder.decode(request.value.bytes)
        } catch {
          return yield* refuse(connection, "WrongSession", "the object name is not UTF-8")
        }
        const size = yield* source.size(name)
        if (size === undefined)
          return yield* refuse(connection, "NoCheckpoint", `no object ${JSON.stringify(name)}`)
        const { sessionId, secret, isn } = Handshake.newSession()
        const state = {
          sender: Sequence.sender(isn, windowBytesMax, isn),
          receiver: { initialSeq: clientIsn, next: clientIsn + request.value.bytes.length },
          object: { id: name, firstByteSeq: isn, size },
        }
        const bundle = Contributor.makeBundle(sessionId, protocol)
        yield* bundle.register(sessionLayer(secret, state, connection.remote))
        const ownership = yield* checkpoints.open(bundle)
        state.sender = Sequence.extendHorizon(
          state.sender,
          ownership.latest().connections[0]!.sendHorizonSeq,
        )
        yield* connection.send({
          _tag: "Opened",
          sessionId,
          secret,
          channels: [{ name: "data", initialSeq: isn }],
          window: windowBytesMax,
          object: { id: name, size },
        })
        yield* connection.send({ _tag: "Ack", ack: state.receiver.next })
        yield* Effect.logDebug("checkpoint: opened").pipe(Effect.annotateLogs({ object: name }))
        yield* run(connection, inbox, bundle, state, ownership).pipe(
          Effect.annotateLogs({ sessionId }),
        )
      })

    const resume = (
      connection: Connection.Connection<Message.Message>,
      inbox: Queue.Queue<Message.Message, Cause.Done>,
      request: Message.Control & { _tag: "Resume" },
    ) =>
      Effect.gen(function* () {
        const loaded = yield* checkpoints
          .load(request.sessionId)
          .pipe(Effect.option, Effect.map(Option.flatten))
        const secret = Option.isSome(loaded) ? loaded.value.checkpoint.layers.session : undefined
        if (Option.isNone(loaded) || secret === undefined)
          return yield* refuse(connection, "WrongSession", "no such session")
        // Cheap refusals before waiting on the owner's lease.
        if (!Proof.verify(secret, request.sessionId, request.counter, request.acks, request.proof))
          return yield* refuse(
            connection,
            "WrongSession",
            "the proof does not verify for this session",
          )
        if (request.counter <= loaded.value.checkpoint.resumeCounter)
          return yield* refuse(
            connection,
            "ReplayedProof",
            `counter ${request.counter} already used`,
          )
        // The takeover's duration: from this claim (the old owner's lease waited out) to the
        // session served again.
        const claimedFromNs = yield* Clock.currentTimeNanos
        const served = Clock.currentTimeNanos.pipe(
          Effect.flatMap((now) =>
            Metric.update(Metrics.takeoverMs, Number(now - claimedFromNs) / 1e6),
          ),
        )
        const claimed = yield* checkpoints.claim(request.sessionId, claimWaitMs).pipe(Effect.result)
        if (Result.isFailure(claimed)) {
          const error = claimed.failure
          return yield* refuse(
            connection,
            error._tag === "TakeoverRefused" ? error.reason : "Owned",
            error.message,
          )
        }
        const plan = Resume.evaluate(claimed.success.checkpoint, secret, request)
        if (Result.isFailure(plan)) {
          yield* checkpoints.release(request.sessionId)
          return yield* refuse(connection, plan.failure.reason, plan.failure.detail)
        }
        const ownership = yield* checkpoints.adopt(
          plan.success.checkpoint,
          claimed.success.modRevision,
        )
        const resuming: Handshake.Resuming = {
          secret,
          ownership,
          plan: plan.success,
          remote: endpoint(connection.remote),
          served,
        }
        if (ownership.latest().protocol === ObjectBundle.protocol)
          return yield* bundles.resumed(connection, inbox, resuming)
        if (ownership.latest().protocol === DuplexSession.protocol) {
          if (duplexes === undefined) {
            yield* checkpoints.release(request.sessionId)
            return yield* refuse(connection, "Unsupported", "this server runs no duplex sessions")
          }
          return yield* duplexes.resumed(connection, inbox, resuming)
        }
        const restored = ownership.latest().connections[0]!
        const resume = plan.success.resumes.data
        yield* Handshake.tookOver(emit, {
          sessionId: request.sessionId,
          offset: resume?.objectOffset ?? 0,
          bytesResent: resume?.resendBytes ?? 0,
        })
        const state = {
          sender: Sequence.sender(restored.initialSeqSource, windowBytesMax),
          receiver: Sequence.receiver(restored.initialSeqDestination),
          object: restored.object!,
        }
        const bundle = Contributor.makeBundle(request.sessionId, protocol)
        yield* bundle.register(sessionLayer(secret, state, connection.remote))
        // Recreated unready in every layer, then ready; only then does a byte leave.
        yield* Contributor.restoreAll(bundle, ownership.latest())
        yield* connection.send({
          _tag: "Resumed",
          receiveNext: { data: state.receiver.next },
          window: windowBytesMax,
        })
        yield* served
        yield* run(connection, inbox, bundle, state, ownership)
      }).pipe(
        Effect.annotateLogs({ sessionId: request.sessionId }),
        // The takeover, from the resume request to the end of the resumed session.
        Effect.withSpan("checkpoint.takeover", {
          attributes: { sessionId: request.sessionId, serverId: checkpoints.serverId },
        }),
      )

    const handle = (connection: Connection.Connection<Message.Message>) =>
      Effect.gen(function* () {
        if (sessions >= sessionsMax)
          return yield* refuse(connection, "Overloaded", `${sessionsMax} sessions`)
        sessions++
        yield* Metric.modify(Metrics.sessionsServed, 1)
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => sessions--).pipe(
            Effect.andThen(Metric.modify(Metrics.sessionsServed, -1)),
          ),
        )
        const inbox = yield* Queue.bounded<Message.Message, Cause.Done>(1_024)
        yield* Effect.forkScoped(
          Stream.runForEach(connection.messages, (message) => Queue.offer(inbox, message)).pipe(
            Effect.andThen(Queue.end(inbox)),
          ),
        )
        const hello = yield* Queue.take(inbox).pipe(
          Effect.timeoutOption(handshakeMs),
          Effect.option,
          Effect.map(Option.flatten),
        )
        if (Option.isNone(hello)) return yield* connection.close
        const message = hello.value
        if (message._tag === "Open" && message.protocol === protocol)
          return yield* open(connection, inbox, message)
        if (message._tag === "Open" && message.protocol === ObjectBundle.protocol)
          return yield* bundles.open(connection, inbox, message, endpoint(connection.remote))
        if (message._tag === "Open" && message.protocol === DuplexSession.protocol)
          return duplexes === undefined
            ? yield* refuse(connection, "Unsupported", "this server runs no duplex sessions")
            : yield* duplexes.open(connection, inbox, message, endpoint(connection.remote))
        if (message._tag === "Attach") return yield* bundles.attach(connection, inbox, message)
        if (message._tag === "Resume") return yield* resume(connection, inbox, message)
        return yield* refuse(connection, "WrongSession", `unexpected ${message._tag}`)
      }).pipe(
        Effect.scoped,
        Effect.catchCause((cause) => Effect.logWarning("checkpoint: session ended", cause)),
        Effect.ensuring(connection.close),
        Effect.annotateLogs({ connection: Address.format(connection.remote) }),
      )

    yield* Effect.forkScoped(
      Stream.runForEach(listener.connections, (connection) =>
        Effect.forkScoped(handle(connection)),
      ).pipe(Effect.annotateLogs({ serverId: checkpoints.serverId })),
    )
    // Planned hand-offs (drains, rolling restarts, overload): every live session goes.
    yield* Effect.forkScoped(
      Stream.runForEach(checkpoints.handoffRequests, ({ to }) =>
        Effect.gen(function* () {
          const address =
            to === undefined
              ? undefined
              : (yield* checkpoints.servers.pipe(Effect.orElseSucceed(() => []))).find(
                  (server) => server.serverId === to,
                )?.address
          for (const handOff of handoffs) handOff(address === "" ? undefined : address)
        }),
      ),
    )
    return {
      address: listener.address,
      sessions: () => sessions,
      events: Stream.fromPubSub(events),
    }
  })

const endpoint = (address: Address.StreamAddress): Checkpoint.Endpoint =>
  address._tag === "Tcp"
    ? { host: address.host, port: address.port }
    : { host: address.path, port: 0 }

/** What a client of the service is given, for one transfer or a bundle. @since 0.1.0 @category models */
export interface ClientOptions {
  /**
   * The service: every server's address, tried in turn, or a `Discovery.Locator` (the
   * `NameServer`'s, `Discovery.nameServer(service)`), asked before each connection.
   */
  readonly service: Discovery.Service
  readonly clusterKey?: Redacted.Redacted<Uint8Array | string>
  readonly insecure?: boolean
  /** Connection attempts across a transfer (`get`) or a bundle's life (`connect`). Default 100. */
  readonly attemptsMax?: number
  /** Pause between attempts (a `Duration.Input`: `"50 millis"`, milliseconds). Default 50 ms. */
  readonly retryDelay?: Duration.Input
  /** Acknowledge after this many bytes (or half the server's window, when smaller). Default 256 KiB. */
  readonly ackEveryBytes?: number
}

/** @since 0.1.0 @category models */
export interface GetOptions extends ClientOptions {
  /** Told once, when the first server opened the transfer: the object's size in bytes, and that server. */
  readonly onOpened?: (event: { readonly size: number; readonly server: string }) => void
  /** Told of each takeover: the gap in ms and the object offset it resumed at. */
  readonly onResumed?: (event: {
    readonly gapMs: number
    readonly offset: number
    readonly server: string
  }) => void
}

/**
 * Reads an object from the service, across takeovers: each byte once, in order. Fails with
 * `TakeoverRefused` when no server can resume it exactly.
 *
 * @since 0.1.0
 * @category constructors
 */
export const get = (
  name: string,
  options: GetOptions,
): Stream.Stream<Uint8Array, TakeoverRefused | CheckpointConfigError, Transport.Transport> =>
  Stream.unwrap(
    Effect.gen(function* () {
      const { retryMs, attemptsMax, ackEveryBytes, connectOptions, clientIsn } =
        yield* Handshake.clientSettings(options)
      const transport = yield* Transport.Transport
      const out = yield* Queue.bounded<Uint8Array, TakeoverRefused | Cause.Done>(64)
      let session: { id: string; secret: Uint8Array; firstByteSeq: number } | undefined
      let receiver: Sequence.Receiver | undefined
      let counter = 0
      let lostAtMs: number | undefined
      // Where a planned hand-off sent us: tried before the service list.
      let handedTo: Address.StreamAddress | undefined
      const nameBytes = encoder.encode(name)
      const now = Effect.clockWith((clock) => clock.currentTimeMillis)

      /** One connection: true when the object is complete, false when the connection was lost. */
      const attempt = (address: Address.StreamAddress) =>
        Effect.gen(function* () {
          const connection = yield* transport.connect(address, connectOptions)
          if (session === undefined) {
            yield* connection.send({
              _tag: "Open",
              protocol,
              channels: [{ name: "data", initialSeq: clientIsn }],
            })
            yield* connection.send({ _tag: "Data", seq: clientIsn, bytes: nameBytes })
          } else {
            counter++
            const acks = { data: receiver!.next }
            const proof = Proof.sign(session.secret, session.id, counter, acks)
            yield* connection.send({ _tag: "Resume", sessionId: session.id, counter, acks, proof })
          }
          let unacked = 0
          // Until the server tells its window (`Opened`, `Resumed`).
          let ackEvery = ackEveryBytes
          let complete = false
          let resumedReported = session === undefined
          yield* Stream.runForEachArray(connection.messages, (messages) =>
            Effect.gen(function* () {
              for (const message of messages) {
                switch (message._tag) {
                  case "Opened":
                    session = {
                      id: message.sessionId,
                      secret: message.secret,
                      firstByteSeq: message.channels[0]!.initialSeq,
                    }
                    receiver = Sequence.receiver(session.firstByteSeq)
                    ackEvery = Message.ackInterval(ackEveryBytes, message.window)
                    if (message.object !== undefined)
                      options.onOpened?.({
                        size: message.object.size,
                        server: Address.format(address),
                      })
                    break
                  case "Resumed":
                    ackEvery = Message.ackInterval(ackEveryBytes, message.window)
                    break
                  case "Refused":
                    return yield* Handshake.refused(message, session?.id, connection.close)
                  case "Data": {
                    if (receiver === undefined) return yield* connection.close
                    const outcome = Sequence.receive(receiver, message.seq, message.bytes.length)
                    if (outcome._tag === "Gap") return yield* connection.close
                    if (outcome._tag === "Deliver") {
                      if (!resumedReported && lostAtMs !== undefined) {
                        resumedReported = true
                        const gapMs = yield* Handshake.resumedAfter(lostAtMs, {
                          sessionId: session!.id,
                          server: Address.format(address),
                          offset: receiver.next - session!.firstByteSeq,
                        })
                        lostAtMs = undefined
                        options.onResumed?.({
                          gapMs,
                          offset: receiver.next - session!.firstByteSeq,
                          server: Address.format(address),
                        })
                      }
                      receiver = outcome.state
                      unacked += outcome.length
                      yield* Queue.offer(out, message.bytes.subarray(outcome.offset))
                    }
                    break
                  }
                  case "Handoff": {
                    const to =
                      message.to === undefined ? undefined : Address.parseStream(message.to)
                    if (to !== undefined && !(to instanceof Address.InvalidAddress)) handedTo = to
                    return yield* connection.close
                  }
                  case "Finish":
                    complete = true
                    yield* connection.send({ _tag: "Ack", ack: receiver!.next })
                    yield* connection.send({ _tag: "Finish" })
                    return yield* connection.close
                  default:
                    break
                }
              }
              if (unacked >= ackEvery && receiver !== undefined) {
                unacked = 0
                yield* connection.send({ _tag: "Ack", ack: receiver.next })
              }
            }),
          ).pipe(
            Effect.catchTag("ConnectionClosed", () => Effect.void),
            Effect.catchTag("CodecError", () => Effect.void),
          )
          return complete
        }).pipe(
          Effect.scoped,
          // One span per connection of the transfer: the first, then each takeover's.
          Effect.withSpan("checkpoint.client.connect", {
            attributes: {
              server: Address.format(address),
              object: name,
              resume: session !== undefined,
            },
          }),
          Effect.catchTags({
            ConnectError: () => Effect.succeed(false),
            HandshakeError: () => Effect.succeed(false),
            ConnectionClosed: () => Effect.succeed(false),
            CodecError: () => Effect.succeed(false),
          }),
        )

      const loop = Effect.gen(function* () {
        for (let tried = 0; tried < attemptsMax; tried++) {
          const address =
            handedTo ?? Option.getOrUndefined(yield* Discovery.locate(options.service, tried))
          handedTo = undefined
          if (address !== undefined && (yield* attempt(address))) return
          lostAtMs ??= yield* now
          yield* Effect.sleep(retryMs)
        }
        return yield* Handshake.attemptsExhausted(attemptsMax, session?.id)
      })
      yield* Effect.forkScoped(
        loop.pipe(
          Effect.matchEffect({
            onFailure: (error) => Queue.fail(out, error),
            onSuccess: () => Queue.end(out),
          }),
        ),
      )
      return Stream.fromQueue(out)
    }),
  )
