/**
 * The client of a license pool: checks out seats, heartbeats the server that authorised it,
 * follows the leader priority list when that server is gone, and tells the application what
 * happens as a `Stream` of `Granted` / `Reattached` / `Lost` / `Denied` events. The client
 * machine runs under the shared `Runner`; its datagrams carry the pool's MACs. A server found
 * dead by its closed port (ICMP port unreachable) is walked past at once (`Unreachable`). The
 * socket connected to a server for those reports is made ahead of a walk to it: the next
 * server in the priority list, each time the target or the list changes (not every server's
 * at start: a process of thousands of clients would hold a descriptor per server per client).
 * A process of many clients runs them in one `ClientGroup`: one socket and one timer for all.
 *
 * @since 0.1.0
 */
import { Authentication, Runner } from "@understudy/machine"
import { type Address, Codec, Datagram, type TransportError } from "@understudy/transport"
import {
  Context,
  type Duration,
  Effect,
  Layer,
  type Redacted,
  Result,
  type Scope,
  Stream,
} from "effect"
import * as ClientMachine from "./ClientMachine.ts"
import * as ClientSettings from "./internal/clientSettings.ts"
import type { PoolInvalidConfig } from "./Machine.ts"
import * as Message from "./Message.ts"
import * as Signing from "./Signing.ts"

/** @since 0.1.0 @category models */
export interface Options {
  /** This client's name, unique in the pool. */
  readonly id: string
  /** Where this client receives replies (port 0: any). */
  readonly bind: Address.Udp
  /** The servers' client endpoints, in leader priority order. */
  readonly servers: ReadonlyArray<{ readonly id: string; readonly address: Address.Udp }>
  readonly poolSecret: Redacted.Redacted<Uint8Array> | "insecure"
  readonly product: string
  readonly seats?: number
  /** How often the seat is renewed (`"200 millis"`, milliseconds, a `Duration`). Default 200 ms. */
  readonly heartbeatInterval?: Duration.Input
  /** Replies missed in a row before the server counts as gone. Default 3. */
  readonly missLimit?: number
  /** The longest wait for a reply before sending again. Default the heartbeat interval. */
  readonly retryInterval?: Duration.Input
  /** The shortest wait for a reply (round-trip times set it in between). Default a sixth. */
  readonly minRetryInterval?: Duration.Input
  /** Where in `servers` to start. Default 0. */
  readonly firstServer?: number
  /**
   * Walk on at once from a server whose port is found closed (the kernel's ICMP port
   * unreachable: its process died, its host is up), not after `missLimit` waits. Default
   * true. The datagrams to each server then leave from a socket connected to it (see
   * `Datagram.BindOptions.reportUnreachable`).
   */
  readonly reportUnreachable?: boolean
  /**
   * Called after each step of the client machine (its state before and after, its outputs),
   * inside the client's serial loop: for tracing a failover step by step. Keep it cheap.
   */
  readonly onStep?: (info: StepInfo) => Effect.Effect<void>
}

/** One step of a client, as `onStep` sees it. @since 0.1.0 @category models */
export type StepInfo = Runner.StepInfo<
  ClientMachine.State,
  Message.ServerReply | Message.ClientRequest,
  ClientMachine.Command,
  ClientMachine.Event
>

/** A running client. @since 0.1.0 @category models */
export interface Running {
  readonly events: Stream.Stream<ClientMachine.Event>
  readonly state: Effect.Effect<ClientMachine.State>
  /** Gives the seat back and stops heartbeating. */
  readonly release: Effect.Effect<void>
  readonly address: Address.Udp
}

/** Requests out, replies in. */
const codec: Codec.Codec<Message.ServerReply | Message.ClientRequest> = Codec.make({
  name: "HeartbeatPool.Client",
  encode: (message) => {
    const encoded = Message.clientRequestCodec.encode(message as Message.ClientRequest)
    if (Result.isFailure(encoded)) throw encoded.failure
    return encoded.success
  },
  decode: (payload) => {
    const decoded = Message.serverReplyCodec.decode(payload)
    if (Result.isFailure(decoded)) throw decoded.failure
    return decoded.success
  },
})

