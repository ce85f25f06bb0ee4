/**
 * The client's timing: its retries follow the caller's `Schedule`, its `deadline` is a
 * `Duration.Input` bounding them, and a deadline that is not a positive duration is refused.
 */
import { describe, expect, it } from "@effect/vitest"
import { MemoryStore, NameServer } from "@understudy/store"
import { type Duration, Effect, Fiber, Layer, Schedule } from "effect"
import * as Client from "../src/Client.ts"
import * as ServerGroup from "../src/ServerGroup.ts"
import { advance } from "./support/clock.ts"

const names = NameServer.layer.pipe(Layer.provideMerge(MemoryStore.layer))

/** Calls to a registered master that never answers, in `ms`, with `retry`. */
const callsIn = (ms: number, retry: Schedule.Schedule<unknown> | undefined) =>
  Effect.gen(function* () {
    const nameServer = yield* NameServer.NameServer
    yield* nameServer.register("kv", "s1", 1)
    let calls = 0
    const client = yield* Client.make<string, string>({
      group: "kv",
      call: () =>
        Effect.suspend(() => {
          calls++
          return Effect.fail(new ServerGroup.GroupUnavailable({ reason: "down" }))
        }),
      deadline: "10 seconds",
      ...(retry === undefined ? {} : { retry }),
    })
    const submitted = yield* Effect.forkScoped(Effect.flip(client.submit("x")))
    yield* advance(ms)
    const counted = calls
    yield* advance(10_000 - ms)
    const error = yield* Fiber.join(submitted)
    expect(error).toMatchObject({ _tag: "GroupUnavailable", reason: "no answer within 10000 ms" })
    return counted
  }).pipe(Effect.scoped)

describe("Client timing", () => {
  it.effect("retries follow the caller's schedule; the default retries every 25 ms", () =>
    Effect.gen(function* () {
      expect(yield* callsIn(3_500, Schedule.spaced("1 second"))).toBe(4)
      // 0, 25, 50, ... 3,500 ms.
      expect(yield* callsIn(3_500, undefined)).toBe(141)
    }).pipe(Effect.provide(names)),
  )

  it.effect("a deadline that is not a positive duration is InvalidConfig naming it", () =>
    Effect.gen(function* () {
      for (const deadline of [0, -1, "soon", Number.POSITIVE_INFINITY] as const) {
        const error = yield* Effect.flip(
          Client.make({
            group: "kv",
            call: () => Effect.never,
            deadline: deadline as Duration.Input,
          }),
        )
        expect(error._tag).toBe("InvalidConfig")
        expect(error.reason).toMatch(/^deadline: not a positive duration/)
      }
    }).pipe(Effect.provide(names)),
  )
})
