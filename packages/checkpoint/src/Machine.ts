/**
 * The session protocol as pure machines on the `@understudy/machine` contract: a duplex
 * session's server side (`duplexServer`) and client side (`duplexClient`), which
 * `DuplexSession`'s server and `DuplexSession.connect` drive. The object session and the
 * bundle still run their protocol inline in their drivers (see docs/checkpoint.md); the
 * takeover server's decision is `Resume.evaluate`, the sequence rules `Sequence`.
 *
 * `DuplexServer` is one session on one connection, from its `Opened` (or, at a takeover
 * server, its `Resumed`) to its end. Its one peer is the client (`client`). What it
 * decides and the driver performs:
 * - checkpoint writes: `WriteCheckpoint` carries what the checkpoint holds (`Snapshot`); the
 *   driver writes it and steps `Checkpointed` (a failed write ends the driver, and with it
 *   the session at this server). While a write is out the machine reads nothing more into
 *   the application and sends nothing on its account;
 * - write-ahead: a byte of the server's stream leaves only below the send horizon, and the
 *   horizon moves only on `Checkpointed`, to the end of what that checkpoint holds;
 * - the client's bytes are acknowledged (`Ack`) only up to what a written checkpoint has
 *   read: their effect on the application's state is durable before the client may forget
 *   them;
 * - the end (`Finish`, then `Finished` once the client acknowledged everything), a planned
 *   hand-off (`Handoff`, after a last checkpoint), and what breaks the session (`Broken`).
 *
 * The state is updated in place (the contract's hot-path variant: the windows of bytes are
 * not copied per step): the driver owns it and steps it from one fiber.
 *
 * @since 0.1.0
 */
import { Machine as M } from "@understudy/machine"
import type { Handler } from "./DuplexSession.ts"
import * as ByteWindow from "./internal/byteWindow.ts"
import * as Message from "./Message.ts"
import * as Proof from "./Proof.ts"
import * as Sequence from "./Sequence.ts"

/** The machine's one peer: the client's connection. @since 0.1.0 @category models */
export const client = "client"

/** The duplex session's protocol, in the client's `Open` and in checkpoints. @since 0.1.0 @category models */
export const duplexProtocol = "understudy-duplex/1"

/** Bytes the handler reads per step. @since 0.1.0 @category limits */
export const stepInputBytesMax = 16 * 1024
/** Bytes one step may write; more ends the session (a defect of the handler). @since 0.1.0 @category limits */
export const stepBytesMax = 64 * 1024

/**
 * What a duplex checkpoint holds, at one consistent point: both directions' positions, the
 * server's unacknowledged bytes, and the application's state after reading `received`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  /** The server's stream: its first sequence number, the client's acknowledgement, the end written. */
  readonly initialSeqSource: number
  readonly ackedSeqSource: number
  readonly currentSeqSource: number
  /** Every byte the application wrote from `ackedSeqSource` to `currentSeqSource`. */
  readonly window: Uint8Array
  /** The client's stream: its first sequence number, and what the application has read. */
  readonly initialSeqDestination: number
  readonly currentSeqDestination: number
  readonly app: unknown
  readonly inputEnded: boolean
}

/**
 * Where the machine starts: a new session (`Opened` is its first message), or a takeover
 * from a checkpoint at the position the client acknowledged (`Resumed` is).
 *
 * @since 0.1.0
 * @category models
 */
export type DuplexStart =
  | {
      readonly _tag: "Open"
      readonly sessionId: string
      readonly secret: Uint8Array
      /** The server's first sequence number, and the client's. */
      readonly initialSeq: number
      readonly clientInitialSeq: number
    }
  | {
      readonly _tag: "Resume"
      readonly checkpoint: Snapshot
      /** The send horizon the checkpoint records. */
      readonly sendHorizonSeq: number
      /** The client's acknowledgement of the server's stream: sent again from there. */
      readonly resumeSeq: number
    }

/** @since 0.1.0 @category models */
export interface DuplexConfig {
  // biome-ignore lint/suspicious/noExplicitAny: the handler's state type is the caller's
  readonly handler: Handler<any>
  /** Bytes in flight unacknowledged, each way. */
  readonly windowBytesMax: number
  readonly segmentBytes: number
  readonly start: DuplexStart
}

/**
 * The driver's inputs, as commands.
 *
 * @since 0.1.0
 * @category models
 */
