/**
 * The step loop and timer driver every `Runner` link kind shares: one inbox of inputs, one
 * serial loop that steps the machine and performs its outputs in order, one sleeper on the
 * Effect `Clock` for the earliest timer of its `TimerTable`. How messages reach a peer and
 * arrive from one is the link's business (datagrams, stream connections); the link hands
 * arrivals to `receive`.
 *
 * A command given while the node is idle (no step running, nothing in the inbox) is stepped
 * at once in its caller's fiber, not queued for the loop: the queue round trip (an offer, the
 * loop's wake-up, a `Deferred` back) is a few turns of the event loop on every command. Steps
 * stay one at a time and in the order their inputs were given: the loop waits for a caller's
 * step before it steps what it took, and a caller finding anything queued queues behind it.
 */
import {
  Cause,
  Clock,
  Deferred,
  Effect,
  Exit,
  Fiber,
  Latch,
  PubSub,
  Queue,
  type Scope,
  Stream,
} from "effect"
import * as Machine from "../Machine.ts"
import type { Node, Settings } from "../Runner.ts"
import { TimerTable } from "../TimerTable.ts"

/** How the loop reaches peers. `send` never fails: the link logs what it cannot send. */
export interface Link<Message> {
  readonly send: (to: Machine.NodeId, message: Message) => Effect.Effect<void>
  /** Who `Broadcast` goes to, at the time of the step. */
  readonly peers: () => Iterable<Machine.NodeId>
}

/** A running loop: the node, and where its link delivers what arrived. */
export interface Loop<State, Message, C, E> {
  readonly node: Node<State, C, E>
  /** Queues a received message; suspends while the inbox is full. */
  readonly receive: (from: Machine.NodeId, message: Message) => Effect.Effect<void>
}

type Commands<C> = readonly [C, ...Array<C>]

type Item<Message, C> =
  | { readonly _tag: "Receive"; readonly from: Machine.NodeId; readonly message: Message }
  | {
      readonly _tag: "Command"
      readonly commands: Commands<C>
      readonly done: Deferred.Deferred<void>
    }
  // Timer sleeper number `sleeper` woke up: fire whatever is due.
  | { readonly _tag: "Tick"; readonly sleeper: number }

/**
 * Runs `init`, then steps the machine until the scope closes. `init`'s outputs are performed
 * by the loop (`initOutputs: "loop"`), or before this returns (`"before-return"`: a driver
 * that goes on at once with what `init` did, as a supervisor taking over does).
 */
