/**
 * The session protocol as pure machines on the `@understudy/machine` contract. Today: the
 * server side of a duplex session (`DuplexServer`), which `DuplexSession`'s server drives.
 * The object session, the bundle and the clients still run their protocol inline (see
 * docs/checkpoint.md).
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
import type * as Message from "./Message.ts"
import * as Sequence from "./Sequence.ts"

/** The machine's one peer: the client's connection. @since 0.1.0 @category models */
export const client = "client"

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
