/**
 * multihome's machine: one endpoint's associations as a pure machine on the
 * `@understudy/machine` contract, the one place that decides what the endpoint does with a
 * packet, a command or a timer (each association is `Association.ts`'s machine, the
 * cluster's roles `ClusterRole.ts`'s). The Effect driver (`internal/endpoint/driver.ts`,
 * behind `Endpoint.make`) runs it in production, the shared simulators (`FastSim`, with
 * peers named by address) run it in tests. Internal: not exported from the package.
 *
 * Demultiplexing: by verification tag, else by the peer's address and port; a packet for no
 * association goes to the Listener (after the driver's `intercept`, when it has one), which
 * creates the server side of an association from a valid COOKIE ECHO; an INIT when not
 * listening is answered with an ABORT. Each message an association delivers goes to the
 * `handler`, when there is one, and its replies are stepped as `Send` commands in the same
 * step. usrsctp's loopback aliases (`internal/endpoint/aliases.ts`) are learned here, with
 * the associations.
 *
 * The decisions are reported to a {@link Sink}, one association's step at a time: `step`
 * lifts them to the contract's outputs (an association's timers named `<id>/<its timer>`,
 * its events wrapped with its id), while the driver keeps them per association, for its
 * hooks, held updates and per-association effects.
 *
 * The functions update the state they are given in place (the contract's hot-path variant,
 * as `Association.step` does): its caller keeps no earlier state.
 */
import type { Machine } from "@understudy/machine"
import * as Association from "./Association.ts"
import type { Reply } from "./Endpoint.ts"
import { aliasesOf, type LoopbackAliases, loopbackAlias } from "./internal/endpoint/aliases.ts"
import * as Listener from "./Listener.ts"
import type * as Packet from "./Packet.ts"

/** A delivered message (an association's `Message` event). */
export type Delivered = Extract<Association.Event, { _tag: "Message" }>

/** A synchronous service answering each delivered message (see `Endpoint.Options.handler`). */
export type Handler = (associationId: number, message: Delivered) => ReadonlyArray<Reply>

/** The loopback aliases the endpoint learns, and this host's addresses for them. */
export interface Aliasing {
  readonly table: LoopbackAliases
  readonly hostAddresses: ReadonlyArray<string>
}

/** The endpoint's state: its associations by id. */
export interface State {
  readonly config: Association.Config
  readonly listening: boolean
  listener: Listener.Listener
  readonly associations: Map<number, Association.State>
  /** Our verification tag of each association → its id. */
  readonly byTag: Map<number, number>
  /** The tag each association is indexed by in `byTag`. */
  readonly tags: Map<number, number>
  /** The peer's address each association was opened, accepted or adopted with. */
  readonly peerHosts: Map<number, string>
  nextId: number
  /** Each new association's seed is drawn from it; undefined: the OS CSPRNG (node:crypto). */
  seed: number | undefined
  readonly handler: Handler | undefined
  readonly aliasing: Aliasing | undefined
}

/** What the application asks of the endpoint. */
export type Command =
  | {
      readonly _tag: "Connect"
      readonly peer: Association.PeerAddress
      readonly peerPort: number
      readonly peerAddresses?: ReadonlyArray<string>
    }
  | { readonly _tag: "Association"; readonly id: number; readonly command: Association.Command }

/** An association's event, or a new association (`Opened` by `Connect`, `Accepted` by the Listener). */
export type Event =
  | { readonly _tag: "Opened" | "Accepted"; readonly id: number }
  | { readonly _tag: "Association"; readonly id: number; readonly event: Association.Event }
  | { readonly _tag: "Dropped"; readonly reason: string }

export type Input = Machine.Input<Packet.Packet, Command, Association.PeerAddress>
export type Output = Machine.Output<Packet.Packet, Event, Association.PeerAddress>
type Result = Machine.Result<State, Packet.Packet, Event, Association.PeerAddress>

/** How a new association came to be. */
export type Origin = "Opened" | "Accepted" | "Adopted"

/** Where the machine's decisions go, one association's step at a time. */
export interface Sink {
  /** A new association, before its first `stepped`. */
  readonly created: (id: number, origin: Origin, peer: Association.PeerAddress) => void
  /**
   * Association `id` was stepped with `input` (none: made with `outputs`, by `Connect` or
   * adoption), which gave `outputs`. `created`: by this step.
   */
  readonly stepped: (
    id: number,
    created: boolean,
    input: Association.Input | undefined,
    outputs: ReadonlyArray<Association.Output>,
  ) => void
  /** The endpoint's own packet (a Listener's answer, a refusal), answered at `via` if given. */
  readonly transmit: (to: Association.PeerAddress, packet: Packet.Packet, via?: string) => void
  /** A packet or a reply the endpoint dropped, and why. */
  readonly dropped: (reason: string) => void
}