export type DuplexCommand =
  /** The checkpoint of the latest `WriteCheckpoint` is durable. */
  | { readonly _tag: "Checkpointed" }
  /** A planned hand-off: the client is told to go (first to `to`) once all is durable. */
  | { readonly _tag: "Handoff"; readonly to: string | undefined }
  /** The connection's messages ended. */
  | { readonly _tag: "ConnectionEnded" }

/** What the driver does besides sending. @since 0.1.0 @category models */
export type DuplexEvent =
  /** Write this checkpoint, then step `Checkpointed`. */
  | { readonly _tag: "WriteCheckpoint"; readonly snapshot: Snapshot }
  /** The client acknowledged the whole stream after `Finish`: the session is over. */
  | { readonly _tag: "Finished"; readonly bytes: number }
  /** `Handoff` was sent: give the session up for the next server. */
  | { readonly _tag: "HandedOff"; readonly to: string | undefined }
  /** The client broke the protocol or went: the session stays for a takeover. */
  | { readonly _tag: "Broken"; readonly reason: string }
  /** The handler wrote more than a step may: a defect of the application. */
  | { readonly _tag: "Defect"; readonly message: string }

/** @since 0.1.0 @category models */
export interface DuplexState {
  /** To the client: `next` sent, `acked`, `horizon` (what the latest checkpoint holds). */
  sender: Sequence.Sender
  /** What the application wrote, from the client's acknowledgement: `window.end` written. */
  readonly window: ByteWindow.ByteWindow
  /** From the client: `next` is what the application has read. */
  receiver: Sequence.Receiver
  /** From the client: `next` is what arrived. */
  arrived: Sequence.Receiver
  /** Arrived and not yet read by the application (at most a window). */
  readonly input: Array<Uint8Array>
  inputBytes: number
  /** What the latest durable checkpoint has read: what the client is told. */
  durableReceived: number
  app: unknown
  /** The handler's `end` ran. */
  inputEnded: boolean
  /** State changed since the latest checkpoint. */
  dirty: boolean
  clientEnded: boolean
  broken: string | undefined
  finishSent: boolean
  handoff: { readonly to: string | undefined } | undefined
  /** A checkpoint write is out, and what it holds; `forHandoff`: the hand-off waits for it. */
  writing: { readonly snapshot: Snapshot; readonly forHandoff: boolean } | undefined
  /** Finished, handed off, broken: nothing more is done. */
  over: boolean
}

/** @since 0.1.0 @category models */
export type DuplexOutput = M.Output<Message.Message, DuplexEvent>

/** @since 0.1.0 @category models */
export type DuplexServer = M.Machine<DuplexState, Message.Message, DuplexCommand, DuplexEvent>

/**
 * What a checkpoint taken now holds.
 *
 * @since 0.1.0
 * @category getters
 */
export const snapshot = (state: DuplexState): Snapshot => ({
  initialSeqSource: state.sender.initialSeq,
  ackedSeqSource: state.sender.acked,
  currentSeqSource: state.window.end,
  window: ByteWindow.slice(state.window, state.sender.acked, state.window.end),
  initialSeqDestination: state.receiver.initialSeq,
  currentSeqDestination: state.receiver.next,
  app: state.app,
  inputEnded: state.inputEnded,
})

const initialState = (config: DuplexConfig): DuplexState => {
  const { start, windowBytesMax } = config
  const base = (
    sender: Sequence.Sender,
    window: ByteWindow.ByteWindow,
    receiver: Sequence.Receiver,
    app: unknown,
    inputEnded: boolean,
  ): DuplexState => ({
    sender,
    window,
    receiver,
    arrived: receiver,
    input: [],
    inputBytes: 0,
    durableReceived: receiver.next,
    app,
    inputEnded,
    dirty: false,
    clientEnded: false,
    broken: undefined,
    finishSent: false,
    handoff: undefined,
    writing: undefined,
    over: false,
  })
  if (start._tag === "Open")
    return base(
      Sequence.sender(start.initialSeq, windowBytesMax, start.initialSeq),
      ByteWindow.make(start.initialSeq),
      Sequence.receiver(start.clientInitialSeq),
      config.handler.initial,
      false,
    )
  // Recreated from the client's acknowledgement, the window the checkpoint holds and the
  // application's state.
  const held = start.checkpoint
  return base(
    {
      initialSeq: held.initialSeqSource,
      acked: start.resumeSeq,
      next: start.resumeSeq,
      horizon: start.sendHorizonSeq,
      windowBytesMax,
    },
    ByteWindow.make(held.ackedSeqSource, held.window),
    { initialSeq: held.initialSeqDestination, next: held.currentSeqDestination },
    held.app,
    held.inputEnded,
  )
}

