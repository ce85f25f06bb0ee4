/**
 * The Effect driver of SCTP over UDP (RFC 9260 over RFC 6951): an endpoint binds one UDP
 * address through the transport's `Datagram` service (so it runs unchanged on `NodeDatagram`
 * and `SimNet`), and runs the pure machines of `Association.ts` and `Listener.ts`.
 *
 * One receive fiber takes the datagrams a chunk at a time and, for each: decodes it
 * (`Packet.decode` checks the CRC32c; bad ones are dropped and counted in `stats`),
 * demultiplexes it (verification tag → the association whose own tag it is; else the peer
 * host and SCTP port, e.g. an ABORT with the T bit or an INIT colliding with an association;
 * else the `Listener`), and steps the machine. The outputs are then performed: `Transmit` →
 * one datagram to the path's host and UDP port (the machine keeps each path's port as last
 * seen from it, RFC 6951 §5.5; see {@link loopbackAlias} for the one exception);
 * `SetTimer` / `CancelTimer` → one fiber per (association, timer) sleeping on the Effect
 * `Clock` (so `TestClock` drives it); `Event` → the association's `events` and `messages`
 * streams. Every step and its outputs run under one lock per endpoint: inputs from
 * datagrams, timers and commands never interleave. A chunk of received datagrams is
 * stepped as one batch, and the datagrams it causes are handed to the socket together.
 *
 * For the cluster: {@link Hooks} see every input applied and hold the outputs until a
 * secondary has them; {@link Options.handler} answers messages within their update;
 * {@link Options.intercept} and {@link Endpoint.inject} forward packets between nodes;
 * {@link Endpoint.adopt} and the listener secrets make a replica live.
 *
 * @example
 * ```ts
 * const server = yield* Endpoint.make({ bind: Address.udp("127.0.0.2", 0), port: 5000, listen: true })
 * yield* server.accept.pipe(Stream.runForEach((association) =>
 *   association.messages.pipe(Stream.runForEach((m) => association.send(m.stream, m.ppid, m.data)), Effect.forkScoped)))
 * ```
 * @since 0.1.0
 */
import { networkInterfaces } from "node:os"
import { Address, Datagram, type TransportError } from "@understudy/transport"
import {
  type Cause,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  type Fiber,
  Layer,
  Metric,
  Queue,
  Schema,
  type Scope,
  Semaphore,
  Stream,
} from "effect"
import * as Association from "./Association.ts"
import type * as Chunk from "./Chunk.ts"
import * as Cookie from "./Cookie.ts"
import {
  canonicalHost,
  listedAddresses,
  parseIpv4,
  parseIpv6,
} from "./internal/association-support.ts"
import * as Listener from "./Listener.ts"
import * as Metrics from "./Metrics.ts"
import * as Packet from "./Packet.ts"
import { lte32 } from "./Serial.ts"

// ---- errors ------------------------------------------------------------------------

/**
 * `connect` did not reach ESTABLISHED: the peer aborted (`Aborted`), the INIT / COOKIE ECHO
 * retransmissions ran out (`CommLost`), the caller's `timeout` passed (`Timeout`; the
 * attempt is aborted), the endpoint was closed (`EndpointClosed`), or the `timeout` is not
 * a positive duration (`InvalidOptions`: nothing was sent).
 *
 * @since 0.1.0
 * @category errors
 */
export class AssociationConnectError extends Schema.TaggedError<AssociationConnectError>()(
  "AssociationConnectError",
  {
    peer: Schema.String,
    reason: Schema.Literals(["Aborted", "CommLost", "Timeout", "EndpointClosed", "InvalidOptions"]),
    detail: Schema.String,
  },
) {
  override get message(): string {
    return `cannot associate with ${this.peer}: ${this.reason} (${this.detail})`
  }
}

/**
 * An operation on an association failed: it is gone (`Closed`: aborted, lost, shut down or
 * the endpoint closed), or the machine refused the command (`Rejected`, e.g. an invalid
 * stream, or a send after SHUTDOWN).
 *
 * @since 0.1.0
 * @category errors
 */
export class AssociationError extends Schema.TaggedError<AssociationError>()("AssociationError", {
  associationId: Schema.Number,
  reason: Schema.Literals(["Closed", "Rejected"]),
  detail: Schema.String,
}) {
  override get message(): string {
    return `association ${this.associationId}: ${this.reason} (${this.detail})`
  }
}

/**
 * An option of `make` is out of range (`option` names it): nothing was bound.
 *
 * @since 0.1.0
 * @category errors
 */
export class EndpointConfigError extends Schema.TaggedError<EndpointConfigError>()(
  "EndpointConfigError",
  { option: Schema.String, detail: Schema.String },
) {
  override get message(): string {
    return `invalid endpoint option ${this.option}: ${this.detail}`
  }
}

// ---- models ------------------------------------------------------------------------

/**
 * A user message delivered by an association (bytes owned by the receiver).
 *
 * @since 0.1.0
 * @category models
 */
export interface Message {
  readonly stream: number
  readonly ppid: number
  readonly unordered: boolean
  readonly data: Uint8Array
}

/**
 * Why an association ended: `closed` resolves with it.
 *
 * @since 0.1.0
 * @category models
 */
export type CloseReason =
  | { readonly _tag: "ShutdownComplete" }
  /** Retransmissions ran out (`MaxRetransmissions`, `InitTimeout`, ...) or a protocol rule ended it. */
  | { readonly _tag: "CommLost"; readonly reason: string }
  /** An ABORT: sent by us (`abort`, a reader too slow) or received from the peer. */
  | { readonly _tag: "Aborted"; readonly by: "us" | "peer"; readonly reason: string }
  | { readonly _tag: "EndpointClosed" }

/**
 * One association, as its user sees it. `messages` and `events` are single-consumer
 * streams that end when the association is gone.
 *
 * @since 0.1.0
 * @category models
 */
export interface AssociationHandle {
  /** Unique within its endpoint; the `associationId` of {@link Hooks}. */
  readonly id: number
  /** Where the association was first reached: peer host, UDP port and SCTP port. */
  readonly peer: { readonly host: string; readonly udpPort: number; readonly port: number }
  /**
   * Queues one user message (the machine keeps `data`: do not change it afterwards). Waits while the association's send buffer
   * (`Config.sendBufferBytes`) is full; fails with `Closed` if the association is gone
   * and `Rejected` if the machine refuses it (invalid stream, shutting down).
   */
  readonly send: (
    stream: number,
    ppid: number,
    data: Uint8Array,
    options?: { readonly unordered?: boolean },
  ) => Effect.Effect<void, AssociationError>
  /** Delivered messages, in delivery order. Bounded by `queuedMessagesMax` (past it: ABORT). */
  readonly messages: Stream.Stream<Message>
  /** Every event of the machine but `Message`, the newest kept past `queuedEventsMax`. */
  readonly events: Stream.Stream<Association.Event>
  /** Graceful SHUTDOWN (§9.2): completes at SHUTDOWN COMPLETE, fails if the peer aborts. */
  readonly shutdown: Effect.Effect<void, AssociationError>
  /** ABORT (§9.1); completes at once. Nothing if the association is already gone. */
  readonly abort: (reason?: string) => Effect.Effect<void>
  /** `Association.info` of the current state. */
  readonly status: Effect.Effect<Association.Status, AssociationError>
  /** Makes `host` (one of the peer's addresses) the primary path; `Rejected` if unknown. */
  readonly setPrimary: (host: string) => Effect.Effect<void, AssociationError>
  /** Sends a HEARTBEAT on the path to `host` now (confirms it, measures its RTT). */
  readonly requestHeartbeat: (host: string) => Effect.Effect<void, AssociationError>
  /** Completes when the association is gone, with why. */
  readonly closed: Effect.Effect<CloseReason>
}