/** The state of a new endpoint: its Listener made by the caller (it draws its own secrets). */
export const makeState = (options: {
  readonly config: Association.Config
  readonly listening: boolean
  readonly listener: Listener.Listener
  readonly seed: number | undefined
  readonly handler?: Handler | undefined
  readonly aliasing?: Aliasing | undefined
}): State => ({
  config: options.config,
  listening: options.listening,
  listener: options.listener,
  associations: new Map(),
  byTag: new Map(),
  tags: new Map(),
  peerHosts: new Map(),
  nextId: 1,
  seed: options.seed,
  handler: options.handler,
  aliasing: options.aliasing,
})

/** The seed drawn after `seed`. */
export const drawSeed = (seed: number): number =>
  (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + 1) >>> 0

/** The next association's seed: drawn from the endpoint's, or the CSPRNG's. */
const nextSeed = (state: State): Association.Seed => {
  if (state.seed === undefined) return "crypto"
  state.seed = drawSeed(state.seed)
  return state.seed
}

/** Indexes association `id` by its current verification tag (set at creation, or changed). */
const reindex = (state: State, id: number, association: Association.State) => {
  const tag = Association.myTag(association) >>> 0
  const indexed = state.tags.get(id)
  if (indexed === tag) return
  if (indexed !== undefined && state.byTag.get(indexed) === id) state.byTag.delete(indexed)
  state.tags.set(id, tag)
  state.byTag.set(tag, id)
}

const forget = (state: State, id: number) => {
  state.associations.delete(id)
  state.peerHosts.delete(id)
  const tag = state.tags.get(id)
  state.tags.delete(id)
  if (tag !== undefined && state.byTag.get(tag) === id) state.byTag.delete(tag)
}

const register = (
  state: State,
  association: Association.State,
  origin: Origin,
  peer: Association.PeerAddress,
  sink: Sink,
): number => {
  const id = state.nextId++
  state.associations.set(id, association)
  state.peerHosts.set(id, peer.host)
  reindex(state, id, association)
  sink.created(id, origin, peer)
  return id
}

/**
 * Reports association `id`'s step (`input` gave `outputs`), answers each message it
 * delivered with the handler's replies (stepped as `Send` commands, reported too), and
 * forgets the association once it is closed.
 */
const settle = (
  state: State,
  id: number,
  association: Association.State,
  created: boolean,
  input: Association.Input | undefined,
  outputs: ReadonlyArray<Association.Output>,
  nowMs: number,
  sink: Sink,
) => {
  sink.stepped(id, created, input, outputs)
  const handler = state.handler
  if (handler !== undefined) {
    for (const output of outputs) {
      if (output._tag !== "Emit" || output.event._tag !== "Message") continue
      for (const reply of handler(id, output.event)) {
        const command: Association.Input = {
          _tag: "Command",
          command: {
            _tag: "Send",
            stream: reply.stream,
            ppid: reply.ppid,
            data: reply.data,
            unordered: reply.unordered,
          },
          nowMs,
        }
        const replied = Association.step(association, command).outputs
        for (const replyOutput of replied) {
          if (replyOutput._tag === "Emit" && replyOutput.event._tag === "SendFailed") {
            sink.dropped(`ReplyFailed:${replyOutput.event.reason}`)
          }
        }
        sink.stepped(id, false, command, replied)
      }
    }
  }
  if (Association.stateName(association) === "Closed") forget(state, id)
  else reindex(state, id, association)
}

const stepAssociation = (
  state: State,
  id: number,
  association: Association.State,
  input: Association.Input,
  sink: Sink,
) =>
  settle(
    state,
    id,
    association,
    false,
    input,
    Association.step(association, input).outputs,
    input.nowMs,
    sink,
  )

/** The association a packet from `from` belongs to: by our tag, else by the peer's address. */
export const demultiplex = (
  state: State,
  from: Association.PeerAddress,
  packet: Packet.Packet,
): number | undefined => {
  const tag = packet.verificationTag >>> 0
  if (tag !== 0) {
    const id = state.byTag.get(tag)
    if (id !== undefined) return id
  }
  for (const [id, association] of state.associations) {
    if (Association.peerPort(association) !== packet.sourcePort) continue
    if (state.peerHosts.get(id) === from.host) return id
    if (Association.peerHosts(association).includes(from.host)) return id
  }
  return undefined
}

