/**
 * The fence on etcd (the "embedded or etcd" store): two nodes, each with its own
 * client of one etcd server, hold the role one at a time; the second takes the next epoch
 * only once the first's lease ended in etcd, and by then the first no longer holds by its
 * own clock. Real time, real etcd (testkit's `EtcdServer`).
 */
import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { StoreError } from "@understudy/store"
import { EtcdStore } from "@understudy/store/etcd"
import { EtcdServer } from "@understudy/testkit"
import { Deferred, Duration, Effect, Fiber } from "effect"
import * as Fence from "../src/Fence.ts"

const server = EtcdServer.useEtcdServer({ beforeAll, afterAll })

/** Fails the test if `effect` takes longer than `ms` (a bound on a wait, not a timing check). */
const bounded = <A, E, R>(what: string, ms: number, effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.timeoutOption(Duration.millis(ms)),
    Effect.flatMap((value) =>
      value._tag === "Some"
        ? Effect.succeed(value.value)
        : Effect.die(`${what}: not within ${ms} ms`),
    ),
  )

describe("Fence on etcd", () => {
  it.live("one holder at a time; the next takes the next epoch once the lease ended in etcd", () =>
    Effect.gen(function* () {
      const prefix = `/fence-${randomUUID()}/`
      const first = yield* EtcdStore.make({ endpoints: [server().endpoint], prefix })
      const second = yield* EtcdStore.make({ endpoints: [server().endpoint], prefix })
      let cut = false
      const down = new StoreError.Unavailable({ detail: "cut off in this test" })
      // The first node's view of etcd: its keep-alives fail while `cut` (a paused process).
      const firstView = {
        ...first,
        keepAlive: (lease: string) => (cut ? Effect.fail(down) : first.keepAlive(lease)),
      }
      const a = yield* Fence.make({ store: firstView, lease: "1 second", holder: "a" })
      const b = yield* Fence.make({ store: second, lease: "1 second", holder: "b" })
      const epoch = yield* bounded("a acquires", 10_000, a.acquire)
      expect(epoch).toBe(1)
      expect(yield* a.holds).toBe(true)
      const waiting = yield* Effect.forkScoped(b.acquire)
      cut = true
      const next = yield* bounded("b acquires", 20_000, Fiber.join(waiting))
      expect(next).toBe(epoch + 1)
      // etcd ended a's lease no earlier than `lease` after its last keep-alive, which a
      // started before: a stopped holding by its own clock before b could hold.
      expect(yield* a.holds).toBe(false)
      expect(yield* b.holds).toBe(true)
      yield* bounded("a learns it lost the role", 10_000, Deferred.await(a.lost))
      cut = false
      expect(yield* a.holds).toBe(false)
      expect(yield* a.storeEpoch).toBe(next)
      expect((yield* b.status).epoch).toBe(next)
    }).pipe(Effect.scoped),
  )
})
