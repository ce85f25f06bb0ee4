import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Address, Datagram, SimNet } from "@understudy/transport"
import {
  Cause,
  Clock,
  Deferred,
  Effect,
  Exit,
  Fiber,
  Layer,
  Metric,
  Queue,
  Random,
  Stream,
} from "effect"
import { TestClock } from "effect/testing"
import * as Authentication from "../src/Authentication.ts"
import * as FailureDetector from "../src/FailureDetector.ts"
import * as Loop from "../src/internal/loop.ts"
import * as Machine from "../src/Machine.ts"
import * as Runner from "../src/Runner.ts"
import { codec, type Wire } from "./support/wire.ts"

// A lossless, instant, in-memory datagram network: enough to test the runner's own
// mechanics (timers, ordering, decoding) apart from the network simulator.
const memoryDatagram = Layer.sync(Datagram.Datagram, () => {
  const inboxes = new Map<string, Queue.Queue<Datagram.Received>>()
  const key = (address: Address.Udp) => `${address.host}:${address.port}`
  return Datagram.Datagram.of({
    bind: (address) =>
      Effect.gen(function* () {
        const inbox = yield* Queue.bounded<Datagram.Received>(64)
        inboxes.set(key(address), inbox)
        yield* Effect.addFinalizer(() => Effect.sync(() => inboxes.delete(key(address))))
        return {
          address,
          send: (to, bytes) =>
            Effect.suspend(() => {
              const target = inboxes.get(key(to))
              return target === undefined
                ? Effect.void
                : Queue.offer(target, { from: address, bytes }).pipe(Effect.asVoid)
            }),
          messages: Stream.fromQueue(inbox),
        }
      }),
  })
})

type Command =
  | { readonly _tag: "Set"; readonly timer: string; readonly afterMs: number }
  | { readonly _tag: "Cancel"; readonly timer: string }
  | { readonly _tag: "Ping"; readonly to: string; readonly n: number }
  | { readonly _tag: "PingAll"; readonly n: number }

type Event =
  | { readonly _tag: "Fired"; readonly timer: string; readonly atMs: number }
  | { readonly _tag: "Ponged"; readonly from: string; readonly n: number; readonly atMs: number }

/** Does what it is told, answers pings, and reports timers and pongs. */
const puppet: Machine.Machine<ReadonlyArray<string>, Wire, Command, Event> = {
  init: ({ self, peers }) => Machine.result([`init ${self} [${peers.join(",")}]`]),
  step: (log, input) => {
    switch (input._tag) {
      case "Command": {
        const c = input.command
        const entry = [...log, `command ${c._tag}`]
        switch (c._tag) {
          case "Set":
            return Machine.result(entry, [Machine.setTimer(c.timer, c.afterMs)])
          case "Cancel":
            return Machine.result(entry, [Machine.cancelTimer(c.timer)])
          case "Ping":
            return Machine.result(entry, [Machine.send<Wire>(c.to, { _tag: "Ping", n: c.n })])
          case "PingAll":
            return Machine.result(entry, [Machine.broadcast<Wire>({ _tag: "Ping", n: c.n })])
        }
        break
      }
      case "TimerFired":
        return Machine.result(
          [...log, `fired ${input.timer}`],
          [Machine.emit<Event>({ _tag: "Fired", timer: input.timer, atMs: input.nowMs })],
        )
      case "Receive": {
        const entry = [
          ...log,
          `receive ${input.message._tag} ${input.message.n} from ${input.from}`,
        ]
        return input.message._tag === "Ping"
          ? Machine.result(entry, [
              Machine.send<Wire>(input.from, { _tag: "Pong", n: input.message.n }),
            ])
          : Machine.result(entry, [
              Machine.emit<Event>({
                _tag: "Ponged",
                from: input.from,
                n: input.message.n,
                atMs: input.nowMs,
              }),
            ])
      }
    }
  },
}

const key = new Uint8Array(randomBytes(32))

const addresses = {
  a: Address.udp("10.0.0.1", 1),
  b: Address.udp("10.0.0.2", 1),
  c: Address.udp("10.0.0.3", 1),
}

