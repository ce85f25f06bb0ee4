/**
 * One endpoint's associations as a pure machine on the `@understudy/machine` contract, so
 * the shared simulators (`FastSim`, with peers named by address) run two endpoints as they
 * run any other protocol: packets in, packets and timers out, the Listener making the
 * server side of an association from a valid COOKIE ECHO, as the Effect driver does.
 *
 * Demultiplexing as in the driver: by verification tag, else by the peer's address and
 * port; a packet for no association goes to the Listener. An association's timers are
 * named `<id>/<its timer>`; a timer of an association that is gone is ignored.
 *
 * `step` updates the state it is given in place and returns it (the contract's hot-path
 * variant, as `Association.step` does): its caller keeps no earlier state.
 */
import type { Machine } from "@understudy/machine"
import * as Association from "../../Association.ts"
import * as Listener from "../../Listener.ts"
import type * as Packet from "../../Packet.ts"

/** The endpoint's state: its associations by id. */
export interface State {
  readonly config: Association.Config
  readonly listening: boolean
  readonly listener: Listener.Listener
  readonly associations: Map<number, Association.State>
  nextId: number
  /** Each new association's seed is drawn from it (randomness arrives as the machine's seed). */
  seed: number
}

/** What the application asks of the endpoint. */
export type Command =
  | {
      readonly _tag: "Connect"
      readonly peer: Association.PeerAddress
      readonly peerPort: number
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

const nextSeed = (state: State): number => {
  state.seed = (Math.imul(state.seed ^ 0x9e3779b9, 0x85ebca6b) + 1) >>> 0
  return state.seed
}

/** An association's outputs as the endpoint's: its timers and events named by its id. */
const lift = (id: number, outputs: ReadonlyArray<Association.Output>, into: Array<Output>) => {
  for (const output of outputs) {
    switch (output._tag) {
      case "Send":
        into.push(output)
        break
      case "SetTimer":
        into.push({ _tag: "SetTimer", timer: `${id}/${output.timer}`, afterMs: output.afterMs })
        break
      case "CancelTimer":
        into.push({ _tag: "CancelTimer", timer: `${id}/${output.timer}` })
        break
      case "Emit":
        into.push({ _tag: "Emit", event: { _tag: "Association", id, event: output.event } })
        break
      case "Broadcast":
        break
    }
  }
}

/** Steps association `id`, forgetting it once it is closed. */
const stepAssociation = (
  state: State,
  id: number,
  association: Association.State,
  input: Association.Input,
  into: Array<Output>,
) => {
  lift(id, Association.step(association, input).outputs, into)
  if (Association.stateName(association) === "Closed") state.associations.delete(id)
}

const demultiplex = (
  state: State,
  from: Association.PeerAddress,
  packet: Packet.Packet,
): number | undefined => {
  const tag = packet.verificationTag >>> 0
  if (tag !== 0) {
    for (const [id, association] of state.associations)
      if (Association.myTag(association) >>> 0 === tag) return id
  }
  for (const [id, association] of state.associations) {
    if (Association.peerPort(association) !== packet.sourcePort) continue
    if (Association.peerHosts(association).includes(from.host)) return id
  }
  return undefined
}

const receive = (state: State, input: Association.Receive, outputs: Array<Output>) => {
  const id = demultiplex(state, input.from, input.message)
  const association = id === undefined ? undefined : state.associations.get(id)
  if (id !== undefined && association !== undefined) {
    stepAssociation(state, id, association, input, outputs)
    return
  }
  const first = input.message.chunks[0]
  if (!state.listening && first?._tag === "Init") {
    outputs.push({ _tag: "Emit", event: { _tag: "Dropped", reason: "NotListening" } })
    return
  }
  const outcome = Listener.onUnknownPacket(state.listener, input)
  if (outcome.association === undefined) {
    for (const output of outcome.outputs) {
      if (output._tag === "Send") outputs.push(output)
      else if (output._tag === "Emit" && output.event._tag === "Dropped")
        outputs.push({ _tag: "Emit", event: { _tag: "Dropped", reason: output.event.reason } })
    }
    return
  }
  const created = state.nextId++
  state.associations.set(created, outcome.association)
  outputs.push({ _tag: "Emit", event: { _tag: "Accepted", id: created } })
  lift(created, outcome.outputs, outputs)
}

const command = (state: State, input: Machine.Command<Command>, outputs: Array<Output>) => {
  const wanted = input.command
  if (wanted._tag === "Connect") {
    const id = state.nextId++
    const opened = Association.connect(state.config, {
      peer: wanted.peer,
      peerPort: wanted.peerPort,
      seed: nextSeed(state),
      nowMs: input.nowMs,
    })
    state.associations.set(id, opened.state)
    outputs.push({ _tag: "Emit", event: { _tag: "Opened", id } })
    lift(id, opened.outputs, outputs)
    return
  }
  const association = state.associations.get(wanted.id)
  if (association === undefined) return
  stepAssociation(
    state,
    wanted.id,
    association,
    { _tag: "Command", command: wanted.command, nowMs: input.nowMs },
    outputs,
  )
}

const timerFired = (state: State, input: Machine.TimerFired, outputs: Array<Output>) => {
  const slash = input.timer.indexOf("/")
  const id = Number(input.timer.slice(0, slash))
  const association = state.associations.get(id)
  if (association === undefined) return
  stepAssociation(
    state,
    id,
    association,
    { _tag: "TimerFired", timer: input.timer.slice(slash + 1), nowMs: input.nowMs },
    outputs,
  )
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
}): Machine.Machine<State, Packet.Packet, Command, Event, Association.PeerAddress> => ({
  init: (context): Result => {
    const config =
      typeof options.config === "function" ? options.config(context.self) : options.config
    let seed = options.seed >>> 0
    for (let index = 0; index < context.self.length; index++)
      seed = (Math.imul(seed, 31) + context.self.charCodeAt(index)) >>> 0
    const state: State = {
      config,
      listening: options.listening,
      listener: Listener.makeListener(config, seed ^ 0x5a5a, context.nowMs),
      associations: new Map(),
      nextId: 1,
      seed,
    }
    return { state, outputs: [] }
  },
  step: (state, input): Result => {
    const outputs: Array<Output> = []
    switch (input._tag) {
      case "Receive":
        receive(state, input, outputs)
        break
      case "Command":
        command(state, input, outputs)
        break
      case "TimerFired":
        timerFired(state, input, outputs)
        break
    }
    return { state, outputs }
  },
})
