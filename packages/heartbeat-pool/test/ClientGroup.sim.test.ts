/**
 * A `ClientGroup` against the same clients each run by its own `Client.run`, on SimNet and
 * the TestClock with a seeded `Random`: three servers, six clients spread over them, the
 * process of the server that holds the most clients crashed (its port closed: the clients
 * heading there hear of it). Each client of the group must see the events it sees alone —
 * granted where it asked, re-attached past the crashed server — so a reply stepped into the
 * wrong client, or one client's timer firing another's, changes some client's events.
 */
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Seeds } from "@understudy/testkit"
import { Address, SimNet } from "@understudy/transport"
import { Effect, Random, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Client from "../src/Client.ts"
import * as ClientGroup from "../src/ClientGroup.ts"
import type * as ClientMachine from "../src/ClientMachine.ts"
import * as Server from "../src/Server.ts"
import { servers, signedPool, simMembers, simServers, stateRoot } from "./support/pool.ts"

const dir = stateRoot("heartbeat-pool-group-")
const timing: Server.Timing = { ...Server.defaultTiming, leaseMs: 2_000 }
/** An election and the new leader's settling (a lease) are over by then. */
const settledMs = 4_000
const clientIds = Array.from({ length: 6 }, (_, index) => `c${index + 1}`)

/** Moves the clock on by `ms`, 5 ms at a time (each step lets the fibers it woke run). */
const advance = (ms: number) =>
  Effect.gen(function* () {
    for (let elapsed = 0; elapsed < ms; elapsed += 5) yield* TestClock.adjust(5)
  })

/** An event without its time (the two runs' datagrams interleave differently). */
const shape = (event: ClientMachine.Event) => {
  const { atMs: _, ...rest } = event
  return rest
}

type Layout = "group" | "singles"

/** Each client's events, from its first request through the crash of the busiest server. */
const failOver = (seed: number, layout: Layout) =>
  Effect.gen(function* () {
    const net = yield* SimNet.make({ link: { latency: SimNet.uniform(1, 3) } })
    const pool = signedPool(clientIds.length)
    yield* simServers(net, pool, join(dir, `${seed}-${layout}`), timing)
    const serverList = simMembers.map((member) => ({ id: member.id, address: member.client }))
    const events = new Map(clientIds.map((id) => [id, [] as Array<ClientMachine.Event>]))
    const states: Array<Effect.Effect<ClientMachine.State>> = []
    /** Per client, what walked it off the crashed server: `Unreachable` or `TimerFired`. */
    const walkedBy = new Map<string, string>()
    const walkedAtMs = new Set<number>()
    let crashed: string | undefined
    const settings = (index: number) => ({
      id: clientIds[index]!,
      product: "cad",
      heartbeatInterval: timing.heartbeatIntervalMs,
      firstServer: index % servers.length,
      onStep: (info: Client.StepInfo) =>
        Effect.sync(() => {
          if (crashed === undefined || info.before?.target !== crashed) return
          if (info.after.target === crashed) return
          if (walkedBy.has(info.node)) return
          walkedAtMs.add(info.nowMs)
          walkedBy.set(
            info.node,
            info.input._tag === "Command" ? info.input.command._tag : info.input._tag,
          )
        }),
    })
    const record = (id: string, running: Client.Running) =>
      Effect.gen(function* () {
        states.push(running.state)
        yield* running.events.pipe(
          Stream.runForEach((event) => Effect.sync(() => void events.get(id)!.push(event))),
          Effect.forkScoped,
        )
      })
    yield* net.run(
      "c",
      Effect.gen(function* () {
        // Once a leader is elected and settled: no client asks while the outcome depends on
        // how the two runs' datagrams interleave.
        yield* Effect.sleep(settledMs)
        if (layout === "group") {
          const group = yield* ClientGroup.run({
            bind: Address.udp("c", 5),
            servers: serverList,
            poolSecret: pool.secret,
          })
          for (const [index, id] of clientIds.entries())
            yield* record(id, yield* group.add(settings(index)))
        } else {
          for (const [index, id] of clientIds.entries())
            yield* record(
              id,
              yield* Client.run({
                ...settings(index),
                bind: Address.udp("c", 10 + index),
                servers: serverList,
                poolSecret: pool.secret,
              }),
            )
        }
        yield* Effect.never
      }),
    )
    const all = (tag: ClientMachine.Event["_tag"]) =>
      [...events.values()].every((list) => list.some((event) => event._tag === tag))
    // An election, the leader's settling, the grants: bounded.
    yield* advance(settledMs)
    for (let waited = 0; waited < 20 && !all("Granted"); waited++) yield* advance(500)
    expect(all("Granted"), `SEED=${seed} ${layout}: every client granted`).toBe(true)
    yield* advance(1_000)
    const held = yield* Effect.forEach(states, (state) => state)
    const count = (server: string) => held.filter((state) => state.server === server).length
    const busiest = [...servers].sort((a, b) => count(b) - count(a))[0]!
    const moving = held.filter((state) => state.server === busiest).map((state) => state.self)
    crashed = busiest
    yield* net.crash(busiest, { mode: "process" })
    const moved = () =>
      moving.every((id) => events.get(id)!.some((event) => event._tag === "Reattached"))
    for (let waited = 0; waited < 20 && !moved(); waited++) yield* advance(500)
    // The others keep their seats meanwhile: a few more heartbeats.
    yield* advance(1_000)
    return {
      busiest,
      moving,
      walkedBy: Object.fromEntries(walkedBy),
      /** The times of those walks: one, when they all walked in the same batch. */
      walks: walkedAtMs.size,
      events: Object.fromEntries([...events].map(([id, list]) => [id, list.map(shape)])),
    }
  }).pipe(Effect.scoped, Random.withSeed(seed))

describe("a group of clients in one process", () => {
  for (const seed of Seeds.seeds(1)) {
    it.effect(
      `SEED=${seed}: sees, client by client, the events of the same clients run alone, through the crash of a server`,
      () =>
        Effect.gen(function* () {
          const alone = yield* failOver(seed, "singles")
          const grouped = yield* failOver(seed, "group")
          const context = `SEED=${seed}`
          // The premise: the crash moved some clients and left others where they were.
          expect(grouped.moving.length, context).toBeGreaterThan(1)
          expect(grouped.moving.length, context).toBeLessThan(clientIds.length)
          expect(grouped.busiest, context).toBe(alone.busiest)
          expect(grouped.events, context).toEqual(alone.events)
          // Every client heading for the crashed server walked on its closed port's report.
          const onReport = Object.fromEntries(grouped.moving.map((id) => [id, "Unreachable"]))
          expect(alone.walkedBy, context).toEqual(onReport)
          expect(grouped.walkedBy, context).toEqual(onReport)
          // The group's clients on the first report, all in one batch.
          expect(grouped.walks, context).toBe(1)
          for (const id of grouped.moving)
            expect(grouped.events[id], `${context} ${id}`).toContainEqual(
              expect.objectContaining({ _tag: "Reattached", previous: grouped.busiest }),
            )
        }),
      120_000,
    )
  }
})
