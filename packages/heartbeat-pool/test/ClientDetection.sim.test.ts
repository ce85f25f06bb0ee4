import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Seeds } from "@understudy/testkit"
import { Address, Datagram, SimNet } from "@understudy/transport"
import { Effect, Random, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Client from "../src/Client.ts"
import * as ClientMachine from "../src/ClientMachine.ts"
import * as Server from "../src/Server.ts"
import { signedPool, simMembers, simServers, stateRoot } from "./support/pool.ts"

const dir = stateRoot("heartbeat-pool-detection-")
const members = simMembers
/** The default timings with a shorter lease: the leader settles sooner. */
const timing: Server.Timing = { ...Server.defaultTiming, leaseMs: 2_000 }
const missLimit = 3

/** Moves the clock on by `ms`, 5 ms at a time (each step lets the fibers it woke run). */
const advance = (ms: number) =>
  Effect.gen(function* () {
    for (let elapsed = 0; elapsed < ms; elapsed += 5) yield* TestClock.adjust(5)
  })

type Failure = "process crash" | "partition"

/** The client's step that moved it off `server`, and what it saw until it re-attached. */
const failOver = (seed: number, failure: Failure) =>
  Effect.gen(function* () {
    const net = yield* SimNet.make({ link: { latency: SimNet.uniform(1, 3) } })
    const pool = signedPool(4)
    yield* simServers(net, pool, join(dir, `${seed}-${failure}`), timing)
    const steps: Array<Client.StepInfo> = []
    const events: Array<ClientMachine.Event> = []
    // SimNet makes no connected sockets: a `prepare` that records which server it was for.
    const prepared: Array<{ readonly server: string; readonly step: number }> = []
    const serverAt = (to: Address.Udp) =>
      members.find((member) => member.client.host === to.host)?.id ?? "?"
    yield* net.run(
      "c",
      Effect.gen(function* () {
        const inner = yield* Datagram.Datagram
        const recording = Datagram.Datagram.of({
          bind: (address, options) =>
            Effect.map(inner.bind(address, options), (endpoint) => ({
              ...endpoint,
              // Recorded when asked for (its effect runs forked, later).
              prepare: (to: Address.Udp) => {
                prepared.push({ server: serverAt(to), step: steps.length })
                return Effect.void
              },
            })),
        })
        const client = yield* Client.run({
          id: "c1",
          bind: Address.udp("c", 5),
          servers: members.map((member) => ({ id: member.id, address: member.client })),
          poolSecret: pool.secret,
          product: "cad",
          heartbeatInterval: timing.heartbeatIntervalMs,
          missLimit,
          onStep: (info) => Effect.sync(() => void steps.push(info)),
        }).pipe(Effect.provideService(Datagram.Datagram, recording))
        yield* client.events.pipe(
          Stream.runForEach((event) => Effect.sync(() => void events.push(event))),
        )
      }),
    )
    // An election, the leader's settling, the grant: bounded.
    for (let waited = 0; waited < 20 && !events.some((e) => e._tag === "Granted"); waited++) {
      yield* advance(500)
    }
    const granted = events.find((event) => event._tag === "Granted")
    expect(granted, `SEED=${seed}: granted`).toBeDefined()
    yield* advance(1_000)
    const holder = steps.at(-1)!.after.server!
    const stepsBefore = steps.length
    if (failure === "partition") yield* net.partition(["c"], [holder])
    else yield* net.crash(holder, { mode: "process" })
    for (let waited = 0; waited < 20 && !events.some((e) => e._tag === "Reattached"); waited++) {
      yield* advance(500)
    }
    const walk = steps
      .slice(stepsBefore)
      .find((step) => step.before?.target === holder && step.after.target !== holder)
    const walkStep = walk === undefined ? -1 : steps.indexOf(walk)
    const firstWalk = steps.findIndex(
      (step) => step.before !== undefined && step.before.target !== step.after.target,
    )
    return {
      holder,
      walk,
      /** The servers prepared before the first walk: only the one a walk from the first goes to. */
      preparedAtStart: prepared
        .filter((entry) => entry.step < firstWalk)
        .map((entry) => entry.server),
      nextOfFirst: ClientMachine.nextServer(steps[0]!.after.list, steps[0]!.after.target),
      /**
       * Whether the walk's target was prepared before the walk, and the one after it by the
       * walk's own step (an entry's `step` is the index of the step that asked).
       */
      walkTargetPrepared: prepared.some(
        (entry) => entry.server === walk?.after.target && entry.step < walkStep,
      ),
      nextOfWalkTargetPrepared: prepared.some(
        (entry) =>
          walk !== undefined &&
          entry.server === ClientMachine.nextServer(walk.after.list, walk.after.target) &&
          entry.step >= walkStep,
      ),
      reattached: events.find((event) => event._tag === "Reattached"),
      reports: steps.filter(
        (step) => step.input._tag === "Command" && step.input.command._tag === "Unreachable",
      ).length,
    }
  }).pipe(Effect.scoped, Random.withSeed(seed))

describe("a client whose server fails", () => {
  for (const seed of Seeds.seeds(1)) {
    it.effect(
      `SEED=${seed}: walks on the port unreachable of a killed process, before its timed detection; on the timed detection when cut off`,
      () =>
        Effect.gen(function* () {
          const killed = yield* failOver(seed, "process crash")
          const context = `SEED=${seed}, process crash of ${killed.holder}`
          expect(killed.walk, context).toBeDefined()
          expect(killed.walk!.input, context).toMatchObject({
            _tag: "Command",
            command: { _tag: "Unreachable", server: killed.holder },
          })
          // Fewer messages unanswered than the timed detection needs.
          expect(killed.walk!.before!.missed, context).toBeLessThan(missLimit)
          expect(killed.reattached, context).toMatchObject({ previous: killed.holder })
          // One connected socket made ahead, for the server a walk goes to, not one per server.
          expect(killed.preparedAtStart, context).toEqual([killed.nextOfFirst])
          expect(killed.walkTargetPrepared, context).toBe(true)
          expect(killed.nextOfWalkTargetPrepared, context).toBe(true)

          {
            const silent = yield* failOver(seed, "partition")
            const where = `SEED=${seed}, partition from ${silent.holder}`
            expect(silent.reports, where).toBe(0)
            expect(silent.walk?.input._tag, where).toBe("TimerFired")
            expect(silent.walk!.before!.missed, where).toBe(missLimit)
            expect(silent.reattached, where).toMatchObject({ previous: silent.holder })
          }
        }),
      120_000,
    )
  }
})
