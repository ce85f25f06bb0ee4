/**
 * Runs one license server of the pool: the pool `Machine` under the shared `Runner` for the
 * server-to-server traffic (authenticated with the pool key), a second UDP endpoint for
 * clients and the admin tool (the same datagram MACs and replay protection, keyed by the
 * client's name), and durable state: term, vote, license and record membership are on disk
 * (written and fsynced, file and directory) before the outputs of the step that changed them
 * are performed; a step that only adds or drops allocations appends those to a journal beside
 * the state file rather than writing every allocation again (`internal/stateFiles.ts`).
 *
 * @since 0.1.0
 */

import { join } from "node:path"
import { Authentication, type Machine as M, Runner } from "@understudy/machine"
import { type Address, Datagram, type TransportError } from "@understudy/transport"
import {
  Clock,
  Context,
  Effect,
  Layer,
  Metric,
  PubSub,
  type Redacted,
  Result,
  Schema,
  type Scope,
  Stream,
} from "effect"
import { defaultLimits } from "./internal/defaultLimits.ts"
import * as StateFiles from "./internal/stateFiles.ts"
import * as Machine from "./Machine.ts"
import { PoolInvalidConfig } from "./Machine.ts"
import * as Message from "./Message.ts"
import * as Metrics from "./Metrics.ts"
import * as Resource from "./Resource.ts"
import * as Signing from "./Signing.ts"

/** One server of the pool and its two endpoints. @since 0.1.0 @category models */
export interface Member {
  readonly id: string
  readonly peer: Address.Udp
  readonly client: Address.Udp
}

/** The timings of the pool (all servers alike). @since 0.1.0 @category models */
export interface Timing {
  readonly heartbeatIntervalMs: number
  readonly followerTimeoutMs: number
  readonly checkTimeoutMs: number
  readonly leaderLeaseMs: number
  readonly downAfterMs: number
  readonly electionStaggerMs: number
  readonly leaseMs: number
}

/** Defaults for a 200 ms heartbeat. @since 0.1.0 @category constants */
export const defaultTiming: Timing = {
  heartbeatIntervalMs: 200,
  followerTimeoutMs: 1_000,
  checkTimeoutMs: 400,
  leaderLeaseMs: 700,
  downAfterMs: 800,
  electionStaggerMs: 300,
  leaseMs: 6_000,
}

/** @since 0.1.0 @category models */
export interface Options {
  readonly self: string
  /** Every server, in leader priority order. */
  readonly members: ReadonlyArray<Member>
  /** The pool secret (a `ClusterKey` file), or the explicit `"insecure"`. */
  readonly poolSecret: Redacted.Redacted<Uint8Array> | "insecure"
  /** The vendor's Ed25519 public key (PEM) that signs license files (not with `resource`). */
  readonly vendorPublicKey?: string
  /** Where this server keeps its durable state. */
  readonly stateDir: string
  /** A license file from the operator: adopted when newer than the stored one. */
  readonly license?: Message.License
  /**
   * A resource defined in code (name, capacity, expiry), leased out instead of a vendor's
   * license: no `vendorPublicKey`, no `license`. Every server of the pool is given one (the
   * highest `version` spreads). See `Resource`.
   */
  readonly resource?: Resource.Resource
  readonly timing?: Partial<Timing>
  /** Largest client datagram accepted. Default 8 KiB. */
  readonly messageBytesMax?: number
  readonly clientsPerServerMax?: number
  readonly seatsPerClientMax?: number
  readonly pendingReservationsMax?: number
  /** Most unused seats the leader hands one follower as its share. Default 16; 0: none. */
  readonly shareSeatsMax?: number
  /**
   * The kernel receive buffer (SO_RCVBUF) of the client endpoint, in bytes: the clients of a
   * dead server arrive together, and past the buffer the kernel drops their datagrams (they
   * are asked again a wait later). Default 4 MiB; Linux caps it at `net.core.rmem_max`.
   */
  readonly clientReceiveBufferBytes?: number
}

/**
 * The durable state file could not be read or written.
 *
 * @since 0.1.0
 * @category errors
 */
export class PoolStateError extends Schema.TaggedError<PoolStateError>()("PoolStateError", {
  path: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `heartbeat pool state ${this.path}: ${this.detail}`
  }
}

