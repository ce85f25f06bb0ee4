import { describe, expect, it } from "@effect/vitest"
import { MemoryStore, NameServer, Store } from "@understudy/store"
import { Address } from "@understudy/transport"
import { Effect, Exit, Layer, Option, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as Discovery from "../src/Discovery.ts"

/**
 * A memory store whose leases take 10 ms to grant: a registration's holder key is written a
 * while after its epoch is claimed, the window in which a standby could supersede it.
 */
const slowLeases = Layer.effect(
  Store.Store,
  Effect.map(MemoryStore.make(), (store) =>
    Store.Store.of({
      ...store,
      grantLease: (ttlMs) => Effect.andThen(Effect.sleep(10), store.grantLease(ttlMs)),
    }),
  ),
)
const names = NameServer.layer.pipe(Layer.provideMerge(slowLeases))
const plainNames = NameServer.layer.pipe(Layer.provideMerge(MemoryStore.layer))

const a = Address.tcp("127.0.0.1", 7401)
const b = Address.tcp("127.0.0.1", 7402)

/** Starts advertising in a scope of its own, so a test can end it like a death. */
const advertiseIn = (serverId: string, address: Address.StreamAddress) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const changes: Array<{ held: boolean; epoch: number }> = []
    yield* Discovery.advertise({
      service: "disco",
      serverId,
      address,
      ttl: 300,
      onChange: (event) => changes.push(event),
    }).pipe(Scope.provide(scope))
    return { scope, changes }
  })

const located = (locator: Discovery.Locator) =>
  Effect.map(locator.locate(0), Option.map(Address.format))

describe("Discovery", () => {
  it.effect("an address list is tried in turn", () =>
    Effect.gen(function* () {
      const tried = []
      for (let attempt = 0; attempt < 4; attempt++)
        tried.push(Option.getOrThrow(yield* Discovery.locate([a, b], attempt)))
      expect(tried).toEqual([a, b, a, b])
    }),
  )

  it("a holder that is not id=address names no server", () => {
    expect(Discovery.parseHolder("s1=tcp://127.0.0.1:7401")).toEqual(Option.some(a))
    for (const junk of ["s1", "s1=", "s1=udp://x", "=tcp://127.0.0.1:99999", ""])
      expect(Option.isNone(Discovery.parseHolder(junk)), junk).toBe(true)
  })

  it.effect(
    "one server holds the name; a standby takes it at the next epoch when the holder dies",
    () =>
      Effect.gen(function* () {
        const locator = yield* Discovery.nameServer("disco")
        expect(Option.isNone(yield* located(locator))).toBe(true)
        // Both contend at once: one registers, the other stands by (it does not supersede
        // the one that claimed the epoch first, even before its holder key is written).
        const servers = [
          { address: a, ...(yield* advertiseIn("a", a)) },
          { address: b, ...(yield* advertiseIn("b", b)) },
        ]
        // Many TTLs: the holder keeps the name, the standby does not take it from it.
        yield* TestClock.adjust(5_000)
        const [first, second] = servers[0]!.changes.length > 0 ? servers : servers.reverse()
        expect(first!.changes).toEqual([{ held: true, epoch: 1 }])
        expect(second!.changes).toEqual([])
        expect(yield* located(locator)).toEqual(Option.some(Address.format(first!.address)))
        // The holder dies: the store ends its lease (no keep-alive comes any more), its fibers stop.
        const store = yield* Store.Store
        const holderKey = `/understudy/roles/${Discovery.nameOf("disco")}/holder`
        const lease = Option.getOrThrow(yield* store.get(holderKey)).lease!
        yield* store.revokeLease(lease)
        yield* Scope.close(first!.scope, Exit.void)
        yield* TestClock.adjust(1_000)
        expect(yield* located(locator)).toEqual(Option.some(Address.format(second!.address)))
        expect(second!.changes).toEqual([{ held: true, epoch: 2 }])
        // The new holder stops: it gives the name up at once.
        yield* Scope.close(second!.scope, Exit.void)
        expect(second!.changes).toEqual([
          { held: true, epoch: 2 },
          { held: false, epoch: 2 },
        ])
        expect(Option.isNone(yield* located(locator))).toBe(true)
      }).pipe(Effect.scoped, Effect.provide(names)),
  )

  it.effect("a holder written by something else under the name is no server", () =>
    Effect.gen(function* () {
      const nameServer = yield* NameServer.NameServer
      yield* nameServer.register(Discovery.nameOf("disco"), "not-an-address", 1)
      expect(Option.isNone(yield* located(yield* Discovery.nameServer("disco")))).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(plainNames)),
  )
})
