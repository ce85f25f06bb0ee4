/**
 * A two-machine loopback for the association tests: a client association and a server
 * (Listener + the association it creates) on testkit's `FastSim`, driven step by step by the
 * test (a `FastSim.Session`): one simulator engine, heap, PRNG and timer table with every other
 * simulation of the repository. Every packet is encoded and decoded on the way, as on the
 * wire (the session's codec); the network has seeded loss and a delay with jitter; a
 * black-holed host loses what is sent to it. Tests read and replace the two associations
 * (`client`, `server`), step them by hand and perform the outputs (`perform`, `send`), lose
 * what is in flight, and read or clear either side's timers.
 */
import { FastSim } from "@understudy/testkit"
import { Codec, SimNet } from "@understudy/transport"
import { Result } from "effect"
import * as Association from "../src/Association.ts"
import * as Listener from "../src/Listener.ts"
import * as Packet from "../src/Packet.ts"

export interface NetOptions {
  readonly seed: number
  readonly loss?: number
  readonly delayMs?: number
  readonly jitterMs?: number
  /** Hosts whose packets are lost from the start. */
  readonly blackHoles?: ReadonlyArray<string>
}

export const clientHost = "10.0.0.1"
export const serverHosts = ["10.0.0.2", "10.0.0.3"] as const
export const clientUdp = 9001
export const serverUdp = 9002

/** A side's node state: the client's association, or the server's listener and association. */
interface Side {
  association: Association.State | undefined
  readonly listener: Listener.Listener | undefined
}

const clientAddress: Association.PeerAddress = { host: clientHost, udpPort: clientUdp }
const serverAddress: Association.PeerAddress = { host: serverHosts[0], udpPort: serverUdp }

/** Packets as on the wire: a packet that does not survive it fails the run. */
const wire = Codec.make<Packet.Packet>({
  name: "sctp",
  encode: Packet.encode,
  decode: (bytes) => {
    const decoded = Packet.decode(bytes)
    if (!Result.isSuccess(decoded)) throw new Error("harness produced an undecodable packet")
    return decoded.success
  },
})

export class Loopback {
  readonly clientEvents: Array<Association.Event> = []
  readonly serverEvents: Array<Association.Event> = []
  readonly blackHoles = new Set<string>()
  transmitted = 0
  /** Every input the client was stepped with, and what it answered (when recording). */
  recording:
    | Array<{ input: Association.Input; outputs: ReadonlyArray<Association.Output> }>
    | undefined

  readonly options: NetOptions
  readonly clientConfig: Association.Config
  readonly serverConfig: Association.Config
  private readonly session: FastSim.Session<
    Side,
    Packet.Packet,
    Association.Event,
    Association.PeerAddress
  >

  constructor(
    options: NetOptions,
    clientConfig: Association.Config,
    serverConfig: Association.Config,
  ) {
    this.options = options
    this.clientConfig = clientConfig
    this.serverConfig = serverConfig
    for (const host of options.blackHoles ?? []) this.blackHoles.add(host)
    const delayMs = options.delayMs ?? 5
    const jitterMs = options.jitterMs ?? 0
    this.session = FastSim.start<
      Side,
      Packet.Packet,
      never,
      Association.Event,
      Association.PeerAddress
    >({
      machine: {
        init: ({ self, nowMs }) => {
          if (self === "server") {
            const listener = Listener.makeListener(serverConfig, options.seed ^ 0x5a5a)
            return { state: { association: undefined, listener }, outputs: [] }
          }
          const { outputs, state } = Association.connect(clientConfig, {
            peer: serverAddress,
            peerPort: serverConfig.localPort,
            seed: options.seed,
            nowMs,
          })
          return {
            state: { association: state, listener: undefined },
            outputs: this.outputs(true, outputs),
          }
        },
        step: (side, input) => ({
          state: side,
          outputs:
            side.listener === undefined
              ? this.outputs(true, this.stepped(side.association!, input))
              : this.outputs(false, this.serverStep(side, input as Association.Input)),
        }),
      },
      nodes: ["client", "server"],
      seed: options.seed,
      routing: {
        addressOf: (node) => (node === "client" ? clientAddress : serverAddress),
        nodeOf: (address) =>
          address.host === clientHost
            ? "client"
            : (serverHosts as ReadonlyArray<string>).includes(address.host)
              ? "server"
              : undefined,
        describe: (address) => `${address.host}:${address.udpPort}`,
      },
      link: {
        latency:
          jitterMs > 0 ? SimNet.uniform(delayMs, delayMs + jitterMs - 1) : SimNet.fixed(delayMs),
        loss: options.loss ?? 0,
        duplicate: 0,
        reorder: 0,
      },
      codec: wire,
      collectEvents: false,
      traceLines: 0,
    })
  }

