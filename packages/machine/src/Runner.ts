/**
 * Runs one instance of a `Machine` over the `Datagram` service and the Effect `Clock`: the
 * caller of the pure machine, as `node.go` is for etcd's raft. It binds the node's UDP
 * endpoint, runs `init`, then feeds received messages, fired timers and commands into
 * `step` one at a time, and performs the outputs in order: sends become datagrams, timers
 * become sleeps on `Clock` (so `TestClock` drives them in tests), events go to `events`.
 *
 * Everything it starts lives in the caller's `Scope`: closing it stops the node.
 *
 * Group commit: `commandAll` gives the machine several commands in one step (stepped in turn,
 * `onStep` once for them all, so a driver that persists in `onStep` writes once for the
 * group), at most `inputsPerStepMax` per step; received messages and fired timers that come
 * meanwhile are stepped between the groups, never behind the whole batch.
 *
 * Limits: the inbox holds at most `inboxCapacity` inputs; when it is full the datagram
 * reader stops reading, so the endpoint's own bounded buffer drops new datagrams as a
 * kernel would, and `command` suspends. A datagram that does not decode, comes from an
 * address that is not a peer, or fails authentication (see `Authentication`: a MAC with
 * the cluster key, replay and freshness checks) is dropped, logged and counted in
 * `understudy_runner_datagrams_dropped_total`: a bad peer never stops a node.
 *
 * @since 0.1.0
 */
import type { Address, Codec } from "@understudy/transport"
import { Datagram, type TransportError } from "@understudy/transport"
import {
  Cause,
  Clock,
  Deferred,
  Effect,
  Fiber,
  Metric,
  PubSub,
  Queue,
  Result,
  type Scope,
  Stream,
} from "effect"
import * as Authentication from "./Authentication.ts"
import * as Machine from "./Machine.ts"

/** The pseudo-input of the step that `init` is. @since 0.1.0 @category models */
export interface Init {
  readonly _tag: "Init"
  readonly nowMs: number
}

/**
 * What happened in one step, for observers such as the simulation's invariant checks.
 * `before` is `undefined` for `init`.
 *
 * @since 0.1.0
 * @category models
 */
export interface StepInfo<State, Message, C, E> {
  readonly node: Machine.NodeId
  /** The step's input; for a step of several (see `inputs`), the last of them. */
  readonly input: Init | Machine.Input<Message, C>
  /**
   * A step of several inputs (a group of commands given to `commandAll`): all of them, in
   * order; `before` is the state before the first, `after` after the last, `outputs` all of
   * theirs. Absent when the step took one input, `input`.
   */
  readonly inputs?: ReadonlyArray<Machine.Input<Message, C>>
  readonly before: State | undefined
  readonly after: State
  readonly outputs: ReadonlyArray<Machine.Output<Message, E>>
  readonly nowMs: number
}

/** @since 0.1.0 @category models */
export interface Options<State, Message, C, E> {
  readonly self: Machine.NodeId
  /** The other nodes; `self`, if listed, is left out. */
  readonly peers: ReadonlyArray<Machine.NodeId>
  /** Where each node (this one included) receives its datagrams. */
  readonly addresses:
    | Readonly<Record<Machine.NodeId, Address.Udp>>
    | ((node: Machine.NodeId) => Address.Udp)
  readonly codec: Codec.Codec<Message>
  /**
   * `Authentication.keyed(clusterKey)` (what every member must use alike), or the explicit
   * `Authentication.insecure`, which trusts source addresses and logs a warning.
   */
  readonly authentication: Authentication.Authentication
  /** Inputs waiting to be stepped, at most. Default 1,024. */
  readonly inboxCapacity?: number
  /** Events waiting for a slow `events` reader, at most, before the node waits. Default 1,024. */
  readonly eventsCapacity?: number
  /**
   * Commands one step takes, at most, when given together (`commandAll`). Bounded because
   * the peers' messages and this node's timers wait behind each step: a backlog of thousands
   * taken as one step, with its thousands of outputs (and a durable write in `onStep`), holds
   * a node's heartbeats back long enough for its peers to think it dead. Default 64.
   */
  readonly inputsPerStepMax?: number
  /**
   * Called after every step (and after `init`), before its outputs are performed, inside
   * the node's serial loop: the node waits for it. A failure or defect in it stops the node.
   */
  readonly onStep?: (info: StepInfo<State, Message, C, E>) => Effect.Effect<void>
}

/**
 * A running node.
 *
 * @since 0.1.0
 * @category models
 */
