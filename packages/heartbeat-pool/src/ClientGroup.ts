/**
 * Many clients of a license pool in one process, for a program that holds thousands of seats
 * (a license proxy, a test harness): each client is its own `ClientMachine`, as with
 * `Client.run`, but they share one driver. One UDP socket (and, for port-unreachable
 * reports, one connected to each server a walk goes to), one receive loop, one timer table
 * with one sleeper, and the clients whose timers are due, or whose replies arrived together,
 * are stepped in one batch per wake-up. A `Client.run` per client costs a socket, fibers and
 * timers each: a thousand of them spent more CPU in their runtime than in their protocol, and
 * ten thousand ran out of descriptors.
 *
 * Traffic is authenticated exactly as a single client's: every request is sealed by its own
 * client's name (`Authentication`), and a reply is opened with the sealer of the client it
 * names (`recipient`) — whose MAC names that client as the receiver, so a reply meant for one
 * client and routed to another is dropped.
 *
 * @since 0.1.0
 */
import { Authentication, type Machine as M, Runner, TimerTable } from "@understudy/machine"
import { type Address, Datagram, type TransportError } from "@understudy/transport"
import {
  Clock,
  Effect,
  Fiber,
  Metric,
  PubSub,
  type Redacted,
  Result,
  type Scope,
  Semaphore,
  Stream,
} from "effect"
import type * as Client from "./Client.ts"
import * as ClientMachine from "./ClientMachine.ts"
import * as ClientSettings from "./internal/clientSettings.ts"
import { defaultLimits } from "./internal/defaultLimits.ts"
import type { PoolInvalidConfig } from "./Machine.ts"
import * as Message from "./Message.ts"
import { unverifiedPayload } from "./Server.ts"
import * as Signing from "./Signing.ts"

/** @since 0.1.0 @category models */
export interface Options {
  /** Where the group receives every client's replies (port 0: any). */
  readonly bind: Address.Udp
  /** The servers' client endpoints, in leader priority order. */
  readonly servers: ReadonlyArray<{ readonly id: string; readonly address: Address.Udp }>
  readonly poolSecret: Redacted.Redacted<Uint8Array> | "insecure"
  /** Walk on at once from a server whose port is found closed (see `Client.Options`). Default true. */
  readonly reportUnreachable?: boolean
  /**
   * Events kept per client for a slow reader of its `events`, at most; past it the oldest
   * are dropped (one slow reader must not hold back every client of the group). Default 64.
   */
  readonly eventsCapacity?: number
  /** The socket's kernel receive buffer: the replies to a whole group arrive together. */
  readonly receiveBufferBytes?: number
}

/**
 * One client of the group: `Client.Options` without what the group shares.
 *
 * @since 0.1.0
 * @category models
 */
export type Member = Omit<Client.Options, "bind" | "servers" | "poolSecret" | "reportUnreachable">

/**
 * A client running in a group: `Client.Running`, and `stop`, which takes it out of the group
 * (releasing nothing: its lease just expires) and ends its `events`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Running extends Client.Running {
  readonly stop: Effect.Effect<void>
}

/** A running group. @since 0.1.0 @category models */
export interface Group {
  /** Where the replies come in. */
  readonly address: Address.Udp
  /**
   * Starts a client in the group; it requests its seats at once. A member whose options are
   * out of range fails with `PoolInvalidConfig`; a name already in the group dies.
   */
  readonly add: (member: Member) => Effect.Effect<Running, PoolInvalidConfig>
  /** The clients running in the group. */
  readonly size: Effect.Effect<number>
}

/**
 * The client a reply is for: a grant's token names it, the other replies to clients name it
 * in `client`. Unverified: the MAC of that client's sealer checks it.
 *
 * @since 0.1.0
 * @category getters
 */
export const recipient = (reply: Message.ServerReply): string | undefined => {
  switch (reply._tag) {
    case "Granted":
      return reply.token.client
    case "BeatAck":
    case "Denied":
    case "Wait":
    case "Released":
      return reply.client
    case "PublishReply":
    case "StatusReply":
      return undefined
  }
}

type Machine = ReturnType<typeof ClientMachine.make>
type Input = M.Input<Message.ServerReply | Message.ClientRequest, ClientMachine.Command>

