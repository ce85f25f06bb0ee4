/**
 * Bundles at runtime: a control connection (`LIST`, `GET name`, `PAUSE`, `RESUME`) and one
 * data connection per transfer, checkpointed as one bundle and taken over as one. The server side runs inside
 * `ObjectSession.serve` (the same listener serves single transfers and bundles); the
 * client side is `connect`.
 *
 * Wire: the client opens the control connection (`Open` with protocol
 * `understudy-bundle/1` and its `control` channel), sends numbered `Command`s one at a time
 * and gets a `Reply` for each once the server checkpointed its effect. A `GET` reply names
 * a new data channel; the client opens a transport connection for it with `Attach` (an HMAC
 * over the session, the channel and the bundle's resume counter) and reads the object there
 * with sequence numbers and acknowledgements, as a single transfer does. When any
 * connection of the bundle breaks, the client drops them all and presents one `Resume` with
 * an acknowledgement per connection to the next server; it claims the whole bundle,
 * recreates every connection from the checkpoint (paused transfers stay paused), answers
 * `Resumed` with the next command number it expects and the last reply, and the client
 * attaches its unfinished transfers again.
 *
 * @since 0.1.0
 */
import { Address, Transport } from "@understudy/transport"
import {
  type Cause,
  Deferred,
  Effect,
  Exit,
  Option,
  Queue,
  Random,
  Result,
  Scope,
  Semaphore,
  Stream,
} from "effect"
import * as BundleControl from "./BundleControl.ts"
import type * as Checkpoint from "./Checkpoint.ts"
import {
  CheckpointCommandFailed,
  type CheckpointConfigError,
  TakeoverRefused,
} from "./CheckpointError.ts"
import type { CheckpointStore, Ownership, Reason } from "./CheckpointStore.ts"
import * as Contributor from "./Contributor.ts"
import * as Discovery from "./Discovery.ts"
import * as DatagramFlow from "./internal/datagramFlow.ts"
import * as Handshake from "./internal/handshake.ts"
import * as Message from "./Message.ts"
import type { ClientOptions, ObjectSource, ServerEvent } from "./ObjectSession.ts"
import type { Policy } from "./Policy.ts"
import * as Proof from "./Proof.ts"
import * as Sequence from "./Sequence.ts"

/** @since 0.1.0 @category models */
export const protocol = BundleControl.protocol

type Conn = Handshake.Conn
type Inbox = Handshake.Inbox

/** What the bundle server shares with `ObjectSession.serve`. @internal */
export interface ServerContext {
  readonly checkpoints: CheckpointStore["Service"]
  readonly source: ObjectSource
  readonly policy: Policy
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
  /** The server's UDP socket, for UDP and multicast data flows (none: TCP only). */
  readonly udp: DatagramFlow.Socket | undefined
}

/** A bundle this server owns now. */
interface Live {
  readonly bundle: Contributor.Bundle
  ownership: Ownership
  readonly secret: Uint8Array
  readonly controlSeq: { readonly source: number; readonly destination: number }
  readonly remote: Checkpoint.Endpoint
  state: BundleControl.State
  /** Per data channel: the session layer's sender. */
  readonly senders: Map<string, Sequence.Sender>
  readonly attached: Set<string>
  /** The resume counter Attach proofs are bound to. */
  readonly counter: number
  readonly lock: Semaphore.Semaphore
  /** Any connection of the bundle lost, a hand-off or the end: every fiber of it stops. */
  readonly ended: Deferred.Deferred<void>
  /** Woken on acknowledgements, PAUSE / RESUME and hand-off requests. */
  signal: Deferred.Deferred<void>
  handoff: { readonly to: string | undefined } | undefined
}

const wake = (live: Live) => {
  const previous = live.signal
  live.signal = Deferred.makeUnsafe<void>()
  Deferred.doneUnsafe(previous, Effect.void)
}

const attachAcks = (channel: string) => ({ [channel]: 0 })

const handshakeMs = 10_000
/** Bytes in flight on a UDP flow: what a socket buffer takes without loss, roughly. */
const udpWindowBytes = 128 * 1024
/** A UDP datagram's data: well below the 65,507-byte bound. */
const udpSegmentBytes = 16 * 1024
/** No acknowledgement for this long: a UDP sender goes back to the acknowledgement. */
const udpRetransmitMs = 200
/** Multicast groups the server picks from: 239.255.0.0/16, administratively scoped. */
const groupFor = Effect.gen(function* () {
  const a = yield* Random.nextIntBetween(0, 255)
  const b = yield* Random.nextIntBetween(1, 254)
  const port = yield* Random.nextIntBetween(20_000, 60_000)
  return { host: `239.255.${a}.${b}`, port }
})
const endpointText = (endpoint: Checkpoint.Endpoint) => `${endpoint.host}:${endpoint.port}`

/** The bundle server's handlers, each run in a connection's scope. @internal */
export interface BundleServer extends Handshake.ProtocolServer {
  readonly attach: (
    connection: Conn,
    inbox: Inbox,
    request: Message.Control & { _tag: "Attach" },
  ) => Effect.Effect<void, unknown, Scope.Scope>
  readonly attachUdp: (
    from: DatagramFlow.Peer,
    datagram: Uint8Array,
  ) => Effect.Effect<void, unknown>
}

