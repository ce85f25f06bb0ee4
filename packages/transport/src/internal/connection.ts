/**
 * The connection core, shared by every `Transport` implementation: on top of a byte-stream
 * `Link` it runs the handshake, frames and MACs messages, decodes them with the codec,
 * applies backpressure both ways, sends keep-alives, detects idle peers, and decides the
 * one `CloseReason`.
 *
 * The hot path is synchronous and chunked: every frame of a received chunk is decoded in
 * the link's data callback and handed to the reader as one batch; the writer takes every
 * queued message at once and writes them as one buffer.
 */
import {
  type Cause,
  type Context,
  Deferred,
  Effect,
  Fiber,
  Metric,
  Queue,
  Redacted,
  Result,
  type Scope,
  Stream,
} from "effect"
import * as Address from "../Address.ts"
import * as CloseReason from "../CloseReason.ts"
import type { Connection } from "../Connection.ts"
import * as Metrics from "../Metrics.ts"
import type { ResolvedOptions } from "../Options.ts"
import { CodecError, ConnectError, ConnectionClosed, HandshakeError } from "../TransportError.ts"
import {
  encodedSize,
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameType,
  macBytes,
  writeFrame,
} from "./frame.ts"
import {
  clientProof,
  decodeHello,
  decodeHelloAck,
  encodeHello,
  encodeHelloAck,
  FrameMac,
  HelloStatus,
  type Key,
  macEquals,
  nonceBytes,
  protocolVersion,
  secretKey,
  serverProof,
} from "./handshake.ts"
import type { Link, RandomBytes } from "./link.ts"

/** Frames before the handshake completes are small; a stranger's bytes fail fast. */
const handshakeMaxBodyBytes = 256
/** Frames a handshake takes from one side at most: hello and proof (server). */
const handshakeFramesMax = 2
const noBytes = new Uint8Array(0)

type Phase = "hello" | "proof" | "helloAck" | "open" | "closed"

type Side = "client" | "server"

/** The labelled series, made once: a labelled update builds a context of its own. */
const openBySide = {
  client: Metric.withAttributes(Metrics.connections, { side: "client" }),
  server: Metric.withAttributes(Metrics.connections, { side: "server" }),
}

interface Batch<A> {
  readonly messages: Array<A>
  readonly bytes: number
}

/** The cluster key as a `KeyObject`, made once per options value rather than per connection. */
const clusterKeys = new WeakMap<Redacted.Redacted<Uint8Array | string>, Key>()

const clusterKeyOf = (clusterKey: Redacted.Redacted<Uint8Array | string>): Key => {
  const known = clusterKeys.get(clusterKey)
  if (known !== undefined) return known
  const value = Redacted.value(clusterKey)
  const key = secretKey(typeof value === "string" ? new TextEncoder().encode(value) : value)
  clusterKeys.set(clusterKey, key)
  return key
}

class Core<A> {
  phase: Phase
  private readonly decoder = new FrameDecoder(handshakeMaxBodyBytes)
  private macOut: FrameMac | undefined = undefined
  private macIn: FrameMac | undefined = undefined
  private bufferedBytes = 0
  private paused = false
  private drainWaiter: Deferred.Deferred<void> | undefined = undefined
  heardSinceTick = false
  sentSinceTick = false
  /** The keep-alive's last tick and the one before it. */
  tickAtMs = 0
  previousTickAtMs = 0
  /**
   * A lower bound of when the latest bytes read had arrived (see `lastHeardAtMs`): what a
   * read takes may have waited in the kernel since the event loop last read, which was after
   * the tick before the last one (one loop turn runs timers, then reads) — or, for a link
   * paused by back-pressure, since the tick before the one before the pause.
   */
  heardAfterMs = 0
  /** While set, reads may return bytes that waited out a pause: they count from here. */
  private backlogAfterMs: number | undefined = undefined
  /** Ticks since the link resumed after a pause; the backlog is read by the second. */
  private ticksSinceResume = 0
  reason: CloseReason.CloseReason | undefined = undefined

  readonly handshake = Deferred.makeUnsafe<void, HandshakeError | ConnectError>()
  readonly closed = Deferred.makeUnsafe<CloseReason.CloseReason>()

