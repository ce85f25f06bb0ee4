/**
 * The election on SimNet: several instances as programs on ONE simulated host, all using
 * that host's address `tcp://machine:4000`. SimNet keeps listeners per host, so only one
 * program on the host can listen there at a time (the others get `AddressInUse`), which is
 * exactly "copies of one program on one machine". Time is the TestClock and randomness a
 * seeded Random, so every schedule replays from its seed.
 *
 * What SimNet can not do is kill one program of a host (`crash` takes the whole host down).
 * An instance is "killed" here by its own switch: its connections are closed (the peer
 * sees `End`, as after the kernel closes a dead process's sockets), everything it would
 * send afterwards is dropped, and its program is interrupted.
 */
import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Seeds } from "@understudy/testkit"
import { Address, type Connection, SimNet, Transport, TransportError } from "@understudy/transport"
import { Deferred, Effect, Random, Redacted, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Election from "../src/Election.ts"
import * as Identity from "../src/Identity.ts"

const host = "machine"
const address = Address.tcp(host, 4000)
const secret = Redacted.make(new Uint8Array(randomBytes(32)))
const stepMs = 10

/**
 * A Transport whose connections all die at once, with nothing sent after: a killed process.
 * Every address it is asked to listen on is recorded in `listens`.
 */
const killable = (transport: Transport.Transport["Service"], listens: Array<string>) => {
  let dead = false
  const open = new Set<Connection.Connection<unknown>>()
  const wrap = <A>(connection: Connection.Connection<A>): Connection.Connection<A> => {
    open.add(connection as Connection.Connection<unknown>)
    const refused = Effect.fail(
      new TransportError.ConnectionClosed({
        remote: Address.format(connection.remote),
        reason: "Killed",
      }),
    )
    return {
      ...connection,
      send: (message) => (dead ? refused : connection.send(message)),
      sendAll: (messages) => (dead ? refused : connection.sendAll(messages)),
    }
  }
  const service = Transport.Transport.of({
    listen: (at, options) =>
      Effect.map(
        Effect.andThen(
          Effect.sync(() => listens.push(Address.format(at))),
          transport.listen(at, options),
        ),
        (listener) => ({
          ...listener,
          connections: Stream.map(listener.connections, wrap),
        }),
      ),
    connect: (at, options) => Effect.map(transport.connect(at, options), wrap),
  })
  const kill = Effect.suspend(() => {
    dead = true
    return Effect.forEach(open, (connection) => connection.close, { discard: true })
  })
  return { service, kill }
}

/** One instance slot: the election while it runs, and how to kill it. */
interface Slot {
  readonly name: string
  election: Election.PortElection["Service"] | undefined
  kill: Effect.Effect<void>
  alive: boolean
  /** Set the moment it is killed: from then on it holds nothing and counts for nothing. */
  killed: boolean
  /** Permits this instance believes it holds. */
  holding: number
  /** Every address it tried to listen on, in order: the election's, or a standby one. */
  readonly listens: Array<string>
  /** A process of its own: a pid and instance ids from its name, the same in every replay. */
  readonly identity: Identity.Shape
}

/** The semaphore as its holders see it: the most ever held at once, holds and losses. */
interface Permits {
  readonly slots: Array<Slot>
  most: number
  holds: number
  lost: number
}

/** Permits held right now by instances not killed. */
const heldNow = (permits: Permits) =>
  permits.slots.reduce((sum, slot) => sum + (slot.killed ? 0 : slot.holding), 0)

const instanceProgram = (slot: Slot, permits: Permits | undefined) =>
  Effect.gen(function* () {
    const transport = yield* Transport.Transport
    const switchable = killable(transport, slot.listens)
    const killed = yield* Deferred.make<void>()
    slot.kill = Effect.suspend(() => {
      slot.killed = true
      return Effect.andThen(switchable.kill, Deferred.succeed(killed, undefined))
    })
    const body = Effect.gen(function* () {
      const election = yield* Election.make({
        program: "sim",
        address,
        secret,
        keepAlive: { interval: 100, timeout: 600 },
        grace: 2_000,
        requestTimeout: 1_000,
      }).pipe(
        Effect.provideService(Transport.Transport, switchable.service),
        Effect.provideService(Identity.Identity, slot.identity),
      )
      slot.election = election
      slot.alive = true
      if (permits !== undefined) {
        yield* Effect.forkScoped(
          Effect.forever(
            Effect.gen(function* () {
              yield* Effect.scoped(
                Effect.gen(function* () {
                  const permit = yield* election.acquire("slot", { limit: 2 })
                  slot.holding++
                  permits.holds++
                  permits.most = Math.max(permits.most, heldNow(permits))
                  // Runs before the permit's own finalizer: counted out before released.
                  yield* Effect.addFinalizer(() => Effect.sync(() => void slot.holding--))
                  const wasLost = yield* Effect.raceFirst(
                    Effect.as(Effect.sleep(yield* Random.nextIntBetween(5, 60)), false),
                    Effect.as(permit.lost, true),
                  )
                  if (wasLost) permits.lost++
                }),
              ).pipe(Effect.ignore)
              yield* Effect.sleep(yield* Random.nextIntBetween(0, 40))
            }),
          ),
        )
      }
      return yield* Effect.never
    })
    yield* Effect.raceFirst(body, Deferred.await(killed))
  }).pipe(
    Effect.ensuring(
      Effect.sync(() => {
        slot.alive = false
      }),
    ),
  )

/** Distinct pids for the instances of one test, from their names (`i3`, `r12`, `newcomer`). */
const pidOf = (name: string) =>
  (name.startsWith("i") ? 1_000 : name.startsWith("r") ? 2_000 : 3_000) +
  Number(/\d*$/.exec(name)![0] || 0)

const newSlot = (name: string): Slot => {
  let ids = 0
  return {
    name,
    election: undefined,
    kill: Effect.void,
    alive: false,
    killed: false,
    holding: 0,
    listens: [],
    identity: Identity.of({ pid: pidOf(name), uniqueId: () => `${name}-${++ids}` }),
  }
}

/** Who holds what and who supervises: printed with a failed invariant. */
const describeSlots = (slots: ReadonlyArray<Slot>) =>
  Effect.gen(function* () {
    const lines: Array<string> = []
    for (const slot of slots) {
      if (slot.election === undefined || slot.killed) continue
      const role = yield* slot.election.role
      lines.push(
        `${slot.name} ${slot.election.instanceId.slice(-6)} ${role._tag} holding=${slot.holding}`,
      )
      if (role._tag === "Supervisor") {
        for (const member of yield* slot.election.members) {
          lines.push(
            `   member ${member.instanceId.slice(-6)} holdings=${JSON.stringify(member.holdings)} waiting=${member.waiting}`,
          )
        }
      }
    }
    return lines.join("\n")
  })

/** The semaphore never over its limit, as its holders see it. */
const checkPermits = (slots: ReadonlyArray<Slot>, permits: Permits, context: string) =>
  Effect.gen(function* () {
    if (heldNow(permits) > 2) {
      expect.fail(
        `${context}: ${heldNow(permits)} permits held at once\n${yield* describeSlots(slots)}`,
      )
    }
  })

/** Live instances' roles; at most one supervisor, checked at every step. */
const observe = (slots: ReadonlyArray<Slot>, context: string) =>
  Effect.gen(function* () {
    let supervisors = 0
    for (const slot of slots) {
      if (!slot.alive || slot.killed || slot.election === undefined) continue
      if ((yield* slot.election.role)._tag === "Supervisor") supervisors++
    }
    expect(supervisors, `two supervisors: ${context}`).toBeLessThanOrEqual(1)
  })

/** True when one live instance supervises, the others follow it, and its registry is the live set. */
const isSettled = (slots: ReadonlyArray<Slot>) =>
  Effect.gen(function* () {
    // Every instance not killed must be up (started, or restarted after a crash).
    if (slots.some((s) => !s.killed && !s.alive)) return false
    const live = slots.filter((s) => s.alive && !s.killed && s.election !== undefined)
    if (live.length === 0) return false
    const supervisor = yield* supervisorAmong(live)
    if (supervisor === undefined) return false
    for (const slot of live) {
      if (slot === supervisor) continue
      const role = yield* slot.election!.role
      if (role._tag !== "Subordinate" || role.supervisorId !== supervisor.election!.instanceId)
        return false
    }
    const members = (yield* supervisor.election!.members).map((m) => m.instanceId).sort()
    return (
      JSON.stringify(members) === JSON.stringify(live.map((s) => s.election!.instanceId).sort())
    )
  })

/** Advances simulated time step by step, checking invariants, until settled (bounded). */
const settle = (
  slots: ReadonlyArray<Slot>,
  permits: Permits | undefined,
  context: string,
  boundMs = 6_000,
) =>
  Effect.gen(function* () {
    for (let elapsed = 0; elapsed <= boundMs; elapsed += stepMs) {
      yield* observe(slots, context)
      if (permits !== undefined) yield* checkPermits(slots, permits, context)
      if (yield* isSettled(slots)) return elapsed
      yield* TestClock.adjust(stepMs)
    }
    return yield* Effect.die(new Error(`not settled within ${boundMs} simulated ms: ${context}`))
  })

const run = (net: SimNet.SimNet, slot: Slot, permits?: Permits) =>
  net.run(host, instanceProgram(slot, permits))

/** `count` instances started together on a fresh SimNet. */
const startGroup = (count: number, link?: Partial<SimNet.LinkConfig>) =>
  Effect.gen(function* () {
    const net = yield* SimNet.make(link === undefined ? {} : { link })
    const slots = Array.from({ length: count }, (_, i) => newSlot(`i${i}`))
    for (const slot of slots) yield* run(net, slot)
    return { net, slots }
  })

/** The one among `slots` whose election says it supervises, if any. */
const supervisorAmong = (slots: ReadonlyArray<Slot>): Effect.Effect<Slot | undefined> =>
  Effect.gen(function* () {
    let supervisor: Slot | undefined
    for (const slot of slots)
      if ((yield* slot.election!.role)._tag === "Supervisor") supervisor = slot
    return supervisor
  })

describe("port election on SimNet, one simulated machine", () => {
  it.effect("eight instances started together: one supervisor, every one registered", () =>
    Effect.gen(function* () {
      const { net, slots } = yield* startGroup(8, { latency: SimNet.uniform(0, 3) })
      yield* settle(slots, undefined, "start")
      const supervisors = []
      for (const slot of slots)
        if ((yield* slot.election!.role)._tag === "Supervisor") supervisors.push(slot)
      expect(supervisors).toHaveLength(1)
      expect(yield* supervisors[0]!.election!.members).toHaveLength(8)
      // The losers of the bind really were refused by the simulated host.
      const trace = yield* net.trace
      expect(trace.some((event) => event.kind === "accept")).toBe(true)
    }).pipe(Effect.scoped, Random.withSeed(1)),
  )

  it.effect("the supervisor killed: one successor, all survivors registered with it", () =>
    Effect.gen(function* () {
      const { slots } = yield* startGroup(6, { latency: SimNet.uniform(0, 3) })
      yield* settle(slots, undefined, "start")
      const first = yield* supervisorAmong(slots)
      yield* first!.kill
      expect(first!.alive).toBe(false)
      const tookMs = yield* settle(slots, undefined, "after the kill")
      // Failover is the kernel's close plus one bind and one registration round: fast.
      expect(tookMs).toBeLessThan(1_000)
      const survivors = slots.filter((s) => s !== first)
      const second = yield* supervisorAmong(survivors)
      expect(second).toBeDefined()
      expect((yield* second!.election!.members).map((m) => m.instanceId).sort()).toEqual(
        survivors.map((s) => s.election!.instanceId).sort(),
      )
    }).pipe(Effect.scoped, Random.withSeed(2)),
  )

  /** After the first supervisor's grace period: the successor stands by, the others linked. */
  const withSuccessor = (slots: ReadonlyArray<Slot>) =>
    Effect.gen(function* () {
      yield* settle(slots, undefined, "start")
      yield* TestClock.adjust(2_500)
      yield* settle(slots, undefined, "after the grace period")
      const supervisor = yield* supervisorAmong(slots)
      const electionAddress = Address.format(address)
      const successors = slots.filter((s) => s.listens.some((at) => at !== electionAddress))
      expect(successors).toHaveLength(1)
      return { supervisor: supervisor!, successor: successors[0]!, electionAddress }
    })

  it.effect(
    "the supervisor killed with a successor standing by: only the successor binds, the others register over their standby connections",
    () =>
      Effect.gen(function* () {
        const { slots } = yield* startGroup(6, { latency: SimNet.uniform(0, 3) })
        const { supervisor, successor, electionAddress } = yield* withSuccessor(slots)
        const bindsBefore = slots.map(
          (s) => s.listens.filter((at) => at === electionAddress).length,
        )
        yield* supervisor.kill
        yield* settle(slots, undefined, "after the kill")
        expect((yield* successor.election!.role)._tag).toBe("Supervisor")
        // Nobody but the successor went for the election address after the kill.
        slots.forEach((slot, i) => {
          const binds = slot.listens.filter((at) => at === electionAddress).length
          expect(binds - bindsBefore[i]!, slot.name).toBe(slot === successor ? 1 : 0)
        })
      }).pipe(Effect.scoped, Random.withSeed(6)),
  )

  it.effect(
    "the supervisor and its successor killed together: the others elect through the bind",
    () =>
      Effect.gen(function* () {
        const { slots } = yield* startGroup(6, { latency: SimNet.uniform(0, 3) })
        const { supervisor, successor } = yield* withSuccessor(slots)
        yield* supervisor.kill
        yield* successor.kill
        yield* settle(slots, undefined, "after the kills")
        const survivors = slots.filter((s) => s !== supervisor && s !== successor)
        const elected = yield* supervisorAmong(survivors)
        expect((yield* elected!.election!.members).map((m) => m.instanceId).sort()).toEqual(
          survivors.map((s) => s.election!.instanceId).sort(),
        )
      }).pipe(Effect.scoped, Random.withSeed(7)),
  )

  it.effect(
    "the whole machine crashes and restarts: a fresh election among the same programs",
    () =>
      Effect.gen(function* () {
        const { net, slots } = yield* startGroup(5)
        yield* settle(slots, undefined, "start")
        const before = slots.map((s) => s.election!.instanceId)
        yield* net.crash(host)
        expect(slots.every((s) => !s.alive)).toBe(true)
        yield* TestClock.adjust(1_000)
        yield* net.restart(host)
        yield* settle(slots, undefined, "after the restart")
        // New processes, new instance ids.
        for (const slot of slots) expect(before).not.toContain(slot.election!.instanceId)
      }).pipe(Effect.scoped, Random.withSeed(3)),
  )

  it.effect(
    "a newcomer that wins the bind during a failover takes no mutex still held by a survivor",
    () =>
      Effect.gen(function* () {
        const { net, slots } = yield* startGroup(3, { latency: SimNet.fixed(1) })
        yield* settle(slots, undefined, "start")
        const supervisor = yield* supervisorAmong(slots)
        const holder = slots.find((s) => s !== supervisor)!
        // The first supervisor of a machine waits out the grace period before granting.
        const permit = yield* Effect.forkScoped(holder.election!.acquire("mutex"))
        yield* TestClock.adjust(2_500)
        const held = permit.pollUnsafe()
        expect(held?._tag).toBe("Success")
        let lost = false
        if (held?._tag === "Success") {
          yield* Effect.forkScoped(
            Effect.andThen(
              held.value.lost,
              Effect.sync(() => {
                lost = true
              }),
            ),
          )
        }
        // The supervisor dies and, in the same instant, a new copy of the program starts: it
        // binds before the survivors hear of the death, so it knows no registry at all.
        yield* supervisor!.kill
        const newcomer = newSlot("newcomer")
        slots.push(newcomer)
        yield* run(net, newcomer)
        yield* TestClock.adjust(1)
        expect(newcomer.election).toBeDefined()
        expect((yield* newcomer.election!.role)._tag).toBe("Supervisor")
        const wanted = yield* Effect.forkScoped(newcomer.election!.acquire("mutex"))
        for (let elapsed = 0; elapsed < 5_000; elapsed += stepMs) {
          // Never granted while the survivor still holds it, and the survivor never loses it.
          expect(wanted.pollUnsafe(), `granted at ${elapsed} ms`).toBeUndefined()
          yield* TestClock.adjust(stepMs)
        }
        expect(lost).toBe(false)
        yield* settle(slots, undefined, "after the failover")
        expect(
          (yield* newcomer.election!.members).find(
            (m) => m.instanceId === holder.election!.instanceId,
          )?.holdings,
        ).toEqual([{ resource: "mutex", limit: 1, permits: 1 }])
      }).pipe(Effect.scoped, Random.withSeed(5)),
  )

  it.effect(
    "a newcomer that wins the bind learns the last registry from the survivors: it grants once they are back, not after the grace period",
    () =>
      Effect.gen(function* () {
        const { net, slots } = yield* startGroup(3, { latency: SimNet.fixed(1) })
        yield* settle(slots, undefined, "start")
        // Past the first supervisor's grace period: every member has had its registry.
        yield* TestClock.adjust(2_500)
        const supervisor = yield* supervisorAmong(slots)
        yield* supervisor!.kill
        const newcomer = newSlot("newcomer")
        slots.push(newcomer)
        yield* run(net, newcomer)
        yield* TestClock.adjust(1)
        expect((yield* newcomer.election!.role)._tag).toBe("Supervisor")
        const wanted = yield* Effect.forkScoped(newcomer.election!.acquire("mutex"))
        yield* settle(slots, undefined, "after the failover")
        // The grace period is 2,000 ms; the survivors were back within a few.
        for (let elapsed = 0; elapsed < 500 && wanted.pollUnsafe() === undefined; elapsed += stepMs)
          yield* TestClock.adjust(stepMs)
        expect(wanted.pollUnsafe()?._tag).toBe("Success")
      }).pipe(Effect.scoped, Random.withSeed(8)),
  )

  // testkit's Seeds: UNDERSTUDY_SEED=<n> replays one schedule, UNDERSTUDY_SEEDS=<first>
  // runs the next eight.
  for (const seed of Seeds.seeds(8)) {
    it.effect(
      `SEED=${seed}: kills and restarts; one supervisor, registry = live set, semaphore of 2 never exceeded`,
      () =>
        Effect.gen(function* () {
          const net = yield* SimNet.make({ link: { latency: SimNet.uniform(0, 4) } })
          const slots: Array<Slot> = []
          const permits: Permits = { slots, most: 0, holds: 0, lost: 0 }
          const spawn = (name: string) =>
            Effect.gen(function* () {
              const slot = newSlot(name)
              slots.push(slot)
              yield* run(net, slot, permits)
            })
          for (let i = 0; i < 6; i++) yield* spawn(`i${i}`)
          yield* settle(slots, permits, `SEED=${seed} start`)
          for (let round = 0; round < 25; round++) {
            const context = `SEED=${seed} round ${round}`
            const live = slots.filter((s) => s.alive && !s.killed)
            const action =
              live.length <= 5
                ? "spawn"
                : live.length >= 8
                  ? "kill"
                  : yield* Random.choice(["kill", "spawn", "both"] as const)
            if (action !== "spawn") {
              let victim = yield* Random.choice(live)
              if (yield* Random.nextBoolean) victim = (yield* supervisorAmong(live)) ?? victim
              yield* victim.kill
            }
            if (action !== "kill") yield* spawn(`r${round}`)
            // Let the holders work a while, then require convergence.
            const busyMs = yield* Random.nextIntBetween(0, 300)
            for (let elapsed = 0; elapsed < busyMs; elapsed += stepMs) {
              yield* observe(slots, context)
              yield* checkPermits(slots, permits, context)
              yield* TestClock.adjust(stepMs)
            }
            yield* settle(slots, permits, context)
          }
          expect(permits.most).toBeLessThanOrEqual(2)
          expect(permits.most).toBe(2)
          expect(permits.holds).toBeGreaterThan(50)
        }).pipe(Effect.scoped, Random.withSeed(seed)),
      60_000,
    )
  }
})