  get nowMs(): number {
    return this.session.nowMs
  }

  get client(): Association.State {
    return this.session.state("client")!.association!
  }

  set client(state: Association.State) {
    this.session.state("client")!.association = state
  }

  get server(): Association.State | undefined {
    return this.session.state("server")!.association
  }

  set server(state: Association.State | undefined) {
    this.session.state("server")!.association = state
  }

  get listener(): Listener.Listener {
    return this.session.state("server")!.listener!
  }

  get clientTimers(): FastSim.NodeTimers {
    return this.session.timers("client")
  }

  get serverTimers(): FastSim.NodeTimers {
    return this.session.timers("server")
  }

  /** Steps the client, recording the input and its outputs when asked to. */
  private stepped(
    client: Association.State,
    input: Association.Input,
  ): ReadonlyArray<Association.Output> {
    const outputs = Association.step(client, input).outputs
    this.recording?.push({ input, outputs })
    return outputs
  }

  /** The server: its association's packets and timers to it, any other packet to the Listener. */
  private serverStep(side: Side, input: Association.Input): ReadonlyArray<Association.Output> {
    const server = side.association
    if (input._tag !== "Receive") {
      return server === undefined ? [] : Association.step(server, input).outputs
    }
    if (
      server !== undefined &&
      server.name !== "Closed" &&
      (input.message.verificationTag === server.myTag || input.message.chunks[0]?._tag === "Init")
    ) {
      return Association.step(server, input).outputs
    }
    const outcome = Listener.onUnknownPacket(side.listener!, input)
    if (outcome.association !== undefined) {
      side.association = outcome.association
      this.serverTimers.clear()
    }
    return outcome.outputs
  }

  /** A side's outputs on their way: counted, its events kept, what goes to a black hole lost. */
  private outputs(
    isClient: boolean,
    outputs: ReadonlyArray<Association.Output>,
  ): Array<Association.Output> {
    const events = isClient ? this.clientEvents : this.serverEvents
    const kept: Array<Association.Output> = []
    for (const output of outputs) {
      if (output._tag === "Send") {
        this.transmitted++
        if (this.blackHoles.has(output.to.host)) continue
      } else if (output._tag === "Emit") events.push(output.event)
      kept.push(output)
    }
    return kept
  }

  stepClient(input: Association.Input): void {
    this.session.perform("client", this.outputs(true, this.stepped(this.client, input)))
  }

  /** Performs a side's outputs now, as if it had emitted them. */
  perform(isClient: boolean, outputs: ReadonlyArray<Association.Output>): void {
    this.session.perform(isClient ? "client" : "server", this.outputs(isClient, outputs))
  }

  /** Runs until `until` holds or `maxMs` of simulated time pass; bounded in steps. */
  run(until: () => boolean, maxMs = 600_000, maxSteps = 2_000_000): boolean {
    return this.session.runUntil(until, { maxMs, maxSteps })
  }

  /** Loses every packet in flight towards the server (`toServer`), or towards the client. */
  loseInFlight(toServer: boolean): void {
    this.session.dropInFlight((_from, to) => (to === "server") === toServer)
  }

  send(isClient: boolean, command: Association.Command): void {
    const input: Association.Input = { _tag: "Command", command, nowMs: this.nowMs }
    if (isClient) this.stepClient(input)
    else this.perform(false, Association.step(this.server!, input).outputs)
  }
}

export const established = (lb: Loopback): boolean =>
  lb.client.name === "Established" && lb.server?.name === "Established"

export const messages = (events: ReadonlyArray<Association.Event>) =>
  events.filter(
    (event): event is Extract<Association.Event, { _tag: "Message" }> => event._tag === "Message",
  )