  readonly link: Link
  readonly role: Side
  readonly options: ResolvedOptions<A>
  readonly key: Key | undefined
  readonly nonce: Uint8Array
  readonly peer: string
  readonly inbound: Queue.Queue<Batch<A>, Cause.Done>
  readonly outbound: Queue.Queue<Uint8Array, Cause.Done>
  /** Where the metrics are recorded: the context of the fiber that made the connection. */
  readonly context: Context.Context<never>

  // Plain fields, not constructor parameter properties: Node's type stripping (used to
  // run .ts files directly, e.g. test peers in child processes) does not support those.
  constructor(
    link: Link,
    role: Side,
    options: ResolvedOptions<A>,
    key: Key | undefined,
    nonce: Uint8Array,
    peer: string,
    inbound: Queue.Queue<Batch<A>, Cause.Done>,
    outbound: Queue.Queue<Uint8Array, Cause.Done>,
    context: Context.Context<never>,
  ) {
    this.context = context
    this.link = link
    this.role = role
    this.options = options
    this.key = key
    this.nonce = nonce
    this.peer = peer
    this.inbound = inbound
    this.outbound = outbound
    this.phase = role === "client" ? "helloAck" : "hello"
  }

  get isClosed(): boolean {
    return this.phase === "closed"
  }

  start(): void {
    this.link.start({
      onData: (chunk) => this.onData(chunk),
      onEnd: () => this.onPeerGone(new CloseReason.End(), "end"),
      onReset: (detail) => this.onPeerGone(new CloseReason.Reset({ detail }), "destroy"),
      onDrain: () => this.releaseDrain(),
    })
    if (this.role === "client") {
      const hello = { version: protocolVersion, authenticated: this.key !== undefined }
      this.write(encodeFrame(FrameType.Hello, encodeHello({ ...hello, nonce: this.nonce })))
    }
  }

  private onPeerGone(reason: CloseReason.End | CloseReason.Reset, action: "end" | "destroy") {
    if (this.phase === "open" && reason._tag === "End" && this.decoder.bufferedBytes > 0) {
      // The stream ended inside a frame. That is what a sender killed in the middle of a
      // large write looks like, so it counts as the peer dying (a reset), not as bad input:
      // no partial message is ever delivered either way.
      reason = new CloseReason.Reset({
        detail: `stream ended inside a frame (${this.decoder.bufferedBytes} bytes of it received)`,
      })
      action = "destroy"
    }
    const handshaking = this.phase !== "open" && this.phase !== "closed"
    this.finish(reason, action)
    if (handshaking) {
      this.failHandshake(
        new ConnectError({
          address: this.peer,
          reason: "Closed",
          detail: `peer closed the connection during the handshake (${reason._tag})`,
        }),
      )
    }
  }

  // No `: void` on the handlers below: they end with `return this.refuse(...)`-style tail
  // calls, which the linter refuses in functions declared void.
  private onData(chunk: Uint8Array) {
    if (this.phase === "closed") return
    Metrics.bytesReceived.updateUnsafe(chunk.byteLength, this.context)
    this.heardSinceTick = true
    const arrivedAfterMs = this.backlogAfterMs ?? this.previousTickAtMs
    if (arrivedAfterMs > this.heardAfterMs) this.heardAfterMs = arrivedAfterMs
    let input = chunk
    // Handshake frames are taken one at a time: the last one raises the frame size limit,
    // and the peer's first messages follow it at once, often in the same chunk.
    for (let taken = 0; taken < handshakeFramesMax && this.phase !== "open"; taken++) {
      if (this.isClosed) return
      const handshake = this.decoder.push(input, 1)
      input = noBytes
      const frame = Array.isArray(handshake) ? handshake[0] : handshake.frames[0]
      if (frame !== undefined) this.onHandshakeFrame(frame)
      if (!Array.isArray(handshake)) {
        // A handshake frame before the bad bytes may already have refused the peer.
        if (!this.isClosed) this.refuse("NotUnderstudy", handshake.detail)
        return
      }
      if (frame === undefined) return
    }
    if (this.phase !== "open") return
    const decoded = this.decoder.push(input)
    // Frames completed before a framing error were well framed: they are still handled, in
    // order, so nothing the peer sent before the bad bytes is lost.
    const frames = Array.isArray(decoded) ? decoded : decoded.frames
    let messages: Array<A> | undefined
    let bytes = 0
    let failure: string | undefined
    for (const frame of frames) {
      const payload = this.verified(frame)
      if (payload === undefined) {
        failure = "frame MAC does not verify"
        break
      }
      if (frame.type === FrameType.Ping) continue
      if (frame.type !== FrameType.Data) {
        failure = `unexpected frame type ${frame.type}`
        break
      }
      const message = this.options.codec.decode(payload)
      if (Result.isFailure(message)) {
        failure = `undecodable message: ${message.failure.detail}`
        break
      }
      messages ??= []
      messages.push(message.success)
      bytes += payload.byteLength
    }
    if (messages !== undefined && this.phase === "open") {
      Metrics.messagesReceived.updateUnsafe(messages.length, this.context)
      Queue.offerUnsafe(this.inbound, { messages, bytes })
      this.bufferedBytes += bytes
      if (!this.paused && this.bufferedBytes > this.options.receiveBufferBytes) {
        this.paused = true
        this.backlogAfterMs ??= this.previousTickAtMs
        this.link.pause()
      }
    }
    if (failure === undefined && !Array.isArray(decoded)) failure = decoded.detail
    if (failure === undefined) return
    if (this.phase === "open") return this.protocolError(failure)
  }

