/**
 * The endpoint's driver (see `Endpoint`): binds the socket, runs the endpoint machine
 * (`src/Machine.ts`, which decides what the endpoint does with each packet, command and timer)
 * under one lock per endpoint, keeps each association's entry (its queues, waiters and
 * handle), runs the hooks, performs the machine's outputs and serves the handles. Its
 * timers are `timers.ts`.
 */
import { Address, Datagram, type TransportError } from "@understudy/transport"
import {
  type Cause,
  Clock,
  Deferred,
  Duration,
  Effect,
  Metric,
  Queue,
  Result,
  type Scope,
  Semaphore,
  Stream,
} from "effect"
import * as Association from "../../Association.ts"
import * as Cookie from "../../Cookie.ts"
import type {
  AssociationHandle,
  CloseReason,
  ConnectOptions,
  Endpoint,
  Message,
  Options,
  Stats,
} from "../../Endpoint.ts"
import * as Listener from "../../Listener.ts"
import * as EndpointMachine from "../../Machine.ts"
import * as Metrics from "../../Metrics.ts"
import * as Packet from "../../Packet.ts"
import { lte32 } from "../../Serial.ts"
import { canonicalHost } from "../association-support.ts"
import { interfaceAddresses, isSpecificIp, LoopbackAliases } from "./aliases.ts"
import { AssociationConnectError, AssociationError, type EndpointConfigError } from "./errors.ts"
import { associationConfig, Count, decodeOption, PositiveDuration } from "./options.ts"
import { makeTimers, type TimerKey } from "./timers.ts"

interface Entry {
  readonly id: number
  readonly state: Association.State
  readonly handle: AssociationHandle
  readonly peer: { readonly host: string; readonly udpPort: number; readonly port: number }
  gone: boolean
  readonly timers: Map<string, TimerKey>
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
  /** Its entry (a new association's is set by `enter`, right after the machine's step). */
  entry: Entry
  readonly created: boolean
  /** The time of its inputs: its `SetTimer`s count from it, however long they are held. */
  readonly nowMs: number
  readonly inputs: Array<Association.Input>
  readonly outputs: Array<Association.Output>
}

