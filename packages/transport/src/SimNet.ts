/**
 * A deterministic in-memory network implementing `Transport` and `Datagram`: named hosts,
 * per-link latency, loss, duplication and reordering, partitions (symmetric or one-way), and
 * crash / restart of a host. Under `TestClock` and a seeded `Random` the same program gives
 * the same `trace`, byte for byte, so a failing schedule replays from its seed.
 *
 * Stream connections are simulated as TCP byte streams (reliable, in order) under the same
 * connection core as real sockets, so framing, the handshake, keep-alive and close reasons
 * behave as in production. All events run from one scheduler ordered by (time, sequence).
 *
 * Limits: every direction of a connection holds at most `bufferedBytesMax` unread bytes
 * (`write` reports backpressure past `highWaterBytes`); a datagram endpoint buffers at most
 * `datagramBufferSize` datagrams and a datagram carries at most 65,507 bytes; a listener
 * holds at most `backlog` connections not yet through the handshake; the trace keeps the
 * last `traceEventsMax` events; at most 1,000,000 events are pending in the scheduler.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Address, Codec, SimNet, Transport } from "@understudy/transport"
 *
 * const program = Effect.gen(function* () {
 *   const net = yield* SimNet.make({ link: { latency: SimNet.fixed(5) } })
 *   yield* net.run("server", Effect.gen(function* () {
 *     const transport = yield* Transport.Transport
 *     yield* transport.listen(Address.tcp("server", 7000), { codec: Codec.bytes })
 *     yield* Effect.never
 *   }))
 *   yield* net.crash("server")
 * })
 * ```
 * @since 0.1.0
 */
import {
  Cause,
  type Cause as CauseType,
  type Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  Metric,
  Queue,
  Random,
  Result,
  Scope,
  Stream,
} from "effect"
import * as Address from "./Address.ts"
import type { Connection } from "./Connection.ts"
import {
  type BindOptions,
  Datagram,
  decodeBindOptions,
  type Endpoint,
  type Received,
} from "./Datagram.ts"
import { make as makeConnection } from "./internal/connection.ts"
import type { RandomBytes } from "./internal/link.ts"
import { Pipe, type Segment, SimEndpoint, type SimWorld } from "./internal/simLink.ts"
import * as SimScheduler from "./internal/simScheduler.ts"
import * as Metrics from "./Metrics.ts"
import { type ConnectionOptions, decode, positiveMillis } from "./Options.ts"
import { type Listener, Transport } from "./Transport.ts"
import { ConnectError, DatagramError, type HandshakeError, ListenError } from "./TransportError.ts"

/**
 * One-way delay of each datagram or stream segment, in whole milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export type Latency =
  | { readonly _tag: "Fixed"; readonly ms: number }
  | { readonly _tag: "Uniform"; readonly minMs: number; readonly maxMs: number }

/** @since 0.1.0 @category constructors */
export const fixed = (ms: number): Latency => ({ _tag: "Fixed", ms })

/** Each delay drawn uniformly from `minMs..maxMs` (inclusive). @since 0.1.0 @category constructors */
export const uniform = (minMs: number, maxMs: number): Latency => ({
  _tag: "Uniform",
  minMs,
  maxMs,
})

/**
 * How one direction between two hosts behaves.
 *
 * @since 0.1.0
 * @category models
 */
export interface LinkConfig {
  /** One-way delay of each datagram / stream segment. Default `fixed(1)`. */
  readonly latency: Latency
  /**
   * 0..1. A datagram is dropped; a stream segment is "retransmitted": it arrives
   * `retransmit` later (streams stay reliable and ordered, so it also delays what follows).
   */
  readonly loss: number
  /** 0..1, datagrams only: the datagram arrives twice. */
  readonly duplicate: number
  /** 0..1, datagrams only: an extra random delay of up to twice the latency, so later ones may overtake it. */
  readonly reorder: number
}

/** @since 0.1.0 @category models */
export interface SimNetOptions {
  /** The default of every link, in both directions; `setLink` overrides one direction. */
  readonly link?: Partial<LinkConfig>
  /** Delay added to a "lost" stream segment (`"200 millis"`, or milliseconds). Default 200 ms. */
  readonly retransmit?: Duration.Input
  /** `write` on a connection returns false past this many unread bytes in its direction. Default 64 KiB. */
  readonly highWaterBytes?: number
  /** A connection whose writer ignores backpressure is reset past this many unread bytes. Default 64 MiB. */
  readonly bufferedBytesMax?: number
  /** Datagrams a bound endpoint buffers for a slow reader; later ones are dropped. Default 1,024. */
  readonly datagramBufferSize?: number
  /** Connections a listener holds before the handshake; later attempts are refused. Default 128. */
  readonly backlog?: number
  /** Events the trace keeps (the latest ones). Default 100,000. */
  readonly traceEventsMax?: number
}

