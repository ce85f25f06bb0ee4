import { describe, expect, it } from "@effect/vitest"
import { Address, SimNet, Transport } from "@understudy/transport"
import { Cause, Deferred, Effect, Exit, Queue, Random, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Machine from "../src/Machine.ts"
import * as Runner from "../src/Runner.ts"
import { codec, type Wire } from "./support/wire.ts"

type Command =
  | { readonly _tag: "Joined"; readonly ids: ReadonlyArray<string> }
  | { readonly _tag: "Ended"; readonly id: string; readonly reason: string }
  | { readonly _tag: "Shout"; readonly n: number }
  | { readonly _tag: "Later"; readonly afterMs: number }
  | { readonly _tag: "Note"; readonly n: number }

type Event = { readonly _tag: "Log"; readonly line: string }

const log = (line: string) => Machine.emit<Event>({ _tag: "Log", line })

/** A hub: answers pings over the connection they came on, shouts to all, logs everything. */
const hub: Machine.Machine<number, Wire, Command, Event> = {
  init: ({ self, peers }) => Machine.result(0, [log(`init ${self} [${peers.join(",")}]`)]),
  step: (steps, input) => {
    const next = steps + 1
    switch (input._tag) {
      case "Receive":
        return Machine.result(next, [
          log(`receive ${input.message._tag} ${input.message.n} from ${input.from}`),
          ...(input.message._tag === "Ping"
            ? [Machine.send<Wire>(input.from, { _tag: "Pong", n: input.message.n })]
            : []),
        ])
      case "TimerFired":
        return Machine.result(next, [log(`fired ${input.timer} at ${input.nowMs}`)])
      case "Command": {
        const c = input.command
        switch (c._tag) {
          case "Joined":
            return Machine.result(next, [log(`joined ${c.ids.join(",")}`)])
          case "Ended":
            return Machine.result(next, [log(`ended ${c.id} ${c.reason}`)])
          case "Shout":
            return Machine.result(next, [Machine.broadcast<Wire>({ _tag: "Ping", n: c.n })])
          case "Later":
            return Machine.result(next, [Machine.setTimer("later", c.afterMs)])
          case "Note":
            return Machine.result(next, [log(`note ${c.n}`)])
        }
      }
    }
  },
}

const hubAddress = Address.tcp("hub", 7000)

/** A hub on host "hub" whose events land in `lines`, in order, as the loop performs them. */
const startHub = (net: SimNet.SimNet, lines: Array<string>, inputsPerStepMax?: number) =>
  Effect.gen(function* () {
    const attached = yield* Queue.unbounded<ReadonlyArray<string>>()
    const started = yield* Queue.unbounded<Runner.Connections<number, Wire, Command, Event>>()
    yield* net.run(
      "hub",
      Effect.gen(function* () {
        const transport = yield* Transport.Transport
        const listener = yield* transport.listen(hubAddress, { codec })
        const node = yield* Runner.runConnections(hub, {
          self: "hub",
          closed: (id, reason) => ({ _tag: "Ended", id, reason: reason._tag }) as const,
          onEvent: (event) => Effect.sync(() => lines.push(event.line)),
          ...(inputsPerStepMax === undefined ? {} : { inputsPerStepMax }),
        })
        // `init` was performed before `runConnections` returned.
        lines.push(`returned after ${lines.length} line(s)`)
        yield* Queue.offer(started, node)
        yield* Stream.runForEach(listener.connections, (connection) =>
          Effect.flatMap(
            node.attach([connection], (ids) => [{ _tag: "Joined", ids }]),
            (ids) => Queue.offer(attached, ids),
          ),
        )
      }),
    )
    yield* TestClock.adjust(0)
    return { attached, node: yield* Queue.take(started) }
  })

/** A client on `host` that sends `Ping n` once connected; what it receives lands in `lines`. */
const startClient = (net: SimNet.SimNet, host: string, n: number, lines: Array<string>) =>
  net.run(
    host,
    Effect.gen(function* () {
      const transport = yield* Transport.Transport
      const connection = yield* transport.connect(hubAddress, { codec })
      yield* connection.send({ _tag: "Ping", n })
      yield* Stream.runForEach(connection.messages, (message) =>
        Effect.sync(() => lines.push(`${host} got ${message._tag} ${message.n}`)),
      )
    }),
  )

describe("Runner over connections", () => {
  it.effect(
    "steps each attachment before what it carries, answers over the connection, broadcasts, steps the end",
    () =>
      Effect.gen(function* () {
        const net = yield* SimNet.make({ link: { latency: SimNet.fixed(1) } })
        const lines: Array<string> = []
        const { attached, node } = yield* startHub(net, lines)
        expect(lines).toEqual(["init hub []", "returned after 1 line(s)"])

        const received: Array<string> = []
        yield* startClient(net, "x", 1, received)
        yield* TestClock.adjust(10)
        const [idX] = yield* Queue.take(attached)
        yield* startClient(net, "y", 2, received)
        yield* TestClock.adjust(10)
        const [idY] = yield* Queue.take(attached)
        expect([idX, idY]).toEqual(["hub/1", "hub/2"])
        expect(lines.slice(2)).toEqual([
          "joined hub/1",
          "receive Ping 1 from hub/1",
          "joined hub/2",
          "receive Ping 2 from hub/2",
        ])
        expect(received).toEqual(["x got Pong 1", "y got Pong 2"])

        yield* node.command({ _tag: "Shout", n: 3 })
        yield* TestClock.adjust(10)
        expect(received.slice(2).sort()).toEqual(["x got Ping 3", "y got Ping 3"])

        yield* net.crash("x")
        yield* TestClock.adjust(10)
        expect(lines.at(-1)).toBe("ended hub/1 Reset")
        // The ended connection is forgotten: a broadcast reaches only y.
        expect(node.connection("hub/1")).toBeUndefined()
        expect(node.connection("hub/2")).toBeDefined()
        yield* node.command({ _tag: "Shout", n: 4 })
        yield* TestClock.adjust(10)
        expect(received.slice(4)).toEqual(["y got Ping 4"])
      }).pipe(Random.withSeed(1)),
  )

  it.effect(
    "runs the shared loop: timers on the clock, inputsPerStepMax, stops with its scope",
    () =>
      Effect.gen(function* () {
        const lines: Array<string> = []
        const steps: Array<number> = []
        yield* Effect.scoped(
          Effect.gen(function* () {
            const node = yield* Runner.runConnections(hub, {
              self: "hub",
              inputsPerStepMax: 2,
              onStep: (info) => Effect.sync(() => steps.push(info.inputs?.length ?? 1)),
              onEvent: (event) => Effect.sync(() => lines.push(event.line)),
            })
            yield* node.command({ _tag: "Later", afterMs: 100 })
            yield* node.commandAll([1, 2, 3, 4, 5].map((n) => ({ _tag: "Note", n }) as const))
            yield* TestClock.adjust(100)
            expect(lines).toEqual([
              "init hub []",
              "note 1",
              "note 2",
              "note 3",
              "note 4",
              "note 5",
              "fired later at 100",
            ])
            // init, Later, three groups of at most 2 notes, the timer.
            expect(steps).toEqual([1, 1, 2, 2, 1, 1])
            expect(yield* node.state).toBe(7)
            yield* node.command({ _tag: "Later", afterMs: 100 })
          }),
        )
        yield* TestClock.adjust(1_000)
        expect(lines.at(-1)).toBe("fired later at 100")
      }),
  )

  it.effect(
    "a finalizer set up after start steps with its connections still attached (a goodbye reaches them)",
    () =>
      Effect.gen(function* () {
        const net = yield* SimNet.make({ link: { latency: SimNet.fixed(1) } })
        const stop = yield* Deferred.make<void>()
        yield* net.run(
          "hub",
          Effect.scoped(
            Effect.gen(function* () {
              const transport = yield* Transport.Transport
              const listener = yield* transport.listen(hubAddress, { codec })
              const node = yield* Runner.runConnections(hub, { self: "hub" })
              // Registered before any connection is attached, as a server's goodbye is.
              yield* Effect.addFinalizer(() => node.command({ _tag: "Shout", n: 9 }))
              const [connection] = yield* Stream.runCollect(Stream.take(listener.connections, 1))
              yield* node.attach([connection!])
              yield* Deferred.await(stop)
            }),
          ),
        )
        const received: Array<string> = []
        yield* startClient(net, "x", 1, received)
        yield* TestClock.adjust(10)
        expect(received).toEqual(["x got Pong 1"])
        yield* Deferred.succeed(stop, undefined)
        yield* TestClock.adjust(2_000)
        expect(received).toEqual(["x got Pong 1", "x got Ping 9"])
      }).pipe(Random.withSeed(1)),
  )

  it.effect("a command after the scope closed is interrupted, even when the loop never ran", () =>
    Effect.gen(function* () {
      // The scope closes before the loop's fiber got its first turn: nothing else stops
      // the inbox, so without the scope's own stop this command would wait for ever.
      const scope = yield* Scope.make()
      const node = yield* Runner.runConnections(hub, { self: "hub" }).pipe(Scope.provide(scope))
      yield* Scope.close(scope, Exit.void)
      const late = yield* Effect.exit(node.command({ _tag: "Note", n: 1 }))
      expect(Exit.isFailure(late) && Cause.hasInterruptsOnly(late.cause)).toBe(true)
    }),
  )
})