/** A client of the group, as its driver holds it. */
interface Driven {
  readonly id: string
  readonly machine: Machine
  state: ClientMachine.State
  readonly sealer: Authentication.Sealer
  readonly events: PubSub.PubSub<ClientMachine.Event>
  readonly onStep: Member["onStep"]
  /** Its timers' keys in the group's table, by the machine's timer names. */
  readonly timers: Map<string, TimerKey>
}

interface TimerKey {
  readonly client: Driven
  readonly timer: string
}

/** A datagram ready to go: sealed by its client for `to`. */
interface Outgoing {
  readonly to: Address.Udp
  readonly bytes: Uint8Array
}

/**
 * Starts a group with no clients; `add` starts each. Everything lives in the caller's scope:
 * closing it stops every client of the group (releasing nothing: leases just expire).
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { ClientGroup } from "@understudy/heartbeat-pool"
 *
 * const program = Effect.gen(function* () {
 *   const group = yield* ClientGroup.run({ bind, servers, poolSecret })
 *   for (let i = 0; i < 1_000; i++) {
 *     const client = yield* group.add({ id: `seat-${i}`, product: "cad" })
 *     yield* Effect.forkScoped(Stream.runForEach(client.events, (event) => Effect.log(event._tag)))
 *   }
 * })
 * ```
 * @since 0.1.0
 * @category constructors
 */