/** The bundle server's handlers. @internal */
export const makeServer = (context: ServerContext): BundleServer => {
  const { checkpoints, source, policy } = context
  const live = new Map<string, Live>()
  const windowOf = (transport: Checkpoint.ConnectionTransport) =>
    transport === "tcp" ? context.windowBytesMax : Math.min(context.windowBytesMax, udpWindowBytes)
  const udp = context.udp === undefined ? undefined : endpointText(context.udp.address)

  /** The session layer's part: the control connection, a connection per transfer, the blocks. */
  const contributor = (entry: () => Live): Contributor.Contributor => ({
    layer: "session",
    append: (draft) =>
      Effect.sync(() => {
        const bundle = entry()
        let next = Contributor.putConnection(draft, {
          name: "control",
          role: "control",
          transport: "tcp",
          source: context.local,
          destination: bundle.remote,
          initialSeqSource: bundle.controlSeq.source,
          initialSeqDestination: bundle.controlSeq.destination,
          currentSeqSource: bundle.controlSeq.source,
          currentSeqDestination: bundle.state.nextCommand,
          ackedSeqSource: bundle.controlSeq.source,
          sendHorizonSeq: bundle.controlSeq.source,
          coverage: "source",
          layers: {},
        })
        for (const transfer of bundle.state.transfers) {
          const sender = bundle.senders.get(transfer.channel)!
          const end = transfer.initialSeq + transfer.size
          next = Contributor.putConnection(next, {
            name: transfer.channel,
            role: "data",
            transport: transfer.transport,
            ...(transfer.group === undefined ? {} : { group: transfer.group }),
            source: context.local,
            destination: bundle.remote,
            initialSeqSource: transfer.initialSeq,
            initialSeqDestination: 0,
            currentSeqSource: sender.next,
            currentSeqDestination: 0,
            ackedSeqSource: sender.acked,
            sendHorizonSeq: Math.min(sender.next + policy.everyBytes, end),
            coverage: "source",
            object: { id: transfer.name, firstByteSeq: transfer.initialSeq, size: transfer.size },
            layers: {},
          })
        }
        next = Contributor.putLayer(next, "session", bundle.secret)
        return Contributor.putLayer(
          next,
          BundleControl.layer,
          BundleControl.encodeBlock(bundle.state),
        )
      }),
    // The server builds a bundle's state from its checkpoint before registering (`resumed`).
    restore: () => Effect.void,
    ready: Effect.void,
  })

  /** Attach finds the bundle from now until the connection's handler ends. */
  const serving = (entry: Live) =>
    Effect.acquireRelease(
      Effect.sync(() => live.set(entry.bundle.id, entry)),
      () => Effect.sync(() => live.delete(entry.bundle.id)),
    )

  /** Writes a checkpoint of the whole bundle (one at a time) and extends every horizon. */
  const take = (entry: Live, reason: Reason) =>
    entry.lock.withPermits(1)(
      checkpoints.take(entry.bundle, entry.ownership, reason).pipe(
        Effect.tap((written) =>
          Effect.sync(() => {
            for (const connection of written.checkpoint.connections) {
              const sender = entry.senders.get(connection.name)
              if (sender !== undefined)
                entry.senders.set(
                  connection.name,
                  Sequence.extendHorizon(sender, connection.sendHorizonSeq),
                )
            }
          }),
        ),
        Effect.tap((written) =>
          context.emit({
            _tag: "Checkpointed",
            sessionId: entry.bundle.id,
            reason: reason as never,
            bytes: written.bytes,
            generation: written.checkpoint.generation,
          }),
        ),
      ),
    )

  /** Receives every message of the control connection until it ends. */
  const controlLoop = (entry: Live, connection: Conn, inbox: Inbox) =>
    Effect.gen(function* () {
      while (true) {
        const message = yield* Queue.take(inbox).pipe(Effect.option)
        if (Option.isNone(message)) return "lost" as const
        const m = message.value
        if (m._tag === "Finish") return "finished" as const
        if (m._tag !== "Command") return "lost" as const
        const lookup: BundleControl.Lookup =
          m.op === "LIST"
            ? { objects: yield* source.list ?? Effect.succeed([]) }
            : m.op === "GET" && m.name !== undefined
              ? {
                  size: yield* source.size(m.name),
                  initialSeq: Proof.newInitialSeq(),
                  ...(m.transport === "udp-multicast" ? { group: yield* groupFor } : {}),
                  ...(m.transport !== undefined && m.transport !== "tcp" && udp === undefined
                    ? { unsupported: "this server carries no UDP data flows" }
                    : {}),
                }
              : {}
        const applied = BundleControl.apply(entry.state, m, lookup)
        if (applied._tag === "OutOfOrder") return "lost" as const
        if (applied._tag === "Applied") {
          for (const transfer of applied.state.transfers)
            if (!entry.senders.has(transfer.channel))
              entry.senders.set(
                transfer.channel,
                Sequence.sender(
                  transfer.initialSeq,
                  windowOf(transfer.transport),
                  transfer.initialSeq,
                ),
              )
          entry.state = applied.state
          // The effect is durable before the client hears of it.
          yield* take(entry, "on-demand")
          wake(entry)
        }
        yield* connection.send(applied.reply)
      }
    })

  /** Serves one bundle on its control connection until it ends; then ends every data connection. */
  const runControl = (entry: Live, connection: Conn, inbox: Inbox) =>
    Effect.gen(function* () {
      const onHandoff = (to: string | undefined) => {
        entry.handoff = { to }
        Deferred.doneUnsafe(handoffAsked, Effect.void)
      }
      const handoffAsked = Deferred.makeUnsafe<void>()
      context.handoffs.add(onHandoff)
      const outcome = yield* Effect.raceFirst(
        controlLoop(entry, connection, inbox),
        Deferred.await(handoffAsked).pipe(Effect.as("handoff" as const)),
      ).pipe(Effect.ensuring(Effect.sync(() => context.handoffs.delete(onHandoff))))
      if (outcome === "handoff") {
        // Checkpointed where every transfer stands, the client told, the bundle given up.
        yield* take(entry, "on-demand")
        yield* connection.send({
          _tag: "Handoff",
          ...(entry.handoff?.to === undefined ? {} : { to: entry.handoff.to }),
        })
        yield* checkpoints.release(entry.bundle.id)
        yield* context.emit({
          _tag: "HandedOff",
          sessionId: entry.bundle.id,
          to: entry.handoff?.to,
        })
        return
      }
      if (outcome === "finished") {
        yield* checkpoints.finish(entry.bundle.id)
        yield* context.emit({
          _tag: "Finished",
          sessionId: entry.bundle.id,
          bytes: entry.state.transfers.reduce((n, t) => n + t.size, 0),
        })
        return
      }
      yield* checkpoints.release(entry.bundle.id)
    }).pipe(
      Effect.onExit((exit) =>
        Effect.gen(function* () {
          if (exit._tag === "Failure") yield* checkpoints.release(entry.bundle.id)
          yield* Deferred.succeed(entry.ended, undefined)
        }),
      ),
    )

  /**
   * Sends one transfer on its data connection until it is acknowledged whole. Over UDP a
   * datagram may be lost: a wait with no acknowledgement goes back to it (and repeats
   * `Finish`).
   */
  const runData = (entry: Live, channel: string, connection: Pick<Conn, "send">, inbox: Inbox) =>
    Effect.gen(function* () {
      const transfer = entry.state.transfers.find((t) => t.channel === channel)!
      const end = transfer.initialSeq + transfer.size
      const overUdp = transfer.transport !== "tcp"
      const segmentBytes = overUdp
        ? Math.min(context.segmentBytes, udpSegmentBytes)
        : context.segmentBytes
      const sender = () => entry.senders.get(channel)!
      const now = Effect.clockWith((clock) => clock.currentTimeMillis)
      // The acknowledgement, and when it last moved.
      let progress = { acked: sender().acked, atMs: yield* now }
      /**
       * Waits for a signal (any of the bundle's). Over UDP, when this transfer's
       * acknowledgement has not moved for `udpRetransmitMs`, goes back to it: true.
       */
      const waitAck = Effect.gen(function* () {
        yield* Deferred.await(entry.signal).pipe(
          Effect.timeoutOption(overUdp ? udpRetransmitMs : 1_000),
        )
        if (!overUdp) return false
        const atMs = yield* now
        if (sender().acked !== progress.acked || atMs - progress.atMs < udpRetransmitMs) {
          if (sender().acked !== progress.acked) progress = { acked: sender().acked, atMs }
          return false
        }
        progress = { acked: sender().acked, atMs }
        entry.senders.set(channel, Sequence.rewind(sender(), sender().acked))
        return true
      })
      let finished = false
      yield* Effect.forkScoped(
        Stream.fromQueue(inbox).pipe(
          Stream.runForEach((message) =>
            Effect.sync(() => {
              if (message._tag === "Ack") {
                const outcome = Sequence.acknowledge(sender(), message.ack)
                if (outcome._tag === "Advanced") entry.senders.set(channel, outcome.state)
                if (outcome._tag === "BeyondSent") finished = true
              } else if (message._tag === "Finish") finished = true
              wake(entry)
            }),
          ),
          Effect.andThen(Effect.sync(() => wake(entry))),
        ),
      )
      const paused = () => entry.state.transfers.find((t) => t.channel === channel)?.paused === true
      while (sender().next < end && !finished) {
        if (paused()) {
          yield* Deferred.await(entry.signal).pipe(Effect.timeoutOption(1_000))
          continue
        }
        const state = sender()
        if (state.horizon - state.next < policy.everyBytes / 2 && state.horizon < end)
          yield* take(entry, "bytes")
        const n = Sequence.sendable(sender(), Math.min(segmentBytes, end - sender().next))
        if (n === 0) {
          if (sender().next >= sender().horizon) yield* take(entry, "horizon")
          else yield* waitAck
          continue
        }
        const seq = sender().next
        const bytes = yield* source.read(transfer.name, seq - transfer.initialSeq, n)
        if (bytes.length !== n)
          return yield* Effect.die(new Error(`object ${transfer.name} changed size`))
        entry.senders.set(channel, Sequence.sent(sender(), n))
        yield* connection.send({ _tag: "Data", seq, bytes })
      }
      if (!finished) yield* connection.send({ _tag: "Finish" })
      while (!finished && sender().acked < end) {
        if (!(yield* waitAck)) continue
        // Over UDP: what was lost goes again, and the `Finish` after it.
        while (sender().next < end) {
          const seq = sender().next
          const n = Sequence.sendable(sender(), Math.min(segmentBytes, end - seq))
          if (n === 0) break
          const bytes = yield* source.read(transfer.name, seq - transfer.initialSeq, n)
          entry.senders.set(channel, Sequence.sent(sender(), n))
          yield* connection.send({ _tag: "Data", seq, bytes })
        }
        if (sender().next >= end) yield* connection.send({ _tag: "Finish" })
      }
      if (sender().acked < end) return yield* Effect.fail("lost" as const)
    }).pipe(
      Effect.scoped,
      // A data connection lost before its object was acknowledged loses the bundle: the
      // client takes all of it elsewhere (or back here).
      Effect.onExit((exit) =>
        exit._tag === "Success" ? Effect.void : Deferred.succeed(entry.ended, undefined),
      ),
      Effect.raceFirst(Deferred.await(entry.ended)),
      Effect.ensuring(Effect.sync(() => entry.attached.delete(channel))),
    )

  const makeLive = (
    id: string,
    secret: Uint8Array,
    ownership: Ownership,
    state: BundleControl.State,
    controlSeq: Live["controlSeq"],
    remote: Checkpoint.Endpoint,
    counter: number,
    lock: Semaphore.Semaphore,
  ): Live => ({
    bundle: Contributor.makeBundle(id, protocol),
    ownership,
    secret,
    controlSeq,
    remote,
    state,
    senders: new Map(),
    attached: new Set(),
    counter,
    lock,
    ended: Deferred.makeUnsafe<void>(),
    signal: Deferred.makeUnsafe<void>(),
    handoff: undefined,
  })

  /** A new bundle: `Open` on its control connection. */
  const open: BundleServer["open"] = (connection, inbox, hello, remote) =>
    Effect.gen(function* () {
      const clientIsn = Handshake.soleChannel(hello, "control")
      if (clientIsn === undefined)
        return yield* context.refuse(connection, "WrongSession", "expected one control channel")
      const { sessionId, secret, isn } = Handshake.newSession()
      const entry = makeLive(
        sessionId,
        secret,
        undefined as never,
        BundleControl.initial(clientIsn),
        { source: isn, destination: clientIsn },
        remote,
        0,
        yield* Semaphore.make(1),
      )
      yield* entry.bundle.register(contributor(() => entry))
      entry.ownership = yield* checkpoints.open(entry.bundle)
      yield* serving(entry)
      yield* connection.send({
        _tag: "Opened",
        sessionId: entry.bundle.id,
        secret: entry.secret,
        channels: [{ name: "control", initialSeq: isn }],
        ...(udp === undefined ? {} : { udp }),
      })
      yield* runControl(entry, connection, inbox)
    })

  /** A takeover of a bundle claimed, evaluated and adopted by `ObjectSession`. */
  const resumed: BundleServer["resumed"] = (
    connection,
    inbox,
    { secret, ownership, plan, remote, served },
  ) =>
    Effect.gen(function* () {
      const checkpoint = ownership.latest()
      const state = BundleControl.fromCheckpoint(checkpoint)
      if (Result.isFailure(state)) {
        yield* checkpoints.release(checkpoint.bundleId)
        return yield* context.refuse(connection, "WrongSession", state.failure.detail)
      }
      const control = checkpoint.connections.find((c) => c.name === "control")!
      const entry = makeLive(
        checkpoint.bundleId,
        secret,
        ownership,
        state.success,
        { source: control.initialSeqSource, destination: control.initialSeqDestination },
        remote,
        checkpoint.resumeCounter,
        yield* Semaphore.make(1),
      )
      // Recreated unready: every sender from the client's acknowledgement, nothing sent yet.
      let resent = 0
      for (const connection of checkpoint.connections) {
        if (connection.role !== "data") continue
        const at = plan.resumes[connection.name]!
        entry.senders.set(connection.name, {
          initialSeq: connection.initialSeqSource,
          acked: at.resumeSeq,
          next: at.resumeSeq,
          horizon: connection.sendHorizonSeq,
          windowBytesMax: windowOf(connection.transport),
        })
        resent += at.resendBytes
      }
      yield* entry.bundle.register(contributor(() => entry))
      yield* Contributor.restoreAll(entry.bundle, checkpoint)
      yield* serving(entry)
      yield* Handshake.tookOver(context.emit, {
        sessionId: checkpoint.bundleId,
        offset: 0,
        bytesResent: resent,
      })
      // Ready: the next command expected, then the last reply (its command may be the one
      // whose reply was lost).
      yield* connection.send({
        _tag: "Resumed",
        receiveNext: { control: entry.state.nextCommand },
        ...(udp === undefined ? {} : { udp }),
      })
      if (entry.state.lastReply !== undefined) yield* connection.send(entry.state.lastReply)
      yield* served
      yield* runControl(entry, connection, inbox)
    })

  /** A data connection of a bundle this server owns. */
  const attach = (connection: Conn, inbox: Inbox, request: Message.Control & { _tag: "Attach" }) =>
    Effect.gen(function* () {
      const entry = live.get(request.sessionId)
      if (entry === undefined)
        return yield* context.refuse(connection, "Owned", "the bundle is not served here")
      if (
        request.counter !== entry.counter ||
        !Proof.verify(
          entry.secret,
          request.sessionId,
          request.counter,
          attachAcks(request.channel),
          request.proof,
        )
      )
        return yield* context.refuse(connection, "WrongSession", "the attach proof does not verify")
      if (!entry.senders.has(request.channel) || entry.attached.has(request.channel))
        return yield* context.refuse(
          connection,
          "WrongSession",
          `no unattached transfer ${request.channel}`,
        )
      entry.attached.add(request.channel)
      yield* connection.send({ _tag: "Attached", window: context.windowBytesMax })
      yield* runData(entry, request.channel, connection, inbox)
    })

  /**
   * A datagram from a peer with no flow: an `Attach` of a UDP transfer of a bundle this
   * server owns (its proof and MAC checked), which then runs on a flow with that peer. Any
   * other datagram is dropped, as are repeats of an attach (UDP: the client sends it until
   * it hears back).
   */
  const attachUdp = (from: DatagramFlow.Peer, datagram: Uint8Array) =>
    Effect.gen(function* () {
      const request = DatagramFlow.peek(datagram)
      if (request?._tag !== "Attach") return
      const entry = live.get(request.sessionId)
      if (
        entry === undefined ||
        request.counter !== entry.counter ||
        !DatagramFlow.verify(entry.secret, datagram) ||
        !Proof.verify(
          entry.secret,
          request.sessionId,
          request.counter,
          attachAcks(request.channel),
          request.proof,
        )
      )
        return
      const transfer = entry.state.transfers.find((t) => t.channel === request.channel)
      if (transfer === undefined || transfer.transport === "tcp") return
      if (entry.attached.has(request.channel)) return
      entry.attached.add(request.channel)
      if (context.udp === undefined) return
      const flow = yield* context.udp.flow(from, entry.secret, transfer.group)
      const inbox = yield* Queue.bounded<Message.Message, Cause.Done>(1_024)
      yield* Effect.forkScoped(
        Stream.runForEach(flow.messages, (m) => Queue.offer(inbox, m)).pipe(
          Effect.andThen(Queue.end(inbox)),
        ),
      )
      // Answered on the flow (to the group, for multicast: the client joined it).
      yield* flow.send({ _tag: "Attached", window: windowOf(transfer.transport) })
      yield* runData(entry, request.channel, flow, inbox)
    }).pipe(Effect.scoped)

  return { open, resumed, attach, attachUdp }
}