/**
 * The server side of one duplex session.
 *
 * @since 0.1.0
 * @category constructors
 */
export const duplexServer = (config: DuplexConfig): DuplexServer => {
  const { handler, windowBytesMax, segmentBytes } = config

  const room = (s: DuplexState) => s.window.end - s.sender.acked < windowBytesMax

  /** What arrived from the client: recorded now, read by the application in `pump`. */
  const arrive = (s: DuplexState, message: Message.Message) => {
    if (message._tag === "Data") {
      const outcome = Sequence.receive(s.arrived, message.seq, message.bytes.length)
      if (outcome._tag === "Gap") s.broken = "a gap in the client's bytes"
      else if (outcome._tag === "Deliver") {
        s.arrived = outcome.state
        s.input.push(message.bytes.subarray(outcome.offset))
        s.inputBytes += outcome.length
        if (s.inputBytes > windowBytesMax) s.broken = "the client overran its window"
      }
    } else if (message._tag === "Ack") {
      const outcome = Sequence.acknowledge(s.sender, message.ack)
      if (outcome._tag === "Advanced") {
        s.sender = outcome.state
        ByteWindow.drop(s.window, message.ack)
      } else if (outcome._tag === "BeyondSent") s.broken = "an acknowledgement beyond sent"
    } else if (message._tag === "Finish") s.clientEnded = true
    else s.broken = `unexpected ${message._tag}`
  }

  const write = (s: DuplexState, out: Array<DuplexOutput>, forHandoff: boolean) => {
    const held = snapshot(s)
    s.writing = { snapshot: held, forHandoff }
    out.push(M.emit({ _tag: "WriteCheckpoint", snapshot: held }))
  }

  const stop = (s: DuplexState, out: Array<DuplexOutput>, event: DuplexEvent) => {
    s.over = true
    out.push(M.emit(event))
  }

  /** Everything is durable: the client is told to go, and the session given up. */
  const handOff = (s: DuplexState, out: Array<DuplexOutput>, to: string | undefined) => {
    out.push(M.send(client, { _tag: "Handoff", ...(to === undefined ? {} : { to }) }))
    stop(s, out, { _tag: "HandedOff", to })
  }

  /** The application reads while its output has room in the window. False on a defect. */
  const read = (s: DuplexState, out: Array<DuplexOutput>): boolean => {
    while (s.inputBytes > 0 && room(s)) {
      const head = s.input[0]!
      const bytes = head.subarray(0, stepInputBytesMax)
      if (bytes.length === head.length) s.input.shift()
      else s.input[0] = head.subarray(bytes.length)
      s.inputBytes -= bytes.length
      const step = handler.receive(s.app, bytes)
      s.app = step.state
      s.receiver = { ...s.receiver, next: s.receiver.next + bytes.length }
      s.dirty = true
      if (step.write !== undefined) {
        if (step.write.length > stepBytesMax) {
          stop(s, out, {
            _tag: "Defect",
            message: `a handler step wrote ${step.write.length} bytes`,
          })
          return false
        }
        ByteWindow.append(s.window, step.write)
      }
    }
    if (s.clientEnded && s.inputBytes === 0 && !s.inputEnded && room(s)) {
      const last = handler.end?.(s.app)
      if (last !== undefined && last.length > stepBytesMax) {
        stop(s, out, { _tag: "Defect", message: `a handler end wrote ${last.length} bytes` })
        return false
      }
      if (last !== undefined) ByteWindow.append(s.window, last)
      s.inputEnded = true
      s.dirty = true
    }
    return true
  }

  /**
   * Runs the session as far as it can go on what it has: read, checkpoint, send, end. After
   * a write (`afterWrite`) it goes on from sending, as the write returned mid-round.
   */
  const pump = (s: DuplexState, out: Array<DuplexOutput>, afterWrite: boolean) => {
    let sending = afterWrite
    // What arrived while the write was out (the client's end, say) is seen once more after it.
    let again = afterWrite
    while (true) {
      if (!sending) {
        if (s.handoff !== undefined) {
          // Everything sent is in a checkpoint already; what was read since is made durable.
          if (s.dirty) return write(s, out, true)
          return handOff(s, out, s.handoff.to)
        }
        if (!read(s, out)) return
        // Durable before it is sent or acknowledged: once nothing else is to be done now,
        // when the window is full, or when the client's unacknowledged bytes reach half a window.
        if (
          s.dirty &&
          (s.inputBytes === 0 ||
            !room(s) ||
            s.receiver.next - s.durableReceived >= windowBytesMax / 2)
        )
          return write(s, out, false)
      }
      sending = false
      for (
        let n = Sequence.sendable(s.sender, segmentBytes);
        n > 0;
        n = Sequence.sendable(s.sender, segmentBytes)
      ) {
        const seq = s.sender.next
        const bytes = ByteWindow.slice(s.window, seq, seq + n)
        s.sender = Sequence.sent(s.sender, n)
        out.push(M.send(client, { _tag: "Data", seq, bytes }))
      }
      if (s.inputEnded && !s.dirty && s.sender.next === s.window.end) {
        if (!s.finishSent) out.push(M.send(client, { _tag: "Finish" }))
        s.finishSent = true
        // The session is over once the client acknowledged everything.
        if (s.sender.acked === s.window.end)
          return stop(s, out, { _tag: "Finished", bytes: s.window.end - s.sender.initialSeq })
      }
      if (s.broken !== undefined) return stop(s, out, { _tag: "Broken", reason: s.broken })
      if (s.inputBytes > 0 && room(s)) continue
      if (!again) return
      again = false
    }
  }

  /** The write returned: what it holds may leave, and the client's bytes it read are acknowledged. */
  const checkpointed = (s: DuplexState, out: Array<DuplexOutput>) => {
    const written = s.writing!
    s.writing = undefined
    s.sender = Sequence.extendHorizon(s.sender, written.snapshot.currentSeqSource)
    s.dirty = false
    if (written.snapshot.currentSeqDestination > s.durableReceived) {
      s.durableReceived = written.snapshot.currentSeqDestination
      out.push(M.send(client, { _tag: "Ack", ack: s.durableReceived }))
    }
    if (written.forHandoff) return handOff(s, out, s.handoff?.to)
    pump(s, out, true)
  }

  return {
    init: () => {
      const state = initialState(config)
      const { start } = config
      const first: Message.Message =
        start._tag === "Open"
          ? {
              _tag: "Opened",
              sessionId: start.sessionId,
              secret: start.secret,
              channels: [{ name: "data", initialSeq: start.initialSeq }],
              window: windowBytesMax,
            }
          : // Ready: the client sends again from what the checkpoint has read.
            { _tag: "Resumed", receiveNext: { data: state.receiver.next }, window: windowBytesMax }
      return M.result(state, [M.send(client, first)])
    },
    step: (state, input) => {
      const out: Array<DuplexOutput> = []
      if (state.over) return M.result(state, out)
      if (input._tag === "Receive") arrive(state, input.message)
      else if (input._tag === "Command") {
        const command = input.command
        if (command._tag === "Checkpointed") {
          if (state.writing === undefined) return M.result(state, out)
          checkpointed(state, out)
          return M.result(state, out)
        }
        if (command._tag === "Handoff") state.handoff = { to: command.to }
        else state.broken ??= "the connection ended"
      }
      if (state.writing === undefined) pump(state, out, false)
      return M.result(state, out)
    },
  }
}