type Receive = Extract<Association.Input, { _tag: "Receive" }>

/**
 * A received packet: stepped on its association. One that matches none goes to the Listener,
 * unless `intercepting`: then it is left to the caller (returns false), which shows it to its
 * `intercept` and, if that does not consume it, hands it to {@link unclaimed}.
 */
export const receive = (
  state: State,
  input: Receive,
  sink: Sink,
  intercepting = false,
): boolean => {
  const id = demultiplex(state, input.from, input.message)
  if (id !== undefined) {
    const association = state.associations.get(id)!
    const first = input.message.chunks[0]
    // The INIT ACK of our own INIT: the association it answers owns the alias.
    if (state.aliasing !== undefined && first?._tag === "InitAck") {
      state.aliasing.table.learnFromInitAck(id, input.from, first)
    }
    stepAssociation(state, id, association, input, sink)
    return true
  }
  if (intercepting) return false
  toListener(state, input, sink)
  return true
}

/**
 * A packet no association claimed, after an `intercept` that did not consume it: demultiplexed
 * again (the `intercept` may have adopted its association), else as {@link receive} does
 * with a packet that matches none.
 */
export const unclaimed = (state: State, input: Receive, sink: Sink): void => {
  const id = demultiplex(state, input.from, input.message)
  if (id !== undefined) stepAssociation(state, id, state.associations.get(id)!, input, sink)
  else toListener(state, input, sink)
}

/**
 * A packet that matches no association: an INIT when not listening is refused with an ABORT;
 * the rest go to the Listener, whose valid COOKIE ECHO makes a new association.
 */
const toListener = (state: State, input: Receive, sink: Sink): void => {
  const packet = input.message
  const first = packet.chunks[0]
  if (
    !state.listening &&
    first?._tag === "Init" &&
    packet.chunks.length === 1 &&
    packet.verificationTag >>> 0 === 0
  ) {
    sink.dropped("NotListening")
    // An ABORT answering an INIT on a port nobody listens on (T clear, the INIT's tag).
    sink.transmit(input.from, {
      sourcePort: packet.destinationPort,
      destinationPort: packet.sourcePort,
      verificationTag: first.initiateTag,
      chunks: [{ _tag: "Abort", reflected: false, causes: [] }],
    })
    return
  }
  const outcome = Listener.onUnknownPacket(state.listener, input)
  if (outcome.association === undefined) {
    // An INIT's INIT ACK goes where a local peer listens; nothing is remembered.
    const via =
      state.aliasing !== undefined && first?._tag === "Init"
        ? loopbackAlias(input.from.host, first, state.aliasing.hostAddresses)
        : undefined
    for (const output of outcome.outputs) {
      if (output._tag === "Send") sink.transmit(output.to, output.message, via)
      else if (output._tag === "Emit" && output.event._tag === "Dropped")
        sink.dropped(output.event.reason)
    }
    return
  }
  const association = outcome.association
  const created = register(
    state,
    association,
    "Accepted",
    { host: input.from.host, udpPort: input.from.udpPort },
    sink,
  )
  if (state.aliasing !== undefined && outcome.cookie !== undefined) {
    state.aliasing.table.learnFromCookie(created, input.from, outcome.cookie)
  }
  settle(state, created, association, true, input, outcome.outputs, input.nowMs, sink)
}

/** Opens an association to `peer` (its INIT); returns its id. */
export const connect = (
  state: State,
  wanted: Extract<Command, { _tag: "Connect" }>,
  nowMs: number,
  sink: Sink,
): number => {
  const opened = Association.connect(state.config, {
    peer: wanted.peer,
    peerPort: wanted.peerPort,
    ...(wanted.peerAddresses !== undefined ? { peerAddresses: wanted.peerAddresses } : {}),
    seed: nextSeed(state),
    nowMs,
  })
  const id = register(state, opened.state, "Opened", wanted.peer, sink)
  settle(state, id, opened.state, true, undefined, opened.outputs, nowMs, sink)
  return id
}

/**
 * Takes over `association` (a replica's), with its aliases, and steps `takeOver` on it (by
 * default `Association.takeOver`: its timers and a probe of its paths); returns its id.
 */