export const run = (
  options: Options,
): Effect.Effect<Group, TransportError.ListenError, Datagram.Datagram | Scope.Scope> =>
  Effect.gen(function* () {
    const insecure = options.poolSecret === "insecure"
    if (insecure) yield* Effect.logWarning("running WITHOUT a pool key (--insecure)")
    const authentication =
      options.poolSecret === "insecure"
        ? Authentication.insecure
        : Authentication.keyed(Signing.poolKeys(options.poolSecret).mac)
    const eventsCapacity = options.eventsCapacity ?? 64
    const serverIds = options.servers.map((server) => server.id)
    const addressOf = new Map(options.servers.map((server) => [server.id, server.address]))
    const serverAt = new Map(
      options.servers.map((server) => [`${server.address.host}:${server.address.port}`, server.id]),
    )
    const reportUnreachable = options.reportUnreachable !== false
    const datagram = yield* Datagram.Datagram
    const endpoint = yield* datagram.bind(options.bind, {
      receiveBufferBytes: options.receiveBufferBytes ?? defaultLimits.clientReceiveBufferBytes,
      ...(reportUnreachable ? { reportUnreachable: true } : {}),
    })
    const scope = yield* Effect.scope

    const clients = new Map<string, Driven>()
    const timers = new TimerTable.TimerTable<TimerKey>()
    // One batch at a time: a client's datagrams leave in the order its steps made them.
    const serial = yield* Semaphore.make(1)

    /**
     * The servers given a connected socket: the one each client's walk would go to, made
     * before the walk (a failover is the busy moment); at most one per server for the group.
     */
    const prepared = new Set<string>()
    const toPrepare: Array<Address.Udp> = []

    // The batch being stepped: what its steps send and emit, performed once it is stepped.
    let outbox: Array<Outgoing> = []
    let emitted: Array<{ readonly client: Driven; readonly event: ClientMachine.Event }> = []
    let observed: Array<Effect.Effect<void>> = []
    /**
     * Datagrams dropped before any client saw them, counted as a `Runner` counts its own
     * (`Runner.datagramsDropped`), with `UnknownRecipient` for a reply that names no client of
     * the group (a stopped one's late reply: not logged as a warning).
     */
    let dropped: Array<{ readonly reason: string; readonly from: string }> = []

    /** Steps one client with one input (its outputs into the batch's). */
    const step = (client: Driven, input: Input | Runner.Init, nowMs: number) => {
      const before = input._tag === "Init" ? undefined : client.state
      const result =
        input._tag === "Init"
          ? client.machine.init({ self: client.id, peers: serverIds, nowMs })
          : client.machine.step(client.state, input)
      client.state = result.state
      for (const output of result.outputs) {
        switch (output._tag) {
          case "Send": {
            const to = addressOf.get(output.to)
            const encoded = Message.clientRequestCodec.encode(
              output.message as Message.ClientRequest,
            )
            if (to !== undefined && Result.isSuccess(encoded))
              outbox.push({ to, bytes: client.sealer.seal(output.to, nowMs, encoded.success) })
            break
          }
          case "SetTimer": {
            let key = client.timers.get(output.timer)
            if (key === undefined) {
              key = { client, timer: output.timer }
              client.timers.set(output.timer, key)
            }
            timers.set(key, nowMs + Math.max(0, output.afterMs))
            break
          }
          case "CancelTimer": {
            const key = client.timers.get(output.timer)
            if (key !== undefined) timers.cancel(key)
            break
          }
          case "Emit":
            emitted.push({ client, event: output.event })
            break
          case "Broadcast":
            break
        }
      }
      const next = ClientMachine.nextServer(result.state.list, result.state.target)
      const nextAddress = addressOf.get(next)
      if (endpoint.prepare !== undefined && nextAddress !== undefined && !prepared.has(next)) {
        prepared.add(next)
        toPrepare.push(nextAddress)
      }
      if (client.onStep !== undefined)
        observed.push(
          client.onStep({
            node: client.id,
            input,
            before,
            after: result.state,
            outputs: result.outputs,
            nowMs,
          }),
        )
    }

    // The one sleeper, due no later than the earliest timer of the group.
    let sleeper:
      | { readonly id: number; readonly fiber: Fiber.Fiber<void>; readonly untilMs: number }
      | undefined
    let sleepers = 0

    /** Sends, publishes and observes what the batch's steps made, then re-arms the sleeper. */
    const perform = Effect.gen(function* () {
      const sending = outbox
      const events = emitted
      const observers = observed
      const drops = dropped
      outbox = []
      emitted = []
      observed = []
      dropped = []
      for (const { reason, from } of drops) {
        yield* Metric.update(Metric.withAttributes(Runner.datagramsDropped, { reason }), 1)
        yield* (reason === "UnknownRecipient" ? Effect.logDebug : Effect.logWarning)(
          "dropping a datagram",
          { reason, from },
        )
      }
      for (const effect of observers) yield* effect
      // All handed to the kernel at once, then their completions awaited together: one after
      // another, each send waited a turn of the event loop for its callback, and a batch of
      // hundreds held every other batch (the replies) back past the clients' reply time-outs.
      yield* Effect.forEach(
        sending,
        ({ to, bytes }) =>
          endpoint
            .send(to, bytes)
            .pipe(Effect.catch((error) => Effect.logDebug("datagram not sent", error.message))),
        { concurrency: "unbounded", discard: true },
      )
      for (const { client, event } of events) yield* PubSub.publish(client.events, event)
      for (const address of toPrepare.splice(0))
        yield* Effect.forkIn(endpoint.prepare!(address), scope)
      yield* reschedule
    })

    /** Runs `stepAll` (synchronous steps of the clients) and performs its outputs, serially. */
    const batch = <A>(stepAll: (nowMs: number) => A): Effect.Effect<A> =>
      serial.withPermits(1)(
        Effect.gen(function* () {
          const nowMs = yield* Clock.currentTimeMillis
          const result = stepAll(nowMs)
          yield* perform
          return result
        }),
      )

    /** The wake-up of sleeper `id`: fires what is due (a replaced sleeper's finds less). */
    const fireDue = (id: number) =>
      batch((nowMs) => {
        if (sleeper?.id === id) sleeper = undefined
        // Bounded: a machine that kept arming 0 ms timers would never end the batch; what is
        // left is due at once and fires at the next wake-up.
        for (let fired = 0; fired < 4 * clients.size + 64; fired++) {
          const due = timers.due(nowMs)
          if (due === undefined) break
          step(due.client, { _tag: "TimerFired", timer: due.timer, nowMs }, nowMs)
        }
      })

    const reschedule: Effect.Effect<void> = Effect.gen(function* () {
      const earliestMs = timers.next()
      if (sleeper !== undefined && earliestMs !== undefined && sleeper.untilMs <= earliestMs) return
      if (sleeper !== undefined) {
        const previous = sleeper
        sleeper = undefined
        yield* Fiber.interrupt(previous.fiber)
      }
      if (earliestMs === undefined) return
      const nowMs = yield* Clock.currentTimeMillis
      const id = sleepers++
      const fiber = yield* Effect.sleep(Math.max(0, earliestMs - nowMs)).pipe(
        // Forked: the wake-up's batch waits for the permit, not the sleeper's interruption.
        Effect.andThen(Effect.forkIn(fireDue(id), scope)),
        Effect.asVoid,
        Effect.forkIn(scope),
      )
      sleeper = { id, fiber, untilMs: earliestMs }
    })

    /** The replies that arrived together, each stepped into the client it is for. */
    const receive = (received: ReadonlyArray<Datagram.Received>) =>
      batch((nowMs) => {
        for (const { from, bytes } of received) {
          const where = `${from.host}:${from.port}`
          const server = serverAt.get(where)
          if (server === undefined) {
            dropped.push({ reason: "UnknownSender", from: where })
            continue
          }
          const payload = unverifiedPayload(!insecure, bytes)
          const decoded =
            payload === undefined ? undefined : Message.serverReplyCodec.decode(payload)
          if (decoded === undefined || Result.isFailure(decoded)) {
            dropped.push({
              reason: payload === undefined ? "Unauthenticated" : "Undecodable",
              from: server,
            })
            continue
          }
          const id = recipient(decoded.success)
          const client = id === undefined ? undefined : clients.get(id)
          if (client === undefined) {
            dropped.push({ reason: "UnknownRecipient", from: server })
            continue
          }
          const opened = client.sealer.open(server, nowMs, bytes)
          if ("dropped" in opened) {
            dropped.push({ reason: opened.dropped, from: server })
            continue
          }
          step(client, { _tag: "Receive", from: server, message: decoded.success, nowMs }, nowMs)
        }
      })

    yield* Stream.runForEachArray(endpoint.messages, receive).pipe(Effect.forkScoped)
    if (endpoint.unreachable !== undefined) {
      // Every client heading for the closed server walks past it in the same batch.
      yield* Stream.runForEach(endpoint.unreachable, (address) => {
        const server = serverAt.get(`${address.host}:${address.port}`)
        if (server === undefined) return Effect.void
        return batch((nowMs) => {
          const command: Input = {
            _tag: "Command",
            command: { _tag: "Unreachable", server },
            nowMs,
          }
          for (const client of clients.values())
            if (client.state.target === server) step(client, command, nowMs)
        })
      }).pipe(Effect.forkScoped)
    }
    yield* Effect.addFinalizer(() =>
      sleeper === undefined ? Effect.void : Fiber.interrupt(sleeper.fiber),
    )

    const add = (member: Member): Effect.Effect<Running, PoolInvalidConfig> =>
      Effect.gen(function* () {
        const decoded = ClientSettings.decode(member)
        if (Result.isFailure(decoded)) return yield* decoded.failure
        const client: Driven = {
          id: member.id,
          machine: ClientSettings.machine(member, decoded.success, serverIds),
          state: undefined as unknown as ClientMachine.State,
          sealer: Authentication.sealer(authentication, member.id, yield* Clock.currentTimeMillis),
          events: yield* PubSub.sliding<ClientMachine.Event>(eventsCapacity),
          onStep: member.onStep,
          timers: new Map(),
        }
        // Checked in the batch that adds it: two adds of one id cannot both find it free.
        const added = yield* batch((nowMs) => {
          if (clients.has(member.id)) return false
          clients.set(member.id, client)
          step(client, { _tag: "Init", nowMs }, nowMs)
          return true
        })
        if (!added) {
          yield* PubSub.shutdown(client.events)
          return yield* Effect.die(new Error(`a client named ${member.id} is in the group already`))
        }
        return {
          events: Stream.fromPubSub(client.events),
          state: Effect.sync(() => client.state),
          release: batch((nowMs) =>
            step(client, { _tag: "Command", command: { _tag: "Release" }, nowMs }, nowMs),
          ),
          address: endpoint.address,
          stop: Effect.andThen(
            batch(() => {
              if (clients.get(member.id) !== client) return
              clients.delete(member.id)
              for (const key of client.timers.values()) timers.cancel(key)
            }),
            PubSub.shutdown(client.events),
          ),
        }
      })

    return { address: endpoint.address, add, size: Effect.sync(() => clients.size) }
  })

/**
 * Starts a group and `clients` in it, one after another.
 *
 * @since 0.1.0
 * @category constructors
 */
export const runMany = (
  options: Options & { readonly clients: ReadonlyArray<Member> },
): Effect.Effect<
  { readonly group: Group; readonly clients: ReadonlyArray<Running> },
  TransportError.ListenError | PoolInvalidConfig,
  Datagram.Datagram | Scope.Scope
> =>
  Effect.gen(function* () {
    const group = yield* run(options)
    const clients = yield* Effect.forEach(options.clients, group.add)
    return { group, clients }
  })