/**
 * One line of the trace: what happened at `atMs` (Clock time) between `from` and `to`.
 * Kinds: `connect`, `accept`, `refuse`, `send`, `end`, `reset`, `retransmit`, `hold`,
 * `deliver`, `drop`, `duplicate`, `delay`, `timeout`, `handshake-failed`, `crash`,
 * `restart`, `exit`, `partition`, `heal`, `link`, `note`, `unreachable` (a closed port's
 * ICMP answer to an endpoint bound with `reportUnreachable`). Details carry byte counts, never
 * contents.
 *
 * @since 0.1.0
 * @category models
 */
export interface TraceEvent {
  readonly atMs: number
  readonly kind: string
  readonly from: string
  readonly to: string
  readonly detail: string
}

/**
 * A simulated network of named hosts.
 *
 * @since 0.1.0
 * @category models
 */
export interface SimNet {
  /**
   * `Transport` + `Datagram` for programs on `host`: they listen / bind on `tcp://host:port`,
   * `unix://...` (local to the host) and `udp://host:port`. Any host name may be dialled;
   * a host nobody runs anything on refuses connections.
   */
  readonly layer: (host: string) => Layer.Layer<Transport | Datagram>
  /** Sets the link from `from` to `to` (one direction); unset fields keep their value. */
  readonly setLink: (from: string, to: string, config: Partial<LinkConfig>) => Effect.Effect<void>
  /**
   * Cuts every way between `side` and `other` (only `side` → `other` with `oneWay`).
   * Datagrams on a cut way are dropped; stream segments are held until `heal`.
   */
  readonly partition: (
    side: ReadonlyArray<string>,
    other: ReadonlyArray<string>,
    options?: { readonly oneWay?: boolean },
  ) => Effect.Effect<void>
  /** Removes every partition; held stream segments leave now and arrive after the latency. */
  readonly heal: Effect.Effect<void>
  /**
   * Crashes `host`: its programs (from `run`) are interrupted, its listeners and datagram
   * endpoints vanish. `process` (default): each open connection is reset, so the peer
   * sees `Reset` after the latency (once healed, if partitioned). `host`: nothing is sent;
   * peers find out by keep-alive `Timeout`. While down, datagrams to it are dropped and
   * connections to it time out; after a `process` crash its kernel still answers each datagram
   * with a port unreachable, which an endpoint bound with `reportUnreachable` hears of (its
   * datagrams leave from its bound address: the simulation models the report, not the
   * connected sockets).
   */
  readonly crash: (
    host: string,
    options?: { readonly mode?: "process" | "host" },
  ) => Effect.Effect<void>
  /** Brings a crashed host up, empty, and runs its programs again. Does nothing if it is up. */
  readonly restart: (host: string) => Effect.Effect<void>
  /**
   * Starts `program` on `host` now (or at its restart if it is down), in its own scope with
   * the host's services; a crash interrupts it and a restart runs it again. Its failure is
   * logged and traced as `exit`.
   */
  readonly run: <E>(
    host: string,
    program: Effect.Effect<void, E, Transport | Datagram | Scope.Scope>,
  ) => Effect.Effect<void>
  readonly isUp: (host: string) => boolean
  readonly trace: Effect.Effect<ReadonlyArray<TraceEvent>>
  /** Adds an application line to the trace. */
  readonly note: (host: string, text: string) => Effect.Effect<void>
}

const defaultLink: LinkConfig = { latency: fixed(1), loss: 0, duplicate: 0, reorder: 0 }

/** Largest UDP payload over IPv4. */
const maxDatagramBytes = 65_507
/** An endpoint's reader is behind: what `Metrics.datagramsDropped` counts on a real socket. */
const droppedQueueFull = Metric.withAttributes(Metrics.datagramsDropped, { reason: "queue-full" })

/** Datagrams in flight in the whole network; past it new ones are dropped. */
const maxDatagramsInFlight = 100_000
/** Programs registered per host. */
const maxProgramsPerHost = 1_000
/** Unreachable reports an endpoint keeps for a slow reader; later ones are dropped. */
const unreachableBufferSize = 256
const ephemeralFirst = 49_152
const ephemeralCount = 65_536 - ephemeralFirst

type Program = Effect.Effect<void, unknown, Transport | Datagram | Scope.Scope>

interface ListenerEntry {
  readonly hasRoom: () => boolean
  readonly accept: (endpoint: SimEndpoint) => void
  readonly shutdown: () => void
}

interface BoundEntry {
  closed: boolean
  /** False when the receive buffer is full. */
  readonly deliver: (received: Received) => boolean
  readonly shutdown: () => void
}