export interface Running<State, C, E> {
  readonly self: Machine.NodeId
  /** The bound address (with the actual port when port 0 was asked for). */
  readonly address: Address.Udp
  /** The machine's current state, for observation. */
  readonly state: Effect.Effect<State>
  /**
   * The events emitted from the moment the stream is started. A reader that falls more than
   * `eventsCapacity` behind slows the node down rather than losing events.
   */
  readonly events: Stream.Stream<E>
  /**
   * Steps the machine with a command; completes once the step ran and its outputs were
   * performed. Interrupted if the node stops first.
   */
  readonly command: (command: C) => Effect.Effect<void>
  /**
   * Steps the machine with several commands, in order, `inputsPerStepMax` at most per step:
   * each step takes its group in turn and calls `onStep` once for it (group commit). The next
   * group is queued once the previous one was stepped, so messages and timers that came
   * meanwhile go between them. Completes once the last group's outputs were performed;
   * interrupted if the node stops first.
   */
  readonly commandAll: (commands: ReadonlyArray<C>) => Effect.Effect<void>
  /**
   * Waits while the node runs. It never succeeds: if `init`, `step` or `onStep` throws or
   * dies, the node stops and this dies with the same defect, so a supervisor sees it.
   */
  readonly join: Effect.Effect<never>
}

type Item<Message, C> =
  | { readonly _tag: "Receive"; readonly from: Machine.NodeId; readonly message: Message }
  | {
      readonly _tag: "Command"
      readonly commands: ReadonlyArray<C>
      readonly done: Deferred.Deferred<void>
    }
  // Timer sleeper number `sleeper` woke up: fire whatever is due.
  | { readonly _tag: "Tick"; readonly sleeper: number }

interface Armed {
  readonly deadlineMs: number
  // Order among timers due at the same time: the one set first fires first.
  readonly order: number
}

const addressKey = (address: Address.Udp): string => `${address.host}:${address.port}`

/**
 * Datagrams a runner dropped, by `reason`: `UnknownSender`, `Undecodable`, or an
 * `Authentication.DropReason`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const datagramsDropped = Metric.counter("understudy_runner_datagrams_dropped_total", {
  description: "Datagrams a machine runner dropped before its machine saw them, by reason",
  incremental: true,
})

const dropped = (reason: string, detail: Record<string, unknown>) =>
  Effect.logWarning("dropping a datagram", { reason, ...detail }).pipe(
    Effect.andThen(Metric.update(Metric.withAttributes(datagramsDropped, { reason }), 1)),
  )

/**
 * Starts the node: binds its endpoint, runs `init`, and steps the machine until the scope
 * closes. Fails only if the endpoint cannot be bound.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Address } from "@understudy/transport"
 * import { Authentication, FailureDetector, Runner } from "@understudy/machine"
 *
 * declare const clusterKey: Uint8Array // e.g. from ClusterKey.readFile
 *
 * const node = Runner.run(FailureDetector.make({ intervalMs: 100, timeoutMs: 500 }), {
 *   self: "a",
 *   peers: ["b"],
 *   addresses: { a: Address.udp("127.0.0.1", 9001), b: Address.udp("127.0.0.1", 9002) },
 *   codec: FailureDetector.codec,
 *   authentication: Authentication.keyed(clusterKey),
 * })
 * ```
 * @since 0.1.0
 * @category constructors
 */
export const run = <State, Message, C, E>(
  machine: Machine.Machine<State, Message, C, E>,
  options: Options<State, Message, C, E>,
): Effect.Effect<
  Running<State, C, E>,
  TransportError.ListenError,
  Datagram.Datagram | Scope.Scope