export const start = <State, Message, C, E>(
  machine: Machine.Machine<State, Message, C, E>,
  settings: Settings<State, Message, C, E>,
  peers: ReadonlyArray<Machine.NodeId>,
  link: Link<Message>,
  initOutputs: "loop" | "before-return",
): Effect.Effect<Loop<State, Message, C, E>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { self, onStep, onEvent } = settings
    const scope = yield* Effect.scope
    const inbox = yield* Queue.bounded<Item<Message, C>>(settings.inboxCapacity ?? 1024)
    const inputsPerStepMax = settings.inputsPerStepMax ?? 64
    if (!Number.isInteger(inputsPerStepMax) || inputsPerStepMax < 1)
      return yield* Effect.die(new RangeError(`inputsPerStepMax must be a positive integer`))
    const events = yield* PubSub.bounded<E>(settings.eventsCapacity ?? 1024)

    let state: State
    // Touched by one step at a time (see `loopHolds` below): the loop's, or a command's stepped
    // in its caller's fiber; `init`'s comes before either.
    const timers = new TimerTable<string>()
    let sleeper:
      | { readonly id: number; readonly fiber: Fiber.Fiber<void>; readonly untilMs: number }
      | undefined
    let sleeperCount = 0

    // Keeps exactly one sleeper, due no later than the earliest timer.
    const reschedule = Effect.gen(function* () {
      const earliestMs = timers.next()
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
        // In the scope, not a child: `init`'s timers may be armed before the loop runs.
        Effect.forkIn(scope),
      )
      sleeper = { id, fiber, untilMs: earliestMs }
    })

    const perform = (outputs: ReadonlyArray<Machine.Output<Message, E>>, nowMs: number) =>
      Effect.gen(function* () {
        let timersChanged = false
        for (const output of outputs) {
          switch (output._tag) {
            case "Send":
              yield* link.send(output.to, output.message)
              break
            case "Broadcast":
              for (const peer of [...link.peers()]) yield* link.send(peer, output.message)
              break
            case "SetTimer":
              timers.set(output.timer, nowMs + Math.max(0, output.afterMs))
              timersChanged = true
              break
            case "CancelTimer":
              timersChanged = timers.cancel(output.timer) || timersChanged
              break
            case "Emit":
              yield* PubSub.publish(events, output.event)
              if (onEvent !== undefined) yield* onEvent(output.event)
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

    /** The inputs of one step of `commands`, all at `nowMs`. */
    const commandInputs = ([first, ...rest]: Commands<C>, nowMs: number) =>
      [
        Machine.command(first, nowMs),
        ...rest.map((command) => Machine.command(command, nowMs)),
      ] as const

    /** What a step's death logs; an interruption is no defect. */
    const logDefect = (cause: Cause.Cause<unknown>) =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.void
        : Effect.logError("the node stopped on a defect", Cause.pretty(cause))

    const fireDue = (nowMs: number) =>
      Effect.gen(function* () {
        sleeper = undefined
        let changed = true
        // Each fired timer's step may set or cancel timers, so look again after each one.
        // Bounded, because a machine that keeps setting 0 ms timers would never stop here;
        // what is left fires at the next tick, which the reschedule below arms at once.
        for (let fired = 0; fired < 10_000; fired++) {
          const due = timers.due(nowMs)
          if (due === undefined) break
          changed = (yield* applyStep([Machine.timerFired(due, nowMs)])) || changed
        }
        return changed
      })

    const loop = Effect.gen(function* () {
      const item = yield* Queue.take(inbox)
      loopHolds = true
      // A caller's step began before this item was taken, so its input was given first.
      while (callerStepping) yield* callerDone.await
      const nowMs = yield* Clock.currentTimeMillis
      let timersChanged: boolean
      switch (item._tag) {
        case "Receive":
          timersChanged = yield* applyStep([Machine.receive(item.from, item.message, nowMs)])
          break
        case "Command": {
          stepping = item.done
          timersChanged = yield* applyStep(commandInputs(item.commands, nowMs))
          stepping = undefined
          yield* Deferred.succeed(item.done, undefined)
          break
        }
        case "Tick":
          // A tick of a sleeper replaced after it woke is stale: the current one will come.
          timersChanged = sleeper?.id === item.sleeper ? yield* fireDue(nowMs) : false
          break
      }
      if (timersChanged) yield* reschedule
      loopHolds = false
    }).pipe(Effect.forever)

    // One step at a time, whoever runs it. `loopHolds`: the loop took an input and has not
    // finished its step (from the start, in "loop" mode, until `init`'s outputs are
    // performed). `callerStepping`: a command is being stepped in its caller's fiber;
    // `callerDone` opens when it is not, for the loop to wait on.
    let loopHolds = initOutputs === "loop"
    let callerStepping = false
    const callerDone = Latch.makeUnsafe(true)
    // A defect of a step run in a caller's fiber: the node stopped on it, and `join` dies with it.
    let callerDefect: Cause.Cause<never> | undefined

    // The command being stepped: its caller is interrupted too if the node stops meanwhile.
    let stepping: Deferred.Deferred<void> | undefined
    let stopped = false
    // Whoever waits for a command that will never be stepped is interrupted, not left hanging.
    // Run when the loop ends, and by the scope: a loop interrupted before its first turn
    // never runs its own `ensuring`.
    const stop = Effect.gen(function* () {
      if (stopped) return
      stopped = true
      if (sleeper !== undefined) yield* Fiber.interrupt(sleeper.fiber)
      if (stepping !== undefined) yield* Deferred.interrupt(stepping)
      for (const item of yield* Queue.clear(inbox)) {
        if (item._tag === "Command") yield* Deferred.interrupt(item.done)
      }
      yield* Queue.shutdown(inbox)
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
    const performInit = Effect.gen(function* () {
      if (yield* perform(initial.outputs, initNowMs)) yield* reschedule
    })
    if (initOutputs === "before-return") yield* performInit
    // The loop stops the sleeper when it stops, so timers die with it.
    const loopFiber = yield* Effect.gen(function* () {
      if (initOutputs === "loop") {
        yield* performInit
        loopHolds = false
      }
      return yield* loop
    }).pipe(Effect.tapCause(logDefect), Effect.ensuring(stop), Effect.forkScoped)
    yield* Effect.addFinalizer(() => stop)

    /** Queues one step of `commands` and waits until the loop stepped and performed it. */
    const queueCommands = (commands: Commands<C>) =>
      Effect.gen(function* () {
        const done = yield* Deferred.make<void>()
        const queued = yield* Queue.offer(inbox, { _tag: "Command", commands, done })
        if (!queued) return yield* Effect.interrupt
        yield* Deferred.await(done)
      })

    /**
     * Steps `commands` in the caller's fiber, `callerStepping` set by the caller. Not
     * interruptible: a step half performed (its timers not armed, half its sends gone)
     * would leave the node inconsistent, so a caller interrupted meanwhile stops waiting
     * only once the step is whole, as when the loop stepped it. A defect stops the node.
     */
    const stepInCaller = (commands: Commands<C>) =>
      Effect.gen(function* () {
        const nowMs = yield* Clock.currentTimeMillis
        // After a stop, the sleeper's scope is closing: no timer is armed any more.
        if ((yield* applyStep(commandInputs(commands, nowMs))) && !stopped) yield* reschedule
      }).pipe(
        Effect.annotateLogs({ node: self }),
        Effect.exit,
        Effect.flatMap((exit) => {
          if (Exit.isSuccess(exit)) {
            callerStepping = false
            callerDone.openUnsafe()
            return Effect.void
          }
          // As when the loop's step dies: the node stops and `join` dies with the cause.
          // `callerStepping` stays set, so the loop steps nothing more meanwhile.
          callerDefect = exit.cause
          return Effect.gen(function* () {
            yield* logDefect(exit.cause)
            yield* stop
            yield* Fiber.interrupt(loopFiber)
            return yield* Effect.interrupt
          })
        }),
      )

    /** One step of `commands`, at once when the node is idle, else behind what is queued. */
    const stepCommands = (commands: ReadonlyArray<C>) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          if (stopped) return Effect.interrupt
          if (!isNonEmpty(commands)) return Effect.void
          if (callerStepping || loopHolds || Queue.sizeUnsafe(inbox) > 0)
            return restore(queueCommands(commands))
          // Decided and claimed in one synchronous stretch: no other fiber runs between.
          callerStepping = true
          callerDone.closeUnsafe()
          return stepInCaller(commands)
        }),
      )

    const node: Node<State, C, E> = {
      self,
      state: Effect.sync(() => state),
      events: Stream.fromPubSub(events),
      join: Effect.flatMap(Fiber.await(loopFiber), (exit) =>
        callerDefect === undefined ? exit : Effect.failCause(callerDefect),
      ),
      command: (command: C) => stepCommands([command]),
      commandAll: (commands: ReadonlyArray<C>) =>
        Effect.gen(function* () {
          for (let first = 0; first < commands.length; first += inputsPerStepMax)
            yield* stepCommands(commands.slice(first, first + inputsPerStepMax))
        }),
    }
    return {
      node,
      receive: (from, message) =>
        Effect.asVoid(Queue.offer(inbox, { _tag: "Receive", from, message })),
    }
  })

const isNonEmpty = <A>(items: ReadonlyArray<A>): items is readonly [A, ...Array<A>] =>
  items.length > 0