/** The client machine's one peer: the server of its current connection. @since 0.1.0 @category models */
export const server = "server"

/** @since 0.1.0 @category models */
export interface DuplexClientConfig {
  /** The client's first sequence number. */
  readonly initialSeq: number
  /** The client acknowledges at least this often (or every half window, when smaller). */
  readonly ackEveryBytes: number
}

/**
 * The client's inputs besides the server's messages, as commands.
 *
 * @since 0.1.0
 * @category models
 */
export type DuplexClientCommand =
  /** A new connection to a server is up: the session is opened, or resumed, on it. */
  | { readonly _tag: "Connected" }
  /** The connection is gone. */
  | { readonly _tag: "Lost" }
  /** The application writes (a copy it will not change). */
  | { readonly _tag: "Write"; readonly bytes: Uint8Array }
  /** The application ends its writes. */
  | { readonly _tag: "End" }
  /** The application took the bytes of the latest `Deliver`. */
  | { readonly _tag: "Delivered" }

/** @since 0.1.0 @category models */
export type DuplexClientEvent =
  /** Give these bytes of the server's stream to the application, then step `Delivered`. */
  | { readonly _tag: "Deliver"; readonly bytes: Uint8Array }
  /** The server answered the handshake: the session flows on this connection. */
  | { readonly _tag: "Ready" }
  /** A takeover server resumed the session: where each direction goes on from. */
  | { readonly _tag: "Resumed"; readonly readOffset: number; readonly writeOffset: number }
  /** Close the connection: the next server of the service is tried. */
  | { readonly _tag: "Close" }
  /** The server refused the session (see `Handshake.refused`). */
  | {
      readonly _tag: "Refused"
      readonly message: Extract<Message.Message, { _tag: "Refused" }>
    }
  /** A takeover server resumes outside what the client holds: the driver ends the session. */
  | {
      readonly _tag: "ResumeRefused"
      readonly reason: "TooOld" | "BeyondSent"
      readonly detail: string
    }
  /** The server hands the session off: go to `to` first. */
  | { readonly _tag: "HandedOff"; readonly to: string | undefined }
  /** The server's stream ended, and everything of it was read: the session is over. */
  | { readonly _tag: "Complete" }