interface HostState {
  readonly name: string
  up: boolean
  /** How it went down: a `process` crash leaves its kernel up, which answers datagrams. */
  crashMode: "process" | "host"
  readonly programs: Array<Program>
  readonly fibers: Set<Fiber.Fiber<void>>
  /** Stream listeners by `tcp:port` or `unix:path`. */
  readonly listeners: Map<string, ListenerEntry>
  readonly bound: Map<number, BoundEntry>
  /** Open connection sides, for crash handling. */
  readonly endpoints: Set<SimEndpoint>
  readonly clientPorts: Map<SimEndpoint, number>
  nextTcpPort: number
  nextUdpPort: number
}

const validate = (where: string, config: Partial<LinkConfig>): void => {
  const probability = (name: string, value: number | undefined) => {
    if (value !== undefined && !(value >= 0 && value <= 1)) {
      throw new Error(`SimNet ${where}: ${name} must be within 0..1, got ${value}`)
    }
  }
  probability("loss", config.loss)
  probability("duplicate", config.duplicate)
  probability("reorder", config.reorder)
  const latency = config.latency
  if (latency === undefined) return
  const ok =
    latency._tag === "Fixed"
      ? Number.isFinite(latency.ms) && latency.ms >= 0
      : Number.isFinite(latency.minMs) &&
        Number.isFinite(latency.maxMs) &&
        latency.minMs >= 0 &&
        latency.minMs <= latency.maxMs
  if (!ok) throw new Error(`SimNet ${where}: invalid latency ${JSON.stringify(latency)}`)
}

const describeLink = (config: LinkConfig): string => {
  const latency =
    config.latency._tag === "Fixed"
      ? `${config.latency.ms} ms`
      : `${config.latency.minMs}..${config.latency.maxMs} ms`
  return `latency ${latency} loss ${config.loss} duplicate ${config.duplicate} reorder ${config.reorder}`
}

const linkKey = (from: string, to: string): string => `${from}\u0000${to}`

/** The first port from `next` on (wrapping in the ephemeral range) that is free; bounded by the range. */
const allocatePort = (next: number, inUse: (port: number) => boolean): number | undefined => {
  for (let index = 0; index < ephemeralCount; index++) {
    const port = ephemeralFirst + ((next - ephemeralFirst + index) % ephemeralCount)
    if (!inUse(port)) return port
  }
  return undefined
}

const describeCause = (cause: CauseType.Cause<unknown>): string => {
  if (Cause.hasInterruptsOnly(cause)) return "interrupted"
  const error = Cause.squash(cause)
  if (error instanceof Error) return `failed: ${error.message}`
  return `failed: ${String(error)}`
}