/** @since 0.1.0 @category models */
export interface ConnectOptions extends ClientOptions {
  /** Told of each takeover of the bundle: the gap in ms and the server. */
  readonly onResumed?: (event: { readonly gapMs: number; readonly server: string }) => void
  /** The interface multicast transfers are received on (`127.0.0.1` on one host). Default: the system's. */
  readonly multicastInterface?: string
}

/** A transfer of a bundle. @since 0.1.0 @category models */
export interface Download {
  /** Its data channel: what `pause` and `resume` name. */
  readonly transfer: string
  readonly name: string
  readonly size: number
  /** The object's bytes, each once, in order, across takeovers. Read it once. */
  readonly bytes: Stream.Stream<Uint8Array, TakeoverRefused>
}

/** @since 0.1.0 @category models */
export interface BundleClient {
  /** The bundle's session id, once the first server opened it. */
  readonly sessionId: () => string | undefined
  /** The objects the service has. */
  readonly list: Effect.Effect<
    ReadonlyArray<{ readonly name: string; readonly size: number }>,
    TakeoverRefused
  >
  /** Starts a transfer on a new data connection of the bundle (paused: nothing sent before `resume`). */
  readonly get: (
    name: string,
    options?: {
      readonly paused?: boolean
      /** The data flow: a TCP connection (default), UDP, or UDP to a multicast group. */
      readonly transport?: Checkpoint.ConnectionTransport
    },
  ) => Effect.Effect<Download, TakeoverRefused | CheckpointCommandFailed>
  /** Stops a transfer's sending; it stays paused across takeovers until `resume`. */
  readonly pause: (
    transfer: string,
  ) => Effect.Effect<void, TakeoverRefused | CheckpointCommandFailed>
  readonly resume: (
    transfer: string,
  ) => Effect.Effect<void, TakeoverRefused | CheckpointCommandFailed>
  /** Ends the bundle: the server forgets it. Done when the scope closes too. */
  readonly close: Effect.Effect<void>
}