// Most tests here are about the runner's mechanics and hand-craft datagrams: insecure.
const start = (
  self: "a" | "b" | "c",
  onStep?: (
    info: Runner.StepInfo<ReadonlyArray<string>, Wire, Command, Event>,
  ) => Effect.Effect<void>,
  authentication: Authentication.Authentication = Authentication.insecure,
) =>
  Runner.run(puppet, {
    self,
    peers: ["a", "b", "c"],
    addresses,
    codec,
    authentication,
    ...(onStep === undefined ? {} : { onStep }),
  })

/** Node "a" taking commands given together two per step (`commandAll`). */
const startGrouped = (
  onStep: (
    info: Runner.StepInfo<ReadonlyArray<string>, Wire, Command, Event>,
  ) => Effect.Effect<void>,
) =>
  Runner.run(puppet, {
    self: "a",
    peers: ["a", "b", "c"],
    addresses,
    codec,
    authentication: Authentication.insecure,
    inputsPerStepMax: 2,
    onStep,
  })

/** Lets every forked fiber run to its next suspension without moving the clock. */
const settle = TestClock.adjust(0)

describe("Runner", () => {
  it.effect("runs init with the peers (without itself) and exposes the state", () =>
    Effect.gen(function* () {
      const a = yield* start("a")
      expect(a.address).toEqual(addresses.a)
      expect(yield* a.state).toEqual(["init a [b,c]"])
    }).pipe(Effect.provide(memoryDatagram)),
  )

  it.effect("fires a timer after its delay on the clock, with the time in the input", () =>
    Effect.gen(function* () {
      const a = yield* start("a")
      const fired = yield* Stream.runCollect(Stream.take(a.events, 1)).pipe(Effect.forkChild)
      yield* settle
      yield* a.command({ _tag: "Set", timer: "t", afterMs: 250 })
      yield* TestClock.adjust(249)
      expect(yield* a.state).not.toContain("fired t")
      yield* TestClock.adjust(1)
      expect(yield* Fiber.join(fired)).toEqual([{ _tag: "Fired", timer: "t", atMs: 250 }])
    }).pipe(Effect.provide(memoryDatagram)),
  )

  it.effect("re-setting a timer replaces it; cancelling stops it", () =>
    Effect.gen(function* () {
      const a = yield* start("a")
      const fired = yield* Stream.runCollect(Stream.take(a.events, 3)).pipe(Effect.forkChild)
      yield* settle
      yield* a.command({ _tag: "Set", timer: "late", afterMs: 100 })
      yield* a.command({ _tag: "Set", timer: "cancelled", afterMs: 50 })
      yield* a.command({ _tag: "Set", timer: "early", afterMs: 300 })
      yield* TestClock.adjust(20)
      // Moves "late" from 100 to 20 + 500 = 520, and "early" from 300 to 20 + 10 = 30.
      yield* a.command({ _tag: "Set", timer: "late", afterMs: 500 })
      yield* a.command({ _tag: "Set", timer: "early", afterMs: 10 })
      yield* a.command({ _tag: "Cancel", timer: "cancelled" })
      yield* a.command({ _tag: "Set", timer: "again", afterMs: 480 })
      yield* TestClock.adjust(1_000)
      expect(yield* Fiber.join(fired)).toEqual([
        { _tag: "Fired", timer: "early", atMs: 30 },
        { _tag: "Fired", timer: "again", atMs: 500 },
        { _tag: "Fired", timer: "late", atMs: 520 },
      ])
      expect((yield* a.state).filter((line) => line.startsWith("fired"))).toEqual([
        "fired early",
        "fired again",
        "fired late",
      ])
    }).pipe(Effect.provide(memoryDatagram)),
  )

  it.effect("sends, broadcasts and receives through the codec", () =>
    Effect.gen(function* () {
      const a = yield* start("a")
      const b = yield* start("b")
      const c = yield* start("c")
      const pongs = yield* Stream.runCollect(Stream.take(a.events, 3)).pipe(Effect.forkChild)
      yield* settle
      yield* a.command({ _tag: "Ping", to: "b", n: 1 })
      yield* settle
      yield* a.command({ _tag: "PingAll", n: 2 })
      yield* settle
      const received = yield* Fiber.join(pongs)
      expect(
        received.map((e) => (e._tag === "Ponged" ? `${e.from}:${e.n}` : e._tag)).sort(),
      ).toEqual(["b:1", "b:2", "c:2"])
      expect(yield* b.state).toContain("receive Ping 1 from a")
      expect(yield* b.state).toContain("receive Ping 2 from a")
      expect(yield* c.state).toContain("receive Ping 2 from a")
      expect(yield* c.state).not.toContain("receive Ping 1 from a")
    }).pipe(Effect.provide(memoryDatagram)),
  )

  it.effect("drops undecodable datagrams and strangers' datagrams, and goes on", () =>
    Effect.gen(function* () {
      const b = yield* start("b")
      const datagram = yield* Datagram.Datagram
      // A peer's address sending garbage, and an address that is no peer sending a valid ping.
      const fakeA = yield* datagram.bind(addresses.a)
      const stranger = yield* datagram.bind(Address.udp("10.9.9.9", 1))
      yield* fakeA.send(addresses.b, new TextEncoder().encode("{garbage"))
      yield* fakeA.send(addresses.b, new Uint8Array([0xff, 0x00]))
      yield* stranger.send(
        addresses.b,
        new TextEncoder().encode(JSON.stringify({ _tag: "Ping", n: 9 })),
      )
      yield* fakeA.send(
        addresses.b,
        new TextEncoder().encode(JSON.stringify({ _tag: "Ping", n: 3 })),
      )
      const reply = yield* Stream.runCollect(Stream.take(fakeA.messages, 1)).pipe(Effect.forkChild)
      yield* settle
      expect(yield* b.state).toEqual(["init b [a,c]", "receive Ping 3 from a"])
      const [pong] = yield* Fiber.join(reply)
      expect(new TextDecoder().decode(pong!.bytes)).toBe(JSON.stringify({ _tag: "Pong", n: 3 }))
      expect(pong!.from).toEqual(addresses.b)
    }).pipe(Effect.provide(memoryDatagram)),
  )

  it.effect("keyed: only datagrams sealed with the key, for this node, once, are stepped", () =>
    Effect.gen(function* () {
      const authentication = Authentication.keyed(key)
      const b = yield* start("b", undefined, authentication)
      const datagram = yield* Datagram.Datagram
      // Whoever holds a's address but not the key: a member that died, another local user.
      const fakeA = yield* datagram.bind(addresses.a)
      const replies = yield* Stream.runCollect(Stream.take(fakeA.messages, 1)).pipe(
        Effect.forkChild,
      )
      const ping = (n: number) => new TextEncoder().encode(JSON.stringify({ _tag: "Ping", n }))
      const droppedCount = (reason: string) =>
        Metric.value(Metric.withAttributes(Runner.datagramsDropped, { reason })).pipe(
          Effect.map((state) => Number(state.count)),
        )
      const before = {
        unauthenticated: yield* droppedCount("Unauthenticated"),
        replayed: yield* droppedCount("Replayed"),
      }
      const nowMs = yield* Clock.currentTimeMillis
      const asA = Authentication.sealer(authentication, "a", nowMs)
      const otherKey = Authentication.sealer(
        Authentication.keyed(new Uint8Array(randomBytes(32))),
        "a",
        nowMs,
      )
      yield* TestClock.adjust(1)
      // A plain datagram, one sealed for another node, and one sealed with another key.
      yield* fakeA.send(addresses.b, ping(1))
      yield* fakeA.send(addresses.b, asA.seal("c", 1, ping(2)))
      yield* fakeA.send(addresses.b, otherKey.seal("b", 1, ping(3)))
      // The real thing, then the same bytes again.
      const sealed = asA.seal("b", 1, ping(4))
      yield* fakeA.send(addresses.b, sealed)
      yield* fakeA.send(addresses.b, sealed)
      yield* settle
      expect(yield* b.state).toEqual(["init b [a,c]", "receive Ping 4 from a"])
      expect((yield* droppedCount("Unauthenticated")) - before.unauthenticated).toBe(3)
      expect((yield* droppedCount("Replayed")) - before.replayed).toBe(1)
      // The answer is sealed for a, by b.
      const [pong] = yield* Fiber.join(replies)
      const opened = asA.open("b", 1, pong!.bytes)
      expect("payload" in opened && new TextDecoder().decode(opened.payload)).toBe(
        JSON.stringify({ _tag: "Pong", n: 4 }),
      )
    }).pipe(Effect.provide(memoryDatagram)),
  )

  it.effect("calls onStep for init and every step, with the state before and after", () =>
    Effect.gen(function* () {
      const seen: Array<Runner.StepInfo<ReadonlyArray<string>, Wire, Command, Event>> = []
      const a = yield* start("a", (info) => Effect.sync(() => seen.push(info)))
      yield* a.command({ _tag: "Set", timer: "t", afterMs: 5 })
      yield* TestClock.adjust(5)
      expect(seen.map((info) => info.input._tag)).toEqual(["Init", "Command", "TimerFired"])
      expect(seen[0]!.before).toBeUndefined()
      expect(seen[1]!.before).toEqual(seen[0]!.after)
      expect(seen[2]!.after).toEqual(yield* a.state)
      expect(seen[2]!.nowMs).toBe(5)
      expect(seen[1]!.outputs).toEqual([Machine.setTimer("t", 5)])
    }).pipe(Effect.provide(memoryDatagram)),
  )

  it.effect("commandAll takes inputsPerStepMax commands per step, onStep once per step", () =>
    Effect.gen(function* () {
      const seen: Array<Runner.StepInfo<ReadonlyArray<string>, Wire, Command, Event>> = []
      const a = yield* startGrouped((info) => Effect.sync(() => seen.push(info)))
      const timers = ["t1", "t2", "t3", "t4", "t5"]
      yield* a.commandAll(timers.map((timer) => ({ _tag: "Set", timer, afterMs: 5 })))
      const steps = seen.slice(1)
      expect(steps.map((info) => (info.inputs ?? [info.input]).length)).toEqual([2, 2, 1])
      // Each step's commands are stepped in turn: its state and outputs are theirs together.
      expect(steps[0]!.outputs).toEqual([Machine.setTimer("t1", 5), Machine.setTimer("t2", 5)])
      expect(steps[1]!.before).toEqual(steps[0]!.after)
      expect(steps[0]!.input).toEqual(steps[0]!.inputs![1])
      expect(yield* a.state).toEqual(["init a [b,c]", ...timers.map(() => "command Set")])
      // And their outputs were performed: every timer fires.
      yield* TestClock.adjust(5)
      expect((yield* a.state).filter((entry) => entry.startsWith("fired"))).toHaveLength(5)
    }).pipe(Effect.provide(memoryDatagram)),
  )

  it.effect(
    "a message received while commandAll's first step runs is stepped before the rest",
    () =>
      Effect.gen(function* () {
        const b = yield* start("b")
        let pinged = false
        // While a's first group is being stepped (a durable write, say), b pings a.
        const a = yield* startGrouped((info) =>
          info.inputs !== undefined && !pinged
            ? Effect.andThen(
                Effect.sync(() => {
                  pinged = true
                }),
                Effect.andThen(b.command({ _tag: "Ping", to: "a", n: 7 }), settle),
              )
            : Effect.void,
        )
        yield* a.commandAll(
          Array.from({ length: 6 }, (_, n) => ({ _tag: "Cancel" as const, timer: `t${n}` })),
        )
        expect(yield* a.state).toEqual([
          "init a [b,c]",
          "command Cancel",
          "command Cancel",
          "receive Ping 7 from b",
          "command Cancel",
          "command Cancel",
          "command Cancel",
          "command Cancel",
        ])
      }).pipe(Effect.provide(memoryDatagram)),
  )

  it.effect("stops stepping and firing timers when its scope closes", () =>
    Effect.gen(function* () {
      const seen: Array<string> = []
      const a = yield* Effect.scoped(
        Effect.gen(function* () {
          const node = yield* start("a", (info) => Effect.sync(() => seen.push(info.input._tag)))
          yield* node.command({ _tag: "Set", timer: "t", afterMs: 100 })
          yield* settle
          return node
        }),
      )
      yield* TestClock.adjust(1_000)
      expect(seen).toEqual(["Init", "Command"])
      expect(yield* a.state).toEqual(["init a [b,c]", "command Set"])
    }).pipe(Effect.provide(memoryDatagram)),
  )

  it.effect("a machine that throws stops the node, and join dies with the defect", () =>
    Effect.gen(function* () {
      const faulty: Machine.Machine<number, Wire, "boom"> = {
        init: () => Machine.result(0),
        step: () => {
          throw new Error("broken invariant")
        },
      }
      const node = yield* Runner.run(faulty, {
        self: "a",
        peers: ["b"],
        addresses,
        codec,
        authentication: Authentication.insecure,
      })
      const joined = yield* Effect.forkChild(Effect.exit(node.join))
      yield* Effect.forkChild(node.command("boom"))
      yield* settle
      const exit = yield* Fiber.join(joined)
      expect(Exit.isFailure(exit) && Cause.pretty(exit.cause)).toMatch(/broken invariant/)
      // A command to a stopped node does not hang: it is interrupted.
      const late = yield* Effect.exit(node.command("boom"))
      expect(Exit.isFailure(late) && Cause.hasInterruptsOnly(late.cause)).toBe(true)
    }).pipe(Effect.provide(memoryDatagram)),
  )

  it.effect("runs a failure detector on SimNet: 3 nodes, a crash and a restart", () =>
    Effect.gen(function* () {
      const config = { intervalMs: 100, timeoutMs: 400 }
      const net = yield* SimNet.make({ link: { latency: SimNet.uniform(1, 20) } })
      const nodes = ["n1", "n2", "n3"]
      const seen: Array<string> = []
      for (const self of nodes) {
        yield* net.run(
          self,
          Effect.gen(function* () {
            const node = yield* Runner.run(FailureDetector.make(config), {
              self,
              peers: nodes,
              addresses: (node) => Address.udp(node, 7000),
              codec: FailureDetector.codec,
              authentication: Authentication.keyed(key),
            })
            yield* Stream.runForEach(node.events, (event) =>
              Effect.gen(function* () {
                const atMs = yield* Clock.currentTimeMillis
                seen.push(`${atMs} ${self} ${event._tag} ${event.peer}`)
              }),
            )
          }),
        )
      }
      // Let the nodes bind and run init before the clock moves.
      yield* settle
      // Healthy for a while: nobody suspects anybody.
      yield* TestClock.adjust(1_000)
      expect(seen).toEqual([])

      yield* net.crash("n2")
      yield* TestClock.adjust(1_000)
      const suspicions = seen.filter((line) => line.includes("Suspected n2"))
      expect(suspicions.map((line) => line.split(" ")[1]).sort()).toEqual(["n1", "n3"])
      for (const line of suspicions) {
        // Within timeoutMs + the last heartbeat's interval and delay of the crash at 1000 ms.
        const atMs = Number(line.split(" ")[0])
        expect(atMs).toBeGreaterThan(1_000)
        expect(atMs).toBeLessThanOrEqual(1_000 + config.timeoutMs + config.intervalMs + 20)
      }
      expect(seen.filter((line) => !line.includes("n2"))).toEqual([])

      seen.length = 0
      yield* net.restart("n2")
      yield* settle
      yield* TestClock.adjust(100)
      // n2 comes back with a new incarnation (its clock at restart): recognised and trusted.
      expect(seen.filter((line) => line.includes("Restarted n2")).length).toBe(2)
      expect(seen.filter((line) => line.includes("Alive n2")).length).toBe(2)
      yield* TestClock.adjust(1_000)
      expect(seen.filter((line) => line.includes("Suspected"))).toEqual([])
      const trace = SimNet.formatTrace(yield* net.trace)
      expect(trace).toContain("crash")
      expect(trace).toMatch(/deliver\s+udp:\/\/n2:7000 → udp:\/\/n1:7000/)
    }).pipe(Random.withSeed(1)),
  )

  describe("a command given while the node is idle is stepped in its caller's fiber", () => {
    /** onStep that counts the steps running at once, the most seen in `overlap.most`. */
    const overlapCounter = () => {
      const overlap = { now: 0, most: 0 }
      const around = (inner: Effect.Effect<void>) =>
        Effect.gen(function* () {
          overlap.now++
          overlap.most = Math.max(overlap.most, overlap.now)
          yield* inner
          overlap.now--
        })
      return { overlap, around }
    }

    /** Nodes b and a, whose steps `holds` selects wait for `gate` in onStep (a slow write). */
    const gatedPair = (
      holds: (info: Runner.StepInfo<ReadonlyArray<string>, Wire, Command, Event>) => boolean,
    ) =>
      Effect.gen(function* () {
        const gate = yield* Deferred.make<void>()
        const { overlap, around } = overlapCounter()
        const b = yield* start("b")
        const a = yield* start("a", (info) =>
          around(holds(info) ? Deferred.await(gate) : Effect.void),
        )
        return { gate, overlap, a, b }
      })

    it.effect("it is done without a turn of the event loop, in the caller's fiber", () =>
      Effect.gen(function* () {
        const steppedBy: Array<number> = []
        const a = yield* start("a", () =>
          Effect.flatMap(Effect.fiberId, (id) => Effect.sync(() => steppedBy.push(id))),
        )
        yield* settle
        // Run synchronously: a command queued for the loop's fiber could not complete here.
        const exit = Effect.runSyncExit(a.command({ _tag: "Ping", to: "b", n: 1 }))
        expect(Exit.isSuccess(exit)).toBe(true)
        expect(yield* a.state).toEqual(["init a [b,c]", "command Ping"])
        yield* a.command({ _tag: "Cancel", timer: "t" })
        expect(steppedBy[steppedBy.length - 1]).toBe(yield* Effect.fiberId)
      }).pipe(Effect.provide(memoryDatagram)),
    )

    it.effect(
      "it goes behind a received message and a fired timer already waiting, one step at a time",
      () =>
        Effect.gen(function* () {
          // a's loop holds its step of b's first ping until the gate opens.
          const { gate, overlap, a, b } = yield* gatedPair(
            (info) => info.input._tag === "Receive" && info.input.message.n === 1,
          )
          yield* a.command({ _tag: "Set", timer: "t", afterMs: 5 })
          yield* b.command({ _tag: "Ping", to: "a", n: 1 })
          yield* settle
          yield* b.command({ _tag: "Ping", to: "a", n: 2 })
          yield* settle
          yield* TestClock.adjust(5)
          // Ping 2 and t's expiry wait in a's inbox behind the held step: the command too.
          const commanded = yield* Effect.forkChild(a.command({ _tag: "Cancel", timer: "u" }))
          yield* settle
          expect(yield* a.state).toEqual(["init a [b,c]", "command Set", "receive Ping 1 from b"])
          yield* Deferred.succeed(gate, undefined)
          yield* Fiber.join(commanded)
          expect(yield* a.state).toEqual([
            "init a [b,c]",
            "command Set",
            "receive Ping 1 from b",
            "receive Ping 2 from b",
            "fired t",
            "command Cancel",
          ])
          expect(overlap.most).toBe(1)
        }).pipe(Effect.provide(memoryDatagram)),
    )

    it.effect(
      "a message received while a caller's step runs is stepped after it, not beside it",
      () =>
        Effect.gen(function* () {
          const { gate, overlap, a, b } = yield* gatedPair((info) => info.input._tag === "Command")
          yield* settle
          const commanded = yield* Effect.forkChild(a.command({ _tag: "Cancel", timer: "t" }))
          yield* settle
          yield* b.command({ _tag: "Ping", to: "a", n: 1 })
          yield* settle
          expect(yield* a.state).toEqual(["init a [b,c]", "command Cancel"])
          yield* Deferred.succeed(gate, undefined)
          yield* Fiber.join(commanded)
          yield* settle
          expect(yield* a.state).toEqual([
            "init a [b,c]",
            "command Cancel",
            "receive Ping 1 from b",
          ])
          expect(overlap.most).toBe(1)
        }).pipe(Effect.provide(memoryDatagram)),
    )

    it.effect("it goes behind an input in the inbox that the loop has not woken up for yet", () =>
      Effect.gen(function* () {
        const loop = yield* Loop.start(
          puppet,
          { self: "a" },
          ["b"],
          { send: () => Effect.void, peers: () => ["b"] },
          "before-return",
        )
        yield* settle
        // The offer wakes the loop's fiber later; the command comes before it has run.
        yield* loop.receive("b", { _tag: "Ping", n: 1 })
        yield* loop.node.command({ _tag: "Cancel", timer: "t" })
        expect(yield* loop.node.state).toEqual([
          "init a [b]",
          "receive Ping 1 from b",
          "command Cancel",
        ])
      }),
    )

    it.effect("a command given before the loop performed init's outputs waits for them", () =>
      Effect.gen(function* () {
        const performed: Array<string> = []
        const announcing: Machine.Machine<null, Wire, "note", string> = {
          init: () => Machine.result(null, [Machine.emit("init")]),
          step: (state, input) =>
            Machine.result(state, input._tag === "Command" ? [Machine.emit(input.command)] : []),
        }
        const a = yield* Runner.run(announcing, {
          self: "a",
          peers: ["b"],
          addresses,
          codec,
          authentication: Authentication.insecure,
          onEvent: (event) => Effect.sync(() => performed.push(event)),
        })
        yield* a.command("note")
        expect(performed).toEqual(["init", "note"])
      }).pipe(Effect.provide(memoryDatagram)),
    )

    it.effect(
      "a storm of commands from many fibers, with messages arriving: no two steps at once, each fiber's in order",
      () =>
        Effect.gen(function* () {
          const fibers = 20
          const perFiber = 20
          const pingsFromB = 100
          const { overlap, around } = overlapCounter()
          const commanded: Array<number> = []
          const b = yield* start("b")
          // Every other step yields inside onStep (a durable write, say): the other fibers'
          // commands and b's pings come while it is away.
          const a = yield* start("a", (info) =>
            around(
              Effect.gen(function* () {
                if (info.input._tag === "Command" && info.input.command._tag === "Ping")
                  commanded.push(info.input.command.n)
                if (commanded.length % 2 === 0) yield* Effect.yieldNow
              }),
            ),
          )
          // Idle when the storm begins (init performed), so the first callers step at once.
          yield* settle
          // a's pings go to c, which is not there (no answer); b's come to a, which answers.
          const fromA = Effect.forEach(
            Array.from({ length: fibers }, (_, fiber) => fiber),
            (fiber) =>
              Effect.forEach(
                Array.from({ length: perFiber }, (_, i) => fiber * 1_000 + i),
                (n) => a.command({ _tag: "Ping", to: "c", n }),
                { discard: true },
              ),
            { concurrency: "unbounded", discard: true },
          )
          const fromB = Effect.forEach(
            Array.from({ length: pingsFromB }, (_, n) => n),
            (n) => b.command({ _tag: "Ping", to: "a", n }),
            { discard: true },
          )
          yield* Effect.all([fromA, fromB], { concurrency: "unbounded", discard: true })
          // b's last pings may still be on their way: let them in (bounded).
          const received = Effect.map(
            a.state,
            (log) => log.filter((entry) => entry.startsWith("receive Ping")).length,
          )
          for (let i = 0; i < 100 && (yield* received) < pingsFromB; i++) yield* settle
          expect(overlap.most).toBe(1)
          expect(commanded).toHaveLength(fibers * perFiber)
          for (let fiber = 0; fiber < fibers; fiber++) {
            const own = commanded.filter((n) => Math.floor(n / 1_000) === fiber)
            expect(own).toEqual(Array.from({ length: perFiber }, (_, i) => fiber * 1_000 + i))
          }
          // No step was lost to another running at once: every command and every ping is in.
          const log = yield* a.state
          expect(log.filter((entry) => entry === "command Ping")).toHaveLength(fibers * perFiber)
          expect(yield* received).toBe(pingsFromB)
        }).pipe(Effect.provide(memoryDatagram)),
    )
  })
})