  private verified(frame: Frame): Uint8Array | undefined {
    return this.macIn === undefined ? frame.body : this.macIn.verify(frame.type, frame.body)
  }

  /** Called by the reader after it took `bytes` of messages: resumes a paused link. */
  consumed(bytes: number): void {
    this.bufferedBytes -= bytes
    if (this.paused && this.bufferedBytes <= this.options.receiveBufferBytes / 2) {
      this.paused = false
      this.ticksSinceResume = 0
      if (this.phase !== "closed") this.link.resume()
    }
  }

  /** A keep-alive tick at `nowMs`: moves the bounds of `heardAfterMs` on. */
  tick(nowMs: number): void {
    this.previousTickAtMs = this.tickAtMs
    this.tickAtMs = nowMs
    if (this.backlogAfterMs !== undefined && !this.paused && ++this.ticksSinceResume >= 2) {
      this.backlogAfterMs = undefined
    }
  }

  private onHandshakeFrame(frame: Frame) {
    switch (this.phase) {
      case "hello":
        return this.onHello(frame)
      case "proof":
        return this.onProof(frame)
      case "helloAck":
        return this.onHelloAck(frame)
      default:
        return
    }
  }

  /** Server: the client's opening frame. */
  private onHello(frame: Frame) {
    if (frame.type !== FrameType.Hello) return this.refuse("NotUnderstudy", "no hello")
    const hello = decodeHello(frame.body)
    if (typeof hello === "string") return this.refuse("NotUnderstudy", hello)
    const reply = (status: number, nonce: Uint8Array, mac: Uint8Array) =>
      this.write(
        encodeFrame(
          FrameType.HelloAck,
          encodeHelloAck({ version: protocolVersion, status, nonce, mac }),
        ),
      )
    const empty = new Uint8Array(0)
    if (hello.version !== protocolVersion) {
      reply(HelloStatus.VersionMismatch, empty, empty)
      return this.refuse("VersionMismatch", `client speaks version ${hello.version}`, "end")
    }
    if (this.key === undefined) {
      if (hello.authenticated) {
        reply(HelloStatus.AuthenticationUnsupported, empty, empty)
        return this.refuse("AuthenticationFailed", "client offers a key; none here", "end")
      }
      reply(HelloStatus.Ok, empty, empty)
      return this.open()
    }
    if (!hello.authenticated) {
      reply(HelloStatus.AuthenticationRequired, empty, empty)
      return this.refuse("AuthenticationRequired", "client offered no cluster key", "end")
    }
    reply(HelloStatus.Ok, this.nonce, serverProof(this.key, hello.nonce, this.nonce))
    this.peerNonce = hello.nonce.slice()
    this.phase = "proof"
  }

  private peerNonce: Uint8Array = new Uint8Array(0)

  /** Server: the client's proof of the key. */
  private onProof(frame: Frame) {
    const key = this.key!
    if (
      frame.type !== FrameType.Proof ||
      !macEquals(frame.body, clientProof(key, this.peerNonce, this.nonce))
    ) {
      return this.refuse("AuthenticationFailed", "client proof of the cluster key is wrong")
    }
    const macs = FrameMac.pair(key, this.peerNonce, this.nonce)
    this.macOut = macs.serverToClient
    this.macIn = macs.clientToServer
    this.open()
  }