interface ClientTransfer {
  readonly channel: string
  readonly initialSeq: number
  readonly size: number
  receiver: Sequence.Receiver
  readonly out: Queue.Queue<Uint8Array, TakeoverRefused | Cause.Done>
  /** The epoch whose connection reads it. */
  attachedIn: Epoch | undefined
  readonly transport: Checkpoint.ConnectionTransport
  readonly group: DatagramFlow.Peer | undefined
}

interface Epoch {
  readonly address: Address.StreamAddress
  readonly control: Conn
  readonly lost: Deferred.Deferred<void>
  readonly scope: Scope.Scope
  /** The server's UDP endpoint, for UDP data flows. */
  readonly udp: DatagramFlow.Peer | undefined
}

const peerOf = (text: string | undefined): DatagramFlow.Peer | undefined => {
  if (text === undefined) return undefined
  const colon = text.lastIndexOf(":")
  return { host: text.slice(0, colon), port: Number(text.slice(colon + 1)) }
}

/**
 * Opens a bundle on the service and keeps it across takeovers until the scope closes or
 * `close`: a command waits a takeover out (sent again when its server never applied it),
 * every transfer's bytes arrive once, in order, or the bundle fails with `TakeoverRefused`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const connect = (
  options: ConnectOptions,
): Effect.Effect<BundleClient, CheckpointConfigError, Transport.Transport | Scope.Scope> =>
  Effect.gen(function* () {
    const { retryMs, attemptsMax, ackEveryBytes, connectOptions, clientIsn } =
      yield* Handshake.clientSettings(options)
    const transport = yield* Transport.Transport
    let session: { id: string; secret: Uint8Array; controlSeq: number } | undefined
    let counter = 0
    let nextCommand = clientIsn
    const transfers = new Map<string, ClientTransfer>()
    let pending:
      | { readonly command: Message.Command; readonly reply: Deferred.Deferred<Message.Reply> }
      | undefined
    let handedTo: Address.StreamAddress | undefined
    let closing = false
    let epoch: Epoch | undefined
    let up = Deferred.makeUnsafe<void>()
    const fatal = yield* Deferred.make<never, TakeoverRefused>()
    const oneAtATime = yield* Semaphore.make(1)
    const now = Effect.clockWith((clock) => clock.currentTimeMillis)
    const complete = (t: ClientTransfer) => t.receiver.next >= t.initialSeq + t.size
    /**
     * Hands bytes to the transfer's reader and counts them received, as one: the end of an
     * epoch interrupts its readers, and only an offer still waiting for room may be cut. (A
     * chunk counted before a cut offer was acknowledged at the resume, never delivered: a
     * hole of one segment in a transfer whose reader lagged when its server died.)
     */
    const deliver = (transfer: ClientTransfer, received: Sequence.Receiver, bytes: Uint8Array) =>
      Effect.uninterruptibleMask((restore) =>
        restore(Queue.offer(transfer.out, bytes)).pipe(
          Effect.andThen(
            Effect.sync(() => {
              transfer.receiver = received
            }),
          ),
        ),
      )
    /** Reads an unfinished transfer in `current` (once per epoch). */
    const ensureAttached = (current: Epoch, t: ClientTransfer) =>
      Effect.suspend(() => {
        if (complete(t) || t.attachedIn === current) return Effect.void
        t.attachedIn = current
        return Effect.forkIn(
          t.transport === "tcp" ? attachData(current, t) : attachUdp(current, t),
          current.scope,
        ).pipe(Effect.asVoid)
      })

    /** Reads one transfer on its own connection until its object is complete or it breaks. */
    const attachData = (current: Epoch, transfer: ClientTransfer) =>
      Effect.gen(function* () {
        const connection = yield* transport.connect(current.address, connectOptions)
        yield* connection.send({
          _tag: "Attach",
          sessionId: session!.id,
          channel: transfer.channel,
          counter,
          proof: Proof.sign(session!.secret, session!.id, counter, attachAcks(transfer.channel)),
        })
        let unacked = 0
        // Until the server tells its window (`Attached`).
        let ackEvery = ackEveryBytes
        yield* Stream.runForEachArray(connection.messages, (messages) =>
          Effect.gen(function* () {
            for (const message of messages) {
              if (message._tag === "Data") {
                const outcome = Sequence.receive(
                  transfer.receiver,
                  message.seq,
                  message.bytes.length,
                )
                if (outcome._tag === "Gap") return yield* connection.close
                if (outcome._tag === "Deliver") {
                  yield* deliver(transfer, outcome.state, message.bytes.subarray(outcome.offset))
                  unacked += outcome.length
                  if (complete(transfer)) yield* Queue.end(transfer.out)
                }
              } else if (message._tag === "Finish" && complete(transfer)) {
                yield* connection.send({ _tag: "Ack", ack: transfer.receiver.next })
                yield* connection.send({ _tag: "Finish" })
                return yield* connection.close
              } else if (message._tag === "Attached")
                ackEvery = Message.ackInterval(ackEveryBytes, message.window)
              else return yield* connection.close
            }
            if (unacked >= ackEvery) {
              unacked = 0
              yield* connection.send({ _tag: "Ack", ack: transfer.receiver.next })
            }
          }),
        )
      }).pipe(
        Effect.scoped,
        Effect.ignore,
        // Anything short of the whole object loses the epoch: the bundle moves as one.
        Effect.andThen(
          Effect.suspend(() =>
            complete(transfer) ? Effect.void : Deferred.succeed(current.lost, undefined),
          ),
        ),
      )

    /**
     * Reads one UDP transfer until its object is complete: a socket of its own (on the
     * group's port, joined, for multicast), `Attach` sent until the server answers,
     * acknowledgements at once for a repeat or a gap (the server goes back to them).
     */
    const attachUdp = (current: Epoch, transfer: ClientTransfer) =>
      Effect.gen(function* () {
        if (current.udp === undefined) return
        const group = transfer.group
        const socket = yield* DatagramFlow.bind(
          group === undefined
            ? { host: "0.0.0.0", port: 0 }
            : {
                host: "0.0.0.0",
                port: group.port,
                join: group,
                ...(options.multicastInterface === undefined
                  ? {}
                  : { multicastInterface: options.multicastInterface }),
              },
        )
        const flow = yield* socket.flow(current.udp, session!.secret)
        const attach: Message.Message = {
          _tag: "Attach",
          sessionId: session!.id,
          channel: transfer.channel,
          counter,
          proof: Proof.sign(session!.secret, session!.id, counter, attachAcks(transfer.channel)),
        }
        let heard = false
        // The attach by datagram: again until anything comes back.
        yield* Effect.forkScoped(
          flow
            .send(attach)
            .pipe(
              Effect.andThen(Effect.sleep(udpRetransmitMs)),
              Effect.repeat({ while: () => !heard, times: 100 }),
            ),
        )
        let unacked = 0
        let ackEvery = ackEveryBytes
        const ack = Effect.suspend(() => flow.send({ _tag: "Ack", ack: transfer.receiver.next }))
        yield* Stream.runForEach(flow.messages, (message) =>
          Effect.gen(function* () {
            heard = true
            if (message._tag === "Attached")
              ackEvery = Message.ackInterval(ackEveryBytes, message.window)
            else if (message._tag === "Data") {
              const outcome = Sequence.receive(transfer.receiver, message.seq, message.bytes.length)
              if (outcome._tag !== "Deliver") return yield* ack
              yield* deliver(transfer, outcome.state, message.bytes.subarray(outcome.offset))
              unacked += outcome.length
              if (complete(transfer)) {
                yield* Queue.end(transfer.out)
                yield* ack
              } else if (unacked >= ackEvery) {
                unacked = 0
                yield* ack
              }
            } else if (message._tag === "Finish" && complete(transfer)) {
              yield* ack
              yield* flow.send({ _tag: "Finish" })
              yield* flow.close
            }
          }),
        )
      }).pipe(Effect.scoped, Effect.ignore)

    /** One epoch on `address`: open or resume the bundle, then serve until any of it breaks. */
    const runEpoch = (address: Address.StreamAddress) =>
      Effect.gen(function* () {
        const control = yield* transport.connect(address, connectOptions)
        const inbox = yield* Queue.bounded<Message.Message, Cause.Done>(1_024)
        yield* Effect.forkScoped(
          Stream.runForEach(control.messages, (m) => Queue.offer(inbox, m)).pipe(
            Effect.ignore,
            Effect.andThen(Queue.end(inbox)),
          ),
        )
        const answer = Queue.take(inbox).pipe(
          Effect.timeoutOption(handshakeMs),
          Effect.option,
          Effect.map(Option.flatten),
        )
        let resend = pending !== undefined
        let udp: DatagramFlow.Peer | undefined
        if (session === undefined) {
          yield* control.send({
            _tag: "Open",
            protocol,
            channels: [{ name: "control", initialSeq: clientIsn }],
          })
          const opened = yield* answer
          if (Option.isNone(opened) || opened.value._tag !== "Opened") return refusal(opened)
          udp = peerOf(opened.value.udp)
          session = {
            id: opened.value.sessionId,
            secret: opened.value.secret,
            controlSeq: opened.value.channels[0]?.initialSeq ?? 0,
          }
        } else {
          counter++
          const acks: Record<string, number> = { control: session.controlSeq }
          for (const t of transfers.values()) acks[t.channel] = t.receiver.next
          yield* control.send({
            _tag: "Resume",
            sessionId: session.id,
            counter,
            acks,
            proof: Proof.sign(session.secret, session.id, counter, acks),
          })
          const resumed = yield* answer
          if (Option.isNone(resumed) || resumed.value._tag !== "Resumed") return refusal(resumed)
          udp = peerOf(resumed.value.udp)
          const expected = resumed.value.receiveNext.control ?? -1
          // The pending command was applied (its reply follows) or not (send it again).
          const step = BundleControl.rejoin(nextCommand, pending !== undefined, expected)
          resend = step === "resend"
          if (step === "mismatch")
            return new TakeoverRefused({
              reason: "WrongSession",
              sessionId: session.id,
              detail: `the server expects command ${expected}, the client is at ${nextCommand}`,
            })
        }
        const current: Epoch = {
          address,
          control,
          lost: yield* Deferred.make<void>(),
          scope: yield* Effect.scope,
          udp,
        }
        epoch = current
        yield* Effect.forkScoped(
          Effect.gen(function* () {
            while (true) {
              const message = yield* Queue.take(inbox)
              if (message._tag === "Reply") {
                if (pending !== undefined && message.seq === pending.command.seq)
                  yield* Deferred.succeed(pending.reply, message)
              } else {
                if (message._tag === "Handoff" && message.to !== undefined) {
                  const to = Address.parseStream(message.to)
                  if (!(to instanceof Address.InvalidAddress)) handedTo = to
                }
                return
              }
            }
          }).pipe(Effect.ignore, Effect.andThen(Deferred.succeed(current.lost, undefined))),
        )
        for (const t of transfers.values()) yield* ensureAttached(current, t)
        if (pending !== undefined && resend) yield* control.send(pending.command)
        yield* Deferred.succeed(up, undefined)
        return current
      })

    const refusal = (answer: Option.Option<Message.Message>) =>
      Option.isSome(answer) &&
      answer.value._tag === "Refused" &&
      answer.value.reason !== "Owned" &&
      answer.value.reason !== "Overloaded"
        ? new TakeoverRefused({
            reason: answer.value.reason,
            sessionId: session?.id ?? "",
            detail: answer.value.detail,
          })
        : undefined

    const supervise = Effect.gen(function* () {
      let lostAtMs: number | undefined
      for (let tried = 0; tried < attemptsMax; tried++) {
        const address =
          handedTo ?? Option.getOrUndefined(yield* Discovery.locate(options.service, tried))
        handedTo = undefined
        if (address === undefined) {
          // No server known now (the name server's holder died): wait and ask again.
          lostAtMs ??= yield* now
          yield* Effect.sleep(retryMs)
          continue
        }
        const scope = yield* Scope.make()
        const outcome = yield* runEpoch(address).pipe(
          Scope.provide(scope),
          Effect.catchTags({
            ConnectError: () => Effect.succeed(undefined),
            HandshakeError: () => Effect.succeed(undefined),
            ConnectionClosed: () => Effect.succeed(undefined),
            CodecError: () => Effect.succeed(undefined),
          }),
        )
        if (outcome instanceof TakeoverRefused) {
          yield* Scope.close(scope, Exit.void)
          return yield* outcome
        }
        if (outcome !== undefined) {
          if (lostAtMs !== undefined) {
            const gapMs = yield* Handshake.resumedAfter(lostAtMs, {
              sessionId: session?.id,
              server: Address.format(address),
            })
            lostAtMs = undefined
            options.onResumed?.({ gapMs, server: Address.format(address) })
          }
          yield* Deferred.await(outcome.lost)
          epoch = undefined
          up = Deferred.makeUnsafe<void>()
        }
        yield* Scope.close(scope, Exit.void)
        if (closing) return
        lostAtMs ??= yield* now
        if (outcome === undefined) yield* Effect.sleep(retryMs)
      }
      return yield* Handshake.attemptsExhausted(attemptsMax, session?.id)
    })
    yield* Effect.forkScoped(
      supervise.pipe(
        Effect.catch((error: TakeoverRefused) =>
          Effect.gen(function* () {
            for (const t of transfers.values()) yield* Queue.fail(t.out, error)
            yield* Deferred.fail(fatal, error)
          }),
        ),
      ),
    )

    /** Sends one command (one at a time) and waits for its reply, across takeovers. */
    const command = (
      op: Message.Command["op"],
      args: {
        name?: string
        transfer?: string
        paused?: boolean
        transport?: "udp" | "udp-multicast"
      },
    ) =>
      oneAtATime.withPermits(1)(
        Effect.gen(function* () {
          const reply = yield* Deferred.make<Message.Reply>()
          const sent: Message.Command = { _tag: "Command", seq: nextCommand, op, ...args }
          pending = { command: sent, reply }
          yield* Effect.raceFirst(Deferred.await(up), Deferred.await(fatal))
          // A send into a breaking epoch is lost; the next epoch sends it again.
          if (epoch !== undefined) yield* epoch.control.send(sent).pipe(Effect.ignore)
          const answer = yield* Effect.raceFirst(Deferred.await(reply), Deferred.await(fatal))
          pending = undefined
          nextCommand++
          if (!answer.ok)
            return yield* new CheckpointCommandFailed({ op, detail: answer.detail ?? "refused" })
          return answer
        }),
      )

    const close = Effect.gen(function* () {
      if (closing) return
      closing = true
      if (epoch !== undefined) yield* epoch.control.send({ _tag: "Finish" }).pipe(Effect.ignore)
      if (epoch !== undefined) yield* Deferred.succeed(epoch.lost, undefined)
    })
    yield* Effect.addFinalizer(() => close)

    return {
      sessionId: () => session?.id,
      list: command("LIST", {}).pipe(
        Effect.map((reply) => reply.objects ?? []),
        Effect.catchTag("CheckpointCommandFailed", (e) => Effect.die(e)),
      ),
      get: (
        name: string,
        getOptions?: {
          readonly paused?: boolean
          readonly transport?: Checkpoint.ConnectionTransport
        },
      ) =>
        command("GET", {
          name,
          ...(getOptions?.paused === true ? { paused: true } : {}),
          ...(getOptions?.transport === undefined || getOptions.transport === "tcp"
            ? {}
            : { transport: getOptions.transport }),
        }).pipe(
          Effect.flatMap((reply) =>
            Effect.gen(function* () {
              const t = reply.transfer!
              const transfer: ClientTransfer = {
                channel: t.channel,
                initialSeq: t.initialSeq,
                size: t.size,
                receiver: Sequence.receiver(t.initialSeq),
                out: yield* Queue.bounded<Uint8Array, TakeoverRefused | Cause.Done>(64),
                attachedIn: undefined,
                transport: t.transport ?? "tcp",
                group: peerOf(t.group),
              }
              transfers.set(t.channel, transfer)
              if (t.size === 0) yield* Queue.end(transfer.out)
              else if (epoch !== undefined) yield* ensureAttached(epoch, transfer)
              return {
                transfer: t.channel,
                name: t.name,
                size: t.size,
                bytes: Stream.fromQueue(transfer.out),
              }
            }),
          ),
        ),
      pause: (transfer: string) => command("PAUSE", { transfer }).pipe(Effect.asVoid),
      resume: (transfer: string) => command("RESUME", { transfer }).pipe(Effect.asVoid),
      close,
    }
  })