/**
 * A client datagram above `messageBytesMax`, refused before it is decoded or its MAC checked
 * (so its sender is known only by address, and gets no answer). It appears on the server's
 * `events` and is counted in `understudy_pool_client_datagrams_dropped_total`
 * (`reason=too-large`).
 *
 * @since 0.1.0
 * @category errors
 */
export class PoolMessageTooLarge extends Schema.TaggedError<PoolMessageTooLarge>()(
  "PoolMessageTooLarge",
  { from: Schema.String, bytes: Schema.Number, limit: Schema.Number },
) {
  override get message(): string {
    return `client datagram from ${this.from} refused: ${this.bytes} bytes, above the limit of ${this.limit}`
  }
}

/** What a server reports: the machine's events, and refusals made before the machine. @since 0.1.0 @category models */
export type Event = Machine.Event | PoolMessageTooLarge

/** A running server. @since 0.1.0 @category models */
export interface Running {
  readonly self: string
  readonly peerAddress: Address.Udp
  readonly clientAddress: Address.Udp
  readonly state: Effect.Effect<Machine.State>
  readonly events: Stream.Stream<Event>
  readonly join: Effect.Effect<never>
}

/** Keyed datagrams: `version (1) | counter (8) | payload | mac (16)`. */
const headerBytes = 9

/** The payload of a sealed datagram, unverified, to learn who claims to send it. */
export const unverifiedPayload = (keyed: boolean, bytes: Uint8Array): Uint8Array | undefined =>
  !keyed
    ? bytes
    : bytes.byteLength < Authentication.overheadBytes
      ? undefined
      : bytes.subarray(headerBytes, bytes.byteLength - (Authentication.overheadBytes - headerBytes))

/** The name a client datagram's sender claims: verified by its MAC afterwards. */
export const claimedSender = (message: Message.ClientRequest): string =>
  message._tag === "Publish" || message._tag === "Status" ? "admin" : message.client

const zeroSecret = new Uint8Array(32)

/**
 * Where the pool's capacity comes from: a vendor's license (checked with its key) or a
 * resource defined in code (signed and checked with the pool key), never both.
 */
const licenseSource = (
  options: Options,
  keys: Signing.PoolKeys,
): Result.Result<
  { readonly crypto: Machine.Crypto; readonly offer: Message.License | undefined },
  PoolInvalidConfig
> => {
  if (options.resource === undefined) {
    if (options.vendorPublicKey === undefined)
      return Result.fail(
        new PoolInvalidConfig({ reason: "vendorPublicKey or resource is required" }),
      )
    return Result.succeed({
      crypto: Signing.crypto(keys, options.vendorPublicKey),
      offer: options.license,
    })
  }
  if (options.vendorPublicKey !== undefined || options.license !== undefined)
    return Result.fail(
      new PoolInvalidConfig({
        reason: "resource excludes vendorPublicKey and license (one source of capacity)",
      }),
    )
  const signed = Resource.sign(options.poolSecret, options.resource)
  return Result.isFailure(signed)
    ? Result.fail(signed.failure)
    : Result.succeed({ crypto: Resource.crypto(keys), offer: signed.success })
}

/**
 * Most client datagrams stepped at once (the runner's `inputsPerStepMax`): they share the
 * step's state write (one fsync for their grants), while the peers' heartbeats and this
 * server's timers go between the steps.
 */
const clientMessagesPerStepMax = 64

/** Events not logged: replies (sent), and what the counters count. */
const quietEvents = new Set<string>(["Reply", "Ignored", "Refused"])
/**
 * Events about one client, logged at Debug (off by default): a failover moves hundreds of
 * clients at once, and a log line each was 5-8% of the taking server's CPU profile then.
 */
const clientEvents = new Set<string>(["Allocated", "Carried", "Released"])

/**
 * Starts the server: reads its durable state, binds both endpoints, runs the machine.
 *
 * @since 0.1.0
 * @category constructors
 */
export const run = (
  options: Options,
): Effect.Effect<
  Running,
  TransportError.ListenError | PoolStateError | PoolInvalidConfig,
  Datagram.Datagram | Scope.Scope