/**
 * Counters of an endpoint since it was made. `dropped` counts by reason: `BadChecksum`,
 * `Malformed`, `QueueFull`, `NotListening`, and each `Dropped` event reason of the
 * machines.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  readonly packetsIn: number
  readonly packetsOut: number
  readonly bytesIn: number
  readonly bytesOut: number
  /** Datagrams the `Datagram` service failed to send (e.g. an IPv6 path on an IPv4 socket). */
  readonly sendErrors: number
  readonly dropped: Readonly<Record<string, number>>
  readonly associations: number
}

/**
 * The replication extension point (the cluster's): both are optional, run under the
 * endpoint's lock (so they see updates in the order they happened) and delay everything
 * after them, so keep them short.
 *
 * - `onInput`: once per input applied to an association, in order, after its step and before
 *   any of the outputs of the batch are performed. `input.packet` re-encodes with
 *   `Packet.encode` to the received bytes. An association created by the `Listener` (a
 *   valid COOKIE ECHO) is announced by its first `beforeOutputs` with `created: true`.
 * - `beforeOutputs`: once per association per batch (a chunk of datagrams, a timer, a
 *   command), with the inputs applied and the outputs about to be performed; the outputs
 *   wait for it. `state` is the live TCB (read it, snapshot it; do not keep it). It may
 *   answer a hold, a `Deferred` (`every-update` replication: the secondary's ack): the
 *   outputs are then held until it completes, while the endpoint goes on stepping what
 *   arrives; every later update's outputs queue behind them, so each association's outputs
 *   leave in the order they were stepped, and none before the holds of those stepped
 *   earlier completed. At most 256 updates are held; past that the endpoint waits for the
 *   oldest hold before it steps more.
 *
 * Both run in the fiber holding the endpoint's lock, which is reentrant for it: they may call
 * the endpoint's methods directly, but must not wait for another fiber that does.
 * A failure of either is a defect: it stops the endpoint.
 *
 * @since 0.1.0
 * @category models
 */
export interface Hooks {
  readonly onInput?: (associationId: number, input: Association.Input) => Effect.Effect<void>
  readonly beforeOutputs?: (update: {
    readonly associationId: number
    readonly created: boolean
    readonly inputs: ReadonlyArray<Association.Input>
    readonly outputs: ReadonlyArray<Association.Output>
    readonly state: Association.State
  }) => Effect.Effect<void | Deferred.Deferred<void>>
}

/**
 * A reply of a {@link Options.handler}: sent on the association as a `Send` command.
 *
 * @since 0.1.0
 * @category models
 */
export interface Reply {
  readonly stream: number
  readonly ppid: number
  readonly data: Uint8Array
  readonly unordered: boolean
}

/**
 * A packet that matched no association, shown to {@link Options.intercept} before the
 * Listener sees it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Intercepted {
  readonly from: Association.PeerAddress
  readonly packet: Packet.Packet
  /** The datagram as received (to forward it). */
  readonly bytes: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The UDP address to bind (RFC 6951 encapsulation port; 0 picks one). */
  readonly bind: Address.Udp
  /** Our SCTP port (the common header's). */
  readonly port: number
  /**
   * Overrides of `Association.defaultConfig` (`localPort` is `port`; `localAddresses`
   * defaults to the bound IP when `bind` names one, else none).
   */
  readonly config?: Partial<Association.Config>
  /** Accept associations (INIT → INIT ACK). Otherwise an INIT is answered with an ABORT. */
  readonly listen?: boolean
  /**
   * Simulation only: seeds the machines' PRNGs, so a run replays exactly — and its tags,
   * TSNs and cookie secrets are predictable. Default: the OS CSPRNG (node:crypto).
   */
  readonly seed?: number
  readonly hooks?: Hooks
  /**
   * A synchronous service: each delivered message goes to it (not to `messages`), and its
   * replies are sent in the same update, so `beforeOutputs` sees a message and its answer
   * together (an `every-update` replica never has one without the other).
   */
  readonly handler?: (associationId: number, message: Message) => ReadonlyArray<Reply>
  /**
   * Sees each packet that matches no association before the Listener: true consumes it.
   * It runs under the endpoint's lock, and may call the endpoint (e.g. `adopt`, after which
   * the packet is demultiplexed again).
   */
  readonly intercept?: (packet: Intercepted) => Effect.Effect<boolean>
  /** Associations accepted but not yet taken from `accept`; past it new ones are aborted. Default 128. */
  readonly backlog?: number
  /** Messages an association buffers for a slow reader; past it it is aborted. Default 65,536. */
  readonly queuedMessagesMax?: number
  /** Events an association keeps for a slow reader (the oldest are dropped). Default 4,096. */
  readonly queuedEventsMax?: number
  /**
   * On scope close, ABORT every association still up (default true). The cluster's primary
   * sets false: its associations live on in the secondary.
   */
  readonly abortOnClose?: boolean
  /**
   * Answer a loopback peer that does not list its source address at another address of
   * this host ({@link loopbackAlias}, usrsctp's quirk); default true.
   */
  readonly loopbackAliasing?: boolean
  /**
   * This host's non-loopback addresses, for {@link loopbackAlias} when the peer lists none;
   * default: the non-internal, non-link-local addresses of `os.networkInterfaces()`.
   */
  readonly hostAddresses?: ReadonlyArray<string>
  /**
   * Asked just before each datagram goes to the socket: `false` drops it (counted in
   * `stats.dropped.fenced`). The cluster's fence: a node that can not prove it still holds
   * its role sends nothing, whatever fiber (timer, retransmission) produced the datagram.
   */
  readonly mayTransmit?: Effect.Effect<boolean>
}

/**
 * A bound SCTP endpoint.
 *
 * @since 0.1.0
 * @category models
 */
export interface Endpoint {
  /** The bound UDP address (actual port when 0 was asked). */
  readonly address: Address.Udp
  /** Our SCTP port. */
  readonly port: number
  readonly config: Association.Config
  /** New associations from peers (when `listen`), each once, in order of establishment. */
  readonly accept: Stream.Stream<AssociationHandle>
  /**
   * Opens an association (INIT to `host` at UDP port `udpPort`, SCTP port `port`) and
   * waits for COMMUNICATION UP.
   */
  readonly connect: (
    options: ConnectOptions,
  ) => Effect.Effect<AssociationHandle, AssociationConnectError>
  readonly associations: Effect.Effect<ReadonlyArray<AssociationHandle>>
  readonly stats: Effect.Effect<Stats>
  /** Sends one packet as it is (no association involved), e.g. a replica's HEARTBEAT ACK. */
  readonly transmit: (to: Association.PeerAddress, packet: Packet.Packet) => Effect.Effect<void>
  /**
   * Hands in a datagram as if received from `from` (a packet another node forwarded). It is
   * queued for the receive fiber, so this never waits for the endpoint's lock.
   */
  readonly inject: (from: Association.PeerAddress, bytes: Uint8Array) => Effect.Effect<void>
  /**
   * Makes `state` (a replica) one of this endpoint's live associations, and performs
   * `takeOver(state, nowMs)` (default `Association.takeOver`): timers re-armed,
   * outstanding data retransmitted, a HEARTBEAT on every path. Not offered on `accept`.
   */
  readonly adopt: (
    state: Association.State,
    options?: {
      readonly takeOver?: (
        state: Association.State,
        nowMs: number,
      ) => ReadonlyArray<Association.Output>
    },
  ) => Effect.Effect<AssociationHandle>
  /** The Listener's cookie secrets, to replicate (a replica accepts the cookies we issued). */
  readonly listenerSecrets: Effect.Effect<Cookie.CookieSecretsSnapshot>
  /** Replaces the Listener's cookie secrets with a replicated copy. */
  readonly adoptListenerSecrets: (secrets: Cookie.CookieSecretsSnapshot) => Effect.Effect<void>
  /** The {@link loopbackAlias} table learned so far (to replicate to another node). */
  readonly aliases: Effect.Effect<ReadonlyArray<Alias>>
  /** Adds aliases (a replicated table, or {@link aliasesOf} a replica). */
  readonly addAliases: (aliases: ReadonlyArray<Alias>) => Effect.Effect<void>
}

