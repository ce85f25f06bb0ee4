/**
 * The fence on a MemoryStore with the TestClock: one holder at a time, the epoch moves on
 * with each holder, and a holder that can not renew stops holding by its own clock.
 */
import { describe, expect, it } from "@effect/vitest"
import { MemoryStore, StoreError } from "@understudy/store"
import { Deferred, Duration, Effect, Fiber } from "effect"
import * as Fence from "../src/Fence.ts"
import { advance, within } from "./support/endpoint-support.ts"

describe("Fence", () => {
  it.effect("one holder at a time; the next waits for the lease to end and bumps the epoch", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.make()
      let cut = false
      const down = new StoreError.Unavailable({ detail: "cut off in this test" })
      // The first holder's view of the store: down while `cut`.
      const view = {
        ...store,
        keepAlive: (lease: string) => (cut ? Effect.fail(down) : store.keepAlive(lease)),
      }
      const first = yield* Fence.make({ store: view, lease: "1 second", holder: "first" })
      const second = yield* Fence.make({ store, lease: "1 second", holder: "second" })
      expect(yield* within(1_000, first.acquire)).toBe(1)
      expect(yield* first.holds).toBe(true)
      const waiting = yield* Effect.forkScoped(second.acquire)
      // The first keeps its lease alive: the second waits, however long.
      yield* advance(5_000)
      expect(waiting.pollUnsafe()).toBeUndefined()
      expect(yield* second.holds).toBe(false)
      cut = true
      // Cut off, the first stops holding by its own clock, before the second can hold.
      const lastKeepAliveMs = (yield* first.status).lastKeepAliveMs!
      for (let step = 0; step < 300 && waiting.pollUnsafe() === undefined; step++) {
        yield* advance(10)
        if (waiting.pollUnsafe() !== undefined) expect(yield* first.holds).toBe(false)
      }
      expect(yield* Fiber.join(waiting)).toBe(2)
      expect(yield* second.holds).toBe(true)
      expect(yield* first.holds).toBe(false)
      expect((yield* first.status).lastKeepAliveMs).toBe(lastKeepAliveMs)
      // The first learns it for good at its next failed keep-alive.
      yield* within(2_000, Deferred.await(first.lost))
      cut = false
      yield* advance(2_000)
      expect(yield* first.holds).toBe(false)
      expect((yield* second.status).epoch).toBe(2)
    }),
  )

  it.effect("a holder whose lease the store ended knows it lost the role", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.make()
      const fence = yield* Fence.make({ store, lease: "1 second", holder: "only" })
      yield* within(1_000, fence.acquire)
      const holder = yield* store.get("/understudy/multihome/fence/holder")
      expect(holder._tag).toBe("Some")
      if (holder._tag === "Some") yield* store.revokeLease(holder.value.lease!)
      const reason = yield* within(2_000, Deferred.await(fence.lost))
      expect(reason).toBe("the store ended the lease")
      expect(yield* fence.holds).toBe(false)
    }),
  )

  it.effect(
    "a lease that is not a positive, finite duration is a FenceConfigError naming it; nothing is asked of the store",
    () =>
      Effect.gen(function* () {
        const store = yield* MemoryStore.make()
        for (const lease of [0, -5, "soon", Number.POSITIVE_INFINITY]) {
          const error = yield* Effect.flip(
            Fence.make({ store, lease: lease as Duration.Input, holder: "bad" }),
          )
          expect(error._tag).toBe("FenceConfigError")
          expect(error.message).toMatch(/^invalid fence options: lease: /)
        }
        expect((yield* store.range("/")).items).toEqual([])
        // Text, milliseconds and Durations alike.
        for (const lease of ["2 seconds", 2_000, Duration.seconds(2)] as const) {
          const fence = yield* Fence.make({ store, lease, holder: "good" })
          expect((yield* fence.status).leaseMs).toBe(2_000)
        }
      }),
  )
})