const zeroSecret = new Uint8Array(32)

/**
 * Starts the client; it requests its seats at once. An option out of range fails with
 * `PoolInvalidConfig` naming it, before anything is bound.
 *
 * @since 0.1.0
 * @category constructors
 */
export const run = (
  options: Options,
): Effect.Effect<
  Running,
  TransportError.ListenError | PoolInvalidConfig,
  Datagram.Datagram | Scope.Scope
> =>
  Effect.gen(function* () {
    const decoded = ClientSettings.decode(options)
    if (Result.isFailure(decoded)) return yield* decoded.failure
    const config = decoded.success
    const insecure = options.poolSecret === "insecure"
    if (insecure) yield* Effect.logWarning("running WITHOUT a pool key (--insecure)")
    const keys = Signing.poolKeys(
      options.poolSecret === "insecure" ? zeroSecret : options.poolSecret,
    )
    const addresses: Record<string, Address.Udp> = { [options.id]: options.bind }
    const serverAt = new Map<string, string>()
    for (const server of options.servers) {
      addresses[server.id] = server.address
      serverAt.set(`${server.address.host}:${server.address.port}`, server.id)
    }
    // The runner binds the client's endpoint through this, asking for closed-port reports.
    const datagram = yield* Datagram.Datagram
    const scope = yield* Effect.scope
    let bound: Datagram.Endpoint | undefined
    /**
     * The server a walk from the current target goes to gets its connected socket now, not
     * when the client walks there in a failover, when every client of the dead server would
     * make one at once.
     */
    let prepared: string | undefined
    const prepareNext = (state: ClientMachine.State) => {
      const prepare = bound?.prepare
      const next = ClientMachine.nextServer(state.list, state.target)
      if (prepare === undefined || next === prepared || addresses[next] === undefined)
        return Effect.void
      prepared = next
      return Effect.asVoid(Effect.forkIn(prepare(addresses[next]), scope))
    }
    const onStep = (info: StepInfo) =>
      options.onStep === undefined
        ? prepareNext(info.after)
        : Effect.andThen(prepareNext(info.after), options.onStep(info))
    const reporting = Datagram.Datagram.of({
      bind: (address, bindOptions) =>
        datagram.bind(address, { ...bindOptions, reportUnreachable: true }).pipe(
          Effect.tap((endpoint) =>
            Effect.sync(() => {
              bound = endpoint
            }),
          ),
        ),
    })
    const running = yield* Runner.run(
      ClientSettings.machine(
        options,
        config,
        options.servers.map((server) => server.id),
      ),
      {
        self: options.id,
        peers: options.servers.map((server) => server.id),
        addresses,
        codec,
        authentication: insecure ? Authentication.insecure : Authentication.keyed(keys.mac),
        onStep,
      },
    ).pipe(
      options.reportUnreachable === false
        ? (run) => run
        : Effect.provideService(Datagram.Datagram, reporting),
    )
    if (bound?.unreachable !== undefined) {
      yield* Stream.runForEach(bound.unreachable, (address) => {
        const server = serverAt.get(`${address.host}:${address.port}`)
        return server === undefined ? Effect.void : running.command({ _tag: "Unreachable", server })
      }).pipe(Effect.forkScoped)
    }
    return {
      events: running.events,
      state: running.state,
      release: running.command({ _tag: "Release" }),
      address: running.address,
    }
  })

/**
 * The client as an Effect service, for programs that hold one seat set for their lifetime.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Client } from "@understudy/heartbeat-pool"
 *
 * const program = Effect.gen(function* () {
 *   const client = yield* Client.PoolClient
 *   yield* client.events.pipe(Stream.runForEach((event) => Effect.log(event._tag)))
 * })
 * ```
 * @since 0.1.0
 * @category services
 */
export class PoolClient extends Context.Service<PoolClient, Running>()(
  "@understudy/heartbeat-pool/PoolClient",
) {}

/**
 * A layer that starts the client and stops it (releasing nothing: leases just expire) when
 * the layer's scope closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options,
): Layer.Layer<PoolClient, TransportError.ListenError | PoolInvalidConfig, Datagram.Datagram> =>
  Layer.effect(PoolClient, run(options))