/**
 * One entry of the {@link loopbackAlias} table: what is addressed to `from` goes to `host`
 * (same UDP port).
 *
 * @since 0.1.0
 * @category interop
 */
export interface Alias {
  readonly from: Association.PeerAddress
  readonly host: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ConnectOptions {
  readonly host: string
  /** The peer's UDP encapsulation port. */
  readonly udpPort: number
  /** The peer's SCTP port. */
  readonly port: number
  /**
   * Gives up (and aborts the attempt) after this long (`"5 seconds"`, or milliseconds);
   * default: the machine's INIT retries.
   */
  readonly timeout?: Duration.Input
  /** Further addresses of the peer known in advance (a peer that is itself a cluster). */
  readonly peerAddresses?: ReadonlyArray<string>
}

// ---- internals ---------------------------------------------------------------------

interface Timer {
  deadlineMs: number
  /** The deadline the fiber sleeps towards; a later `deadlineMs` makes it sleep again. */
  sleepingUntilMs: number
  /**
   * Cleared by `CancelTimer`: the fiber is not interrupted (a fork and an interrupt for
   * every delayed SACK cost more than a wake-up); it wakes, sees this and ends, unless a
   * `SetTimer` re-armed it meanwhile.
   */
  armed: boolean
  fiber: Fiber.Fiber<void> | undefined
  /** Its fiber fired or ended: a `SetTimer` must fork a new one. */
  finished: boolean
}

interface Entry {
  readonly id: number
  readonly state: Association.State
  readonly handle: AssociationHandle
  readonly peer: { readonly host: string; readonly udpPort: number; readonly port: number }
  myTag: number
  gone: boolean
  readonly timers: Map<string, Timer>
  readonly messages: Queue.Queue<Message, Cause.Done>
  readonly events: Queue.Queue<Association.Event, Cause.Done>
  readonly closed: Deferred.Deferred<CloseReason>
  /** Completes at CommUp; fails when the association dies first. */
  readonly up: Deferred.Deferred<void, CloseReason>
  readonly shutdownWaiters: Array<Deferred.Deferred<void, AssociationError>>
  /** Senders waiting for room in the send buffer. */
  readonly sendWaiters: Array<Deferred.Deferred<void>>
  /** Why it is ending, once known (before `Closed`): what `closed` reports. */
  ending: CloseReason | undefined
  /** The highest TSN sent: a DATA chunk at or below it is a retransmission (counted). */
  highestTsnSent: number
}

/** One association's updates within a batch: what `beforeOutputs` sees. */
interface Update {
  readonly entry: Entry
  readonly created: boolean
  readonly inputs: Array<Association.Input>
  readonly outputs: Array<Association.Output>
}

const defaultBacklog = 128
const defaultQueuedMessagesMax = 65_536
const defaultQueuedEventsMax = 4_096

/** A count option: a whole number from 1 to 2^24. */
const Count = Schema.Number.check(
  Schema.isInt(),
  Schema.isBetween({ minimum: 1, maximum: 2 ** 24 }),
)

/** A `Duration.Input` option: a `Duration`, milliseconds or text (`"5 seconds"`), positive and finite. */
const PositiveDuration = Schema.Union([
  Schema.Duration,
  Schema.DurationFromMillis,
  Schema.DurationFromString,
]).check(
  Schema.makeFilter((duration: Duration.Duration) =>
    Duration.isFinite(duration) && Duration.isGreaterThan(duration, Duration.zero)
      ? undefined
      : 'not a positive finite duration (e.g. "5 seconds" or 5000)',
  ),
)

/** Decodes `value` (the option `option`) with `schema`, or fails naming the option. */
const decodeOption = <S extends Schema.Top & { readonly DecodingServices: never }>(
  schema: S,
  option: string,
  value: unknown,
): Effect.Effect<S["Type"], EndpointConfigError> =>
  Schema.decodeUnknownEffect(schema)(value).pipe(
    Effect.mapError((error) => new EndpointConfigError({ option, detail: error.message })),
  )
/** Injected datagrams waiting for the receive fiber; past it they are dropped, as UDP would. */
const maxInjected = 4_096
/** Updates whose outputs may wait for their hooks at once (see `held`). */
const maxHeld = 256

/**
 * Binds `options.bind` and runs an endpoint until the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options,
): Effect.Effect<
  Endpoint,
  TransportError.ListenError | EndpointConfigError,
  Datagram.Datagram | Scope.Scope
> =>
  Effect.gen(function* () {
    const backlog = yield* decodeOption(Count, "backlog", options.backlog ?? defaultBacklog)
    const queuedMessagesMax = yield* decodeOption(
      Count,
      "queuedMessagesMax",
      options.queuedMessagesMax ?? defaultQueuedMessagesMax,
    )
    const queuedEventsMax = yield* decodeOption(
      Count,
      "queuedEventsMax",
      options.queuedEventsMax ?? defaultQueuedEventsMax,
    )
    const datagram = yield* Datagram.Datagram
    const scope = yield* Effect.scope
    const config: Association.Config = {
      ...Association.defaultConfig,
      // Bound to one IP, list it: a peer then answers at it even when our packets leave
      // from another address, and never applies its own `loopbackAlias` to us.
      localAddresses: isSpecificIp(options.bind.host) ? [canonicalHost(options.bind.host)] : [],
      ...options.config,
      localPort: options.port,
    }
    const hooks = options.hooks
    const listening = options.listen ?? false
    const lock = yield* Semaphore.make(1)
    /** The fiber holding the lock: hooks run in it and may call the endpoint again. */
    let holder: number | undefined
    const serialised = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.withFiber((fiber) =>
        holder === fiber.id
          ? effect
          : Semaphore.withPermits(
              lock,
              1,
            )(
              Effect.suspend(() => {
                holder = fiber.id
                return effect
              }).pipe(
                Effect.ensuring(
                  Effect.sync(() => {
                    holder = undefined
                  }),
                ),
              ),
            ),
      )

    let seedCounter = options.seed
    const nextSeed = (): Association.Seed => {
      if (seedCounter === undefined) return "crypto"
      seedCounter = (Math.imul(seedCounter ^ 0x9e3779b9, 0x85ebca6b) + 1) >>> 0
      return seedCounter
    }
    let listener = Listener.makeListener(config, nextSeed(), yield* Clock.currentTimeMillis)
    const accepted = yield* Queue.bounded<AssociationHandle, Cause.Done>(backlog)

    const byTag = new Map<number, Entry>()
    const all = new Map<number, Entry>()
    /**
     * Loopback sources and the address to answer them at (see {@link loopbackAlias}). An
     * entry is learned only with an association (its creation, or our INIT's INIT ACK) and
     * removed with the last association it serves (`owners`): a bare INIT, which anyone can
     * send, never redirects a peer's address. Replicated entries (`addAliases`) have no
     * owner here. At most `maxAliases` entries.
     */
    const aliases = new Map<string, string>()
    const aliasOwners = new Map<string, number>()
    const aliasesOfEntry = new Map<number, Array<string>>()
    const setAlias = (key: string, host: string, owner: Entry | undefined): void => {
      if (!aliases.has(key) && aliases.size >= maxAliases) {
        drop("AliasTableFull")
        return
      }
      aliases.set(key, host)
      if (owner === undefined) return
      aliasOwners.set(key, (aliasOwners.get(key) ?? 0) + 1)
      const owned = aliasesOfEntry.get(owner.id) ?? []
      owned.push(key)
      aliasesOfEntry.set(owner.id, owned)
    }
    const releaseAliases = (entry: Entry): void => {
      for (const key of aliasesOfEntry.get(entry.id) ?? []) {
        const left = (aliasOwners.get(key) ?? 1) - 1
        if (left > 0) aliasOwners.set(key, left)
        else {
          aliasOwners.delete(key)
          aliases.delete(key)
        }
      }
      aliasesOfEntry.delete(entry.id)
    }
    /** The alias a new association from `from` needs, by its INIT's addresses (the cookie's). */
    const tieCreationAlias = (
      entry: Entry,
      from: Association.PeerAddress,
      cookie: Cookie.CookieContents,
    ): void => {
      if (cookie.sourceListed === true) return
      const alias = aliasFor(canonicalHost(from.host), cookie.peerAddresses, hostAddresses)
      if (alias !== undefined) setAlias(udpKey(from.host, from.udpPort), alias, entry)
    }
    const aliasing = options.loopbackAliasing ?? true
    const hostAddresses = aliasing ? (options.hostAddresses ?? interfaceAddresses()) : []
    let nextId = 1
    let closing = false
    const stats = {
      packetsIn: 0,
      packetsOut: 0,
      bytesIn: 0,
      bytesOut: 0,
      sendErrors: 0,
      dropped: new Map<string, number>(),
    }
    const drop = (reason: string) => {
      stats.dropped.set(reason, (stats.dropped.get(reason) ?? 0) + 1)
    }

