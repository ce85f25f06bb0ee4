/**
 * The Effect driver of SCTP over UDP (RFC 9260 over RFC 6951): an endpoint binds one UDP
 * address through the transport's `Datagram` service (so it runs unchanged on `NodeDatagram`
 * and `SimNet`), and runs the pure machines of `Association.ts` and `Listener.ts`.
 *
 * One receive fiber takes the datagrams a chunk at a time and, for each: decodes it
 * (`Packet.decode` checks the CRC32c; bad ones are dropped and counted in `stats`),
 * demultiplexes it (verification tag → the association whose own tag it is; else the peer
 * host and SCTP port, e.g. an ABORT with the T bit or an INIT colliding with an association;
 * else the `Listener`), and steps the machine. The outputs are then performed: `Send` →
 * one datagram to the path's host and UDP port (the machine keeps each path's port as last
 * seen from it, RFC 6951 §5.5; see {@link loopbackAlias} for the one exception);
 * `SetTimer` / `CancelTimer` → one fiber per (association, timer) sleeping on the Effect
 * `Clock` (so `TestClock` drives it); `Emit` → the association's `events` and `messages`
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
import { type Address, Datagram, type TransportError } from "@understudy/transport"
import {
  Context,
  type Deferred,
  type Duration,
  Effect,
  Layer,
  type Scope,
  type Stream,
} from "effect"
import type * as Association from "./Association.ts"
import type * as Cookie from "./Cookie.ts"
import { aliasesOf, loopbackAlias } from "./internal/endpoint/aliases.ts"
import { make } from "./internal/endpoint/driver.ts"
import type {
  AssociationConnectError,
  AssociationError,
  EndpointConfigError,
} from "./internal/endpoint/errors.ts"
import type * as Packet from "./Packet.ts"

export {
  AssociationConnectError,
  AssociationError,
  EndpointConfigError,
} from "./internal/endpoint/errors.ts"
export { make }

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
 *   any of the outputs of the batch are performed. `input.message` re-encodes with
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
 *   oldest hold before it steps more. A held `SetTimer` still counts its `afterMs` from the
 *   time it was stepped (its inputs' `nowMs`), not from its release.
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
 * The association's protocol parameters a user sets (defaults: `Association.defaultConfig`,
 * RFC 9260 §16): its durations as `Duration.Input` (`"200 millis"`, `"1 second"`, or
 * milliseconds), decoded when the endpoint starts (not positive and finite: an
 * `EndpointConfigError` naming it, e.g. `config.rtoMin`); the rest as in `Association.Config`.
 *
 * @since 0.1.0
 * @category models
 */
export interface AssociationOptions
  extends Partial<
    Omit<
      Association.Config,
      | "rtoInitialMs"
      | "rtoMinMs"
      | "rtoMsMax"
      | "heartbeatIntervalMs"
      | "validCookieLifeMs"
      | "sackDelayMs"
    >
  > {
  /** RTO.Initial; default 1 second. */
  readonly rtoInitial?: Duration.Input
  /** RTO.Min; default 1 second. */
  readonly rtoMin?: Duration.Input
  /** RTO.Max; default 60 seconds. */
  readonly rtoMax?: Duration.Input
  /** HB.interval, probes of idle paths; default 30 seconds. */
  readonly heartbeatInterval?: Duration.Input
  /** Valid.Cookie.Life; default 60 seconds. */
  readonly validCookieLife?: Duration.Input
  /** Delayed SACK (at most this long; every second DATA packet is SACKed at once); default 200 ms. */
  readonly sackDelay?: Duration.Input
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
  readonly config?: AssociationOptions
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

export { aliasesOf, loopbackAlias } from "./internal/endpoint/aliases.ts"

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