/** @since 0.1.0 @category models */
export interface DuplexClientState {
  session: { readonly id: string; readonly secret: Uint8Array } | undefined
  /** Resumes so far: each one's proof has a new counter. */
  counter: number
  /** To the server; its window is the server's, told in `Opened` (nothing leaves before). */
  sender: Sequence.Sender
  /** What the application wrote, from the server's acknowledgement. */
  readonly written: ByteWindow.ByteWindow
  ended: boolean
  /** From the server, once opened: `next` is what the application took. */
  receiver: Sequence.Receiver | undefined
  /** A `Deliver` out, and the receiver once the application took it. */
  delivering: { readonly next: Sequence.Receiver; readonly length: number } | undefined
  complete: boolean
  /** The current connection: up, answered, `Finish` sent on it, bytes read unacknowledged. */
  connected: boolean
  ready: boolean
  finishSent: boolean
  unacked: number
  ackEvery: number
}

/** @since 0.1.0 @category models */
export type DuplexClientOutput = M.Output<Message.Message, DuplexClientEvent>

/** @since 0.1.0 @category models */
export type DuplexClient = M.Machine<
  DuplexClientState,
  Message.Message,
  DuplexClientCommand,
  DuplexClientEvent
>

/** Largest `Data` segment the client sends. */
const clientSegmentBytes = 64 * 1024

/**
 * The client side of one duplex session, across its connections: opens it, resumes it at
 * each takeover (the server's stream from what it read, its own from what the server's
 * checkpoint read), and refuses a takeover server that resumes outside what it holds. The
 * state is updated in place, as the server's.
 *
 * @since 0.1.0
 * @category constructors
 */