    const socket = yield* datagram.bind(options.bind)

    // ---- association registry ----

    const findByPeer = (host: string, port: number): Entry | undefined => {
      for (const entry of all.values()) {
        if (Association.peerPort(entry.state) !== port) continue
        if (entry.peer.host === host || Association.peerHosts(entry.state).includes(host)) {
          return entry
        }
      }
      return undefined
    }

    const reindex = (entry: Entry) => {
      const tag = Association.myTag(entry.state) >>> 0
      if (tag === entry.myTag) return
      if (byTag.get(entry.myTag) === entry) byTag.delete(entry.myTag)
      entry.myTag = tag
      byTag.set(tag, entry)
    }

    const register = (
      state: Association.State,
      peer: { readonly host: string; readonly udpPort: number; readonly port: number },
    ): Effect.Effect<Entry> =>
      Effect.gen(function* () {
        const id = nextId++
        const messages = yield* Queue.bounded<Message, Cause.Done>(queuedMessagesMax)
        const events = yield* Queue.sliding<Association.Event, Cause.Done>(queuedEventsMax)
        const closed = yield* Deferred.make<CloseReason>()
        const up = yield* Deferred.make<void, CloseReason>()
        const entry: Entry = {
          id,
          state,
          peer,
          myTag: Association.myTag(state) >>> 0,
          gone: false,
          timers: new Map(),
          messages,
          events,
          closed,
          up,
          shutdownWaiters: [],
          sendWaiters: [],
          ending: undefined,
          // An adopted association's outstanding DATA counts as retransmitted too.
          highestTsnSent: (state.nextTsn - 1) >>> 0,
          handle: undefined as unknown as AssociationHandle,
        }
        ;(entry as { handle: AssociationHandle }).handle = makeHandle(entry)
        all.set(id, entry)
        byTag.set(entry.myTag, entry)
        yield* Metric.modify(Metrics.associations, 1)
        return entry
      })

    // ---- performing outputs ----

    const gone = (entry: Entry, reason: CloseReason): Effect.Effect<void> =>
      Effect.gen(function* () {
        if (entry.gone) return
        entry.gone = true
        all.delete(entry.id)
        yield* Metric.modify(Metrics.associations, -1)
        releaseAliases(entry)
        if (byTag.get(entry.myTag) === entry) byTag.delete(entry.myTag)
        for (const timer of entry.timers.values()) timer.fiber?.interruptUnsafe()
        entry.timers.clear()
        const error = new AssociationError({
          associationId: entry.id,
          reason: "Closed",
          detail: describeClose(reason),
        })
        for (const waiter of entry.shutdownWaiters.splice(0)) {
          if (reason._tag === "ShutdownComplete") yield* Deferred.succeed(waiter, undefined)
          else yield* Deferred.fail(waiter, error)
        }
        for (const waiter of entry.sendWaiters.splice(0)) yield* Deferred.succeed(waiter, undefined)
        yield* Deferred.fail(entry.up, reason)
        yield* Deferred.succeed(entry.closed, reason)
        yield* Queue.end(entry.messages)
        yield* Queue.end(entry.events)
      })

    /**
     * Gone, or closed by its machine with the outputs that close it still held (see
     * `held`): no further input is stepped on it.
     */
    const ended = (entry: Entry): boolean =>
      entry.gone || Association.stateName(entry.state) === "Closed"

    /** Forgets `timer` and its fiber (which ends): the next `SetTimer` forks anew. */
    const retire = (entry: Entry, name: string, timer: Timer): void => {
      timer.finished = true
      timer.fiber = undefined
      if (entry.timers.get(name) === timer) entry.timers.delete(name)
    }

    /**
     * Arms `name` at `atMs`. Synchronous (returns undefined) when the timer's fiber is asleep
     * towards an earlier or equal deadline, armed or cancelled: it wakes and sleeps on to the
     * new one, so restarting T3-rtx on every SACK, or the delayed-SACK timer on every other
     * packet, costs no new fiber. Otherwise the effect forks one.
     */
    const setTimer = (
      entry: Entry,
      name: string,
      deadlineMs: number,
    ): Effect.Effect<void> | undefined => {
      // Whole milliseconds, rounded up: the clock ticks in them, and a deadline between two
      // ticks would never be reached (see `Association.setTimer`, which rounds its own).
      const atMs = Math.ceil(deadlineMs)
      const existing = entry.timers.get(name)
      if (
        existing !== undefined &&
        existing.fiber !== undefined &&
        !existing.finished &&
        atMs >= existing.sleepingUntilMs
      ) {
        existing.deadlineMs = atMs
        existing.armed = true
        return undefined
      }
      if (existing !== undefined) {
        existing.fiber?.interruptUnsafe()
        retire(entry, name, existing)
      }
      const timer: Timer = {
        deadlineMs: atMs,
        sleepingUntilMs: atMs,
        armed: true,
        fiber: undefined,
        finished: false,
      }
      entry.timers.set(name, timer)
      const run = Effect.gen(function* () {
        const clock = yield* Clock.Clock
        // Bounded: each round fires, ends (cancelled), or sleeps to a deadline that moved
        // later. The decisions below are synchronous, so no command interleaves with them.
        for (let round = 0; round < 1_000_000; round++) {
          if (!timer.armed || timer.finished) {
            retire(entry, name, timer)
            return
          }
          const nowMs = clock.currentTimeMillisUnsafe()
          if (nowMs < timer.deadlineMs) {
            timer.sleepingUntilMs = timer.deadlineMs
            yield* Effect.sleep(Duration.millis(timer.deadlineMs - nowMs))
            continue
          }
          if (yield* serialised(fire(entry, name, timer, clock))) return
        }
      })
      return Effect.forkIn(run, scope).pipe(
        Effect.flatMap((fiber) =>
          Effect.sync(() => {
            if (!timer.finished) timer.fiber = fiber
          }),
        ),
      )
    }

