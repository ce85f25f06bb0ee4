/**
 * Two concurrent `add`s of one id to a `ClientGroup`, on SimNet: exactly one succeeds, the
 * other dies. Both are made to wait for the same batch: a client `gate` already in the group
 * holds the group's batch in its `onStep` (observers run inside the batch) until both adds
 * have started, so both are past their decoding and wait their turn; a check of the id before
 * the batch would pass for both, and the second would replace the first client in the group.
 */
import { describe, expect, it } from "@effect/vitest"
import { Address, ClusterKey, SimNet } from "@understudy/transport"
import { Deferred, Effect, Exit, Fiber } from "effect"
import * as ClientGroup from "../src/ClientGroup.ts"

describe("a group's add", () => {
  it.effect("of one id twice at once: one succeeds, the other dies", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.uniform(1, 1) } })
      const outcome = yield* Deferred.make<{ succeeded: number; died: number; size: number }>()
      yield* net.run(
        "c",
        Effect.gen(function* () {
          const group = yield* ClientGroup.run({
            bind: Address.udp("c", 5),
            servers: [{ id: "s1", address: Address.udp("s1", 2) }],
            poolSecret: ClusterKey.generate(),
            reportUnreachable: false,
          })
          const gate = yield* Deferred.make<void>()
          const held = yield* Deferred.make<void>()
          let holding = false
          const gateClient = yield* group.add({
            id: "gate",
            product: "cad",
            onStep: () =>
              holding
                ? Effect.andThen(Deferred.succeed(held, undefined), Deferred.await(gate))
                : Effect.void,
          })
          holding = true
          yield* Effect.forkChild(gateClient.release)
          yield* Deferred.await(held)
          holding = false
          const adds = yield* Effect.forEach([1, 2], () =>
            Effect.forkChild(group.add({ id: "twin", product: "cad" })),
          )
          // Both adds run up to the batch they wait for (nothing before it waits on anything).
          for (let turn = 0; turn < 10; turn++) yield* Effect.yieldNow
          yield* Deferred.succeed(gate, undefined)
          const exits = yield* Effect.forEach(adds, Fiber.await)
          yield* Deferred.succeed(outcome, {
            succeeded: exits.filter(Exit.isSuccess).length,
            died: exits.filter((exit) => Exit.isFailure(exit) && Exit.hasDies(exit)).length,
            size: yield* group.size,
          })
          yield* Effect.never
        }),
      )
      expect(yield* Deferred.await(outcome)).toEqual({ succeeded: 1, died: 1, size: 2 })
    }),
  )
})
