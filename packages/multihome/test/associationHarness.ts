/**
 * A two-machine loopback for the association tests: a client association and a server
 * (Listener + the association it creates) pass their `Send` outputs to each other
 * through an in-memory network with a manual clock, seeded loss, delay and reordering,
 * and black-holed hosts. Every packet is encoded and decoded on the way, as on the wire.
 * The packets in flight are the transport's `Heap`, the timers the machine package's
 * `TimerTable` and the randomness testkit's `Prng`, as in every other simulation of the
 * repository.
 */
import { TimerTable } from "@understudy/machine"
import { Prng } from "@understudy/testkit"
import { Heap } from "@understudy/transport"
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

interface InFlight {
  readonly atMs: number
  readonly order: number
  readonly toServer: boolean
  readonly from: Association.PeerAddress
  readonly bytes: Uint8Array
}

export const clientHost = "10.0.0.1"
export const serverHosts = ["10.0.0.2", "10.0.0.3"] as const
export const clientUdp = 9001
export const serverUdp = 9002

export class Loopback {
  nowMs = 0
  client: Association.State
  server: Association.State | undefined
  readonly listener: Listener.Listener
  readonly clientEvents: Array<Association.Event> = []
  readonly serverEvents: Array<Association.Event> = []
  readonly clientTimers: TimerTable.TimerTable<string> = new TimerTable.TimerTable<string>()
  readonly serverTimers: TimerTable.TimerTable<string> = new TimerTable.TimerTable<string>()
  readonly blackHoles = new Set<string>()
  /** Packets in flight, by arrival time, then in the order they were sent. */
  private readonly queue = new Heap.MinHeap<InFlight>(
    (a, b) => a.atMs < b.atMs || (a.atMs === b.atMs && a.order < b.order),
  )
  private order = 0
  private readonly rng: Prng.Prng
  transmitted = 0
  /** Every input the client was stepped with, and what it answered (when recording). */
  recording:
    | Array<{ input: Association.Input; outputs: ReadonlyArray<Association.Output> }>
    | undefined

  stepClient(input: Association.Input): void {
    const outputs = Association.step(this.client, input).outputs
    this.recording?.push({ input, outputs })
    this.perform(true, outputs)
  }

  readonly options: NetOptions
  readonly clientConfig: Association.Config
  readonly serverConfig: Association.Config

  constructor(
    options: NetOptions,
    clientConfig: Association.Config,
    serverConfig: Association.Config,
  ) {
    this.options = options
    this.clientConfig = clientConfig
    this.serverConfig = serverConfig
    this.rng = Prng.make(options.seed)
    for (const host of options.blackHoles ?? []) this.blackHoles.add(host)
    this.listener = Listener.makeListener(serverConfig, options.seed ^ 0x5a5a)
    const { outputs, state } = Association.connect(clientConfig, {
      peer: { host: serverHosts[0], udpPort: serverUdp },
      peerPort: serverConfig.localPort,
      seed: options.seed,
      nowMs: 0,
    })
    this.client = state
    this.perform(true, outputs)
  }

  random(): number {
    return this.rng.next()
  }

  perform(isClient: boolean, outputs: ReadonlyArray<Association.Output>): void {
    const timers = isClient ? this.clientTimers : this.serverTimers
    const events = isClient ? this.clientEvents : this.serverEvents
    for (const output of outputs) {
      switch (output._tag) {
        case "Send": {
          this.transmitted++
          const bytes = Packet.encode(output.message)
          if (this.blackHoles.has(output.to.host)) break
          if (this.random() < (this.options.loss ?? 0)) break
          const delay =
            (this.options.delayMs ?? 5) + Math.floor(this.random() * (this.options.jitterMs ?? 0))
          this.queue.push({
            atMs: this.nowMs + delay,
            order: this.order++,
            toServer: isClient,
            from: isClient
              ? { host: clientHost, udpPort: clientUdp }
              : { host: serverHosts[0], udpPort: serverUdp },
            bytes,
          })
          break
        }
        case "SetTimer":
          // The outputs are always performed at the time they were stepped.
          timers.set(output.timer, this.nowMs + output.afterMs)
          break
        case "CancelTimer":
          timers.cancel(output.timer)
          break
        case "Emit":
          events.push(output.event)
          break
      }
    }
  }

  private deliver(item: InFlight): void {
    const decoded = Packet.decode(item.bytes)
    if (!Result.isSuccess(decoded)) throw new Error("harness produced an undecodable packet")
    const input: Association.Input = {
      _tag: "Receive",
      from: item.from,
      message: decoded.success,
      nowMs: this.nowMs,
    }
    if (!item.toServer) {
      this.stepClient(input)
      return
    }
    const server = this.server
    if (
      server !== undefined &&
      server.name !== "Closed" &&
      (decoded.success.verificationTag === server.myTag ||
        decoded.success.chunks[0]?._tag === "Init")
    ) {
      this.perform(false, Association.step(server, input).outputs)
      return
    }
    const outcome = Listener.onUnknownPacket(this.listener, input)
    if (outcome.association !== undefined) {
      this.server = outcome.association
      this.serverTimers.clear()
    }
    this.perform(false, outcome.outputs)
  }

  /** Runs until `until` holds or `maxMs` of simulated time pass; bounded in steps. */
  run(until: () => boolean, maxMs = 600_000, maxSteps = 2_000_000): boolean {
    const deadline = this.nowMs + maxMs
    for (let steps = 0; steps < maxSteps; steps++) {
      if (until()) return true
      // At equal times: packets first, then the client's timers, then the server's.
      const packet = this.queue.peek()
      let next = packet?.atMs ?? Number.POSITIVE_INFINITY
      let kind: "packet" | "client" | "server" | undefined =
        packet === undefined ? undefined : "packet"
      const clientAt = this.clientTimers.next()
      if (clientAt !== undefined && clientAt < next) {
        next = clientAt
        kind = "client"
      }
      const serverAt = this.serverTimers.next()
      if (serverAt !== undefined && serverAt < next) {
        next = serverAt
        kind = "server"
      }
      if (kind === undefined || next > deadline) return until()
      this.nowMs = Math.max(this.nowMs, next)
      if (kind === "packet") {
        this.deliver(this.queue.pop()!)
      } else if (kind === "client") {
        const timerName = this.clientTimers.due(this.nowMs)!
        this.stepClient({ _tag: "TimerFired", timer: timerName, nowMs: this.nowMs })
      } else {
        const timerName = this.serverTimers.due(this.nowMs)!
        if (this.server !== undefined) {
          this.perform(
            false,
            Association.step(this.server, {
              _tag: "TimerFired",
              timer: timerName,
              nowMs: this.nowMs,
            }).outputs,
          )
        }
      }
    }
    return until()
  }

  /** Loses every packet in flight towards the server (`toServer`), or towards the client. */
  loseInFlight(toServer: boolean): void {
    const kept: Array<InFlight> = []
    for (let item = this.queue.pop(); item !== undefined; item = this.queue.pop()) {
      if (item.toServer !== toServer) kept.push(item)
    }
    for (const item of kept) this.queue.push(item)
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