    /**
     * Under the lock: fires `timer` if it is still armed and due. Returns whether its fiber
     * is done (false: the deadline moved later while the fiber waited for the lock).
     */
    const fire = (
      entry: Entry,
      name: string,
      timer: Timer,
      clock: Clock.Clock,
    ): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        // Replaced by another timer (its fiber interrupted too), or the association is gone.
        if (ended(entry) || timer.finished || entry.timers.get(name) !== timer) {
          return Effect.succeed(true)
        }
        if (!timer.armed) {
          retire(entry, name, timer)
          return Effect.succeed(true)
        }
        const nowMs = clock.currentTimeMillisUnsafe()
        if (nowMs < timer.deadlineMs) return Effect.succeed(false)
        retire(entry, name, timer)
        return apply(entry, { _tag: "TimerFired", timer: name, nowMs }).pipe(Effect.as(true))
      })

    /** Cancels without interrupting: the sleeping fiber ends when it wakes (see {@link Timer}). */
    const cancelTimer = (entry: Entry, name: string) => {
      const timer = entry.timers.get(name)
      if (timer !== undefined) timer.armed = false
    }

    /** Datagrams encoded and not yet handed to the socket (see `flush`). */
    let outbox: Array<{ readonly to: Address.Udp; readonly bytes: Uint8Array }> = []

    const transmit = (to: Association.PeerAddress, packet: Packet.Packet, via?: string): void => {
      const bytes = Packet.encode(packet)
      const host =
        via ??
        (aliases.size === 0 ? to.host : (aliases.get(udpKey(to.host, to.udpPort)) ?? to.host))
      stats.packetsOut++
      stats.bytesOut += bytes.byteLength
      // The machine keeps each path's UDP port as last seen from it (RFC 6951 §5.5).
      outbox.push({ to: Address.udp(host, to.udpPort), bytes })
    }

    const sendOne = (datagram: { readonly to: Address.Udp; readonly bytes: Uint8Array }) =>
      socket.send(datagram.to, datagram.bytes).pipe(
        Effect.catch(() =>
          Effect.sync(() => {
            stats.sendErrors++
          }),
        ),
      )

    /**
     * Hands the outbox to the socket in order, one datagram after the other: a send is one
     * synchronous system call whose callback comes a tick later, and a fiber per datagram
     * (to await them together) costs more than the waits it saves.
     */
    const flush: Effect.Effect<void> = Effect.suspend(() => {
      if (outbox.length === 0) return Effect.void
      const datagrams = outbox
      outbox = []
      const gate = options.mayTransmit
      // The gate is asked right before each datagram, not once per batch: a process paused
      // in the middle of a batch (SIGSTOP) and resumed after it lost the role would send
      // the rest of the batch. What remains is the one datagram it was handing to the
      // socket when it was paused.
      const one =
        gate === undefined
          ? sendOne
          : (datagram: (typeof datagrams)[number]) =>
              Effect.flatMap(gate, (open) =>
                open ? sendOne(datagram) : Effect.sync(() => drop("fenced")),
              )
      return datagrams.length === 1
        ? one(datagrams[0]!)
        : Effect.forEach(datagrams, one, { discard: true })
    })

    /**
     * Publishes one event of the machine. The frequent ones (`Message`, `Dropped`) are
     * handled synchronously, returning undefined; the others return the effect to run.
     */
    const onEvent = (entry: Entry, event: Association.Event): Effect.Effect<void> | undefined => {
      switch (event._tag) {
        case "Message": {
          // With a handler the message was answered already (see `stepInto`).
          if (options.handler !== undefined) return undefined
          const message: Message = {
            stream: event.stream,
            ppid: event.ppid,
            unordered: event.unordered,
            data: event.data,
          }
          if (Queue.offerUnsafe(entry.messages, message)) return undefined
          const reason = "receiver overrun: messages not read"
          entry.ending = { _tag: "Aborted", by: "us", reason }
          drop("MessageQueueFull")
          return Effect.asVoid(command(entry, { _tag: "Abort", reason }, false))
        }
        case "Dropped":
          drop(event.reason)
          Queue.offerUnsafe(entry.events, event)
          return undefined
        case "CommUp":
          return Deferred.succeed(entry.up, undefined).pipe(
            Effect.andThen(
              Effect.sync(() => {
                Queue.offerUnsafe(entry.events, event)
              }),
            ),
          )
        case "CommLost":
          // The machine reports a received ABORT as "Abort" or "Abort: <causes>".
          entry.ending ??= event.reason.startsWith("Abort")
            ? { _tag: "Aborted", by: "peer", reason: event.reason }
            : { _tag: "CommLost", reason: event.reason }
          break
        case "Closed":
          Queue.offerUnsafe(entry.events, event)
          return gone(entry, closeReasonOf(entry))
        case "ShutdownComplete":
          entry.ending ??= { _tag: "ShutdownComplete" }
          break
        default:
          break
      }
      Queue.offerUnsafe(entry.events, event)
      return undefined
    }

    const closeReasonOf = (entry: Entry): CloseReason =>
      entry.ending ??
      (closing ? { _tag: "EndpointClosed" } : { _tag: "CommLost", reason: "Closed" })

    /**
     * Performs `outputs` in order, synchronously as far as it goes: only a timer that needs
     * a new fiber and the rarer events run as effects, the rest resuming after each.
     */
    const perform = (
      entry: Entry,
      outputs: ReadonlyArray<Association.Output>,
    ): Effect.Effect<void> => {
      const from = (start: number): Effect.Effect<void> => {
        for (let index = start; index < outputs.length; index++) {
          const output = outputs[index]!
          let effect: Effect.Effect<void> | undefined
          switch (output._tag) {
            case "Transmit":
              retransmitted += countRetransmissions(entry, output.packet)
              transmit(output.to, output.packet)
              break
            case "SetTimer":
              if (!entry.gone) effect = setTimer(entry, output.timer, output.atMs)
              break
            case "CancelTimer":
              cancelTimer(entry, output.timer)
              break
            case "Event":
              effect = onEvent(entry, output.event)
              break
          }
          if (effect !== undefined) return Effect.flatMap(effect, () => from(index + 1))
        }
        return Effect.flatMap(flush, () => afterOutputs(entry))
      }
      return Effect.suspend(() => from(0))
    }

    /** DATA chunks of `packet` at or below the highest TSN `entry` sent before. */
    const countRetransmissions = (entry: Entry, packet: Packet.Packet): number => {
      let again = 0
      for (const chunk of packet.chunks) {
        if (chunk._tag !== "Data") continue
        if (lte32(chunk.tsn, entry.highestTsnSent)) again++
        else entry.highestTsnSent = chunk.tsn
      }
      return again
    }
    /** Retransmissions counted since the metric was last updated (see `afterOutputs`). */
    let retransmitted = 0

    const afterOutputs = (entry: Entry): Effect.Effect<void> => {
      if (retransmitted > 0) {
        const count = retransmitted
        retransmitted = 0
        return Effect.andThen(Metric.update(Metrics.retransmissions, count), afterOutputs(entry))
      }
      if (entry.gone) return Effect.void
      reindex(entry)
      if (entry.sendWaiters.length === 0 || Association.sendBufferAvailable(entry.state) === 0) {
        return Effect.void
      }
      return Effect.forEach(
        entry.sendWaiters.splice(0),
        (waiter) => Deferred.succeed(waiter, undefined),
        { discard: true },
      )
    }

    const hasRoom = (entry: Entry, bytes: number) =>
      Association.sendBufferAvailable(entry.state) >= bytes

    /**
     * Updates whose outputs wait for their hook's hold (see {@link Hooks}), oldest first.
     * While one waits, every later update queues behind it, so the wire sees each
     * association's outputs in the order they were stepped; meanwhile the endpoint steps
     * what arrives (the holds of many updates are waited for together: group commit).
     */
    const held: Array<{
      readonly update: Update
      readonly until: Deferred.Deferred<void> | undefined
    }> = []
    /** Wakes the releaser when `held` gets its first update. */
    let heldAdded: Deferred.Deferred<void> | undefined

    /**
     * Under the lock: performs the held updates, oldest first, up to the first whose hold is
     * not done; `waitForOldest` waits for the oldest's hold first (still under the lock).
     *
     * The per-datagram effects here are generator functions made once (`fnUntraced`): an
     * `Effect.gen(function* () {...})` written inside a function made per call costs about
     * 2.5 us more per call on Node 24 (V8 sets a new generator closure up each time).
     */
    const releaseHeld: (waitForOldest: boolean) => Effect.Effect<void> = Effect.fnUntraced(
      function* (waitForOldest: boolean) {
        const oldest = held[0]
        if (waitForOldest && oldest?.until !== undefined) yield* Deferred.await(oldest.until)
        while (held.length > 0) {
          const next = held[0]!
          if (next.until !== undefined && !Deferred.isDoneUnsafe(next.until)) return
          held.shift()
          yield* perform(next.update.entry, next.update.outputs)
        }
      },
    )

    /** Hooks, then outputs, for each association touched by a batch. */
    const release = Effect.fnUntraced(function* (updates: ReadonlyArray<Update>) {
      if (hooks?.onInput !== undefined) {
        for (const update of updates) {
          for (const input of update.inputs) yield* hooks.onInput(update.entry.id, input)
        }
      }
      for (const update of updates) {
        const until =
          hooks?.beforeOutputs === undefined
            ? undefined
            : ((yield* hooks.beforeOutputs({
                associationId: update.entry.id,
                created: update.created,
                inputs: update.inputs,
                outputs: update.outputs,
                state: update.entry.state,
              })) ?? undefined)
        if (held.length === 0 && (until === undefined || Deferred.isDoneUnsafe(until))) {
          yield* perform(update.entry, update.outputs)
          continue
        }
        held.push({ update, until })
        if (heldAdded !== undefined) {
          yield* Deferred.succeed(heldAdded, undefined)
          heldAdded = undefined
        }
        // Bounded: past `maxHeld` the stepping fiber waits for the oldest hold itself.
        while (held.length > maxHeld) yield* releaseHeld(true)
      }
    })

    /**
     * Steps `update`'s association with `input` (or takes the Listener's `outputs` for it),
     * then hands each delivered message to `options.handler` and steps its replies as
     * `Send` commands in the same update (recorded as inputs, so a replica replays them).
     * Returns the outputs of `input` alone.
     */
    const stepInto = (
      update: Update,
      input: Association.Input,
      given?: ReadonlyArray<Association.Output>,
    ): ReadonlyArray<Association.Output> => {
      const outputs = given ?? Association.step(update.entry.state, input)
      update.inputs.push(input)
      for (const output of outputs) update.outputs.push(output)
      const handler = options.handler
      if (handler === undefined) return outputs
      for (const output of outputs) {
        if (output._tag !== "Event" || output.event._tag !== "Message") continue
        const replies = handler(update.entry.id, output.event)
        for (const reply of replies) {
          const command: Association.Input = {
            _tag: "Command",
            command: {
              _tag: "Send",
              stream: reply.stream,
              ppid: reply.ppid,
              data: reply.data,
              unordered: reply.unordered,
            },
            nowMs: input.nowMs,
          }
          update.inputs.push(command)
          for (const replyOutput of Association.step(update.entry.state, command)) {
            if (replyOutput._tag === "Event" && replyOutput.event._tag === "SendFailed") {
              drop(`ReplyFailed:${replyOutput.event.reason}`)
            }
            update.outputs.push(replyOutput)
          }
        }
      }
      return outputs
    }

    /** Steps one association with one input, then releases its outputs. */
    const apply = (entry: Entry, input: Association.Input) =>
      Effect.suspend(() => {
        const update: Update = { entry, created: false, inputs: [], outputs: [] }
        const outputs = stepInto(update, input)
        return release([update]).pipe(Effect.as(outputs))
      })

    const commandSteps = Effect.fnUntraced(function* (entry: Entry, cmd: Association.Command) {
      if (ended(entry)) return undefined
      const nowMs = yield* Clock.currentTimeMillis
      return yield* apply(entry, { _tag: "Command", command: cmd, nowMs })
    })
    const command = (entry: Entry, cmd: Association.Command, lockIt = true) =>
      lockIt ? serialised(commandSteps(entry, cmd)) : commandSteps(entry, cmd)

    // ---- receiving ----

    /** An ABORT answering an INIT on a port nobody listens on (T clear, the INIT's tag). */
    const refuse = (from: Address.Udp, packet: Packet.Packet, init: Chunk.Init) =>
      transmit(
        { host: from.host, udpPort: from.port },
        {
          sourcePort: packet.destinationPort,
          destinationPort: packet.sourcePort,
          verificationTag: init.initiateTag,
          chunks: [{ _tag: "Abort", reflected: false, causes: [] }],
        },
      )

    const receiveBatch = Effect.fnUntraced(function* (batch: ReadonlyArray<Datagram.Received>) {
      const nowMs = yield* Clock.currentTimeMillis
      const updates: Array<Update> = []
      const touched = new Map<Entry, Update>()
      const record = (
        entry: Entry,
        input: Association.Input,
        created: boolean,
        given?: ReadonlyArray<Association.Output>,
      ) => {
        let update = touched.get(entry)
        if (update === undefined) {
          update = { entry, created, inputs: [], outputs: [] }
          touched.set(entry, update)
          updates.push(update)
        }
        stepInto(update, input, given)
      }
      for (const received of batch) {
        stats.packetsIn++
        stats.bytesIn += received.bytes.byteLength
        const decoded = Packet.decode(received.bytes)
        if (decoded._tag === "Failure") {
          drop(decoded.failure._tag === "BadChecksum" ? "BadChecksum" : "Malformed")
          continue
        }
        const packet = decoded.success
        if (packet.destinationPort !== options.port) {
          drop("WrongPort")
          continue
        }
        const from: Association.PeerAddress = {
          host: received.from.host,
          udpPort: received.from.port,
        }
        const input: Association.Input = {
          _tag: "Receive",
          from,
          packet,
          bytes: received.bytes,
          nowMs,
        }
        const tag = packet.verificationTag >>> 0
        const first = packet.chunks[0]
        const demultiplex = () =>
          (tag === 0 ? undefined : byTag.get(tag)) ?? findByPeer(from.host, packet.sourcePort)
        let entry = demultiplex()
        // The INIT ACK of our own INIT: the association it answers owns the alias.
        if (aliasing && first?._tag === "InitAck" && entry !== undefined && !entry.gone) {
          const alias = loopbackAlias(from.host, first, hostAddresses)
          if (alias !== undefined) setAlias(udpKey(from.host, from.udpPort), alias, entry)
        }
        if (entry === undefined && options.intercept !== undefined) {
          const consumed = yield* options.intercept({ from, packet, bytes: received.bytes })
          if (consumed) continue
          // The hook may have adopted the association this packet belongs to.
          entry = demultiplex()
        }
        if (entry !== undefined && !ended(entry)) {
          record(entry, input, false)
          continue
        }
        const init = packet.chunks[0]
        if (!listening && init?._tag === "Init" && packet.chunks.length === 1 && tag === 0) {
          drop("NotListening")
          refuse(received.from, packet, init)
          continue
        }
        const result = Listener.onUnknownPacket(listener, input)
        if (result.association === undefined) {
          // An INIT's INIT ACK goes where a local peer listens; nothing is remembered.
          const via =
            aliasing && first?._tag === "Init"
              ? loopbackAlias(from.host, first, hostAddresses)
              : undefined
          performLoose(result.outputs, via)
          continue
        }
        const created = yield* register(result.association, {
          host: from.host,
          udpPort: from.udpPort,
          port: packet.sourcePort,
        })
        if (aliasing && result.cookie !== undefined) {
          tieCreationAlias(created, from, result.cookie)
        }
        record(created, input, true, result.outputs)
        if (!Queue.offerUnsafe(accepted, created.handle)) {
          drop("BacklogFull")
          created.ending = { _tag: "Aborted", by: "us", reason: "backlog full" }
          record(
            created,
            { _tag: "Command", command: { _tag: "Abort", reason: "backlog full" }, nowMs },
            true,
          )
        }
      }
      yield* flush
      yield* release(updates)
    })

    /** Outputs of the Listener that belong to no association (INIT ACK, OOTB answers). */
    const performLoose = (outputs: ReadonlyArray<Association.Output>, via?: string): void => {
      for (const output of outputs) {
        if (output._tag === "Transmit") transmit(output.to, output.packet, via)
        else if (output._tag === "Event" && output.event._tag === "Dropped") {
          drop(output.event.reason)
        }
      }
    }

    // The releaser: performs held updates as their holds complete, outside the stepping.
    yield* Effect.forkIn(
      Effect.forever(
        Effect.gen(function* () {
          const oldest = held[0]
          if (oldest === undefined) {
            const added = Deferred.makeUnsafe<void>()
            heldAdded = added
            return yield* Deferred.await(added)
          }
          if (oldest.until !== undefined) yield* Deferred.await(oldest.until)
          yield* serialised(releaseHeld(false))
        }),
      ),
      scope,
    )

    /** Datagrams handed in by `inject` (forwarded by another node), received like the socket's. */
    const injected = yield* Queue.dropping<Datagram.Received, Cause.Done>(maxInjected)
    yield* Stream.merge(socket.messages, Stream.fromQueue(injected)).pipe(
      Stream.runForEachArray((batch) => serialised(receiveBatch(batch))),
      Effect.forkIn(scope),
    )

    // ---- handles ----

    function makeHandle(entry: Entry): AssociationHandle {
      const closedError = (detail: string) =>
        new AssociationError({ associationId: entry.id, reason: "Closed", detail })
      type SendOptions = Parameters<AssociationHandle["send"]>[3]
      /** Under the lock: queues the message, or the waiter for room in the send buffer. */
      const trySend = Effect.fnUntraced(function* (
        stream: number,
        ppid: number,
        data: Uint8Array,
        sendOptions: SendOptions,
      ) {
        if (ended(entry)) return yield* closedError("association gone")
        if (data.byteLength > config.sendBufferBytes) {
          return yield* new AssociationError({
            associationId: entry.id,
            reason: "Rejected",
            detail: `${data.byteLength} bytes is more than the send buffer (${config.sendBufferBytes})`,
          })
        }
        if (!hasRoom(entry, data.byteLength)) {
          const deferred = yield* Deferred.make<void>()
          entry.sendWaiters.push(deferred)
          return deferred
        }
        const outputs = yield* command(
          entry,
          { _tag: "Send", stream, ppid, data, unordered: sendOptions?.unordered ?? false },
          false,
        )
        const failed = outputs?.find(
          (output) => output._tag === "Event" && output.event._tag === "SendFailed",
        )
        if (failed !== undefined && failed._tag === "Event" && failed.event._tag === "SendFailed") {
          return yield* new AssociationError({
            associationId: entry.id,
            reason: "Rejected",
            detail: failed.event.reason,
          })
        }
        return undefined
      })
      const send: AssociationHandle["send"] = Effect.fnUntraced(function* (
        stream: number,
        ppid: number,
        data: Uint8Array,
        sendOptions?: SendOptions,
      ) {
        // Bounded: each round waits for a SACK to free room, or for the end.
        for (let round = 0; round < 1_000_000; round++) {
          const waiter = yield* serialised(trySend(stream, ppid, data, sendOptions))
          if (waiter === undefined) return
          yield* Deferred.await(waiter)
        }
        return yield* closedError("send buffer never drained")
      })
      /** A path command: the machine answers an unknown path with a `Dropped` event. */
      const pathCommand = (cmd: Association.Command) =>
        serialised(
          Effect.gen(function* () {
            if (ended(entry)) return yield* closedError("association gone")
            const outputs = yield* command(entry, cmd, false)
            const refused = outputs?.some(
              (output) => output._tag === "Event" && output.event._tag === "Dropped",
            )
            if (refused) {
              return yield* new AssociationError({
                associationId: entry.id,
                reason: "Rejected",
                detail: `unknown path in ${cmd._tag}`,
              })
            }
          }),
        )
      return {
        id: entry.id,
        peer: entry.peer,
        send,
        messages: Stream.fromQueue(entry.messages),
        events: Stream.fromQueue(entry.events),
        shutdown: Effect.gen(function* () {
          const waiter = yield* serialised(
            Effect.gen(function* () {
              if (entry.gone) {
                const reason = yield* Deferred.await(entry.closed)
                return reason._tag === "ShutdownComplete"
                  ? undefined
                  : yield* closedError(describeClose(reason))
              }
              const deferred = yield* Deferred.make<void, AssociationError>()
              entry.shutdownWaiters.push(deferred)
              yield* command(entry, { _tag: "Shutdown" }, false)
              return deferred
            }),
          )
          if (waiter !== undefined) yield* Deferred.await(waiter)
        }),
        abort: (reason) =>
          serialised(
            Effect.suspend(() => {
              if (entry.gone) return Effect.void
              entry.ending ??= { _tag: "Aborted", by: "us", reason: reason ?? "" }
              return Effect.asVoid(
                command(
                  entry,
                  reason === undefined ? { _tag: "Abort" } : { _tag: "Abort", reason },
                  false,
                ),
              )
            }),
          ),
        status: serialised(
          Effect.suspend(() =>
            entry.gone
              ? Effect.fail(closedError("association gone"))
              : Effect.succeed(Association.info(entry.state)),
          ),
        ),
        closed: Deferred.await(entry.closed),
        setPrimary: (host) => pathCommand({ _tag: "SetPrimary", host }),
        requestHeartbeat: (host) => pathCommand({ _tag: "RequestHeartbeat", host }),
      }
    }

    const connect = (connectOptions: ConnectOptions) =>
      Effect.gen(function* () {
        const peerLabel = `${connectOptions.host}:${connectOptions.udpPort}/${connectOptions.port}`
        const timeout =
          connectOptions.timeout === undefined
            ? undefined
            : yield* decodeOption(PositiveDuration, "timeout", connectOptions.timeout).pipe(
                Effect.mapError(
                  (error) =>
                    new AssociationConnectError({
                      peer: peerLabel,
                      reason: "InvalidOptions",
                      detail: error.message,
                    }),
                ),
              )
        const entry = yield* serialised(
          Effect.gen(function* () {
            if (closing) return undefined
            const nowMs = yield* Clock.currentTimeMillis
            const { state, outputs } = Association.connect(config, {
              peer: { host: connectOptions.host, udpPort: connectOptions.udpPort },
              peerPort: connectOptions.port,
              ...(connectOptions.peerAddresses !== undefined
                ? { peerAddresses: connectOptions.peerAddresses }
                : {}),
              seed: nextSeed(),
              nowMs,
            })
            const entry = yield* register(state, {
              host: connectOptions.host,
              udpPort: connectOptions.udpPort,
              port: connectOptions.port,
            })
            yield* release([{ entry, created: true, inputs: [], outputs: [...outputs] }])
            return entry
          }),
        )
        if (entry === undefined) {
          return yield* new AssociationConnectError({
            peer: peerLabel,
            reason: "EndpointClosed",
            detail: "endpoint closed",
          })
        }
        const failed = (reason: CloseReason) =>
          new AssociationConnectError({
            peer: peerLabel,
            reason:
              reason._tag === "Aborted"
                ? "Aborted"
                : reason._tag === "EndpointClosed"
                  ? "EndpointClosed"
                  : "CommLost",
            detail: describeClose(reason),
          })
        const waitUp = Deferred.await(entry.up).pipe(Effect.mapError(failed))
        if (timeout === undefined) yield* waitUp
        else {
          yield* waitUp.pipe(
            Effect.timeoutOrElse({
              duration: timeout,
              orElse: () =>
                entry.handle.abort("connect timeout").pipe(
                  Effect.andThen(
                    Effect.fail(
                      new AssociationConnectError({
                        peer: peerLabel,
                        reason: "Timeout",
                        detail: `${Duration.format(timeout)}`,
                      }),
                    ),
                  ),
                ),
            }),
          )
        }
        return entry.handle
      })

    yield* Effect.addFinalizer(() =>
      serialised(
        Effect.gen(function* () {
          closing = true
          for (const entry of [...all.values()]) {
            if (options.abortOnClose ?? true) {
              const nowMs = yield* Clock.currentTimeMillis
              const outputs = Association.step(entry.state, {
                _tag: "Command",
                command: { _tag: "Abort", reason: "endpoint closed" },
                nowMs,
              })
              for (const output of outputs) {
                if (output._tag === "Transmit") transmit(output.to, output.packet)
              }
              yield* flush
            }
            yield* gone(entry, { _tag: "EndpointClosed" })
          }
          yield* Queue.end(accepted)
        }),
      ),
    )

    const adopt = (
      state: Association.State,
      adoptOptions?: {
        readonly takeOver?: (
          state: Association.State,
          nowMs: number,
        ) => ReadonlyArray<Association.Output>
      },
    ) =>
      serialised(
        Effect.gen(function* () {
          const nowMs = yield* Clock.currentTimeMillis
          const status = Association.info(state)
          const primary =
            status.paths.find((path) => path.host === status.primary) ?? status.paths[0]
          const entry = yield* register(state, {
            host: primary?.host ?? "",
            udpPort: primary?.udpPort ?? 0,
            port: status.peerPort,
          })
          if (aliasing) {
            for (const alias of aliasesOf(state)) {
              setAlias(udpKey(alias.from.host, alias.from.udpPort), alias.host, entry)
            }
          }
          if (status.state !== "CookieWait" && status.state !== "CookieEchoed") {
            yield* Deferred.succeed(entry.up, undefined)
          }
          const outputs = (adoptOptions?.takeOver ?? Association.takeOver)(state, nowMs)
          yield* release([{ entry, created: true, inputs: [], outputs: [...outputs] }])
          return entry.handle
        }),
      )

    const addAliases = (list: ReadonlyArray<Alias>) => {
      for (const alias of list)
        setAlias(udpKey(alias.from.host, alias.from.udpPort), alias.host, undefined)
    }

    return {
      address: socket.address,
      port: options.port,
      config,
      accept: Stream.fromQueue(accepted),
      connect,
      transmit: (to, packet) =>
        Effect.suspend(() => {
          transmit(to, packet)
          return flush
        }),
      inject: (from, bytes) =>
        Effect.sync(() => {
          if (!Queue.offerUnsafe(injected, { from: Address.udp(from.host, from.udpPort), bytes })) {
            drop("InjectQueueFull")
          }
        }),
      adopt,
      aliases: Effect.sync(() =>
        [...aliases].map(([key, host]): Alias => {
          const separator = key.indexOf("|")
          return {
            from: { host: key.slice(separator + 1), udpPort: Number(key.slice(0, separator)) },
            host,
          }
        }),
      ),
      addAliases: (list) => Effect.sync(() => addAliases(list)),
      listenerSecrets: serialised(Effect.sync(() => listener.cookieSecrets.snapshot())),
      adoptListenerSecrets: (secrets) =>
        serialised(
          Effect.sync(() => {
            listener = { ...listener, cookieSecrets: Cookie.CookieSecrets.restore(secrets) }
          }),
        ),
      associations: serialised(Effect.sync(() => [...all.values()].map((entry) => entry.handle))),
      stats: serialised(
        Effect.sync(
          (): Stats => ({
            packetsIn: stats.packetsIn,
            packetsOut: stats.packetsOut,
            bytesIn: stats.bytesIn,
            bytesOut: stats.bytesOut,
            sendErrors: stats.sendErrors,
            dropped: Object.fromEntries(stats.dropped),
            associations: all.size,
          }),
        ),
      ),
    } satisfies Endpoint
  })