> =>
  Effect.gen(function* () {
    const { self, codec, onStep } = options
    const peers = options.peers.filter((peer) => peer !== self)
    const resolve =
      typeof options.addresses === "function"
        ? options.addresses
        : (node: Machine.NodeId): Address.Udp => {
            const address = (options.addresses as Readonly<Record<string, Address.Udp>>)[node]
            if (address === undefined) throw new Error(`no address for node ${node}`)
            return address
          }
    const peerAddresses = new Map<Machine.NodeId, Address.Udp>()
    const nodeByAddress = new Map<string, Machine.NodeId>()
    for (const peer of peers) {
      const address = resolve(peer)
      peerAddresses.set(peer, address)
      nodeByAddress.set(addressKey(address), peer)
    }

    const datagram = yield* Datagram.Datagram
    const endpoint = yield* datagram.bind(resolve(self))
    const startedMs = yield* Clock.currentTimeMillis
    const sealer = Authentication.sealer(options.authentication, self, startedMs)
    if (options.authentication._tag === "Insecure") {
      yield* Effect.logWarning(
        "running without a cluster key: any datagram from a member's address is believed",
      )
    }
    const inbox = yield* Queue.bounded<Item<Message, C>>(options.inboxCapacity ?? 1024)
    const inputsPerStepMax = options.inputsPerStepMax ?? 64
    if (!Number.isInteger(inputsPerStepMax) || inputsPerStepMax < 1)
      return yield* Effect.die(new RangeError(`inputsPerStepMax must be a positive integer`))
    const events = yield* PubSub.bounded<E>(options.eventsCapacity ?? 1024)

    let state: State
    // Only the serial loop (and `init` before it starts) touches the timers.
    const timers = new Map<string, Armed>()
    let timerOrder = 0
    let sleeper:
      | { readonly id: number; readonly fiber: Fiber.Fiber<void>; readonly untilMs: number }
      | undefined
    let sleeperCount = 0

    const sendTo = (to: Machine.NodeId, message: Message) =>
      Effect.suspend(() => {
        const address = peerAddresses.get(to)
        if (address === undefined) {
          return Effect.logWarning("dropping a message to an unknown node", { to })
        }
        const encoded = codec.encode(message)
        if (Result.isFailure(encoded)) {
          return Effect.logError("cannot encode an outgoing message", encoded.failure.message)
        }
        return Clock.currentTimeMillis.pipe(
          Effect.flatMap((nowMs) =>
            endpoint.send(address, sealer.seal(to, nowMs, encoded.success)),
          ),
          Effect.catch((error) =>
            Effect.logWarning("datagram not sent", { to, error: error.message }),
          ),
        )
      })

    // Keeps exactly one sleeper, due no later than the earliest timer.
    const reschedule = Effect.gen(function* () {
      let earliestMs: number | undefined
      for (const armed of timers.values()) {
        if (earliestMs === undefined || armed.deadlineMs < earliestMs) earliestMs = armed.deadlineMs
      }
      if (sleeper !== undefined && earliestMs !== undefined && sleeper.untilMs <= earliestMs) {
        // It wakes no later than needed; a stale wake-up finds nothing due and reschedules.
        return
      }
      if (sleeper !== undefined) {
        const previous = sleeper
        sleeper = undefined
        yield* Fiber.interrupt(previous.fiber)
      }
      if (earliestMs === undefined) return
      const nowMs = yield* Clock.currentTimeMillis
      const id = sleeperCount++
      const fiber = yield* Effect.sleep(Math.max(0, earliestMs - nowMs)).pipe(
        Effect.andThen(Queue.offer(inbox, { _tag: "Tick", sleeper: id })),
        Effect.asVoid,
        Effect.forkChild,
      )
      sleeper = { id, fiber, untilMs: earliestMs }
    })

    const perform = (outputs: ReadonlyArray<Machine.Output<Message, E>>, nowMs: number) =>
      Effect.gen(function* () {
        let timersChanged = false
        for (const output of outputs) {
          switch (output._tag) {
            case "Send":
              yield* sendTo(output.to, output.message)
              break
            case "Broadcast":
              for (const peer of peers) yield* sendTo(peer, output.message)
              break
            case "SetTimer":
              timers.set(output.timer, {
                deadlineMs: nowMs + Math.max(0, output.afterMs),
                order: timerOrder++,
              })
              timersChanged = true
              break
            case "CancelTimer":
              timersChanged = timers.delete(output.timer) || timersChanged
              break
            case "Emit":
              yield* PubSub.publish(events, output.event)
              break
          }
        }
        return timersChanged
      })

    /** One step of one input, or of a group of commands taken in turn (`commandAll`). */
    const applyStep = (
      inputs: readonly [Machine.Input<Message, C>, ...Array<Machine.Input<Message, C>>],
    ) =>
      Effect.gen(function* () {
        const before = state
        const next =
          inputs.length === 1
            ? machine.step(before, inputs[0])
            : Machine.stepAll(machine, before, inputs)
        state = next.state
        const input = inputs[inputs.length - 1]!
        if (onStep !== undefined) {
          yield* onStep({
            node: self,
            input,
            ...(inputs.length > 1 ? { inputs } : {}),
            before,
            after: next.state,
            outputs: next.outputs,
            nowMs: input.nowMs,
          })
        }
        return yield* perform(next.outputs, input.nowMs)
      })

    const fireDue = (nowMs: number) =>
      Effect.gen(function* () {
        sleeper = undefined
        let changed = true
        // Each fired timer's step may set or cancel timers, so look again after each one.
        // Bounded, because a machine that keeps setting 0 ms timers would never stop here;
        // what is left fires at the next tick, which the reschedule below arms at once.
        for (let fired = 0; fired < 10_000; fired++) {
          let due: [string, Armed] | undefined
          for (const entry of timers) {
            if (entry[1].deadlineMs > nowMs) continue
            if (
              due === undefined ||
              entry[1].deadlineMs < due[1].deadlineMs ||
              (entry[1].deadlineMs === due[1].deadlineMs && entry[1].order < due[1].order)
            ) {
              due = entry
            }
          }
          if (due === undefined) break
          timers.delete(due[0])
          changed = (yield* applyStep([Machine.timerFired(due[0], nowMs)])) || changed
        }
        return changed
      })

    const loop = Effect.gen(function* () {
      const item = yield* Queue.take(inbox)
      const nowMs = yield* Clock.currentTimeMillis
      let timersChanged: boolean
      switch (item._tag) {
        case "Receive":
          timersChanged = yield* applyStep([Machine.receive(item.from, item.message, nowMs)])
          break
        case "Command": {
          const [first, ...rest] = item.commands.map((command) => Machine.command(command, nowMs))
          timersChanged = first === undefined ? false : yield* applyStep([first, ...rest])
          yield* Deferred.succeed(item.done, undefined)
          break
        }
        case "Tick":
          // A tick of a sleeper replaced after it woke is stale: the current one will come.
          timersChanged = sleeper?.id === item.sleeper ? yield* fireDue(nowMs) : false
          break
      }
      if (timersChanged) yield* reschedule
    }).pipe(Effect.forever)

    let stopped = false
    // Whoever waits for a command that will never be stepped is interrupted, not left hanging.
    const stop = Effect.gen(function* () {
      stopped = true
      for (const item of yield* Queue.clear(inbox)) {
        if (item._tag === "Command") yield* Deferred.interrupt(item.done)
      }
      yield* Queue.shutdown(inbox)
    })

    const receive = (received: Datagram.Received) =>
      Effect.gen(function* () {
        const from = nodeByAddress.get(addressKey(received.from))
        if (from === undefined) {
          return yield* dropped("UnknownSender", {
            from: `${received.from.host}:${received.from.port}`,
          })
        }
        const opened = sealer.open(from, yield* Clock.currentTimeMillis, received.bytes)
        if ("dropped" in opened) return yield* dropped(opened.dropped, { from })
        const decoded = codec.decode(opened.payload)
        if (Result.isFailure(decoded)) {
          return yield* dropped("Undecodable", { from, error: decoded.failure.message })
        }
        yield* Queue.offer(inbox, { _tag: "Receive", from, message: decoded.success })
      })

    const initNowMs = yield* Clock.currentTimeMillis
    const initial = machine.init({ self, peers, nowMs: initNowMs })
    state = initial.state
    if (onStep !== undefined) {
      yield* onStep({
        node: self,
        input: { _tag: "Init", nowMs: initNowMs },
        before: undefined,
        after: initial.state,
        outputs: initial.outputs,
        nowMs: initNowMs,
      })
    }
    // The loop forks the sleeper as its child, so timers die with it.
    const loopFiber = yield* Effect.gen(function* () {
      if (yield* perform(initial.outputs, initNowMs)) yield* reschedule
      return yield* loop
    }).pipe(
      Effect.tapCause((cause) =>
        Cause.hasInterruptsOnly(cause)
          ? Effect.void
          : Effect.logError("the node stopped on a defect", Cause.pretty(cause)),
      ),
      Effect.ensuring(stop),
      Effect.forkScoped,
    )
    yield* Stream.runForEach(endpoint.messages, receive).pipe(Effect.forkScoped)

    /** Queues one step of `commands` and waits until it was stepped and performed. */
    const stepCommands = (commands: ReadonlyArray<C>) =>
      Effect.gen(function* () {
        if (stopped) return yield* Effect.interrupt
        const done = yield* Deferred.make<void>()
        const queued = yield* Queue.offer(inbox, { _tag: "Command", commands, done })
        if (!queued) return yield* Effect.interrupt
        yield* Deferred.await(done)
      })

    return {
      self,
      address: endpoint.address,
      state: Effect.sync(() => state),
      events: Stream.fromPubSub(events),
      join: Fiber.join(loopFiber),
      command: (command: C) => stepCommands([command]),
      commandAll: (commands: ReadonlyArray<C>) =>
        Effect.gen(function* () {
          for (let first = 0; first < commands.length; first += inputsPerStepMax)
            yield* stepCommands(commands.slice(first, first + inputsPerStepMax))
        }),
    }
  }).pipe(Effect.annotateLogs({ node: options.self }))
