/**
 * A duplex session on FastSim: the server machine (`Machine.duplexServer`) on three server
 * nodes, the client machine (`Machine.duplexClient`) on a client node, and a checkpoint
 * store, as nodes of one simulated network. The glue is
 * what the drivers and the store do, reduced to messages:
 * - a session connection is a numbered stream between the client and one server: messages
 *   carry its number, and a receiver drops what comes on a connection it no longer serves;
 *   the client gives up a connection whose server fell silent and resumes at the next server;
 * - the store holds each session's latest checkpoint and its owner's term: `Open` and
 *   `Claim` (a takeover) make the sender the owner with a new term, and a write from an
 *   older term is fenced, as `CheckpointStore`'s lease-fenced writes are;
 * - a server's `WriteCheckpoint` goes to the store, whose answer steps `Checkpointed`; a
 *   takeover server claims the session, checks the client's acknowledgement against the
 *   checkpoint as `Resume.evaluate` does, and starts the machine from it.
 *
 * The client's application writes a known input as the window allows and takes what it is
 * given at once; its driver, as `DuplexSession.connect`, goes to the next server on `Close`.
 */
import { Machine as M } from "@understudy/machine"
import * as Machine from "../../src/Machine.ts"
import type * as Message from "../../src/Message.ts"
import * as App from "./duplexApp.ts"

export const servers = ["s1", "s2", "s3"]
export const nodes = ["client", ...servers, "store"]
export const serverIsn = 1_000
export const clientIsn = 5_000
/** The client gives a connection up after this long without a message on it. */
export const silenceMs = 300

export type Msg =
  | { readonly kind: "session"; readonly conn: number; readonly message: Message.Message }
  | { readonly kind: "open"; readonly conn: number; readonly held: Held }
  | { readonly kind: "claim"; readonly conn: number; readonly sessionId: string }
  | {
      readonly kind: "write"
      readonly sessionId: string
      readonly term: number
      readonly held: Held
    }
  | { readonly kind: "opened"; readonly conn: number; readonly term: number }
  | { readonly kind: "claimed"; readonly conn: number; readonly term: number; readonly held?: Held }
  | { readonly kind: "written"; readonly sessionId: string; readonly term: number }
  | { readonly kind: "fenced"; readonly sessionId: string; readonly term: number }

/** A checkpoint as the store holds it. */
export interface Held {
  readonly snapshot: Machine.Snapshot
  readonly sendHorizonSeq: number
}

export interface StoreState {
  readonly kind: "store"
  readonly sessions: Map<string, { term: number; owner: string; held: Held }>
}

interface Serving {
  readonly conn: number
  readonly sessionId: string
  /** The store's answer to `Open`/`Claim` not yet in: the machine does not run. */
  term: number | undefined
  machine: Machine.DuplexServer | undefined
  state: Machine.DuplexState | undefined
  /** The client's `Resume`, waiting for the claim. */
  readonly resumeSeq?: number
  /** A new session's first message, sent once the store holds its first checkpoint. */
  opened?: ReadonlyArray<Machine.DuplexOutput>
}

export interface ServerState {
  readonly kind: "server"
  readonly self: string
  serving: Serving | undefined
}

export interface ClientState {
  readonly kind: "client"
  readonly input: Uint8Array
  /** The client's machine and its state. */
  readonly machine: Machine.DuplexClient
  readonly state: Machine.DuplexClientState
  /** The current connection's number, and the server it goes to (round the service). */
  conn: number
  server: number
  /** Bytes of `input` the application has written. */
  written: number
  /** What the application read of the server's stream. */
  readonly delivered: Array<number>
}

export type NodeState = StoreState | ServerState | ClientState
export type NodeEvent =
  | Machine.DuplexEvent
  | Machine.DuplexClientEvent
  /** The client read the server's `Finish`, after `bytes`. */
  | { readonly _tag: "Completed"; readonly bytes: number }
type Out = M.Output<Msg, NodeEvent>

const ackEveryBytes = 2_048
const segmentBytes = 1_024

const session = (to: string, conn: number, message: Message.Message): Out =>
  M.send(to, { kind: "session", conn, message })

const serverOf = (client: ClientState) => servers[client.server % servers.length]!

const clientCommand = (command: Machine.DuplexClientCommand, nowMs: number) =>
  M.command(command, nowMs) as M.Input<Message.Message, Machine.DuplexClientCommand>

/**
 * Steps the client's machine and does what it answers, as `DuplexSession.connect` does: sends
 * on the current connection, gives bytes to the application (which takes them at once), and
 * on `Close` goes to the next server.
 */