const udpKey = (host: string, port: number) => `${port}|${host}`

/** Entries of the loopback alias table: far more than the loopback peers of one host. */
const maxAliases = 1_024

const isSpecificIp = (host: string) =>
  (parseIpv4(host) !== undefined || parseIpv6(host) !== undefined) &&
  host !== "0.0.0.0" &&
  canonicalHost(host) !== "::"

const isLoopback = (host: string) => host.startsWith("127.") || host === "::1"

/**
 * usrsctp's loopback quirk, found by interop: its UDP socket is bound to the wildcard, so
 * what it sends to 127.0.0.2 leaves from the kernel's choice, 127.0.0.1; but its
 * association's local addresses are its interfaces' non-loopback addresses (its INIT /
 * INIT ACK lists them, e.g. the eth0 address and a ULA IPv6, or lists none, as `tsctp`
 * does), and it drops every packet sent back to 127.0.0.1. A loopback source means the peer
 * runs on this host, so its addresses are this host's, and reachable: the endpoint answers
 * such a peer (that UDP address) at its first listed address of the source's family, or,
 * when it lists none, at the first of `hostAddresses` of that family. Returns that address,
 * or undefined when the rule does not apply (the source is listed or not loopback, or no
 * address of its family is known).
 *
 * @since 0.1.0
 * @category interop
 */