/**
 * Builds a network in the current scope: its scheduler fiber and every program started with
 * `run` live until the scope closes. Randomness is drawn from the `Random` service in
 * context now (seed it with `Random.withSeed`), time from the `Clock`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: SimNetOptions = {}): Effect.Effect<SimNet, never, Scope.Scope> =>
  Effect.gen(function* () {
    try {
      validate("options.link", options.link ?? {})
    } catch (error) {
      return yield* Effect.die(error)
    }
    const clock = yield* Effect.clockWith(Effect.succeed)
    const random = yield* Random.Random
    const netScope = yield* Effect.scope
    const scheduler = SimScheduler.make(clock)
    const retransmit = positiveMillis("options.retransmit", options.retransmit ?? 200)
    if (Result.isFailure(retransmit)) return yield* Effect.die(new Error(retransmit.failure))
    const retransmitMs = retransmit.success
    const baseLink: LinkConfig = { ...defaultLink, ...options.link }
    const datagramBufferSize = options.datagramBufferSize ?? 1_024
    const backlog = options.backlog ?? 128
    const traceEventsMax = options.traceEventsMax ?? 100_000

    const hosts = new Map<string, HostState>()
    const links = new Map<string, LinkConfig>()
    const cuts = new Set<string>()
    let events: Array<TraceEvent> = []
    let datagramsInFlight = 0

    const record = (kind: string, from: string, to: string, detail: string): void => {
      events.push({ atMs: scheduler.nowMs(), kind, from, to, detail })
      // Amortised: trimmed to the latest `traceEventsMax` once twice as many piled up.
      if (events.length >= traceEventsMax * 2) events = events.slice(-traceEventsMax)
    }

    const getHost = (name: string): HostState => {
      let host = hosts.get(name)
      if (host === undefined) {
        host = {
          name,
          up: true,
          crashMode: "process",
          programs: [],
          fibers: new Set(),
          listeners: new Map(),
          bound: new Map(),
          endpoints: new Set(),
          clientPorts: new Map(),
          nextTcpPort: ephemeralFirst,
          nextUdpPort: ephemeralFirst,
        }
        hosts.set(name, host)
      }
      return host
    }

    const linkConfig = (from: string, to: string): LinkConfig =>
      links.get(linkKey(from, to)) ?? baseLink

    const sampleLatency = (latency: Latency): number => {
      if (latency._tag === "Fixed") return latency.ms
      const span = latency.maxMs - latency.minMs
      return Math.min(
        latency.maxMs,
        latency.minMs + Math.floor(random.nextDoubleUnsafe() * (span + 1)),
      )
    }

    const chance = (probability: number): boolean =>
      probability > 0 && random.nextDoubleUnsafe() < probability

    const world: SimWorld = {
      scheduler,
      record,
      isCut: (from, to) => from !== to && cuts.has(linkKey(from, to)),
      isUp: (name) => hosts.get(name)?.up ?? true,
      streamDelay: (from, to) => {
        const config = linkConfig(from, to)
        const latencyMs = sampleLatency(config.latency)
        const lost = chance(config.loss)
        return { delayMs: lost ? latencyMs + retransmitMs : latencyMs, lost }
      },
      stalled: new Set(),
      highWaterBytes: options.highWaterBytes ?? 64 * 1024,
      bufferedBytesMax: options.bufferedBytesMax ?? 64 * 1024 * 1024,
      release: (endpoint) => {
        const host = hosts.get(endpoint.host)
        if (host === undefined) return
        host.endpoints.delete(endpoint)
        host.clientPorts.delete(endpoint)
      },
    }

    const randomBytes: RandomBytes = (size) =>
      Effect.sync(() => {
        const bytes = new Uint8Array(size)
        for (let index = 0; index < size; index++) bytes[index] = random.nextIntUnsafe() & 0xff
        return bytes
      })

    yield* Effect.forkIn(scheduler.loop, netScope)

    // ---- streams ------------------------------------------------------------------

    const tcpPortInUse = (host: HostState, port: number): boolean => {
      if (host.listeners.has(`tcp:${port}`)) return true
      for (const used of host.clientPorts.values()) if (used === port) return true
      return false
    }

    const takeTcpPort = (host: HostState): number | undefined => {
      const port = allocatePort(host.nextTcpPort, (candidate) => tcpPortInUse(host, candidate))
      if (port !== undefined) host.nextTcpPort = port + 1
      return port
    }

    const listenerKey = (address: Address.StreamAddress, port: number): string =>
      address._tag === "Tcp" ? `tcp:${port}` : `unix:${address.abstract ? "@" : ""}${address.path}`

    const checkLocal = (
      host: HostState,
      address: Address.Tcp | Address.Udp,
    ): ListenError | undefined => {
      const formatted = Address.format(address)
      if (!host.up) {
        return new ListenError({
          address: formatted,
          reason: "Other",
          detail: `host ${host.name} is down`,
        })
      }
      const wildcard = address.host === "0.0.0.0" || address.host === "::"
      if (address.host !== host.name && !wildcard) {
        return new ListenError({
          address: formatted,
          reason: "AddressNotAvailable",
          detail: `not an address of simulated host ${host.name}`,
        })
      }
      return undefined
    }

    const listen =
      (hostName: string) =>
      <A>(
        address: Address.StreamAddress,
        connectionOptions: ConnectionOptions<A>,
      ): Effect.Effect<Listener<A>, ListenError, Scope.Scope> =>
        Effect.gen(function* () {
          const host = getHost(hostName)
          const formatted = Address.format(address)
          // A bad option fails before anything is bound, as on real sockets.
          const decoded = decode(connectionOptions)
          if (Result.isFailure(decoded)) {
            return yield* new ListenError({
              address: formatted,
              reason: "Other",
              detail: decoded.failure,
            })
          }
          const resolved = decoded.success
          if (address._tag === "Tcp") {
            const notLocal = checkLocal(host, address)
            if (notLocal !== undefined) return yield* notLocal
          } else if (!host.up) {
            return yield* new ListenError({
              address: formatted,
              reason: "Other",
              detail: `host ${hostName} is down`,
            })
          }
          let port = address._tag === "Tcp" ? address.port : 0
          if (address._tag === "Tcp" && port === 0) {
            const free = takeTcpPort(host)
            if (free === undefined) {
              return yield* new ListenError({
                address: formatted,
                reason: "Other",
                detail: "no free port",
              })
            }
            port = free
          }
          const key = listenerKey(address, port)
          if (host.listeners.has(key)) {
            return yield* new ListenError({
              address: formatted,
              reason: "AddressInUse",
              detail: `already listening on simulated host ${hostName}`,
            })
          }
          const bound: Address.StreamAddress =
            address._tag === "Tcp" ? Address.tcp(address.host, port) : address
          const scope = yield* Effect.scope
          const handshaking = yield* Queue.unbounded<SimEndpoint>()
          const connections = yield* Queue.make<Connection<A>, CauseType.Done>({
            capacity: backlog,
          })
          const entry: ListenerEntry = {
            hasRoom: () => Queue.sizeUnsafe(handshaking) < backlog,
            accept: (endpoint) => {
              Queue.offerUnsafe(handshaking, endpoint)
            },
            shutdown: () => {
              Queue.endUnsafe(connections)
            },
          }
          host.listeners.set(key, entry)
          // New connects are refused and the address may be bound again; the accepted live on.
          const unbind = Effect.sync(() => {
            if (host.listeners.get(key) === entry) host.listeners.delete(key)
          })
          yield* Effect.addFinalizer(() =>
            Effect.andThen(
              unbind,
              Effect.sync(() => Queue.endUnsafe(connections)),
            ),
          )

          // Each accepted connection lives in its own fiber, until it closes or the listener's
          // scope does; their scope is made now, as NodeTransport's is, so it closes after
          // whatever its owner set up once listening (a goodbye on the open connections).
          const connectionsScope = yield* Scope.fork(scope, "parallel")
          const serve = (endpoint: SimEndpoint) => {
            let made = false
            return Effect.scoped(
              Effect.gen(function* () {
                const connection = yield* makeConnection(endpoint, {
                  role: "server",
                  options: resolved,
                  randomBytes,
                  peer: Address.format(endpoint.remote),
                })
                made = true
                yield* Queue.offer(connections, connection)
                yield* connection.closed
              }),
            ).pipe(
              Effect.onExit((exit) =>
                Effect.sync(() => {
                  if (!made && Exit.isFailure(exit)) endpoint.destroy()
                }),
              ),
              Effect.catchCause((cause) => {
                const remote = Address.format(endpoint.remote)
                const detail = describeCause(cause)
                record("handshake-failed", formatted, remote, detail)
                return Effect.logDebug(`SimNet: handshake with ${remote} failed: ${detail}`)
              }),
            )
          }
          yield* Effect.forkIn(
            Effect.forever(
              Effect.flatMap(Queue.take(handshaking), (endpoint) =>
                Effect.forkIn(serve(endpoint), connectionsScope),
              ),
            ),
            scope,
          )
          return { address: bound, connections: Stream.fromQueue(connections), unbind }
        })

    let unixClients = 0

    const connect =
      (hostName: string) =>
      <A>(
        address: Address.StreamAddress,
        connectionOptions: ConnectionOptions<A>,
      ): Effect.Effect<Connection<A>, ConnectError | HandshakeError, Scope.Scope> =>
        Effect.gen(function* () {
          const host = getHost(hostName)
          const peer = Address.format(address)
          const decoded = decode(connectionOptions)
          if (Result.isFailure(decoded)) {
            return yield* new ConnectError({
              address: peer,
              reason: "Other",
              detail: decoded.failure,
            })
          }
          const resolved = decoded.success
          if (!host.up) {
            return yield* new ConnectError({
              address: peer,
              reason: "Other",
              detail: `host ${hostName} is down`,
            })
          }
          const targetHost = address._tag === "Tcp" ? address.host : hostName
          let local: Address.StreamAddress = address
          let localLabel: string
          let port: number | undefined
          if (address._tag === "Tcp") {
            port = takeTcpPort(host)
            if (port === undefined) {
              return yield* new ConnectError({
                address: peer,
                reason: "Other",
                detail: "no free ephemeral port",
              })
            }
            local = Address.tcp(hostName, port)
            localLabel = Address.format(local)
          } else {
            localLabel = `${peer}#${++unixClients}`
          }
          const c2s = new Pipe(world, hostName, targetHost, localLabel, peer)
          const s2c = new Pipe(world, targetHost, hostName, peer, localLabel)
          const client = new SimEndpoint(world, hostName, local, address, c2s, s2c)
          host.endpoints.add(client)
          if (port !== undefined) host.clientPorts.set(client, port)
          const key = listenerKey(address, address._tag === "Tcp" ? address.port : 0)
          c2s.receiver = (segment) => onSyn(segment, { targetHost, key, c2s, s2c, local, address })

          const startedMs = scheduler.nowMs()
          const outcome = yield* Effect.callback<"established" | "refused">((resume) => {
            client.connecting = (result) => resume(Effect.succeed(result))
            c2s.send({ kind: "syn" }, "connect")
            return Effect.sync(() => {
              client.connecting = undefined
            })
          }).pipe(
            Effect.timeoutOption(resolved.handshakeTimeoutMs),
            Effect.onInterrupt(() => Effect.sync(() => client.destroy())),
          )
          if (outcome._tag === "None") {
            record(
              "timeout",
              localLabel,
              peer,
              `no answer within ${resolved.handshakeTimeoutMs} ms`,
            )
            client.destroy()
            return yield* new ConnectError({
              address: peer,
              reason: "Timeout",
              detail: `no answer within ${resolved.handshakeTimeoutMs} ms`,
            })
          }
          if (outcome.value === "refused") {
            return yield* new ConnectError({
              address: peer,
              reason: "Refused",
              detail: "nobody listens there",
            })
          }
          // The attempt and the handshake share one time budget.
          const remainingMs = Math.max(
            1,
            resolved.handshakeTimeoutMs - (scheduler.nowMs() - startedMs),
          )
          return yield* makeConnection(client, {
            role: "client",
            options: { ...resolved, handshakeTimeoutMs: remainingMs },
            randomBytes,
            peer,
          }).pipe(
            // The core closes the link on its own failures; this covers an interruption.
            Effect.onExit((exit) =>
              Effect.sync(() => {
                if (Exit.isFailure(exit)) client.destroy()
              }),
            ),
          )
        })

    /** A `syn` reached the target host: accept if someone listens there, refuse if not. */
    const onSyn = (
      segment: Segment,
      at: {
        readonly targetHost: string
        readonly key: string
        readonly c2s: Pipe
        readonly s2c: Pipe
        readonly local: Address.StreamAddress
        readonly address: Address.StreamAddress
      },
    ): string | undefined => {
      // Only the `syn` matters here; a later reset from an abandoned attempt finds nobody.
      if (segment.kind !== "syn") return "no connection"
      const target = getHost(at.targetHost)
      if (!target.up) return "receiver crashed"
      const listener = target.listeners.get(at.key)
      if (listener === undefined || !listener.hasRoom()) {
        const detail = listener === undefined ? "connection refused" : "backlog full"
        at.s2c.send({ kind: "reset", detail }, "refuse")
        return undefined
      }
      const server = new SimEndpoint(world, at.targetHost, at.address, at.local, at.s2c, at.c2s)
      target.endpoints.add(server)
      at.s2c.send({ kind: "synack" }, "accept")
      listener.accept(server)
      return undefined
    }

    // ---- datagrams ----------------------------------------------------------------

    /** Hands a datagram to its endpoint; returns why it was dropped, if it was. */
    const handOver = (
      from: Address.Udp,
      to: Address.Udp,
      bytes: Uint8Array,
    ): string | undefined => {
      if (world.isCut(from.host, to.host)) return "partition"
      const target = hosts.get(to.host)
      if (target !== undefined && !target.up) return "receiver crashed"
      const entry = target?.bound.get(to.port)
      if (entry === undefined) return "no endpoint bound"
      return entry.deliver({ from, bytes }) ? undefined : "receive buffer full"
    }

    /**
     * Whether the kernel at `to` answers with an ICMP port unreachable: its host runs (or only
     * its processes crashed) and nothing is bound on the port. A host nobody runs anything on
     * answers too, as it refuses connections.
     */
    const portClosed = (to: Address.Udp): boolean => {
      const target = hosts.get(to.host)
      if (target === undefined) return true
      if (!target.up) return target.crashMode === "process"
      return !target.bound.has(to.port)
    }

    const deliverDatagram = (
      from: Address.Udp,
      fromHost: string,
      to: Address.Udp,
      bytes: Uint8Array,
      onUnreachable: (() => void) | undefined,
    ): void => {
      datagramsInFlight--
      const dropped = handOver(from, to, bytes)
      const size = `${bytes.byteLength} B`
      if (dropped === undefined) record("deliver", Address.format(from), Address.format(to), size)
      else record("drop", Address.format(from), Address.format(to), `${size}: ${dropped}`)
      // The answer of a closed port comes back over the reverse link, never across a cut.
      if (
        dropped !== undefined &&
        onUnreachable !== undefined &&
        !world.isCut(from.host, to.host) &&
        !world.isCut(to.host, fromHost) &&
        portClosed(to)
      ) {
        const latencyMs = sampleLatency(linkConfig(to.host, fromHost).latency)
        record("unreachable", Address.format(to), Address.format(from), "port unreachable")
        scheduler.at(scheduler.nowMs() + latencyMs, onUnreachable)
      }
    }

    const sendDatagram = (
      from: Address.Udp,
      fromHost: string,
      to: Address.Udp,
      payload: Uint8Array,
      onUnreachable: (() => void) | undefined,
    ): void => {
      const fromLabel = Address.format(from)
      const toLabel = Address.format(to)
      const size = `${payload.byteLength} B`
      record("send", fromLabel, toLabel, size)
      const config = linkConfig(fromHost, to.host)
      if (chance(config.loss)) {
        record("drop", fromLabel, toLabel, `${size}: loss`)
        return
      }
      const copies = chance(config.duplicate) ? 2 : 1
      if (copies === 2) record("duplicate", fromLabel, toLabel, size)
      const now = scheduler.nowMs()
      for (let copy = 0; copy < copies; copy++) {
        if (datagramsInFlight >= maxDatagramsInFlight) {
          record("drop", fromLabel, toLabel, `${size}: network queue full`)
          continue
        }
        const latencyMs = sampleLatency(config.latency)
        let delayMs = latencyMs
        if (chance(config.reorder)) {
          const extraMs = 1 + Math.floor(random.nextDoubleUnsafe() * 2 * Math.max(latencyMs, 1))
          delayMs += extraMs
          record("delay", fromLabel, toLabel, `${size}: +${extraMs} ms`)
        }
        datagramsInFlight++
        // Each copy gets its own buffer: a receiver may keep or mutate what it got.
        const bytes = copy === 0 ? payload : payload.slice()
        scheduler.at(now + delayMs, () => deliverDatagram(from, fromHost, to, bytes, onUnreachable))
      }
    }

    const bind =
      (hostName: string) =>
      (
        address: Address.Udp,
        options?: BindOptions,
      ): Effect.Effect<Endpoint, ListenError, Scope.Scope> =>
        Effect.gen(function* () {
          // Checked as on a real socket; the simulated links model no kernel buffers.
          const checked = yield* decodeBindOptions(address, options)
          const host = getHost(hostName)
          const notLocal = checkLocal(host, address)
          if (notLocal !== undefined) return yield* notLocal
          let port = address.port
          if (port === 0) {
            const free = allocatePort(host.nextUdpPort, (candidate) => host.bound.has(candidate))
            if (free === undefined) {
              return yield* new ListenError({
                address: Address.format(address),
                reason: "Other",
                detail: "no free port",
              })
            }
            host.nextUdpPort = free + 1
            port = free
          }
          if (host.bound.has(port)) {
            return yield* new ListenError({
              address: Address.format(address),
              reason: "AddressInUse",
              detail: `already bound on simulated host ${hostName}`,
            })
          }
          const queue = yield* Queue.make<Received, CauseType.Done>({
            capacity: datagramBufferSize,
          })
          const unreachable = yield* Queue.dropping<Address.Udp, CauseType.Done>(
            unreachableBufferSize,
          )
          const context = yield* Effect.context<never>()
          const entry: BoundEntry = {
            closed: false,
            deliver: (received) => {
              if (Queue.isFullUnsafe(queue) || !Queue.offerUnsafe(queue, received)) {
                droppedQueueFull.updateUnsafe(1, context)
                return false
              }
              Metrics.datagramsReceived.updateUnsafe(1, context)
              return true
            },
            shutdown: () => {
              entry.closed = true
              Queue.endUnsafe(queue)
              Queue.endUnsafe(unreachable)
            },
          }
          const reports = checked.reportUnreachable === true
          host.bound.set(port, entry)
          yield* Effect.addFinalizer(() =>
            Effect.sync(() => {
              if (host.bound.get(port) === entry) host.bound.delete(port)
              entry.shutdown()
            }),
          )
          const boundAddress = Address.udp(address.host, port)
          const endpoint: Endpoint = {
            address: boundAddress,
            send: (to, bytes) =>
              Effect.suspend(() => {
                if (entry.closed) {
                  return Effect.fail(
                    new DatagramError({ address: Address.format(to), detail: "endpoint closed" }),
                  )
                }
                if (bytes.byteLength > maxDatagramBytes) {
                  return Effect.fail(
                    new DatagramError({
                      address: Address.format(to),
                      detail: `${bytes.byteLength} bytes is over the maximum ${maxDatagramBytes}`,
                    }),
                  )
                }
                Metrics.datagramsSent.updateUnsafe(1, context)
                sendDatagram(
                  boundAddress,
                  hostName,
                  to,
                  bytes.slice(),
                  reports ? () => void Queue.offerUnsafe(unreachable, to) : undefined,
                )
                return Effect.void
              }),
            messages: Stream.fromQueue(queue),
            ...(reports ? { unreachable: Stream.fromQueue(unreachable) } : {}),
          }
          return endpoint
        })

    // ---- hosts --------------------------------------------------------------------

    const layer = (hostName: string): Layer.Layer<Transport | Datagram> =>
      Layer.mergeAll(
        Layer.succeed(Transport)(
          Transport.of({ listen: listen(hostName), connect: connect(hostName) }),
        ),
        Layer.succeed(Datagram)(Datagram.of({ bind: bind(hostName) })),
      )

    const startProgram = (host: HostState, program: Program): Effect.Effect<void> =>
      Effect.gen(function* () {
        const state = { fiber: undefined as Fiber.Fiber<void> | undefined, done: false }
        const fiber = yield* Effect.forkIn(
          program.pipe(
            Effect.scoped,
            Effect.provide(layer(host.name)),
            // Also when a crash interrupts it: the trace shows where each run ended.
            Effect.onExit((exit) => {
              const how = Exit.isSuccess(exit) ? "completed" : describeCause(exit.cause)
              record("exit", host.name, "", how)
              return Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)
                ? Effect.logWarning(`SimNet: program on ${host.name} ${how}`)
                : Effect.void
            }),
            Effect.ignore,
            Effect.ensuring(
              Effect.sync(() => {
                state.done = true
                if (state.fiber !== undefined) host.fibers.delete(state.fiber)
              }),
            ),
          ),
          netScope,
        )
        if (!state.done) {
          state.fiber = fiber
          host.fibers.add(fiber)
        }
      })

    const run = <E>(
      hostName: string,
      program: Effect.Effect<void, E, Transport | Datagram | Scope.Scope>,
    ): Effect.Effect<void> =>
      Effect.suspend(() => {
        const host = getHost(hostName)
        if (host.programs.length >= maxProgramsPerHost) {
          return Effect.die(
            new Error(`SimNet: more than ${maxProgramsPerHost} programs on host ${hostName}`),
          )
        }
        host.programs.push(program)
        return host.up ? startProgram(host, program) : Effect.void
      })

    const crash = (
      hostName: string,
      crashOptions?: { readonly mode?: "process" | "host" },
    ): Effect.Effect<void> =>
      Effect.suspend(() => {
        const host = getHost(hostName)
        if (!host.up) return Effect.void
        const mode = crashOptions?.mode ?? "process"
        host.up = false
        host.crashMode = mode
        record("crash", hostName, "", mode)
        // First the connections die, so that nothing the programs' finalizers (or fibers
        // resumed by what follows) still send leaves the host.
        for (const endpoint of [...host.endpoints]) endpoint.kill(mode)
        host.endpoints.clear()
        host.clientPorts.clear()
        const fibers = [...host.fibers]
        host.fibers.clear()
        return Effect.andThen(
          Fiber.interruptAll(fibers),
          Effect.sync(() => {
            // What was opened outside `run` vanishes too.
            for (const listener of host.listeners.values()) listener.shutdown()
            host.listeners.clear()
            for (const entry of host.bound.values()) entry.shutdown()
            host.bound.clear()
          }),
        )
      })

    const restart = (hostName: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        const host = getHost(hostName)
        if (host.up) return Effect.void
        host.up = true
        record("restart", hostName, "", `${host.programs.length} program(s)`)
        return Effect.forEach(host.programs, (program) => startProgram(host, program), {
          discard: true,
        })
      })

    const partition = (
      side: ReadonlyArray<string>,
      other: ReadonlyArray<string>,
      partitionOptions?: { readonly oneWay?: boolean },
    ): Effect.Effect<void> =>
      Effect.sync(() => {
        const oneWay = partitionOptions?.oneWay === true
        for (const from of side) {
          for (const to of other) {
            if (from === to) continue
            cuts.add(linkKey(from, to))
            if (!oneWay) cuts.add(linkKey(to, from))
          }
        }
        record("partition", side.join(","), other.join(","), oneWay ? "one way" : "both ways")
      })

    const heal = Effect.sync(() => {
      cuts.clear()
      record("heal", "network", "", `${world.stalled.size} held pipe(s) resume`)
      const stalled = [...world.stalled]
      world.stalled.clear()
      for (const pipe of stalled) pipe.retime()
    })

    const setLink = (from: string, to: string, config: Partial<LinkConfig>): Effect.Effect<void> =>
      Effect.suspend(() => {
        try {
          validate(`setLink(${from}, ${to})`, config)
        } catch (error) {
          return Effect.die(error)
        }
        const next = { ...linkConfig(from, to), ...config }
        links.set(linkKey(from, to), next)
        record("link", from, to, describeLink(next))
        return Effect.void
      })

    const simNet: SimNet = {
      layer,
      setLink,
      partition,
      heal,
      crash,
      restart,
      run,
      isUp: world.isUp,
      trace: Effect.sync(() => events.slice(-traceEventsMax)),
      note: (host, text) => Effect.sync(() => record("note", host, "", text)),
    }
    return simNet
  })

/**
 * One readable line per event: time, kind, `from → to`, detail.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatTrace = (events: ReadonlyArray<TraceEvent>): string =>
  events
    .map((event) => {
      const time = `${event.atMs}`.padStart(8)
      const route = event.to === "" ? event.from : `${event.from} → ${event.to}`
      return `${time} ms  ${event.kind.padEnd(16)} ${route}  ${event.detail}`
    })
    .join("\n")
