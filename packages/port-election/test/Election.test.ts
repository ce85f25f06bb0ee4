import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Ports } from "@understudy/testkit"
import { Address, NodeTransport, type Transport } from "@understudy/transport"
import { Clock, Deferred, Effect, Exit, Fiber, type Layer, Redacted, Scope, Stream } from "effect"
import * as Election from "../src/Election.ts"
import * as Identity from "../src/Identity.ts"
import { recording } from "./support/transport.ts"

const secret = Redacted.make(new Uint8Array(randomBytes(32)))

/** An instance in `scope`, over the Node transport unless another `layer` is given. */
const start = (
  address: Address.StreamAddress,
  scope: Scope.Scope,
  extra: Partial<Election.ElectionOptions> = {},
  layer: Layer.Layer<Transport.Transport> = NodeTransport.layer,
) =>
  Election.make({
    program: "test",
    address,
    secret,
    keepAlive: { interval: 100, timeout: 600 },
    grace: 500,
    ...extra,
  }).pipe(Scope.provide(scope), Effect.provide(layer))

const uniqueAbstract = () => Address.abstract(`understudy-test-${randomBytes(6).toString("hex")}`)

/** Identities of the instances of `holderAndWaiter`, where a test gives them. */
type Identities = Partial<Record<"supervisor" | "holder" | "waiter", Identity.Shape>>

/**
 * A supervisor, a holder of "lock" (its permit in `holding`) and a waiter to be, started in
 * that order in `scopes`; the supervisor or the holder over a `layer` of its own if given.
 */
const holderAndWaiter = (
  graceMs: number,
  layer: {
    readonly supervisor?: Layer.Layer<Transport.Transport>
    readonly holder?: Layer.Layer<Transport.Transport>
  },
  identities: Identities = {},
) =>
  Effect.gen(function* () {
    const address = uniqueAbstract()
    const scopes = yield* Effect.forEach([0, 1, 2], () => Scope.make())
    const as = (who: keyof Identities) => (effect: ReturnType<typeof start>) => {
      const identity = identities[who]
      return identity === undefined
        ? effect
        : Effect.provideService(effect, Identity.Identity, identity)
    }
    const supervisor = yield* start(address, scopes[0]!, { grace: graceMs }, layer.supervisor).pipe(
      as("supervisor"),
    )
    const holder = yield* start(address, scopes[1]!, { grace: graceMs }, layer.holder).pipe(
      as("holder"),
    )
    const waiter = yield* start(address, scopes[2]!, { grace: graceMs }).pipe(as("waiter"))
    expect((yield* supervisor.role)._tag).toBe("Supervisor")
    const holding = yield* Scope.make()
    const permit = yield* holder.acquire("lock").pipe(Scope.provide(holding))
    return { scopes, holder, waiter, holding, permit }
  })

/**
 * A holder of "lock" cut off while alive (its connections closed, and it reaches nobody)
 * while a waiter asks for the lock: when the waiter got it, and when (if yet) the holder
 * gave it up.
 */
const cutOffRace = (graceMs: number, identities: Identities = {}) =>
  Effect.gen(function* () {
    const cutting = recording()
    const { scopes, waiter, holding, permit } = yield* holderAndWaiter(
      graceMs,
      { holder: cutting.layer },
      identities,
    )
    const lostAt = yield* Effect.forkChild(Effect.andThen(permit.lost, Clock.currentTimeMillis))
    const grantedAt = yield* Effect.forkChild(
      Effect.andThen(
        waiter.acquire("lock").pipe(Scope.provide(scopes[2]!)),
        Clock.currentTimeMillis,
      ),
    )
    yield* Effect.sleep(100)
    expect(grantedAt.pollUnsafe()).toBeUndefined()
    // The holder's connections die and it reaches nobody (its keep-alive would time out
    // the same way): it can not tell the supervisor anything until it gives up.
    cutting.control.cut = true
    yield* Effect.forEach(cutting.control.connections, (connection) => connection.close, {
      discard: true,
    })
    const granted = yield* Fiber.join(grantedAt).pipe(Effect.timeout("5 seconds"))
    const lost = lostAt.pollUnsafe()
    cutting.control.cut = false
    for (const scope of [scopes[2]!, holding, scopes[1]!, scopes[0]!]) {
      yield* Scope.close(scope, Exit.void)
    }
    return { granted, lost: lost !== undefined && Exit.isSuccess(lost) ? lost.value : undefined }
  })