const clientStep = (
  client: ClientState,
  input: M.Input<Message.Message, Machine.DuplexClientCommand>,
  out: Array<Out>,
) => {
  const result = client.machine.step(client.state, input)
  for (const output of result.outputs) {
    if (output._tag === "Send") out.push(session(serverOf(client), client.conn, output.message))
    if (output._tag !== "Emit") continue
    const event = output.event
    out.push(M.emit(event))
    switch (event._tag) {
      case "Deliver":
        for (const byte of event.bytes) client.delivered.push(byte)
        clientStep(client, clientCommand({ _tag: "Delivered" }, input.nowMs), out)
        break
      case "Close":
      case "Refused":
        // A server that does not hold the session just now: the next one may.
        return reconnect(client, input.nowMs, out)
      case "ResumeRefused":
        // An honest takeover is never refused.
        throw new Error(`resume refused: ${event.reason} ${event.detail}`)
      case "Complete":
        out.push(M.emit({ _tag: "Completed", bytes: client.delivered.length }))
        out.push(M.cancelTimer("silence"))
        break
    }
  }
}

/** The application writes what the window allows, and ends once all is written. */
const clientWrites = (client: ClientState, nowMs: number, out: Array<Out>) => {
  const { sender, written } = client.state
  const room = sender.acked + sender.windowBytesMax - written.end
  if (room > 0 && client.written < client.input.length) {
    const bytes = client.input.subarray(client.written, client.written + room)
    client.written += bytes.length
    clientStep(client, clientCommand({ _tag: "Write", bytes }, nowMs), out)
  }
  if (client.written === client.input.length && !client.state.ended)
    clientStep(client, clientCommand({ _tag: "End" }, nowMs), out)
}

/** The connection is given up (silent, closed, refused): the next server takes the session over. */
const reconnect = (client: ClientState, nowMs: number, out: Array<Out>) => {
  clientStep(client, clientCommand({ _tag: "Lost" }, nowMs), out)
  client.server++
  client.conn++
  clientStep(client, clientCommand({ _tag: "Connected" }, nowMs), out)
  out.push(M.setTimer("silence", silenceMs))
}

const stepClient = (client: ClientState, input: M.Input<Msg>, out: Array<Out>) => {
  if (client.state.complete) return
  if (input._tag === "TimerFired") return reconnect(client, input.nowMs, out)
  if (input._tag !== "Receive" || input.message.kind !== "session") return
  if (input.message.conn !== client.conn) return
  out.push(M.setTimer("silence", silenceMs))
  const conn = client.conn
  clientStep(client, M.receive(Machine.server, input.message.message, input.nowMs), out)
  if (client.conn === conn) clientWrites(client, input.nowMs, out)
}

const stepStore = (store: StoreState, input: M.Input<Msg>, out: Array<Out>) => {
  if (input._tag !== "Receive") return
  const { from, message } = input
  if (message.kind === "open") {
    const sessionId = `${from}-${message.conn}`
    store.sessions.set(sessionId, { term: 1, owner: from, held: message.held })
    out.push(M.send(from, { kind: "opened", conn: message.conn, term: 1 }))
  } else if (message.kind === "claim") {
    const found = store.sessions.get(message.sessionId)
    if (found === undefined)
      out.push(M.send(from, { kind: "claimed", conn: message.conn, term: 0 }))
    else {
      found.term++
      found.owner = from
      out.push(
        M.send(from, { kind: "claimed", conn: message.conn, term: found.term, held: found.held }),
      )
    }
  } else if (message.kind === "write") {
    const found = store.sessions.get(message.sessionId)
    if (found === undefined || found.term !== message.term || found.owner !== from)
      out.push(M.send(from, { kind: "fenced", sessionId: message.sessionId, term: message.term }))
    else {
      found.held = message.held
      out.push(M.send(from, { kind: "written", sessionId: message.sessionId, term: message.term }))
    }
  }
}

const makeMachine = (start: Machine.DuplexStart) =>
  Machine.duplexServer({ handler: App.handler, windowBytesMax: 4_096, segmentBytes, start })

/** Does what the server machine answered: sends on the connection, writes to the store. */
const perform = (
  serving: Serving,
  outputs: ReadonlyArray<Machine.DuplexOutput>,
  out: Array<Out>,
  self: ServerState,
) => {
  for (const output of outputs) {
    if (output._tag === "Send") out.push(session("client", serving.conn, output.message))
    else if (output._tag === "Emit") {
      const event = output.event
      out.push(M.emit(event))
      if (event._tag === "WriteCheckpoint")
        out.push(
          M.send("store", {
            kind: "write",
            sessionId: serving.sessionId,
            term: serving.term!,
            held: { snapshot: event.snapshot, sendHorizonSeq: event.snapshot.currentSeqSource },
          }),
        )
      else self.serving = undefined
    }
  }
}