> =>
  Effect.gen(function* () {
    const { self, members } = options
    const me = members.find((member) => member.id === self)
    if (me === undefined) return yield* Effect.die(new Error(`${self} is not a member of the pool`))
    const insecure = options.poolSecret === "insecure"
    if (insecure) {
      yield* Effect.logWarning(
        "running WITHOUT a pool key (--insecure): anyone who can send a datagram can grant, revoke or lead; tokens are forgeable",
      )
    }
    const keys = Signing.poolKeys(
      options.poolSecret === "insecure" ? zeroSecret : options.poolSecret,
    )
    const authentication = insecure ? Authentication.insecure : Authentication.keyed(keys.mac)
    const timing = { ...defaultTiming, ...options.timing }
    const source = licenseSource(options, keys)
    if (Result.isFailure(source)) return yield* source.failure
    const { crypto, offer } = source.success
    const path = join(options.stateDir, `${self}.state.json`)

    const files = yield* Effect.acquireRelease(
      Effect.try({
        try: () => StateFiles.open(path),
        catch: (error) => new PoolStateError({ path, detail: String(error) }),
      }),
      (files) => Effect.sync(files.close),
    )
    const restored = files.restored
    if (offer !== undefined && !crypto.verifyLicense(offer)) {
      yield* Effect.logError("the license file's signature does not verify: not used")
    }
    const offered = offer !== undefined && crypto.verifyLicense(offer) ? offer : null
    const license =
      offered !== null && offered.sequence > (restored?.license?.sequence ?? -1)
        ? offered
        : (restored?.license ?? null)
    const machine = Machine.make({
      servers: members.map((member) => member.id),
      ...timing,
      crypto,
      initialLicense: license,
      durable: () => (restored === undefined ? undefined : { ...restored, license }),
      ...(options.clientsPerServerMax !== undefined
        ? { clientsPerServerMax: options.clientsPerServerMax }
        : {}),
      ...(options.seatsPerClientMax !== undefined
        ? { seatsPerClientMax: options.seatsPerClientMax }
        : {}),
      ...(options.pendingReservationsMax !== undefined
        ? { pendingReservationsMax: options.pendingReservationsMax }
        : {}),
      ...(options.shareSeatsMax !== undefined ? { shareSeatsMax: options.shareSeatsMax } : {}),
    })

    /** The step's durable changes on disk before its outputs act (`StateFiles.persistStep`). */
    const persist = (before: Machine.State | undefined, after: Machine.State) =>
      Effect.try({
        try: () => StateFiles.persistStep(files, before, after),
        catch: (error) => new PoolStateError({ path, detail: String(error) }),
      }).pipe(Effect.orDie)

    const record = Metrics.recorder(self)
    const datagram = yield* Datagram.Datagram
    const endpoint = yield* datagram.bind(me.client, {
      receiveBufferBytes:
        options.clientReceiveBufferBytes ?? defaultLimits.clientReceiveBufferBytes,
    })
    const sealer = Authentication.sealer(authentication, self, yield* Clock.currentTimeMillis)
    const maxClients = (options.clientsPerServerMax ?? defaultLimits.clientsPerServerMax) * 2
    const messageBytesMax = options.messageBytesMax ?? defaultLimits.messageBytesMax
    // Where each client was last heard from; the oldest is forgotten past the bound.
    const addresses = new Map<string, Address.Udp>()
    const replyTo = (to: string, message: Message.ServerReply) =>
      Effect.gen(function* () {
        const address = addresses.get(to)
        if (address === undefined) return
        const encoded = Message.serverReplyCodec.encode(message)
        if (Result.isFailure(encoded))
          return yield* Effect.logError("cannot encode a reply", encoded.failure.message)
        const sealed = sealer.seal(to, yield* Clock.currentTimeMillis, encoded.success)
        yield* endpoint.send(address, sealed).pipe(Effect.ignore)
      })

    /**
     * A step's replies, sent within the step (after its state write): their cost is the
     * step's, bounded by the clients per step. Sent from the events stream instead, they
     * waited in the node's bounded event queue, whose reader takes up to a full queue at a
     * time, and the node waited for that reader: a thousand replies held its heartbeats back.
     */
    const sendReplies = (outputs: ReadonlyArray<M.Output<Message.Peer, Machine.Event>>) =>
      Effect.forEach(
        outputs,
        (output) =>
          output._tag === "Emit" && output.event._tag === "Reply"
            ? replyTo(output.event.to, output.event.message)
            : Effect.void,
        { discard: true },
      )

    const running = yield* Runner.run(machine, {
      self,
      peers: members.map((member) => member.id),
      addresses: Object.fromEntries(members.map((member) => [member.id, member.peer])),
      codec: Message.peerCodec,
      authentication,
      inputsPerStepMax: clientMessagesPerStepMax,
      // Persist before sending: a vote, a term or a grant is on disk before anyone hears of it.
      onStep: (info) =>
        Effect.andThen(
          info.before === undefined ||
            info.before.durable !== info.after.durable ||
            info.before.stored !== info.after.stored
            ? persist(info.before, info.after)
            : Effect.void,
          Effect.andThen(sendReplies(info.outputs), record(info)),
        ),
    })

    const drop = (reason: string) =>
      Metric.update(Metric.withAttributes(Metrics.clientDatagramsDropped, { reason }), 1)
    // Bounded, dropping: a flood of oversized datagrams must not hold the endpoint back.
    const refusals = yield* PubSub.dropping<PoolMessageTooLarge>(256)

    /** A client's datagram, checked and decoded, or undefined (dropped and counted). */
    const admit = (received: Datagram.Received) =>
      Effect.gen(function* () {
        if (received.bytes.byteLength > messageBytesMax) {
          yield* PubSub.publish(
            refusals,
            new PoolMessageTooLarge({
              from: `${received.from.host}:${received.from.port}`,
              bytes: received.bytes.byteLength,
              limit: messageBytesMax,
            }),
          )
          return yield* drop("too-large")
        }
        const payload = unverifiedPayload(!insecure, received.bytes)
        if (payload === undefined) return yield* drop("unauthenticated")
        const decoded = Message.clientRequestCodec.decode(payload)
        if (Result.isFailure(decoded)) return yield* drop("undecodable")
        const from = claimedSender(decoded.success)
        const opened = sealer.open(from, yield* Clock.currentTimeMillis, received.bytes)
        // One spelling for every reason of this counter: `replayed`, `stale`, ...
        if ("dropped" in opened) return yield* drop(opened.dropped.toLowerCase())
        addresses.delete(from)
        addresses.set(from, received.from)
        if (addresses.size > maxClients) addresses.delete(addresses.keys().next().value!)
        if (decoded.success._tag === "Beat") yield* Metric.update(Metrics.clientHeartbeats, 1)
        return { from, message: decoded.success }
      })

    /**
     * The datagrams that arrived together go to the machine together (`commandAll`), a
     * bounded number per step: the state is written (and fsynced) once for each step's
     * grants, not once per grant, and a backlog of thousands of client datagrams (with
     * thousands of replies) cannot hold a loaded leader's heartbeats back for seconds (its
     * followers elected another when it did).
     */
    const receive = (batch: ReadonlyArray<Datagram.Received>) =>
      Effect.gen(function* () {
        const commands: Array<Machine.Command> = []
        for (const received of batch) {
          const admitted = yield* admit(received)
          if (admitted !== undefined) commands.push({ _tag: "FromClient", ...admitted })
        }
        yield* running.commandAll(commands)
      })

    const observe = (event: Machine.Event) =>
      Effect.gen(function* () {
        // Replies went out with their step (`sendReplies`).
        if (quietEvents.has(event._tag)) return
        const state = yield* running.state
        const log = clientEvents.has(event._tag) ? Effect.logDebug : Effect.logInfo
        yield* log(event._tag, event).pipe(
          Effect.annotateLogs({ role: state.role, term: state.durable.term }),
        )
      })

    yield* Stream.runForEach(running.events, observe).pipe(Effect.forkScoped)
    yield* Stream.runForEachArray(endpoint.messages, receive).pipe(Effect.forkScoped)

    return {
      self,
      peerAddress: running.address,
      clientAddress: endpoint.address,
      state: running.state,
      events: Stream.merge(running.events, Stream.fromPubSub(refusals)),
      join: running.join,
    }
  }).pipe(Effect.annotateLogs({ server: options.self }))

/**
 * A server of the pool as an Effect service, for programs that run one for their lifetime.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Server } from "@understudy/heartbeat-pool"
 *
 * const program = Effect.gen(function* () {
 *   const server = yield* Server.PoolServer
 *   yield* server.events.pipe(Stream.runForEach((event) => Effect.log(event._tag)))
 * })
 * ```
 * @since 0.1.0
 * @category services
 */
export class PoolServer extends Context.Service<PoolServer, Running>()(
  "@understudy/heartbeat-pool/PoolServer",
) {}

/**
 * A layer that starts the server and stops it when the layer's scope closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options,
): Layer.Layer<
  PoolServer,
  TransportError.ListenError | PoolStateError | PoolInvalidConfig,
  Datagram.Datagram
> => Layer.effect(PoolServer, run(options))