const defaultBacklog = 128
const defaultQueuedMessagesMax = 65_536
const defaultQueuedEventsMax = 4_096

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
    const decoded = associationConfig(
      {
        ...Association.defaultConfig,
        // Bound to one IP, list it: a peer then answers at it even when our packets leave
        // from another address, and never applies its own `loopbackAlias` to us.
        localAddresses: isSpecificIp(options.bind.host) ? [canonicalHost(options.bind.host)] : [],
      },
      options.config,
    )
    if (Result.isFailure(decoded)) return yield* Effect.fail(decoded.failure)
    const config: Association.Config = { ...decoded.success, localPort: options.port }
    const hooks = options.hooks
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

    const accepted = yield* Queue.bounded<AssociationHandle, Cause.Done>(backlog)

    /** Each association's entry, by the machine's id, until it is gone. */
    const all = new Map<number, Entry>()
    const aliasing = options.loopbackAliasing ?? true
    const hostAddresses = aliasing ? (options.hostAddresses ?? interfaceAddresses()) : []
    const aliases = new LoopbackAliases(hostAddresses, () => drop("AliasTableFull"))
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

    // The Listener's seed is the first drawn from the endpoint's, the associations' the next
    // ones: a seeded endpoint's tags, TSNs and cookie secrets replay.
    const listenerSeed =
      options.seed === undefined ? undefined : EndpointMachine.drawSeed(options.seed)
    const machine = EndpointMachine.makeState({
      config,
      listening: options.listen ?? false,
      listener: Listener.makeListener(
        config,
        listenerSeed ?? "crypto",
        yield* Clock.currentTimeMillis,
      ),
      seed: listenerSeed,
      handler: options.handler,
      aliasing: aliasing ? { table: aliases, hostAddresses } : undefined,
    })

    const socket = yield* datagram.bind(options.bind)

    // ---- association entries ----

    /** The entry of the machine's new association `id`. */
    const register = (id: number, peer: Association.PeerAddress): Effect.Effect<Entry> =>
      Effect.gen(function* () {
        const state = machine.associations.get(id)!
        const messages = yield* Queue.bounded<Message, Cause.Done>(queuedMessagesMax)
        const events = yield* Queue.sliding<Association.Event, Cause.Done>(queuedEventsMax)
        const closed = yield* Deferred.make<CloseReason>()
        const up = yield* Deferred.make<void, CloseReason>()
        const entry: Entry = {
          id,
          state,
          peer: { host: peer.host, udpPort: peer.udpPort, port: Association.peerPort(state) },
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
        aliases.release(entry.id)
        timers.stopAll(entry)
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

    const timers = makeTimers<Entry>({
      scope,
      serialised,
      ended,
      expire: (entry, name, nowMs) =>
        decide(nowMs, (sink) => EndpointMachine.timer(machine, entry.id, name, nowMs, sink)),
    })

    /** Datagrams encoded and not yet handed to the socket (see `flush`). */
    let outbox: Array<{ readonly to: Address.Udp; readonly bytes: Uint8Array }> = []

    const transmit = (to: Association.PeerAddress, packet: Packet.Packet, via?: string): void => {
      const bytes = Packet.encode(packet)
      const host = via ?? aliases.hostFor(to)
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
          // With a handler the message was answered already, in the machine's step.
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
    const perform = (update: Update): Effect.Effect<void> => {
      const { entry, outputs, nowMs } = update
      const from = (start: number): Effect.Effect<void> => {
        for (let index = start; index < outputs.length; index++) {
          const output = outputs[index]!
          let effect: Effect.Effect<void> | undefined
          switch (output._tag) {
            case "Send":
              retransmitted += countRetransmissions(entry, output.message)
              transmit(output.to, output.message)
              break
            case "SetTimer":
              if (!entry.gone) effect = timers.set(entry, output.timer, nowMs + output.afterMs)
              break
            case "CancelTimer":
              timers.cancel(entry, output.timer)
              break
            case "Emit":
              effect = onEvent(entry, output.event)
              break
            case "Broadcast":
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
          yield* perform(next.update)
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
          yield* perform(update)
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
     * Collects the machine's decisions per association, in the order first stepped: one
     * update each, for the hooks and `perform`. The endpoint's own packets go to the outbox.
     */
    const collector = (nowMs: number) => {
      const updates: Array<Update> = []
      const byId = new Map<number, Update>()
      /** The associations the machine made, waiting for their entries (see `enter`). */
      const made: Array<{
        readonly id: number
        readonly origin: EndpointMachine.Origin
        readonly peer: Association.PeerAddress
      }> = []
      const sink: EndpointMachine.Sink = {
        created: (id, origin, peer) => {
          made.push({ id, origin, peer })
        },
        stepped: (id, created, input, outputs) => {
          let update = byId.get(id)
          if (update === undefined) {
            // A new association has no entry yet: `enter` sets it.
            update = { entry: all.get(id) as Entry, created, nowMs, inputs: [], outputs: [] }
            byId.set(id, update)
            updates.push(update)
          }
          if (input !== undefined) update.inputs.push(input)
          for (const output of outputs) update.outputs.push(output)
        },
        transmit,
        dropped: drop,
      }
      return { nowMs, sink, updates, byId, made }
    }
    type Collector = ReturnType<typeof collector>

    /**
     * Right after a step of the machine: each association it made gets its entry (an
     * accepted one goes to `accept`, or is aborted when the backlog is full).
     */
    const enter = Effect.fnUntraced(function* (collected: Collector) {
      for (const { id, origin, peer } of collected.made.splice(0)) {
        const entry = yield* register(id, peer)
        const update = collected.byId.get(id)
        if (update !== undefined) update.entry = entry
        if (origin !== "Accepted" || Queue.offerUnsafe(accepted, entry.handle)) continue
        drop("BacklogFull")
        entry.ending = { _tag: "Aborted", by: "us", reason: "backlog full" }
        EndpointMachine.command(
          machine,
          id,
          { _tag: "Abort", reason: "backlog full" },
          collected.nowMs,
          collected.sink,
        )
      }
    })

    /**
     * Steps the machine (`step` gives it the sink), then releases what it decided: the
     * outputs of the first association stepped (a command's or a timer's own).
     */
    const decide = Effect.fnUntraced(function* (
      nowMs: number,
      step: (sink: EndpointMachine.Sink) => unknown,
    ) {
      const collected = collector(nowMs)
      step(collected.sink)
      if (collected.made.length > 0) yield* enter(collected)
      yield* release(collected.updates)
      return collected.updates[0]?.outputs
    })

    const commandSteps = Effect.fnUntraced(function* (entry: Entry, cmd: Association.Command) {
      if (ended(entry)) return undefined
      const nowMs = yield* Clock.currentTimeMillis
      return yield* decide(nowMs, (sink) =>
        EndpointMachine.command(machine, entry.id, cmd, nowMs, sink),
      )
    })
    const command = (entry: Entry, cmd: Association.Command, lockIt = true) =>
      lockIt ? serialised(commandSteps(entry, cmd)) : commandSteps(entry, cmd)

    // ---- receiving ----

    const receiveBatch = Effect.fnUntraced(function* (batch: ReadonlyArray<Datagram.Received>) {
      const nowMs = yield* Clock.currentTimeMillis
      const collected = collector(nowMs)
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
          message: packet,
          bytes: received.bytes,
          nowMs,
        }
        const intercept = options.intercept
        if (!EndpointMachine.receive(machine, input, collected.sink, intercept !== undefined)) {
          const consumed = yield* intercept!({ from, packet, bytes: received.bytes })
          if (consumed) continue
          EndpointMachine.unclaimed(machine, input, collected.sink)
        }
        if (collected.made.length > 0) yield* enter(collected)
      }
      yield* flush
      yield* release(collected.updates)
    })

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
          (output) => output._tag === "Emit" && output.event._tag === "SendFailed",
        )
        if (failed !== undefined && failed._tag === "Emit" && failed.event._tag === "SendFailed") {
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
              (output) => output._tag === "Emit" && output.event._tag === "Dropped",
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
            let id = 0
            yield* decide(nowMs, (sink) => {
              id = EndpointMachine.connect(
                machine,
                {
                  _tag: "Connect",
                  peer: { host: connectOptions.host, udpPort: connectOptions.udpPort },
                  peerPort: connectOptions.port,
                  ...(connectOptions.peerAddresses !== undefined
                    ? { peerAddresses: connectOptions.peerAddresses }
                    : {}),
                },
                nowMs,
                sink,
              )
            })
            return all.get(id)!
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
              // Only its packets: the endpoint is closing, no hook or timer runs any more.
              EndpointMachine.command(
                machine,
                entry.id,
                { _tag: "Abort", reason: "endpoint closed" },
                nowMs,
                {
                  created: () => {},
                  stepped: (_id, _created, _input, outputs) => {
                    for (const output of outputs) {
                      if (output._tag === "Send") transmit(output.to, output.message)
                    }
                  },
                  transmit,
                  dropped: drop,
                },
              )
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
          const status = Association.stateName(state)
          // Up already (unless still opening): its entry's `up` completes before its outputs
          // are performed, as for an association that reached CommUp here.
          const up = status !== "CookieWait" && status !== "CookieEchoed"
          const takeOver = adoptOptions?.takeOver ?? Association.takeOver
          const collected = collector(nowMs)
          const id = EndpointMachine.adopt(machine, state, takeOver, nowMs, collected.sink)
          yield* enter(collected)
          const entry = all.get(id)!
          if (up) yield* Deferred.succeed(entry.up, undefined)
          yield* release(collected.updates)
          return entry.handle
        }),
      )

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
      aliases: Effect.sync(() => aliases.list()),
      addAliases: (list) =>
        Effect.sync(() => {
          for (const alias of list) aliases.add(alias, undefined)
        }),
      listenerSecrets: serialised(Effect.sync(() => machine.listener.cookieSecrets.snapshot())),
      adoptListenerSecrets: (secrets) =>
        serialised(
          Effect.sync(() => {
            machine.listener = {
              ...machine.listener,
              cookieSecrets: Cookie.CookieSecrets.restore(secrets),
            }
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