const stepServer = (self: ServerState, input: M.Input<Msg>, out: Array<Out>) => {
  if (input._tag !== "Receive") return
  const selfId = self.self
  const { message } = input
  if (message.kind === "session") {
    const inner = message.message
    if (inner._tag === "Open" || inner._tag === "Resume") {
      // One session connection at a time here: a newer one replaces it (the older is dropped).
      self.serving = {
        conn: message.conn,
        sessionId: inner._tag === "Open" ? `${selfId}-${message.conn}` : inner.sessionId,
        term: undefined,
        machine: undefined,
        state: undefined,
        ...(inner._tag === "Resume" ? { resumeSeq: inner.acks.data! } : {}),
      }
      if (inner._tag === "Open") {
        const machine = makeMachine({
          _tag: "Open",
          sessionId: self.serving.sessionId,
          secret: new Uint8Array(0),
          initialSeq: serverIsn,
          clientInitialSeq: clientIsn,
        })
        const first = machine.init({ self: selfId, peers: [Machine.client], nowMs: input.nowMs })
        self.serving.machine = machine
        self.serving.state = first.state
        self.serving.opened = first.outputs
        // Write-ahead from the start: `Opened` waits for the session's first checkpoint.
        out.push(
          M.send("store", {
            kind: "open",
            conn: message.conn,
            held: { snapshot: Machine.snapshot(first.state), sendHorizonSeq: serverIsn },
          }),
        )
      } else
        out.push(M.send("store", { kind: "claim", conn: message.conn, sessionId: inner.sessionId }))
      return
    }
    const serving = self.serving
    if (serving?.conn !== message.conn || serving.state === undefined || serving.term === undefined)
      return
    const result = serving.machine!.step(
      serving.state,
      M.receive(Machine.client, inner, input.nowMs),
    )
    perform(serving, result.outputs, out, self)
    return
  }
  const serving = self.serving
  if (serving === undefined) return
  if (message.kind === "opened" && message.conn === serving.conn) {
    serving.term = message.term
    // Write-ahead: the store holds the session's first checkpoint; its first message goes now.
    perform(serving, serving.opened!, out, self)
  } else if (message.kind === "claimed" && message.conn === serving.conn) {
    const held = message.held
    const at = serving.resumeSeq!
    // As `Resume.evaluate`: the client's acknowledgement must lie within the window held.
    if (
      held === undefined ||
      at < held.snapshot.ackedSeqSource ||
      at > held.snapshot.currentSeqSource
    ) {
      out.push(session("client", serving.conn, { _tag: "Refused", reason: "TooOld", detail: "" }))
      self.serving = undefined
      return
    }
    serving.term = message.term
    const machine = makeMachine({
      _tag: "Resume",
      checkpoint: held.snapshot,
      sendHorizonSeq: held.sendHorizonSeq,
      resumeSeq: at,
    })
    const first = machine.init({ self: selfId, peers: [Machine.client], nowMs: input.nowMs })
    serving.machine = machine
    serving.state = first.state
    perform(serving, first.outputs, out, self)
  } else if (
    message.kind === "written" &&
    message.sessionId === serving.sessionId &&
    message.term === serving.term
  ) {
    const result = serving.machine!.step(
      serving.state!,
      M.command<Machine.DuplexCommand>({ _tag: "Checkpointed" }, input.nowMs) as M.Input<
        Message.Message,
        Machine.DuplexCommand
      >,
    )
    perform(serving, result.outputs, out, self)
  } else if (message.kind === "fenced" && message.sessionId === serving.sessionId) {
    // Another server took the session over: this one stops, as its driver's write fails.
    self.serving = undefined
  }
}

/** The world's machine: each node runs its part, by name. */
export const world = (input: Uint8Array): M.Machine<NodeState, Msg, never, NodeEvent> => ({
  init: (context) => {
    if (context.self === "store") return M.result({ kind: "store", sessions: new Map() })
    if (context.self !== "client")
      return M.result({ kind: "server", self: context.self, serving: undefined })
    const machine = Machine.duplexClient({ initialSeq: clientIsn, ackEveryBytes })
    const client: ClientState = {
      kind: "client",
      input,
      machine,
      state: machine.init(context).state,
      conn: 1,
      server: 0,
      written: 0,
      delivered: [],
    }
    const out: Array<Out> = []
    clientStep(client, clientCommand({ _tag: "Connected" }, context.nowMs), out)
    out.push(M.setTimer("silence", silenceMs))
    return M.result(client, out)
  },
  step: (state, input) => {
    const out: Array<Out> = []
    if (state.kind === "client") stepClient(state, input, out)
    else if (state.kind === "store") stepStore(state, input, out)
    else stepServer(state, input, out)
    return M.result(state, out)
  },
})