  /** Client: the server's answer to the hello. */
  private onHelloAck(frame: Frame) {
    if (frame.type !== FrameType.HelloAck) return this.refuse("NotUnderstudy", "no hello reply")
    const ack = decodeHelloAck(frame.body, this.key !== undefined)
    if (typeof ack === "string") return this.refuse("NotUnderstudy", ack)
    switch (ack.status) {
      case HelloStatus.Ok:
        break
      case HelloStatus.VersionMismatch:
        return this.refuse("VersionMismatch", `server speaks version ${ack.version}`)
      case HelloStatus.AuthenticationRequired:
        return this.refuse("AuthenticationRequired", "server requires a cluster key")
      case HelloStatus.AuthenticationUnsupported:
        return this.refuse("AuthenticationFailed", "server has no cluster key")
      default:
        return this.refuse("NotUnderstudy", `unknown hello status ${ack.status}`)
    }
    if (ack.version !== protocolVersion) {
      return this.refuse("VersionMismatch", `server speaks version ${ack.version}`)
    }
    if (this.key === undefined) return this.open()
    if (!macEquals(ack.mac, serverProof(this.key, this.nonce, ack.nonce))) {
      return this.refuse("AuthenticationFailed", "server proof of the cluster key is wrong")
    }
    const macs = FrameMac.pair(this.key, this.nonce, ack.nonce)
    this.macOut = macs.clientToServer
    this.macIn = macs.serverToClient
    this.write(encodeFrame(FrameType.Proof, clientProof(this.key, this.nonce, ack.nonce)))
    // No need to wait for the server to accept the proof: it has just proven the same key,
    // so it will; and it reads our frames in order, the proof first, so nothing we send
    // now is delivered unless the proof holds. This keeps the keyed handshake to one round
    // trip, like the plain one.
    this.open()
  }

  private open(): void {
    this.phase = "open"
    openBySide[this.role].modifyUnsafe(1, this.context)
    // The type byte, the largest payload, and the MAC only when frames carry one: an
    // unauthenticated peer must not slip 32 bytes over the limit.
    const macLength = this.macIn === undefined ? 0 : macBytes
    this.decoder.maxBodyBytes = this.options.frameBytesMax + 1 + macLength
    Deferred.doneUnsafe(this.handshake, Effect.void)
  }

  private failHandshake(error: HandshakeError | ConnectError): void {
    Deferred.doneUnsafe(this.handshake, Effect.fail(error))
  }

  private refuse(
    reason: HandshakeError["reason"],
    detail: string,
    action: "end" | "destroy" = "destroy",
  ): void {
    this.finish(new CloseReason.ProtocolError({ detail }), action)
    this.failHandshake(new HandshakeError({ address: this.peer, reason, detail }))
  }

  private protocolError(detail: string): void {
    this.finish(new CloseReason.ProtocolError({ detail }), "destroy")
  }

  /** Writes queued payloads as Data frames in one buffer; false when the link is full. */
  writeData(payloads: ReadonlyArray<Uint8Array>): boolean {
    return this.writeFrames(FrameType.Data, payloads)
  }

  writePing(): void {
    this.writeFrames(FrameType.Ping, [new Uint8Array(0)])
  }

  private writeFrames(type: number, payloads: ReadonlyArray<Uint8Array>): boolean {
    const withMac = this.macOut !== undefined
    let size = 0
    for (const payload of payloads) size += encodedSize(payload.byteLength, withMac)
    const out = new Uint8Array(size)
    let offset = 0
    const sign = this.macOut?.sign
    for (const payload of payloads) offset = writeFrame(out, offset, type, payload, sign)
    this.sentSinceTick = true
    if (type === FrameType.Data) Metrics.messagesSent.updateUnsafe(payloads.length, this.context)
    return this.write(out)
  }

  private write(bytes: Uint8Array): boolean {
    Metrics.bytesSent.updateUnsafe(bytes.byteLength, this.context)
    return this.link.write(bytes)
  }

  awaitDrain(): Effect.Effect<void> {
    const waiter = Deferred.makeUnsafe<void>()
    this.drainWaiter = waiter
    return Deferred.await(waiter)
  }

  private releaseDrain(): void {
    const waiter = this.drainWaiter
    this.drainWaiter = undefined
    if (waiter !== undefined) Deferred.doneUnsafe(waiter, Effect.void)
  }