export const duplexClient = (config: DuplexClientConfig): DuplexClient => {
  const { initialSeq, ackEveryBytes } = config

  const close = (out: Array<DuplexClientOutput>) => out.push(M.emit({ _tag: "Close" }))

  /** Sends what the window allows; `Finish` once ended and everything acknowledged. */
  const pump = (s: DuplexClientState, out: Array<DuplexClientOutput>) => {
    if (!s.connected || !s.ready || s.complete) return
    for (
      let n = Sequence.sendable(
        s.sender,
        Math.min(clientSegmentBytes, s.written.end - s.sender.next),
      );
      n > 0;
      n = Sequence.sendable(s.sender, Math.min(clientSegmentBytes, s.written.end - s.sender.next))
    ) {
      const seq = s.sender.next
      out.push(
        M.send(server, { _tag: "Data", seq, bytes: ByteWindow.slice(s.written, seq, seq + n) }),
      )
      s.sender = Sequence.sent(s.sender, n)
    }
    if (s.ended && !s.finishSent && s.sender.acked === s.written.end) {
      s.finishSent = true
      out.push(M.send(server, { _tag: "Finish" }))
    }
  }

  const connected = (s: DuplexClientState, out: Array<DuplexClientOutput>) => {
    s.connected = true
    s.ready = false
    s.finishSent = false
    s.unacked = 0
    s.ackEvery = ackEveryBytes
    s.delivering = undefined
    if (s.session === undefined)
      out.push(
        M.send(server, {
          _tag: "Open",
          protocol: duplexProtocol,
          channels: [{ name: "data", initialSeq }],
        }),
      )
    else {
      s.counter++
      const acks = { data: s.receiver!.next }
      out.push(
        M.send(server, {
          _tag: "Resume",
          sessionId: s.session.id,
          counter: s.counter,
          acks,
          proof: Proof.sign(s.session.secret, s.session.id, s.counter, acks),
        }),
      )
    }
  }

  const receive = (
    s: DuplexClientState,
    message: Message.Message,
    out: Array<DuplexClientOutput>,
  ) => {
    switch (message._tag) {
      case "Opened":
        if (s.session !== undefined) return close(out)
        s.session = { id: message.sessionId, secret: message.secret }
        s.receiver = Sequence.receiver(message.channels[0]?.initialSeq ?? 0)
        s.sender = { ...s.sender, windowBytesMax: message.window ?? 64 * 1024 }
        s.ackEvery = Message.ackInterval(ackEveryBytes, message.window)
        s.ready = true
        out.push(M.emit({ _tag: "Ready" }))
        return pump(s, out)
      case "Resumed": {
        const at = message.receiveNext.data
        // The session cannot go on: the driver ends it with this refusal.
        if (at === undefined || at < s.sender.acked || at > s.sender.next)
          return void out.push(
            M.emit({
              _tag: "ResumeRefused",
              reason: at === undefined || at < s.sender.acked ? "TooOld" : "BeyondSent",
              detail: `the server resumes reading at ${at}, the client holds ${s.sender.acked}..${s.sender.next}`,
            }),
          )
        s.sender = {
          ...Sequence.rewind(s.sender, at),
          windowBytesMax: message.window ?? s.sender.windowBytesMax,
        }
        ByteWindow.drop(s.written, at)
        s.ackEvery = Message.ackInterval(ackEveryBytes, message.window)
        s.ready = true
        out.push(
          M.emit({
            _tag: "Resumed",
            readOffset: s.receiver!.next - s.receiver!.initialSeq,
            writeOffset: at - initialSeq,
          }),
          M.emit({ _tag: "Ready" }),
        )
        return pump(s, out)
      }
      case "Refused":
        return void out.push(M.emit({ _tag: "Refused", message }))
      case "Data": {
        if (s.receiver === undefined) return close(out)
        const outcome = Sequence.receive(s.receiver, message.seq, message.bytes.length)
        if (outcome._tag === "Gap") return close(out)
        if (outcome._tag === "Deliver") {
          // Counted as read once the application took it (`Delivered`).
          s.delivering = { next: outcome.state, length: outcome.length }
          out.push(M.emit({ _tag: "Deliver", bytes: message.bytes.subarray(outcome.offset) }))
        }
        return
      }
      case "Ack": {
        const outcome = Sequence.acknowledge(s.sender, message.ack)
        if (outcome._tag === "BeyondSent") return close(out)
        if (outcome._tag === "Advanced") {
          s.sender = outcome.state
          ByteWindow.drop(s.written, message.ack)
        }
        return pump(s, out)
      }
      case "Finish":
        s.complete = true
        out.push(
          M.send(server, { _tag: "Ack", ack: s.receiver!.next }),
          M.emit({ _tag: "Complete" }),
        )
        return
      case "Handoff":
        out.push(M.emit({ _tag: "HandedOff", to: message.to }))
        return close(out)
      default:
        return close(out)
    }
  }

  return {
    init: () =>
      M.result({
        session: undefined,
        counter: 0,
        sender: Sequence.sender(initialSeq, 1),
        written: ByteWindow.make(initialSeq),
        ended: false,
        receiver: undefined,
        delivering: undefined,
        complete: false,
        connected: false,
        ready: false,
        finishSent: false,
        unacked: 0,
        ackEvery: ackEveryBytes,
      }),
    step: (state, input) => {
      const out: Array<DuplexClientOutput> = []
      if (state.complete) return M.result(state, out)
      if (input._tag === "Receive") {
        if (state.connected) receive(state, input.message, out)
        return M.result(state, out)
      }
      if (input._tag !== "Command") return M.result(state, out)
      const command = input.command
      switch (command._tag) {
        case "Connected":
          connected(state, out)
          break
        case "Lost":
          state.connected = false
          state.ready = false
          break
        case "Write":
          ByteWindow.append(state.written, command.bytes)
          pump(state, out)
          break
        case "End":
          state.ended = true
          pump(state, out)
          break
        case "Delivered": {
          const taken = state.delivering
          if (taken === undefined) break
          state.delivering = undefined
          state.receiver = taken.next
          state.unacked += taken.length
          if (state.unacked >= state.ackEvery && state.connected) {
            state.unacked = 0
            out.push(M.send(server, { _tag: "Ack", ack: state.receiver.next }))
          }
          break
        }
      }
      return M.result(state, out)
    },
  }
}