export const adopt = (
  state: State,
  association: Association.State,
  takeOver: (state: Association.State, nowMs: number) => ReadonlyArray<Association.Output>,
  nowMs: number,
  sink: Sink,
): number => {
  const status = Association.info(association)
  const primary = status.paths.find((path) => path.host === status.primary) ?? status.paths[0]
  const id = register(
    state,
    association,
    "Adopted",
    { host: primary?.host ?? "", udpPort: primary?.udpPort ?? 0 },
    sink,
  )
  if (state.aliasing !== undefined) {
    for (const alias of aliasesOf(association)) state.aliasing.table.add(alias, id)
  }
  settle(state, id, association, true, undefined, takeOver(association, nowMs), nowMs, sink)
  return id
}

/** A command for association `id`; false when it is gone (closed). */
export const command = (
  state: State,
  id: number,
  wanted: Association.Command,
  nowMs: number,
  sink: Sink,
): boolean => {
  const association = state.associations.get(id)
  if (association === undefined) return false
  stepAssociation(state, id, association, { _tag: "Command", command: wanted, nowMs }, sink)
  return true
}

/** Timer `name` of association `id` expired (ignored when the association is gone). */
export const timer = (state: State, id: number, name: string, nowMs: number, sink: Sink): void => {
  const association = state.associations.get(id)
  if (association === undefined) return
  stepAssociation(state, id, association, { _tag: "TimerFired", timer: name, nowMs }, sink)
}

/** A sink that lifts the decisions to the contract's outputs (see the module's comment). */
const lifting = (outputs: Array<Output>): Sink => ({
  created: (id, origin) => {
    if (origin !== "Adopted") outputs.push({ _tag: "Emit", event: { _tag: origin, id } })
  },
  stepped: (id, _created, _input, stepped) => {
    for (const output of stepped) {
      switch (output._tag) {
        case "Send":
          outputs.push(output)
          break
        case "SetTimer":
          outputs.push({
            _tag: "SetTimer",
            timer: `${id}/${output.timer}`,
            afterMs: output.afterMs,
          })
          break
        case "CancelTimer":
          outputs.push({ _tag: "CancelTimer", timer: `${id}/${output.timer}` })
          break
        case "Emit":
          outputs.push({ _tag: "Emit", event: { _tag: "Association", id, event: output.event } })
          break
        case "Broadcast":
          break
      }
    }
  },
  transmit: (to, message) => {
    outputs.push({ _tag: "Send", to, message })
  },
  dropped: (reason) => {
    outputs.push({ _tag: "Emit", event: { _tag: "Dropped", reason } })
  },
})

/** One input of the contract, its decisions given to `sink`. */
export const apply = (state: State, input: Input, sink: Sink): void => {
  switch (input._tag) {
    case "Receive":
      receive(state, input, sink)
      return
    case "Command": {
      const wanted = input.command
      if (wanted._tag === "Connect") connect(state, wanted, input.nowMs, sink)
      else command(state, wanted.id, wanted.command, input.nowMs, sink)
      return
    }
    case "TimerFired": {
      const slash = input.timer.indexOf("/")
      const id = Number(input.timer.slice(0, slash))
      timer(state, id, input.timer.slice(slash + 1), input.nowMs, sink)
      return
    }
  }
}

/**
 * The endpoint machine for `config` (its `localPort` is the endpoint's SCTP port; a
 * function gives each node its own, e.g. its addresses), drawing its randomness from `seed`
 * and the node's name.
 */
export const make = (options: {
  readonly config: Association.Config | ((self: Machine.NodeId) => Association.Config)
  readonly listening: boolean
  readonly seed: number
  readonly handler?: Handler
}): Machine.Machine<State, Packet.Packet, Command, Event, Association.PeerAddress> => ({
  init: (context): Result => {
    const config =
      typeof options.config === "function" ? options.config(context.self) : options.config
    let seed = options.seed >>> 0
    for (let index = 0; index < context.self.length; index++)
      seed = (Math.imul(seed, 31) + context.self.charCodeAt(index)) >>> 0
    // A node restarted (its `init` after t = 0) draws new tags and secrets, as a rebooted
    // host does: the same ones would make its peer take the new associations for the old.
    if (context.nowMs !== 0) seed = drawSeed(seed ^ context.nowMs)
    const state = makeState({
      config,
      listening: options.listening,
      listener: Listener.makeListener(config, seed ^ 0x5a5a, context.nowMs),
      seed,
      handler: options.handler,
    })
    return { state, outputs: [] }
  },
  step: (state, input): Result => {
    const outputs: Array<Output> = []
    apply(state, input, lifting(outputs))
    return { state, outputs }
  },
})
