/**
 * How a `ClientGroup` hands a reply to a client, on SimNet: a stand-in server `s1` answers
 * the group's first request (from `c1`) with a `Denied` naming `c2` — once sealed for `c1`
 * (the MAC names the receiver: a reply taken from one client's traffic and relabelled for
 * another), once sealed for `c2`. The first is dropped and counted (`Unauthenticated`), no
 * client steps it; the second reaches `c2` only.
 */
import { describe, expect, it } from "@effect/vitest"
import { Authentication, Runner } from "@understudy/machine"
import { Address, ClusterKey, Datagram, SimNet } from "@understudy/transport"
import { Deferred, Effect, Metric, Result, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as ClientGroup from "../src/ClientGroup.ts"
import type * as ClientMachine from "../src/ClientMachine.ts"
import * as Message from "../src/Message.ts"
import * as Signing from "../src/Signing.ts"

const unauthenticated = Metric.value(
  Metric.withAttributes(Runner.datagramsDropped, { reason: "Unauthenticated" }),
).pipe(Effect.map((state) => state.count))

describe("a group's replies", () => {
  it.effect("go to the client they name, only when sealed for that client", () =>
    Effect.gen(function* () {
      const net = yield* SimNet.make({ link: { latency: SimNet.uniform(1, 1) } })
      const poolSecret = ClusterKey.generate()
      const server = Address.udp("s1", 2)
      const received = yield* Deferred.make<Datagram.Received>()
      const answered = yield* Deferred.make<void>()
      const sealer = Authentication.sealer(
        Authentication.keyed(Signing.poolKeys(poolSecret).mac),
        "s1",
        0,
      )
      /** A `Denied` for `c2`, sealed for `sealedFor`. */
      const denial = (sealedFor: string, nowMs: number) => {
        const encoded = Message.serverReplyCodec.encode({
          _tag: "Denied",
          server: "s1",
          client: "c2",
          term: 1,
          seq: 1,
          reason: "capacity",
        })
        if (Result.isFailure(encoded)) throw encoded.failure
        return sealer.seal(sealedFor, nowMs, encoded.success)
      }
      yield* net.run(
        "s1",
        Effect.gen(function* () {
          const endpoint = yield* (yield* Datagram.Datagram).bind(server)
          const first = yield* Stream.runHead(endpoint.messages)
          if (first._tag === "Some") yield* Deferred.succeed(received, first.value)
          // Relabelled: sealed for c1, naming c2.
          yield* endpoint.send(first._tag === "Some" ? first.value.from : server, denial("c1", 1))
          yield* Deferred.await(answered)
          yield* endpoint.send(first._tag === "Some" ? first.value.from : server, denial("c2", 2))
          yield* Effect.never
        }),
      )
      const events = new Map<string, Array<ClientMachine.Event>>([
        ["c1", []],
        ["c2", []],
      ])
      const steps = new Map<string, number>([
        ["c1", 0],
        ["c2", 0],
      ])
      const before = yield* unauthenticated
      yield* net.run(
        "c",
        Effect.gen(function* () {
          const group = yield* ClientGroup.run({
            bind: Address.udp("c", 5),
            servers: [{ id: "s1", address: server }],
            poolSecret,
            reportUnreachable: false,
          })
          for (const id of ["c1", "c2"]) {
            const running = yield* group.add({
              id,
              product: "cad",
              onStep: (info) =>
                Effect.sync(() => {
                  if (info.input._tag === "Receive") steps.set(id, steps.get(id)! + 1)
                }),
            })
            yield* running.events.pipe(
              Stream.runForEach((event) => Effect.sync(() => void events.get(id)!.push(event))),
              Effect.forkScoped,
            )
          }
          yield* Effect.never
        }),
      )
      yield* TestClock.adjust(10)
      yield* Deferred.await(received)
      yield* TestClock.adjust(10)
      // The relabelled reply: dropped before any client, counted.
      expect(yield* unauthenticated).toBe(before + 1)
      expect([...steps.values()]).toEqual([0, 0])
      yield* Deferred.succeed(answered, undefined)
      yield* TestClock.adjust(10)
      expect(steps.get("c1")).toBe(0)
      expect(steps.get("c2")).toBe(1)
      expect(events.get("c2")).toEqual([
        expect.objectContaining({ _tag: "Denied", server: "s1", reason: "capacity" }),
      ])
      expect(events.get("c1")).toEqual([])
    }).pipe(Effect.scoped),
  )
})