export const loopbackAlias = (
  sourceHost: string,
  chunk: Chunk.Init | Chunk.InitAck,
  hostAddresses: ReadonlyArray<string> = [],
): string | undefined => {
  return aliasFor(canonicalHost(sourceHost), listedAddresses(chunk.parameters), hostAddresses)
}

/** {@link loopbackAlias} for a canonical source host and the addresses the peer listed. */
const aliasFor = (
  host: string,
  listed: ReadonlyArray<string>,
  hostAddresses: ReadonlyArray<string>,
): string | undefined => {
  if (!isLoopback(host)) return undefined
  if (listed.includes(host)) return undefined
  const v6 = host.includes(":")
  const candidates = listed.length > 0 ? listed : hostAddresses.map(canonicalHost)
  return candidates.find((address) => address.includes(":") === v6 && !isLoopback(address))
}

/**
 * The {@link loopbackAlias} entries an association implies: each loopback path is answered
 * at the association's first non-loopback path of the same family (a path the peer listed).
 * A node taking over a replica calls it (`adopt` does), since it never saw the INIT. A peer
 * that listed no address (tsctp) implies none: replicate the primary's `aliases` for it.
 *
 * @since 0.1.0
 * @category interop
 */
export const aliasesOf = (state: Association.State): Array<Alias> => {
  const paths = Association.info(state).paths
  const result: Array<Alias> = []
  for (const path of paths) {
    if (!isLoopback(path.host)) continue
    const v6 = path.host.includes(":")
    const target = paths.find((other) => !isLoopback(other.host) && other.host.includes(":") === v6)
    if (target !== undefined) {
      result.push({ from: { host: path.host, udpPort: path.udpPort }, host: target.host })
    }
  }
  return result
}

