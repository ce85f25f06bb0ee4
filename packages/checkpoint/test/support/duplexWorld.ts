/**
 * A duplex session on FastSim: the server machine (`Machine.duplexServer`) on three server
 * nodes, a client, and a checkpoint store, as nodes of one simulated network. The glue is
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
 * The client model writes a known input within the server's window, reads, acknowledges
 * and resumes as `DuplexSession.connect` does.
 */
import { Machine as M } from "@understudy/machine"
import * as ByteWindow from "../../src/internal/byteWindow.ts"
import * as Machine from "../../src/Machine.ts"
import type * as Message from "../../src/Message.ts"
import * as Sequence from "../../src/Sequence.ts"
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
  conn: number
  server: number
  sessionId: string | undefined
  /** Connected and answered (`Opened` or `Resumed`). */
  ready: boolean
  sender: Sequence.Sender
  readonly written: ByteWindow.ByteWindow
  receiver: Sequence.Receiver | undefined
  readonly delivered: Array<number>
  unacked: number
  finishSent: boolean
  complete: boolean
  resumes: number
}

export type NodeState = StoreState | ServerState | ClientState
export type NodeEvent =
  | Machine.DuplexEvent
  /** The client resumed at a takeover server, which reads its bytes again from `at`. */
  | { readonly _tag: "Resumed"; readonly at: number }
  /** The client read the server's `Finish`, after `bytes`. */
  | { readonly _tag: "Complete"; readonly bytes: number }
type Out = M.Output<Msg, NodeEvent>

const ackEveryBytes = 2_048
const segmentBytes = 1_024

const session = (to: string, conn: number, message: Message.Message): Out =>
  M.send(to, { kind: "session", conn, message })

/** The client's next server, round the service. */
const serverOf = (client: ClientState) => servers[client.server % servers.length]!

const clientConnect = (client: ClientState, out: Array<Out>) => {
  client.conn++
  client.ready = false
  const to = serverOf(client)
  if (client.sessionId === undefined)
    out.push(
      session(to, client.conn, {
        _tag: "Open",
        protocol: "understudy-duplex/1",
        channels: [{ name: "data", initialSeq: clientIsn }],
      }),
    )
  else {
    client.resumes++
    out.push(
      session(to, client.conn, {
        _tag: "Resume",
        sessionId: client.sessionId,
        counter: client.resumes,
        acks: { data: client.receiver!.next },
        proof: new Uint8Array(0),
      }),
    )
  }
  out.push(M.setTimer("silence", silenceMs))
}

/** The client writes what its window allows, then `Finish` once everything is acknowledged. */
const clientPump = (client: ClientState, out: Array<Out>) => {
  if (!client.ready || client.complete) return
  const to = serverOf(client)
  // The application's writes, up to the window.
  const room = client.sender.acked + client.sender.windowBytesMax - client.written.end
  const offset = client.written.end - clientIsn
  if (room > 0 && offset < client.input.length)
    ByteWindow.append(client.written, client.input.subarray(offset, offset + room))
  for (
    let n = Sequence.sendable(
      client.sender,
      Math.min(segmentBytes, client.written.end - client.sender.next),
    );
    n > 0;
    n = Sequence.sendable(
      client.sender,
      Math.min(segmentBytes, client.written.end - client.sender.next),
    )
  ) {
    const seq = client.sender.next
    out.push(
      session(to, client.conn, {
        _tag: "Data",
        seq,
        bytes: ByteWindow.slice(client.written, seq, seq + n),
      }),
    )
    client.sender = Sequence.sent(client.sender, n)
  }
  const all = clientIsn + client.input.length
  if (!client.finishSent && client.sender.acked === all && client.written.end === all) {
    client.finishSent = true
    out.push(session(to, client.conn, { _tag: "Finish" }))
  }
}

/** A message on the client's current connection; `false` to give the connection up. */
const clientReceive = (client: ClientState, message: Message.Message, out: Array<Out>): boolean => {
  const to = serverOf(client)
  switch (message._tag) {
    case "Opened":
      if (client.sessionId !== undefined) return false
      client.sessionId = message.sessionId
      client.receiver = Sequence.receiver(message.channels[0]!.initialSeq)
      client.sender = { ...client.sender, windowBytesMax: message.window! }
      client.ready = true
      return true
    case "Resumed": {
      const at = message.receiveNext.data!
      // The client's own check: a server may not resume outside what it holds.
      if (at < client.sender.acked || at > client.sender.next)
        throw new Error(
          `resumed at ${at}, the client holds ${client.sender.acked}..${client.sender.next}`,
        )
      client.sender = Sequence.rewind(client.sender, at)
      ByteWindow.drop(client.written, at)
      client.finishSent = false
      client.ready = true
      out.push(M.emit({ _tag: "Resumed", at }))
      return true
    }
    case "Data": {
      if (client.receiver === undefined) return false
      const outcome = Sequence.receive(client.receiver, message.seq, message.bytes.length)
      if (outcome._tag === "Gap") return false
      if (outcome._tag === "Deliver") {
        for (const byte of message.bytes.subarray(outcome.offset)) client.delivered.push(byte)
        client.receiver = outcome.state
        client.unacked += outcome.length
        if (client.unacked >= ackEveryBytes) {
          client.unacked = 0
          out.push(session(to, client.conn, { _tag: "Ack", ack: client.receiver.next }))
        }
      }
      return true
    }
    case "Ack": {
      const outcome = Sequence.acknowledge(client.sender, message.ack)
      if (outcome._tag === "BeyondSent") return false
      if (outcome._tag === "Advanced") {
        client.sender = outcome.state
        ByteWindow.drop(client.written, message.ack)
      }
      return true
    }
    case "Finish":
      client.complete = true
      out.push(M.emit({ _tag: "Complete", bytes: client.delivered.length }))
      out.push(session(to, client.conn, { _tag: "Ack", ack: client.receiver!.next }))
      out.push(M.cancelTimer("silence"))
      return true
    default:
      // `Refused` (the session is owned elsewhere just now), `Handoff`: the next server.
      return false
  }
}

const stepClient = (client: ClientState, input: M.Input<Msg>, out: Array<Out>) => {
  if (client.complete) return
  if (input._tag === "TimerFired") {
    // Silence: the server is gone (or cut off); the next one takes the session over.
    client.server++
    clientConnect(client, out)
    return
  }
  if (input._tag !== "Receive" || input.message.kind !== "session") return
  if (input.message.conn !== client.conn) return
  out.push(M.setTimer("silence", silenceMs))
  if (!clientReceive(client, input.message.message, out)) {
    client.server++
    clientConnect(client, out)
    return
  }
  clientPump(client, out)
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
    const client: ClientState = {
      kind: "client",
      input,
      conn: 0,
      server: 0,
      sessionId: undefined,
      ready: false,
      sender: Sequence.sender(clientIsn, 1),
      written: ByteWindow.make(clientIsn),
      receiver: undefined,
      delivered: [],
      unacked: 0,
      finishSent: false,
      complete: false,
      resumes: 0,
    }
    const out: Array<Out> = []
    clientConnect(client, out)
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