describe("port election, in one process", () => {
  it.live("the first instance supervises, the others subordinate, and a successor takes over", () =>
    Effect.gen(function* () {
      const address = uniqueAbstract()
      const scopes = yield* Effect.forEach([0, 1, 2], () => Scope.make())
      const first = yield* start(address, scopes[0]!)
      expect((yield* first.role)._tag).toBe("Supervisor")
      const second = yield* start(address, scopes[1]!)
      const third = yield* start(address, scopes[2]!)
      expect(yield* second.role).toEqual({ _tag: "Subordinate", supervisorId: first.instanceId })
      expect(yield* third.role).toEqual({ _tag: "Subordinate", supervisorId: first.instanceId })
      const members = yield* first.members
      expect(members.map((m) => m.instanceId).sort()).toEqual(
        [first.instanceId, second.instanceId, third.instanceId].sort(),
      )
      const elected = yield* Deferred.make<string>()
      for (const instance of [second, third]) {
        yield* Effect.forkChild(
          Stream.runForEach(instance.events, (event) =>
            event._tag === "Elected" ? Deferred.succeed(elected, event.instanceId) : Effect.void,
          ),
        )
      }
      yield* Effect.sleep(20)
      yield* Scope.close(scopes[0]!, Exit.void)
      const winner = yield* Deferred.await(elected).pipe(Effect.timeout("5 seconds"))
      const survivor = winner === second.instanceId ? second : third
      const other = winner === second.instanceId ? third : second
      expect((yield* survivor.role)._tag).toBe("Supervisor")
      // Until it registers with the winner: it may still be the old supervisor's subordinate
      // when the winner's Elected comes (it has not read the close yet).
      const withWinner = (role: { _tag: string; supervisorId?: string }) =>
        role._tag === "Subordinate" && role.supervisorId === winner
      for (let i = 0; i < 100 && !withWinner(yield* other.role); i++) yield* Effect.sleep(20)
      expect(yield* other.role).toEqual({ _tag: "Subordinate", supervisorId: winner })
      yield* Scope.close(scopes[1]!, Exit.void)
      yield* Scope.close(scopes[2]!, Exit.void)
    }),
  )

  it.live("over IPv6 loopback: one supervisor, the other registered with it", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(() => Ports.freeTcpPort("::1"))
      const address = Address.tcp("::1", port)
      const scopes = yield* Effect.forEach([0, 1], () => Scope.make())
      const first = yield* start(address, scopes[0]!)
      const second = yield* start(address, scopes[1]!)
      expect((yield* first.role)._tag).toBe("Supervisor")
      expect(yield* second.role).toEqual({ _tag: "Subordinate", supervisorId: first.instanceId })
      expect((yield* first.members).map((m) => m.instanceId).sort()).toEqual(
        [first.instanceId, second.instanceId].sort(),
      )
      yield* Scope.close(scopes[1]!, Exit.void)
      yield* Scope.close(scopes[0]!, Exit.void)
    }),
  )

  it.live("requests run on the supervisor; commands reach subordinates", () =>
    Effect.gen(function* () {
      const address = uniqueAbstract()
      const a = yield* Scope.make()
      const b = yield* Scope.make()
      const sup = yield* start(address, a)
      const sub = yield* start(address, b)
      yield* sup.serve("add", (payload) =>
        Effect.succeed(
          (payload as { x: number; y: number }).x + (payload as { x: number; y: number }).y,
        ),
      )
      yield* sub.onCommand("whoami", () => Effect.succeed(sub.instanceId))
      expect(yield* sub.request("add", { x: 2, y: 3 })).toBe(5)
      const missing = yield* Effect.flip(sub.request("nothing", null))
      expect(missing.reason).toBe("HandlerFailed")
      const answers = yield* sup.command(sub.instanceId, "whoami", null)
      expect(answers).toEqual([{ instanceId: sub.instanceId, ok: true, payload: sub.instanceId }])
      const notSup = yield* Effect.flip(sub.command("all", "whoami", null))
      expect(notSup.reason).toBe("NotSupervisor")
      yield* Scope.close(b, Exit.void)
      yield* Scope.close(a, Exit.void)
    }),
  )

  it.live("a mutex is held by one instance at a time and freed when its holder leaves", () =>
    Effect.gen(function* () {
      const address = uniqueAbstract()
      const scopes = yield* Effect.forEach([0, 1, 2], () => Scope.make())
      const [x, y, z] = yield* Effect.forEach(scopes, (scope) => start(address, scope))
      const holdY = yield* Scope.make()
      yield* y!.acquire("lock").pipe(Scope.provide(holdY))
      const zWaits = yield* Effect.forkChild(z!.acquire("lock").pipe(Scope.provide(scopes[2]!)))
      // z's request travels over its connection; let it reach the supervisor first.
      yield* Effect.sleep(100)
      const xWaits = yield* Effect.forkChild(x!.acquire("lock").pipe(Scope.provide(scopes[0]!)))
      yield* Effect.sleep(100)
      expect(zWaits.pollUnsafe()).toBeUndefined()
      expect(xWaits.pollUnsafe()).toBeUndefined()
      // y dies: z asked first, so z gets it; x still waits.
      yield* Scope.close(scopes[1]!, Exit.void)
      yield* Fiber.join(zWaits).pipe(Effect.timeout("3 seconds"))
      yield* Effect.sleep(50)
      expect(xWaits.pollUnsafe()).toBeUndefined()
      yield* Scope.close(scopes[2]!, Exit.void)
      yield* Fiber.join(xWaits).pipe(Effect.timeout("3 seconds"))
      yield* Scope.close(scopes[0]!, Exit.void)
      yield* Scope.close(holdY, Exit.void)
    }),
  )

  it.live(
    "a holder its supervisor drops keeps its mutex: the waiter gets it only once released",
    () =>
      Effect.gen(function* () {
        const supervising = recording()
        const { scopes, holder, waiter, holding, permit } = yield* holderAndWaiter(1_500, {
          supervisor: supervising.layer,
        })
        // The supervisor accepted the holder's connection first (the waiter started after).
        const [holderConnection] = supervising.control.connections
        const waiting = yield* Effect.forkChild(
          waiter.acquire("lock").pipe(Scope.provide(scopes[2]!)),
        )
        yield* Effect.sleep(100)
        expect(waiting.pollUnsafe()).toBeUndefined()
        const back = yield* Deferred.make<void>()
        yield* Effect.forkChild(
          Stream.runForEach(holder.events, (event) =>
            event._tag === "BecameSubordinate" ? Deferred.succeed(back, undefined) : Effect.void,
          ),
        )
        yield* Effect.sleep(10)
        // The supervisor drops the holder (as its keep-alive does with a starved one); the
        // holder, alive, still holds the mutex and registers again.
        yield* holderConnection!.close
        yield* Deferred.await(back).pipe(Effect.timeout("5 seconds"))
        yield* Effect.sleep(300)
        expect(waiting.pollUnsafe(), "granted while the holder still held it").toBeUndefined()
        expect(yield* Effect.exit(permit.lost.pipe(Effect.timeout(1)))).toMatchObject({
          _tag: "Failure",
        })
        yield* Scope.close(holding, Exit.void)
        yield* Fiber.join(waiting).pipe(Effect.timeout("5 seconds"))
        for (const scope of [scopes[2]!, scopes[1]!, scopes[0]!])
          yield* Scope.close(scope, Exit.void)
      }),
  )

  it.live(
    "a holder cut off for longer than the grace period gives its mutex up before the waiter gets it",
    () =>
      Effect.gen(function* () {
        const { granted, lost } = yield* cutOffRace(1_000)
        expect(lost, "the waiter was granted while the holder still held").toBeDefined()
        expect(lost!).toBeLessThanOrEqual(granted)
      }),
  )

  describe("the supervisor asks the OS whether a cut-off holder's pid runs only in its own pid namespace", () => {
    /**
     * A supervisor to whom no pid runs (`isRunning` false) and a holder whose registration
     * names pid namespace `holderNamespace`, cut off while alive, with a waiter.
     */
    const cutOffHolder = (holderNamespace: string) => {
      const identity = (pid: number, pidNamespace: string, isRunning?: (pid: number) => boolean) =>
        Identity.of({
          pid,
          uniqueId: () => randomBytes(8).toString("hex"),
          pidNamespace,
          ...(isRunning === undefined ? {} : { isRunning }),
        })
      return cutOffRace(1_000, {
        supervisor: identity(4241, "pid:[1]", () => false),
        holder: identity(4242, holderNamespace),
        waiter: identity(4243, "pid:[1]"),
      })
    }

    it.live(
      "another namespace: its pid means nothing here, so its permits wait out the grace period",
      () =>
        Effect.gen(function* () {
          const { granted, lost } = yield* cutOffHolder("pid:[2]")
          expect(lost, "the waiter was granted while the holder still held").toBeDefined()
          expect(lost!).toBeLessThanOrEqual(granted)
        }),
    )

    it.live("the same namespace: a pid seen gone frees its permits at once", () =>
      Effect.gen(function* () {
        const { lost } = yield* cutOffHolder("pid:[1]")
        // Granted before the holder's own deadline: the shortcut was taken.
        expect(lost).toBeUndefined()
      }),
    )
  })

  it.live(
    "an instance with other timing (graceMs, keepAlive) is refused: DifferentSettings, both named",
    () =>
      Effect.gen(function* () {
        const address = uniqueAbstract()
        const scopes = yield* Effect.forEach([0, 1, 2], () => Scope.make())
        const supervisor = yield* start(address, scopes[0]!)
        expect((yield* supervisor.role)._tag).toBe("Supervisor")
        const longerGrace = yield* Effect.flip(start(address, scopes[1]!, { grace: 700 }))
        expect(longerGrace).toMatchObject({
          _tag: "OtherProgramOnAddress",
          reason: "DifferentSettings",
        })
        expect(longerGrace.message).toContain(
          "the supervisor's graceMs 500, keepAlive 100/600 ms; this instance's graceMs 700, keepAlive 100/600 ms",
        )
        const slowerKeepAlive = yield* Effect.flip(
          start(address, scopes[2]!, { keepAlive: { interval: 200, timeout: 600 } }),
        )
        expect(slowerKeepAlive).toMatchObject({ reason: "DifferentSettings" })
        expect((yield* supervisor.members).map((m) => m.instanceId)).toEqual([
          supervisor.instanceId,
        ])
        for (const scope of scopes) yield* Scope.close(scope, Exit.void)
      }),
  )

  it.live("a subordinate waiting for a permit gets it when it becomes supervisor itself", () =>
    Effect.gen(function* () {
      const address = uniqueAbstract()
      const a = yield* Scope.make()
      const b = yield* Scope.make()
      const holder = yield* start(address, a)
      const waiter = yield* start(address, b)
      // The permit lives in a scope of its own that is never closed: when the holder's
      // election scope closes, the permit is not released, as if its process had crashed.
      const permitScope = yield* Scope.make()
      yield* holder.acquire("lock").pipe(Scope.provide(permitScope))
      const waiting = yield* Effect.forkChild(waiter.acquire("lock").pipe(Scope.provide(b)))
      yield* Effect.sleep(100)
      expect(waiting.pollUnsafe()).toBeUndefined()
      // The holder, which is also the supervisor, goes: the waiter is elected with nobody
      // left to wait for, so its own request is granted at once by itself.
      yield* Scope.close(a, Exit.void)
      yield* Fiber.join(waiting).pipe(Effect.timeout("3 seconds"))
      expect((yield* waiter.role)._tag).toBe("Supervisor")
      yield* Scope.close(b, Exit.void)
      yield* Scope.close(permitScope, Exit.void)
    }),
  )

  it.live("a reader that falls behind loses the oldest events, and the election goes on", () =>
    Effect.gen(function* () {
      const address = uniqueAbstract()
      const scopes = yield* Effect.forEach([0, 1, 2, 3, 4, 5, 6, 7], () => Scope.make())
      const first = yield* start(address, scopes[0]!, { eventsCapacity: 2 })
      // A reader that takes one event and then stops reading until told.
      const resume = yield* Deferred.make<void>()
      const seen: Array<Election.ElectionEvent> = []
      yield* Effect.forkChild(
        Stream.runForEach(first.events, (event) =>
          Effect.andThen(
            Effect.sync(() => seen.push(event)),
            seen.length === 1 ? Deferred.await(resume) : Effect.void,
          ),
        ),
      )
      yield* Effect.sleep(20)
      const others = yield* Effect.forEach([1, 2, 3, 4, 5, 6, 7], (i) => start(address, scopes[i]!))
      // The supervisor serves while the reader is stuck: seven joined, the last one too.
      expect((yield* first.members).length).toBe(8)
      const last = others[6]!.instanceId
      yield* Deferred.succeed(resume, undefined)
      for (let i = 0; i < 100; i++) {
        const event = seen.at(-1)
        if (event?._tag === "MemberJoined" && event.member.instanceId === last) break
        yield* Effect.sleep(10)
      }
      const joined = seen.flatMap((event) =>
        event._tag === "MemberJoined" ? [event.member.instanceId] : [],
      )
      // What the reader had pulled before it stopped, then only the newest two: in join
      // order, ending with the last, and some in between dropped.
      const order = others.map((other) => other.instanceId)
      expect(joined.at(-1)).toBe(last)
      expect(joined.length).toBeLessThan(order.length)
      expect(joined.map((id) => order.indexOf(id))).toEqual(
        joined.map((id) => order.indexOf(id)).toSorted((a, b) => a - b),
      )
      for (const scope of scopes.toReversed()) yield* Scope.close(scope, Exit.void)
    }),
  )
})