/** This host's addresses a local peer may use: non-internal, not link-local (no scope needed). */
const interfaceAddresses = (): Array<string> =>
  Object.values(networkInterfaces())
    .flatMap((addresses) => addresses ?? [])
    .filter((address) => !address.internal && !address.address.toLowerCase().startsWith("fe80:"))
    .map((address) => address.address)

const describeClose = (reason: CloseReason): string => {
  switch (reason._tag) {
    case "ShutdownComplete":
      return "shut down"
    case "EndpointClosed":
      return "endpoint closed"
    default:
      return `${reason._tag}: ${reason.reason}`
  }
}

/**
 * The endpoint factory as a service, so programs name it and tests swap the network under it.
 *
 * @since 0.1.0
 * @category services
 */
export class Sctp extends Context.Service<
  Sctp,
  {
    readonly make: (
      options: Options,
    ) => Effect.Effect<Endpoint, TransportError.ListenError | EndpointConfigError, Scope.Scope>
  }
>()("@understudy/multihome/Sctp") {}

/**
 * `Sctp` over whatever `Datagram` is provided (`NodeDatagram.layer`, or `SimNet`'s host layer).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Sctp, never, Datagram.Datagram> = Layer.effect(
  Sctp,
  Effect.gen(function* () {
    const datagram = yield* Datagram.Datagram
    return Sctp.of({
      make: (options) => make(options).pipe(Effect.provideService(Datagram.Datagram, datagram)),
    })
  }),
)