  /** Decides the close reason, once, and releases everyone waiting on the connection. */
  finish(reason: CloseReason.CloseReason, action: "end" | "destroy" | "none"): void {
    if (this.phase === "closed") return
    if (this.phase === "open") {
      openBySide[this.role].modifyUnsafe(-1, this.context)
      const labels = { side: this.role, reason: reason._tag }
      Metric.withAttributes(Metrics.closes, labels).updateUnsafe(1, this.context)
      // The closes an operator looks for: a silent peer, a peer sending what does not decode.
      // The line carries the caller's annotations too (the node's id, role, term); a
      // time-out at debug, as the package above reports what the silence means to it.
      if (reason._tag === "Timeout" || reason._tag === "ProtocolError") {
        const line = `connection closed: ${CloseReason.describe(reason)}`
        Effect.runForkWith(this.context)(
          (reason._tag === "Timeout" ? Effect.logDebug(line) : Effect.logWarning(line)).pipe(
            Effect.annotateLogs({
              local: Address.format(this.link.local),
              peer: this.peer,
              side: this.role,
            }),
          ),
        )
      }
    }
    this.phase = "closed"
    this.reason = reason
    Queue.shutdownUnsafe(this.outbound)
    Queue.endUnsafe(this.inbound)
    if (action === "end") this.link.end()
    else if (action === "destroy") this.link.destroy()
    // Last: completing a Deferred may resume its waiters at once, and they must see the
    // connection fully closed.
    this.releaseDrain()
    Deferred.doneUnsafe(this.closed, Effect.succeed(reason))
  }

  closedError(): ConnectionClosed {
    return new ConnectionClosed({ remote: this.peer, reason: this.reason?._tag ?? "Closing" })
  }
}

/**
 * Runs the handshake over `link` and returns the open connection, which lives until it
 * closes or `Scope` closes (then queued messages are flushed for at most `lingerMs`).
 */
export const make = <A>(
  link: Link,
  params: {
    readonly role: "client" | "server"
    readonly options: ResolvedOptions<A>
    readonly randomBytes: RandomBytes
    readonly peer: string
  },
): Effect.Effect<Connection<A>, HandshakeError | ConnectError, Scope.Scope> =>
  Effect.gen(function* () {
    const { options } = params
    const key = options.clusterKey === undefined ? undefined : clusterKeyOf(options.clusterKey)
    const nonce = key === undefined ? new Uint8Array(0) : yield* params.randomBytes(nonceBytes)
    const inbound = yield* Queue.make<Batch<A>, Cause.Done>()
    const outbound = yield* Queue.make<Uint8Array, Cause.Done>({
      capacity: options.sendQueueCapacity,
    })
    const context = yield* Effect.context<never>()
    const core = new Core(
      link,
      params.role,
      options,
      key,
      nonce,
      params.peer,
      inbound,
      outbound,
      context,
    )
    const handshakeOutcome = (outcome: string) =>
      Metric.withAttributes(Metrics.handshakes, { side: params.role, outcome }).updateUnsafe(
        1,
        context,
      )
    // Until the graceful close below is in place, leaving the scope aborts the link.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => core.finish(new CloseReason.LocalClose(), "destroy")),
    )
    core.start()
    const handshake = yield* Deferred.await(core.handshake).pipe(
      Effect.tapError((error) => Effect.sync(() => handshakeOutcome(error.reason))),
      Effect.timeoutOption(options.handshakeTimeoutMs),
    )
    if (handshake._tag === "None") {
      const detail = `no handshake within ${options.handshakeTimeoutMs} ms`
      core.finish(new CloseReason.Timeout({ idleMs: options.handshakeTimeoutMs }), "destroy")
      handshakeOutcome("Timeout")
      return yield* new ConnectError({ address: params.peer, reason: "Timeout", detail })
    }
    handshakeOutcome("accepted")

    // From here on the keep-alive ticks bound the arrivals (see lastHeardAtMs).
    const openedAtMs = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
    core.tickAtMs = openedAtMs
    core.previousTickAtMs = openedAtMs
    core.heardAfterMs = openedAtMs
    const writer = yield* Effect.forkScoped(writeLoop(core))
    if (options.keepAlive !== false)
      yield* Effect.forkScoped(keepAliveLoop(core, options.keepAlive))

    const close = Effect.gen(function* () {
      if (core.isClosed) return
      // No new sends; the writer flushes what is queued, then the peer gets a clean end.
      Queue.endUnsafe(core.outbound)
      yield* Effect.timeoutOption(Effect.exit(Fiber.join(writer)), options.lingerMs)
      core.finish(new CloseReason.LocalClose(), "end")
    })
    yield* Effect.addFinalizer(() => close)

    const pull = Effect.map(Queue.takeAll(core.inbound), (batches) => {
      let bytes = 0
      const messages: Array<A> = []
      for (const batch of batches) {
        bytes += batch.bytes
        for (const message of batch.messages) messages.push(message)
      }
      core.consumed(bytes)
      return messages as unknown as readonly [A, ...Array<A>]
    })

    const send = (message: A): Effect.Effect<void, ConnectionClosed | CodecError> => {
      const payload = encodePayload(core, message)
      if (payload instanceof CodecError) return Effect.fail(payload)
      return Effect.flatMap(Queue.offer(core.outbound, payload), (accepted) =>
        accepted ? Effect.void : Effect.fail(core.closedError()),
      )
    }

    const connection: Connection<A> = {
      id: `${Address.format(link.local)}>${Address.format(link.remote)}`,
      local: link.local,
      remote: link.remote,
      send,
      sendAll: (messages) => Effect.forEach(messages, send, { discard: true }),
      messages: Stream.fromPull(Effect.succeed(pull)),
      // Never the time of the read: that can be later than the arrival.
      lastHeardAtMs: Effect.sync(() => core.heardAfterMs),
      closed: Deferred.await(core.closed),
      close,
    }
    return connection
  })

const encodePayload = <A>(core: Core<A>, message: A): Uint8Array | CodecError => {
  const encoded = core.options.codec.encode(message)
  if (Result.isFailure(encoded)) return encoded.failure
  const payload = encoded.success
  if (payload.byteLength > core.options.frameBytesMax) {
    return new CodecError({
      codec: core.options.codec.name,
      detail: `message of ${payload.byteLength} bytes is over the maximum ${core.options.frameBytesMax}`,
    })
  }
  return payload
}

/** Drains the outgoing queue, a whole batch per write, waiting for the link to drain. */
const writeLoop = <A>(core: Core<A>): Effect.Effect<void> =>
  Effect.gen(function* () {
    while (!core.isClosed) {
      const batch = yield* Queue.takeAll(core.outbound)
      if (core.isClosed) return
      if (!core.writeData(batch)) yield* core.awaitDrain()
    }
  }).pipe(Effect.catchCause(() => Effect.void))

/**
 * Every half interval: ping if nothing was sent since the last tick; close with `Timeout`
 * when nothing at all was received for `timeoutMs`. Flags set by the I/O callbacks keep
 * the clock out of the hot path. A tick that comes late by more than an interval (a process
 * starved of CPU: its timers run before it reads what waited in the kernel meanwhile) does
 * not decide the time-out: the next one, after those reads, does. Only one tick in a row is
 * let off, so a peer that is really silent is still caught, one tick later at most.
 */
const keepAliveLoop = <A>(
  core: Core<A>,
  keepAlive: { readonly intervalMs: number; readonly timeoutMs: number },
): Effect.Effect<void> =>
  Effect.gen(function* () {
    const tickMs = Math.max(1, Math.floor(keepAlive.intervalMs / 2))
    let lastHeardMs = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
    let lastTickMs = lastHeardMs
    let sinceSentMs = 0
    let wasLate = false
    while (!core.isClosed) {
      yield* Effect.sleep(tickMs)
      if (core.isClosed) return
      const nowMs = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
      const late: boolean = nowMs - lastTickMs > tickMs + keepAlive.intervalMs && !wasLate
      wasLate = late
      lastTickMs = nowMs
      if (core.heardSinceTick) {
        core.heardSinceTick = false
        lastHeardMs = nowMs
      } else if (!late && nowMs - lastHeardMs >= keepAlive.timeoutMs) {
        core.finish(new CloseReason.Timeout({ idleMs: nowMs - lastHeardMs }), "destroy")
        return
      }
      core.tick(nowMs)
      sinceSentMs = core.sentSinceTick ? 0 : sinceSentMs + tickMs
      core.sentSinceTick = false
      if (sinceSentMs >= keepAlive.intervalMs) {
        core.writePing()
        sinceSentMs = 0
      }
    }
  })
